//! Client-side load balancing: every replica of a peer gets its share of
//! calls.
//!
//! A peer named by host name (`order-svc:50052`; in Kubernetes a headless
//! Service, whose name resolves to every ready pod) is resolved to all its
//! addresses. Each address gets its own lazily connected HTTP/2 connection,
//! and each call goes to the less busy of two addresses picked at random
//! (power of two choices on in-flight requests). A resolver task resolves
//! the name again every `GRPC_RESOLVE_INTERVAL_MS`, and at once when a call
//! finds no answer, and asks every address for its health: an address that
//! refuses connections, does not answer in time, or answers NOT_SERVING
//! (draining before it stops, or its store unreachable) is left out until
//! it answers SERVING again.
//!
//! If no address is healthy, all resolved addresses are kept, so a call
//! fails fast with UNAVAILABLE as it would over one connection; if the name
//! has never resolved, the name itself is the one endpoint. A peer given as
//! an IP address, or every peer with `GRPC_CLIENT_BALANCING=false` (where a
//! service mesh balances requests), gets one connection as before.
//!
//! A call that carries an affinity key ([`AFFINITY_METADATA`], set with
//! [`with_affinity`]) skips the two choices: it goes to the healthy address
//! that rendezvous hashing picks for its key, so every caller sends the same
//! key to the same replica while the set of addresses stays the same, and
//! when an address leaves only its own keys move. Loads stay bounded: an
//! owner with more than 1.25 times the average calls in flight passes the
//! call to the next address in the key's order. order-svc keys its stock
//! calls by product, so one product-svc replica writes a product's stock
//! and its per-document batching and held copy stay whole (two replicas
//! taking turns on one document would each start from a stale copy).
//!
//! [`hosts`] is an in-process hosts table consulted before DNS, so tests can
//! put several loopback addresses behind one name.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxService;

use crate::config::GrpcSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send + 'static>>;

/// Calls waiting for a connection, at most (as tonic's own channel).
const BUFFER: usize = 1024;
/// Shortest gap between two rounds that failures start.
const MIN_ROUND_GAP: Duration = Duration::from_millis(100);

/// The metadata key of a call's affinity key (see the module).
pub const AFFINITY_METADATA: &str = "shopmesh-affinity";

/// Sends `request` to the replica that owns `key` (see the module). A key
/// that is not valid metadata (not visible ASCII) is left off: the call is
/// then balanced as any other.
pub fn with_affinity<T>(request: &mut tonic::Request<T>, key: &str) {
    if let Ok(value) = key.parse() {
        request.metadata_mut().insert(AFFINITY_METADATA, value);
    }
}

/// The addresses in the balanced set, for keyed calls.
#[derive(Clone, Default)]
pub struct Roster(Arc<RwLock<Vec<(SocketAddr, Ejecting)>>>);

/// 64-bit FNV-1a: the same in every process and build, so every caller
/// picks the same replica for a key.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// An address's rank for `key` under rendezvous (highest random weight)
/// hashing: the highest ranked address owns the key, and taking an address
/// away moves only the keys it owned.
fn rank(key: &[u8], addr: &SocketAddr) -> (u64, SocketAddr) {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    (fnv1a(&[key, &ip, &addr.port().to_be_bytes()]), *addr)
}

/// The address of `addrs` that owns `key`.
#[cfg(test)]
fn owner<'a>(key: &[u8], addrs: impl IntoIterator<Item = &'a SocketAddr>) -> Option<SocketAddr> {
    addrs
        .into_iter()
        .map(|addr| rank(key, addr))
        .max()
        .map(|(_, addr)| addr)
}

/// How far above the average number of calls in flight per address a keyed
/// call may take its owner before it goes to the next address in the key's
/// order (consistent hashing with bounded loads): a best-seller's calls
/// spill over rather than pile up on one replica.
const KEYED_LOAD_BOUND: f64 = 1.25;

