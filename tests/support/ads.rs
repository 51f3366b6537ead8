//! A real gRPC ADS server for the xDS integration tests (tonic, on envoy-types' generated
//! `AggregatedDiscoveryService` trait). It serves state of the world
//! (`StreamAggregatedResources`) and incremental (`DeltaAggregatedResources`) on one server, over
//! one resource store, on 127.0.0.1 port 0 or on a Unix socket (pilot-agent's `pipe`).
//!
//! What a test can do with it:
//! - change the store (`set`, `remove`, `apply` a [`Batch`], typed `set_listener`...): every change
//!   is pushed to the streams subscribed to its type, one response per type per change;
//! - stop and start it on the same address (state kept), or break every open stream with a gRPC
//!   status while it stays up;
//! - turn automatic responses off and push raw responses, valid or garbage;
//! - look at every request, response and stream (with its initial metadata), and wait for a
//!   request matching a predicate.
//!
//! Protocol behaviour (see the xDS protocol document, "xds_protocol"):
//! - Versions. One system version counter, bumped once per change (one `set`, one `Batch`). A
//!   resource's version is the counter value when it was last set; a type's version (SotW
//!   `version_info`) is the counter value when one of its resources last changed, `""` for a type
//!   never touched. Nonces are one counter for the whole server, so they never repeat, even
//!   across restarts.
//! - Wildcard. Listener and Cluster are the wildcard types: a stream that never named a resource
//!   of those types gets all of them (the legacy rule). `*` among the names is a wildcard
//!   subscription for any type.
//! - SotW, like go-control-plane's snapshot cache. A request whose `response_nonce` is stale
//!   (not empty, and not the last nonce sent for its type on this stream, once one was sent) is
//!   recorded and otherwise ignored. Any other request replaces the stream's subscription for the
//!   type, and gets a response if its `version_info` differs from the type's version, or if it
//!   names (explicitly, not through the wildcard) a resource that exists and was not in the last
//!   response on this stream. A NACK (`error_detail` set) gets a response only for such new
//!   names: the rejected version is not sent again. So a reconnecting client whose version is
//!   current gets nothing for a wildcard. A response holds every resource of the type for a
//!   wildcard subscription, else the subscribed names that exist. A change pushes to every
//!   stream subscribed to the type that was not sent the type's current version yet.
//! - Delta. Per stream and type: the subscription (wildcard and names) and the version of each
//!   resource the client has (its `initial_resource_versions`, then what was sent). A response
//!   carries the subscribed resources whose version differs from the client's, and in
//!   `removed_resources` the ones the client has that are gone, plus newly subscribed names that
//!   do not exist. Names subscribed again are sent again; a name unsubscribed while the wildcard
//!   is on is sent again (or removed), as the protocol asks. Nonces are never used to ignore a
//!   delta request; a NACK gets nothing new, since the rejected versions count as sent.
//! - Responses to one change go out in type URL order: CDS, EDS, LDS, RDS, SDS.

use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls_pb;
use envoy_types::pb::envoy::service::discovery::v3 as discovery_pb;
use envoy_types::pb::google::protobuf::Any;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::{Message, Name};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

pub use discovery_pb::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use discovery_pb::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
pub use discovery_pb::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};

/// How long `stop` and `break_streams` wait for the streams to end.
const STREAMS_END_WITHIN: Duration = Duration::from_secs(5);

/// Which ADS method a stream came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `StreamAggregatedResources`: state of the world.
    Sotw,
    /// `DeltaAggregatedResources`: incremental.
    Delta,
}

/// A stream's number: 1 for the first stream the server accepted, counting across restarts.
pub type StreamId = u64;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdsAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub enum XdsRequest {
    Sotw(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
}

impl XdsRequest {
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Sotw(_) => Protocol::Sotw,
            Self::Delta(_) => Protocol::Delta,
        }
    }

    pub fn type_url(&self) -> &str {
        match self {
            Self::Sotw(r) => &r.type_url,
            Self::Delta(r) => &r.type_url,
        }
    }

    pub fn response_nonce(&self) -> &str {
        match self {
            Self::Sotw(r) => &r.response_nonce,
            Self::Delta(r) => &r.response_nonce,
        }
    }

    /// `error_detail` is set.
    pub fn is_nack(&self) -> bool {
        match self {
            Self::Sotw(r) => r.error_detail.is_some(),
            Self::Delta(r) => r.error_detail.is_some(),
        }
    }

    pub fn sotw(&self) -> Option<&DiscoveryRequest> {
        match self {
            Self::Sotw(r) => Some(r),
            Self::Delta(_) => None,
        }
    }

    pub fn delta(&self) -> Option<&DeltaDiscoveryRequest> {
        match self {
            Self::Delta(r) => Some(r),
            Self::Sotw(_) => None,
        }
    }
}

/// A response as the server sent it.
#[derive(Clone, Debug, PartialEq)]
pub enum XdsResponse {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}

impl XdsResponse {
    pub fn type_url(&self) -> &str {
        match self {
            Self::Sotw(r) => &r.type_url,
            Self::Delta(r) => &r.type_url,
        }
    }

    pub fn nonce(&self) -> &str {
        match self {
            Self::Sotw(r) => &r.nonce,
            Self::Delta(r) => &r.nonce,
        }
    }

    pub fn sotw(&self) -> Option<&DiscoveryResponse> {
        match self {
            Self::Sotw(r) => Some(r),
            Self::Delta(_) => None,
        }
    }

