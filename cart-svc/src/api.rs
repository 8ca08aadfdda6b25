//! gRPC surface of `CartService`: who the cart belongs to, prices from the
//! catalog, and checkout through order-svc.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform::auth::{Caller, MeshAuth};
use platform::grpc::GrpcChannel;
use platform::store::{Collection, StoreError, Versioned};
use prost::Message as _;
use proto::cart::cart_service_server::CartService;
use proto::cart::*;
use proto::common::Money;
use proto::notification::notification_service_client::NotificationServiceClient;
use proto::order::order_service_client::OrderServiceClient;
use proto::product::ProductValidation;
use proto::product::product_service_client::ProductServiceClient;
use sha2::Digest as _;
use tonic::{Code, Request, Response, Status};

use crate::domain::{Caps, Cart as Doc, Outcome, Pending, Price, Refused};
use crate::token::Tokens;

/// A checkout of another key younger than this is still running: a second
/// key waits (409, retry). Older, it is resumed first (a crash left it).
const CHECKOUT_IN_FLIGHT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct CartApi {
    pub(crate) carts: Collection<Doc>,
    pub(crate) tokens: Tokens,
    pub(crate) mesh: MeshAuth,
    pub(crate) catalog: ProductServiceClient<GrpcChannel>,
    pub(crate) orders: OrderServiceClient<GrpcChannel>,
    pub(crate) notifications: NotificationServiceClient<GrpcChannel>,
    pub(crate) caps: Caps,
    pub(crate) guest_ttl: Duration,
    pub(crate) reminder_after: Duration,
}

/// Which cart a call is about.
enum Target {
    Guest(String),
    User(Caller),
}

impl Target {
    fn id(&self) -> String {
        match self {
            Target::Guest(id) => id.clone(),
            Target::User(caller) => user_cart_id(&caller.user_id),
        }
    }
}

