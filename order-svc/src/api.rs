//! gRPC surface of `OrderService`: the order saga.

use platform::auth::Caller;
use platform::error::invalid_fields;
use platform::events::outbox::OutboxRelay;
use platform::grpc::{GrpcChannel, Retry};
use platform::store::{Collection, Query, StoreError, Versioned};
use prost::Message as _;
use proto::events::envelope::Payload;
use proto::order::order_service_server::OrderService;
use proto::order::*;
use proto::payment::payment_service_client::PaymentServiceClient;
use proto::product::product_service_client::ProductServiceClient;
use tonic::{Request, Response, Status};

use crate::domain::{self, Item, Order, OrderEvent, OrderStatus as S};
use crate::idempotency::{self, Claim, Keys};

/// Identity of order-svc on calls it makes for itself.
pub fn service_caller() -> Caller {
    Caller::service("order-svc")
}

#[derive(Clone, Debug)]
pub struct OrderApi {
    pub(crate) orders: Collection<Order>,
    pub(crate) keys: Keys,
    pub(crate) relay: OutboxRelay<Order>,
    pub(crate) products: ProductServiceClient<GrpcChannel>,
    pub(crate) payments: PaymentServiceClient<GrpcChannel>,
    pub(crate) retry: Retry,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn money(amount: i64, currency: &str) -> Option<proto::common::Money> {
    Some(proto::common::Money {
        amount,
        currency: currency.to_string(),
    })
}

pub(crate) fn status_to_proto(s: S) -> OrderStatus {
    match s {
        S::PendingPayment => OrderStatus::PendingPayment,
        S::Paid => OrderStatus::Paid,
        S::PaymentFailed => OrderStatus::PaymentFailed,
        S::Shipped => OrderStatus::Shipped,
        S::Delivered => OrderStatus::Delivered,
        S::Cancelled => OrderStatus::Cancelled,
        S::Refunded => OrderStatus::Refunded,
    }
}

pub(crate) fn to_proto(id: &str, o: &Order) -> proto::order::Order {
    proto::order::Order {
        id: id.to_string(),
        user_id: o.user_id.clone(),
        status: status_to_proto(o.status) as i32,
        items: o
            .items
            .iter()
            .map(|i| OrderItem {
                product_id: i.product_id.clone(),
                name: i.name.clone(),
                sku: i.sku.clone(),
                unit_price: money(i.unit_price, &o.currency),
                quantity: i.quantity as u32,
                line_total: money(i.line_total, &o.currency),
            })
            .collect(),
        total: money(o.total, &o.currency),
        shipping_address: Some(proto::common::Address::from(&o.shipping_address)),
        notes: o.notes.clone(),
        payment_id: o.payment_id.clone(),
        cancel_reason: o.cancel_reason.clone(),
        created_at: timestamp(o.created_at),
        updated_at: timestamp(o.updated_at),
    }
}

fn lines_of(o: &Order) -> Vec<proto::events::OrderLine> {
    o.items
        .iter()
        .map(|i| proto::events::OrderLine {
            product_id: i.product_id.clone(),
            sku: i.sku.clone(),
            name: i.name.clone(),
            quantity: i.quantity as u32,
            unit_price: money(i.unit_price, &o.currency),
            line_total: money(i.line_total, &o.currency),
            weight_grams: i.weight_grams,
        })
        .collect()
}

fn not_found() -> Status {
    Status::not_found("order not found")
}

fn conflict(err: domain::TransitionError) -> Status {
    Status::failed_precondition(format!(
        "the order is {:?}; {:?} is not allowed",
        err.from, err.event
    ))
}

fn with_caller<T>(message: T, caller: &Caller) -> Request<T> {
    let mut request = Request::new(message);
    caller.apply(&mut request);
    request
}

impl OrderApi {
    async fn flush(&self, id: &str) {
        if let Err(err) = self.relay.flush(id).await {
            tracing::warn!(error = %err, order = id, "event publish deferred to the outbox sweeper");
        }
    }

    /// The order if the caller may see it (its owner, or an admin).
    async fn load_for(&self, caller: &Caller, id: &str) -> Result<Versioned<Order>, Status> {
        match self.orders.get(id).await {
            Ok(order) if caller.is_admin() || order.value.user_id == caller.user_id => Ok(order),
            Ok(_) | Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => Err(not_found()),
            Err(err) => Err(err.into()),
        }
    }

