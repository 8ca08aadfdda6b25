//! The configuration as each variable sets it, and the errors of bad values.

use std::collections::HashMap;
use std::time::Duration;

use super::{Config, ConfigError, DatabaseUrl, LogFormat, ServiceId, default_redis_key_prefix};

fn load(pairs: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
    let map: HashMap<&str, &str> = pairs.iter().copied().collect();
    Config::from_source("test-svc", &map)
}

#[test]
fn defaults_run_embedded() {
    let c = load(&[]).unwrap();
    assert_eq!(c.database_url, DatabaseUrl::Memory);
    assert_eq!(c.nats_url, None);
    assert_eq!(c.outbox_sweep_interval, Duration::from_secs(5));
    assert_eq!(c.redis_url, None);
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.service_name, "test-svc");
    assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        c.grpc_listen_addr(ServiceId::Product),
        "127.0.0.1:50051".parse().unwrap()
    );
    assert_eq!(
        c.grpc_listen_addr(ServiceId::Notification),
        "127.0.0.1:50057".parse().unwrap()
    );
    assert_eq!(c.peers.get(ServiceId::User).uri(), "http://127.0.0.1:50055");
    assert_eq!(c.jwt.access_ttl, Duration::from_secs(900));
    assert!(c.seed_demo);
    assert_eq!(c.rate_limit_rps, 100);
}

#[test]
fn every_service_has_a_distinct_port_and_variable() {
    let ports: std::collections::HashSet<_> =
        ServiceId::ALL.iter().map(|s| s.default_port()).collect();
    let vars: std::collections::HashSet<_> = ServiceId::ALL.iter().map(|s| s.addr_var()).collect();
    assert_eq!(ports.len(), ServiceId::ALL.len());
    assert_eq!(vars.len(), ServiceId::ALL.len());
}