fn user_cart_id(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn expired() -> Status {
    Status::unauthenticated("the cart token is not valid, or its cart has expired")
}

fn refused(r: Refused) -> Status {
    platform::error::invalid_fields([(r.field, r.message)])
}

impl CartApi {
    /// The cart named by `cart` (a guest token) or the caller's own.
    async fn target(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        cart: Option<CartRef>,
    ) -> Result<Target, Status> {
        let token = cart.map(|c| c.cart_token).unwrap_or_default();
        if !token.is_empty() {
            // The token is the guest's proof; a credential, if any, must
            // still be valid.
            self.mesh.optional_caller(metadata).await?;
            return self
                .tokens
                .verify(&token)
                .map(Target::Guest)
                .ok_or_else(expired);
        }
        let caller = self.mesh.caller(metadata).await?;
        if caller.is_service() {
            return Err(Status::invalid_argument(
                "name a cart: a guest's cart_token, or call for a signed-in customer",
            ));
        }
        Ok(Target::User(caller))
    }

    /// The stored cart; `None` for a customer who has none yet.
    async fn load(&self, target: &Target) -> Result<Option<Versioned<Doc>>, Status> {
        let found = self.carts.find_by_id(&target.id()).await?;
        match (target, found) {
            (Target::Guest(_), None) => Err(expired()),
            (Target::Guest(_), Some(cart))
                if cart
                    .value
                    .expires_at
                    .is_some_and(|at| at < platform::clock::now().millis()) =>
            {
                Err(expired())
            }
            (_, found) => Ok(found),
        }
    }

    /// Applies `change` with compare-and-swap (re-applied after a
    /// conflict, so concurrent changes never lose a line); a customer's
    /// first change creates the cart.
    async fn change<F>(&self, target: &Target, mut change: F) -> Result<Versioned<Doc>, Status>
    where
        F: FnMut(&mut Doc) -> Result<(), Status> + Send,
    {
        let now = platform::clock::now().millis();
        let ttl = self.guest_ttl.as_millis() as i64;
        let remind_after = self.reminder_after.as_millis() as i64;
        let guest = matches!(target, Target::Guest(_));
        let mut apply = |cart: &mut Doc| -> Result<(), Status> {
            if guest {
                if cart.expires_at.is_some_and(|at| at < now) {
                    return Err(expired());
                }
                if cart.merged_into.is_some() {
                    return Err(Status::failed_precondition(
                        "this cart was merged into a customer's cart at sign-in; use that cart",
                    ));
                }
            }
            change(cart)?;
            cart.updated_at = now;
            if guest {
                cart.expires_at = Some(now + ttl);
            } else {
                cart.schedule_reminder(now, remind_after);
            }
            Ok(())
        };
        let id = target.id();
        for _ in 0..3 {
            match self.carts.update(&id, &mut apply).await {
                Ok(outcome) => return outcome,
                Err(StoreError::NotFound) => {
                    let Target::User(caller) = target else {
                        return Err(expired());
                    };
                    let mut cart = Doc {
                        owner: caller.user_id.clone(),
                        ..Doc::default()
                    };
                    apply(&mut cart)?;
                    match self.carts.insert(&id, cart).await {
                        Ok(created) => return Ok(created),
                        // Created meanwhile: change that one.
                        Err(StoreError::AlreadyExists { .. }) => continue,
                        Err(err) => return Err(err.into()),
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(Status::aborted("the cart changed too often; retry"))
    }

    /// What the catalog says of `ids` now: one batched call.
    async fn catalog(&self, ids: &[String]) -> Result<HashMap<String, ProductValidation>, Status> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let request = proto::product::ValidateProductsRequest {
            product_ids: ids.to_vec(),
        };
        let reply = platform::grpc::Retry::new(2)
            .run(|| {
                let mut catalog = self.catalog.clone();
                let request = self.mesh.request(request.clone());
                async move { catalog.validate_products(request).await }
            })
            .await?;
        Ok(reply
            .into_inner()
            .products
            .into_iter()
            .map(|p| (p.product_id.clone(), p))
            .collect())
    }

    /// The current price of a product that can be put in a cart.
    async fn price_of(&self, product_id: &str) -> Result<Price, Status> {
        if product_id.trim().is_empty() {
            return Err(platform::error::invalid_fields([(
                "product_id",
                "is required".to_string(),
            )]));
        }
        let found = self.catalog(&[product_id.to_string()]).await?;
        match found.get(product_id) {
            Some(p) if p.found && p.active => {
                let price = p.price.clone().unwrap_or_default();
                Ok(Price {
                    amount: price.amount,
                    currency: price.currency,
                })
            }
            _ => Err(Status::not_found("no such product for sale")),
        }
    }

    /// The cart as the shopper sees it, priced now.
    async fn view(&self, id: &str, cart: Option<&Doc>) -> Result<Cart, Status> {
        let Some(cart) = cart else {
            return Ok(Cart {
                id: id.to_string(),
                items: Vec::new(),
                subtotal: Some(Money::new(0, "USD")),
                updated_at: None,
            });
        };
        let ids: Vec<String> = cart.lines.iter().map(|l| l.product_id.clone()).collect();
        let catalog = self.catalog(&ids).await?;
        let mut subtotal = 0i64;
        let mut currency = None::<String>;
        let items = cart
            .lines
            .iter()
            .map(|line| {
                let product = catalog.get(&line.product_id).filter(|p| p.found);
                let price = product.and_then(|p| p.price.clone()).unwrap_or_default();
                let stock = product.map_or(0, |p| p.stock_available);
                let available =
                    product.is_some_and(|p| p.active) && stock >= line.quantity && price.amount > 0;
                let line_total = price.amount.saturating_mul(i64::from(line.quantity));
                if available {
                    subtotal = subtotal.saturating_add(line_total);
                    currency.get_or_insert_with(|| price.currency.clone());
                }
                let price_changed = product.is_some()
                    && line.seen_price.as_ref().is_some_and(|seen| {
                        seen.amount != price.amount || seen.currency != price.currency
                    });
                CartLine {
                    product_id: line.product_id.clone(),
                    name: product.map(|p| p.name.clone()).unwrap_or_default(),
                    unit_price: Some(price.clone()),
                    quantity: line.quantity,
                    line_total: Some(Money::new(line_total, &price.currency)),
                    available,
                    price_changed,
                    stock_available: stock,
                    image: product.and_then(|p| p.image.clone()),
                }
            })
            .collect();
        Ok(Cart {
            id: id.to_string(),
            items,
            subtotal: Some(Money::new(subtotal, currency.as_deref().unwrap_or("USD"))),
            updated_at: Some(proto::ext::from_millis(cart.updated_at)),
        })
    }

    async fn answer(&self, cart: &Versioned<Doc>) -> Result<Response<CartResponse>, Status> {
        Ok(Response::new(CartResponse {
            cart: Some(self.view(&cart.id, Some(&cart.value)).await?),
        }))
    }

    fn check_quantity(&self, quantity: u32, allow_zero: bool) -> Result<(), Status> {
        if quantity == 0 && !allow_zero {
            return Err(refused(Refused {
                field: "quantity",
                message: "must be at least 1".into(),
            }));
        }
        if quantity > self.caps.units_per_line {
            return Err(refused(Refused {
                field: "quantity",
                message: format!("at most {} units per product", self.caps.units_per_line),
            }));
        }
        Ok(())
    }
}

/// What a checkout request asks for, apart from its key: a repeat of the
/// key with another body is refused.
fn fingerprint(request: &CheckoutRequest) -> String {
    let mut hash = sha2::Sha256::new();
    if let Some(address) = &request.shipping_address {
        hash.update(address.encode_to_vec());
    }
    hash.update([u8::from(request.card.is_some())]);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Codes with which order-svc refused the order itself: nothing was
/// ordered, the cart stays as it was, and a repeat answers the same.
fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

fn replay(outcome: &Outcome) -> Result<CheckoutResponse, Status> {
    match outcome {
        Outcome::Ordered { response } => STANDARD
            .decode(response)
            .ok()
            .and_then(|bytes| CheckoutResponse::decode(bytes.as_slice()).ok())
            .ok_or_else(|| Status::internal("a recorded checkout does not decode")),
        Outcome::Refused { code, message } => Err(Status::new(Code::from_i32(*code), message)),
    }
}

impl CartApi {
    async fn checkout(
        &self,
        caller: Caller,
        request: CheckoutRequest,
    ) -> Result<CheckoutResponse, Status> {
        let key = request.idempotency_key.trim().to_string();
        if key.is_empty() || key.len() > 255 {
            return Err(platform::error::invalid_fields([(
                "idempotency_key",
                "1 to 255 characters are required".to_string(),
            )]));
        }
        // A card that cannot be charged is refused before any order.
        if let Some(card) = &request.card {
            let (year, month) = payment_svc::api::year_month_now();
            payment_svc::domain::Card::parse(
                &card.number,
                card.exp_month,
                card.exp_year,
                &card.cvc,
                year,
                month,
            )
            .map_err(platform::error::invalid)?;
        }
        let fingerprint = fingerprint(&request);
        let target = Target::User(caller.clone());
        let id = target.id();
        for _ in 0..3 {
            let cart = self.carts.find_by_id(&id).await?;
            let doc = cart.as_ref().map(|c| &c.value);
            if let Some(done) = doc.and_then(|c| c.finished(&key)) {
                if done.fingerprint != fingerprint {
                    return Err(Status::already_exists(
                        "this Idempotency-Key was used for another checkout",
                    ));
                }
                return replay(&done.outcome);
            }
            match doc.and_then(|c| c.checkout.clone()) {
                Some(pending) if pending.key == key => {
                    if pending.fingerprint != fingerprint {
                        return Err(Status::already_exists(
                            "this Idempotency-Key was used for another checkout",
                        ));
                    }
                    // A repeat of a checkout that may still be running:
                    // resuming is safe, order-svc's key makes it the same
                    // order, and the first write to finish records it.
                    return self.resume(&caller, &id, pending, &request).await;
                }
                Some(pending) => {
                    if platform::clock::now().millis() - pending.started_at
                        < CHECKOUT_IN_FLIGHT.as_millis() as i64
                    {
                        return Err(in_progress());
                    }
                    // Left by a crash: finish it first (without a card:
                    // the order waits for payment), then look again.
                    let resumed = CheckoutRequest {
                        idempotency_key: pending.key.clone(),
                        shipping_address: request.shipping_address.clone(),
                        card: None,
                    };
                    let _ = self.resume(&caller, &id, pending, &resumed).await;
                    continue;
                }
                None => {}
            }
            let Some(cart) = cart.filter(|c| !c.value.lines.is_empty()) else {
                return Err(Status::failed_precondition("the cart is empty"));
            };
            let lines = cart
                .value
                .lines
                .iter()
                .map(|l| (l.product_id.clone(), l.quantity))
                .collect();
            let pending = Pending {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                lines,
                started_at: platform::clock::now().millis(),
            };
            // Recorded before the order is asked for: a crash from here on
            // is resumed under the same order key.
            match self
                .carts
                .replace(&id, cart.version, {
                    let mut next = cart.value.clone();
                    next.checkout = Some(pending.clone());
                    next
                })
                .await
            {
                Ok(_) => return self.resume(&caller, &id, pending, &request).await,
                // The cart changed since it was read: look again.
                Err(StoreError::VersionConflict) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(in_progress())
    }

    /// Orders (and pays) what `pending` holds, then takes it out of the
    /// cart and records the answer for repeats.
    async fn resume(
        &self,
        caller: &Caller,
        cart_id: &str,
        pending: Pending,
        request: &CheckoutRequest,
    ) -> Result<CheckoutResponse, Status> {
        let order_key = format!("cart:{cart_id}:{}", pending.key);
        let mut create = tonic::Request::new(proto::order::CreateOrderRequest {
            idempotency_key: order_key.clone(),
            items: pending
                .lines
                .iter()
                .map(|(product_id, quantity)| proto::order::OrderItemInput {
                    product_id: product_id.clone(),
                    quantity: *quantity,
                })
                .collect(),
            shipping_address: request.shipping_address.clone(),
            notes: String::new(),
        });
        self.mesh.apply(caller, &mut create);
        let order = match self.orders.clone().create_order(create).await {
            Ok(reply) => reply.into_inner().order,
            Err(status) if is_refusal(status.code()) => {
                // Nothing was ordered: the cart stays; repeats answer this.
                self.finish(
                    cart_id,
                    &pending,
                    Outcome::Refused {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    },
                )
                .await?;
                return Err(status);
            }
            // Not known whether the order was made: the checkout stays
            // pending, and a retry with the same key resumes it.
            Err(status) => return Err(status),
        };
        let mut order = order;
        let mut payment = None;
        if let (Some(card), Some(placed)) = (&request.card, order.as_mut()) {
            let mut pay = tonic::Request::new(proto::order::ProcessPaymentRequest {
                order_id: placed.id.clone(),
                idempotency_key: order_key.clone(),
                card: Some(card.clone()),
            });
            self.mesh.apply(caller, &mut pay);
            match self.orders.clone().process_payment(pay).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    // The order as the payment left it (PAID or
                    // PAYMENT_FAILED), without reading it again.
                    if reply.order_status != 0 {
                        placed.status = reply.order_status;
                    }
                    if let Some(p) = &reply.payment {
                        placed.payment_id = p.id.clone();
                        placed.updated_at = p.created_at;
                    }
                    payment = reply.payment;
                }
                // The order is made; the customer pays it from the order.
                Err(status) if is_refusal(status.code()) => {
                    tracing::info!(order_id = %placed.id, reason = %status.message(),
                        "checkout: the order was made but not paid");
                }
                Err(status) => return Err(status),
            }
        }
        let response = CheckoutResponse { order, payment };
        self.finish(
            cart_id,
            &pending,
            Outcome::Ordered {
                response: STANDARD.encode(response.encode_to_vec()),
            },
        )
        .await?;
        Ok(response)
    }

    async fn finish(
        &self,
        cart_id: &str,
        pending: &Pending,
        outcome: Outcome,
    ) -> Result<(), Status> {
        let now = platform::clock::now().millis();
        match self
            .carts
            .modify(cart_id, |cart| {
                cart.finish(pending, outcome.clone());
                cart.updated_at = now;
                if cart.lines.is_empty() {
                    cart.remind_at = None;
                }
            })
            .await
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

fn in_progress() -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    Status::with_error_details(
        Code::Aborted,
        "another checkout of this cart is in progress; retry",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
    )
}

#[tonic::async_trait]
impl CartService for CartApi {
    async fn create_guest_cart(
        &self,
        request: Request<CreateGuestCartRequest>,
    ) -> Result<Response<CreateGuestCartResponse>, Status> {
        // Any verified caller (the gateway for a visitor, or a customer).
        self.mesh.caller(request.metadata()).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = platform::clock::now().millis();
        let cart = Doc {
            updated_at: now,
            expires_at: Some(now + self.guest_ttl.as_millis() as i64),
            ..Doc::default()
        };
        self.carts.insert(&id, cart).await?;
        Ok(Response::new(CreateGuestCartResponse {
            cart_token: self.tokens.issue(&id),
            cart_id: id,
        }))
    }

    async fn get_cart(
        &self,
        request: Request<GetCartRequest>,
    ) -> Result<Response<CartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let target = self.target(&metadata, r.cart).await?;
        let cart = self.load(&target).await?;
        Ok(Response::new(CartResponse {
            cart: Some(
                self.view(&target.id(), cart.as_ref().map(|c| &c.value))
                    .await?,
            ),
        }))
    }

    async fn add_item(
        &self,
        request: Request<AddItemRequest>,
    ) -> Result<Response<CartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let target = self.target(&metadata, r.cart).await?;
        self.check_quantity(r.quantity, false)?;
        let price = self.price_of(&r.product_id).await?;
        let caps = self.caps;
        let cart = self
            .change(&target, |cart| {
                cart.add(&r.product_id, r.quantity, price.clone(), caps)
                    .map_err(refused)
            })
            .await?;
        self.answer(&cart).await
    }

    async fn set_quantity(
        &self,
        request: Request<SetQuantityRequest>,
    ) -> Result<Response<CartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let target = self.target(&metadata, r.cart).await?;
        self.check_quantity(r.quantity, true)?;
        let price = if r.quantity > 0 {
            Some(self.price_of(&r.product_id).await?)
        } else {
            None
        };
        let caps = self.caps;
        let cart = self
            .change(&target, |cart| {
                cart.set(&r.product_id, r.quantity, price.clone(), caps)
                    .map_err(refused)
            })
            .await?;
        self.answer(&cart).await
    }

    async fn remove_item(
        &self,
        request: Request<RemoveItemRequest>,
    ) -> Result<Response<CartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let target = self.target(&metadata, r.cart).await?;
        let cart = self
            .change(&target, |cart| {
                cart.remove(&r.product_id);
                Ok(())
            })
            .await?;
        self.answer(&cart).await
    }

    async fn clear_cart(
        &self,
        request: Request<ClearCartRequest>,
    ) -> Result<Response<ClearCartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let target = self.target(&metadata, r.cart).await?;
        self.change(&target, |cart| {
            cart.lines.clear();
            Ok(())
        })
        .await?;
        Ok(Response::new(ClearCartResponse {}))
    }

    async fn merge_carts(
        &self,
        request: Request<MergeCartsRequest>,
    ) -> Result<Response<CartResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let Target::User(caller) = self.target(&metadata, None).await? else {
            return Err(Status::invalid_argument("only a customer merges carts"));
        };
        let guest_id = self.tokens.verify(&r.cart_token).ok_or_else(expired)?;
        let cart = self.merge(&caller, &guest_id).await?;
        self.answer(&cart).await
    }

    async fn checkout(
        &self,
        request: Request<CheckoutRequest>,
    ) -> Result<Response<CheckoutResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let Target::User(caller) = self.target(&metadata, None).await? else {
            return Err(Status::invalid_argument(
                "only a signed-in customer checks out",
            ));
        };
        CartApi::checkout(self, caller, r).await.map(Response::new)
    }
}

