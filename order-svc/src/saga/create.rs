//! Placing an order: the request validated, prices from the catalog,
//! stock reserved under the order id (given back when the outcome is
//! unclear), the order stored PENDING_PAYMENT with `order.created`; and the
//! tombstone that keeps an id whose creation was given up from being placed.

use platform::auth::Caller;
use platform::deadline::Budget;
use platform::error::{invalid, invalid_fields};
use platform::store::{Bound, Query, StoreError, Versioned};
use proto::events::envelope::Payload;
use proto::order::{CreateOrderRequest, CreateOrderResponse};
use tonic::{Code, Status};

use super::{Saga, ambiguous};
use crate::convert::{lines_of, money, to_proto};
use crate::domain::{self, Item, Line, Order};
use crate::idempotency::Failure;

impl Saga {
    /// CreateOrder: places the order, once per Idempotency-Key and
    /// request when the caller sends a key.
    pub(crate) async fn create_once(
        &self,
        caller: &Caller,
        r: &CreateOrderRequest,
        budget: &Budget,
    ) -> Result<CreateOrderResponse, Status> {
        let answer = |order| CreateOrderResponse { order: Some(order) };
        if r.idempotency_key.is_empty() {
            let id = uuid::Uuid::now_v7().to_string();
            let order = budget
                .run(async {
                    self.create(caller, &id, true, r, budget)
                        .await
                        .map_err(|f| f.status)
                })
                .await?;
            return Ok(answer(order));
        }
        // The key itself is not part of the request it guards.
        let mut canonical = r.clone();
        canonical.idempotency_key.clear();
        self.keys
            .run_once(
                &caller.user_id,
                "create-order",
                &r.idempotency_key,
                &canonical,
                budget,
                |order_id, fresh| async move {
                    self.create(caller, &order_id, fresh, r, budget)
                        .await
                        .map(answer)
                },
            )
            .await
    }

    /// Places an order under `order_id` (the same id on a retry of the
    /// same Idempotency-Key). `fresh`: no earlier attempt used this id, so
    /// there is no order under it to look for.
    pub(crate) async fn create(
        &self,
        caller: &Caller,
        order_id: &str,
        fresh: bool,
        r: &CreateOrderRequest,
        budget: &Budget,
    ) -> Result<proto::order::Order, Failure> {
        let lines: Vec<Line> = r
            .items
            .iter()
            .map(|i| Line::new(&i.product_id, i.quantity))
            .collect();
        let address = r.shipping_address.clone().map(domain::Address::from);
        let address = domain::validate_request(
            &lines,
            address.as_ref(),
            &r.notes,
            self.settings.max_units_per_line,
        )
        .map_err(invalid)?;
        let earlier = if fresh {
            None
        } else {
            self.orders.find_by_id(order_id).await?
        };
        if let Some(existing) = earlier {
            if existing.value.abandoned || existing.value.user_id != caller.user_id {
                return Err(
                    Status::aborted("the order could not be placed; place it again").into(),
                );
            }
            return Ok(to_proto(order_id, &existing.value));
        }
        self.check_unpaid_cap(&caller.user_id).await?;

        // Stock first, and the prices from the product versions that took
        // it (never from the client): one call to the catalog. A refused
        // reserve asks ValidateProducts, so a request the catalog rejects as
        // a whole (an unknown or withdrawn product, mixed currencies) gets
        // the same 422 whatever the stock.
        let stock_lines: Vec<proto::product::StockLine> = lines
            .iter()
            .map(|l| proto::product::StockLine {
                product_id: l.product_id.clone(),
                quantity: l.quantity,
            })
            .collect();
        let reserved = self
            .retry
            .run(|| {
                let catalog = self.catalog.clone();
                let request = Self::keyed_by_product(
                    self.budget_request(
                        budget,
                        proto::product::ReserveStockRequest {
                            order_id: order_id.to_string(),
                            lines: stock_lines.clone(),
                        },
                        &self.mesh.own_caller(),
                    ),
                    lines.iter().map(|l| l.product_id.as_str()),
                );
                async move { catalog.reserve_stock(request).await }
            })
            .await;
        let products = match reserved {
            Ok(reply) => reply.products,
            Err(status) => {
                if ambiguous(&status) {
                    // The reserve may have happened: give it back (a release
                    // also refuses the reserve if it is still on its way). If
                    // this fails too, product-svc's sweeper finds the
                    // reservation without an order and releases it.
                    self.release_now(order_id, &lines).await;
                } else if let Ok(validation) = self.catalog_prices(budget, &lines).await {
                    priced_items(&lines, &validation)?;
                }
                return Err(match status.code() {
                    Code::NotFound => invalid_fields([("items", status.message().to_string())]),
                    _ => status,
                }
                .into());
            }
        };
        let validation = if products.is_empty() {
            // A repeat of a reserve that was made before: it took nothing
            // now. If asking fails, the units stay held for the retry (or
            // for product-svc's sweeper, when no retry comes).
            self.catalog_prices(budget, &lines).await?
        } else {
            products
        };
        let (items, currency, total) = match priced_items(&lines, &validation) {
            Ok(priced) => priced,
            // Not an order the catalog takes: give the units back.
            Err(status) => {
                self.release_now(order_id, &lines).await;
                return Err(status.into());
            }
        };

        let now = platform::clock::now().millis();
        let mut order = Order {
            user_id: caller.user_id.clone(),
            items,
            currency: currency.clone(),
            total,
            shipping_address: address,
            notes: r.notes.trim().to_string(),
            created_at: now,
            updated_at: now,
            expires_at: Some(now + self.settings.payment_timeout.as_millis() as i64),
            ..Order::default()
        };
        order.outbox.stage(&platform::events::event(
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
                let order = to_proto(order_id, &stored.value);
                self.after_write(stored).await;
                Ok(order)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                let existing = self.orders.get(order_id).await?;
                if existing.value.abandoned {
                    return Err(
                        Status::aborted("the order could not be placed; place it again").into(),
                    );
                }
                Ok(to_proto(order_id, &existing.value))
            }
            Err(err) => {
                // The write may have landed: leave the stock held and the
                // key in progress; the retry (or product-svc's sweeper,
                // asking this service) settles it.
                Err(Failure {
                    status: err.into(),
                    keep_key: true,
                })
            }
        }
    }