/// The live member of `roster` that takes a call with `key`: its owner,
/// unless that one is over the bound; `None` if no address is live.
fn pinned(roster: &Roster, key: &[u8]) -> Option<Ejecting> {
    let roster = roster.0.read().unwrap_or_else(|e| e.into_inner());
    let mut live: Vec<(&SocketAddr, &Ejecting, usize)> = roster
        .iter()
        .filter(|(_, member)| !member.ejected.load(Ordering::SeqCst))
        .map(|(addr, member)| (addr, member, member.in_flight.load(Ordering::Relaxed)))
        .collect();
    let total: usize = live.iter().map(|(_, _, n)| n).sum();
    let bound = ((total + 1) as f64 * KEYED_LOAD_BOUND / live.len().max(1) as f64).ceil() as usize;
    live.sort_by_key(|(addr, _, _)| std::cmp::Reverse(rank(key, addr)));
    live.iter()
        .find(|(_, _, n)| *n < bound)
        .or(live.first())
        .map(|(_, member, _)| (*member).clone())
}

/// The in-process hosts table: names resolved without DNS.
pub mod hosts {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::{LazyLock, RwLock};

    static TABLE: LazyLock<RwLock<HashMap<String, Vec<IpAddr>>>> =
        LazyLock::new(|| RwLock::new(HashMap::new()));

    /// Makes `name` resolve to `ips` in this process (replacing what it
    /// resolved to), as a line of `/etc/hosts` would.
    pub fn set(name: &str, ips: Vec<IpAddr>) {
        let mut table = TABLE.write().unwrap_or_else(|e| e.into_inner());
        table.insert(name.to_ascii_lowercase(), ips);
    }

    /// Gives `name` back to DNS.
    pub fn remove(name: &str) {
        let mut table = TABLE.write().unwrap_or_else(|e| e.into_inner());
        table.remove(&name.to_ascii_lowercase());
    }

    pub(super) fn get(name: &str) -> Option<Vec<IpAddr>> {
        let table = TABLE.read().unwrap_or_else(|e| e.into_inner());
        table.get(&name.to_ascii_lowercase()).cloned()
    }
}

/// Every address `host` resolves to (the hosts table first, then DNS),
/// sorted and without repeats.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    resolve_with(&[], host, port).await
}

/// As [`resolve`], with `fixed` (`GRPC_HOSTS`) before the hosts table.
async fn resolve_with(
    fixed: &[(String, Vec<std::net::IpAddr>)],
    host: &str,
    port: u16,
) -> std::io::Result<Vec<SocketAddr>> {
    let host = host.to_ascii_lowercase();
    let known = fixed
        .iter()
        .find(|(name, _)| *name == host)
        .map(|(_, ips)| ips.clone())
        .or_else(|| hosts::get(&host));
    let mut addrs: Vec<SocketAddr> = match known {
        Some(ips) => ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        None => tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect(),
    };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The connection(s) behind a client channel: one, or one per replica.
#[derive(Clone)]
pub enum PeerChannel {
    /// One connection to the peer's address (an IP address, or balancing off).
    Single(Channel),
    /// Calls spread over the peer's healthy addresses.
    Balanced {
        calls: Buffer<http::Request<Body>, ResponseFuture>,
        /// The healthy addresses, for calls with an affinity key.
        roster: Roster,
        /// Starts a resolver round at once (a call found no answer).
        wake: Arc<Notify>,
        /// Longest a call without a `grpc-timeout` waits in all (for an
        /// address to be ready, then for the answer).
        timeout: Duration,
    },
}

impl std::fmt::Debug for PeerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("PeerChannel::Single"),
            Self::Balanced { .. } => f.write_str("PeerChannel::Balanced"),
        }
    }
}

/// A target of the balancer: one address, or the peer's name while it has
/// resolved to none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Addr(SocketAddr),
    Name,
}

type Member = PendingRequests<Ejecting, CompleteOnResponse>;

