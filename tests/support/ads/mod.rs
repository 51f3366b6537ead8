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
mod delta;
mod serve;
mod sotw;
mod state;

use delta::*;
use serve::*;
use sotw::*;
use state::*;

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
