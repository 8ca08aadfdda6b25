//! gRPC surface of `OrderService`: the order saga.

use std::sync::Arc;
use std::time::Duration;

use platform::auth::{Caller, MeshAuth};
use platform::config::SagaSettings;
use platform::deadline::Budget;
use platform::events::outbox::OutboxRelay;
use platform::grpc::Retry;
use platform::store::{Collection, Query, StoreError, Versioned};
use prost::Message as _;
use proto::order::order_service_server::OrderService;
use proto::order::*;
use tonic::{Request, Response, Status};

use crate::domain::{Order, OrderStatus as S};
use crate::idempotency::{self, Claim, Keys};
use crate::peers::{Catalog, Payments, Shipments};

#[derive(Clone, Debug)]
pub struct OrderApi {
    pub(crate) orders: Collection<Order>,
    pub(crate) keys: Keys,
    pub(crate) relay: OutboxRelay<Order>,
    /// product-svc: prices, stock reservations.
    pub(crate) catalog: Arc<dyn Catalog>,
    /// payment-svc: charges and refunds.
    pub(crate) payments: Arc<dyn Payments>,
    /// shipping-svc: voids shipments of cancelled orders.
    pub(crate) shipments: Arc<dyn Shipments>,
    pub(crate) retry: Retry,
    /// Verifies who calls and signs order-svc's own calls.
    pub(crate) mesh: MeshAuth,
    pub(crate) saga: SagaSettings,
    /// Longest this server works on one request (`GRPC_SERVER_TIMEOUT_MS`):
    /// the cap of every request's budget.
    pub(crate) server_timeout: Duration,
}

pub(crate) fn money(amount: i64, currency: &str) -> Option<proto::common::Money> {
    Some(proto::common::Money::new(amount, currency))
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
        created_at: Some(proto::ext::from_millis(o.created_at)),
        updated_at: Some(proto::ext::from_millis(o.updated_at)),
    }
}

pub(crate) fn lines_of(o: &Order) -> Vec<proto::events::OrderLine> {
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
            category: i.category.clone(),
        })
        .collect()
}

fn not_found() -> Status {
    Status::not_found("order not found")
}

impl OrderApi {
    /// The order if the caller may see it: its owner, an admin, or
    /// product-svc (which asks whether a reservation's order exists).
    async fn load_for(&self, caller: &Caller, id: &str) -> Result<Versioned<Order>, Status> {
        self.load_if(id, |order| {
            caller.is_admin() || caller.is_from("product-svc") || order.user_id == caller.user_id
        })
        .await
    }

    /// Order `id` if `visible` says the caller may see it, else NOT_FOUND.
    async fn load_if(
        &self,
        id: &str,
        visible: impl FnOnce(&Order) -> bool,
    ) -> Result<Versioned<Order>, Status> {
        match self.orders.get(id).await {
            Ok(order) if order.value.abandoned => Err(not_found()),
            Ok(order) if visible(&order.value) => Ok(order),
            Ok(_) | Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => Err(not_found()),
            Err(err) => Err(err.into()),
        }
    }

    fn budget<T>(&self, request: &Request<T>) -> Budget {
        Budget::from_metadata(request.metadata(), self.server_timeout)
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    #[tracing::instrument(skip_all)]
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let budget = self.budget(&request);
        let r = request.into_inner();
        if r.idempotency_key.is_empty() {
            let id = uuid::Uuid::now_v7().to_string();
            let order = budget
                .run(async {
                    self.create(&caller, &id, true, &r, &budget)
                        .await
                        .map_err(|f| f.status)
                })
                .await?;
            return Ok(Response::new(CreateOrderResponse { order: Some(order) }));
        }
        let mut canonical = r.clone();
        canonical.idempotency_key.clear();
        let hash = idempotency::hash(&canonical.encode_to_vec());
        let claim = self
            .keys
            .claim(
                &caller.user_id,
                "create-order",
                &r.idempotency_key,
                &hash,
                &budget,
            )
            .await?;
        let (record, fresh) = match claim {
            Claim::Replay(bytes) => {
                let replay = CreateOrderResponse::decode(bytes.as_slice())
                    .map_err(|_| Status::internal("stored response unreadable"))?;
                return Ok(Response::new(replay));
            }
            Claim::Proceed { record, fresh } => (record, fresh),
        };
        let resource_id = record.value.resource_id.clone();
        let created = match tokio::time::timeout(
            budget.remaining(),
            self.create(&caller, &resource_id, fresh, &r, &budget),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(crate::saga::CreateFailure {
                status: Status::deadline_exceeded("the caller's deadline passed"),
                // Cut short anywhere: the retry takes the key over and finds out.
                keep_key: true,
            }),
        };
        match created {
            Ok(order) => {
                let response = CreateOrderResponse { order: Some(order) };
                self.keys
                    .complete(record, &response.encode_to_vec())
                    .await?;
                Ok(Response::new(response))
            }
            Err(failure) => {
                if !failure.keep_key {
                    self.keys.release(&record.id).await;
                }
                Err(failure.status)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn process_payment(
        &self,
        request: Request<ProcessPaymentRequest>,
    ) -> Result<Response<ProcessPaymentResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let budget = self.budget(&request);
        let r = request.into_inner();
        let order = self.load_for(&caller, &r.order_id).await?;
        let key = if r.idempotency_key.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            r.idempotency_key
        };
        let (payment, status) = self.pay(&caller, order, key, r.card, &budget).await?;
        Ok(Response::new(ProcessPaymentResponse {
            payment: Some(payment),
            order_status: status_to_proto(status) as i32,
        }))
    }

    async fn get_order_status(
        &self,
        request: Request<GetOrderStatusRequest>,
    ) -> Result<Response<GetOrderStatusResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let order = if r.abandon_if_missing && caller.is_from("product-svc") {
            self.abandon_if_missing(&r.order_id).await?
        } else if caller.is_from("shipping-svc") {
            // Whether the order is paid, before its label is bought.
            self.load_if(&r.order_id, |_| true).await?
        } else {
            self.load_for(&caller, &r.order_id).await?
        };
        Ok(Response::new(GetOrderStatusResponse {
            order_id: r.order_id,
            status: status_to_proto(order.value.status) as i32,
            updated_at: Some(proto::ext::from_millis(order.value.updated_at)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let caller = self.mesh.caller(request.metadata()).await?;
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
        let caller = self.mesh.caller(request.metadata()).await?;
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
                .filter(|o| !o.value.abandoned)
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
        let caller = self.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let order = self.load_for(&caller, &r.order_id).await?;
        let current = self.cancel(&caller, &order).await?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&r.order_id, &current.value)),
        }))
    }
}
