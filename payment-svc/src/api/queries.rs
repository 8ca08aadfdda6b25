//! Reading payments: one by id, or a page of a user's or an order's.

use platform::auth::Caller;
use platform::store::{Query, StoreError};
use proto::payment::{GetPaymentStatusResponse, ListPaymentsRequest, ListPaymentsResponse};
use tonic::Status;

use super::convert::to_proto;
use super::{PaymentApi, lookup_err};
use crate::domain;

impl PaymentApi {
    fn may_read(caller: &Caller, payment: &domain::Payment) -> bool {
        caller.is_admin() || caller.user_id == payment.user_id
    }

    /// `GetPaymentStatus`: a payment the caller may read, else NotFound.
    pub(super) async fn payment_status(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<GetPaymentStatusResponse, Status> {
        let payment = self.payments.get(&id).await.map_err(lookup_err)?;
        if !Self::may_read(caller, &payment.value) {
            return Err(Status::not_found("payment not found"));
        }
        Ok(GetPaymentStatusResponse {
            payment: Some(to_proto(&id, &payment.value)),
        })
    }

    /// `ListPayments`: customers see their own, admins any.
    pub(super) async fn list(
        &self,
        caller: &Caller,
        r: ListPaymentsRequest,
    ) -> Result<ListPaymentsResponse, Status> {
        let privileged = caller.is_admin();
        let user = if r.user_id.is_empty() {
            if privileged {
                None
            } else {
                Some(caller.user_id.clone())
            }
        } else if privileged || r.user_id == caller.user_id {
            Some(r.user_id.clone())
        } else {
            return Err(Status::permission_denied(
                "customers list only their own payments",
            ));
        };
        let mut query = Query::new().sort_by_id(true).page(r.page.as_ref());
        if let Some(user) = &user {
            query = query.eq("user_id", user.as_str());
        }
        if !r.order_id.is_empty() {
            query = query.eq("order_id", r.order_id.as_str());
        }
        let page = self
            .payments
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        Ok(ListPaymentsResponse {
            payments: page
                .items
                .iter()
                .map(|p| to_proto(&p.id, &p.value))
                .collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }
}
