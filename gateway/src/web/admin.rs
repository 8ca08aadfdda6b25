//! The admin pages (`/admin`, admins only): products with stock and
//! images, orders with cancel and refund, payments, shipments (and the
//! carrier's signed updates where the webhook secret is set),
//! recommendations, dead letters with replay, and the mesh's health.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use minijinja::{Value, context};
use platform::ErrorKind;
use serde::Deserialize;

use super::extract::{Admin, PageForm};
use super::pages::{error_page, json_of, render, render_form, see_other, to_signin, value};
use super::session::{CsrfDeferred, Visitor, deferred_token_ok};
use super::shop::{latest_payment, number};
use crate::extract::{AdminUser, ApiJson};
use crate::problem::{FieldError, Problem};
use crate::routes::common::{ApiQuery, Money};
use crate::routes::{media, orders, payments, products, recommendations, shipping};
use crate::state::AppState;

/// A problem as a page, or the sign-in page when the session ended.
fn failed(problem: Problem, visitor: &Visitor, back: &str) -> Response {
    super::pages::failed(problem, visitor, back)
}

/// `12.50` typed into a form, in minor units.
fn cents(field: &str, text: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem::new(ErrorKind::InvalidArgument, "the form has invalid fields").with_errors(vec![
            FieldError {
                field: field.into(),
                message: "must be an amount such as 12.50".into(),
            },
        ])
    };
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

