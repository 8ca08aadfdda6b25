//! The services of the mesh, where each keeps its data and where its peers
//! reach it.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::{ConfigError, Vars};

/// The internal services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceId {
    Product,
    Order,
    Payment,
    Recommendation,
    User,
    Shipping,
    Notification,
    Cart,
    Media,
}

/// A component of the mesh with a key of its own: the gateway or one of
/// the services. Who may make a call is said with these, never with
/// strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Gateway,
    Service(ServiceId),
}

impl Component {
    pub const GATEWAY: Component = Component::Gateway;
    pub const PRODUCT: Component = Component::Service(ServiceId::Product);
    pub const ORDER: Component = Component::Service(ServiceId::Order);
    pub const PAYMENT: Component = Component::Service(ServiceId::Payment);
    pub const RECOMMENDATION: Component = Component::Service(ServiceId::Recommendation);
    pub const USER: Component = Component::Service(ServiceId::User);
    pub const SHIPPING: Component = Component::Service(ServiceId::Shipping);
    pub const NOTIFICATION: Component = Component::Service(ServiceId::Notification);
    pub const CART: Component = Component::Service(ServiceId::Cart);
    pub const MEDIA: Component = Component::Service(ServiceId::Media);

    /// Its name in keys and tokens: `gateway`, `order-svc`…
    pub fn name(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Service(service) => service.binary(),
        }
    }
}

impl From<ServiceId> for Component {
    fn from(service: ServiceId) -> Self {
        Component::Service(service)
    }
}

impl ServiceId {
    pub const ALL: [ServiceId; 9] = [
        ServiceId::Product,
        ServiceId::Order,
        ServiceId::Payment,
        ServiceId::Recommendation,
        ServiceId::User,
        ServiceId::Shipping,
        ServiceId::Notification,
        ServiceId::Cart,
        ServiceId::Media,
    ];

    /// Short name: `product`, `order`…
    pub fn name(self) -> &'static str {
        match self {
            ServiceId::Product => "product",
            ServiceId::Order => "order",
            ServiceId::Payment => "payment",
            ServiceId::Recommendation => "recommendation",
            ServiceId::User => "user",
            ServiceId::Shipping => "shipping",
            ServiceId::Notification => "notification",
            ServiceId::Cart => "cart",
            ServiceId::Media => "media",
        }
    }

    /// Crate and binary name: `product-svc`…
    pub fn binary(self) -> &'static str {
        match self {
            ServiceId::Product => "product-svc",
            ServiceId::Order => "order-svc",
            ServiceId::Payment => "payment-svc",
            ServiceId::Recommendation => "recommendation-svc",
            ServiceId::User => "user-svc",
            ServiceId::Shipping => "shipping-svc",
            ServiceId::Notification => "notification-svc",
            ServiceId::Cart => "cart-svc",
            ServiceId::Media => "media-svc",
        }
    }

    /// Fully-qualified gRPC service name.
    pub fn grpc_service(self) -> &'static str {
        match self {
            ServiceId::Product => "shop.product.v1.ProductService",
            ServiceId::Order => "shop.order.v1.OrderService",
            ServiceId::Payment => "shop.payment.v1.PaymentService",
            ServiceId::Recommendation => "shop.recommendation.v1.RecommendationService",
            ServiceId::User => "shop.user.v1.UserService",
            ServiceId::Shipping => "shop.shipping.v1.ShippingService",
            ServiceId::Notification => "shop.notification.v1.NotificationService",
            ServiceId::Cart => "shop.cart.v1.CartService",
            ServiceId::Media => "shop.media.v1.MediaService",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            ServiceId::Product => 50051,
            ServiceId::Order => 50052,
            ServiceId::Payment => 50053,
            ServiceId::Recommendation => 50054,
            ServiceId::User => 50055,
            ServiceId::Shipping => 50056,
            ServiceId::Notification => 50057,
            ServiceId::Cart => 50059,
            ServiceId::Media => 50058,
        }
    }

    /// The variable naming where this service listens / is reached: `PRODUCT_ADDR`…
    pub fn addr_var(self) -> &'static str {
        match self {
            ServiceId::Product => "PRODUCT_ADDR",
            ServiceId::Order => "ORDER_ADDR",
            ServiceId::Payment => "PAYMENT_ADDR",
            ServiceId::Recommendation => "RECOMMENDATION_ADDR",
            ServiceId::User => "USER_ADDR",
            ServiceId::Shipping => "SHIPPING_ADDR",
            ServiceId::Notification => "NOTIFICATION_ADDR",
            ServiceId::Cart => "CART_ADDR",
            ServiceId::Media => "MEDIA_ADDR",
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// Where a service keeps its documents (`DATABASE_URL`).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `memory://` — embedded default, nothing survives a restart.
    Memory,
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `mongodb://…` or `mongodb+srv://…`.
    MongoDb(String),
}