#[test]
fn values_are_read() {
    let c = load(&[
        ("GRPC_ADDR", "0.0.0.0:6000"),
        ("HTTP_ADDR", "[::1]:9000"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shop"),
        ("STORE_CURSOR_KEY", "0123456789abcdef0123456789abcdef"),
        ("NATS_URL", "nats://127.0.0.1:4222"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("PRODUCT_ADDR", "product-svc:50051"),
        ("ORDER_ADDR", "http://order-svc:7000/"),
        ("GRPC_CLIENT_TIMEOUT_MS", "750"),
        ("LOG_FORMAT", "pretty"),
        ("SEED_DEMO", "false"),
        ("RATE_LIMIT_RPS", "0"),
    ])
    .unwrap();
    assert_eq!(
        c.grpc_listen_addr(ServiceId::Product),
        "0.0.0.0:6000".parse().unwrap()
    );
    assert_eq!(c.http_addr, "[::1]:9000".parse().unwrap());
    assert!(matches!(c.database_url, DatabaseUrl::Postgres(_)));
    assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(
        c.peers.get(ServiceId::Product).uri(),
        "http://product-svc:50051"
    );
    assert_eq!(c.peers.get(ServiceId::Order).uri(), "http://order-svc:7000");
    assert_eq!(c.grpc.client_timeout, Duration::from_millis(750));
    assert_eq!(c.telemetry.log_format, LogFormat::Pretty);
    assert!(!c.seed_demo);
    assert_eq!(c.rate_limit_rps, 0);
    assert!(matches!(
        load(&[
            ("DATABASE_URL", "mongodb://m:27017/x"),
            ("STORE_CURSOR_KEY", "0123456789abcdef0123456789abcdef")
        ])
        .unwrap()
        .database_url,
        DatabaseUrl::MongoDb(_)
    ));
}

#[test]
fn a_real_database_needs_a_cursor_key_of_its_own() {
    assert!(load(&[]).is_ok(), "embedded: the built-in key is fine");
    for key in [None, Some("short")] {
        let mut vars = vec![("DATABASE_URL", "postgres://127.0.0.1/shop")];
        vars.extend(key.map(|k| ("STORE_CURSOR_KEY", k)));
        assert_eq!(load(&vars).unwrap_err().var, "STORE_CURSOR_KEY");
    }
}

#[test]
fn redis_keys_and_proxy_hops() {
    let c = load(&[]).unwrap();
    assert!(
        c.redis_key_prefix.starts_with("shop-"),
        "the subject prefix"
    );
    assert_eq!(c.trusted_proxy_hops, 0, "the socket peer");
    let c = load(&[("DATABASE_SCHEMA_PREFIX", "staging")]).unwrap();
    assert!(c.redis_key_prefix.starts_with("staging-"));
    let c = load(&[
        ("DATABASE_SCHEMA_PREFIX", "staging"),
        ("REDIS_KEY_PREFIX", "shop-eu"),
        ("TRUSTED_PROXY_HOPS", "2"),
    ])
    .unwrap();
    assert_eq!(c.redis_key_prefix, "shop-eu");
    assert_eq!(c.trusted_proxy_hops, 2);
    for (var, value) in [
        ("REDIS_KEY_PREFIX", "a:b"),
        ("TRUSTED_PROXY_HOPS", "-1"),
        ("TRUSTED_PROXY_HOPS", "17"),
        ("TRUST_FORWARDED_FOR", "true"),
    ] {
        assert_eq!(load(&[(var, value)]).unwrap_err().var, var);
    }
}

#[test]
fn empty_values_count_as_unset() {
    let c = load(&[("DATABASE_URL", ""), ("NATS_URL", "  ")]).unwrap();
    assert_eq!(c.database_url, DatabaseUrl::Memory);
    assert_eq!(c.nats_url, None);
}

#[test]
fn bad_values_are_rejected_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("GRPC_ADDR", "localhost"),
        ("HTTP_ADDR", "8080"),
        ("DATABASE_URL", "mysql://db/shop"),
        ("DATABASE_URL", "shop.db"),
        ("DATABASE_URL", "postgres://"),
        ("NATS_URL", "http://127.0.0.1:4222"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("PRODUCT_ADDR", "product-svc"),
        ("USER_ADDR", "ftp://user:1"),
        ("GRPC_CLIENT_TIMEOUT_MS", "soon"),
        ("GRPC_SERVER_TIMEOUT_MS", "0"),
        ("GRPC_CLIENT_RETRIES", "99"),
        ("LOG_FORMAT", "xml"),
        ("SEED_DEMO", "maybe"),
        ("RATE_LIMIT_RPS", "-1"),
        ("JWT_ACCESS_TTL_SECS", "0"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
        ("SMTP_URL", "mail.example.com"),
        ("DATABASE_TIMEOUT_MS", "0"),
        ("DATABASE_MAX_CONNECTIONS", "many"),
        ("VAPID_SUBJECT", "ops@example.com"),
        ("PUSH_ALLOW_HTTP", "sometimes"),
        ("DELIVERY_RETRY_BASE_MS", "0"),
        ("DELIVERY_MAX_ATTEMPTS", "0"),
        ("MONGODB_WRITE_CONCERN", "most"),
        ("MONGODB_WRITE_CONCERN", "0"),
        ("MONGODB_RETRY_WRITES", "perhaps"),
    ];
    for &(var, value) in cases {
        let err = load(&[(var, value)]).expect_err(&format!("{var}={value} must be rejected"));
        assert_eq!(err.var, var);
        let line = err.to_string();
        assert!(line.starts_with(&format!("invalid {var}=")), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
}

#[test]
fn mongodb_write_settings_default_to_the_url_and_can_be_set() {
    use super::WriteAcknowledgment;
    let c = load(&[]).unwrap();
    assert_eq!((c.store.write_concern, c.store.retry_writes), (None, None));
    let c = load(&[
        ("MONGODB_WRITE_CONCERN", "majority"),
        ("MONGODB_RETRY_WRITES", "false"),
    ])
    .unwrap();
    assert_eq!(c.store.write_concern, Some(WriteAcknowledgment::Majority));
    assert_eq!(c.store.retry_writes, Some(false));
    let c = load(&[("MONGODB_WRITE_CONCERN", "2")]).unwrap();
    assert_eq!(c.store.write_concern, Some(WriteAcknowledgment::Nodes(2)));
}

#[test]
fn delivery_settings_have_defaults_and_can_be_set() {
    let c = load(&[]).unwrap();
    let i = &c.integrations;
    assert_eq!(i.vapid_subject, None);
    assert!(i.vapid_private_key.is_none() && !i.push_allow_http);
    assert_eq!(
        (i.delivery_retry_base, i.delivery_max_attempts),
        (Duration::from_secs(5), 15)
    );
    let c = load(&[
        ("VAPID_SUBJECT", "https://shop.example.com/contact"),
        ("PUSH_ALLOW_HTTP", "true"),
        ("DELIVERY_RETRY_BASE_MS", "250"),
        ("DELIVERY_MAX_ATTEMPTS", "3"),
    ])
    .unwrap();
    let i = &c.integrations;
    assert_eq!(
        i.vapid_subject.as_deref(),
        Some("https://shop.example.com/contact")
    );
    assert!(i.push_allow_http);
    assert_eq!(
        (i.delivery_retry_base, i.delivery_max_attempts),
        (Duration::from_millis(250), 3)
    );
}

#[test]
fn a_vapid_key_needs_a_subject() {
    let err = load(&[("VAPID_PRIVATE_KEY", "key")]).unwrap_err();
    assert_eq!(err.var, "VAPID_SUBJECT");
    assert!(
        load(&[
            ("VAPID_PRIVATE_KEY", "key"),
            ("VAPID_SUBJECT", "mailto:a@b.c")
        ])
        .is_ok()
    );
}

#[test]
fn admin_credentials_come_in_pairs() {
    let err = load(&[("ADMIN_EMAIL", "a@b.c")]).unwrap_err();
    assert_eq!(err.var, "ADMIN_PASSWORD");
    let c = load(&[("ADMIN_EMAIL", "a@b.c"), ("ADMIN_PASSWORD", "secret-pass")]).unwrap();
    assert_eq!(c.admin_email.as_deref(), Some("a@b.c"));
}

#[test]
fn secrets_do_not_reach_debug_output() {
    let c = load(&[
        ("DATABASE_URL", "postgres://u:hunter2@db/shop"),
        ("JWT_PRIVATE_KEY_PEM", "-----BEGIN PRIVATE KEY-----hunter2"),
        ("STRIPE_API_KEY", "sk_test_hunter2"),
        ("ADMIN_EMAIL", "root@example.com"),
        ("ADMIN_PASSWORD", "hunter2hunter2"),
        (
            "STORE_CURSOR_KEY",
            "hunter2-hunter2-hunter2-hunter2-hunter2",
        ),
    ])
    .unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn mesh_public_keys_may_list_a_component_twice_but_not_one_key_for_two() {
    const A: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const B: &str = "22qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let err = load(&[(
        "MESH_PUBLIC_KEYS",
        "order-svc=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo,payment-svc=22qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo,order-svc=22qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    )])
    .unwrap_err();
    assert!(err.to_string().contains("same public key"), "{err}");
    let c = load(&[(
        "MESH_PUBLIC_KEYS",
        "order-svc=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo,order-svc=22qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo,order-svc=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    )])
    .unwrap();
    assert_eq!(
        c.mesh.public_keys.0,
        [
            ("order-svc".to_string(), A.to_string()),
            ("order-svc".to_string(), B.to_string())
        ],
        "both keys of a rotating component, each once"
    );
}

#[test]
fn balancing_settings_and_fixed_hosts() {
    let c = load(&[]).unwrap();
    assert!(c.grpc.client_balancing);
    assert_eq!(c.grpc.resolve_interval, Duration::from_secs(5));
    assert_eq!(c.grpc.drain_delay, Duration::ZERO);
    assert!(c.grpc.hosts.is_empty());
    let c = load(&[
        ("GRPC_CLIENT_BALANCING", "false"),
        ("GRPC_RESOLVE_INTERVAL_MS", "750"),
        ("GRPC_DRAIN_DELAY_MS", "6000"),
        ("GRPC_MAX_CONNECTION_AGE_SECS", "60"),
        (
            "GRPC_HOSTS",
            "Order.Test=127.0.0.1, 127.0.0.2; user.test=::1",
        ),
    ])
    .unwrap();
    assert!(!c.grpc.client_balancing);
    assert_eq!(c.grpc.resolve_interval, Duration::from_millis(750));
    assert_eq!(c.grpc.drain_delay, Duration::from_secs(6));
    assert_eq!(c.grpc.max_connection_age, Duration::from_secs(60));
    assert_eq!(
        c.grpc.hosts,
        vec![
            (
                "order.test".to_string(),
                vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()]
            ),
            ("user.test".to_string(), vec!["::1".parse().unwrap()]),
        ]
    );
    for bad in ["order.test", "order.test=nope", "127.0.0.1=127.0.0.2"] {
        let err = load(&[("GRPC_HOSTS", bad)]).unwrap_err();
        assert!(err.to_string().contains("GRPC_HOSTS"), "{bad}: {err}");
    }
    assert!(load(&[("GRPC_RESOLVE_INTERVAL_MS", "0")]).is_err());
}

#[test]
fn cart_settings_have_defaults_and_can_be_set() {
    let c = load(&[]).unwrap();
    assert_eq!(c.cart.guest_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(c.cart.max_lines, 100);
    assert_eq!(c.cart.reminder_after, Duration::from_secs(86_400));
    let c = load(&[
        ("CART_GUEST_TTL", "12h"),
        ("CART_MAX_LINES", "20"),
        ("CART_REMINDER_AFTER", "90s"),
        ("CART_SWEEP_INTERVAL_MS", "500"),
    ])
    .unwrap();
    assert_eq!(c.cart.guest_ttl, Duration::from_secs(12 * 3600));
    assert_eq!(c.cart.max_lines, 20);
    assert_eq!(c.cart.reminder_after, Duration::from_secs(90));
    assert_eq!(c.cart.sweep_interval, Duration::from_millis(500));
    for (var, bad) in [
        ("CART_MAX_LINES", "101"),
        ("CART_MAX_LINES", "0"),
        ("CART_GUEST_TTL", "soon"),
    ] {
        let err = load(&[(var, bad)]).unwrap_err();
        assert!(err.to_string().contains(var), "{var}={bad}: {err}");
    }
}

#[test]
fn the_default_redis_prefix_tells_databases_apart() {
    let prefix = |url: &str, schema: Option<&str>| {
        let db = if url == "memory://" {
            DatabaseUrl::Memory
        } else if url.starts_with("mongodb") {
            DatabaseUrl::MongoDb(url.into())
        } else {
            DatabaseUrl::Postgres(url.into())
        };
        default_redis_key_prefix(&db, schema, "shop")
    };
    let base = prefix("postgres://app:pw@db.internal:5432/shop", None);
    assert!(
        base.starts_with("shop-") && base.len() == "shop-".len() + 8,
        "{base}"
    );
    // The same database, however the URL spells the rest: one prefix.
    for same in [
        "postgres://other:secret@db.internal:5432/shop",
        "postgresql://app:pw@DB.internal:5432/shop?sslmode=require",
    ] {
        assert_eq!(prefix(same, None), base, "{same}");
    }
    // Another database, host, port or schema prefix: another prefix.
    let mut seen = std::collections::HashSet::from([base.clone()]);
    for other in [
        prefix("postgres://app:pw@db.internal:5432/shop_staging", None),
        prefix("postgres://app:pw@db2.internal:5432/shop", None),
        prefix("postgres://app:pw@db.internal:5433/shop", None),
        prefix("mongodb://db.internal:5432/shop", None),
        prefix("postgres://app:pw@db.internal:5432/shop", Some("eu")),
    ] {
        assert!(seen.insert(other.clone()), "{other} repeats a prefix");
    }
    assert!(prefix("postgres://db/shop", Some("eu")).starts_with("eu-"));
    // Each in-memory database is a world of its own.
    assert_ne!(prefix("memory://", None), prefix("memory://", None));
    assert!(prefix("memory://", None).starts_with("shop-"));
}
