//! The OpenAPI document. Paths come from the handlers' own annotations as
//! they are routed (utoipa-axum), so the document cannot drift from what
//! the gateway serves. Once they are in, [`CommonErrors`] adds the errors
//! every operation shares, then the rules the services enforce on input
//! (lengths, ranges, patterns: a request the document allows is one the API
//! takes) and an example of every request body and main response.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopmesh",
        version = "1.0.0",
        description = "E-commerce API. Errors are RFC 9457 problem documents (application/problem+json)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "The caller's profile"),
        (name = "products", description = "Catalog, stock and reviews"),
        (name = "orders", description = "Orders and paying for them"),
        (name = "payments", description = "Payments and refunds"),
        (name = "notifications", description = "The caller's notifications"),
        (name = "recommendations", description = "Personalised recommendations and the model behind them"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Errors any API operation can answer, documented on every one: a body
/// that is not JSON (415), malformed (400) or too large (413); the rate
/// limit (429); a dependency down (503) or too slow (504). Applied after
/// the routes have added their paths; it then applies [`input_rules`] and
/// [`examples`].
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        let retry_after = || {
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before trying again"))
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    let response = operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(description).into());
                    // Documented by the route or here: these always say when to retry.
                    if let (true, utoipa::openapi::RefOr::T(response)) =
                        (matches!(status, "429" | "503"), response)
                    {
                        response
                            .headers
                            .entry("Retry-After".to_string())
                            .or_insert_with(retry_after);
                    }
                };
                if operation.request_body.is_some() {
                    add("400", "Malformed body");
                    add("413", "Body larger than 1 MiB");
                    add("415", "Unsupported content type");
                }
                add("429", "Rate limited (see Retry-After)");
                add("503", "A dependency is unavailable (see Retry-After)");
                add("504", "The request took too long");
            }
        }
        rules_and_examples(openapi);
    }
}

/// Text fields take no control characters but newline and tab (422 on
/// every backend): the pattern of every string input that has none of its
/// own.
const TEXT: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";
/// Text that must hold more than white space (it is trimmed, then required).
const NON_BLANK: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";
/// One line: no control characters at all.
const LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// One line holding more than white space.
const NON_BLANK_LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// Highest stock a product may have (product-svc `MAX_STOCK`).
const MAX_STOCK: u64 = 1_000_000_000;

/// The input rules and examples, written on the document's JSON form and
/// read back; anything utoipa's model could not hold is a bug here, so it
/// must come back unchanged.
fn rules_and_examples(openapi: &mut utoipa::openapi::OpenApi) {
    let mut doc = serde_json::to_value(&*openapi).expect("the document is JSON");
    let today = year_month();
    input_rules(&mut doc, today);
    examples(&mut doc, today);
    *openapi = serde_json::from_value(doc.clone()).expect("the rules keep the document readable");
    assert_eq!(
        serde_json::to_value(&*openapi).expect("the document is JSON"),
        doc,
        "an input rule or example does not fit utoipa's model"
    );
}

/// This year and month (UTC), as payment-svc judges card expiry.
fn year_month() -> (u64, u64) {
    let today = platform::auth::rfc3339(platform::auth::unix_now() as i64);
    let number =
        |range: std::ops::Range<usize>| today.get(range).and_then(|s| s.parse().ok()).unwrap_or(1);
    (number(0..4), number(5..7))
}

fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the OpenAPI document has no {pointer}"))
}

/// Sets the keywords of `rules` on the schema at `pointer`.
fn set(doc: &mut Value, pointer: &str, rules: Value) {
    let Value::Object(target) = at(doc, pointer) else {
        panic!("{pointer} is not a schema object");
    };
    let Value::Object(rules) = rules else {
        panic!("the rules for {pointer} are not an object");
    };
    target.extend(rules);
}