pub async fn dashboard(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
) -> Response {
    let health = crate::ops::dependencies(State(state)).await;
    render(
        "admin/dashboard.html",
        Some(&visitor),
        context! { health => Value::from_serialize(&health.0) },
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct ProductQuery {
    q: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize, Default)]
pub struct ProductForm {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    stock: String,
    #[serde(default)]
    weight_grams: String,
    #[serde(default)]
    active: Option<String>,
}

async fn products_page(
    state: &AppState,
    visitor: &Visitor,
    query: ProductQuery,
    form: ProductForm,
    problem: Option<Problem>,
) -> Response {
    let params = products::ListParams {
        q: query.q.clone().filter(|q| !q.is_empty()),
        category: None,
        limit: Some(25),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    let list = match products::list(State(state.clone()), ApiQuery(params)).await {
        Ok(list) => list,
        Err(problem) => return failed(problem, visitor, "/admin/products"),
    };
    let next = list.0.next_cursor.as_ref().map(|c| {
        let mut pairs = vec![("cursor", c.as_str())];
        pairs.extend(query.q.as_deref().map(|q| ("q", q)));
        format!(
            "/admin/products?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    });
    render_form(
        problem.as_ref(),
        "admin/products.html",
        Some(visitor),
        context! {
            products => value(list), next, q => query.q,
            form => Value::from_serialize(&form),
        },
    )
}

pub async fn products(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
    Query(query): Query<ProductQuery>,
) -> Response {
    let form = ProductForm {
        currency: "USD".into(),
        stock: "0".into(),
        ..Default::default()
    };
    products_page(&state, &visitor, query, form, None).await
}

pub async fn create_product(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    PageForm(form): PageForm<ProductForm>,
) -> Response {
    let body = (|| {
        Ok::<_, Problem>(products::ProductCreate {
            sku: form.sku.clone(),
            name: form.name.clone(),
            description: form.description.clone(),
            category: form.category.clone(),
            price: Money {
                amount: cents("price", &form.price)?,
                currency: form.currency.trim().to_ascii_uppercase(),
            },
            stock: number(
                "stock",
                if form.stock.trim().is_empty() {
                    "0"
                } else {
                    &form.stock
                },
            )?,
            weight_grams: number(
                "weight_grams",
                if form.weight_grams.trim().is_empty() {
                    "0"
                } else {
                    &form.weight_grams
                },
            )?,
        })
    })();
    let made = match body {
        Ok(body) => match products::create(State(state.clone()), admin, ApiJson(body)).await {
            Ok(response) => json_of(response).await,
            Err(problem) => Err(problem),
        },
        Err(problem) => Err(problem),
    };
    match made {
        Ok(product) => {
            let id = product
                .get_attr("id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            see_other(&visitor, &format!("/admin/products/{id}"))
        }
        Err(problem) if problem.status == 401 => to_signin(&visitor, "/admin/products"),
        Err(problem) => {
            products_page(
                &state,
                &visitor,
                ProductQuery::default(),
                form,
                Some(problem),
            )
            .await
        }
    }
}

async fn product_page(
    state: &AppState,
    visitor: &Visitor,
    id: &str,
    problem: Option<Problem>,
) -> Response {
    let product = match products::get(State(state.clone()), Path(id.to_string())).await {
        Ok(product) => product,
        Err(problem) => return failed(problem, visitor, "/admin/products"),
    };
    render_form(
        problem.as_ref(),
        "admin/product.html",
        Some(visitor),
        context! {
            product => value(product),
        },
    )
}

pub async fn product(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Response {
    product_page(&state, &visitor, &id, None).await
}

pub async fn update_product(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
    PageForm(form): PageForm<ProductForm>,
) -> Response {
    let back = format!("/admin/products/{id}");
    let body = (|| {
        Ok::<_, Problem>(products::ProductUpdate {
            sku: None,
            name: Some(form.name.clone()),
            description: Some(form.description.clone()),
            category: Some(form.category.clone()),
            price: Some(Money {
                amount: cents("price", &form.price)?,
                currency: form.currency.trim().to_ascii_uppercase(),
            }),
            weight_grams: Some(number("weight_grams", &form.weight_grams)?),
            active: Some(form.active.is_some()),
        })
    })();
    let done = match body {
        Ok(body) => products::update(State(state.clone()), admin, Path(id.clone()), ApiJson(body))
            .await
            .map(|_| ()),
        Err(problem) => Err(problem),
    };
    match done {
        Ok(()) => see_other(&visitor, &back),
        Err(problem) if problem.status == 401 => to_signin(&visitor, &back),
        Err(problem) => product_page(&state, &visitor, &id, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct StockForm {
    stock: String,
}

pub async fn set_stock(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
    PageForm(form): PageForm<StockForm>,
) -> Response {
    let back = format!("/admin/products/{id}");
    let done = match number("stock", &form.stock) {
        Ok(stock) => {
            let body = products::StockUpdate {
                stock: Some(stock),
                delta: None,
            };
            products::stock(State(state.clone()), admin, Path(id.clone()), ApiJson(body))
                .await
                .map(|_| ())
        }
        Err(problem) => Err(problem),
    };
    match done {
        Ok(()) => see_other(&visitor, &back),
        Err(problem) if problem.status == 401 => to_signin(&visitor, &back),
        Err(problem) => product_page(&state, &visitor, &id, Some(problem)).await,
    }
}

/// An image upload: the form's first part is its CSRF token, then the
/// rest goes through the API's upload as it streams.
pub async fn upload_image(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    deferred: Option<axum::Extension<CsrfDeferred>>,
    Path(id): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let back = format!("/admin/products/{id}");
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(rejection) => {
            return error_page(
                &Problem::new(ErrorKind::UnsupportedMediaType, rejection.body_text()),
                Some(&visitor),
            );
        }
    };
    if deferred.is_some() {
        let token = match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some(super::session::CSRF_FIELD) => {
                field.text().await.unwrap_or_default()
            }
            _ => String::new(),
        };
        if !deferred_token_ok(&visitor, &token) {
            return error_page(
                &Problem::new(
                    ErrorKind::PermissionDenied,
                    "the form has expired; reload the page and try again",
                ),
                Some(&visitor),
            );
        }
    }
    match media::upload(State(state.clone()), admin, Path(id.clone()), Ok(multipart)).await {
        Ok(_) => see_other(&visitor, &back),
        Err(problem) if problem.status == 401 => to_signin(&visitor, &back),
        Err(problem) => product_page(&state, &visitor, &id, Some(problem)).await,
    }
}

pub async fn delete_image(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path((id, image_id)): Path<(String, String)>,
) -> Response {
    let back = format!("/admin/products/{id}");
    match media::delete(State(state.clone()), admin, Path((id.clone(), image_id))).await {
        Ok(_) => see_other(&visitor, &back),
        Err(problem) => product_page(&state, &visitor, &id, Some(problem)).await,
    }
}

/// Makes an image the primary one (the others keep their order).
pub async fn image_first(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path((id, image_id)): Path<(String, String)>,
) -> Response {
    let back = format!("/admin/products/{id}");
    let product = match products::get(State(state.clone()), Path(id.clone())).await {
        Ok(product) => product.0,
        Err(problem) => return failed(problem, &visitor, &back),
    };
    let mut ids: Vec<String> = product.images.into_iter().map(|i| i.id).collect();
    if let Some(at) = ids.iter().position(|i| *i == image_id) {
        let first = ids.remove(at);
        ids.insert(0, first);
    }
    let body = media::ImageOrder { image_ids: ids };
    match media::order(State(state.clone()), admin, Path(id.clone()), ApiJson(body)).await {
        Ok(_) => see_other(&visitor, &back),
        Err(problem) => product_page(&state, &visitor, &id, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct OrderQuery {
    /// An order id to open, or a user id whose orders to list.
    find: Option<String>,
    cursor: Option<String>,
}

pub async fn orders(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Query(query): Query<OrderQuery>,
) -> Response {
    let find = query
        .find
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty());
    // An order's id opens it; anything else lists that user's orders.
    if let Some(id) = &find
        && uuid::Uuid::parse_str(id).is_ok()
        && orders::get(State(state.clone()), admin.0.clone(), Path(id.clone()))
            .await
            .is_ok()
    {
        return see_other(&visitor, &format!("/admin/orders/{id}"));
    }
    let params = crate::routes::common::ListParams {
        user_id: find.clone(),
        limit: Some(25),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    match orders::list(State(state), admin.0, ApiQuery(params)).await {
        Ok(list) => render(
            "admin/orders.html",
            Some(&visitor),
            context! { orders => value(list), find },
        ),
        Err(problem) if problem.status == 401 => to_signin(&visitor, "/admin/orders"),
        Err(problem) => render_form(
            Some(&problem),
            "admin/orders.html",
            Some(&visitor),
            context! { find },
        ),
    }
}

async fn order_page(
    state: &AppState,
    visitor: &Visitor,
    admin: &AdminUser,
    id: &str,
    problem: Option<Problem>,
) -> Response {
    let back = format!("/admin/orders/{id}");
    let order = match orders::get(State(state.clone()), admin.0.clone(), Path(id.to_string())).await
    {
        Ok(order) => order,
        Err(problem) => return failed(problem, visitor, &back),
    };
    let (payment, shipment) = tokio::join!(
        async {
            // The customer's payments, read with the admin's rights.
            let params = crate::routes::common::ListParams {
                user_id: Some(order.0.user_id.clone()),
                limit: Some(50),
                cursor: None,
            };
            match payments::list_payments(State(state.clone()), admin.0.clone(), ApiQuery(params))
                .await
            {
                Ok(list) => list
                    .0
                    .items
                    .into_iter()
                    .filter(|p| p.order_id == id)
                    .max_by(|a, b| a.created_at.cmp(&b.created_at))
                    .map(|p| Value::from_serialize(&p))
                    .unwrap_or_default(),
                Err(_) => latest_payment(state, &admin.0, id).await,
            }
        },
        shipping::shipment(State(state.clone()), admin.0.clone(), Path(id.to_string())),
    );
    render_form(
        problem.as_ref(),
        "admin/order.html",
        Some(visitor),
        context! {
            order => value(order), payment,
            shipment => shipment.map(value).unwrap_or_default(),
            carrier => state.config().integrations.shipping_webhook_secret.is_some(),
            key => uuid::Uuid::now_v7().to_string(),
        },
    )
}

pub async fn order(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Response {
    order_page(&state, &visitor, &admin, &id, None).await
}

pub async fn cancel_order(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Response {
    let back = format!("/admin/orders/{id}");
    match orders::cancel(State(state.clone()), admin.0.clone(), Path(id.clone())).await {
        Ok(_) => see_other(&visitor, &back),
        Err(problem) => order_page(&state, &visitor, &admin, &id, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct RefundForm {
    payment_id: String,
    #[serde(default)]
    key: String,
    /// Empty: everything not refunded yet.
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    reason: String,
}

pub async fn refund(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
    PageForm(form): PageForm<RefundForm>,
) -> Response {
    let back = format!("/admin/orders/{id}");
    let amount = match form.amount.trim() {
        "" => Ok(None),
        text => cents("amount", text).map(|amount| {
            Some(Money {
                amount,
                currency: form.currency.clone(),
            })
        }),
    };
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(form.key.trim()) {
        headers.insert("idempotency-key", value);
    }
    let done = match amount {
        Ok(amount) => {
            let body = payments::RefundCreate {
                amount,
                reason: form.reason.clone(),
            };
            payments::refund(
                State(state.clone()),
                admin.clone(),
                Path(form.payment_id.clone()),
                headers,
                ApiJson(body),
            )
            .await
            .map(|_| ())
        }
        Err(problem) => Err(problem),
    };
    match done {
        Ok(()) => see_other(&visitor, &back),
        Err(problem) => order_page(&state, &visitor, &admin, &id, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct CarrierForm {
    tracking_number: String,
    status: String,
    #[serde(default)]
    location: String,
}

/// Sends the carrier's signed status update through the public webhook,
/// as the carrier would (only where the webhook secret is configured).
pub async fn carrier_update(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Path(id): Path<String>,
    PageForm(form): PageForm<CarrierForm>,
) -> Response {
    let back = format!("/admin/orders/{id}");
    let Some(secret) = state.config().integrations.shipping_webhook_secret.clone() else {
        return order_page(
            &state,
            &visitor,
            &admin,
            &id,
            Some(Problem::new(
                ErrorKind::FailedPrecondition,
                "SHIPPING_WEBHOOK_SECRET is not set",
            )),
        )
        .await;
    };
    let body = serde_json::json!({
        "tracking_number": form.tracking_number, "status": form.status,
        "location": form.location, "description": "sent from the admin page",
    })
    .to_string();
    let signature = shipping::sign(secret.expose().as_bytes(), body.as_bytes());
    let request = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-signature", signature)
        .body(axum::body::Body::from(body));
    let done = match request {
        Ok(request) => shipping::webhook(State(state.clone()), request)
            .await
            .map(|_| ()),
        Err(e) => Err(Problem::new(ErrorKind::Internal, e.to_string())),
    };
    match done {
        Ok(()) => see_other(&visitor, &back),
        Err(problem) => order_page(&state, &visitor, &admin, &id, Some(problem)).await,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct CursorQuery {
    cursor: Option<String>,
}

pub async fn payments(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    Query(query): Query<CursorQuery>,
) -> Response {
    let params = crate::routes::common::ListParams {
        user_id: None,
        limit: Some(25),
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    match payments::list_payments(State(state), admin.0, ApiQuery(params)).await {
        Ok(list) => render(
            "admin/payments.html",
            Some(&visitor),
            context! { payments => value(list) },
        ),
        Err(problem) => failed(problem, &visitor, "/admin/payments"),
    }
}

pub async fn recommendations(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
) -> Response {
    let model = recommendations::model(State(state), admin).await;
    let (model, error) = match model {
        Ok(model) => (value(model), None),
        Err(problem) => (Value::UNDEFINED, Some(problem.detail)),
    };
    render(
        "admin/recommendations.html",
        Some(&visitor),
        context! { model, error },
    )
}

pub async fn train(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
) -> Response {
    match recommendations::train(State(state), admin).await {
        Ok(_) => see_other(&visitor, "/admin/recommendations?started=1"),
        Err(problem) => error_page(&problem, Some(&visitor)),
    }
}

#[derive(Debug, Deserialize, serde::Serialize, Default)]
pub struct PromotionForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    category: String,
    /// Made when the form is shown: sending the form twice starts one
    /// promotion.
    #[serde(default)]
    key: String,
}

async fn promotions_page(
    state: &AppState,
    visitor: &Visitor,
    admin: &AdminUser,
    form: PromotionForm,
    problem: Option<Problem>,
) -> Response {
    let (list, error) = match crate::routes::notifications::promotions(state, &admin.0).await {
        Ok(list) => (list, None),
        Err(problem) => (Vec::new(), Some(problem.detail)),
    };
    let promotions: Vec<serde_json::Value> = list
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id, "title": p.title, "category": p.category, "done": p.done,
                "sent": p.sent,
                "created_at": p.created_at.as_ref().map(|t| platform::clock::rfc3339(t.seconds)),
                "finished_at": p.finished_at.as_ref().map(|t| platform::clock::rfc3339(t.seconds)),
            })
        })
        .collect();
    let running = list.iter().any(|p| !p.done);
    let form = PromotionForm {
        key: uuid::Uuid::now_v7().to_string(),
        ..form
    };
    render_form(
        problem.as_ref(),
        "admin/promotions.html",
        Some(visitor),
        context! {
            promotions => Value::from_serialize(&promotions),
            running,
            form => Value::from_serialize(&form),
            list_error => error,
        },
    )
}

/// Promotions with their progress, and the form that starts one.
pub async fn promotions(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
) -> Response {
    promotions_page(&state, &visitor, &admin, PromotionForm::default(), None).await
}

pub async fn start_promotion(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(admin): Admin,
    PageForm(form): PageForm<PromotionForm>,
) -> Response {
    let request = proto::notification::StartPromotionRequest {
        title: form.title.clone(),
        body: form.body.clone(),
        category: form.category.clone(),
        idempotency_key: form.key.clone(),
    };
    match crate::routes::notifications::start_promotion(&state, &admin.0, request).await {
        Ok(_) => see_other(&visitor, "/admin/promotions"),
        Err(problem) if problem.status < 500 && problem.status != 401 && problem.status != 403 => {
            promotions_page(&state, &visitor, &admin, form, Some(problem)).await
        }
        Err(problem) => failed(problem, &visitor, "/admin/promotions"),
    }
}

/// The fault flags, what each threatens, and (in development) a switch.
pub async fn flags(State(state): State<AppState>, visitor: Visitor, Admin(_): Admin) -> Response {
    flags_page(&state, &visitor, None)
}

fn flags_page(state: &AppState, visitor: &Visitor, problem: Option<Problem>) -> Response {
    let list = crate::routes::flags::list_flags(state);
    render_form(
        problem.as_ref(),
        "admin/flags.html",
        Some(visitor),
        context! { flags => Value::from_serialize(&list) },
    )
}

#[derive(Debug, Deserialize)]
pub struct FlagForm {
    key: String,
    variant: String,
}

pub async fn set_flag(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
    PageForm(form): PageForm<FlagForm>,
) -> Response {
    match crate::routes::flags::set_flag(&state, &form.key, &form.variant) {
        Ok(_) => see_other(&visitor, "/admin/flags"),
        Err(problem) => flags_page(&state, &visitor, Some(problem)),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DeadLetterQuery {
    consumer: Option<String>,
    replayed: Option<usize>,
    skipped: Option<usize>,
}

/// What the consumers gave up on, by consumer, with why; each consumer's
/// letters can be sent round again once the cause is fixed.
pub async fn dead_letters(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
    Query(query): Query<DeadLetterQuery>,
) -> Response {
    let letters = match state.dead_letters().await {
        Ok(bus) => bus
            .dead_letters(None)
            .await
            .map_err(|e| Problem::new(e.kind(), e.to_string())),
        Err(problem) => Err(problem),
    };
    let (groups, error) = match letters {
        Ok(letters) => {
            let mut groups: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
                Default::default();
            for letter in letters {
                let envelope = letter.envelope.unwrap_or_default();
                groups
                    .entry(letter.consumer.clone())
                    .or_default()
                    .push(serde_json::json!({
                        "sequence": letter.sequence,
                        "subject": letter.subject,
                        "type": envelope.r#type,
                        "id": envelope.id,
                        "aggregate_id": envelope.aggregate_id,
                        "source": envelope.source,
                        "error": letter.error,
                        "attempts": letter.attempts,
                    }));
            }
            let groups: Vec<_> = groups
                .into_iter()
                .map(|(consumer, letters)| serde_json::json!({"consumer": consumer, "letters": letters}))
                .collect();
            (groups, None)
        }
        Err(problem) => (Vec::new(), Some(problem.detail)),
    };
    render(
        "admin/dead_letters.html",
        Some(&visitor),
        context! {
            groups => Value::from_serialize(&groups),
            error,
            consumer => query.consumer,
            replayed => query.replayed,
            skipped => query.skipped,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    consumer: String,
}

/// Publishes a consumer's dead letters' original events again (the stored,
/// signed originals: nothing this gateway could make up) and clears them.
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    visitor: Visitor,
    Admin(_): Admin,
    PageForm(form): PageForm<ReplayForm>,
) -> Response {
    let back = "/admin/dead-letters";
    let bus = match state.dead_letters().await {
        Ok(bus) => bus,
        Err(problem) => return failed(problem, &visitor, back),
    };
    match bus.replay_dead_letters(&form.consumer).await {
        Ok(replay) => {
            let to = format!(
                "{back}?{}",
                serde_urlencoded::to_string([
                    ("consumer", form.consumer.clone()),
                    ("replayed", replay.replayed.to_string()),
                    ("skipped", replay.skipped.len().to_string()),
                ])
                .unwrap_or_default()
            );
            see_other(&visitor, &to)
        }
        Err(err) => failed(Problem::new(err.kind(), err.to_string()), &visitor, back),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_cents() {
        assert_eq!(cents("p", "12.50").unwrap(), 1250);
        assert_eq!(cents("p", "12.5").unwrap(), 1250);
        assert_eq!(cents("p", "7").unwrap(), 700);
        assert_eq!(cents("p", " 0.05 ").unwrap(), 5);
        for bad in ["", "1.234", "-1", "a", "1.a", ".5", "99999999999999999999"] {
            assert!(cents("p", bad).is_err(), "{bad}");
        }
    }
}