    pub fn delta(&self) -> Option<&DeltaDiscoveryResponse> {
        match self {
            Self::Delta(r) => Some(r),
            Self::Sotw(_) => None,
        }
    }
}

/// One recorded request and the stream it came on. Derefs to the request.
#[derive(Clone, Debug)]
pub struct Received {
    pub stream: StreamId,
    /// When it came off the stream, before the server acted on it.
    pub at: Instant,
    pub request: XdsRequest,
}

impl std::ops::Deref for Received {
    type Target = XdsRequest;
    fn deref(&self) -> &XdsRequest {
        &self.request
    }
}

/// One recorded response and the stream it went to. Derefs to the response.
#[derive(Clone, Debug)]
pub struct Sent {
    pub stream: StreamId,
    /// When it was handed to the stream (before gRPC encodes it).
    pub at: Instant,
    pub response: XdsResponse,
}

impl std::ops::Deref for Sent {
    type Target = XdsResponse;
    fn deref(&self) -> &XdsResponse {
        &self.response
    }
}

/// A stream the server accepted.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    pub id: StreamId,
    pub protocol: Protocol,
    /// The gRPC request metadata the stream opened with (`ads_config.initial_metadata`).
    pub metadata: MetadataMap,
    pub open: bool,
}

/// Changes applied to the store at once: one version, one push per type.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

#[derive(Clone, Debug)]
enum Op {
    Set(String, String, Any),
    Remove(String, String),
    Touch(String),
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Store `resource` under (`type_url`, `name`). The Any is sent as given, even if its own
    /// type URL says something else.
    #[must_use]
    pub fn set(mut self, type_url: &str, name: &str, resource: Any) -> Self {
        self.ops
            .push(Op::Set(type_url.to_owned(), name.to_owned(), resource));
        self
    }

    /// Store a message under its own type URL.
    #[must_use]
    pub fn set_msg<M: Message + Name>(self, name: &str, msg: &M) -> Self {
        self.set(&M::type_url(), name, any(msg))
    }

    /// Remove a resource; removing one that is not there changes nothing.
    #[must_use]
    pub fn remove(mut self, type_url: &str, name: &str) -> Self {
        self.ops
            .push(Op::Remove(type_url.to_owned(), name.to_owned()));
        self
    }

    /// Give the type and each of its resources a new version, contents unchanged, so they are
    /// pushed again. Touching a type with no resources makes it exist, empty.
    #[must_use]
    pub fn touch(mut self, type_url: &str) -> Self {
        self.ops.push(Op::Touch(type_url.to_owned()));
        self
    }

    #[must_use]
    pub fn listener(self, l: &listener_pb::Listener) -> Self {
        self.set_msg(&l.name, l)
    }

    #[must_use]
    pub fn cluster(self, c: &cluster_pb::Cluster) -> Self {
        self.set_msg(&c.name, c)
    }

    #[must_use]
    pub fn route(self, r: &route_pb::RouteConfiguration) -> Self {
        self.set_msg(&r.name, r)
    }

    /// Named by its `cluster_name`.
    #[must_use]
    pub fn endpoints(self, e: &endpoint_pb::ClusterLoadAssignment) -> Self {
        self.set_msg(&e.cluster_name, e)
    }

    #[must_use]
    pub fn secret(self, s: &tls_pb::Secret) -> Self {
        self.set_msg(&s.name, s)
    }
}

/// Pack a message into an Any with its type URL.
pub fn any<M: Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// Listener and Cluster: an empty subscription means all of them.
fn is_wildcard_type(type_url: &str) -> bool {
    type_url == listener_pb::Listener::type_url() || type_url == cluster_pb::Cluster::type_url()
}

/// The running ADS server. Dropping it stops it (and removes its Unix socket file).
pub struct AdsServer {
    shared: Arc<Shared>,
    addr: AdsAddr,
    serving: Mutex<Option<Serving>>,
}

