//! The OpenAPI document. Paths come from the handlers' own annotations as
//! they are routed (utoipa-axum), so the document cannot drift from what
//! the gateway serves.

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
/// the routes have added their paths.
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
    }
}
