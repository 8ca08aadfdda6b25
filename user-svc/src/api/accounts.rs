//! Accounts: registration, the caller's profile and preferences, and
//! reading a user's contact details.

use platform::auth::Caller;
use platform::error::parse_optional;
use platform::store::{StoreError, Versioned};
use proto::events::UserRegistered;
use proto::events::envelope::Payload;
use proto::user::*;
use tonic::Status;

use super::convert::{timestamp, to_proto};
use super::{UserApi, invalid, missing_user, now};
use crate::domain::{self, Email, Password, Role, User};

fn preferences(user: User) -> Preferences {
    Preferences {
        categories: user.categories,
        updated_at: timestamp(user.preferences_updated_at),
    }
}

impl UserApi {
    /// Creates a user (staging `user.registered` in the same write) and
    /// publishes the event.
    pub(crate) async fn create_user(
        &self,
        email: Email,
        password: &Password,
        name: String,
        role: Role,
    ) -> Result<(String, User), Status> {
        let password_hash = self.hasher.hash(password.expose()).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = now().secs();
        let mut user = User {
            email: email.as_str().to_string(),
            name,
            role,
            password_hash,
            phone: None,
            address: None,
            categories: Vec::new(),
            created_at: now,
            updated_at: now,
            preferences_updated_at: 0,
            login_guard: Default::default(),
            outbox: Default::default(),
        };
        let event = platform::events::event(
            &id,
            "user-svc",
            Payload::UserRegistered(UserRegistered {
                user_id: id.clone(),
                role: role.as_str().to_string(),
            }),
        );
        user.outbox.stage(&event);
        match self.users.insert(&id, user).await {
            Ok(stored) => {
                self.relay.flush_or_defer(&id).await;
                Ok((id, stored.value))
            }
            Err(StoreError::AlreadyExists { .. }) => {
                Err(Status::already_exists("email is already registered"))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn caller_user(&self, caller: &Caller) -> Result<Versioned<User>, Status> {
        self.users.get(&caller.user_id).await.map_err(missing_user)
    }

    /// `Register`: a customer account.
    pub(super) async fn register_customer(
        &self,
        r: RegisterRequest,
    ) -> Result<RegisterResponse, Status> {
        let mut errors = Vec::new();
        let email = Email::parse(&r.email).map_err(|e| errors.push(e)).ok();
        let password = Password::parse(&r.password)
            .map_err(|e| errors.push(e))
            .ok();
        let name = domain::parse_name(&r.name).map_err(|e| errors.push(e)).ok();
        let (Some(email), Some(password), Some(name)) = (email, password, name) else {
            return Err(invalid(errors));
        };
        let (id, user) = self
            .create_user(email, &password, name, Role::Customer)
            .await?;
        Ok(RegisterResponse {
            user: Some(to_proto(&id, &user)),
        })
    }

    /// `GetProfile`: the caller's own account.
    pub(super) async fn profile(&self, caller: &Caller) -> Result<GetProfileResponse, Status> {
        let user = self.caller_user(caller).await?;
        Ok(GetProfileResponse {
            user: Some(to_proto(&user.id, &user.value)),
        })
    }

    /// `UpdateProfile`: changes the fields given on the caller's account.
    pub(super) async fn update_own_profile(
        &self,
        caller: &Caller,
        r: UpdateProfileRequest,
    ) -> Result<UpdateProfileResponse, Status> {
        let mut errors = Vec::new();
        let name = parse_optional(r.name.as_deref(), domain::parse_name, &mut errors);
        // An empty phone removes it.
        let phone = match r.phone.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(p) => domain::parse_phone(p)
                .map(|p| Some(Some(p)))
                .map_err(|e| errors.push(e))
                .ok()
                .flatten(),
        };
        let address = match r.address {
            None => None,
            Some(a) => domain::Address::from(a)
                .parse("address")
                .map_err(|e| errors.extend(e))
                .ok(),
        };
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let user = self
            .users
            .modify(&caller.user_id, |u| {
                if let Some(name) = &name {
                    u.name = name.clone();
                }
                if let Some(phone) = &phone {
                    u.phone = phone.clone();
                }
                if r.clear_address {
                    u.address = None;
                }
                if let Some(address) = &address {
                    u.address = Some(address.clone());
                }
                u.updated_at = now().secs();
            })
            .await
            .map_err(missing_user)?;
        Ok(UpdateProfileResponse {
            user: Some(to_proto(&user.id, &user.value)),
        })
    }

    /// `UpdatePreferences`: replaces the caller's preferred categories.
    pub(super) async fn update_own_preferences(
        &self,
        caller: &Caller,
        r: UpdatePreferencesRequest,
    ) -> Result<UpdatePreferencesResponse, Status> {
        let categories = domain::parse_categories(&r.categories).map_err(|e| invalid(vec![e]))?;
        let user = self
            .users
            .modify(&caller.user_id, |u| {
                u.categories = categories.clone();
                u.preferences_updated_at = now().secs();
            })
            .await
            .map_err(missing_user)?;
        Ok(UpdatePreferencesResponse {
            preferences: Some(preferences(user.value)),
        })
    }

    /// `GetPreferences`: the caller's preferred categories.
    pub(super) async fn own_preferences(
        &self,
        caller: &Caller,
    ) -> Result<GetPreferencesResponse, Status> {
        let user = self.caller_user(caller).await?;
        Ok(GetPreferencesResponse {
            preferences: Some(preferences(user.value)),
        })
    }

    /// `GetUser` once the caller may read `user_id`.
    pub(super) async fn user(&self, user_id: &str) -> Result<GetUserResponse, Status> {
        match self.users.get(user_id).await {
            Ok(user) => Ok(GetUserResponse {
                user: Some(to_proto(&user.id, &user.value)),
            }),
            Err(StoreError::NotFound) | Err(StoreError::Invalid(_)) => {
                Err(Status::not_found("user not found"))
            }
            Err(err) => Err(err.into()),
        }
    }
}