impl AdsServer {
    /// Start on 127.0.0.1, port 0.
    pub async fn tcp() -> AdsServer {
        Self::start_on(AdsAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))).await
    }

    /// Start on a Unix socket at `path` (an old socket file there is removed).
    pub async fn unix(path: impl Into<PathBuf>) -> AdsServer {
        Self::start_on(AdsAddr::Unix(path.into())).await
    }

    async fn start_on(addr: AdsAddr) -> AdsServer {
        let (bound, addr) = bind(&addr).await.expect("bind the ADS server");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                auto: true,
                ..Inner::default()
            }),
            changed: watch::Sender::new(0),
        });
        let serving = Serving::spawn(shared.clone(), bound);
        AdsServer {
            shared,
            addr,
            serving: Mutex::new(Some(serving)),
        }
    }

    /// Where it listens (with the bound port for TCP).
    pub fn address(&self) -> &AdsAddr {
        &self.addr
    }

    /// The TCP address. Panics for a Unix socket server.
    pub fn addr(&self) -> SocketAddr {
        match &self.addr {
            AdsAddr::Tcp(a) => *a,
            AdsAddr::Unix(p) => panic!("the ADS server is on a Unix socket ({})", p.display()),
        }
    }

    /// The Unix socket path. Panics for a TCP server.
    pub fn path(&self) -> &Path {
        match &self.addr {
            AdsAddr::Unix(p) => p,
            AdsAddr::Tcp(a) => panic!("the ADS server is on TCP ({a})"),
        }
    }

    /// Stop serving, as a control plane that goes away: the listening socket is closed and every
    /// connection is dropped without a gRPC status. The store and the records stay.
    pub async fn stop(&self) {
        let serving = lock(&self.serving).take();
        if let Some(s) = serving {
            let _ = s.stop.send(());
            let _ = s.task.await;
        }
        self.shared.broadcast(None, || Control::Kill);
        self.wait_state("all streams closed", STREAMS_END_WITHIN, |i| {
            i.open_streams() == 0
        })
        .await;
    }

    /// Serve again on the same address (the same port for TCP). Panics if already serving.
    pub async fn start(&self) {
        assert!(!self.is_serving(), "the ADS server is already serving");
        let (bound, _) = bind(&self.addr).await.expect("bind the ADS server again");
        *lock(&self.serving) = Some(Serving::spawn(self.shared.clone(), bound));
    }

    pub fn is_serving(&self) -> bool {
        lock(&self.serving).is_some()
    }

    /// End every open stream with UNAVAILABLE; the server stays up. Returns when they are gone.
    pub async fn break_streams(&self) {
        self.break_streams_with(Status::unavailable("ADS server breaks the stream"))
            .await;
    }

    /// End every open stream with `status` (after what was already queued on it).
    pub async fn break_streams_with(&self, status: Status) {
        self.shared
            .broadcast(None, || Control::Break(status.clone()));
        self.wait_state("all streams broken", STREAMS_END_WITHIN, |i| {
            i.open_streams() == 0
        })
        .await;
    }

    // ---- the store ----

    /// Set one resource (a new version) and push.
    pub fn set(&self, type_url: &str, name: &str, resource: Any) {
        self.apply(Batch::new().set(type_url, name, resource));
    }

    /// Remove one resource and push; returns whether it was there.
    pub fn remove(&self, type_url: &str, name: &str) -> bool {
        !self.apply(Batch::new().remove(type_url, name)).is_empty()
    }

    /// Set several resources, `(type_url, name, resource)`, as one batch (see [`Self::apply`]).
    pub fn set_many<'a>(&self, resources: impl IntoIterator<Item = (&'a str, &'a str, Any)>) {
        let batch = (resources.into_iter()).fold(Batch::new(), |b, (t, n, r)| b.set(t, n, r));
        self.apply(batch);
    }

    /// Apply a batch under one new system version, then push once per changed type. Returns
    /// the changed type URLs (none if the batch changed nothing).
    pub fn apply(&self, batch: Batch) -> BTreeSet<String> {
        let mut inner = self.shared.lock();
        let touched = inner.store.apply(batch.ops);
        if !touched.is_empty() {
            inner.broadcast(None, || Control::Sync(Some(touched.clone())));
        }
        touched
    }

    /// Re-version a type's resources and push them again (see [`Batch::touch`]).
    pub fn touch(&self, type_url: &str) {
        self.apply(Batch::new().touch(type_url));
    }

    /// Set a message under its own type URL.
    pub fn set_msg<M: Message + Name>(&self, name: &str, msg: &M) {
        self.apply(Batch::new().set_msg(name, msg));
    }

    pub fn set_listener(&self, l: &listener_pb::Listener) {
        self.apply(Batch::new().listener(l));
    }

    pub fn set_cluster(&self, c: &cluster_pb::Cluster) {
        self.apply(Batch::new().cluster(c));
    }

    pub fn set_route(&self, r: &route_pb::RouteConfiguration) {
        self.apply(Batch::new().route(r));
    }

    /// Named by its `cluster_name`.
    pub fn set_endpoints(&self, e: &endpoint_pb::ClusterLoadAssignment) {
        self.apply(Batch::new().endpoints(e));
    }

    pub fn set_secret(&self, s: &tls_pb::Secret) {
        self.apply(Batch::new().secret(s));
    }

    /// A stored resource and its version.
    pub fn get(&self, type_url: &str, name: &str) -> Option<(Any, String)> {
        let inner = self.shared.lock();
        let r = inner.store.get(type_url, name)?;
        Some((r.resource.clone(), r.version.clone()))
    }

    /// The names stored under a type, sorted.
    pub fn names(&self, type_url: &str) -> Vec<String> {
        let inner = self.shared.lock();
        inner
            .store
            .resources(type_url)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The type's version (SotW `version_info`), `""` if the type was never touched.
    pub fn version(&self, type_url: &str) -> String {
        self.shared.lock().store.type_version(type_url)
    }

    /// The system version counter (delta `system_version_info`).
    pub fn system_version(&self) -> u64 {
        self.shared.lock().store.system_version
    }

    // ---- manual mode ----

    /// Automatic responses on (the default) or off. Off, requests are still recorded and
    /// subscriptions tracked, but nothing is sent unless pushed raw. Turning it back on sends
    /// each stream what it is missing.
    pub fn set_auto(&self, on: bool) {
        let mut inner = self.shared.lock();
        inner.auto = on;
        if on {
            inner.broadcast(None, || Control::Sync(None));
        }
    }

    /// Send `response` as is to every open SotW stream; returns how many. Its nonce becomes the
    /// last nonce of its type on those streams (so an ACK of it is not stale).
    pub fn push_raw_sotw(&self, response: DiscoveryResponse) -> usize {
        self.shared.broadcast(Some(Protocol::Sotw), || {
            Control::Raw(XdsResponse::Sotw(response.clone()))
        })
    }

    /// Send `response` as is to every open delta stream; returns how many.
    pub fn push_raw_delta(&self, response: DeltaDiscoveryResponse) -> usize {
        self.shared.broadcast(Some(Protocol::Delta), || {
            Control::Raw(XdsResponse::Delta(response.clone()))
        })
    }

    // ---- records ----

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were received so far (a mark for [`Self::wait_for_since`]).
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// The requests that were NACKs.
    pub fn nacks(&self) -> Vec<Received> {
        let inner = self.shared.lock();
        inner
            .requests
            .iter()
            .filter(|r| r.is_nack())
            .cloned()
            .collect()
    }

    /// Every response sent (automatic and raw), in order.
    pub fn responses(&self) -> Vec<Sent> {
        self.shared.lock().responses.clone()
    }

    /// How many responses were sent so far (a mark for [`Self::responses_since`]).
    pub fn response_count(&self) -> usize {
        self.shared.lock().responses.len()
    }

    /// The responses sent after the first `from`.
    pub fn responses_since(&self, from: usize) -> Vec<Sent> {
        let inner = self.shared.lock();
        inner.responses.iter().skip(from).cloned().collect()
    }

    /// Wait until some request matching `pred` has been received (and the server has acted on
    /// it) and return the first one; panic with what was received after `timeout`.
    pub async fn wait_for(&self, pred: impl Fn(&Received) -> bool, timeout: Duration) -> Received {
        self.wait_for_since(0, pred, timeout).await
    }

    /// As [`Self::wait_for`], among the requests after the first `from`.
    pub async fn wait_for_since(
        &self,
        from: usize,
        pred: impl Fn(&Received) -> bool,
        timeout: Duration,
    ) -> Received {
        let mut found = None;
        self.wait_state("a matching xDS request", timeout, |inner| {
            found = inner.requests.iter().skip(from).find(|r| pred(r)).cloned();
            found.is_some()
        })
        .await;
        found.expect("wait_state returns once found")
    }

    /// Wait until exactly `n` streams are open; panic after `timeout`.
    pub async fn wait_connected(&self, n: usize, timeout: Duration) {
        self.wait_state(&format!("{n} open streams"), timeout, |i| {
            i.open_streams() == n
        })
        .await;
    }

    /// Every stream accepted, in order, open or not.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let inner = self.shared.lock();
        inner.streams.values().map(|s| s.info.clone()).collect()
    }

    /// The initial metadata of a stream.
    pub fn metadata(&self, stream: StreamId) -> Option<MetadataMap> {
        let inner = self.shared.lock();
        inner.streams.get(&stream).map(|s| s.info.metadata.clone())
    }

    /// How many streams were ever opened.
    pub fn streams_opened(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// How many streams are open now.
    pub fn connected(&self) -> usize {
        self.shared.lock().open_streams()
    }

    /// Poll the state on every change until `done`, or panic with a dump after `timeout`.
    async fn wait_state(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Inner) -> bool,
    ) {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.shared.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "ADS server: no {what} within {timeout:?}\n{}",
                    self.shared.lock().dump()
                );
            }
        }
    }

    // ---- for tests and bootstraps ----

    /// A plain tonic ADS client connected to this server.
    pub async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        let channel = match &self.addr {
            AdsAddr::Tcp(a) => Endpoint::from_shared(format!("http://{a}"))
                .expect("endpoint URI")
                .connect()
                .await
                .expect("connect to the ADS server"),
            AdsAddr::Unix(p) => Endpoint::from_static("http://ads.invalid")
                .connect_with_connector(UdsConnector(p.clone()))
                .await
                .expect("connect to the ADS server"),
        };
        AggregatedDiscoveryServiceClient::new(channel)
    }

    /// A bootstrap cluster (YAML list item, indented for `support::bootstrap`) that reaches
    /// this server over HTTP/2, as Istio's `xds-grpc`.
    pub fn cluster_yaml(&self, name: &str) -> String {
        let address = match &self.addr {
            AdsAddr::Tcp(a) => format!(
                "socket_address: {{ address: \"{}\", port_value: {} }}",
                a.ip(),
                a.port()
            ),
            AdsAddr::Unix(p) => format!("pipe: {{ path: \"{}\" }}", p.display()),
        };
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ {address} }} }}
"#
        )
    }
}

