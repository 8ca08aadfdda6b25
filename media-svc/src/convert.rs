//! Domain records <-> proto messages.

use crate::domain::Media;

pub fn media(id: &str, m: &Media) -> proto::media::Media {
    proto::media::Media {
        id: id.to_string(),
        product_id: m.product_id.clone(),
        key: m.key.clone(),
        content_type: m.content_type.clone(),
        width: m.width,
        height: m.height,
        bytes: m.bytes,
        alt: m.alt.clone(),
        thumbnails: m
            .thumbnails
            .iter()
            .map(|t| proto::media::Thumbnail {
                width: t.width,
                height: t.height,
                bytes: t.bytes,
                content_type: t.content_type.clone(),
            })
            .collect(),
        created_at: Some(proto::ext::from_millis(m.created_at)),
    }
}
