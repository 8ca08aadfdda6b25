//! A postal address as services store it, its one set of rules, and its
//! proto conversions.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Longest value of each field, in characters.
pub const LIMITS: [(&str, usize); 6] = [
    ("name", 100),
    ("line1", 200),
    ("line2", 200),
    ("city", 100),
    ("region", 100),
    ("postal_code", 20),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case once validated.
    pub country: String,
}

impl Address {
    /// Checks an address given as field `prefix` (`shipping_address`,
    /// `address`): name, line1, city and postal code required, every field
    /// within [`LIMITS`] and free of control characters
    /// ([`crate::text`]), the country a two-letter ISO 3166-1 code
    /// (upper-cased here). Every problem is reported at once.
    pub fn parse(mut self, prefix: &str) -> Result<Address, Vec<FieldError>> {
        let mut errors = Vec::new();
        let values = [
            &self.name,
            &self.line1,
            &self.line2,
            &self.city,
            &self.region,
            &self.postal_code,
        ];
        for ((field, max), value) in LIMITS.iter().zip(values) {
            let required = !matches!(*field, "line2" | "region");
            if required && value.trim().is_empty() {
                errors.push(FieldError::new(format!("{prefix}.{field}"), "is required"));
            } else if value.chars().count() > *max {
                errors.push(FieldError::new(
                    format!("{prefix}.{field}"),
                    format!("must be at most {max} characters"),
                ));
            } else if let Err(error) = crate::text::check(&format!("{prefix}.{field}"), value) {
                errors.push(error);
            }
        }
        self.country = self.country.trim().to_ascii_uppercase();
        if self.country.len() != 2 || !self.country.chars().all(|c| c.is_ascii_uppercase()) {
            errors.push(FieldError::new(
                format!("{prefix}.country"),
                "must be a two-letter ISO 3166-1 country code",
            ));
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }
}

impl From<proto::common::Address> for Address {
    fn from(a: proto::common::Address) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<&Address> for proto::common::Address {
    fn from(a: &Address) -> Self {
        Self {
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::address::Address;

    fn paris() -> Address {
        Address {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: " fr ".into(),
            ..Address::default()
        }
    }

    #[test]
    fn a_complete_address_is_normalised() {
        assert_eq!(paris().parse("address").unwrap().country, "FR");
    }

    #[test]
    fn control_characters_are_refused_in_every_field() {
        let bad = Address {
            city: "Par\u{0}is".into(),
            ..paris()
        };
        let errors = bad.parse("address").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "address.city");
    }

    #[test]
    fn every_problem_is_named_under_its_prefix() {
        let bad = Address {
            name: String::new(),
            line2: "x".repeat(201),
            postal_code: "1".repeat(21),
            country: "France".into(),
            ..paris()
        };
        let fields: Vec<String> = bad
            .parse("shipping_address")
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "shipping_address.name",
                "shipping_address.line2",
                "shipping_address.postal_code",
                "shipping_address.country"
            ]
        );
    }

    #[test]
    fn optional_fields_may_be_empty_but_not_too_long() {
        assert!(paris().parse("a").is_ok());
        let long_region = Address {
            region: "r".repeat(101),
            ..paris()
        };
        assert_eq!(long_region.parse("a").unwrap_err()[0].field, "a.region");
    }
}
