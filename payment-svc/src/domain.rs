//! Payments and refunds: pure types and rules, no I/O.

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

/// A card as the client typed it. Never stored, never logged: only the
/// brand and the last four digits leave this type.
#[derive(Clone)]
pub struct Card {
    number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    cvc: String,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card({} ****{})", self.brand(), self.last4())
    }
}

pub use platform::error::FieldError;

fn err(field: &'static str, message: &str) -> FieldError {
    FieldError::new(field, message)
}

/// Luhn checksum over the digits of `number`.
pub fn luhn(number: &str) -> bool {
    let digits: Vec<u32> = number.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 12 || digits.len() > 19 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Card {
    /// Validates number (Luhn), expiry (this month or later) and CVC.
    pub fn parse(
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
        now_year: u32,
        now_month: u32,
    ) -> Result<Card, Vec<FieldError>> {
        let mut errors = Vec::new();
        let number: String = number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !number.chars().all(|c| c.is_ascii_digit()) || !luhn(&number) {
            errors.push(err("card.number", "is not a valid card number"));
        }
        if !(1..=12).contains(&exp_month) {
            errors.push(err("card.exp_month", "must be 1 to 12"));
        } else if exp_year < now_year
            || (exp_year == now_year && exp_month < now_month)
            || exp_year > now_year + 50
        {
            errors.push(err("card.exp_year", "the card has expired"));
        }
        if !(3..=4).contains(&cvc.len()) || !cvc.chars().all(|c| c.is_ascii_digit()) {
            errors.push(err("card.cvc", "must be 3 or 4 digits"));
        }
        if errors.is_empty() {
            Ok(Card {
                number,
                exp_month,
                exp_year,
                cvc: cvc.to_string(),
            })
        } else {
            Err(errors)
        }
    }

    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    pub fn last4(&self) -> String {
        self.number[self.number.len().saturating_sub(4)..].to_string()
    }

    pub fn brand(&self) -> &'static str {
        let n = &self.number;
        if n.starts_with('4') {
            "visa"
        } else if (51..=55).contains(&n[..2].parse::<u32>().unwrap_or(0))
            || (2221..=2720).contains(&n[..4].parse::<u32>().unwrap_or(0))
        {
            "mastercard"
        } else if n.starts_with("34") || n.starts_with("37") {
            "amex"
        } else {
            "unknown"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Sent to the provider; outcome unknown (a timeout): the reconciler asks again.
    Pending,
    Succeeded,
    Failed,
    PartiallyRefunded,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    /// Idempotency key of the refund request.
    pub key: String,
    pub amount: i64,
    pub reason: String,
    pub state: RefundState,
    pub provider_ref: String,
    pub failure_reason: String,
    pub created_at: i64,
}

/// A stored payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub order_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub state: PaymentState,
    pub card_brand: String,
    pub card_last4: String,
    pub card_exp: String,
    /// `<order>:<key>`: unique, so a retried request finds its payment.
    pub idempotency: String,
    /// The order id while this payment is pending or succeeded: unique, so
    /// an order is never charged twice at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_lock: Option<String>,
    pub provider: String,
    pub provider_ref: String,
    pub failure_reason: String,
    pub failure_code: String,
    #[serde(default)]
    pub refunds: Vec<Refund>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub outbox: Outbox,
}

impl HasOutbox for Payment {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

/// Why a refund cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundError {
    NotCaptured,
    OverRefund { refundable: i64 },
    BadAmount,
}

impl Payment {
    /// Amount refunded or being refunded.
    pub fn refunded(&self) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.state != RefundState::Failed)
            .map(|r| r.amount)
            .sum()
    }

    pub fn refunded_settled(&self) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.state == RefundState::Succeeded)
            .map(|r| r.amount)
            .sum()
    }

    /// Checks a refund of `amount` (None = everything left).
    pub fn refundable(&self, amount: Option<i64>) -> Result<i64, RefundError> {
        if !matches!(
            self.state,
            PaymentState::Succeeded | PaymentState::PartiallyRefunded | PaymentState::Refunded
        ) {
            return Err(RefundError::NotCaptured);
        }
        let left = self.amount - self.refunded();
        let amount = amount.unwrap_or(left);
        if amount <= 0 && left > 0 {
            return Err(RefundError::BadAmount);
        }
        if amount > left || left == 0 {
            return Err(RefundError::OverRefund { refundable: left });
        }
        Ok(amount)
    }

    /// State after the refunds settle.
    pub fn settle_state(&mut self) {
        let settled = self.refunded_settled();
        if settled >= self.amount {
            self.state = PaymentState::Refunded;
        } else if settled > 0 {
            self.state = PaymentState::PartiallyRefunded;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_card_rules() {
        assert!(luhn("4242424242424242"));
        assert!(luhn("4000000000000002"));
        assert!(luhn("4000000000009995"));
        assert!(!luhn("4242424242424241"));
        assert!(!luhn("1234"));
        let ok = Card::parse("4242 4242 4242 4242", 12, 2030, "123", 2026, 11).unwrap();
        assert_eq!((ok.brand(), ok.last4().as_str()), ("visa", "4242"));
        assert!(
            !format!("{ok:?}").contains("42424242"),
            "the number never reaches Debug"
        );
        let errors = Card::parse("4242424242424241", 13, 2030, "12", 2026, 11).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["card.number", "card.exp_month", "card.cvc"]);
        assert!(
            Card::parse("4242424242424242", 10, 2026, "123", 2026, 11).is_err(),
            "expired last month"
        );
        assert!(
            Card::parse("4242424242424242", 11, 2026, "123", 2026, 11).is_ok(),
            "valid through this month"
        );
        assert_eq!(
            Card::parse("5555555555554444", 1, 2030, "123", 2026, 1)
                .unwrap()
                .brand(),
            "mastercard"
        );
    }

    fn paid(amount: i64) -> Payment {
        Payment {
            order_id: "o".into(),
            user_id: "u".into(),
            amount,
            currency: "USD".into(),
            state: PaymentState::Succeeded,
            card_brand: "visa".into(),
            card_last4: "4242".into(),
            card_exp: "12/2030".into(),
            idempotency: "o:k".into(),
            charge_lock: Some("o".into()),
            provider: "simulated".into(),
            provider_ref: "ch_1".into(),
            failure_reason: String::new(),
            failure_code: String::new(),
            refunds: vec![],
            created_at: 0,
            updated_at: 0,
            outbox: Outbox::default(),
        }
    }

    fn refund(amount: i64, state: RefundState) -> Refund {
        Refund {
            id: "r".into(),
            key: "k".into(),
            amount,
            reason: String::new(),
            state,
            provider_ref: String::new(),
            failure_reason: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn refunds_never_exceed_the_captured_amount() {
        let mut p = paid(1000);
        assert_eq!(p.refundable(Some(400)), Ok(400));
        p.refunds.push(refund(400, RefundState::Succeeded));
        assert_eq!(
            p.refundable(Some(601)),
            Err(RefundError::OverRefund { refundable: 600 })
        );
        assert_eq!(p.refundable(None), Ok(600));
        p.refunds.push(refund(100, RefundState::Failed));
        assert_eq!(p.refundable(None), Ok(600), "failed refunds do not count");
        p.refunds.push(refund(600, RefundState::Pending));
        assert_eq!(
            p.refundable(Some(1)),
            Err(RefundError::OverRefund { refundable: 0 }),
            "pending ones do"
        );
        assert_eq!(
            p.refundable(Some(0)),
            Err(RefundError::OverRefund { refundable: 0 })
        );
        p.refunds[2].state = RefundState::Succeeded;
        p.settle_state();
        assert_eq!(p.state, PaymentState::Refunded);
        let mut failed = paid(10);
        failed.state = PaymentState::Failed;
        assert_eq!(failed.refundable(None), Err(RefundError::NotCaptured));
        assert_eq!(paid(10).refundable(Some(-5)), Err(RefundError::BadAmount));
    }
}
