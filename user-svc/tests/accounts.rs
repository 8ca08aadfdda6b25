//! user-svc over real gRPC, on the memory store and on Postgres (a fresh
//! schema per test).

use std::collections::HashMap;
use std::sync::Arc;

use platform::auth::{JwkSet, TokenVerifier};
use platform::events::memory::InProcessBus;
use platform::runtime::Deps;
use platform::{Config, Running};
use proto::user::user_service_client::UserServiceClient;
use proto::user::*;
use tonic::Code;

type Client = UserServiceClient<platform::grpc::GrpcChannel>;

struct Harness {
    running: Running,
    client: Client,
    bus: InProcessBus,
    service: platform::testing::TestService,
}

async fn start(postgres: bool) -> Harness {
    let service = platform::testing::TestService::new("user-svc", postgres, &[]);
    let bus = InProcessBus::new("shop");
    let running = user_svc::serve(
        service.config.clone(),
        platform::testing::TestService::listener().await,
        Deps {
            bus: Arc::new(bus.clone()),
        },
    )
    .await
    .unwrap();
    Harness {
        client: UserServiceClient::new(service.channel(running.addr())),
        running,
        bus,
        service,
    }
}

impl Harness {
    async fn stop(self) {
        self.running.shutdown().await;
        self.service.cleanup(&["user"]).await;
    }
}

fn as_user<T>(id: &str, role: &str, message: T) -> tonic::Request<T> {
    platform::testing::identity().as_user(message, id, role)
}

fn register(email: &str) -> RegisterRequest {
    RegisterRequest {
        email: email.into(),
        password: "correct horse".into(),
        name: "Ada".into(),
    }
}

/// Registers `email` (see `register`) and returns the new account.
async fn registered(c: &mut Client, email: &str) -> User {
    c.register(register(email))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

/// Logs `email` in with the password `register` gives.
async fn logged_in(c: &mut Client, email: &str) -> LoginResponse {
    c.login(LoginRequest {
        email: email.into(),
        password: "correct horse".into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Presents `token` to `RefreshToken`.
async fn refresh(c: &mut Client, token: &str) -> Result<RefreshTokenResponse, tonic::Status> {
    c.refresh_token(RefreshTokenRequest {
        refresh_token: token.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )*
        }
    };
}

on_both_stores!(
    session_lifecycle_with_rotation_reuse_and_logout,
    accounts_are_unique_and_validated,
    tokens_carry_verifiable_claims
);

async fn session_lifecycle_with_rotation_reuse_and_logout(postgres: bool) {
    let h = start(postgres).await;
    let mut c = h.client.clone();
    let user = registered(&mut c, "ada@example.com").await;
    let login = logged_in(&mut c, "ADA@example.com").await;
    assert_eq!(login.expires_in, 900);
    let wrong = c
        .login(LoginRequest {
            email: "ada@example.com".into(),
            password: "wrong horse".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let second = refresh(&mut c, &login.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, login.refresh_token);
    // Reuse of the rotated token: refused, and the whole family goes.
    let reuse = refresh(&mut c, &login.refresh_token).await.unwrap_err();
    assert_eq!(reuse.code(), Code::Unauthenticated);
    assert_eq!(
        refresh(&mut c, &second.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let fresh = logged_in(&mut c, "ada@example.com").await;
    c.logout(as_user(
        &user.id,
        "customer",
        LogoutRequest {
            refresh_token: fresh.refresh_token.clone(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        refresh(&mut c, &fresh.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.bus.count("shop.user.registered") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "user.registered not published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.stop().await;
}

async fn accounts_are_unique_and_validated(postgres: bool) {
    let h = start(postgres).await;
    let mut c = h.client.clone();
    let user = registered(&mut c, "grace@example.com").await;
    assert_eq!(
        c.register(register("Grace@Example.com"))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    let bad = c
        .register(RegisterRequest {
            email: "nope".into(),
            password: "short".into(),
            name: "".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = platform::error::field_violations(&bad)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);

    let update = UpdateProfileRequest {
        name: Some("Grace H.".into()),
        phone: Some("+1 555 0100 22".into()),
        address: None,
        clear_address: false,
    };
    let updated = c
        .update_profile(as_user(&user.id, "customer", update))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.phone.as_deref()),
        ("Grace H.", Some("+1555010022"))
    );
    assert_eq!(
        c.get_profile(tonic::Request::new(GetProfileRequest {}))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let other = c
        .get_user(as_user(
            "someone-else",
            "customer",
            GetUserRequest {
                user_id: user.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let by_admin = c
        .get_user(as_user(
            "admin",
            "admin",
            GetUserRequest {
                user_id: user.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_admin.user.unwrap().email, "grace@example.com");
    h.stop().await;
}

async fn tokens_carry_verifiable_claims(postgres: bool) {
    let h = start(postgres).await;
    let mut c = h.client.clone();
    let user = registered(&mut c, "alan@example.com").await;
    let login = logged_in(&mut c, "alan@example.com").await;
    let jwks = c.get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    let set = JwkSet::from_proto(jwks.keys);
    let claims = TokenVerifier::new("shopmesh", "shopmesh-api")
        .with_jwks(&set)
        .verify(&login.access_token)
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.role.as_str()),
        (user.id.as_str(), "customer")
    );
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(
        TokenVerifier::new("shopmesh", "another-api")
            .with_jwks(&set)
            .verify(&login.access_token)
            .is_err()
    );
    h.stop().await;
}

/// Replicas start together on one database, each making sure the admin
/// account exists: every one of them starts, and there is one account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_all_bootstrap_the_admin() {
    platform::telemetry::init_for_tests();
    for round in 0..5 {
        let schemas = platform::testing::SchemaPrefix::new();
        let mut vars: HashMap<String, String> = schemas.vars().into_iter().collect();
        vars.insert("ADMIN_EMAIL".into(), "root@example.com".into());
        vars.insert("ADMIN_PASSWORD".into(), "root-password-1".into());
        let mut config = Config::from_source("user-test", &vars).unwrap();
        platform::testing::identity().configure(&mut config, "user-svc");
        let started = futures::future::join_all((0..3).map(|_| {
            let config = config.clone();
            async move {
                let listener = platform::grpc::bind("127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap();
                user_svc::serve(
                    config,
                    listener,
                    Deps {
                        bus: Arc::new(InProcessBus::new("shop")),
                    },
                )
                .await
            }
        }))
        .await;
        for replica in started {
            let running =
                replica.unwrap_or_else(|e| panic!("round {round}: a replica failed: {e:#}"));
            running.shutdown().await;
        }
        schemas.drop(&["user"]).await;
    }
}
