//! What page handlers take from a request, with pages as rejections: the
//! signed-in customer (else the sign-in page), an admin (else 403), and a
//! form (else a page saying what is wrong with it).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::Response;
use platform::ErrorKind;

use super::pages::{error_page, to_signin};
use super::session::Visitor;
use crate::extract::{AdminUser, AuthUser};
use crate::problem::Problem;

fn visitor(parts: &Parts) -> Result<Visitor, Response> {
    parts.extensions.get::<Visitor>().cloned().ok_or_else(|| {
        error_page(
            &Problem::new(ErrorKind::Internal, "the page has no session"),
            None,
        )
    })
}

/// Where to come back to after signing in: this page, or for a form the
/// page it was sent from (when that is on this site).
fn back_to(parts: &Parts) -> String {
    if parts.method == Method::GET {
        return parts
            .uri
            .path_and_query()
            .map_or("/".into(), |p| p.as_str().to_string());
    }
    parts
        .headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|referer| referer.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))
        .unwrap_or_else(|| "/".into())
}

/// The signed-in customer (or admin).
pub struct SignedIn(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let visitor = visitor(parts)?;
        match visitor.user {
            Some(user) => Ok(SignedIn(user)),
            None => Err(to_signin(&visitor, &back_to(parts))),
        }
    }
}

/// A signed-in admin; the sign-in page without a session, 403 for
/// anyone else.
pub struct Admin(pub AdminUser);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let visitor = visitor(parts)?;
        match &visitor.user {
            None => Err(to_signin(&visitor, &back_to(parts))),
            Some(user) if user.is_admin() => Ok(Admin(AdminUser(user.clone()))),
            Some(_) => Err(error_page(
                &Problem::new(ErrorKind::PermissionDenied, "these pages are for admins"),
                Some(&visitor),
            )),
        }
    }
}

/// A URL-encoded form; one that does not parse is a 422 page saying why.
pub struct PageForm<T>(pub T);

impl<T, S> FromRequest<S> for PageForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let visitor = request.extensions().get::<Visitor>().cloned();
        match Form::<T>::from_request(request, state).await {
            Ok(Form(form)) => Ok(PageForm(form)),
            Err(rejection) => Err(bad_form(rejection, visitor.as_ref())),
        }
    }
}

fn bad_form(rejection: FormRejection, visitor: Option<&Visitor>) -> Response {
    error_page(
        &Problem::new(ErrorKind::InvalidArgument, rejection.body_text()),
        visitor,
    )
}
