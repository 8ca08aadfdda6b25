//! gRPC face of `OrderService`: checks who calls, fixes the request's
//! budget, hands the request to the [`Saga`] and turns its answer into a
//! response.

use std::time::Duration;

use platform::deadline::Budget;
use proto::order::order_service_server::OrderService;
use proto::order::*;
use tonic::{Request, Response, Status};

use crate::convert::{status_to_proto, to_proto};
use crate::saga::Saga;

#[derive(Clone, Debug)]
pub struct OrderApi {
    pub(crate) saga: Saga,
    /// Longest this server works on one request (`GRPC_SERVER_TIMEOUT_MS`):
    /// the cap of every request's budget.
    pub(crate) server_timeout: Duration,
}

impl OrderApi {
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
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let budget = self.budget(&request);
        let r = request.into_inner();
        let created = self.saga.create_once(&caller, &r, &budget).await?;
        Ok(Response::new(created))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn process_payment(
        &self,
        request: Request<ProcessPaymentRequest>,
    ) -> Result<Response<ProcessPaymentResponse>, Status> {
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let budget = self.budget(&request);
        let r = request.into_inner();
        let order = self.saga.load_for(&caller, &r.order_id).await?;
        let key = if r.idempotency_key.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            r.idempotency_key
        };
        let (payment, status) = self.saga.pay(&caller, order, key, r.card, &budget).await?;
        Ok(Response::new(ProcessPaymentResponse {
            payment: Some(payment),
            order_status: status_to_proto(status) as i32,
        }))
    }

    async fn get_order_status(
        &self,
        request: Request<GetOrderStatusRequest>,
    ) -> Result<Response<GetOrderStatusResponse>, Status> {
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let order = self
            .saga
            .status_for(&caller, &r.order_id, r.abandon_if_missing)
            .await?;
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
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let id = request.into_inner().order_id;
        let order = self.saga.load_for(&caller, &id).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(to_proto(&id, &order.value)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let (orders, next) = self.saga.list(&caller, &r.user_id, r.page.as_ref()).await?;
        Ok(Response::new(ListOrdersResponse {
            orders: orders.iter().map(|o| to_proto(&o.id, &o.value)).collect(),
            next_cursor: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let caller = self.saga.mesh.caller(request.metadata()).await?;
        let r = request.into_inner();
        let order = self.saga.load_for(&caller, &r.order_id).await?;
        let current = self.saga.cancel(&caller, &order).await?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(to_proto(&r.order_id, &current.value)),
        }))
    }
}
