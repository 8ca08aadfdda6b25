//! A postal address as services store it, with its proto conversions.

use serde::{Deserialize, Serialize};

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
