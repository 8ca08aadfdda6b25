//! Users, roles and refresh tokens: pure types and rules, no I/O.

use serde::{Deserialize, Serialize};

use platform::events::outbox::{HasOutbox, Outbox};

pub use platform::error::FieldError;

/// An email address, trimmed and lower-cased (so uniqueness is
/// case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldError::new("email", "must be a valid email address");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: 8 to 128 characters. Never stored or logged.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, FieldError> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(FieldError::new("password", "must be at least 8 characters"));
        }
        if n > 128 {
            return Err(FieldError::new(
                "password",
                "must be at most 128 characters",
            ));
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    platform::text::check("name", name)?;
    match name.chars().count() {
        0 => Err(FieldError::new("name", "must not be empty")),
        1..=100 => Ok(name.to_string()),
        _ => Err(FieldError::new("name", "must be at most 100 characters")),
    }
}

/// A phone number: optional `+`, then 6 to 15 digits (spaces, dashes,
/// dots and parentheses are dropped).
pub fn parse_phone(raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", trimmed),
    };
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    if (6..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(format!("{plus}{digits}"))
    } else {
        Err(FieldError::new(
            "phone",
            "must be a phone number of 6 to 15 digits, optionally starting with +",
        ))
    }
}

pub use platform::address::Address;

