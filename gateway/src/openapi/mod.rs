//! The OpenAPI document. Paths come from the handlers' own annotations as
//! they are routed (utoipa-axum), so the document cannot drift from what
//! the gateway serves. Once they are in, [`CommonErrors`] adds the errors
//! every operation shares, then the rules the services enforce on input
//! (lengths, ranges, patterns: a request the document allows is one the API
//! takes) and an example of every request body and main response.

mod examples;
mod inputs;
mod params;
#[cfg(test)]
mod tests;

use examples::examples;
use inputs::input_rules;
use params::{output_formats, parameter_rules, text_rules, unsigned_rules};
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
        (name = "media", description = "Stored images and their thumbnails (no /api/v1 prefix)"),
        (name = "cart", description = "Carts of guests and customers, and checkout"),
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
pub(super) const TEXT: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";
/// Text that must hold more than white space (it is trimmed, then required).
pub(super) const NON_BLANK: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$";
/// One line: no control characters at all.
pub(super) const LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// One line holding more than white space.
pub(super) const NON_BLANK_LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";
/// Highest stock a product may have (product-svc `MAX_STOCK`).
pub(super) const MAX_STOCK: u64 = 1_000_000_000;

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
pub(super) fn year_month() -> (u64, u64) {
    let today = platform::clock::rfc3339(platform::clock::now().secs());
    let number =
        |range: std::ops::Range<usize>| today.get(range).and_then(|s| s.parse().ok()).unwrap_or(1);
    (number(0..4), number(5..7))
}

pub(super) fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the OpenAPI document has no {pointer}"))
}

/// Sets the keywords of `rules` on the schema at `pointer`.
pub(super) fn set(doc: &mut Value, pointer: &str, rules: Value) {
    let Value::Object(target) = at(doc, pointer) else {
        panic!("{pointer} is not a schema object");
    };
    let Value::Object(rules) = rules else {
        panic!("the rules for {pointer} are not an object");
    };
    target.extend(rules);
}

pub(super) fn field(schema: &str, property: &str) -> String {
    format!("/components/schemas/{schema}/properties/{property}")
}

pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub(super) fn nullable_ref(name: &str) -> Value {
    json!({"oneOf": [{"type": "null"}, schema_ref(name)]})
}