/// Bootstrap `dynamic_resources` (top-level YAML) for ADS through `cluster`: LDS and CDS over
/// ADS, SotW (`GRPC`) or incremental (`DELTA_GRPC`).
pub fn dynamic_resources_yaml(cluster: &str, delta: bool) -> String {
    let api_type = if delta { "DELTA_GRPC" } else { "GRPC" };
    format!(
        r#"dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services:
    - envoy_grpc: {{ cluster_name: {cluster} }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
"#
    )
}

impl Drop for AdsServer {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.serving).take() {
            s.task.abort();
        }
        self.shared.broadcast(None, || Control::Kill);
        if let AdsAddr::Unix(p) = &self.addr {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- state shared by the handle and the stream tasks ----

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every recorded request and every stream opened or closed.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn broadcast(&self, only: Option<Protocol>, control: impl Fn() -> Control) -> usize {
        self.lock().broadcast(only, control)
    }
}

#[derive(Default)]
struct Inner {
    store: Store,
    auto: bool,
    last_nonce: u64,
    streams: BTreeMap<StreamId, StreamEntry>,
    requests: Vec<Received>,
    responses: Vec<Sent>,
}

struct StreamEntry {
    info: StreamInfo,
    /// `None` once the stream ended.
    control: Option<mpsc::UnboundedSender<Control>>,
}

impl Inner {
    fn nonce(&mut self) -> String {
        self.last_nonce += 1;
        self.last_nonce.to_string()
    }

    fn open_streams(&self) -> usize {
        self.streams.values().filter(|s| s.info.open).count()
    }

    /// Send a control message to each open stream (of one protocol); returns how many.
    fn broadcast(&self, only: Option<Protocol>, control: impl Fn() -> Control) -> usize {
        let mut n = 0;
        for s in self.streams.values() {
            if only.is_some_and(|p| p != s.info.protocol) {
                continue;
            }
            if let Some(c) = &s.control
                && c.send(control()).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    fn dump(&self) -> String {
        let mut out = format!(
            "streams opened: {}, open: {}\nrequests received:\n",
            self.streams.len(),
            self.open_streams()
        );
        for (i, r) in self.requests.iter().enumerate() {
            let line = match &r.request {
                XdsRequest::Sotw(q) => format!(
                    "sotw {} version={:?} nonce={:?} names={:?}",
                    q.type_url, q.version_info, q.response_nonce, q.resource_names
                ),
                XdsRequest::Delta(q) => format!(
                    "delta {} nonce={:?} subscribe={:?} unsubscribe={:?} initial={:?}",
                    q.type_url,
                    q.response_nonce,
                    q.resource_names_subscribe,
                    q.resource_names_unsubscribe,
                    q.initial_resource_versions
                ),
            };
            let nack = if r.is_nack() { " NACK" } else { "" };
            out.push_str(&format!("  #{i} stream {}: {line}{nack}\n", r.stream));
        }
        out
    }
}

#[derive(Default)]
struct Store {
    system_version: u64,
    /// Every change, in order: (type URL, name; `None` for the whole type). A delta stream
    /// reads the changes since its last response of a type instead of walking every resource
    /// (10,000 of them in the scale bench).
    changes: Vec<(String, Option<String>)>,
    types: BTreeMap<String, TypeEntry>,
}

#[derive(Default)]
struct TypeEntry {
    version: String,
    resources: BTreeMap<String, Stored>,
}

struct Stored {
    version: String,
    resource: Any,
}

impl Store {
    /// Apply the operations under one new version; returns the types that changed.
    fn apply(&mut self, ops: Vec<Op>) -> BTreeSet<String> {
        let version = (self.system_version + 1).to_string();
        let mut touched = BTreeSet::new();
        for op in ops {
            match op {
                Op::Set(type_url, name, resource) => {
                    let entry = self.types.entry(type_url.clone()).or_default();
                    let stored = Stored {
                        version: version.clone(),
                        resource,
                    };
                    entry.resources.insert(name.clone(), stored);
                    self.changes.push((type_url.clone(), Some(name)));
                    touched.insert(type_url);
                }
                Op::Remove(type_url, name) => {
                    let entry = self.types.get_mut(&type_url);
                    if entry.is_some_and(|e| e.resources.remove(&name).is_some()) {
                        self.changes.push((type_url.clone(), Some(name)));
                        touched.insert(type_url);
                    }
                }
                Op::Touch(type_url) => {
                    let entry = self.types.entry(type_url.clone()).or_default();
                    for r in entry.resources.values_mut() {
                        r.version = version.clone();
                    }
                    self.changes.push((type_url.clone(), None));
                    touched.insert(type_url);
                }
            }
        }
        if !touched.is_empty() {
            self.system_version += 1;
            for t in &touched {
                self.types.entry(t.clone()).or_default().version = version.clone();
            }
        }
        touched
    }

    fn type_version(&self, type_url: &str) -> String {
        self.types
            .get(type_url)
            .map(|t| t.version.clone())
            .unwrap_or_default()
    }

    fn get(&self, type_url: &str, name: &str) -> Option<&Stored> {
        self.types.get(type_url)?.resources.get(name)
    }

    fn resources<'a>(&'a self, type_url: &str) -> impl Iterator<Item = (&'a String, &'a Stored)> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.resources.iter())
    }
}

