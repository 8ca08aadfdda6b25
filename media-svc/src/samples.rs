//! Images made in code: the demo catalog's pictures, and the good and
//! hostile files the tests and the benchmark upload.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ImageEncoder, Rgb, RgbImage};

/// A picture of `width`×`height`: a diagonal gradient between two colours
/// taken from `seed`, with soft rings, so encoders see real variation.
pub fn picture(width: u32, height: u32, seed: u64) -> RgbImage {
    let colour = |shift: u32| {
        let v = seed.rotate_left(shift) ^ 0x9E37_79B9_7F4A_7C15;
        [
            (v & 0xFF) as f32,
            ((v >> 8) & 0xFF) as f32,
            ((v >> 16) & 0xFF) as f32,
        ]
    };
    let (a, b) = (colour(0), colour(23));
    let (cx, cy) = (width as f32 * 0.62, height as f32 * 0.45);
    let scale = width.max(height).max(1) as f32;
    RgbImage::from_fn(width, height, |x, y| {
        let t = (x + y) as f32 / (width + height).max(1) as f32;
        let d = ((x as f32 - cx).hypot(y as f32 - cy)) / scale;
        let ring = 0.5 + 0.5 * (d * 40.0).cos();
        let mix = |i: usize| {
            let base = a[i] * (1.0 - t) + b[i] * t;
            (base * (0.75 + 0.25 * ring)).clamp(0.0, 255.0) as u8
        };
        Rgb([mix(0), mix(1), mix(2)])
    })
}

/// Noise on top of a picture: photographs compress like this, so a
/// benchmark's files reach realistic sizes.
pub fn grainy(mut image: RgbImage, seed: u64) -> RgbImage {
    let mut state = seed | 1;
    for pixel in image.pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for (i, channel) in pixel.0.iter_mut().enumerate() {
            let noise = ((state >> (i * 8)) & 0x3F) as i16 - 32;
            *channel = (*channel as i16 + noise).clamp(0, 255) as u8;
        }
    }
    image
}

pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .expect("encoding a JPEG in memory");
    out
}

pub fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a PNG in memory");
    out
}

pub fn webp(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a WebP in memory");
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny, well-formed PNG that declares `width`×`height` pixels (a
/// decompression bomb's header) with one small compressed row of data.
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    png_chunk(&mut out, b"IHDR", &ihdr);
    // A stored (uncompressed) zlib block of zeros: valid data that ends
    // long before the declared rows do.
    let zeros = [0u8; 64];
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&(zeros.len() as u16).to_le_bytes());
    zlib.extend_from_slice(&(!(zeros.len() as u16)).to_le_bytes());
    zlib.extend_from_slice(&zeros);
    png_chunk(&mut out, b"IDAT", &zlib);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// The text planted in [`with_exif`]'s metadata.
pub const GPS_MARKER: &[u8] = b"GPS 52.5200N 13.4050E";

/// `jpeg` with an EXIF segment after its start marker, holding
/// [`GPS_MARKER`]: metadata that must not survive an upload.
pub fn with_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    tiff.extend_from_slice(GPS_MARKER);
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A GIF: a real image of a type uploads do not take.
pub const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// An SVG that is also HTML with a script: what a browser would run if a
/// server trusted a declared type.
pub const SVG_HTML: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg><html><body><img src=x onerror=alert(1)></body></html>";

/// A demo product's picture, coloured by its SKU.
pub fn demo_picture(sku: &str) -> Vec<u8> {
    let seed = sku.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    jpeg(&picture(1200, 900, seed), 85)
}
