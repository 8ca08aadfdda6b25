//! What an upload may be and how it becomes a stored image: pure work on
//! bytes, no I/O. [`process`] sniffs the type, holds the pixel and memory
//! limits while decoding, turns the image upright, re-encodes it (which
//! drops EXIF, GPS and any other metadata or trailing bytes) and makes the
//! thumbnails.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, metadata::Orientation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use platform::events::outbox::{HasOutbox, Outbox};

/// The image types an upload may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    /// The type the bytes say they are (their magic numbers); a name or a
    /// declared content type is never asked.
    pub fn sniff(bytes: &[u8]) -> Option<Kind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Kind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Kind::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Kind::Webp)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Jpeg => JPEG,
            Kind::Png => PNG,
            Kind::Webp => "image/webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Png => ImageFormat::Png,
            Kind::Webp => ImageFormat::WebP,
        }
    }
}

const JPEG: &str = "image/jpeg";
const PNG: &str = "image/png";
/// Quality of re-encoded JPEG images and of JPEG thumbnails.
const IMAGE_QUALITY: u8 = 88;
const THUMBNAIL_QUALITY: u8 = 80;

/// What an upload may be.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    /// Most memory one decode may allocate.
    pub decode_memory: u64,
    /// Thumbnail widths, ascending.
    pub thumbnail_widths: Vec<u32>,
}

impl Limits {
    pub fn from_settings(s: &platform::config::MediaSettings) -> Self {
        Self {
            max_bytes: s.max_upload_bytes,
            max_pixels: s.max_pixels,
            decode_memory: s.decode_memory_bytes,
            thumbnail_widths: s.thumbnail_widths.clone(),
        }
    }
}

/// Why an upload is refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the file is not a JPEG, PNG or WebP image")]
    Unsupported,
    #[error("the image is {width}x{height} pixels; at most {max} pixels are taken")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("decoding the image would need more memory than allowed")]
    DecodeMemory,
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    #[error("the product shows {limit} images, the most it may; delete one first")]
    ProductFull { limit: usize },
}

impl Refusal {
    /// The error kind clients see: 413, 415 or 422 over HTTP.
    pub fn kind(&self) -> platform::error::ErrorKind {
        use platform::error::ErrorKind;
        match self {
            Refusal::TooLarge { .. } => ErrorKind::PayloadTooLarge,
            Refusal::Unsupported => ErrorKind::UnsupportedMediaType,
            Refusal::Empty
            | Refusal::TooManyPixels { .. }
            | Refusal::DecodeMemory
            | Refusal::Undecodable(_) => ErrorKind::InvalidArgument,
            Refusal::ProductFull { .. } => ErrorKind::FailedPrecondition,
        }
    }
}

/// One encoded image: the stored original or a thumbnail.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
}

/// An accepted upload, ready to store.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Hex SHA-256 of `image.bytes`: its key.
    pub key: String,
    pub image: Encoded,
    pub thumbnails: Vec<Encoded>,
}

fn undecodable(err: image::ImageError) -> Refusal {
    match err {
        image::ImageError::Limits(_) => Refusal::DecodeMemory,
        other => Refusal::Undecodable(other.to_string()),
    }
}