/// One address's connection, which leaves the balancer as soon as a call
/// over it finds no answer (refused, reset, timed out): its next readiness
/// check fails, the balancer evicts it, and keyed calls pass it by. The
/// last address standing is never ejected, so calls keep failing fast
/// rather than wait. The resolver puts it back once it answers SERVING.
#[derive(Clone)]
struct Ejecting {
    inner: Channel,
    ejected: Arc<AtomicBool>,
    /// Addresses in the balancer not ejected.
    live: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    /// Calls sent over this address and not answered yet.
    in_flight: Arc<AtomicUsize>,
}

/// One call in flight over an address, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tower::Service<http::Request<Body>> for Ejecting {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ejected.load(Ordering::SeqCst) {
            return Poll::Ready(Err("peer address ejected after a failed call".into()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let call = self.inner.call(request);
        let (ejected, live, wake) = (self.ejected.clone(), self.live.clone(), self.wake.clone());
        let in_flight = InFlight::new(&self.in_flight);
        Box::pin(async move {
            let _in_flight = in_flight;
            let eject = Eject {
                ejected,
                live,
                wake,
            };
            match call.await {
                // The connection can also break after the answer's headers,
                // while its body is read: that ejects the address too.
                Ok(response) => Ok(response.map(|body| {
                    Body::new(EjectOnBodyError {
                        inner: body,
                        eject: Some(eject),
                    })
                })),
                Err(err) => {
                    eject.now();
                    Err(err.into())
                }
            }
        })
    }
}

/// What ejects one address from the balancer.
struct Eject {
    ejected: Arc<AtomicBool>,
    live: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl Eject {
    /// Ejects the address unless it is the last one live, and starts a
    /// resolver round.
    fn now(&self) {
        if !self.ejected.load(Ordering::SeqCst)
            && self
                .live
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > 1).then(|| n - 1)
                })
                .is_ok()
        {
            self.ejected.store(true, Ordering::SeqCst);
        }
        self.wake.notify_one();
    }
}

/// An answer's body that ejects its address if reading it fails.
struct EjectOnBodyError {
    inner: Body,
    eject: Option<Eject>,
}