impl DatabaseUrl {
    pub fn scheme(&self) -> &'static str {
        match self {
            DatabaseUrl::Memory => "memory",
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::MongoDb(_) => "mongodb",
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    // Never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({}://…)", self.scheme())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = value
            .split_once("://")
            .ok_or("expected a URL such as memory://, postgres://host/db or mongodb://host/db")?;
        match scheme {
            "memory" => Ok(DatabaseUrl::Memory),
            "postgres" | "postgresql" if !rest.is_empty() => {
                Ok(DatabaseUrl::Postgres(value.to_string()))
            }
            "mongodb" | "mongodb+srv" if !rest.is_empty() => {
                Ok(DatabaseUrl::MongoDb(value.to_string()))
            }
            "postgres" | "postgresql" | "mongodb" | "mongodb+srv" => {
                Err("the URL has no host".into())
            }
            other => Err(format!(
                "unknown scheme {other:?}; expected memory, postgres, postgresql, mongodb or mongodb+srv"
            )),
        }
    }
}

/// Address of a peer service, as a URI tonic can dial (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr(pub String);

impl PeerAddr {
    pub fn from_socket(addr: SocketAddr) -> Self {
        PeerAddr(format!("http://{addr}"))
    }

    pub fn uri(&self) -> &str {
        &self.0
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    /// Accepts `host:port` or `http(s)://host:port`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("http://{value}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|_| "expected host:port or http://host:port".to_string())?;
        match (uri.scheme_str(), uri.host(), uri.port_u16()) {
            (Some("http" | "https"), Some(_), Some(_)) => {
                Ok(PeerAddr(with_scheme.trim_end_matches('/').to_string()))
            }
            (Some("http" | "https"), Some(_), None) => Err("the address has no port".into()),
            _ => Err("expected host:port or http://host:port".into()),
        }
    }
}

/// Where to reach every peer (`<SVC>_ADDR`). Defaults to the loopback
/// default ports, as the all-in-one binary uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers(HashMap<ServiceId, PeerAddr>);

impl Peers {
    pub fn get(&self, id: ServiceId) -> &PeerAddr {
        &self.0[&id]
    }

    pub fn set(&mut self, id: ServiceId, addr: PeerAddr) {
        self.0.insert(id, addr);
    }

    pub fn defaults() -> Self {
        Peers(
            ServiceId::ALL
                .iter()
                .map(|&id| {
                    (
                        id,
                        PeerAddr(format!("http://127.0.0.1:{}", id.default_port())),
                    )
                })
                .collect(),
        )
    }
}

impl Peers {
    /// The defaults, each overridden by its `<SVC>_ADDR`.
    pub fn from_vars(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let mut peers = Peers::defaults();
        for id in ServiceId::ALL {
            if let Some(addr) = v.parse_with(id.addr_var(), |s| s.parse::<PeerAddr>())? {
                peers.set(id, addr);
            }
        }
        Ok(peers)
    }
}