/// Preferred product categories: up to 20, each 1..=50 characters,
/// lower-cased and de-duplicated.
pub fn parse_categories(raw: &[String]) -> Result<Vec<String>, FieldError> {
    if raw.len() > 20 {
        return Err(FieldError::new("categories", "at most 20 categories"));
    }
    let mut out: Vec<String> = Vec::new();
    for c in raw {
        let c = c.trim().to_lowercase();
        if c.is_empty() || c.chars().count() > 50 {
            return Err(FieldError::new(
                "categories",
                "each category must be 1 to 50 characters",
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => platform::auth::ROLE_CUSTOMER,
            Role::Admin => platform::auth::ROLE_ADMIN,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub preferences_updated_at: i64,
    /// Failed logins in the current window (see [`MAX_FAILED_LOGINS`]).
    #[serde(default)]
    pub login_guard: Window,
    #[serde(default)]
    pub outbox: Outbox,
}

/// Failed logins an account allows in one window, whoever asks.
pub const MAX_FAILED_LOGINS: u32 = 20;
/// The window of [`MAX_FAILED_LOGINS`], in seconds.
pub const FAILED_LOGIN_WINDOW_SECS: i64 = 15 * 60;

/// Accounts registered per minute by callers other than the gateway (each
/// replica), so a process inside the network cannot create them in bulk.
pub const DIRECT_SIGNUPS_PER_MINUTE: u32 = 10;

/// Slots taken in a fixed window. A login takes one before the password is
/// checked and gives it back when the password matches, so concurrent
/// guesses can never check more passwords than the limit allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds.
    pub window_start: i64,
    pub taken: u32,
}

impl Window {
    /// Takes one of `max` slots per `secs` at `now` (Unix seconds), or
    /// says in how many seconds one is free again.
    pub fn take(&mut self, now: i64, max: u32, secs: i64) -> Result<(), u64> {
        if now - self.window_start >= secs || now < self.window_start {
            self.window_start = now;
            self.taken = 0;
        }
        if self.taken >= max {
            return Err((self.window_start + secs - now).max(1) as u64);
        }
        self.taken += 1;
        Ok(())
    }

    /// A failed login's slot, at `now`.
    pub fn take_login(&mut self, now: i64) -> Result<(), u64> {
        self.take(now, MAX_FAILED_LOGINS, FAILED_LOGIN_WINDOW_SECS)
    }

    /// Gives back a slot (a login whose password matched).
    pub fn give_back(&mut self) {
        self.taken = self.taken.saturating_sub(1);
    }
}

impl HasOutbox for User {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

/// State of a refresh token. Each use rotates it: the old one becomes
/// `Rotated` and a new one of the same family is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Rotated,
    Revoked,
}

/// A stored refresh token; its id is the SHA-256 of the token, never the
/// token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub user_id: String,
    pub family_id: String,
    pub status: TokenStatus,
    /// Unix seconds.
    pub expires_at: i64,
    pub created_at: i64,
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Rotate it and issue the next one.
    Rotate,
    /// It was already rotated: someone replayed it; revoke the family.
    ReuseDetected,
    /// Expired or revoked.
    Reject,
}

impl RefreshToken {
    pub fn decide(&self, now: i64) -> RefreshDecision {
        match self.status {
            TokenStatus::Rotated => RefreshDecision::ReuseDetected,
            TokenStatus::Revoked => RefreshDecision::Reject,
            TokenStatus::Active if self.expires_at <= now => RefreshDecision::Reject,
            TokenStatus::Active => RefreshDecision::Rotate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_checks_at_most_the_limit_of_wrong_passwords_per_window() {
        let mut guard = Window::default();
        let start = 1_000_000;
        for _ in 0..MAX_FAILED_LOGINS {
            guard.take_login(start).unwrap();
        }
        let wait = guard.take_login(start + 60).unwrap_err();
        assert_eq!(wait as i64, FAILED_LOGIN_WINDOW_SECS - 60);
        // A login whose password matched gives its slot back.
        guard.give_back();
        assert!(guard.take_login(start + 61).is_ok());
        assert!(guard.take_login(start + 62).is_err());
        // The next window starts afresh.
        assert!(guard.take_login(start + FAILED_LOGIN_WINDOW_SECS).is_ok());
        assert_eq!(guard.taken, 1);
    }

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@example",
            "alice@@example.com",
            "alice@.example.com",
            "alice@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn passwords_need_8_to_128_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("éééééééé").is_ok(), "counted in characters");
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("hunter2hunter2").unwrap()),
            "Password(<redacted>)"
        );
    }

    #[test]
    fn names_phones_and_categories() {
        assert_eq!(parse_name("  Ada ").unwrap(), "Ada");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(101)).is_err());
        assert!(parse_name("a\u{0}b").is_err());
        assert_eq!(parse_phone("+1 (555) 010-9999").unwrap(), "+15550109999");
        assert!(parse_phone("12345").is_err());
        assert!(parse_phone("call me").is_err());
        assert_eq!(
            parse_categories(&["Books".into(), "books".into(), " toys ".into()]).unwrap(),
            ["books", "toys"]
        );
        assert!(parse_categories(&[String::new()]).is_err());
        assert!(parse_categories(&vec!["a".to_string(); 21]).is_err());
    }

    #[test]
    fn addresses_need_their_fields() {
        let ok = Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "fr".into(),
            ..Default::default()
        };
        assert_eq!(ok.clone().parse("address").unwrap().country, "FR");
        let errors = Address::default().parse("address").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "address.name",
                "address.line1",
                "address.city",
                "address.postal_code",
                "address.country"
            ]
        );
        assert!(
            Address {
                country: "FRA".into(),
                ..ok
            }
            .parse("address")
            .is_err()
        );
    }

    #[test]
    fn refresh_token_decisions() {
        let token = |status, expires_at| RefreshToken {
            user_id: "u".into(),
            family_id: "f".into(),
            status,
            expires_at,
            created_at: 0,
        };
        assert_eq!(
            token(TokenStatus::Active, 100).decide(50),
            RefreshDecision::Rotate
        );
        assert_eq!(
            token(TokenStatus::Active, 100).decide(100),
            RefreshDecision::Reject
        );
        assert_eq!(
            token(TokenStatus::Rotated, 100).decide(50),
            RefreshDecision::ReuseDetected
        );
        assert_eq!(
            token(TokenStatus::Revoked, 100).decide(50),
            RefreshDecision::Reject
        );
    }
}
