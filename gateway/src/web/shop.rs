//! The storefront: browse, search, product pages, cart, checkout,
//! orders, notifications, and the visitor's account.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use minijinja::{Value, context};
use platform::ErrorKind;
use serde::Deserialize;

use super::extract::{PageForm, SignedIn};
use super::pages::{
    error_page, failed, json_of, not_found, render, render_form, render_status, see_other,
    to_signin, value,
};
use super::session::{self, CART_COOKIE, REFRESH_COOKIE, SESSION_COOKIE, Visitor};
use crate::extract::{ApiJson, AuthUser, ClientAddr};
use crate::problem::{FieldError, Problem};
use crate::routes::cart::CartOwner;
use crate::routes::common::{ApiQuery, PageParams};
use crate::routes::users::AddressBody;
use crate::routes::{
    auth, cart, notifications, orders, payments, products, recommendations, reviews, users,
};
use crate::state::AppState;

/// Products on a page of search results.
const PAGE_SIZE: u32 = 12;

/// A whole number typed into a form field, or a 422 naming the field.
pub(super) fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, Problem> {
    text.trim().parse().map_err(|_| {
        Problem::new(ErrorKind::InvalidArgument, "the form has invalid fields").with_errors(vec![
            FieldError {
                field: field.into(),
                message: "must be a whole number".into(),
            },
        ])
    })
}

/// A path on this site to go on to after signing in (never elsewhere).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Distinct categories of the catalog's newest products, for browsing
/// (kept for a minute: a new category shows within that time).
async fn categories(state: &AppState) -> Value {
    const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);
    if let Some(names) = state.web().page_parts.get("categories", KEPT_FOR) {
        return names;
    }
    let params = products::ListParams {
        limit: Some(100),
        ..Default::default()
    };
    let Ok(list) = products::list(State(state.clone()), ApiQuery(params)).await else {
        return Value::from(Vec::<String>::new());
    };
    let mut names: Vec<String> = list.0.items.into_iter().map(|p| p.category).collect();
    names.sort();
    names.dedup();
    let names = Value::from(names);
    state
        .web()
        .page_parts
        .put("categories".into(), names.clone());
    names
}