/// Checks, decodes and re-encodes an upload and makes its thumbnails.
/// CPU-bound: callers run it on a blocking thread, a few at a time.
pub fn process(bytes: &[u8], limits: &Limits) -> Result<Processed, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::Empty);
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(Refusal::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let kind = Kind::sniff(bytes).ok_or(Refusal::Unsupported)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(limits.decode_memory);
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Refusal::Undecodable("the image has no pixels".into()));
    }
    // From the header, before a pixel is decoded: a small file declaring
    // a huge canvas is refused here.
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Refusal::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    // The decoded pixels alone; `into_decoder` leaves this check to us.
    if decoder.total_bytes() > limits.decode_memory {
        return Err(Refusal::DecodeMemory);
    }
    if kind == Kind::Jpeg && !jpeg_is_complete(bytes) {
        return Err(Refusal::Undecodable("the JPEG file is truncated".into()));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    // Metadata is dropped below, so its orientation is applied to the
    // pixels or the photo would show turned.
    image.apply_orientation(orientation);
    let alpha = image.color().has_alpha();
    let image = if alpha {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    let stored = encode(&image, kind, IMAGE_QUALITY)?;
    let key = hex_sha256(&stored.bytes);
    let thumbnails = thumbnails(&image, &limits.thumbnail_widths)?;
    Ok(Processed {
        key,
        image: stored,
        thumbnails,
    })
}

/// Whether a JPEG's end-of-image marker follows its scan data. Decoders
/// fill a cut-off scan with grey rather than fail; a marker byte inside
/// scan data is always escaped, so FF D9 after the first scan is the real
/// end.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Thumbnails of the widths below the image's own, each made from the
/// next larger one (largest first) so a huge image is scaled down once.
fn thumbnails(image: &DynamicImage, widths: &[u32]) -> Result<Vec<Encoded>, Refusal> {
    let (w, h) = (image.width(), image.height());
    let mut made = Vec::new();
    // The last thumbnail made: the source of the next smaller one.
    let mut previous: Option<DynamicImage> = None;
    for &width in widths.iter().rev().filter(|&&tw| tw < w) {
        let height = ((u64::from(h) * u64::from(width) + u64::from(w) / 2) / u64::from(w)).max(1);
        let source = previous.as_ref().unwrap_or(image);
        let thumbnail = source.thumbnail_exact(width, height as u32);
        let kind = if thumbnail.color().has_alpha() {
            Kind::Png
        } else {
            Kind::Jpeg
        };
        made.push(encode(&thumbnail, kind, THUMBNAIL_QUALITY)?);
        previous = Some(thumbnail);
    }
    made.reverse();
    Ok(made)
}

fn encode(image: &DynamicImage, kind: Kind, quality: u8) -> Result<Encoded, Refusal> {
    let mut out = Vec::new();
    let failed = |e: image::ImageError| Refusal::Undecodable(format!("re-encoding failed: {e}"));
    match kind {
        Kind::Jpeg => {
            let mut encoder = JpegEncoder::new_with_quality(&mut out, quality);
            // No copy of the pixels when they are RGB already.
            match image {
                DynamicImage::ImageRgb8(rgb) => encoder.encode_image(rgb),
                other => encoder.encode_image(&other.to_rgb8()),
            }
            .map_err(failed)?;
        }
        Kind::Png => image
            .write_with_encoder(PngEncoder::new(&mut out))
            .map_err(failed)?,
        Kind::Webp => image
            .write_with_encoder(WebPEncoder::new_lossless(&mut out))
            .map_err(failed)?,
    }
    Ok(Encoded {
        bytes: out,
        width: image.width(),
        height: image.height(),
        content_type: kind.content_type(),
    })
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `key` is a hex SHA-256 (what every stored key is).
pub fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A text alternative: at most 300 characters, no control characters.
pub fn parse_alt(raw: &str) -> Result<String, platform::error::FieldError> {
    let alt = raw.trim();
    if alt.chars().count() > 300 {
        Err(platform::error::FieldError::new(
            "alt",
            "must be at most 300 characters",
        ))
    } else if let Err(error) = platform::text::check("alt", alt) {
        Err(error)
    } else {
        Ok(alt.to_string())
    }
}

/// A stored thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumb {
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub content_type: String,
}

/// A media record: one image of one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    pub product_id: String,
    pub key: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub alt: String,
    pub thumbnails: Vec<Thumb>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `<product_id>/<key>` while the record is live (unique: the same
    /// bytes are shown once per product); absent once deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    /// `<product_id>#<n>`, n below [`MAX_IMAGES`], while the record is
    /// live (unique: a product holds at most that many live images, however
    /// many uploads race); absent once deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Unix milliseconds; set when deleted. The sweeper removes the record
    /// (and bytes nothing else references) a grace period later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    #[serde(default)]
    pub outbox: Outbox,
}

impl HasOutbox for Media {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

impl Media {
    pub fn live_key(product_id: &str, key: &str) -> String {
        format!("{product_id}/{key}")
    }

    pub fn slot_key(product_id: &str, n: usize) -> String {
        format!("{product_id}#{n}")
    }

    /// Marks the record deleted at `now_ms`; false when it already was.
    pub fn delete(&mut self, now_ms: i64) -> bool {
        if self.deleted_at.is_some() {
            return false;
        }
        self.deleted_at = Some(now_ms);
        self.live = None;
        self.slot = None;
        true
    }

    /// The stored object of the image (`width` 0) or of a thumbnail.
    pub fn has_width(&self, width: u32) -> bool {
        width == 0 || self.thumbnails.iter().any(|t| t.width == width)
    }
}

/// The most live images a product may have.
pub const MAX_IMAGES: usize = proto::MAX_PRODUCT_IMAGES;

/// The lowest slot that none of `live` (a product's live records) holds,
/// if the product has room for another image. Records from before slots
/// existed hold none but still count.
pub fn free_slot(product_id: &str, live: &[&Media]) -> Option<usize> {
    if live.len() >= MAX_IMAGES {
        return None;
    }
    let taken: std::collections::HashSet<&str> =
        live.iter().filter_map(|m| m.slot.as_deref()).collect();
    (0..MAX_IMAGES).find(|&n| !taken.contains(Media::slot_key(product_id, n).as_str()))
}

/// Where an image's bytes live: `<key>/original` and `<key>/<width>`.
pub fn object_path(key: &str, width: u32) -> String {
    if width == 0 {
        format!("{key}/original")
    } else {
        format!("{key}/{width}")
    }
}

/// The key an object path belongs to.
pub fn key_of_path(path: &str) -> Option<&str> {
    let (key, _) = path.split_once('/')?;
    is_key(key).then_some(key)
}

#[cfg(test)]
mod tests;