impl http_body::Body for EjectOnBodyError {
    type Data = <Body as http_body::Body>::Data;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled
            && let Some(eject) = self.eject.take()
        {
            eject.now();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The balancer's view of the resolver's changes.
struct Changes(mpsc::Receiver<Change<Target, Member>>);

impl futures::Stream for Changes {
    type Item = Result<Change<Target, Member>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.poll_recv(cx) {
            Poll::Ready(Some(change)) => Poll::Ready(Some(Ok(change))),
            // The resolver only stops once the balancer is gone; an ended
            // stream would fail every call, so it is never reported.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Builds the channel to `uri` (`http://host:port`), configured by `make`
/// for each target: balanced when the host is a name and `settings` allow
/// it, a single connection otherwise. `health_service` is the name asked
/// for in health checks (`""`: the server as a whole).
pub fn peer_channel(
    uri: &http::Uri,
    settings: &GrpcSettings,
    health_service: &'static str,
    make: impl Fn(&str) -> anyhow::Result<Endpoint> + Send + Sync + 'static,
) -> anyhow::Result<PeerChannel> {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let runtime = tokio::runtime::Handle::try_current();
    if is_ip || !settings.client_balancing || runtime.is_err() {
        return Ok(PeerChannel::Single(make(&uri.to_string())?.connect_lazy()));
    }
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    // Checked once here, so the resolver's own calls cannot fail on it.
    make(&uri.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    let balance: Balance<Changes, http::Request<Body>> = Balance::new(Changes(rx));
    let calls = Buffer::new(BoxService::new(balance), BUFFER);
    let wake = Arc::new(Notify::new());
    let roster = Roster::default();
    let resolver = Resolver {
        host: host.to_string(),
        fixed: settings.hosts.clone(),
        port,
        scheme,
        name_uri: uri.to_string(),
        health_service,
        every: settings.resolve_interval,
        probe_timeout: settings.connect_timeout.min(Duration::from_secs(2)),
        make: Box::new(make),
        changes: tx,
        wake: wake.clone(),
        live: Arc::new(AtomicUsize::new(0)),
        roster: roster.clone(),
    };
    tokio::spawn(resolver.run());
    Ok(PeerChannel::Balanced {
        calls,
        roster,
        wake,
        timeout: settings.client_timeout,
    })
}

impl tower::Service<http::Request<Body>> for PeerChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Single(channel) => channel.poll_ready(cx).map_err(Into::into),
            Self::Balanced { calls, .. } => calls.poll_ready(cx),
        }
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self {
            Self::Single(channel) => {
                let call = channel.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
            Self::Balanced {
                calls,
                roster,
                wake,
                timeout,
            } => {
                let limit = request
                    .headers()
                    .get("grpc-timeout")
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::deadline::parse_grpc_timeout)
                    .unwrap_or(*timeout);
                let owner = request
                    .headers_mut()
                    .remove(AFFINITY_METADATA)
                    .and_then(|key| pinned(roster, key.as_bytes()));
                // A keyed call goes to its owner; the slot `poll_ready`
                // took in the buffer is given back when this handle drops.
                let call: ResponseFuture = match owner {
                    Some(mut owner) => Box::pin(async move {
                        tower::ServiceExt::ready(&mut owner).await?;
                        owner.call(request).await
                    }),
                    None => Box::pin(calls.call(request)),
                };
                let wake = wake.clone();
                Box::pin(async move {
                    let result = match tokio::time::timeout(limit, call).await {
                        Ok(result) => result,
                        Err(_) => Err(tonic::TimeoutExpired(()).into()),
                    };
                    let unanswered = match &result {
                        Err(_) => true,
                        Ok(response) => response
                            .headers()
                            .get("grpc-status")
                            .is_some_and(|code| code == "14"),
                    };
                    if unanswered {
                        wake.notify_one();
                    }
                    result
                })
            }
        }
    }
}

/// Keeps a balancer's set of targets in line with DNS and health.
struct Resolver {
    host: String,
    fixed: Vec<(String, Vec<std::net::IpAddr>)>,
    port: u16,
    scheme: String,
    name_uri: String,
    health_service: &'static str,
    every: Duration,
    probe_timeout: Duration,
    make: Box<dyn Fn(&str) -> anyhow::Result<Endpoint> + Send + Sync>,
    changes: mpsc::Sender<Change<Target, Member>>,
    wake: Arc<Notify>,
    live: Arc<AtomicUsize>,
    roster: Roster,
}

impl Resolver {
    async fn run(self) {
        let mut known: Vec<SocketAddr> = Vec::new();
        // What the balancer holds.
        let mut members: HashMap<Target, Ejecting> = HashMap::new();
        let mut probes: HashMap<SocketAddr, Channel> = HashMap::new();
        loop {
            match resolve_with(&self.fixed, &self.host, self.port).await {
                Ok(addrs) if !addrs.is_empty() => known = addrs,
                // An empty answer or a failed lookup keeps the last known
                // addresses: health checks still drop the dead ones.
                Ok(_) => tracing::debug!(host = %self.host, "resolved to no address"),
                Err(err) => tracing::debug!(host = %self.host, error = %err, "resolving failed"),
            }
            probes.retain(|addr, _| known.contains(addr));
            let this = &self;
            let checks = known.iter().map(|&addr| {
                let channel = probes
                    .entry(addr)
                    .or_insert_with(|| {
                        Endpoint::from_shared(this.uri_of(addr))
                            .map(|e| {
                                e.connect_timeout(this.probe_timeout)
                                    .tcp_nodelay(true)
                                    .connect_lazy()
                            })
                            .expect("an address makes a valid URI")
                    })
                    .clone();
                async move { (addr, this.is_serving(channel).await) }
            });
            let healthy: Vec<SocketAddr> = futures::future::join_all(checks)
                .await
                .into_iter()
                .filter_map(|(addr, serving)| serving.then_some(addr))
                .collect();
            let wanted: HashSet<Target> = if !healthy.is_empty() {
                healthy.into_iter().map(Target::Addr).collect()
            } else if !known.is_empty() {
                known.iter().copied().map(Target::Addr).collect()
            } else {
                HashSet::from([Target::Name])
            };
            if !self.apply(&mut members, wanted).await {
                return;
            }
            tokio::select! {
                () = self.changes.closed() => return,
                () = tokio::time::sleep(self.every) => {}
                () = self.wake.notified() => tokio::time::sleep(MIN_ROUND_GAP).await,
            }
        }
    }

    /// Sends the balancer what changed (an ejected address that is wanted
    /// again goes back in); false once the balancer is gone.
    async fn apply(
        &self,
        members: &mut HashMap<Target, Ejecting>,
        wanted: HashSet<Target>,
    ) -> bool {
        let sent = self.send_changes(members, wanted).await;
        let live = members
            .values()
            .filter(|m| !m.ejected.load(Ordering::SeqCst))
            .count();
        self.live.store(live, Ordering::SeqCst);
        let mut roster = self.roster.0.write().unwrap_or_else(|e| e.into_inner());
        *roster = members
            .iter()
            .filter_map(|(target, member)| match target {
                Target::Addr(addr) => Some((*addr, member.clone())),
                Target::Name => None,
            })
            .collect();
        sent
    }

    /// [`Resolver::apply`]'s changes, sent; false once the balancer is gone.
    async fn send_changes(
        &self,
        members: &mut HashMap<Target, Ejecting>,
        wanted: HashSet<Target>,
    ) -> bool {
        let gone: Vec<Target> = members
            .keys()
            .filter(|t| !wanted.contains(t))
            .copied()
            .collect();
        for target in gone {
            members.remove(&target);
            tracing::info!(host = %self.host, ?target, "peer address left the balanced set");
            if self.changes.send(Change::Remove(target)).await.is_err() {
                return false;
            }
        }
        let new: Vec<Target> = wanted
            .into_iter()
            .filter(|t| {
                members
                    .get(t)
                    .is_none_or(|m| m.ejected.load(Ordering::SeqCst))
            })
            .collect();
        for new in new {
            let uri = match new {
                Target::Addr(addr) => self.uri_of(addr),
                Target::Name => self.name_uri.clone(),
            };
            let endpoint = match (self.make)(&uri) {
                Ok(endpoint) => endpoint,
                Err(err) => {
                    tracing::warn!(uri, error = %err, "cannot connect to a peer address");
                    continue;
                }
            };
            tracing::debug!(host = %self.host, target = ?new, "peer address joined the balanced set");
            let member = Ejecting {
                inner: endpoint.connect_lazy(),
                ejected: Arc::new(AtomicBool::new(false)),
                live: self.live.clone(),
                wake: self.wake.clone(),
                in_flight: Arc::default(),
            };
            let balanced = PendingRequests::new(member.clone(), CompleteOnResponse::default());
            if self
                .changes
                .send(Change::Insert(new, balanced))
                .await
                .is_err()
            {
                return false;
            }
            members.insert(new, member);
        }
        true
    }

    fn uri_of(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}", self.scheme)
    }

    /// Whether the server at `channel` answers SERVING for the service.
    async fn is_serving(&self, channel: Channel) -> bool {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let mut client = HealthClient::new(channel);
        let check = client.check(HealthCheckRequest {
            service: self.health_service.to_string(),
        });
        matches!(
            tokio::time::timeout(self.probe_timeout, check).await,
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, RwLock};

    use tonic::transport::Endpoint;

    use super::{AFFINITY_METADATA, Ejecting, Roster, owner, pinned, with_affinity};

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 50052)))
            .collect()
    }

    #[test]
    fn keys_spread_and_only_a_lost_addresss_keys_move() {
        let three = addrs(3);
        let keys: Vec<String> = (0..3000).map(|i| format!("product-{i}")).collect();
        let owners: Vec<SocketAddr> = keys
            .iter()
            .map(|k| owner(k.as_bytes(), &three).unwrap())
            .collect();
        for addr in &three {
            let owned = owners.iter().filter(|o| *o == addr).count();
            assert!((800..=1200).contains(&owned), "{addr} owns {owned} of 3000");
        }
        // The order the addresses come in does not matter.
        let reversed: Vec<SocketAddr> = three.iter().rev().copied().collect();
        assert!(
            keys.iter()
                .zip(&owners)
                .all(|(k, o)| owner(k.as_bytes(), &reversed) == Some(*o))
        );
        // Without the third address, its keys move and no other key does.
        let two = &three[..2];
        let mut moved = 0;
        for (key, was) in keys.iter().zip(&owners) {
            let now = owner(key.as_bytes(), two).unwrap();
            if *was == three[2] {
                moved += 1;
            } else {
                assert_eq!(now, *was, "{key} moved though its owner stayed");
            }
        }
        assert!(moved > 0);
        assert_eq!(owner(b"k", &[]), None);
    }

    #[tokio::test]
    async fn a_keyed_call_spills_over_only_past_the_load_bound() {
        let two = addrs(2);
        let member = || Ejecting {
            inner: Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
            ejected: Arc::default(),
            live: Arc::new(AtomicUsize::new(2)),
            wake: Arc::default(),
            in_flight: Arc::default(),
        };
        let roster = Roster(Arc::new(RwLock::new(
            two.iter().map(|a| (*a, member())).collect(),
        )));
        let key = b"best-seller";
        let own = owner(key, &two).unwrap();
        let in_flight = |addr: SocketAddr| {
            let roster = roster.0.read().unwrap();
            roster
                .iter()
                .find(|(a, _)| *a == addr)
                .unwrap()
                .1
                .in_flight
                .clone()
        };
        let (owners, other) = (in_flight(own), in_flight(two[(two[0] == own) as usize]));
        let picked = |roster: &Roster| Arc::as_ptr(&pinned(roster, key).unwrap().in_flight);
        // Idle, or a little busier than the other: the owner.
        assert_eq!(picked(&roster), Arc::as_ptr(&owners));
        owners.store(1, Ordering::Relaxed);
        assert_eq!(picked(&roster), Arc::as_ptr(&owners));
        owners.store(3, Ordering::Relaxed);
        other.store(2, Ordering::Relaxed);
        assert_eq!(picked(&roster), Arc::as_ptr(&owners));
        // Past 1.25 times the average: the next address in the key's order.
        owners.store(6, Ordering::Relaxed);
        assert_eq!(picked(&roster), Arc::as_ptr(&other));
        // An ejected owner is passed by whatever its load.
        owners.store(0, Ordering::Relaxed);
        let roster_of = |r: &Roster| r.0.read().unwrap().clone();
        let owner_member = roster_of(&roster)
            .into_iter()
            .find(|(a, _)| *a == own)
            .unwrap()
            .1;
        owner_member.ejected.store(true, Ordering::SeqCst);
        assert_eq!(picked(&roster), Arc::as_ptr(&other));
        roster.0.write().unwrap().clear();
        assert!(pinned(&roster, key).is_none());
    }

    #[test]
    fn an_affinity_key_that_is_not_metadata_is_left_off() {
        let mut request = tonic::Request::new(());
        with_affinity(&mut request, "9f1c-product");
        assert_eq!(
            request.metadata().get(AFFINITY_METADATA).unwrap(),
            "9f1c-product"
        );
        let mut request = tonic::Request::new(());
        with_affinity(&mut request, "line\nbreak");
        assert!(request.metadata().get(AFFINITY_METADATA).is_none());
    }
}
