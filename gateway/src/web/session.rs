//! Browser sessions for the pages: cookies that carry the access and
//! refresh tokens, refreshed with the rotating refresh token, and the CSRF
//! checks of every request that changes something.
//!
//! The JSON API never reads these cookies (it stays Bearer-only); this
//! middleware runs on the page routes alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use platform::ErrorKind;
use platform::auth::{ROLE_SERVICE, TokenError, VerifyError};
use sha2::Digest as _;

use crate::extract::{AuthUser, Authentication};
use crate::problem::Problem;
use crate::routes::auth::TokenPair;
use crate::state::AppState;

/// The access token (a JWT, HttpOnly).
pub const SESSION_COOKIE: &str = "sm_session";
/// The refresh token (HttpOnly), rotated on every refresh.
pub const REFRESH_COOKIE: &str = "sm_refresh";
/// The CSRF secret; pages repeat it in each form (double submit).
pub const CSRF_COOKIE: &str = "sm_csrf";
/// A guest's cart token.
pub const CART_COOKIE: &str = "sm_cart";
/// The form field, and the header htmx sends, carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Largest form body read to find its CSRF token.
const FORM_LIMIT: usize = 64 * 1024;

/// What a page knows about its visitor.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub user: Option<AuthUser>,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    pub cart_token: Option<String>,
    /// Cookies get `Secure` (anything but localhost).
    pub secure: bool,
    /// The request came from htmx (`HX-Request`).
    pub htmx: bool,
}

/// The CSRF token of a multipart form is its first part, checked by the
/// handler that reads the form (the middleware does not buffer uploads).
#[derive(Debug, Clone)]
pub struct CsrfDeferred;

/// Refreshes already made, by hash of the refresh token they used: a
/// second request presenting the same (now rotated) refresh token within
/// a short while gets the same new pair instead of tripping the
/// reuse detection that would revoke the whole session. A page loads
/// with several requests at once, each carrying the old cookie.
#[derive(Debug, Default)]
pub struct Refreshes {
    recent: Mutex<HashMap<[u8; 32], (Instant, TokenPair)>>,
    /// One refresh per token at a time.
    flight: tokio::sync::Mutex<()>,
}

const REFRESH_MEMORY: Duration = Duration::from_secs(30);

impl Refreshes {
    async fn refresh(&self, state: &AppState, token: &str) -> Result<TokenPair, Problem> {
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let _one = self.flight.lock().await;
        if let Some(pair) = self.remembered(&key) {
            return Ok(pair);
        }
        let pair = crate::routes::auth::refresh_pair(state, token.to_string()).await?;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, (at, _)| at.elapsed() < REFRESH_MEMORY);
        recent.insert(key, (Instant::now(), pair.clone()));
        Ok(pair)
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<TokenPair> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(key)
            .filter(|(at, _)| at.elapsed() < REFRESH_MEMORY)
            .map(|(_, pair)| pair.clone())
    }
}

/// The cookies of a request, by name (the first of each name).
pub fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                out.entry(name.trim().to_string())
                    .or_insert_with(|| v.trim().to_string());
            }
        }
    }
    out
}