impl CartApi {
    /// Merges guest cart `guest_id` into the caller's cart, in three writes
    /// that can each be repeated: the guest cart is marked as merged (from
    /// then on it takes no change, so an add racing the merge is either in
    /// it or refused, never lost), its lines join the customer's cart
    /// (which remembers the guest cart, so a repeat adds nothing twice),
    /// and the guest cart is deleted.
    pub(crate) async fn merge(
        &self,
        caller: &Caller,
        guest_id: &str,
    ) -> Result<Versioned<Doc>, Status> {
        let user_id = caller.user_id.clone();
        let now = platform::clock::now().millis();
        let marked = self
            .carts
            .update(guest_id, |cart| {
                match &cart.merged_into {
                    Some(owner) if *owner == user_id => {}
                    Some(_) => return Err(expired()),
                    None if cart.expires_at.is_some_and(|at| at < now) => return Err(expired()),
                    None => cart.merged_into = Some(user_id.clone()),
                }
                Ok(())
            })
            .await;
        let guest = match marked {
            Ok(outcome) => Some(outcome?),
            // Merged and deleted already (a repeat): the customer's cart
            // holds it.
            Err(StoreError::NotFound) => None,
            Err(err) => return Err(err.into()),
        };
        let target = Target::User(caller.clone());
        let caps = self.caps;
        let cart = self
            .change(&target, |cart| {
                if let Some(guest) = &guest
                    && !cart.merged.iter().any(|m| m == guest_id)
                {
                    let left_out = cart.merge(&guest.value.lines, caps);
                    if left_out > 0 {
                        tracing::info!(
                            left_out,
                            "merge: products beyond the cart's line cap left out"
                        );
                    }
                    cart.merged.push(guest_id.to_string());
                    let extra = cart.merged.len().saturating_sub(20);
                    cart.merged.drain(..extra);
                }
                Ok(())
            })
            .await?;
        if guest.is_some() {
            match self.carts.delete(guest_id, None).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(cart)
    }
}

impl CartApi {
    /// Sends the reminders due before `now`: each cart is first marked
    /// (CAS: its reminder cleared) and only then is the customer told, so
    /// a reminder goes out at most once, whatever crashes or runs twice.
    pub async fn send_reminders(&self, now: i64) -> Result<usize, Status> {
        use platform::store::{Bound, Query};
        let due = self
            .carts
            .find(
                &Query::new()
                    .range("remind_at", None, Some(Bound::Exclusive(now.into())))
                    .limit(100),
            )
            .await?;
        let mut sent = 0;
        for cart in due.items {
            let marked = self
                .carts
                .update_from(cart, |c| {
                    if c.remind_at.is_none_or(|at| at >= now) || c.owner.is_empty() {
                        return Err(());
                    }
                    c.remind_at = None;
                    Ok(())
                })
                .await;
            let cart = match marked {
                Ok(Ok(cart)) => cart,
                // Changed since (touched, emptied or reminded): not due.
                Ok(Err(())) | Err(StoreError::NotFound) => continue,
                Err(err) => return Err(err.into()),
            };
            let units: u32 = cart.value.lines.iter().map(|l| l.quantity).sum();
            let request = proto::notification::SendNotificationRequest {
                user_id: cart.value.owner.clone(),
                kind: "cart.abandoned".into(),
                title: "Your cart is waiting".into(),
                body: format!(
                    "You left {units} item{} in your cart. They are not reserved: check out before they sell out.",
                    if units == 1 { "" } else { "s" }
                ),
                channels: vec![
                    proto::notification::Channel::InApp as i32,
                    proto::notification::Channel::Email as i32,
                ],
            };
            match self
                .notifications
                .clone()
                .send_notification(self.mesh.request(request))
                .await
            {
                Ok(_) => sent += 1,
                Err(status) => {
                    tracing::warn!(cart = %cart.id, error = %status.message(),
                        "a cart reminder could not be sent; it is not sent again")
                }
            }
        }
        Ok(sent)
    }
}