// ---- serving ----

/// The accept loop of a started server.
struct Serving {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Bind `addr`; returns the listener and the address with the bound port.
async fn bind(addr: &AdsAddr) -> std::io::Result<(Bound, AdsAddr)> {
    match addr {
        AdsAddr::Tcp(a) => {
            let socket = if a.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // The port may still have connections in TIME_WAIT from before a stop.
            socket.set_reuseaddr(true)?;
            socket.bind(*a)?;
            let listener = socket.listen(128)?;
            let bound = listener.local_addr()?;
            Ok((Bound::Tcp(listener), AdsAddr::Tcp(bound)))
        }
        AdsAddr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            Ok((Bound::Unix(UnixListener::bind(p)?), addr.clone()))
        }
    }
}

impl Serving {
    fn spawn(shared: Arc<Shared>, bound: Bound) -> Serving {
        let (stop, stopped) = oneshot::channel();
        let service = Services {
            ads: AggregatedDiscoveryServiceServer::new(Handler(shared.clone())),
            sds: SecretDiscoveryServiceServer::new(Handler(shared)),
        };
        let task = tokio::spawn(accept_loop(bound, service, stopped));
        Serving { stop, task }
    }
}

/// ADS, and SDS on a stream of its own (as pilot-agent serves it on its SDS socket); both
/// streams share the store and the records.
#[derive(Clone)]
struct Services {
    ads: AggregatedDiscoveryServiceServer<Handler>,
    sds: SecretDiscoveryServiceServer<Handler>,
}

