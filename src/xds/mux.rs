//! One gRPC xDS stream: ADS (every type on one stream) or a stream of one type to a cluster of
//! its own; state of the world or delta.
//!
//! Protocol bookkeeping, per type: the last accepted `version_info` (SotW) or the version of
//! each resource held (delta), the nonce of the last response, and the names the server was
//! told about. A response is applied by the [`Store`](super::Store); success is ACKed by
//! echoing its nonce with the new version, failure NACKed with the previous version and an
//! `error_detail` (`INVALID_ARGUMENT`). Subscriptions follow the store's interest. When the
//! stream breaks it is opened again after a jittered exponential back-off (0.5 s doubling up
//! to 30 s), sending the versions held (`initial_resource_versions` in delta), while the last
//! good configuration keeps serving.

use super::grpc;
use super::source::{GrpcSettings, SourceKey};
use super::stats::ControlPlaneStats;
use super::store::{Incoming, Interest, Update};
use super::{Kind, Shared};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The largest response tern accepts (tonic's default is 4 MiB; Istio's pushes for a large
/// mesh are bigger). A response beyond it breaks the stream instead of exhausting memory.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Protocol state of one type, kept across reconnects.
#[derive(Debug, Default)]
struct TypeState {
    /// SotW: the last accepted `version_info`.
    version: String,
    /// Delta: the version of each resource held.
    resource_versions: HashMap<String, String>,
    /// The nonce of the last response on this stream.
    nonce: String,
    /// What the server was told on this stream (`None`: nothing yet).
    sent: Option<Interest>,
}

/// Run a stream to `src` for `kinds` for ever, reconnecting with back-off.
pub async fn run(
    src: SourceKey,
    kinds: Vec<Kind>,
    settings: GrpcSettings,
    node: Arc<Node>,
    shared: Arc<Shared>,
) {
    let stats = shared.with_store(|s| ControlPlaneStats::new(&s.world_stats()));
    let mut states: HashMap<Kind, TypeState> =
        kinds.iter().map(|k| (*k, TypeState::default())).collect();
    let mut attempt: u32 = 0;
    loop {
        let mut stream = Stream {
            src: &src,
            kinds: &kinds,
            settings: &settings,
            node: &node,
            shared: &shared,
            states: &mut states,
            stats: &stats,
            node_sent: false,
            tokens: Tokens::new(settings.rate_limit),
            got_response: false,
        };
        let result = stream.run().await;
        let got_response = stream.got_response;
        if matches!(src, SourceKey::Ads) {
            stats.connected_state.set(0);
        }
        for st in states.values_mut() {
            st.nonce.clear();
            st.sent = None;
        }
        if got_response {
            attempt = 0;
        }
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        match result {
            Ok(()) => {
                info!(source = %src, "xds stream closed by the server; reconnecting in {delay:?}")
            }
            Err(e) => {
                warn!(source = %src, error = %e, "xds stream failed; reconnecting in {delay:?}")
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Full-jitter exponential back-off: a random delay up to `base * 2^attempt`, capped.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX);
    let ms = cap.as_millis().max(1) as u64;
    Duration::from_millis(rand::random_range(ms / 2..=ms))
}

/// Token bucket of `rate_limit_settings`.
struct Tokens {
    limit: Option<(f64, f64)>,
    tokens: f64,
    last: tokio::time::Instant,
}

impl Tokens {
    fn new(limit: Option<(u32, f64)>) -> Tokens {
        let limit = limit.map(|(max, rate)| (f64::from(max.max(1)), rate.max(0.001)));
        Tokens {
            tokens: limit.map_or(0.0, |l| l.0),
            limit,
            last: tokio::time::Instant::now(),
        }
    }

    /// Wait for a token; counts a request that had to wait.
    async fn take(&mut self, stats: &ControlPlaneStats) {
        let Some((max, rate)) = self.limit else {
            return;
        };
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + (now - self.last).as_secs_f64() * rate).min(max);
        self.last = now;
        if self.tokens < 1.0 {
            stats.rate_limit_enforced.inc();
            stats.pending_requests.inc();
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / rate);
            tokio::time::sleep(wait).await;
            stats.pending_requests.dec();
            self.tokens = 1.0;
            self.last = tokio::time::Instant::now();
        }
        self.tokens -= 1.0;
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Stream<'a> {
    src: &'a SourceKey,
    kinds: &'a [Kind],
    settings: &'a GrpcSettings,
    node: &'a Arc<Node>,
    shared: &'a Arc<Shared>,
    states: &'a mut HashMap<Kind, TypeState>,
    stats: &'a ControlPlaneStats,
    node_sent: bool,
    tokens: Tokens,
    got_response: bool,
}

impl Stream<'_> {
    async fn run(&mut self) -> Result<(), BoxError> {
        let mut channel = connect(self.shared, &self.settings.cluster).await?;
        tower::ServiceExt::ready(&mut channel).await?;
        let path = grpc_path(self.src, self.kinds, self.settings.delta)?;
        if self.settings.delta {
            self.drive::<Delta>(channel, path).await
        } else {
            self.drive::<Sotw>(channel, path).await
        }
    }

    /// Run the stream: the first subscriptions, then each response's ACK or NACK, and the
    /// subscriptions again whenever the interest changes.
    async fn drive<F: Flavor>(
        &mut self,
        channel: tonic::transport::Channel,
        path: http::uri::PathAndQuery,
    ) -> Result<(), BoxError> {
        // Subscriptions that change while a response is applied (CDS adds EDS names) are sent
        // when this fires, after the response's ACK.
        let mut interest_rx = self.shared.interest.subscribe();
        let (tx, rx) = mpsc::channel::<F::Req>(64);
        let metadata = self.metadata()?;
        for r in F::subscriptions(self) {
            self.send(&tx, r).await?;
        }
        let mut inbound =
            grpc::open::<F::Req, F::Resp>(channel, path, metadata, rx, MAX_RESPONSE_BYTES).await?;
        self.connected();
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let Some(resp) = msg? else { return Ok(()) };
                    self.got_response = true;
                    let ack = F::on_response(self, resp);
                    self.send(&tx, ack).await?;
                }
                changed = interest_rx.changed() => {
                    if changed.is_err() { return Ok(()) }
                    for r in F::subscriptions(self) {
                        self.send(&tx, r).await?;
                    }
                }
            }
        }
    }

    /// Send one request, within the rate limit.
    async fn send<R>(&mut self, tx: &mpsc::Sender<R>, req: R) -> Result<(), BoxError> {
        self.tokens.take(self.stats).await;
        tx.send(req).await.map_err(|_| "xds stream closed")?;
        Ok(())
    }

    fn connected(&self) {
        info!(source = %self.src, "xds stream open");
        if matches!(self.src, SourceKey::Ads) {
            self.stats.connected_state.set(1);
        }
    }

    /// `initial_metadata` as request headers (`-bin` values base64-encoded, as gRPC wants).
    fn metadata(&self) -> Result<http::HeaderMap, BoxError> {
        let mut req = tonic::Request::new(());
        for (k, v) in &self.settings.initial_metadata {
            if k.ends_with("-bin") {
                let key = tonic::metadata::BinaryMetadataKey::from_bytes(k.as_bytes())?;
                req.metadata_mut().insert_bin(
                    key,
                    tonic::metadata::BinaryMetadataValue::from_bytes(v.as_bytes()),
                );
            } else {
                let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_bytes())?;
                req.metadata_mut().insert(key, v.parse()?);
            }
        }
        Ok(req.into_parts().0.into_headers())
    }

    /// The node for the next request: always, or on the stream's first message only.
    fn node_for_request(&mut self) -> Option<Node> {
        if self.settings.set_node_on_first_message_only && self.node_sent {
            return None;
        }
        self.node_sent = true;
        Some((**self.node).clone())
    }

    fn interest(&self, kind: Kind) -> Option<Interest> {
        self.shared.with_store(|s| s.interest(self.src, kind))
    }

    // ---- state of the world ----

    fn on_sotw(&mut self, resp: DiscoveryResponse) -> DiscoveryRequest {
        let Some(kind) = Kind::from_type_url(&resp.type_url).filter(|k| self.kinds.contains(k))
        else {
            warn!(type_url = %resp.type_url, "xds: response of a type tern did not ask for");
            return DiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: Some(invalid(format!(
                    "unknown or unrequested type URL {}",
                    resp.type_url
                ))),
                ..Default::default()
            };
        };
        let update = Update {
            kind,
            source: self.src.clone(),
            version_info: resp.version_info.clone(),
            resources: resp
                .resources
                .into_iter()
                .map(|any| Incoming {
                    name: String::new(),
                    version: resp.version_info.clone(),
                    any,
                })
                .collect(),
            removed: Vec::new(),
            state_of_world: true,
        };
        let outcome = self.shared.with_store(|s| s.apply(update));
        let st = self.states.entry(kind).or_default();
        st.nonce = resp.nonce.clone();
        let mut req = DiscoveryRequest {
            type_url: resp.type_url,
            response_nonce: resp.nonce,
            ..Default::default()
        };
        match outcome.error {
            None => {
                debug!(kind = kind.short(), version = %resp.version_info, "xds: ACK");
                st.version = resp.version_info;
            }
            Some(msg) => {
                warn!(kind = kind.short(), version = %resp.version_info, error = %msg, "xds: NACK");
                req.error_detail = Some(invalid(msg));
            }
        }
        req.version_info = st.version.clone();
        req
    }

    /// Fill in names and node, and remember what the server was told.
    fn finish_sotw(&mut self, mut req: DiscoveryRequest) -> DiscoveryRequest {
        if let Some(kind) = Kind::from_type_url(&req.type_url)
            && let Some(want) = self.interest(kind)
        {
            req.resource_names = names(&want);
            self.states.entry(kind).or_default().sent = Some(want);
        }
        req.node = self.node_for_request();
        req
    }

    /// The first request of each type, or a changed subscription.
    fn subscriptions_sotw(&mut self) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for &kind in self.kinds {
            let want = self.interest(kind);
            let st = self.states.entry(kind).or_default();
            if want.is_none() || want == st.sent {
                continue;
            }
            let req = DiscoveryRequest {
                version_info: st.version.clone(),
                type_url: kind.type_url().to_string(),
                response_nonce: st.nonce.clone(),
                ..Default::default()
            };
            out.push(self.finish_sotw(req));
        }
        out
    }

    // ---- delta ----

    fn on_delta(&mut self, resp: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let Some(kind) = Kind::from_type_url(&resp.type_url).filter(|k| self.kinds.contains(k))
        else {
            warn!(type_url = %resp.type_url, "xds: delta response of a type tern did not ask for");
            return DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: Some(invalid(format!(
                    "unknown or unrequested type URL {}",
                    resp.type_url
                ))),
                ..Default::default()
            };
        };
        let mut resources = Vec::with_capacity(resp.resources.len());
        for r in resp.resources {
            // A resource without a body is a TTL heartbeat: nothing changes.
            if let Some(any) = r.resource {
                resources.push(Incoming {
                    name: r.name,
                    version: r.version,
                    any,
                });
            }
        }
        let versions: Vec<(String, String)> = resources
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        let update = Update {
            kind,
            source: self.src.clone(),
            version_info: resp.system_version_info.clone(),
            resources,
            removed: resp.removed_resources.clone(),
            state_of_world: false,
        };
        let outcome = self.shared.with_store(|s| s.apply(update));
        let st = self.states.entry(kind).or_default();
        st.nonce = resp.nonce.clone();
        if outcome.error.is_none() || kind.is_wildcard() {
            // LDS/CDS keep the valid resources of a partly rejected response.
            let accepted: BTreeSet<&String> = outcome.accepted.iter().collect();
            for (name, version) in versions {
                if accepted.contains(&name) || name.is_empty() {
                    st.resource_versions.insert(name, version);
                }
            }
            for n in &resp.removed_resources {
                st.resource_versions.remove(n);
            }
        }
        let mut req = DeltaDiscoveryRequest {
            type_url: resp.type_url,
            response_nonce: resp.nonce,
            ..Default::default()
        };
        match outcome.error {
            None => debug!(kind = kind.short(), version = %resp.system_version_info, "xds: ACK"),
            Some(msg) => {
                warn!(kind = kind.short(), error = %msg, "xds: NACK");
                req.error_detail = Some(invalid(msg));
            }
        }
        req
    }

    /// The first request of each type, or a changed subscription.
    fn subscriptions_delta(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let mut out = Vec::new();
        for &kind in self.kinds {
            let want = self.interest(kind);
            let st = self.states.entry(kind).or_default();
            if want == st.sent || (want.is_none() && st.sent.is_none()) {
                continue;
            }
            let mut req = DeltaDiscoveryRequest {
                type_url: kind.type_url().to_string(),
                ..Default::default()
            };
            let first = st.sent.is_none();
            let had: BTreeSet<String> = match &st.sent {
                Some(Interest::Names(n)) => (**n).clone(),
                _ => BTreeSet::new(),
            };
            match &want {
                Some(Interest::Wildcard) => {
                    if !first {
                        continue;
                    }
                    // An empty first subscription is the wildcard.
                }
                Some(Interest::Names(n)) => {
                    req.resource_names_subscribe = n.difference(&had).cloned().collect();
                    req.resource_names_unsubscribe = had.difference(n).cloned().collect();
                }
                None => req.resource_names_unsubscribe = had.iter().cloned().collect(),
            }
            for n in &req.resource_names_unsubscribe {
                st.resource_versions.remove(n);
            }
            if first {
                req.initial_resource_versions = st
                    .resource_versions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            } else if req.resource_names_subscribe.is_empty()
                && req.resource_names_unsubscribe.is_empty()
            {
                st.sent = want;
                continue;
            }
            st.sent = want;
            req.node = self.node_for_request();
            out.push(req);
        }
        out
    }
}