    /// Refuses a new order when the customer already holds the most unpaid
    /// ones. One query: an order carries `expires_at` exactly while it
    /// awaits payment (PENDING_PAYMENT or PAYMENT_FAILED; `Order::close`
    /// removes it on the way out), so the open orders are the customer's
    /// orders that have one, due or not.
    async fn check_unpaid_cap(&self, user_id: &str) -> Result<(), Status> {
        let cap = self.settings.max_unpaid_per_customer as usize;
        let open = self
            .orders
            .find(
                &Query::new()
                    .eq("user_id", user_id)
                    .range("expires_at", Some(Bound::Inclusive(i64::MIN.into())), None)
                    .limit((cap + 1).min(platform::store::MAX_PAGE)),
            )
            .await?
            .items
            .len();
        if open >= cap {
            return Err(Status::failed_precondition(format!(
                "at most {cap} orders may await payment at once; pay or cancel one first"
            )));
        }
        Ok(())
    }

    /// What the catalog says of each line's product, in line order.
    async fn catalog_prices(
        &self,
        budget: &Budget,
        lines: &[Line],
    ) -> Result<Vec<proto::product::ProductValidation>, Status> {
        let ids: Vec<String> = lines.iter().map(|l| l.product_id.clone()).collect();
        Ok(self
            .retry
            .run(|| {
                let catalog = self.catalog.clone();
                let request = self.budget_request(
                    budget,
                    proto::product::ValidateProductsRequest {
                        product_ids: ids.clone(),
                    },
                    &self.mesh.own_caller(),
                );
                async move { catalog.validate_products(request).await }
            })
            .await?
            .products)
    }

    /// Releases `order_id`'s stock now, best effort (a fresh short deadline:
    /// the request's own may be spent).
    async fn release_now(&self, order_id: &str, lines: &[Line]) {
        let request = Self::keyed_by_product(
            self.step_request(proto::product::ReleaseStockRequest {
                order_id: order_id.to_string(),
            }),
            lines.iter().map(|l| l.product_id.as_str()),
        );
        if let Err(status) = self.catalog.release_stock(request).await {
            tracing::warn!(order = order_id, code = ?status.code(), "stock not released after a failed creation; the reservation sweeper will");
        }
    }

    /// GetOrderStatus with `abandon_if_missing`: records an unknown id as
    /// never placed, atomically, so a creation still under way for it
    /// cannot complete after its stock was released.
    pub(crate) async fn abandon_if_missing(&self, id: &str) -> Result<Versioned<Order>, Status> {
        let tombstone = Order::tombstone(platform::clock::now().millis());
        match self.orders.insert(id, tombstone).await {
            Ok(stored) => Ok(stored),
            Err(StoreError::AlreadyExists { .. }) => Ok(self.orders.get(id).await?),
            Err(err) => Err(err.into()),
        }
    }
}

/// Lines priced from what the catalog said of their products (found by
/// id, in any order), their one currency and the total.
fn priced_items(
    lines: &[Line],
    validation: &[proto::product::ProductValidation],
) -> Result<(Vec<Item>, String, i64), Status> {
    let mut items = Vec::new();
    let mut currencies = Vec::new();
    let mut errors = Vec::new();
    for (
        i,
        Line {
            product_id,
            quantity,
        },
    ) in lines.iter().enumerate()
    {
        let Some(v) = validation
            .iter()
            .find(|v| v.product_id == *product_id)
            .filter(|v| v.found && v.active)
        else {
            errors.push((
                format!("items[{i}].product_id"),
                format!("unknown product {product_id}"),
            ));
            continue;
        };
        let price = v.price.clone().unwrap_or_default();
        currencies.push(price.currency.clone());
        items.push(Item {
            product_id: product_id.clone(),
            sku: v.sku.clone(),
            name: v.name.clone(),
            unit_price: price.amount,
            quantity: i64::from(*quantity),
            line_total: price.amount * i64::from(*quantity),
            weight_grams: v.weight_grams,
            category: v.category.clone(),
        });
    }
    if !errors.is_empty() {
        return Err(invalid_fields(
            errors.iter().map(|(f, m)| (f.as_str(), m.clone())),
        ));
    }
    let currency = currencies.first().cloned().unwrap_or_default();
    if currencies.iter().any(|c| *c != currency) {
        return Err(invalid_fields([(
            "items",
            "all items must be priced in one currency".to_string(),
        )]));
    }
    let total: i64 = items.iter().map(|i| i.line_total).sum();
    if total <= 0 {
        return Err(invalid_fields([(
            "items",
            "an order must have something to pay".to_string(),
        )]));
    }
    Ok((items, currency, total))
}
