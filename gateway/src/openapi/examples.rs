//! An example of every request body and main response.

use serde_json::{Value, json};

use super::*;

/// An example of every request body and main response, on its schema and
/// on the operations that send or answer it.
pub(super) fn examples(doc: &mut Value, (year, _): (u64, u64)) {
    let address = json!({
        "name": "Ada King", "line1": "12 St James's Square", "city": "London",
        "postal_code": "SW1Y 4JH", "country": "GB",
    });
    let price = json!({"amount": 1299, "currency": "USD"});
    let (user, product, order, payment) = (
        "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e01",
        "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e02",
        "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e03",
        "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e04",
    );
    let time = "2026-01-15T09:30:00Z";
    let password = "correct horse battery";
    let refresh = "Jq2vT0cXoR8mB5yN1wK7fL4hD9sG3aEzUpVi6tMxYbCn";
    let line = json!({"product_id": product, "quantity": 2});
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": year + 3, "cvc": "123"});
    let key = "9f2c4e1ab7d35c08e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    let image_out = json!({
        "id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e0a", "key": key, "content_type": "image/jpeg",
        "width": 1200, "height": 900, "bytes": 184_311, "alt": "A white enamel mug",
        "url": format!("/media/{key}"),
        "thumbnails": [
            {"width": 160, "height": 120, "url": format!("/media/{key}/160")},
            {"width": 480, "height": 360, "url": format!("/media/{key}/480")},
            {"width": 1024, "height": 768, "url": format!("/media/{key}/1024")},
        ],
    });
    let product_out = json!({
        "id": product, "sku": "MUG-001", "name": "Enamel mug", "description": "A 350 ml enamel mug.",
        "category": "kitchen", "price": price, "stock_available": 38, "rating_avg": 4.5, "rating_count": 2,
        "images": [image_out], "weight_grams": 280, "active": true,
        "created_at": time, "updated_at": time,
    });
    let review = json!({
        "id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e05", "product_id": product, "user_id": user,
        "rating": 5, "comment": "Keeps coffee hot.", "created_at": time,
    });
    let order_out = json!({
        "id": order, "user_id": user, "status": "PAID",
        "items": [{"product_id": product, "name": "Enamel mug", "unit_price": price, "quantity": 2}],
        "total": {"amount": 2598, "currency": "USD"}, "shipping_address": address,
        "notes": "Leave at the door.", "payment_id": payment, "created_at": time, "updated_at": time,
    });
    let payment_out = json!({
        "id": payment, "order_id": order, "status": "SUCCEEDED", "amount": {"amount": 2598, "currency": "USD"},
        "refunded_amount": {"amount": 0, "currency": "USD"}, "card_brand": "visa", "card_last4": "4242",
        "created_at": time,
    });
    let endpoint = "https://fcm.googleapis.com/fcm/send/c1KrmpTuRm0:APA91bE";
    let model_version = "ease-20260115T093000Z";
    let examples = [
        // Requests
        (
            "RegisterBody",
            json!({"email": "ada@example.com", "password": password, "name": "Ada Lovelace"}),
        ),
        (
            "LoginBody",
            json!({"email": "ada@example.com", "password": password}),
        ),
        (
            "LoginForm",
            json!({"username": "ada@example.com", "password": password}),
        ),
        ("RefreshBody", json!({"refresh_token": refresh})),
        (
            "ProfileUpdate",
            json!({"name": "Ada King", "phone": "+44 20 7946 0958", "address": address}),
        ),
        ("AddressIn", address.clone()),
        (
            "PreferencesBody",
            json!({"categories": ["books", "kitchen"]}),
        ),
        (
            "ProductCreate",
            json!({
                "sku": "MUG-001", "name": "Enamel mug", "description": "A 350 ml enamel mug.",
                "category": "kitchen", "price": price, "stock": 40, "weight_grams": 280,
            }),
        ),
        ("PriceIn", price.clone()),
        (
            "ProductUpdate",
            json!({"price": {"amount": 1099, "currency": "USD"}, "active": true}),
        ),
        ("StockUpdate", json!({"delta": 10})),
        (
            "ImageOrder",
            json!({"image_ids": ["0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e0a", "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e0b"]}),
        ),
        ("ImageOut", image_out.clone()),
        (
            "ReviewCreate",
            json!({"rating": 5, "comment": "Keeps coffee hot."}),
        ),
        ("OrderLineIn", line.clone()),
        (
            "OrderCreate",
            json!({"items": [line], "shipping_address": address, "notes": "Leave at the door."}),
        ),
        ("CardIn", card.clone()),
        ("CartItemIn", line.clone()),
        ("CartQuantityIn", json!({"quantity": 3})),
        (
            "CartMergeIn",
            json!({"cart_token": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e09.Wq3mJ0c3pD2xR8bT5nL1vK7yH4sF9gA6eZuPiOtMwYs"}),
        ),
        (
            "CheckoutIn",
            json!({"shipping_address": address, "card": card}),
        ),
        ("PaymentCreate", json!({"card": card})),
        ("AmountIn", json!({"amount": 500, "currency": "USD"})),
        (
            "RefundCreate",
            json!({"amount": {"amount": 500, "currency": "USD"}, "reason": "Arrived scratched"}),
        ),
        (
            "PushSubscriptionIn",
            json!({"endpoint": endpoint, "keys": {
                "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                "auth": "tBHItJI5svbpez7KI4CCXg",
            }}),
        ),
        (
            "CarrierUpdate",
            json!({
                "tracking_number": "SIM1234567890", "status": "IN_TRANSIT", "location": "Rotterdam",
                "description": "Departed the sorting hub",
            }),
        ),
        // Responses
        (
            "UserOut",
            json!({"id": user, "email": "ada@example.com", "name": "Ada Lovelace", "role": "customer"}),
        ),
        (
            "TokenPair",
            json!({
                "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiIwMTkzYjNjNCJ9.c2lnbmF0dXJl",
                "refresh_token": refresh, "token_type": "Bearer", "expires_in": 900,
            }),
        ),
        ("ProductOut", product_out.clone()),
        (
            "ProductList",
            json!({"items": [product_out], "next_cursor": null}),
        ),
        ("ReviewOut", review.clone()),
        (
            "ReviewList",
            json!({"items": [review], "next_cursor": null}),
        ),
        ("OrderOut", order_out.clone()),
        (
            "OrderList",
            json!({"items": [order_out], "next_cursor": null}),
        ),
        ("PaymentOut", payment_out.clone()),
        (
            "GuestCartOut",
            json!({
                "cart_id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e09",
                "cart_token": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e09.Wq3mJ0c3pD2xR8bT5nL1vK7yH4sF9gA6eZuPiOtMwYs",
            }),
        ),
        (
            "CartOut",
            json!({
                "id": format!("user:{user}"),
                "items": [{
                    "product_id": product, "name": "Enamel mug", "unit_price": price, "quantity": 2,
                    "line_total": {"amount": 2598, "currency": "USD"}, "available": true,
                    "price_changed": false, "stock_available": 38,
                }],
                "subtotal": {"amount": 2598, "currency": "USD"}, "updated_at": time,
            }),
        ),
        (
            "CheckoutOut",
            json!({"order": order_out, "payment": payment_out}),
        ),
        (
            "PaymentList",
            json!({"items": [payment_out], "next_cursor": null}),
        ),
        (
            "RefundOut",
            json!({
                "id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e06", "payment_id": payment, "order_id": order,
                "amount": {"amount": 500, "currency": "USD"}, "status": "SUCCEEDED",
                "reason": "Arrived scratched", "created_at": time,
            }),
        ),
        (
            "ShipmentOut",
            json!({
                "id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e07", "order_id": order, "status": "IN_TRANSIT",
                "carrier": "sim", "tracking_number": "SIM1234567890",
                "events": [
                    {"status": "LABEL_CREATED", "at": time},
                    {"status": "IN_TRANSIT", "at": "2026-01-16T07:10:00Z", "location": "Rotterdam"},
                ],
            }),
        ),
        (
            "NotificationList",
            json!({"items": [{
            "id": "950d8e2b921eb7a62588788261fee3fd", "kind": "order.paid", "title": "Payment received",
            "body": "We received 25.98 USD for your order.", "channel": "in_app", "created_at": time, "read": false,
        }], "next_cursor": null}),
        ),
        (
            "PushSubscriptionOut",
            json!({"id": "3a1ceba9822be0cf6f5e71ea8c4e2c94", "endpoint": endpoint}),
        ),
        (
            "PushKeyOut",
            json!({
                "application_server_key": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
            }),
        ),
        (
            "RecommendationList",
            json!({
                "items": [{
                    "id": product, "sku": "MUG-001", "name": "Enamel mug", "description": "A 350 ml enamel mug.",
                    "category": "kitchen", "price": price, "stock_available": 38, "rating_count": 0,
                    "images": [], "weight_grams": 280, "active": true, "created_at": time, "updated_at": time,
                    "reason": {"kind": "bought_with", "product_id": "0193b3c4-1a2b-7c3d-8e4f-5a6b7c8d9e08"},
                    "score": 0.82,
                }],
                "model_version": model_version, "fallback": false,
            }),
        ),
        (
            "TrainingStarted",
            json!({"model_version": model_version, "already_running": false}),
        ),
        (
            "ModelOut",
            json!({
                "model_version": model_version, "algorithm": "ease", "trained_at": time, "interactions": 15230,
                "products": 480, "users": 3100, "metrics": {"recall_at_10": 0.31, "ndcg_at_10": 0.22},
            }),
        ),
        (
            "FlagList",
            json!({
                "flags": [{
                    "key": "paymentDeclineRate",
                    "description": "The simulated payment provider declines this fraction of charges. Threatens: ... Kept by: ...",
                    "on": true, "variant": "10%", "value": {"value": 0.1},
                    "variants": ["10%", "50%", "all", "off"],
                }],
                "writable": false,
            }),
        ),
        (
            "FlagOut",
            json!({
                "key": "cacheOutage",
                "description": "product-svc's Redis cache answers nothing. Threatens: ... Kept by: ...",
                "on": true, "variant": "on", "value": {"value": true}, "variants": ["off", "on"],
            }),
        ),
        ("FlagChange", json!({"variant": "on"})),
        (
            "JwksOut",
            json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }]}),
        ),
        (
            "Problem",
            json!({
                "type": "https://shopmesh.dev/problems/invalid-request", "title": "Invalid request", "status": 422,
                "detail": "the request body has invalid fields",
                "errors": [{"field": "price.amount", "message": "must be at least 1 minor unit"}],
            }),
        ),
    ];
    for (schema, example) in examples {
        set(
            doc,
            &format!("/components/schemas/{schema}"),
            json!({"examples": [example]}),
        );
    }
    // The media types of request bodies and 2xx answers show their schema's.
    let schemas = doc["components"]["schemas"].clone();
    let paths = at(doc, "/paths").as_object_mut().expect("paths");
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let mut contents: Vec<&mut Value> = Vec::new();
        let Some(operation) = operation.as_object_mut() else {
            continue;
        };
        for (key, value) in operation.iter_mut() {
            match key.as_str() {
                "requestBody" => contents.extend(value.get_mut("content")),
                "responses" => contents.extend(
                    value
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|r| r.iter_mut())
                        .filter(|(status, _)| status.starts_with('2'))
                        .filter_map(|(_, response)| response.get_mut("content")),
                ),
                _ => {}
            }
        }
        for media in contents
            .into_iter()
            .filter_map(Value::as_object_mut)
            .flat_map(|c| c.values_mut())
        {
            let example = media["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| schemas[name]["examples"].get(0));
            if let Some(example) = example {
                media["example"] = example.clone();
            }
        }
    }
}