    /// Applies `event` (once per `event_id`), with `extra` changes in the same write.
    pub(crate) async fn apply(
        &self,
        id: &str,
        event: OrderEvent,
        event_id: Option<&str>,
        extra: impl Fn(&mut Order) + Send + Sync,
    ) -> Result<Result<(Versioned<Order>, bool), domain::TransitionError>, Status> {
        let mut changed = false;
        let result = self
            .orders
            .update(id, |o| {
                changed = o.apply(event, event_id)?;
                if changed {
                    extra(o);
                    o.updated_at = now_ms();
                }
                Ok(())
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => not_found(),
                other => other.into(),
            })?;
        Ok(result.map(|v| (v, changed)))
    }

    async fn release_stock(&self, order_id: &str) {
        let result = self
            .retry
            .run(|| {
                let mut products = self.products.clone();
                let order_id = order_id.to_string();
                async move {
                    products
                        .release_stock(proto::product::ReleaseStockRequest { order_id })
                        .await
                }
            })
            .await;
        if let Err(status) = result {
            if status.code() != tonic::Code::NotFound {
                tracing::error!(order = order_id, code = ?status.code(), "stock not released; the order event will retry it");
            }
        }
    }

    pub(crate) async fn commit_stock(&self, order_id: &str) {
        let result = self
            .retry
            .run(|| {
                let mut products = self.products.clone();
                let order_id = order_id.to_string();
                async move {
                    products
                        .commit_stock(proto::product::CommitStockRequest { order_id })
                        .await
                }
            })
            .await;
        if let Err(status) = result {
            tracing::error!(order = order_id, code = ?status.code(), "stock not committed; the payment event will retry it");
        }
    }

    /// A successful payment: PAID (once), stock committed.
    pub(crate) async fn on_paid(
        &self,
        order_id: &str,
        payment_id: &str,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        let payment_id = payment_id.to_string();
        match self
            .apply(order_id, OrderEvent::PaymentSucceeded, event_id, |o| {
                o.payment_id = payment_id.clone()
            })
            .await?
        {
            Ok(_) => {}
            Err(err)
                if err.from == S::Paid
                    || err.from == S::Shipped
                    || err.from == S::Delivered
                    || err.from == S::Refunded => {}
            Err(err) => tracing::warn!(
                order = order_id,
                ?err,
                "payment succeeded for an order that no longer takes it"
            ),
        }
        self.commit_stock(order_id).await;
        Ok(())
    }

    pub(crate) async fn on_payment_failed(
        &self,
        order_id: &str,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        // A failed attempt after a success (or a cancel) changes nothing.
        let _ = self
            .apply(order_id, OrderEvent::PaymentFailed, event_id, |_| {})
            .await?;
        Ok(())
    }

    /// Fully refunded: REFUNDED (once), stock back on sale.
    pub(crate) async fn on_refunded(
        &self,
        order_id: &str,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        if let Ok((order, true)) = self
            .apply(order_id, OrderEvent::Refunded, event_id, |_| {})
            .await?
        {
            self.stage_cancelled(order_id, S::Paid, &order.value)
                .await?;
        }
        self.release_stock(order_id).await;
        Ok(())
    }

    pub(crate) async fn on_shipping(
        &self,
        order_id: &str,
        delivered: bool,
        event_id: Option<&str>,
    ) -> Result<(), Status> {
        if delivered {
            // Delivery may be reported without a separate shipment event.
            let _ = self
                .apply(order_id, OrderEvent::Shipped, None, |_| {})
                .await?;
            let _ = self
                .apply(order_id, OrderEvent::Delivered, event_id, |_| {})
                .await?;
        } else {
            let _ = self
                .apply(order_id, OrderEvent::Shipped, event_id, |_| {})
                .await?;
        }
        Ok(())
    }

    async fn stage_cancelled(
        &self,
        order_id: &str,
        previous: S,
        order: &Order,
    ) -> Result<(), Status> {
        let event = platform::events::envelope(
            "order.cancelled",
            order_id,
            "order-svc",
            Payload::OrderCancelled(proto::events::OrderCancelled {
                order_id: order_id.to_string(),
                user_id: order.user_id.clone(),
                previous_status: status_to_proto(previous) as i32,
                status: status_to_proto(order.status) as i32,
                reason: order.cancel_reason.clone(),
                payment_id: order.payment_id.clone(),
                items: lines_of(order),
            }),
        );
        self.orders
            .modify(order_id, |o| o.outbox.stage(&event))
            .await?;
        self.flush(order_id).await;
        Ok(())
    }