type AdsService = Services;

/// Accept connections until told to stop (or the handle is gone), then drop them all.
async fn accept_loop(bound: Bound, service: AdsService, mut stop: oneshot::Receiver<()>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept(&bound, &service) => match accepted {
                Ok(connection) => {
                    connections.spawn(connection);
                }
                // Out of file descriptors or the like: try again shortly, without spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(bound);
    connections.shutdown().await;
}

type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn accept(bound: &Bound, service: &AdsService) -> std::io::Result<Connection> {
    Ok(match bound {
        Bound::Tcp(l) => {
            let (io, _) = l.accept().await?;
            let _ = io.set_nodelay(true);
            Box::pin(serve_connection(io, service.clone()))
        }
        Bound::Unix(l) => Box::pin(serve_connection(l.accept().await?.0, service.clone())),
    })
}

/// Serve gRPC (HTTP/2) on one connection.
async fn serve_connection<I>(io: I, service: AdsService)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let services = service.clone();
        async move {
            if req
                .uri()
                .path()
                .starts_with("/envoy.service.secret.v3.SecretDiscoveryService/")
            {
                services.sds.clone().call(req).await
            } else {
                services.ads.clone().call(req).await
            }
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The gRPC service: each call opens a stream, run by its own task.
struct Handler(Arc<Shared>);

#[tonic::async_trait]
impl AggregatedDiscoveryService for Handler {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            SotwSession::default(),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            DeltaSession::default(),
        )))
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for Handler {
    type StreamSecretsStream = UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaSecretsStream = UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_secrets(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamSecretsStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            SotwSession::default(),
        )))
    }

    async fn delta_secrets(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaSecretsStream>, Status> {
        Ok(tonic::Response::new(open_stream(
            &self.0,
            request,
            DeltaSession::default(),
        )))
    }

    async fn fetch_secrets(
        &self,
        _request: tonic::Request<DiscoveryRequest>,
    ) -> Result<tonic::Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("REST-style fetch is not served"))
    }
}

/// What the handle tells a stream's task.
enum Control {
    /// Send what the store changed for these types (`None`: all types).
    Sync(Option<BTreeSet<String>>),
    Raw(XdsResponse),
    /// End the stream with this status.
    Break(Status),
    /// End the stream's task now (the server stops).
    Kill,
}

/// The protocol state of one stream.
trait Session: Send + 'static {
    type Request: Clone + Send + Into<XdsRequest> + 'static;
    type Response: Send + Clone + Into<XdsResponse> + 'static;
    const PROTOCOL: Protocol;
    /// Handle a request; returns the responses to send.
    fn on_request(&mut self, inner: &mut Inner, request: Self::Request) -> Vec<Self::Response>;
    /// Send what changed in these types (all when `None`).
    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<Self::Response>;
    /// A raw response to pass on, if it is of this protocol.
    fn on_raw(&mut self, response: XdsResponse) -> Option<Self::Response>;
}

fn open_stream<S: Session>(
    shared: &Arc<Shared>,
    request: tonic::Request<Streaming<S::Request>>,
    session: S,
) -> UnboundedReceiverStream<Result<S::Response, Status>> {
    let metadata = request.metadata().clone();
    let inbound = request.into_inner();
    let (out, responses) = mpsc::unbounded_channel();
    let (control_tx, control) = mpsc::unbounded_channel();
    let id = {
        let mut inner = shared.lock();
        let id = inner.streams.len() as StreamId + 1;
        let info = StreamInfo {
            id,
            protocol: S::PROTOCOL,
            metadata,
            open: true,
        };
        let control = Some(control_tx);
        inner.streams.insert(id, StreamEntry { info, control });
        id
    };
    shared.notify();
    tokio::spawn(run_stream(
        shared.clone(),
        id,
        session,
        inbound,
        out,
        control,
    ));
    UnboundedReceiverStream::new(responses)
}

async fn run_stream<S: Session>(
    shared: Arc<Shared>,
    id: StreamId,
    mut session: S,
    mut inbound: Streaming<S::Request>,
    out: mpsc::UnboundedSender<Result<S::Response, Status>>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    loop {
        // Each event is handled, recorded and answered under one lock, so a test that sees a
        // request recorded also sees the responses it caused.
        let delivered = tokio::select! {
            request = inbound.next() => {
                // The client ended its side, sent something undecodable, or went away.
                let Some(Ok(request)) = request else { break };
                let at = Instant::now();
                let mut inner = shared.lock();
                let responses = session.on_request(&mut inner, request.clone());
                let request = request.into();
                inner.requests.push(Received { stream: id, at, request });
                deliver(&mut inner, id, &out, responses)
            }
            c = control.recv() => match c {
                Some(Control::Sync(types)) => {
                    let mut inner = shared.lock();
                    let responses = session.on_sync(&mut inner, types.as_ref());
                    deliver(&mut inner, id, &out, responses)
                }
                Some(Control::Raw(r)) => {
                    let responses = session.on_raw(r).into_iter().collect();
                    deliver(&mut shared.lock(), id, &out, responses)
                }
                Some(Control::Break(status)) => {
                    let _ = out.send(Err(status));
                    break;
                }
                Some(Control::Kill) | None => break,
            },
            () = out.closed() => break,
        };
        shared.notify();
        if !delivered {
            break;
        }
    }
    let mut inner = shared.lock();
    if let Some(s) = inner.streams.get_mut(&id) {
        s.info.open = false;
        s.control = None;
    }
    drop(inner);
    shared.notify();
}

