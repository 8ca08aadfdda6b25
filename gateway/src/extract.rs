//! Request extractors whose rejections are problem documents: JSON bodies
//! (400 malformed, 415 wrong content type, 413 too large, 422 wrong types
//! or missing fields with the field named), the authenticated caller, and
//! the client address.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use platform::ErrorKind;
use platform::auth::{Caller, Claims};
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// A JSON body, parsed with the failing field named.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Reads the body within the configured limit (413 beyond it).
pub(crate) async fn body_bytes<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<bytes::Bytes, Problem> {
    bytes::Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ErrorKind::PayloadTooLarge,
                    "the request body is larger than 1 MiB",
                )
            } else {
                Problem::new(
                    ErrorKind::Malformed,
                    format!("cannot read the request body: {rejection}"),
                )
            }
        })
}

/// Parses JSON, telling syntax errors (400) from wrong shapes (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Every body of this API is an object; serde would also take a struct
    // as an array of its fields.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(Problem::new(
                ErrorKind::InvalidArgument,
                "the request body must be a JSON object",
            )
            .with_errors(vec![FieldError {
                field: String::new(),
                message: "expected a JSON object".into(),
            }]));
        }
        _ => {
            return Err(Problem::new(
                ErrorKind::Malformed,
                "malformed JSON: expected a JSON object",
            ));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let field = if path == "." { String::new() } else { path };
                    let message = inner.to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(&message)
                        .to_string();
                    Problem::new(
                        ErrorKind::InvalidArgument,
                        "the request body has invalid fields",
                    )
                    .with_errors(vec![FieldError { field, message }])
                }
                _ => Problem::new(ErrorKind::Malformed, format!("malformed JSON: {inner}")),
            });
        }
    };
    deserializer
        .end()
        .map_err(|e| Problem::new(ErrorKind::Malformed, format!("malformed JSON: {e}")))?;
    if platform::text::json_may_hold_forbidden(bytes) {
        let document: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Problem::new(ErrorKind::Malformed, format!("malformed JSON: {e}")))?;
        if let Some(field) = platform::text::forbidden_in_json(&document) {
            return Err(control_characters(field));
        }
    }
    Ok(value)
}

/// 422 naming the first field of URL-encoded `input` (a query string or a
/// form) whose name or value holds a control character.
pub fn refuse_control_characters(input: &[u8]) -> Result<(), Problem> {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(input) else {
        // Malformed input is the typed parse's to report.
        return Ok(());
    };
    match pairs.into_iter().find(|(k, v)| {
        platform::text::forbidden_char(k).is_some() || platform::text::forbidden_char(v).is_some()
    }) {
        Some((name, _)) => Err(control_characters(name)),
        None => Ok(()),
    }
}

/// 422 for text holding NUL or another control character.
pub fn control_characters(field: String) -> Problem {
    Problem::new(ErrorKind::InvalidArgument, "the request has invalid fields").with_errors(vec![
        FieldError {
            field,
            message: "must not contain control characters (newline and tab are allowed)".into(),
        },
    ])
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !is_json(content_type.as_deref()) {
            return Err(Problem::new(
                ErrorKind::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The verified caller (401 without a valid access token).
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims, pub std::sync::Arc<str>);

impl AuthUser {
    /// The user, whose access token is forwarded to the services so they
    /// verify it themselves.
    pub fn caller(&self) -> Caller {
        Caller::user(&self.0, &self.1)
    }

    pub fn is_admin(&self) -> bool {
        self.0.is_admin()
    }

    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Problem::new(
                ErrorKind::PermissionDenied,
                "this requires the admin role",
            ))
        }
    }
}