/// What differs between the two protocols on one stream.
trait Flavor {
    type Req: prost::Message + Send + 'static;
    type Resp: prost::Message + Default + Send + 'static;
    /// Apply a response; the ACK or NACK to send, ready to go.
    fn on_response(s: &mut Stream<'_>, resp: Self::Resp) -> Self::Req;
    /// The subscription requests due now, ready to go.
    fn subscriptions(s: &mut Stream<'_>) -> Vec<Self::Req>;
}

/// State of the world.
struct Sotw;

impl Flavor for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    fn on_response(s: &mut Stream<'_>, resp: DiscoveryResponse) -> DiscoveryRequest {
        let ack = s.on_sotw(resp);
        s.finish_sotw(ack)
    }
    fn subscriptions(s: &mut Stream<'_>) -> Vec<DiscoveryRequest> {
        s.subscriptions_sotw()
    }
}

/// Delta (incremental).
struct Delta;

impl Flavor for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    fn on_response(s: &mut Stream<'_>, resp: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let mut ack = s.on_delta(resp);
        ack.node = s.node_for_request();
        ack
    }
    fn subscriptions(s: &mut Stream<'_>) -> Vec<DeltaDiscoveryRequest> {
        s.subscriptions_delta()
    }
}

fn names(i: &Interest) -> Vec<String> {
    match i {
        Interest::Wildcard => Vec::new(),
        Interest::Names(n) => n.iter().cloned().collect(),
    }
}