/// Record and send responses; false once the client is gone.
fn deliver<R: Clone + Into<XdsResponse>>(
    inner: &mut Inner,
    id: StreamId,
    out: &mpsc::UnboundedSender<Result<R, Status>>,
    responses: Vec<R>,
) -> bool {
    for r in responses {
        let response = r.clone().into();
        inner.responses.push(Sent {
            stream: id,
            at: Instant::now(),
            response,
        });
        if out.send(Ok(r)).is_err() {
            return false;
        }
    }
    true
}

impl From<DiscoveryRequest> for XdsRequest {
    fn from(r: DiscoveryRequest) -> Self {
        Self::Sotw(r)
    }
}

impl From<DeltaDiscoveryRequest> for XdsRequest {
    fn from(r: DeltaDiscoveryRequest) -> Self {
        Self::Delta(r)
    }
}

impl From<DiscoveryResponse> for XdsResponse {
    fn from(r: DiscoveryResponse) -> Self {
        Self::Sotw(r)
    }
}

impl From<DeltaDiscoveryResponse> for XdsResponse {
    fn from(r: DeltaDiscoveryResponse) -> Self {
        Self::Delta(r)
    }
}

// ---- state of the world ----

#[derive(Default)]
struct SotwSession {
    types: BTreeMap<String, SotwType>,
}

/// One type on one SotW stream.
#[derive(Default)]
struct SotwType {
    /// A request for the type was accepted (the stream is subscribed).
    subscribed: bool,
    /// Some request named a resource: an empty list no longer means the wildcard.
    named: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// The last nonce sent for the type, `""` before any.
    nonce: String,
    /// The version and the names of the last automatic response (or what the client said it
    /// had when no response was needed).
    sent_version: Option<String>,
    sent_names: BTreeSet<String>,
}

impl Session for SotwSession {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::Sotw;

    fn on_request(&mut self, inner: &mut Inner, req: DiscoveryRequest) -> Vec<DiscoveryResponse> {
        let t = self.types.entry(req.type_url.clone()).or_default();
        if !req.response_nonce.is_empty() && !t.nonce.is_empty() && req.response_nonce != t.nonce {
            return Vec::new(); // stale: an answer to a response that was superseded
        }
        t.subscribed = true;
        t.named |= !req.resource_names.is_empty();
        t.wildcard = req.resource_names.iter().any(|n| n == "*")
            || (!t.named && is_wildcard_type(&req.type_url));
        t.names = req
            .resource_names
            .iter()
            .filter(|n| *n != "*")
            .cloned()
            .collect();
        if !inner.auto {
            return Vec::new();
        }
        let version = inner.store.type_version(&req.type_url);
        let content = sotw_content(&inner.store, &req.type_url, t);
        // A resource named (not through the wildcard) that exists and was not sent yet.
        let new_names =
            (t.names.iter()).any(|n| content.contains_key(n) && !t.sent_names.contains(n));
        let nack = req.error_detail.is_some();
        if new_names || (!nack && req.version_info != version) {
            return vec![sotw_response(inner, &req.type_url, t)];
        }
        if !nack && t.sent_version.is_none() {
            // The client already has the current version (a reconnect): nothing to send.
            t.sent_names = content.keys().map(|n| (*n).clone()).collect();
            t.sent_version = Some(version);
        }
        Vec::new()
    }

    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<DiscoveryResponse> {
        if !inner.auto {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (type_url, t) in &mut self.types {
            if !t.subscribed || types.is_some_and(|ts| !ts.contains(type_url)) {
                continue;
            }
            if t.sent_version.as_deref() != Some(inner.store.type_version(type_url).as_str()) {
                out.push(sotw_response(inner, type_url, t));
            }
        }
        out
    }

    fn on_raw(&mut self, response: XdsResponse) -> Option<DiscoveryResponse> {
        let XdsResponse::Sotw(r) = response else {
            return None;
        };
        let t = self.types.entry(r.type_url.clone()).or_default();
        t.nonce = r.nonce.clone();
        Some(r)
    }
}

/// What a SotW subscription gets: all resources for a wildcard, else the names that exist.
fn sotw_content<'a>(
    store: &'a Store,
    type_url: &str,
    t: &SotwType,
) -> BTreeMap<&'a String, &'a Any> {
    store
        .resources(type_url)
        .filter(|(n, _)| t.wildcard || t.names.contains(*n))
        .map(|(n, r)| (n, &r.resource))
        .collect()
}

fn sotw_response(inner: &mut Inner, type_url: &str, t: &mut SotwType) -> DiscoveryResponse {
    let nonce = inner.nonce();
    let version = inner.store.type_version(type_url);
    let content = sotw_content(&inner.store, type_url, t);
    t.sent_names = content.keys().map(|n| (*n).clone()).collect();
    let resources = content.into_values().cloned().collect();
    t.nonce = nonce.clone();
    t.sent_version = Some(version.clone());
    DiscoveryResponse {
        version_info: version,
        resources,
        type_url: type_url.to_owned(),
        nonce,
        ..Default::default()
    }
}

