//! Reading orders: who may see which.

use platform::Component;
use platform::auth::Caller;
use platform::store::{Query, StoreError, Versioned};
use tonic::Status;

use super::{Saga, order_not_found};
use crate::domain::Order;

impl Saga {
    /// The order if the caller may see it: its owner, an admin, or
    /// product-svc (which asks whether a reservation's order exists).
    pub(crate) async fn load_for(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Versioned<Order>, Status> {
        self.load_if(id, |order| {
            caller.is_admin()
                || caller.is_from(Component::PRODUCT)
                || order.user_id == caller.user_id
        })
        .await
    }

    /// The order's status for shipping-svc, which asks whether it is paid
    /// before it buys its label; the caller for anyone else.
    pub(crate) async fn status_for(
        &self,
        caller: &Caller,
        id: &str,
        abandon_if_missing: bool,
    ) -> Result<Versioned<Order>, Status> {
        if abandon_if_missing && caller.is_from(Component::PRODUCT) {
            self.abandon_if_missing(id).await
        } else if caller.is_from(Component::SHIPPING) {
            self.load_if(id, |_| true).await
        } else {
            self.load_for(caller, id).await
        }
    }

    /// Order `id` if `visible` says the caller may see it, else NOT_FOUND.
    async fn load_if(
        &self,
        id: &str,
        visible: impl FnOnce(&Order) -> bool,
    ) -> Result<Versioned<Order>, Status> {
        match self.orders.get(id).await {
            Ok(order) if order.value.abandoned => Err(order_not_found()),
            Ok(order) if visible(&order.value) => Ok(order),
            Ok(_) | Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => {
                Err(order_not_found())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// A page of orders, newest first: the caller's own, or for an admin
    /// anyone's (`user_id`, or everyone's when empty).
    pub(crate) async fn list(
        &self,
        caller: &Caller,
        user_id: &str,
        page: Option<&proto::common::PageRequest>,
    ) -> Result<(Vec<Versioned<Order>>, Option<String>), Status> {
        let user = if caller.is_admin() {
            Some(user_id.to_string()).filter(|u| !u.is_empty())
        } else if user_id.is_empty() || user_id == caller.user_id {
            Some(caller.user_id.clone())
        } else {
            return Err(Status::permission_denied(
                "customers list only their own orders",
            ));
        };
        let mut query = Query::new().sort("created_at", true).page(page);
        if let Some(user) = &user {
            query = query.eq("user_id", user.as_str());
        }
        let page = self
            .orders
            .find(&query)
            .await
            .map_err(StoreError::into_list_status)?;
        let orders = page
            .items
            .into_iter()
            .filter(|o| !o.value.abandoned)
            .collect();
        Ok((orders, page.next_cursor))
    }
}