fn field(schema: &str, property: &str) -> String {
    format!("/components/schemas/{schema}/properties/{property}")
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn nullable_ref(name: &str) -> Value {
    json!({"oneOf": [{"type": "null"}, schema_ref(name)]})
}

/// What each service checks of its input, stated in the schemas. Where a
/// rule cannot be stated (a card number's Luhn digit, a cursor's
/// signature, a product that must exist) the description says it.
fn input_rules(doc: &mut Value, (year, month): (u64, u64)) {
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
        set(
            doc,
            &field(schema, "image_urls"),
            json!({"maxItems": 10, "items": {
                "type": "string",
                "maxLength": 2048,
                "pattern": "^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$",
            }}),
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
fn exactly_one_of(doc: &mut Value, schema: &str, [a, b]: [&str; 2]) {
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

/// Rules of parameters, by path and name.
fn parameter_rules(doc: &mut Value) {
    let paths = at(doc, "/paths").as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        let operations = item.as_object_mut().expect("path item").values_mut();
        for parameter in operations
            .filter_map(|op| op.get_mut("parameters"))
            .filter_map(Value::as_array_mut)
            .flatten()
        {
            let name = parameter["name"].as_str().unwrap_or_default().to_string();
            let rules = match (path.as_str(), parameter["in"].as_str(), name.as_str()) {
                (_, Some("path"), "id") => json!({"type": "string", "format": "uuid"}),
                (_, Some("header"), "Idempotency-Key") => json!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                }),
                (_, Some("header"), "X-Signature") => {
                    json!({"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"})
                }
                (_, Some("query"), "cursor") => json!({
                    "type": "string",
                    "pattern": "^([A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+)?$",
                    "description": "`next_cursor` of the previous page of the same query (signed: any other value is 422).",
                }),
                (_, Some("query"), "q") => {
                    json!({"type": "string", "maxLength": 200, "pattern": TEXT})
                }
                ("/api/v1/products", Some("query"), "category") => {
                    json!({"type": "string", "pattern": "^[A-Za-z0-9-]{0,50}$"})
                }
                ("/api/v1/recommendations", Some("query"), "category") => {
                    json!({"type": "string", "maxLength": 64, "pattern": LINE})
                }
                _ => continue,
            };
            let Value::Object(mut rules) = rules else {
                unreachable!("rules are objects");
            };
            if let Some(description) = rules.remove("description") {
                parameter["description"] = description;
            }
            let schema = parameter
                .get_mut("schema")
                .and_then(Value::as_object_mut)
                .expect("parameter schema");
            // `Option<String>` headers come out as `["string", "null"]`.
            schema.remove("type");
            schema.extend(rules);
        }
    }
}

/// The text rule on every string input that states no pattern, format or
/// values of its own, and on the names and strings of members a body
/// carries beyond its own.
fn text_rules(doc: &mut Value) {
    fn strings(schema: &mut Value, top: bool, extra: &Value) {
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        let is_string = match &object.get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
            _ => false,
        };
        if is_string
            && !["pattern", "format", "enum"]
                .iter()
                .any(|k| object.contains_key(*k))
        {
            object.insert("pattern".into(), TEXT.into());
        }
        if top && object.contains_key("properties") {
            object.insert(
                "propertyNames".into(),
                json!({"type": "string", "pattern": TEXT}),
            );
            object.insert("additionalProperties".into(), extra.clone());
        }
        for (key, value) in object.iter_mut() {
            match key.as_str() {
                "properties" => value
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|p| p.values_mut())
                    .for_each(|p| strings(p, false, extra)),
                "items" => strings(value, false, extra),
                "allOf" => value
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .for_each(|s| strings(s, top, extra)),
                "oneOf" | "anyOf" => value
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .for_each(|s| strings(s, false, extra)),
                _ => {}
            }
        }
    }
    let mut inputs = std::collections::BTreeSet::new();
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
            referenced(&operation["requestBody"], &mut inputs);
        }
    }
    loop {
        let before = inputs.len();
        for name in inputs.clone() {
            referenced(&doc["components"]["schemas"][&name], &mut inputs);
        }
        if inputs.len() == before {
            break;
        }
    }
    inputs.remove("ExtraMember");
    let extra = schema_ref("ExtraMember");
    for name in &inputs {
        strings(
            at(doc, &format!("/components/schemas/{name}")),
            true,
            &extra,
        );
    }
    let paths = at(doc, "/paths").as_object_mut().expect("paths");
    for parameter in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten()
    {
        if let Some(schema) = parameter.get_mut("schema") {
            strings(schema, false, &Value::Null);
        }
    }
}

/// Names of the component schemas `value` refers to.
fn referenced(value: &Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(name) = object
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                names.insert(name.to_string());
            }
            object.values().for_each(|v| referenced(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| referenced(v, names)),
        _ => {}
    }
}

