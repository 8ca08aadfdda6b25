//! Notification texts: one template file per event kind under
//! `templates/` (first line the title, the rest the body), rendered with
//! minijinja.

use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "user.registered",
        include_str!("../templates/user.registered.txt"),
    ),
    (
        "order.created",
        include_str!("../templates/order.created.txt"),
    ),
    (
        "payment.processed",
        include_str!("../templates/payment.processed.txt"),
    ),
    (
        "payment.failed",
        include_str!("../templates/payment.failed.txt"),
    ),
    (
        "payment.refunded",
        include_str!("../templates/payment.refunded.txt"),
    ),
    (
        "shipping.updated",
        include_str!("../templates/shipping.updated.txt"),
    ),
    (
        "order.cancelled",
        include_str!("../templates/order.cancelled.txt"),
    ),
    (
        "inventory.low",
        include_str!("../templates/inventory.low.txt"),
    ),
    (
        "review.created",
        include_str!("../templates/review.created.txt"),
    ),
];

#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        for (kind, source) in TEMPLATES {
            let (title, body) = source.split_once('\n').unwrap_or((source, ""));
            env.add_template(format!("{kind}.title").leak(), title.trim())?;
            env.add_template(format!("{kind}.body").leak(), body.trim())?;
        }
        Ok(Self { env })
    }

    /// (title, body) for `kind` with `context`.
    pub fn render(
        &self,
        kind: &str,
        context: impl Serialize + Clone,
    ) -> anyhow::Result<(String, String)> {
        let title = self
            .env
            .get_template(&format!("{kind}.title"))?
            .render(context.clone())?;
        let body = self
            .env
            .get_template(&format!("{kind}.body"))?
            .render(context)?;
        Ok((title, body))
    }
}

/// `12.34 USD` from minor units.
pub fn money(m: &Option<proto::common::Money>) -> String {
    let m = m.clone().unwrap_or_default();
    format!(
        "{}.{:02} {}",
        m.amount / 100,
        (m.amount % 100).abs(),
        m.currency
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders() {
        let t = Templates::load().unwrap();
        let (title, body) = t
            .render(
                "order.created",
                minijinja::context! {short_order => "0190ab", items => 2, total => "12.00 USD"},
            )
            .unwrap();
        assert_eq!(title, "Order received");
        assert!(
            body.contains("0190ab") && body.contains("2 items") && body.contains("12.00 USD"),
            "{body}"
        );
        let (_, one) = t
            .render(
                "order.created",
                minijinja::context! {short_order => "x", items => 1, total => "1.00 USD"},
            )
            .unwrap();
        assert!(one.contains("1 item for"), "{one}");
        for (kind, _) in TEMPLATES {
            assert!(t.render(kind, minijinja::context! {}).is_ok(), "{kind}");
        }
        assert_eq!(
            money(&Some(proto::common::Money::new(1205, "USD"))),
            "12.05 USD"
        );
    }
}
