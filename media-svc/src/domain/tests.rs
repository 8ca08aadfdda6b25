use super::*;
use crate::samples;

fn limits() -> Limits {
    Limits {
        max_bytes: 10 * 1024 * 1024,
        max_pixels: 40_000_000,
        decode_memory: 256 * 1024 * 1024,
        thumbnail_widths: vec![160, 480, 1024],
    }
}

fn photo(w: u32, h: u32) -> image::RgbImage {
    samples::picture(w, h, 7)
}

#[test]
fn types_are_sniffed_from_the_bytes() {
    let p = photo(8, 8);
    assert_eq!(Kind::sniff(&samples::jpeg(&p, 80)), Some(Kind::Jpeg));
    assert_eq!(Kind::sniff(&samples::png(&p)), Some(Kind::Png));
    assert_eq!(Kind::sniff(&samples::webp(&p)), Some(Kind::Webp));
    assert_eq!(Kind::sniff(samples::GIF), None);
    assert_eq!(Kind::sniff(samples::SVG_HTML), None);
    assert_eq!(Kind::sniff(b"hello, I am a .jpg"), None);
}

#[test]
fn a_jpeg_is_stored_with_thumbnails_below_its_width() {
    let done = process(&samples::jpeg(&photo(800, 600), 90), &limits()).unwrap();
    assert_eq!((done.image.width, done.image.height), (800, 600));
    assert_eq!(done.image.content_type, "image/jpeg");
    let sizes: Vec<_> = done
        .thumbnails
        .iter()
        .map(|t| (t.width, t.height))
        .collect();
    assert_eq!(sizes, vec![(160, 120), (480, 360)]);
    assert!(
        done.thumbnails
            .iter()
            .all(|t| t.content_type == "image/jpeg")
    );
    assert_eq!(done.key, hex_sha256(&done.image.bytes));
    assert!(is_key(&done.key));
}

#[test]
fn the_same_upload_gets_the_same_key() {
    let bytes = samples::png(&photo(300, 200));
    let (a, b) = (
        process(&bytes, &limits()).unwrap(),
        process(&bytes, &limits()).unwrap(),
    );
    assert_eq!(a.key, b.key);
    assert_eq!(a.image.content_type, "image/png");
    let webp = process(&samples::webp(&photo(300, 200)), &limits()).unwrap();
    assert_eq!(webp.image.content_type, "image/webp");
}

#[test]
fn metadata_does_not_survive() {
    let bytes = samples::with_exif(&samples::jpeg(&photo(64, 64), 90));
    assert!(
        bytes
            .windows(samples::GPS_MARKER.len())
            .any(|w| w == samples::GPS_MARKER)
    );
    let done = process(&bytes, &limits()).unwrap();
    let stored = &done.image.bytes;
    assert!(
        !stored
            .windows(samples::GPS_MARKER.len())
            .any(|w| w == samples::GPS_MARKER)
    );
    assert!(!stored.windows(4).any(|w| w == b"Exif"));
}

#[test]
fn refusals_name_their_reason() {
    let l = limits();
    assert_eq!(process(b"", &l).unwrap_err(), Refusal::Empty);
    assert_eq!(process(samples::GIF, &l).unwrap_err(), Refusal::Unsupported);
    assert_eq!(
        process(samples::SVG_HTML, &l).unwrap_err(),
        Refusal::Unsupported
    );
    let jpeg = samples::jpeg(&photo(200, 200), 90);
    assert!(matches!(
        process(&jpeg[..jpeg.len() / 2], &l).unwrap_err(),
        Refusal::Undecodable(_)
    ));
    assert_eq!(
        process(&samples::png_declaring(60_000, 60_000), &l).unwrap_err(),
        Refusal::TooManyPixels {
            width: 60_000,
            height: 60_000,
            max: 40_000_000
        }
    );
    let small = Limits {
        max_bytes: 100,
        ..limits()
    };
    assert_eq!(
        process(&jpeg, &small).unwrap_err(),
        Refusal::TooLarge { limit: 100 }
    );
}

#[test]
fn a_bomb_within_the_pixel_limit_is_held_by_the_memory_limit() {
    // 6000x6000 RGB needs 108 MB to decode; 16 MiB are allowed.
    let l = Limits {
        decode_memory: 16 * 1024 * 1024,
        ..limits()
    };
    assert_eq!(
        process(&samples::png_declaring(6000, 6000), &l).unwrap_err(),
        Refusal::DecodeMemory
    );
}

#[test]
fn refusals_map_to_their_statuses() {
    use platform::error::ErrorKind;
    assert_eq!(Refusal::TooLarge { limit: 1 }.kind().http_status(), 413);
    assert_eq!(Refusal::Unsupported.kind().http_status(), 415);
    assert_eq!(Refusal::Empty.kind(), ErrorKind::InvalidArgument);
    assert_eq!(Refusal::DecodeMemory.kind().http_status(), 422);
}

#[test]
fn keys_and_paths() {
    let key = hex_sha256(b"x");
    assert_eq!(object_path(&key, 0), format!("{key}/original"));
    assert_eq!(key_of_path(&object_path(&key, 160)), Some(key.as_str()));
    assert_eq!(key_of_path("../etc/original"), None);
    assert!(!is_key("ABC"));
    assert!(parse_alt("a\u{0}b").is_err());
    assert_eq!(parse_alt("  A red mug ").unwrap(), "A red mug");
}

/// A live record of product `p` in `slot` (none: from before slots).
fn live_record(slot: Option<usize>) -> Media {
    Media {
        product_id: "p".into(),
        key: "k".into(),
        content_type: "image/jpeg".into(),
        width: 1,
        height: 1,
        bytes: 1,
        alt: String::new(),
        thumbnails: vec![],
        created_at: 0,
        live: Some(Media::live_key("p", "k")),
        slot: slot.map(|n| Media::slot_key("p", n)),
        deleted_at: None,
        outbox: Outbox::default(),
    }
}

#[test]
fn deleting_twice_changes_nothing() {
    let mut m = live_record(Some(0));
    assert!(m.delete(5));
    assert!(!m.delete(9));
    assert_eq!((m.deleted_at, m.live.as_deref()), (Some(5), None));
    assert_eq!(m.slot, None, "a deleted record frees its slot");
}

#[test]
fn a_product_takes_the_lowest_free_slot_up_to_the_limit() {
    let record = live_record;
    assert_eq!(free_slot("p", &[]), Some(0));
    let (a, c) = (record(Some(0)), record(Some(2)));
    assert_eq!(free_slot("p", &[&a, &c]), Some(1));
    // A record without a slot still counts toward the limit.
    let many: Vec<Media> = (0..MAX_IMAGES - 1).map(|n| record(Some(n))).collect();
    let mut live: Vec<&Media> = many.iter().collect();
    assert_eq!(free_slot("p", &live), Some(MAX_IMAGES - 1));
    let legacy = record(None);
    live.push(&legacy);
    assert_eq!(free_slot("p", &live), None);
}