// ---- incremental ----

#[derive(Default)]
struct DeltaSession {
    types: BTreeMap<String, DeltaType>,
}

/// One type on one delta stream.
#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// The version of each resource the client has.
    known: HashMap<String, String>,
    /// Names to report in `removed_resources` with the next response: subscribed but absent.
    absent: BTreeSet<String>,
    /// How much of the store's change log this type has seen (`None`: walk everything).
    seen: Option<usize>,
}

impl Session for DeltaSession {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn on_request(
        &mut self,
        inner: &mut Inner,
        req: DeltaDiscoveryRequest,
    ) -> Vec<DeltaDiscoveryResponse> {
        let first = !self.types.contains_key(&req.type_url);
        let t = self.types.entry(req.type_url.clone()).or_default();
        let exists = |n: &str| inner.store.get(&req.type_url, n).is_some();
        if first {
            t.known = req.initial_resource_versions.clone();
            t.wildcard = req.resource_names_subscribe.is_empty()
                && req.resource_names_unsubscribe.is_empty()
                && is_wildcard_type(&req.type_url);
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                t.wildcard = true;
                continue;
            }
            t.names.insert(n.clone());
            if !first {
                t.known.remove(n); // the client may have forgotten it: send it again
            }
            if !exists(n) {
                t.absent.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                t.wildcard = false;
                t.known.retain(|k, _| t.names.contains(k));
                continue;
            }
            t.names.remove(n);
            t.known.remove(n);
            t.absent.remove(n);
            // Still covered by the wildcard? Tell the client whether to keep it.
            if t.wildcard && !exists(n) {
                t.absent.insert(n.clone());
            }
        }
        if !inner.auto {
            return Vec::new();
        }
        if !first
            && req.resource_names_subscribe.is_empty()
            && req.resource_names_unsubscribe.is_empty()
        {
            // An ACK or NACK: nothing new to send (changes are pushed as they happen).
            return Vec::new();
        }
        t.seen = Some(inner.store.changes.len());
        delta_response(inner, &req.type_url, t, None)
            .into_iter()
            .collect()
    }

    fn on_sync(
        &mut self,
        inner: &mut Inner,
        types: Option<&BTreeSet<String>>,
    ) -> Vec<DeltaDiscoveryResponse> {
        if !inner.auto {
            return Vec::new();
        }
        let mut out = Vec::new();
        let end = inner.store.changes.len();
        for (type_url, t) in &mut self.types {
            if types.is_none_or(|ts| ts.contains(type_url)) {
                // The names changed since this type's last look, or everything.
                let only: Option<BTreeSet<String>> = match (types, t.seen) {
                    (Some(_), Some(from)) => inner.store.changes[from.min(end)..end]
                        .iter()
                        .filter(|(ty, _)| ty == type_url)
                        .map(|(_, n)| n.clone())
                        .collect::<Option<BTreeSet<String>>>(),
                    _ => None,
                };
                t.seen = Some(end);
                out.extend(delta_response(inner, type_url, t, only.as_ref()));
            }
        }
        out
    }

    fn on_raw(&mut self, response: XdsResponse) -> Option<DeltaDiscoveryResponse> {
        match response {
            XdsResponse::Delta(r) => Some(r),
            XdsResponse::Sotw(_) => None,
        }
    }
}

/// The difference between the store and what the client has, if any.
fn delta_response(
    inner: &mut Inner,
    type_url: &str,
    t: &mut DeltaType,
    only: Option<&BTreeSet<String>>,
) -> Option<DeltaDiscoveryResponse> {
    let store = &inner.store;
    let wanted = |n: &str| t.wildcard || t.names.contains(n);
    let to_send = |(n, r): (&String, &Stored)| {
        (wanted(n) && t.known.get(n) != Some(&r.version)).then(|| discovery_pb::Resource {
            name: n.clone(),
            version: r.version.clone(),
            resource: Some(r.resource.clone()),
            ..Default::default()
        })
    };
    let resources: Vec<_> = match only {
        None => store.resources(type_url).filter_map(to_send).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| store.get(type_url, n).map(|r| (n, r)))
            .filter_map(to_send)
            .collect(),
    };
    let gone = |n: &&String| wanted(n) && store.get(type_url, n).is_none();
    let mut removed: BTreeSet<String> = match only {
        None => t.known.keys().filter(gone).cloned().collect(),
        Some(names) => names
            .iter()
            .filter(|n| t.known.contains_key(*n))
            .filter(gone)
            .cloned()
            .collect(),
    };
    removed.extend(
        std::mem::take(&mut t.absent)
            .into_iter()
            .filter(|n| store.get(type_url, n).is_none()),
    );
    if resources.is_empty() && removed.is_empty() {
        return None;
    }
    for r in &resources {
        t.known.insert(r.name.clone(), r.version.clone());
    }
    for n in &removed {
        t.known.remove(n);
    }
    let system_version_info = store.system_version.to_string();
    Some(DeltaDiscoveryResponse {
        system_version_info,
        resources,
        type_url: type_url.to_owned(),
        removed_resources: removed.into_iter().collect(),
        nonce: inner.nonce(),
        ..Default::default()
    })
}

/// Connects a tonic channel to a Unix socket.
#[derive(Clone)]
struct UdsConnector(PathBuf);

impl Service<http::Uri> for UdsConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) })
    }
}