pub async fn home(State(state): State<AppState>, visitor: Visitor) -> Response {
    // Picked for a signed-in customer; what is popular for anyone else.
    let recommended = match &visitor.user {
        Some(user) => {
            let params = recommendations::RecommendationParams {
                limit: Some(8),
                category: None,
            };
            recommendations::list(State(state.clone()), user.clone(), ApiQuery(params))
                .await
                .map(|list| list.0)
        }
        None => recommendations::popular(&state, 8).await,
    };
    let recommended = match recommended {
        Ok(list) if !list.items.is_empty() => Value::from_serialize(&list),
        Ok(_) => Value::UNDEFINED,
        Err(problem) => {
            tracing::warn!(detail = %problem.detail, "the home page shows no recommendations");
            Value::UNDEFINED
        }
    };
    let params = products::ListParams {
        limit: Some(8),
        ..Default::default()
    };
    let newest = match products::list(State(state.clone()), ApiQuery(params)).await {
        Ok(list) => value(list),
        Err(problem) => return error_page(&problem, Some(&visitor)),
    };
    render(
        "home.html",
        Some(&visitor),
        context! { recommended, newest, categories => categories(&state).await },
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct SearchQuery {
    q: Option<String>,
    category: Option<String>,
    cursor: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    visitor: Visitor,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_page(
            &Problem::new(ErrorKind::InvalidArgument, "invalid search"),
            Some(&visitor),
        );
    };
    let q = query.q.filter(|q| !q.trim().is_empty());
    let category = query.category.filter(|c| !c.is_empty());
    let params = products::ListParams {
        q: q.clone(),
        category: category.clone(),
        limit: Some(PAGE_SIZE),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    let results = match products::list(State(state.clone()), ApiQuery(params)).await {
        Ok(list) => list,
        Err(problem) => return error_page(&problem, Some(&visitor)),
    };
    let next = results.0.next_cursor.as_ref().map(|cursor| {
        let mut pairs = vec![("cursor", cursor.as_str())];
        pairs.extend(q.as_deref().map(|q| ("q", q)));
        pairs.extend(category.as_deref().map(|c| ("category", c)));
        format!(
            "/search?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    });
    render(
        "search.html",
        Some(&visitor),
        context! {
            q, category, next, results => value(results),
            categories => categories(&state).await,
        },
    )
}

pub async fn product(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Response {
    let product = match products::get(State(state.clone()), Path(id.clone())).await {
        Ok(product) => product,
        Err(problem) => return error_page(&problem, Some(&visitor)),
    };
    if !product.0.active {
        return not_found(&visitor, "product");
    }
    let extras = match state.web().page_parts.get(&id, EXTRAS_FOR) {
        Some(extras) => extras,
        None => {
            let page = PageParams {
                limit: Some(10),
                cursor: None,
            };
            let (reviews, similar) = tokio::join!(
                reviews::reviews(State(state.clone()), Path(id.clone()), ApiQuery(page)),
                recommendations::similar(
                    State(state.clone()),
                    Path(id.clone()),
                    ApiQuery(recommendations::SimilarParams { limit: Some(4) })
                ),
            );
            let complete = reviews.is_ok() && similar.is_ok();
            let extras = context! {
                reviews => reviews.map(value).unwrap_or_default(),
                similar => similar.map(value).unwrap_or_default(),
            };
            if complete {
                state.web().page_parts.put(id.clone(), extras.clone());
            }
            extras
        }
    };
    render(
        "product.html",
        Some(&visitor),
        context! { product => value(product), ..extras },
    )
}

/// How long a product page shows the same reviews and similar items
/// (the product itself, its price and stock are read each time). A review
/// posted through this gateway shows at once.
const EXTRAS_FOR: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    rating: String,
    #[serde(default)]
    comment: String,
}

pub async fn review(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<ReviewForm>,
) -> Response {
    let back = format!("/products/{id}");
    let body = match number("rating", &form.rating) {
        Ok(rating) => reviews::ReviewCreate {
            rating,
            comment: form.comment,
        },
        Err(problem) => return error_page(&problem, Some(&visitor)),
    };
    match reviews::add_review(State(state.clone()), user, Path(id.clone()), ApiJson(body)).await {
        Ok(_) => {
            state.web().page_parts.forget(&id);
            see_other(&visitor, &format!("{back}#reviews"))
        }
        Err(problem) => failed(problem, &visitor, &back),
    }
}

/// Whose cart the visitor has: their own when signed in, else the
/// guest cart of their cookie.
fn cart_owner(visitor: &Visitor) -> Option<CartOwner> {
    match (&visitor.user, &visitor.cart_token) {
        (Some(user), _) => Some(CartOwner::User(user.clone())),
        (None, Some(token)) => Some(CartOwner::Guest(token.clone())),
        (None, None) => None,
    }
}

fn forget_guest_cart(response: &mut Response, visitor: &Visitor) {
    response.headers_mut().append(
        header::SET_COOKIE,
        session::expired(CART_COOKIE, visitor.secure),
    );
}

pub async fn cart(State(state): State<AppState>, visitor: Visitor) -> Response {
    let Some(owner) = cart_owner(&visitor) else {
        return render(
            "cart.html",
            Some(&visitor),
            context! { cart => Value::UNDEFINED },
        );
    };
    match cart::get(State(state), owner).await {
        Ok(cart) => render(
            "cart.html",
            Some(&visitor),
            context! { cart => value(cart) },
        ),
        // An expired or merged guest cart: start afresh.
        Err(problem) if visitor.user.is_none() && matches!(problem.status, 401 | 409) => {
            let mut response = render(
                "cart.html",
                Some(&visitor),
                context! { cart => Value::UNDEFINED },
            );
            forget_guest_cart(&mut response, &visitor);
            response
        }
        Err(problem) => failed(problem, &visitor, "/cart"),
    }
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    product_id: String,
    #[serde(default)]
    quantity: Option<String>,
}

/// Adds to the cart, starting a guest cart (and its cookie) for a
/// visitor who has none.
pub async fn add_to_cart(
    State(state): State<AppState>,
    visitor: Visitor,
    PageForm(form): PageForm<AddForm>,
) -> Response {
    let quantity = match form.quantity.as_deref().map(|q| number("quantity", q)) {
        None => 1,
        Some(Ok(q)) => q,
        Some(Err(problem)) => return error_page(&problem, Some(&visitor)),
    };
    let mut new_token = None;
    let owner = match cart_owner(&visitor) {
        Some(owner) => owner,
        None => match guest_cart(&state).await {
            Ok(token) => {
                new_token = Some(token.clone());
                CartOwner::Guest(token)
            }
            Err(problem) => return error_page(&problem, Some(&visitor)),
        },
    };
    let body = cart::CartItemIn {
        product_id: form.product_id.clone(),
        quantity,
    };
    let mut answer = cart::add_item(State(state.clone()), owner, ApiJson(body)).await;
    // A guest cart that expired: a new one, once.
    if matches!(&answer, Err(p) if p.status == 401 || p.status == 409)
        && visitor.user.is_none()
        && new_token.is_none()
    {
        match guest_cart(&state).await {
            Ok(token) => {
                new_token = Some(token.clone());
                let body = cart::CartItemIn {
                    product_id: form.product_id.clone(),
                    quantity,
                };
                answer =
                    cart::add_item(State(state.clone()), CartOwner::Guest(token), ApiJson(body))
                        .await;
            }
            Err(problem) => return error_page(&problem, Some(&visitor)),
        }
    }
    let mut response = match answer {
        Ok(_) => see_other(&visitor, "/cart"),
        Err(problem) => failed(problem, &visitor, "/cart"),
    };
    if let Some(token) = new_token {
        let ttl = state.config().cart.guest_ttl;
        response.headers_mut().append(
            header::SET_COOKIE,
            session::cookie(CART_COOKIE, &token, Some(ttl), visitor.secure),
        );
    }
    response
}

async fn guest_cart(state: &AppState) -> Result<String, Problem> {
    let created = json_of(cart::create_guest(State(state.clone())).await?).await?;
    created
        .get_attr("cart_token")
        .ok()
        .and_then(|t| t.as_str().map(str::to_string))
        .ok_or_else(|| Problem::new(ErrorKind::Internal, "no cart token"))
}

#[derive(Debug, Deserialize)]
pub struct QuantityForm {
    quantity: String,
}

pub async fn set_quantity(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(product_id): Path<String>,
    PageForm(form): PageForm<QuantityForm>,
) -> Response {
    let Some(owner) = cart_owner(&visitor) else {
        return see_other(&visitor, "/cart");
    };
    let quantity = match number("quantity", &form.quantity) {
        Ok(q) => q,
        Err(problem) => return error_page(&problem, Some(&visitor)),
    };
    let body = cart::CartQuantityIn { quantity };
    match cart::set_item(State(state), owner, Path(product_id), ApiJson(body)).await {
        Ok(_) => see_other(&visitor, "/cart"),
        Err(problem) => failed(problem, &visitor, "/cart"),
    }
}

pub async fn remove_from_cart(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(product_id): Path<String>,
) -> Response {
    let Some(owner) = cart_owner(&visitor) else {
        return see_other(&visitor, "/cart");
    };
    match cart::remove_item(State(state), owner, Path(product_id)).await {
        Ok(_) => see_other(&visitor, "/cart"),
        Err(problem) => failed(problem, &visitor, "/cart"),
    }
}

/// The lines of an address as a form has them (the name is the form's).
#[derive(Debug, Deserialize, serde::Serialize, Default, Clone)]
pub struct AddressLines {
    #[serde(default)]
    line1: String,
    #[serde(default)]
    line2: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    country: String,
}

impl AddressLines {
    fn with_name(&self, name: &str) -> AddressBody {
        AddressBody {
            name: name.to_string(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.trim().to_ascii_uppercase(),
        }
    }

    fn of(a: AddressBody) -> (String, AddressLines) {
        let lines = AddressLines {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        };
        (a.name, lines)
    }
}

/// What the checkout form was filled with (kept when it is shown again
/// with errors; the card's CVC is not).
#[derive(Debug, Deserialize, serde::Serialize, Default)]
pub struct CheckoutForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    address: AddressLines,
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp_month: String,
    #[serde(default)]
    exp_year: String,
    #[serde(default, skip_serializing)]
    cvc: String,
}

async fn checkout_page(
    state: &AppState,
    visitor: &Visitor,
    user: AuthUser,
    form: CheckoutForm,
    problem: Option<Problem>,
) -> Response {
    let cart = match cart::get(State(state.clone()), CartOwner::User(user)).await {
        Ok(cart) => cart,
        Err(problem) => return failed(problem, visitor, "/checkout"),
    };
    render_form(
        problem.as_ref(),
        "checkout.html",
        Some(visitor),
        context! {
            cart => value(cart),
            form => Value::from_serialize(&form),
        },
    )
}

pub async fn checkout_form(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
) -> Response {
    let mut form = CheckoutForm {
        key: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    if let Ok(me) = users::me(State(state.clone()), user.clone()).await {
        let me = me.0;
        form.name = me.name;
        if let Some(a) = me.address {
            (form.name, form.address) = AddressLines::of(a);
        }
    }
    checkout_page(&state, &visitor, user, form, None).await
}

/// The card of a form, or a 422 naming the field that is not a number.
fn card_of(
    number_text: &str,
    month: &str,
    year: &str,
    cvc: &str,
) -> Result<payments::CardIn, Problem> {
    Ok(payments::CardIn {
        number: number_text.chars().filter(|c| !c.is_whitespace()).collect(),
        exp_month: number("card.exp_month", month)?,
        exp_year: number("card.exp_year", year)?,
        cvc: cvc.trim().to_string(),
    })
}

fn idempotency(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(key.trim()) {
        headers.insert("idempotency-key", value);
    }
    headers
}

pub async fn checkout(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    PageForm(form): PageForm<CheckoutForm>,
) -> Response {
    let card = match card_of(
        &form.card_number,
        &form.exp_month,
        &form.exp_year,
        &form.cvc,
    ) {
        Ok(card) => card,
        Err(problem) => return checkout_page(&state, &visitor, user, form, Some(problem)).await,
    };
    let body = cart::CheckoutIn {
        shipping_address: form.address.with_name(&form.name),
        card: Some(card),
    };
    let answer = cart::checkout(
        State(state.clone()),
        user.clone(),
        idempotency(&form.key),
        ApiJson(body),
    )
    .await;
    let done = match answer {
        Ok(response) => json_of(response).await,
        Err(problem) => Err(problem),
    };
    match done {
        Ok(done) => {
            let id = done
                .get_attr("order")
                .and_then(|o| o.get_attr("id"))
                .map(|id| id.to_string())
                .unwrap_or_default();
            see_other(&visitor, &format!("/orders/{id}"))
        }
        Err(problem) if problem.status == 401 => to_signin(&visitor, "/checkout"),
        Err(problem) => checkout_page(&state, &visitor, user, form, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct CursorQuery {
    cursor: Option<String>,
}

pub async fn orders(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Query(query): Query<CursorQuery>,
) -> Response {
    let params = crate::routes::common::ListParams {
        user_id: None,
        limit: Some(20),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    match orders::list(State(state), user, ApiQuery(params)).await {
        Ok(list) => render(
            "orders.html",
            Some(&visitor),
            context! { orders => value(list) },
        ),
        Err(problem) => failed(problem, &visitor, "/orders"),
    }
}

/// The latest payment of an order, when it has one.
pub(super) async fn latest_payment(state: &AppState, user: &AuthUser, order_id: &str) -> Value {
    let params = crate::routes::common::ListParams {
        user_id: None,
        limit: Some(50),
        cursor: None,
    };
    let Ok(list) =
        payments::list_payments(State(state.clone()), user.clone(), ApiQuery(params)).await
    else {
        return Value::UNDEFINED;
    };
    list.0
        .items
        .into_iter()
        .filter(|p| p.order_id == order_id)
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
        .map(|p| Value::from_serialize(&p))
        .unwrap_or_default()
}

async fn order_page(
    state: &AppState,
    visitor: &Visitor,
    user: AuthUser,
    id: String,
    problem: Option<Problem>,
) -> Response {
    let back = format!("/orders/{id}");
    let order = match orders::get(State(state.clone()), user.clone(), Path(id.clone())).await {
        Ok(order) => order,
        Err(problem) => return failed(problem, visitor, &back),
    };
    let (payment, shipment) = tokio::join!(
        latest_payment(state, &user, &id),
        crate::routes::shipping::shipment(State(state.clone()), user.clone(), Path(id.clone())),
    );
    render_form(
        problem.as_ref(),
        "order.html",
        Some(visitor),
        context! {
            order => value(order),
            payment,
            shipment => shipment.map(value).unwrap_or_default(),
            key => uuid::Uuid::now_v7().to_string(),
        },
    )
}

pub async fn order(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Response {
    order_page(&state, &visitor, user, id, None).await
}

#[derive(Debug, Deserialize)]
pub struct PayForm {
    #[serde(default)]
    key: String,
    card_number: String,
    exp_month: String,
    exp_year: String,
    cvc: String,
}

pub async fn pay(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    PageForm(form): PageForm<PayForm>,
) -> Response {
    let back = format!("/orders/{id}");
    let card = match card_of(
        &form.card_number,
        &form.exp_month,
        &form.exp_year,
        &form.cvc,
    ) {
        Ok(card) => card,
        Err(problem) => return order_page(&state, &visitor, user, id, Some(problem)).await,
    };
    let answer = orders::pay(
        State(state.clone()),
        user.clone(),
        Path(id.clone()),
        idempotency(&form.key),
        ApiJson(payments::PaymentCreate { card }),
    )
    .await;
    match answer {
        // Paid or declined: the order page tells which.
        Ok(_) => see_other(&visitor, &back),
        Err(problem) if problem.status == 401 => to_signin(&visitor, &back),
        Err(problem) => order_page(&state, &visitor, user, id, Some(problem)).await,
    }
}

pub async fn cancel(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Response {
    let back = format!("/orders/{id}");
    match orders::cancel(State(state.clone()), user.clone(), Path(id.clone())).await {
        Ok(_) => see_other(&visitor, &back),
        Err(problem) if problem.status == 401 => to_signin(&visitor, &back),
        Err(problem) => order_page(&state, &visitor, user, id, Some(problem)).await,
    }
}

pub async fn notifications(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Query(query): Query<CursorQuery>,
) -> Response {
    let params = PageParams {
        limit: Some(50),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    match notifications::list(State(state), user, ApiQuery(params)).await {
        Ok(list) => render(
            "notifications.html",
            Some(&visitor),
            context! { notifications => value(list) },
        ),
        Err(problem) => failed(problem, &visitor, "/notifications"),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn signin_form(visitor: Visitor, Query(query): Query<NextQuery>) -> Response {
    render(
        "signin.html",
        Some(&visitor),
        context! { next => local_path(query.next.as_deref()), email => "" },
    )
}

#[derive(Debug, Deserialize)]
pub struct SigninForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// Signs in with `email` and `password` through the API's login (its
/// failed-login limits apply), sets the session cookies and moves a
/// guest cart into the customer's.
async fn start_session(
    state: &AppState,
    visitor: &Visitor,
    addr: ClientAddr,
    email: &str,
    password: &str,
    next: &str,
) -> Result<Response, Problem> {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    let request = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
        .map_err(|e| Problem::new(ErrorKind::Internal, e.to_string()))?;
    let response = auth::login(State(state.clone()), addr, request).await?;
    let tokens = json_of(response).await?;
    let text = |name: &str| {
        tokens
            .get_attr(name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let pair = auth::TokenPair {
        access_token: text("access_token"),
        refresh_token: text("refresh_token"),
        token_type: text("token_type"),
        expires_in: 0,
    };
    let claims = state
        .mesh()
        .verify_user_token(&pair.access_token)
        .await
        .map_err(|_| Problem::new(ErrorKind::Unavailable, "cannot sign in right now"))?;
    let user = AuthUser(claims, pair.access_token.as_str().into());
    let mut response = see_other(visitor, next);
    let headers = response.headers_mut();
    for value in session::session_cookies(&pair, state.config().jwt.refresh_ttl, visitor.secure) {
        headers.append(header::SET_COOKIE, value);
    }
    if let Some(token) = &visitor.cart_token {
        let merge = cart::CartMergeIn {
            cart_token: token.clone(),
        };
        // An expired guest cart has nothing to bring along.
        if let Err(problem) = cart::merge(State(state.clone()), user, ApiJson(merge)).await {
            tracing::info!(detail = %problem.detail, "a guest cart was not merged at sign-in");
        }
        forget_guest_cart(&mut response, visitor);
    }
    Ok(response)
}

pub async fn signin(
    State(state): State<AppState>,
    visitor: Visitor,
    addr: ClientAddr,
    PageForm(form): PageForm<SigninForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    match start_session(&state, &visitor, addr, &form.email, &form.password, &next).await {
        Ok(response) => response,
        Err(problem) => {
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let error = if problem.status == 401 {
                "Wrong email or password.".to_string()
            } else {
                problem.detail
            };
            render_status(
                status,
                "signin.html",
                Some(&visitor),
                context! { next, email => form.email, error },
            )
        }
    }
}

pub async fn signup_form(visitor: Visitor, Query(query): Query<NextQuery>) -> Response {
    render(
        "signup.html",
        Some(&visitor),
        context! { next => local_path(query.next.as_deref()) },
    )
}

#[derive(Debug, Deserialize)]
pub struct SignupForm {
    name: String,
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn signup(
    State(state): State<AppState>,
    visitor: Visitor,
    addr: ClientAddr,
    PageForm(form): PageForm<SignupForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let body = auth::RegisterBody {
        email: form.email.clone(),
        password: form.password.clone(),
        name: form.name.clone(),
    };
    let made = match auth::register(State(state.clone()), ApiJson(body)).await {
        Ok(_) => start_session(&state, &visitor, addr, &form.email, &form.password, &next).await,
        Err(problem) => Err(problem),
    };
    match made {
        Ok(response) => response,
        Err(problem) => render_form(
            Some(&problem),
            "signup.html",
            Some(&visitor),
            context! { next, name => form.name, email => form.email },
        ),
    }
}

/// Ends the session: its refresh token is revoked and the cookies go.
pub async fn signout(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
) -> Response {
    let jar = session::cookies(&headers);
    if let (Some(user), Some(refresh)) = (&visitor.user, jar.get(REFRESH_COOKIE)) {
        let body = auth::RefreshBody {
            refresh_token: refresh.clone(),
        };
        if let Err(problem) = auth::logout(State(state), user.clone(), ApiJson(body)).await {
            tracing::warn!(detail = %problem.detail, "signing out: the refresh token was not revoked");
        }
    }
    let mut response = see_other(&visitor, "/");
    for name in [SESSION_COOKIE, REFRESH_COOKIE] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session::expired(name, visitor.secure));
    }
    response
}

#[derive(Debug, Deserialize, Default)]
pub struct SavedQuery {
    saved: Option<String>,
}

pub async fn account(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    Query(query): Query<SavedQuery>,
) -> Response {
    match users::me(State(state), user).await {
        Ok(me) => render(
            "account.html",
            Some(&visitor),
            context! { me => value(me), saved => query.saved.is_some() },
        ),
        Err(problem) => failed(problem, &visitor, "/account"),
    }
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct AccountForm {
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(flatten)]
    address: AddressLines,
}

pub async fn update_account(
    State(state): State<AppState>,
    visitor: Visitor,
    SignedIn(user): SignedIn,
    PageForm(form): PageForm<AccountForm>,
) -> Response {
    let address =
        (!form.address.line1.trim().is_empty()).then(|| form.address.with_name(&form.name));
    let body = users::ProfileUpdate {
        name: Some(form.name.clone()),
        phone: Some(form.phone.clone()),
        address: Some(address),
    };
    match users::update_me(State(state), user, ApiJson(body)).await {
        Ok(_) => see_other(&visitor, "/account?saved=1"),
        Err(problem) if problem.status == 401 => to_signin(&visitor, "/account"),
        Err(problem) => {
            let me = serde_json::json!({
                "name": form.name, "phone": form.phone, "address": form.address,
            });
            render_form(
                Some(&problem),
                "account.html",
                Some(&visitor),
                context! { me => Value::from_serialize(&me) },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_after_sign_in() {
        assert_eq!(local_path(Some("/checkout")), "/checkout");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