fn invalid(message: String) -> Status {
    Status {
        code: 3, // INVALID_ARGUMENT
        message,
        details: Vec::new(),
    }
}

fn grpc_path(
    src: &SourceKey,
    kinds: &[Kind],
    delta: bool,
) -> Result<http::uri::PathAndQuery, BoxError> {
    let (service, method) = match (src, kinds) {
        (SourceKey::Ads, _) => (
            "discovery.v3.AggregatedDiscoveryService",
            "AggregatedResources",
        ),
        (_, [Kind::Cluster]) => ("cluster.v3.ClusterDiscoveryService", "Clusters"),
        (_, [Kind::Endpoint]) => ("endpoint.v3.EndpointDiscoveryService", "Endpoints"),
        (_, [Kind::Listener]) => ("listener.v3.ListenerDiscoveryService", "Listeners"),
        (_, [Kind::Route]) => ("route.v3.RouteDiscoveryService", "Routes"),
        (_, [Kind::Secret]) => ("secret.v3.SecretDiscoveryService", "Secrets"),
        _ => return Err("a non-aggregated stream carries exactly one type".into()),
    };
    let verb = if delta { "Delta" } else { "Stream" };
    Ok(format!("/envoy.service.{service}/{verb}{method}").parse()?)
}

/// Open an HTTP/2 channel to a host of the static cluster `name` (TCP or Unix socket).
async fn connect(shared: &Shared, name: &str) -> Result<tonic::transport::Channel, BoxError> {
    let cluster = shared
        .with_store(|s| s.static_cluster(name))
        .ok_or_else(|| format!("xds cluster {name} does not exist"))?;
    let ctx = crate::upstream::lb::LbContext {
        hash: None,
        excluded: &[],
    };
    let host = cluster
        .choose_host(&ctx)
        .ok_or_else(|| format!("xds cluster {name} has no host"))?;
    let address = host.address.clone();
    let timeout = cluster.pool.connect_timeout;
    let connector = tower::service_fn(move |_: http::Uri| {
        let address = address.clone();
        async move {
            crate::upstream::pool::connect(&address, timeout)
                .await
                .map(hyper_util::rt::TokioIo::new)
                .map_err(|e| Box::new(e) as BoxError)
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://xds.tern")
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_with_connector(connector)
        .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_MAX, "{d:?}");
            assert!(d >= Duration::from_millis(250), "{d:?}");
        }
        assert!(backoff(0) <= BACKOFF_BASE);
    }

    #[tokio::test]
    async fn rate_limit_delays_and_counts() {
        let store = crate::stats::Store::new();
        let stats = ControlPlaneStats::new(&store);
        // One token, refilled at 50 per second: the second request waits about 20 ms.
        let mut t = Tokens::new(Some((1, 50.0)));
        let start = tokio::time::Instant::now();
        t.take(&stats).await;
        assert_eq!(stats.rate_limit_enforced.value(), 0);
        t.take(&stats).await;
        assert_eq!(stats.rate_limit_enforced.value(), 1);
        assert!(
            start.elapsed() >= Duration::from_millis(15),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(stats.pending_requests.value(), 0);
        // No settings: never waits.
        let mut free = Tokens::new(None);
        for _ in 0..100 {
            free.take(&stats).await;
        }
        assert_eq!(stats.rate_limit_enforced.value(), 1);
    }

    #[test]
    fn paths() {
        let ads = grpc_path(&SourceKey::Ads, &Kind::ALL, true).unwrap();
        assert_eq!(
            ads.as_str(),
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
        );
        let sds = grpc_path(
            &SourceKey::Grpc {
                cluster: "sds-grpc".into(),
                delta: false,
            },
            &[Kind::Secret],
            false,
        )
        .unwrap();
        assert_eq!(
            sds.as_str(),
            "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
        );
    }
}
