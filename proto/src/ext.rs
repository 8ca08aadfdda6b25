//! Hand-written helpers beside the generated code: times, money, enum
//! names, and the fields a reply must carry.

use prost_types::Timestamp;

/// A `Timestamp` from Unix seconds.
pub fn from_secs(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// A `Timestamp` from Unix milliseconds.
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Unix milliseconds of a `Timestamp`.
pub fn to_millis(ts: &Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// RFC 3339 in UTC (`2026-01-02T03:04:05Z`, fractions when there are any),
/// or an empty string for a missing time.
pub fn rfc3339(ts: Option<&Timestamp>) -> String {
    ts.map(ToString::to_string).unwrap_or_default()
}

impl crate::common::Money {
    pub fn new(amount: i64, currency: &str) -> Self {
        Self {
            amount,
            currency: currency.to_string(),
        }
    }
}

/// The short name of an enum value, without its type's prefix:
/// `OrderStatus::Paid` is `PAID`.
pub trait ShortName {
    fn short_name(&self) -> &'static str;
}

macro_rules! short_names {
    ($($ty:ty => $prefix:literal),* $(,)?) => {
        $(impl ShortName for $ty {
            fn short_name(&self) -> &'static str {
                let name = self.as_str_name();
                name.strip_prefix($prefix).unwrap_or(name)
            }
        })*
    };
}

short_names! {
    crate::order::OrderStatus => "ORDER_STATUS_",
    crate::payment::PaymentStatus => "PAYMENT_STATUS_",
    crate::payment::RefundStatus => "REFUND_STATUS_",
    crate::shipping::ShipmentStatus => "SHIPMENT_STATUS_",
    crate::notification::Channel => "CHANNEL_",
}

/// A field a reply must carry: its absence is the peer's fault, an
/// `INTERNAL` error, never a default value passed on as if it were data.
pub trait Required<T> {
    fn required(self, field: &str) -> Result<T, tonic::Status>;
}

impl<T> Required<T> for Option<T> {
    fn required(self, field: &str) -> Result<T, tonic::Status> {
        self.ok_or_else(|| tonic::Status::internal(format!("the reply has no {field}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_both_ways() {
        assert_eq!(from_millis(1_500).seconds, 1);
        assert_eq!(from_millis(1_500).nanos, 500_000_000);
        assert_eq!(from_millis(-1).seconds, -1);
        assert_eq!(to_millis(&from_millis(1_234_567)), 1_234_567);
        assert_eq!(from_secs(7).seconds, 7);
        assert_eq!(rfc3339(Some(&from_secs(0))), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(None), "");
    }

    #[test]
    fn enum_values_have_short_names() {
        assert_eq!(crate::order::OrderStatus::Paid.short_name(), "PAID");
        assert_eq!(
            crate::shipping::ShipmentStatus::LabelCreated.short_name(),
            "LABEL_CREATED"
        );
        assert_eq!(crate::notification::Channel::InApp.short_name(), "IN_APP");
    }

    #[test]
    fn a_missing_field_is_an_internal_error() {
        let status = None::<u8>.required("order").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(Some(1).required("order").unwrap(), 1);
    }
}

/// The reasons an order is cancelled: `Order.cancel_reason` and
/// `OrderCancelled.reason`.
pub mod cancel_reason {
    /// The customer cancelled it.
    pub const CUSTOMER: &str = "customer";
    /// It was not paid in time.
    pub const PAYMENT_TIMEOUT: &str = "payment_timeout";
    /// An admin cancelled it.
    pub const ADMIN: &str = "admin";
}