/// What the authentication middleware found, kept in request extensions.
#[derive(Debug, Clone)]
pub(crate) enum Authentication {
    /// Verified claims and the token itself.
    Valid(Claims, std::sync::Arc<str>),
    Invalid(&'static str),
    /// The keys to check it could not be fetched.
    Unavailable,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::Valid(claims, token)) => {
                Ok(AuthUser(claims.clone(), token.clone()))
            }
            Some(Authentication::Invalid(why)) => {
                Err(Problem::new(ErrorKind::Unauthenticated, *why).bearer_challenge())
            }
            Some(Authentication::Unavailable) => Err(Problem::new(
                ErrorKind::Unavailable,
                "cannot verify access tokens right now; try again shortly",
            )),
            None => Err(Problem::new(
                ErrorKind::Unauthenticated,
                "an access token is required (Authorization: Bearer …)",
            )
            .bearer_challenge()),
        }
    }
}

/// An admin caller (401 without a token, 403 for other roles).
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require_admin()?;
        Ok(AdminUser(user))
    }
}

/// The client's address: the socket peer, or with `TRUSTED_PROXY_HOPS=N`
/// the address N entries from the right of `X-Forwarded-For`: the one the
/// outermost trusted proxy saw. Entries to its left are written by the
/// client and never trusted; a header with fewer entries than trusted
/// proxies did not come through all of them, so the peer is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

#[derive(Debug, Clone, Copy)]
pub(crate) struct TrustedProxyHops(pub usize);

pub(crate) fn client_addr(
    parts: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> String {
    let hops = extensions.get::<TrustedProxyHops>().map_or(0, |t| t.0);
    if hops > 0
        && let Some(addr) = forwarded_client(parts, hops)
    {
        return addr;
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The `X-Forwarded-For` entry `hops` from the right, over every such
/// header in order; `None` when there are fewer entries or it is not an
/// IP address.
fn forwarded_client(headers: &axum::http::HeaderMap, hops: usize) -> Option<String> {
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        entries.extend(value.to_str().ok()?.split(',').map(str::trim));
    }
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.headers, &parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u32,
    }

    fn forwarded(values: &[&str]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_address_is_the_one_the_outermost_trusted_proxy_saw() {
        // The client wrote 6.6.6.6; the ingress appended what it saw.
        let h = forwarded(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(forwarded_client(&h, 1).as_deref(), Some("203.0.113.7"));
        // Two proxies: CDN then ingress.
        let h = forwarded(&["6.6.6.6, 203.0.113.7", "198.51.100.2"]);
        assert_eq!(forwarded_client(&h, 2).as_deref(), Some("203.0.113.7"));
        assert_eq!(forwarded_client(&h, 1).as_deref(), Some("198.51.100.2"));
        // Fewer entries than trusted proxies, or garbage: not an address.
        assert_eq!(forwarded_client(&forwarded(&["203.0.113.7"]), 2), None);
        assert_eq!(forwarded_client(&forwarded(&["a, not-an-ip"]), 1), None);
        assert_eq!(forwarded_client(&axum::http::HeaderMap::new(), 1), None);
        let v6 = forwarded(&["2001:db8::1"]);
        assert_eq!(forwarded_client(&v6, 1).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn json_errors_are_told_apart() {
        assert!(parse_json::<Body>(br#"{"email":"a","age":3}"#).is_ok());
        let malformed = parse_json::<Body>(b"{\"email\":").unwrap_err();
        assert_eq!(malformed.status, 400);
        let wrong_type = parse_json::<Body>(br#"{"email":"a","age":"three"}"#).unwrap_err();
        assert_eq!(wrong_type.status, 422);
        assert_eq!(wrong_type.errors[0].field, "age");
        let missing = parse_json::<Body>(br#"{"email":"a"}"#).unwrap_err();
        assert_eq!(missing.status, 422);
        assert!(
            missing.errors[0].message.contains("age"),
            "{:?}",
            missing.errors
        );
        assert_eq!(parse_json::<Body>(b"[1,2]").unwrap_err().status, 422);
        assert_eq!(
            parse_json::<Body>(br#"["a", 3]"#).unwrap_err().status,
            422,
            "no structs from arrays"
        );
        assert_eq!(parse_json::<Body>(b"").unwrap_err().status, 400);
        assert_eq!(parse_json::<Body>(b"<xml/>").unwrap_err().status, 400);
        assert_eq!(
            parse_json::<Body>(br#"{"email":"a","age":3} trailing"#)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
