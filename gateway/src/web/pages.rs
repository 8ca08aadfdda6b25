//! Rendering: the templates (built into the binary), the context every
//! page gets, error pages, and turning what a REST handler answers into
//! something a template reads.

use std::sync::OnceLock;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};
use platform::ErrorKind;
use serde::Serialize;

use super::session::Visitor;
use crate::problem::Problem;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../web/templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "macros.html",
    "error.html",
    "home.html",
    "search.html",
    "product.html",
    "cart.html",
    "checkout.html",
    "orders.html",
    "order.html",
    "notifications.html",
    "signin.html",
    "signup.html",
    "account.html",
    "admin/base.html",
    "admin/dashboard.html",
    "admin/products.html",
    "admin/product.html",
    "admin/orders.html",
    "admin/order.html",
    "admin/payments.html",
    "admin/recommendations.html",
    "admin/promotions.html",
    "admin/dead_letters.html",
    "admin/flags.html",
);

/// `12.5 USD` style amounts from `{amount, currency}` in minor units.
fn money(value: Value) -> String {
    let amount = value
        .get_attr("amount")
        .ok()
        .and_then(|a| i64::try_from(a).ok())
        .unwrap_or_default();
    let currency = value
        .get_attr("currency")
        .ok()
        .and_then(|c| c.as_str().map(str::to_string))
        .unwrap_or_else(|| "USD".into());
    let sign = if amount < 0 { "-" } else { "" };
    let cents = amount.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", cents / 100, cents % 100)
}

/// `{amount: 1250}` as `12.50`, for a form field.
fn decimal(value: Value) -> String {
    let amount = value
        .get_attr("amount")
        .ok()
        .and_then(|a| i64::try_from(a).ok())
        .unwrap_or_default();
    format!("{}.{:02}", amount / 100, (amount % 100).abs())
}

/// `2026-12-06T21:30:38Z` as `2026-12-06 21:30 UTC`.
fn when(value: String) -> String {
    match (value.get(..10), value.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => value,
    }
}

/// Words for a status code: `PENDING_PAYMENT` as `Pending payment`.
fn status_words(value: String) -> String {
    let lower = value.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => lower,
    }
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(err) = env.add_template(name, source) {
                // Templates are part of the binary; the unit test below
                // renders each, so this is a build mistake.
                tracing::error!(template = name, error = %err, "a page template does not parse");
            }
        }
        env.add_filter("money", money);
        env.add_filter("when", when);
        env.add_filter("decimal", decimal);
        env.add_filter("status_words", status_words);
        env
    })
}

/// Renders `template` for `visitor` with `page` (a map of the page's
/// own values) and the values every page has.
pub fn render(template: &str, visitor: Option<&Visitor>, page: Value) -> Response {
    render_status(StatusCode::OK, template, visitor, page)
}

pub fn render_status(
    status: StatusCode,
    template: &str,
    visitor: Option<&Visitor>,
    page: Value,
) -> Response {
    let user = visitor.and_then(|v| v.user.as_ref());
    let common = context! {
        signed_in => user.is_some(),
        admin => user.is_some_and(|u| u.is_admin()),
        csrf => visitor.map(|v| v.csrf.clone()).unwrap_or_default(),
    };
    let env = environment();
    let rendered = env
        .get_template(template)
        .and_then(|t| t.render(context! { ..page, ..common }));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><html lang=\"en\"><title>Error</title><h1>Something went wrong</h1></html>"),
            )
                .into_response()
        }
    }
}

/// Renders a page whose form may have been refused: with the problem's
/// status, its detail as `error` and its fields' messages as `errors`.
pub fn render_form(
    problem: Option<&Problem>,
    template: &str,
    visitor: Option<&Visitor>,
    page: Value,
) -> Response {
    let status = problem
        .and_then(|p| StatusCode::from_u16(p.status).ok())
        .unwrap_or(StatusCode::OK);
    let outcome = context! {
        error => problem.map(|p| p.detail.clone()),
        errors => problem.map(field_errors),
    };
    render_status(status, template, visitor, context! { ..page, ..outcome })
}

/// A page telling what went wrong, with the problem's status.
pub fn error_page(problem: &Problem, visitor: Option<&Visitor>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = render_status(
        status,
        "error.html",
        visitor,
        context! { title => &problem.title, detail => &problem.detail, status => problem.status },
    );
    if let Some(secs) = problem.retry_after_secs
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A page's failure: an error page, or the sign-in page for a visitor
/// who must sign in first.
pub fn failed(problem: Problem, visitor: &Visitor, back_to: &str) -> Response {
    if problem.status == 401 {
        return to_signin(visitor, back_to);
    }
    error_page(&problem, Some(visitor))
}

/// Sign in first, then come back to `back_to`.
pub fn to_signin(visitor: &Visitor, back_to: &str) -> Response {
    let next = serde_urlencoded::to_string([("next", back_to)]).unwrap_or_default();
    see_other(visitor, &format!("/signin?{next}"))
}

/// After a form is handled: `303 See Other` (with htmx, `HX-Location`
/// so it swaps the new page in without a full load).
pub fn see_other(visitor: &Visitor, to: &str) -> Response {
    if visitor.htmx {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) =
            HeaderValue::from_str(&serde_json::json!({"path": to, "target": "body"}).to_string())
        {
            response.headers_mut().insert("hx-location", value);
        }
        response
    } else {
        Redirect::to(to).into_response()
    }
}

/// A handler's JSON answer as a template value.
pub fn value<T: Serialize>(answer: Json<T>) -> Value {
    Value::from_serialize(&answer.0)
}

/// The JSON body of a handler's response (one that adds a status or
/// headers to its JSON) as a template value.
pub async fn json_of(response: Response) -> Result<Value, Problem> {
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(|e| Problem::new(ErrorKind::Internal, format!("reading an answer: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::new(ErrorKind::Internal, format!("reading an answer: {e}")))?;
    Ok(Value::from_serialize(&json))
}

/// Field errors of a problem as `{field: message}`, for messages shown
/// beside the fields.
pub fn field_errors(problem: &Problem) -> Value {
    let map: std::collections::BTreeMap<String, String> = problem
        .errors
        .iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect();
    Value::from_serialize(&map)
}

/// 404 page for the pages' own paths.
pub fn not_found(visitor: &Visitor, what: &str) -> Response {
    error_page(
        &Problem::new(ErrorKind::NotFound, format!("{what} not found")),
        Some(visitor),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        // Every file under web/templates is compiled in.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/templates");
        let mut on_disk = Vec::new();
        for dir in [root.clone(), root.join("admin")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "html") {
                    let name = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string();
                    on_disk.push(name);
                }
            }
        }
        for name in &on_disk {
            assert!(
                TEMPLATES.iter().any(|(n, _)| n == name),
                "{name} is not in TEMPLATES"
            );
        }
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn filters() {
        let m = Value::from_serialize(serde_json::json!({"amount": 1205, "currency": "EUR"}));
        assert_eq!(money(m), "12.05 EUR");
        let m = Value::from_serialize(serde_json::json!({"amount": -5, "currency": "USD"}));
        assert_eq!(money(m), "-0.05 USD");
        assert_eq!(when("2026-12-06T21:30:38Z".into()), "2026-12-06 21:30 UTC");
        assert_eq!(status_words("PENDING_PAYMENT".into()), "Pending payment");
    }

    #[test]
    fn text_is_escaped() {
        let html = environment()
            .get_template("error.html")
            .unwrap()
            .render(context! { title => "<script>x</script>", detail => "a&b", csrf => "" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;"), "{html}");
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("a&amp;b"), "{html}");
    }
}
