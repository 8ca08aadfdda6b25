//! What each service checks of a request body, stated in the schemas.

use serde_json::{Value, json};

use super::*;

/// What each service checks of its input, stated in the schemas. Where a
/// rule cannot be stated (a card number's Luhn digit, a cursor's
/// signature, a product that must exist) the description says it.
pub(super) fn input_rules(doc: &mut Value, (year, month): (u64, u64)) {
    let schemas = at(doc, "/components/schemas")
        .as_object_mut()
        .expect("schemas");
    // Request members whose rules responses do not follow (a stored order
    // address may be longer than a profile's; amounts may be 0 once
    // refunded): schemas of their own.
    // The rules are platform::address's, which every service applies.
    let mut address = serde_json::Map::new();
    for (name, max) in platform::address::LIMITS {
        let rule = if matches!(name, "line2" | "region") {
            json!({"type": "string", "maxLength": max})
        } else {
            json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": NON_BLANK})
        };
        address.insert(name.to_string(), rule);
    }
    address.insert(
        "country".into(),
        json!({"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 3166-1 alpha-2."}),
    );
    schemas.insert(
        "AddressIn".into(),
        json!({
            "type": "object",
            "description": "A postal address, as profiles and orders take it.",
            "required": ["name", "line1", "city", "postal_code", "country"],
            "properties": address,
        }),
    );
    let currency = json!({"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "ISO 4217 code, e.g. `USD`."});
    schemas.insert(
        "PriceIn".into(),
        json!({
            "type": "object",
            "description": "A price in integer minor units: nothing is given away.",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 10_000_000_000_u64},
                "currency": currency,
            },
        }),
    );
    schemas.insert(
        "AmountIn".into(),
        json!({
            "type": "object",
            "description": "An amount in integer minor units, in the payment's currency.",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "integer", "format": "int64", "minimum": 1},
                "currency": currency,
            },
        }),
    );
    // Members a body carries beyond its own are ignored, but their names
    // and strings are text like any other.
    let extra = schema_ref("ExtraMember");
    schemas.insert(
        "ExtraMember".into(),
        json!({
            "description": "A member the operation does not read: ignored, but its names and strings hold no control characters either.",
            "anyOf": [
                {"type": ["null", "boolean", "number"]},
                {"type": "string", "pattern": TEXT},
                {"type": "array", "items": extra},
                {"type": "object", "propertyNames": {"type": "string", "pattern": TEXT}, "additionalProperties": extra},
            ],
        }),
    );

    // user-svc
    set(
        doc,
        &field("RegisterBody", "email"),
        json!({"format": "email", "maxLength": 254}),
    );
    for schema in ["RegisterBody", "ProfileUpdate"] {
        set(
            doc,
            &field(schema, "name"),
            json!({"minLength": 1, "maxLength": 100, "pattern": NON_BLANK}),
        );
    }
    set(
        doc,
        &field("ProfileUpdate", "phone"),
        json!({
            "description": "6 to 15 digits, optionally after `+`; spaces, dashes, dots and parentheses are dropped. Empty removes the phone.",
            "pattern": r"^[ \t\n]*(\+?[ ().-]*([0-9][ ().-]*){6,15}[ \t\n]*)?$",
        }),
    );
    *at(doc, &field("ProfileUpdate", "address")) = nullable_ref("AddressIn");
    set(
        doc,
        &field("PreferencesBody", "categories"),
        json!({"maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 50, "pattern": NON_BLANK_LINE}}),
    );

    // product-svc
    for schema in ["ProductCreate", "ProductUpdate"] {
        set(
            doc,
            &field(schema, "sku"),
            json!({"pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "Stored upper case; unique."}),
        );
        set(
            doc,
            &field(schema, "name"),
            json!({"minLength": 1, "maxLength": 200, "pattern": NON_BLANK}),
        );
        set(
            doc,
            &field(schema, "description"),
            json!({"maxLength": 5000}),
        );
        set(
            doc,
            &field(schema, "category"),
            json!({"pattern": "^[A-Za-z0-9-]{1,50}$", "description": "Stored lower case."}),
        );
    }
    *at(doc, &field("ProductCreate", "price")) = schema_ref("PriceIn");
    *at(doc, &field("ProductUpdate", "price")) = nullable_ref("PriceIn");
    set(
        doc,
        &field("ProductCreate", "stock"),
        json!({"maximum": MAX_STOCK}),
    );
    set(
        doc,
        &field("StockUpdate", "stock"),
        json!({"maximum": MAX_STOCK}),
    );
    set(
        doc,
        &field("StockUpdate", "delta"),
        json!({
            "minimum": -(MAX_STOCK as i64),
            "maximum": MAX_STOCK,
            "description": "Change of the available units; the result must stay between 0 (409 below, as units are reserved) and 1,000,000,000 (422 above).",
        }),
    );
    exactly_one_of(doc, "StockUpdate", ["stock", "delta"]);

    // order-svc, payment-svc
    set(
        doc,
        &field("OrderLineIn", "product_id"),
        json!({"format": "uuid", "description": "A product of the catalog (422 otherwise)."}),
    );
    set(
        doc,
        &field("OrderLineIn", "quantity"),
        json!({"maximum": 100, "description": "At most `ORDER_MAX_UNITS_PER_LINE` (stated here: its default, 100)."}),
    );
    *at(doc, &field("OrderCreate", "shipping_address")) = schema_ref("AddressIn");
    set(
        doc,
        &field("OrderCreate", "notes"),
        json!({"maxLength": 1000}),
    );
    set(
        doc,
        &field("CardIn", "number"),
        json!({"pattern": "^[0-9]{12,19}$", "description": "12 to 19 digits passing the Luhn check (422 otherwise)."}),
    );
    set(
        doc,
        &field("CardIn", "cvc"),
        json!({"pattern": "^[0-9]{3,4}$"}),
    );
    set(
        doc,
        &field("CardIn", "exp_month"),
        json!({"minimum": 1, "maximum": 12}),
    );
    set(
        doc,
        &field("CardIn", "exp_year"),
        json!({"minimum": year, "maximum": year + 50, "description": "Not expired: this month or later, at most 50 years ahead."}),
    );
    // This year only from this month on.
    let card = at(doc, "/components/schemas/CardIn").take();
    *at(doc, "/components/schemas/CardIn") = json!({"allOf": [card, {"anyOf": [
        {"type": "object", "properties": {"exp_year": {"type": "integer", "minimum": year + 1}}},
        {"type": "object", "properties": {"exp_month": {"type": "integer", "minimum": month}}},
    ]}]});
    *at(doc, &field("RefundCreate", "amount")) = nullable_ref("AmountIn");

    // cart-svc
    set(
        doc,
        &field("CartItemIn", "quantity"),
        json!({"maximum": 100, "description": "At least 1; the line may hold at most `ORDER_MAX_UNITS_PER_LINE` (stated here: its default, 100)."}),
    );
    set(
        doc,
        &field("CartQuantityIn", "quantity"),
        json!({"maximum": 100, "description": "0 removes the line; at most `ORDER_MAX_UNITS_PER_LINE` (its default, 100)."}),
    );
    set(
        doc,
        &field("CartItemIn", "product_id"),
        json!({"maxLength": 64, "description": "A product of the catalog (404 otherwise)."}),
    );
    *at(doc, &field("CheckoutIn", "shipping_address")) = schema_ref("AddressIn");
    *at(doc, &field("CheckoutIn", "card")) = nullable_ref("CardIn");
    set(
        doc,
        "/components/schemas/RefundCreate",
        json!({"description": "Over-refunding is 409; an amount in another currency than the payment's is 422."}),
    );

    // notification-svc, shipping-svc
    set(
        doc,
        &field("PushSubscriptionIn", "endpoint"),
        json!({
            "maxLength": 2048,
            "pattern": r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+(com|net|org|io|dev)(/[!-~]*)?$",
            "description": "The https URL of a public push service, by DNS name.",
        }),
    );
    set(
        doc,
        &field("PushKeysIn", "p256dh"),
        json!({"pattern": "^B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]$", "description": "Uncompressed P-256 public key, base64url."}),
    );
    set(
        doc,
        &field("PushKeysIn", "auth"),
        json!({"pattern": "^[A-Za-z0-9_-]{21}[AQgw]$", "description": "16 bytes, base64url."}),
    );
    set(
        doc,
        &field("CarrierUpdate", "status"),
        json!({"enum": ["IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"]}),
    );

    parameter_rules(doc);
    text_rules(doc);
    unsigned_rules(doc);
    output_formats(doc);
}

/// Exactly one of two nullable members is given: the object becomes
/// `allOf` itself and a `oneOf` (utoipa's objects hold no `oneOf`).
pub(super) fn exactly_one_of(doc: &mut Value, schema: &str, [a, b]: [&str; 2]) {
    let pointer = format!("/components/schemas/{schema}");
    let mut object = at(doc, &pointer).take();
    let description = object.as_object_mut().and_then(|o| o.remove("description"));
    let one = |given: &str, absent: &str| json!({"type": "object", "required": [given], "properties": {given: {"type": "integer"}, absent: {"type": "null"}}});
    let mut all = json!({"allOf": [object, {"oneOf": [one(a, b), one(b, a)]}]});
    if let Some(description) = description {
        all["description"] = description;
    }
    *at(doc, &pointer) = all;
}