/// Whether the page is served to a name other than localhost (cookies
/// then get `Secure`).
fn is_secure(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    !matches!(name, "localhost" | "127.0.0.1" | "[::1]") && !name.ends_with(".localhost")
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, whole site.
pub fn cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A `Set-Cookie` value that removes the cookie.
pub fn expired(name: &str, secure: bool) -> HeaderValue {
    cookie(name, "", Some(Duration::ZERO), secure)
}

/// The cookies of a signed-in session.
pub fn session_cookies(pair: &TokenPair, refresh_ttl: Duration, secure: bool) -> [HeaderValue; 2] {
    [
        cookie(
            SESSION_COOKIE,
            &pair.access_token,
            Some(refresh_ttl),
            secure,
        ),
        cookie(
            REFRESH_COOKIE,
            &pair.refresh_token,
            Some(refresh_ttl),
            secure,
        ),
    ]
}

fn new_csrf() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn well_formed_token(value: &str) -> bool {
    (1..=2048).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 403 for a request that changes something without proof it came from
/// one of our pages.
fn forbidden(why: &str) -> Response {
    super::pages::error_page(&Problem::new(ErrorKind::PermissionDenied, why), None)
}

/// The request's origin is this site (or not said, as by old browsers
/// and non-browser clients, whose requests carry no cookies of ours
/// unless they were given them).
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Checks the CSRF token of a request that changes something: the header
/// htmx sends, or the `csrf` field of a URL-encoded form (read here and
/// put back), or, for multipart forms, left to the handler.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    if !same_origin(request.headers()) {
        return Err(forbidden("this form was sent from another site"));
    }
    if let Some(sent) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if same(sent, expected) {
            Ok(request)
        } else {
            Err(forbidden(
                "the form has expired; reload the page and try again",
            ))
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut request = request;
        request.extensions_mut().insert(CsrfDeferred);
        return Ok(request);
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(forbidden(
            "the form has expired; reload the page and try again",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        super::pages::error_page(
            &Problem::new(ErrorKind::PayloadTooLarge, "the form is too large"),
            None,
        )
    })?;
    let sent = form_field(&bytes, CSRF_FIELD);
    if !sent.is_some_and(|sent| same(&sent, expected)) {
        return Err(forbidden(
            "the form has expired; reload the page and try again",
        ));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// The value of `name` in a URL-encoded form.
pub fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Checks the CSRF token sent as the value of a multipart form's first part.
pub fn deferred_token_ok(visitor: &Visitor, sent: &str) -> bool {
    same(sent, &visitor.csrf)
}

/// Finds the visitor from the cookies (refreshing an expired session),
/// refuses unsafe requests without a valid CSRF token, and sets the
/// cookies that changed.
pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let jar = cookies(request.headers());
    let secure = is_secure(request.headers());
    let mut set: Vec<HeaderValue> = Vec::new();

    let csrf = match jar
        .get(CSRF_COOKIE)
        .filter(|v| v.len() == 43 && well_formed_token(v))
    {
        Some(value) => value.clone(),
        None => {
            let value = new_csrf();
            set.push(cookie(CSRF_COOKIE, &value, None, secure));
            value
        }
    };

    let access = jar.get(SESSION_COOKIE).filter(|v| well_formed_token(v));
    let refresh = jar.get(REFRESH_COOKIE).filter(|v| well_formed_token(v));
    let mut authentication = None;
    let mut renew = access.is_none() && refresh.is_some();
    if let Some(token) = access {
        let verified = state.mesh().verify_user_token(token).await;
        match verified {
            Ok(claims) if claims.role != ROLE_SERVICE => {
                authentication = Some(Authentication::Valid(claims, token.as_str().into()));
            }
            Ok(_) => {}
            Err(VerifyError::Token(TokenError::Expired)) => renew = refresh.is_some(),
            Err(VerifyError::Token(_)) => {}
            Err(VerifyError::Unavailable) => authentication = Some(Authentication::Unavailable),
        }
    }
    if renew && let Some(refresh) = refresh {
        match state.web().refreshes.refresh(&state, refresh).await {
            Ok(pair) => match state.mesh().verify_user_token(&pair.access_token).await {
                Ok(claims) => {
                    set.extend(session_cookies(
                        &pair,
                        state.config().jwt.refresh_ttl,
                        secure,
                    ));
                    authentication = Some(Authentication::Valid(
                        claims,
                        pair.access_token.as_str().into(),
                    ));
                }
                Err(_) => authentication = Some(Authentication::Unavailable),
            },
            Err(problem) if problem.status == 401 => {
                set.push(expired(SESSION_COOKIE, secure));
                set.push(expired(REFRESH_COOKIE, secure));
            }
            Err(_) => authentication = Some(Authentication::Unavailable),
        }
    } else if access.is_some() && authentication.is_none() {
        // A session cookie that no longer verifies and cannot be renewed.
        set.push(expired(SESSION_COOKIE, secure));
    }

    let user = match &authentication {
        Some(Authentication::Valid(claims, token)) => Some(AuthUser(claims.clone(), token.clone())),
        _ => None,
    };
    if let Some(authentication) = authentication {
        request.extensions_mut().insert(authentication);
    }
    let visitor = Visitor {
        user,
        csrf: csrf.clone(),
        cart_token: jar
            .get(CART_COOKIE)
            .filter(|v| well_formed_token(v))
            .cloned(),
        secure,
        htmx: request.headers().contains_key("hx-request"),
    };
    request.extensions_mut().insert(visitor);

    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = if unsafe_method {
        match check_csrf(request, &csrf).await {
            Ok(request) => next.run(request).await,
            Err(refused) => refused,
        }
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for value in set {
        headers.append(header::SET_COOKIE, value);
    }
    // Pages are per visitor.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    response
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Visitor>().cloned().ok_or_else(|| {
            Problem::new(ErrorKind::Internal, "the page has no session").into_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_are_parsed_first_name_wins() {
        let h = headers(&[("cookie", "a=1; b=2"), ("cookie", "a=3;c=x=y")]);
        let jar = cookies(&h);
        assert_eq!(jar["a"], "1");
        assert_eq!(jar["b"], "2");
        assert_eq!(jar["c"], "x=y");
    }

    #[test]
    fn secure_outside_localhost() {
        assert!(!is_secure(&headers(&[("host", "localhost:8080")])));
        assert!(!is_secure(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!is_secure(&headers(&[("host", "shop.localhost")])));
        assert!(is_secure(&headers(&[("host", "shop.example.com")])));
        let c = cookie("n", "v", Some(Duration::from_secs(5)), true);
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"),
            "{c}"
        );
    }

    #[test]
    fn other_origins_are_refused() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!well_formed_token("a b"));
        assert!(!well_formed_token(""));
        assert!(well_formed_token(&new_csrf()));
        assert_eq!(new_csrf().len(), 43);
    }
}