/// utoipa writes `u32` as `int32` from 0, which would cap it at
/// 2,147,483,647: unbounded ones are given their real range.
fn unsigned_rules(doc: &mut Value) {
    match doc {
        Value::Object(object) => {
            if object.get("format").and_then(Value::as_str) == Some("int32")
                && object.get("minimum").and_then(Value::as_u64) == Some(0)
                && !object.contains_key("maximum")
            {
                object.insert("format".into(), "int64".into());
                object.insert("maximum".into(), u32::MAX.into());
            }
            object.values_mut().for_each(unsigned_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_rules),
        _ => {}
    }
}

/// Formats of what the API answers: UUID ids, RFC 3339 times.
fn output_formats(doc: &mut Value) {
    let ids: &[(&str, &[&str])] = &[
        ("UserOut", &["id"]),
        ("ProductOut", &["id"]),
        ("ReviewOut", &["product_id", "user_id"]),
        ("OrderOut", &["id", "user_id"]),
        ("OrderItemOut", &["product_id"]),
        ("PaymentOut", &["id", "order_id"]),
        ("RefundOut", &["id", "payment_id", "order_id"]),
        ("ShipmentOut", &["id", "order_id"]),
    ];
    for (schema, fields) in ids {
        for name in *fields {
            set(doc, &field(schema, name), json!({"format": "uuid"}));
        }
    }
    let schemas = at(doc, "/components/schemas")
        .as_object_mut()
        .expect("schemas");
    for schema in schemas.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if matches!(
                name.as_str(),
                "created_at" | "updated_at" | "trained_at" | "at"
            ) && property["type"] == "string"
            {
                property["format"] = "date-time".into();
            }
        }
    }
}

/// An example of every request body and main response, on its schema and
/// on the operations that send or answer it.
fn examples(doc: &mut Value, (year, _): (u64, u64)) {
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
    let product_out = json!({
        "id": product, "sku": "MUG-001", "name": "Enamel mug", "description": "A 350 ml enamel mug.",
        "category": "kitchen", "price": price, "stock_available": 38, "rating_avg": 4.5, "rating_count": 2,
        "image_urls": ["https://cdn.example.com/mug-001.jpg"], "weight_grams": 280, "active": true,
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
                "category": "kitchen", "price": price, "stock": 40,
                "image_urls": ["https://cdn.example.com/mug-001.jpg"], "weight_grams": 280,
            }),
        ),
        ("PriceIn", price.clone()),
        (
            "ProductUpdate",
            json!({"price": {"amount": 1099, "currency": "USD"}, "active": true}),
        ),
        ("StockUpdate", json!({"delta": 10})),
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
                    "image_urls": [], "weight_grams": 280, "active": true, "created_at": time, "updated_at": time,
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(crate::api().1).unwrap()
    }

    #[test]
    fn every_request_body_and_main_response_has_an_example() {
        let doc = document();
        let mut missing = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let bodies = operation["requestBody"]["content"].as_object().into_iter();
                let answers = operation["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(status, _)| status.starts_with('2'))
                    .filter_map(|(_, r)| r["content"].as_object());
                for (media_type, media) in bodies.chain(answers).flatten() {
                    let documented = media.get("example").is_some()
                        || media.get("examples").is_some()
                        || !media_type.ends_with("json");
                    // Operations answers (`/health`…) are free-form.
                    if !documented && media["schema"].get("$ref").is_some() {
                        missing.push(format!("{method} {path} {media_type}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "without an example: {missing:?}");
    }

    fn members(doc: &Value, schema: &str) -> std::collections::BTreeSet<String> {
        let schema = &doc["components"]["schemas"][schema];
        let schema = schema["allOf"].get(0).unwrap_or(schema);
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn input_schemas_have_the_members_the_handlers_read() {
        let doc = document();
        assert_eq!(members(&doc, "AddressIn"), members(&doc, "AddressBody"));
        assert_eq!(members(&doc, "PriceIn"), members(&doc, "Money"));
        assert_eq!(members(&doc, "AmountIn"), members(&doc, "Money"));
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        use crate::extract::parse_json;
        use crate::routes::products::{ReviewCreate, StockUpdate};
        let review: ReviewCreate = parse_json(br#"{"rating": 4.0, "comment": "ok"}"#).unwrap();
        assert_eq!(review.rating, 4);
        let stock: StockUpdate = parse_json(br#"{"delta": -3e0, "stock": null}"#).unwrap();
        assert_eq!((stock.stock, stock.delta), (None, Some(-3)));
        let fraction = parse_json::<ReviewCreate>(br#"{"rating": 4.5}"#).unwrap_err();
        assert_eq!(
            (fraction.status, fraction.errors[0].field.as_str()),
            (422, "rating")
        );
        let negative = parse_json::<ReviewCreate>(br#"{"rating": -1.0}"#).unwrap_err();
        assert_eq!(
            (negative.status, negative.errors[0].field.as_str()),
            (422, "rating")
        );
        let text = parse_json::<StockUpdate>(br#"{"stock": "3"}"#).unwrap_err();
        assert_eq!((text.status, text.errors[0].field.as_str()), (422, "stock"));
        let large = parse_json::<StockUpdate>(br#"{"delta": 2147483648}"#).unwrap_err();
        assert_eq!(
            (large.status, large.errors[0].field.as_str()),
            (422, "delta")
        );
    }
}
