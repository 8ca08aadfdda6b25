//! Products as proto messages, and images from media events.

use crate::domain::{self, Product};

pub fn to_proto(id: &str, p: &Product) -> proto::product::Product {
    proto::product::Product {
        id: id.to_string(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category: p.category.clone(),
        price: Some(proto::common::Money::new(p.price.amount, &p.price.currency)),
        stock_available: p.stock_available.max(0) as u32,
        stock_reserved: p.stock_reserved.max(0) as u32,
        rating_avg: p.rating_avg(),
        rating_count: p.rating_count.max(0) as u32,
        weight_grams: p.weight_grams,
        active: p.is_active(),
        created_at: Some(proto::ext::from_secs(p.created_at)),
        updated_at: Some(proto::ext::from_secs(p.updated_at)),
        images: p.images.iter().map(|i| image_to_proto(id, i)).collect(),
    }
}

pub fn image_to_proto(product_id: &str, i: &domain::Image) -> proto::media::Media {
    proto::media::Media {
        id: i.id.clone(),
        product_id: product_id.to_string(),
        key: i.key.clone(),
        content_type: i.content_type.clone(),
        width: i.width,
        height: i.height,
        bytes: i.bytes,
        alt: i.alt.clone(),
        thumbnails: i
            .thumbnails
            .iter()
            .map(|t| proto::media::Thumbnail {
                width: t.width,
                height: t.height,
                bytes: t.bytes,
                content_type: t.content_type.clone(),
            })
            .collect(),
        created_at: Some(proto::ext::from_millis(i.created_at)),
    }
}

/// The image a `media.uploaded` event announces.
pub fn image_from_proto(m: &proto::media::Media) -> domain::Image {
    domain::Image {
        id: m.id.clone(),
        key: m.key.clone(),
        content_type: m.content_type.clone(),
        width: m.width,
        height: m.height,
        bytes: m.bytes,
        alt: m.alt.clone(),
        thumbnails: m
            .thumbnails
            .iter()
            .map(|t| domain::Thumbnail {
                width: t.width,
                height: t.height,
                bytes: t.bytes,
                content_type: t.content_type.clone(),
            })
            .collect(),
        created_at: m
            .created_at
            .as_ref()
            .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
    }
}

/// What ValidateProducts (and ReserveStock) say of a product.
pub fn validation_of(id: String, p: &Product) -> proto::product::ProductValidation {
    let image = p.images.first().map(|i| image_to_proto(&id, i));
    proto::product::ProductValidation {
        product_id: id,
        found: true,
        active: p.is_active(),
        name: p.name.clone(),
        sku: p.sku.clone(),
        price: Some(proto::common::Money::new(p.price.amount, &p.price.currency)),
        stock_available: p.stock_available.max(0) as u32,
        weight_grams: p.weight_grams,
        image,
        category: p.category.clone(),
    }
}