    async fn create(
        &self,
        caller: &Caller,
        order_id: &str,
        r: &CreateOrderRequest,
    ) -> Result<proto::order::Order, Status> {
        let lines: Vec<(String, u32)> = r
            .items
            .iter()
            .map(|i| (i.product_id.clone(), i.quantity))
            .collect();
        let address = r.shipping_address.clone().map(domain::Address::from);
        let address =
            domain::validate_request(&lines, address.as_ref(), &r.notes).map_err(|errors| {
                invalid_fields(
                    errors
                        .iter()
                        .map(|e| (e.field.as_str(), e.message.clone()))
                        .collect::<Vec<_>>(),
                )
            })?;
        if let Ok(existing) = self.orders.get(order_id).await {
            return Ok(to_proto(order_id, &existing.value));
        }
        // Prices and availability from the catalog, never from the client.
        let ids: Vec<String> = lines.iter().map(|(p, _)| p.clone()).collect();
        let validation = self
            .retry
            .run(|| {
                let mut products = self.products.clone();
                let product_ids = ids.clone();
                async move {
                    products
                        .validate_products(proto::product::ValidateProductsRequest { product_ids })
                        .await
                }
            })
            .await?
            .into_inner()
            .products;
        let mut items = Vec::new();
        let mut errors = Vec::new();
        for (i, ((product_id, quantity), v)) in lines.iter().zip(&validation).enumerate() {
            if !v.found || !v.active {
                errors.push((
                    format!("items[{i}].product_id"),
                    format!("unknown product {product_id}"),
                ));
                continue;
            }
            let price = v.price.clone().unwrap_or_default();
            items.push((
                Item {
                    product_id: product_id.clone(),
                    sku: v.sku.clone(),
                    name: v.name.clone(),
                    unit_price: price.amount,
                    quantity: i64::from(*quantity),
                    line_total: price.amount * i64::from(*quantity),
                    weight_grams: v.weight_grams,
                },
                price.currency,
            ));
        }
        if !errors.is_empty() {
            return Err(invalid_fields(
                errors
                    .iter()
                    .map(|(f, m)| (f.as_str(), m.clone()))
                    .collect::<Vec<_>>(),
            ));
        }
        let currency = items[0].1.clone();
        if items.iter().any(|(_, c)| *c != currency) {
            return Err(invalid_fields([(
                "items",
                "all items must be priced in one currency".to_string(),
            )]));
        }
        let items: Vec<Item> = items.into_iter().map(|(i, _)| i).collect();
        let total = items.iter().map(|i| i.line_total).sum();

        let stock_lines: Vec<proto::product::StockLine> = items
            .iter()
            .map(|i| proto::product::StockLine {
                product_id: i.product_id.clone(),
                quantity: i.quantity as u32,
            })
            .collect();
        self.retry
            .run(|| {
                let mut products = self.products.clone();
                let request = proto::product::ReserveStockRequest {
                    order_id: order_id.to_string(),
                    lines: stock_lines.clone(),
                };
                async move { products.reserve_stock(request).await }
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => invalid_fields([("items", status.message().to_string())]),
                _ => status,
            })?;

        let now = now_ms();
        let mut order = Order {
            user_id: caller.user_id.clone(),
            status: S::PendingPayment,
            items,
            currency: currency.clone(),
            total,
            shipping_address: address,
            notes: r.notes.trim().to_string(),
            payment_id: String::new(),
            cancel_reason: String::new(),
            applied_events: Vec::new(),
            created_at: now,
            updated_at: now,
            outbox: Default::default(),
        };
        order.outbox.stage(&platform::events::envelope(
            "order.created",
            order_id,
            "order-svc",
            Payload::OrderCreated(proto::events::OrderCreated {
                order_id: order_id.to_string(),
                user_id: order.user_id.clone(),
                items: lines_of(&order),
                total: money(total, &currency),
                shipping_address: Some(proto::common::Address::from(&order.shipping_address)),
            }),
        ));
        match self.orders.insert(order_id, order).await {
            Ok(stored) => {
                self.flush(order_id).await;
                Ok(to_proto(order_id, &stored.value))
            }
            Err(StoreError::AlreadyExists { .. }) => {
                Ok(to_proto(order_id, &self.orders.get(order_id).await?.value))
            }
            Err(err) => {
                self.release_stock(order_id).await;
                Err(err.into())
            }
        }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    #[tracing::instrument(skip_all)]
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        if r.idempotency_key.is_empty() {
            let order = self
                .create(&caller, &uuid::Uuid::now_v7().to_string(), &r)
                .await?;
            return Ok(Response::new(CreateOrderResponse { order: Some(order) }));
        }
        let mut canonical = r.clone();
        canonical.idempotency_key.clear();
        let hash = idempotency::hash(&canonical.encode_to_vec());
        match self
            .keys
            .claim(&caller.user_id, "create-order", &r.idempotency_key, &hash)
            .await?
        {
            Claim::Replay(bytes) => {
                let replay = CreateOrderResponse::decode(bytes.as_slice())
                    .map_err(|_| Status::internal("stored response unreadable"))?;
                Ok(Response::new(replay))
            }
            Claim::Proceed {
                record_id,
                resource_id,
            } => match self.create(&caller, &resource_id, &r).await {
                Ok(order) => {
                    let response = CreateOrderResponse { order: Some(order) };
                    self.keys
                        .complete(&record_id, &response.encode_to_vec())
                        .await?;
                    Ok(Response::new(response))
                }
                Err(status) => {
                    self.keys.release(&record_id).await;
                    Err(status)
                }
            },
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn process_payment(
        &self,
        request: Request<ProcessPaymentRequest>,
    ) -> Result<Response<ProcessPaymentResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let order = self.load_for(&caller, &r.order_id).await?;
        match order.value.status {
            S::PendingPayment | S::PaymentFailed | S::Paid => {}
            other => {
                return Err(Status::failed_precondition(format!(
                    "the order is {other:?} and cannot be paid"
                )));
            }
        }
        let mut payment_request = Request::new(proto::payment::CreatePaymentRequest {
            order_id: r.order_id.clone(),
            user_id: order.value.user_id.clone(),
            amount: money(order.value.total, &order.value.currency),
            idempotency_key: r.idempotency_key.clone(),
            card: r.card,
        });
        payment_request.set_timeout(std::time::Duration::from_secs(15));
        caller.apply(&mut payment_request);
        let payment = self
            .payments
            .clone()
            .create_payment(payment_request)
            .await?
            .into_inner()
            .payment
            .unwrap_or_default();
        match proto::payment::PaymentStatus::try_from(payment.status) {
            Ok(proto::payment::PaymentStatus::Succeeded) => {
                self.on_paid(&r.order_id, &payment.id, None).await?
            }
            Ok(proto::payment::PaymentStatus::Failed) => {
                self.on_payment_failed(&r.order_id, None).await?
            }
            _ => {}
        }
        let status = self.orders.get(&r.order_id).await?.value.status;
        Ok(Response::new(ProcessPaymentResponse {
            payment: Some(payment),
            order_status: status_to_proto(status) as i32,
        }))
    }

    async fn get_order_status(
        &self,
        request: Request<GetOrderStatusRequest>,
    ) -> Result<Response<GetOrderStatusResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().order_id;
        let order = self.load_for(&caller, &id).await?;
        Ok(Response::new(GetOrderStatusResponse {
            order_id: id,
            status: status_to_proto(order.value.status) as i32,
            updated_at: timestamp(order.value.updated_at),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().order_id;
        let order = self.load_for(&caller, &id).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(to_proto(&id, &order.value)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let user = if caller.is_admin() {
            Some(r.user_id.clone()).filter(|u| !u.is_empty())
        } else if r.user_id.is_empty() || r.user_id == caller.user_id {
            Some(caller.user_id.clone())
        } else {
            return Err(Status::permission_denied(
                "customers list only their own orders",
            ));
        };
        let mut query = Query::new().sort("created_at", true).page(r.page.as_ref());
        if let Some(user) = &user {
            query = query.eq("user_id", user.as_str());
        }
        let page = self
            .orders
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(Response::new(ListOrdersResponse {
            orders: page
                .items
                .iter()
                .map(|o| to_proto(&o.id, &o.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let order = self.load_for(&caller, &r.order_id).await?;
        let reason: String = r.reason.trim().chars().take(500).collect();
        let id = r.order_id;
        match order.value.status {
            S::Cancelled | S::Refunded => {}
            S::Shipped | S::Delivered => {
                return Err(Status::failed_precondition(
                    "the order has shipped and can no longer be cancelled",
                ));
            }
            S::PendingPayment | S::PaymentFailed => {
                let reason_set = reason.clone();
                match self
                    .apply(&id, OrderEvent::Cancel, None, move |o| {
                        o.cancel_reason = reason_set.clone()
                    })
                    .await?
                {
                    Ok((cancelled, true)) => {
                        self.release_stock(&id).await;
                        self.stage_cancelled(&id, order.value.status, &cancelled.value)
                            .await?;
                    }
                    Ok(_) => {}
                    Err(err) => return Err(conflict(err)),
                }
            }
            S::Paid => {
                let refund = proto::payment::ProcessRefundRequest {
                    payment_id: order.value.payment_id.clone(),
                    amount: None,
                    reason: if reason.is_empty() {
                        "order cancelled".into()
                    } else {
                        reason.clone()
                    },
                    idempotency_key: format!("cancel:{id}"),
                };
                let mut payments = self.payments.clone();
                payments
                    .process_refund(with_caller(refund, &service_caller()))
                    .await?;
                let reason_set = reason.clone();
                self.orders
                    .modify(&id, move |o| o.cancel_reason = reason_set.clone())
                    .await?;
                self.on_refunded(&id, None).await?;
            }
        }
        let current = self.orders.get(&id).await?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&id, &current.value)),
        }))
    }
}
