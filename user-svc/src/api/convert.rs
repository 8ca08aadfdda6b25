//! Domain users as their proto messages.

use crate::domain::{Role, User};

pub(super) fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(proto::ext::from_secs(secs))
}

pub(crate) fn to_proto(id: &str, user: &User) -> proto::user::User {
    proto::user::User {
        id: id.to_string(),
        email: user.email.clone(),
        name: user.name.clone(),
        role: match user.role {
            Role::Customer => proto::user::Role::Customer as i32,
            Role::Admin => proto::user::Role::Admin as i32,
        },
        phone: user.phone.clone(),
        address: user.address.as_ref().map(proto::common::Address::from),
        created_at: timestamp(user.created_at),
        updated_at: timestamp(user.updated_at),
    }
}
