//! xDS at Istio scale: tern (the release binary, a separate process) follows the test ADS
//! server (`tests/support/ads/`) through one push of 10,000 EDS clusters, 100,000 endpoints,
//! one listener and one route configuration with 10,000 virtual hosts, shaped like istiod's
//! outbound configuration. It measures:
//!
//! 1. the time from handing the batch to the ADS server to tern's ACK, per type (CDS, EDS, LDS,
//!    RDS);
//! 2. tern's resident memory before and after, and (in a second, staged tern) the bytes per
//!    cluster, per endpoint and per virtual host;
//! 3. a delta update that changes one cluster's endpoints (hand-off to ACK, repeated);
//! 4. request latency through tern to a real upstream while all of that happens: a quiet
//!    baseline, the one-cluster updates, and full re-pushes of all clusters and endpoints.
//!
//! `cargo bench --bench xds_scale` runs it with `DELTA_GRPC`; `XDS_MODE=sotw` (or `-- --sotw`)
//! with state of the world, `XDS_MODE=both` (or `-- --both`) runs both. The report is printed
//! and written to `benches/out/xds_scale.txt` (and `xds_scale-<mode>.txt`). See benches/README.md.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/ads/mod.rs"]
mod ads;

use ads::{AdsServer, Batch, XdsRequest};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::google::protobuf::{self as pb, Any, value::Kind as ValueKind};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use prost::Name;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ---- scale and knobs ----

const CLUSTERS: usize = 10_000;
const ENDPOINTS_PER_CLUSTER: usize = 10;
const NAMESPACES: usize = 100;
/// The cluster whose endpoints are the real upstream servers.
const HOT: usize = 4242;
/// How long any single step may take before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    /// One-cluster updates (`UPDATES`, default 50).
    updates: usize,
    /// Full re-pushes of every cluster and endpoint (`REPUSHES`, default 3).
    repushes: usize,
    /// Load generator connections (`CONNS`, default 16) and total rate (`LOAD_RPS`, 2000).
    conns: usize,
    rps: usize,
    /// Quiet baseline window (`BASELINE_S`, default 5 s).
    baseline: Duration,
    /// Run the staged memory run (`MEM_SPLIT`, default 1).
    mem_split: bool,
}

impl Knobs {
    fn from_env() -> Knobs {
        Knobs {
            updates: env_usize("UPDATES", 50),
            repushes: env_usize("REPUSHES", 3),
            conns: env_usize("CONNS", 16).max(1),
            rps: env_usize("LOAD_RPS", 2000).max(1),
            baseline: Duration::from_secs(env_usize("BASELINE_S", 5) as u64),
            mem_split: env_usize("MEM_SPLIT", 1) != 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Delta,
    Sotw,
}

impl Mode {
    fn api_type(self) -> &'static str {
        match self {
            Mode::Delta => "DELTA_GRPC",
            Mode::Sotw => "GRPC",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Mode::Delta => "delta",
            Mode::Sotw => "sotw",
        }
    }
}

fn modes() -> anyhow::Result<Vec<Mode>> {
    let mut m = std::env::var("XDS_MODE").unwrap_or_default();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--sotw" => m = "sotw".into(),
            "--delta" => m = "delta".into(),
            "--both" => m = "both".into(),
            _ => {} // `--bench` from cargo, filters
        }
    }
    Ok(match m.to_ascii_lowercase().as_str() {
        "" | "delta" | "delta_grpc" => vec![Mode::Delta],
        "sotw" | "grpc" => vec![Mode::Sotw],
        "both" => vec![Mode::Delta, Mode::Sotw],
        other => bail!("XDS_MODE={other}: use delta, sotw or both"),
    })
}

// ---- the configuration, shaped like istiod's ----

const CLUSTER_YAML: &str = r#"
name: outbound|80||SVC.NS.svc.cluster.local
type: EDS
eds_cluster_config:
  eds_config: {ads: {}, initial_fetch_timeout: 0sRESOURCE_API_VERSION}
  service_name: outbound|80||SVC.NS.svc.cluster.local
connect_timeout: 10s
lb_policy: LEAST_REQUEST
circuit_breakers:
  thresholds:
  - max_connections: 4294967295
    max_pending_requests: 4294967295
    max_requests: 4294967295
    max_retries: 4294967295
    track_remaining: true
common_lb_config:
  locality_weighted_lb_config: {}
metadata:
  filter_metadata:
    istio:
      services:
      - host: SVC.NS.svc.cluster.local
        name: SVC
        namespace: NS
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {idle_timeout: 3600s}
    use_downstream_protocol_config:
      http_protocol_options: {}
      http2_protocol_options: {}
"#;

/// Istio's `transport_socket_matches` (mTLS when the endpoint says `tlsMode: istio`, else
/// plaintext), added with `ISTIO_TLS=1`. tern decodes them and waits for the SDS secrets they
/// name (served with the clusters, see `with_istio_secrets`), but speaks plaintext until the TLS
/// work; by default they are left out, so the numbers do not depend on them.
const ISTIO_TLS_YAML: &str = r#"
name: tls
transport_socket_matches:
- name: tlsMode-istio
  match: {tlsMode: istio}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      common_tls_context:
        alpn_protocols: [istio-http/1.0, istio-http/1.1, istio-h2]
        tls_certificate_sds_secret_configs:
        - name: default
          sds_config: {ads: {}, initial_fetch_timeout: 0s}
        combined_validation_context:
          default_validation_context:
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {exact: "spiffe://cluster.local/ns/default/sa/default"}
          validation_context_sds_secret_config:
            name: ROOTCA
            sds_config: {ads: {}, initial_fetch_timeout: 0s}
      sni: outbound_.80_._.svc-0.ns-0.svc.cluster.local
- name: tlsMode-disabled
  match: {}
  transport_socket:
    name: envoy.transport_sockets.raw_buffer
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
"#;

/// One locality with one endpoint: the shape every endpoint is cloned from.
const CLA_YAML: &str = r#"
cluster_name: outbound|80||SVC.NS.svc.cluster.local
endpoints:
- locality: {region: us-east1, zone: us-east1-b}
  load_balancing_weight: 1
  lb_endpoints:
  - endpoint:
      address: {socket_address: {address: 10.0.0.1, port_value: 8080}}
    health_status: HEALTHY
    load_balancing_weight: 1
    metadata:
      filter_metadata:
        envoy.transport_socket_match: {tlsMode: istio}
        istio: {workload: "SVC-v1;NS;SVC;v1;Kubernetes"}
"#;

const VHOST_YAML: &str = r#"
name: SVC.NS.svc.cluster.local:80
domains:
- SVC.NS.svc.cluster.local
- SVC.NS.svc.cluster.local:80
- SVC.NS.svc
- SVC.NS
- SVC.NS:80
routes:
- name: default
  match: {prefix: /}
  route:
    cluster: outbound|80||SVC.NS.svc.cluster.local
    timeout: 0s
    retry_policy:
      retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
      num_retries: 2
      retry_host_predicate:
      - name: envoy.retry_host_predicates.previous_hosts
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
      host_selection_retry_max_attempts: 5
      retriable_status_codes: [503]
    max_stream_duration: {max_stream_duration: 0s, grpc_timeout_header_max: 0s}
  decorator: {operation: "SVC.NS.svc.cluster.local:80/*"}
include_request_attempt_count: true
"#;

fn listener_yaml(port: u16) -> String {
    let v3 = api_version_field();
    format!(
        r#"
name: 0.0.0.0_80
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
enable_reuse_port: false
traffic_direction: OUTBOUND
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: outbound_0.0.0.0_80
      rds:
        config_source: {{ads: {{}}, initial_fetch_timeout: 0s{v3}}}
        route_config_name: "80"
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
      use_remote_address: false
"#
    )
}

/// Istio sets `resource_api_version: V3` in every config source and `transport_api_version: V3`
/// in `ads_config`, and so does the bench; `V3_FIELDS=0` leaves them out (AUTO, which means V3).
fn v3_fields() -> bool {
    env_usize("V3_FIELDS", 1) != 0
}

fn api_version_field() -> &'static str {
    if v3_fields() {
        ", resource_api_version: V3"
    } else {
        ""
    }
}

fn decode<M: prost::Message + Name + Default>(yaml: &str) -> anyhow::Result<M> {
    let yaml = yaml.replace("RESOURCE_API_VERSION", api_version_field());
    tern::config::decode_message_file::<M>(Path::new("x.yaml"), yaml.as_bytes())
        .map_err(|e| anyhow!("template {}: {e}", M::full_name()))
}

/// `svc-N` and `ns-M` of service N.
fn svc_ns(n: usize) -> (String, String) {
    (format!("svc-{n}"), format!("ns-{}", n % NAMESPACES))
}

fn cluster_name(n: usize) -> String {
    let (s, ns) = svc_ns(n);
    format!("outbound|80||{s}.{ns}.svc.cluster.local")
}

fn host_header(n: usize) -> String {
    let (s, ns) = svc_ns(n);
    format!("{s}.{ns}.svc.cluster.local")
}

/// Replace the `SVC` and `NS` placeholders.
fn fill(s: &str, svc: &str, ns: &str) -> String {
    s.replace("SVC", svc).replace("NS", ns)
}

fn fill_value(v: &mut pb::Value, svc: &str, ns: &str) {
    match &mut v.kind {
        Some(ValueKind::StringValue(s)) => *s = fill(s, svc, ns),
        Some(ValueKind::StructValue(st)) => fill_struct(st, svc, ns),
        Some(ValueKind::ListValue(l)) => l.values.iter_mut().for_each(|v| fill_value(v, svc, ns)),
        _ => {}
    }
}

fn fill_struct(st: &mut pb::Struct, svc: &str, ns: &str) {
    st.fields.values_mut().for_each(|v| fill_value(v, svc, ns));
}

fn fill_metadata(m: &mut Option<core_pb::Metadata>, svc: &str, ns: &str) {
    if let Some(m) = m {
        m.filter_metadata
            .values_mut()
            .for_each(|s| fill_struct(s, svc, ns));
    }
}

/// The templates, decoded once.
struct Templates {
    cluster: Cluster,
    /// `ISTIO_TLS=1`: Istio's transport socket matches.
    tls: Option<Vec<envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch>>,
    endpoint: LbEndpoint,
    locality: LocalityLbEndpoints,
    vhost: VirtualHost,
}

impl Templates {
    fn load() -> anyhow::Result<Templates> {
        let cla: ClusterLoadAssignment = decode(CLA_YAML)?;
        let mut locality = cla.endpoints[0].clone();
        let endpoint = locality.lb_endpoints.remove(0);
        let tls = if env_usize("ISTIO_TLS", 0) != 0 {
            Some(decode::<Cluster>(ISTIO_TLS_YAML)?.transport_socket_matches)
        } else {
            None
        };
        Ok(Templates {
            tls,
            cluster: decode(CLUSTER_YAML)?,
            endpoint,
            locality,
            vhost: decode(VHOST_YAML)?,
        })
    }

    /// Cluster N; `generation` changes `connect_timeout` so a re-push recompiles it.
    fn cluster(&self, n: usize, generation: u32) -> Cluster {
        let (svc, ns) = svc_ns(n);
        let mut c = self.cluster.clone();
        c.name = fill(&c.name, &svc, &ns);
        if let Some(e) = &mut c.eds_cluster_config {
            e.service_name = fill(&e.service_name, &svc, &ns);
        }
        c.connect_timeout = Some(pb::Duration {
            seconds: 10 + i64::from(generation),
            nanos: 0,
        });
        fill_metadata(&mut c.metadata, &svc, &ns);
        if let Some(tls) = &self.tls {
            c.transport_socket_matches = tls.clone();
            set_sni(
                &mut c,
                &format!("outbound_.80_._.{svc}.{ns}.svc.cluster.local"),
            );
        }
        c
    }

    /// Cluster N's endpoints: 10, in three zones (4, 3, 3). The hot cluster's are the real
    /// upstream servers (and carry no `tlsMode`, as for a workload without a sidecar).
    /// `weight` is every endpoint's `load_balancing_weight`; `moved` gives endpoint 0 another
    /// address.
    fn cla(
        &self,
        n: usize,
        upstreams: &[SocketAddr],
        weight: u32,
        moved: u32,
    ) -> ClusterLoadAssignment {
        let (svc, ns) = svc_ns(n);
        let zones = [("us-east1-b", 4), ("us-east1-c", 3), ("us-east1-d", 3)];
        let mut endpoints = Vec::with_capacity(zones.len());
        let mut i = 0usize;
        for (zone, count) in zones {
            let mut loc = self.locality.clone();
            if let Some(l) = &mut loc.locality {
                l.zone = zone.to_owned();
            }
            loc.load_balancing_weight = Some(pb::UInt32Value {
                value: weight * count,
            });
            for _ in 0..count {
                let mut ep = self.endpoint.clone();
                let addr = if n == HOT {
                    upstreams[i % upstreams.len()]
                } else {
                    let idx = (n * ENDPOINTS_PER_CLUSTER + i) as u32;
                    let base = if i == 0 && moved > 0 {
                        0x0a80_0000 + moved
                    } else {
                        0x0a00_0000 + idx
                    };
                    SocketAddr::from((base.to_be_bytes(), 8080))
                };
                set_address(&mut ep, addr);
                ep.load_balancing_weight = Some(pb::UInt32Value { value: weight });
                fill_metadata(&mut ep.metadata, &svc, &ns);
                if n == HOT
                    && let Some(m) = &mut ep.metadata
                {
                    m.filter_metadata.remove("envoy.transport_socket_match");
                }
                loc.lb_endpoints.push(ep);
                i += 1;
            }
            endpoints.push(loc);
        }
        ClusterLoadAssignment {
            cluster_name: cluster_name(n),
            endpoints,
            ..Default::default()
        }
    }

    fn vhost(&self, n: usize) -> VirtualHost {
        let (svc, ns) = svc_ns(n);
        let mut v = self.vhost.clone();
        v.name = fill(&v.name, &svc, &ns);
        v.domains = v.domains.iter().map(|d| fill(d, &svc, &ns)).collect();
        for r in &mut v.routes {
            if let Some(Action::Route(ra)) = &mut r.action
                && let Some(ClusterSpecifier::Cluster(c)) = &mut ra.cluster_specifier
            {
                *c = fill(c, &svc, &ns);
            }
            if let Some(d) = &mut r.decorator {
                d.operation = fill(&d.operation, &svc, &ns);
            }
        }
        v
    }

    fn route_config(&self) -> RouteConfiguration {
        RouteConfiguration {
            name: "80".into(),
            virtual_hosts: (0..CLUSTERS).map(|n| self.vhost(n)).collect(),
            validate_clusters: Some(pb::BoolValue { value: false }),
            ..Default::default()
        }
    }
}

/// Set the SNI of the first transport socket match's `UpstreamTlsContext`.
fn set_sni(c: &mut Cluster, sni: &str) {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    use prost::Message as _;
    let Some(Some(ConfigType::TypedConfig(any))) = c
        .transport_socket_matches
        .first_mut()
        .and_then(|m| m.transport_socket.as_mut())
        .map(|t| t.config_type.as_mut())
    else {
        return;
    };
    if let Ok(mut ctx) = UpstreamTlsContext::decode(any.value.as_slice()) {
        ctx.sni = sni.to_owned();
        any.value = ctx.encode_to_vec();
    }
}

fn set_address(ep: &mut LbEndpoint, addr: SocketAddr) {
    use core_pb::{address::Address as A, socket_address::PortSpecifier};
    if let Some(HostIdentifier::Endpoint(e)) = &mut ep.host_identifier
        && let Some(core_pb::Address {
            address: Some(A::SocketAddress(sa)),
        }) = &mut e.address
    {
        sa.address = addr.ip().to_string();
        sa.port_specifier = Some(PortSpecifier::PortValue(u32::from(addr.port())));
    }
}

/// Resources encoded for the ADS server: (name, Any) per type.
#[derive(Clone, Default)]
struct Encoded {
    clusters: Vec<(String, Any)>,
    endpoints: Vec<(String, Any)>,
    listeners: Vec<(String, Any)>,
    routes: Vec<(String, Any)>,
}

fn cds() -> String {
    Cluster::type_url()
}
fn eds() -> String {
    ClusterLoadAssignment::type_url()
}
fn lds() -> String {
    Listener::type_url()
}
fn rds() -> String {
    RouteConfiguration::type_url()
}

fn bytes_of(v: &[(String, Any)]) -> usize {
    v.iter().map(|(_, a)| a.value.len()).sum()
}

/// With `ISTIO_TLS=1` the clusters name SDS secrets `default` and `ROOTCA` (over ADS, waiting for
/// ever as Istio's do): the ADS server serves them, as pilot-agent would.
fn with_istio_secrets(mut b: Batch) -> Batch {
    if env_usize("ISTIO_TLS", 0) != 0 {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
        for name in ["default", "ROOTCA"] {
            b = b.secret(&Secret {
                name: name.to_string(),
                ..Default::default()
            });
        }
    }
    b
}

impl Encoded {
    fn batch(&self) -> Batch {
        let mut b = with_istio_secrets(Batch::new());
        for (t, list) in [
            (cds(), &self.clusters),
            (eds(), &self.endpoints),
            (lds(), &self.listeners),
            (rds(), &self.routes),
        ] {
            for (n, a) in list {
                b = b.set(&t, n, a.clone());
            }
        }
        b
    }
}

fn all_clusters(t: &Templates, generation: u32) -> Vec<(String, Any)> {
    (0..CLUSTERS)
        .map(|n| (cluster_name(n), ads::any(&t.cluster(n, generation))))
        .collect()
}

fn all_endpoints(
    t: &Templates,
    upstreams: &[SocketAddr],
    weight: u32,
    moved: u32,
) -> Vec<(String, Any)> {
    (0..CLUSTERS)
        .map(|n| {
            (
                cluster_name(n),
                ads::any(&t.cla(n, upstreams, weight, moved)),
            )
        })
        .collect()
}

/// Check that tern compiles each shape, in-process, before anything is pushed.
fn validate(t: &Templates, upstreams: &[SocketAddr], listener: &Listener) -> anyhow::Result<()> {
    let stats = tern::stats::Store::new();
    tern::upstream::cluster::Cluster::compile(&t.cluster(HOT, 0), &stats)
        .map_err(|e| anyhow!("tern rejects the cluster shape: {e}"))?;
    for n in [0, HOT] {
        tern::upstream::load_assignment::priority_set_from_assignment(
            &t.cla(n, upstreams, 1, 0),
            false,
        )
        .map_err(|e| anyhow!("tern rejects the endpoints shape: {e}"))?;
    }
    let rc = RouteConfiguration {
        name: "80".into(),
        virtual_hosts: vec![t.vhost(0), t.vhost(HOT)],
        ..Default::default()
    };
    tern::router::RouteTable::compile(&rc)
        .map_err(|e| anyhow!("tern rejects the route shape: {e}"))?;
    tern::snapshot::compile_listener(listener, &stats)
        .map_err(|e| anyhow!("tern rejects the listener shape: {e}"))?;
    Ok(())
}

// ---- what tern sends: every request the ADS server records, with when we saw it ----

#[derive(Clone, Debug)]
struct Ev {
    at: Instant,
    type_url: String,
    nonce: String,
    /// SotW `version_info` (empty for delta).
    version: String,
    nack: Option<String>,
    /// SotW `resource_names` or delta `resource_names_subscribe`.
    names: usize,
}

impl Ev {
    fn of(r: &XdsRequest, at: Instant) -> Ev {
        match r {
            XdsRequest::Sotw(q) => Ev {
                at,
                type_url: q.type_url.clone(),
                nonce: q.response_nonce.clone(),
                version: q.version_info.clone(),
                nack: q.error_detail.as_ref().map(|e| e.message.clone()),
                names: q.resource_names.len(),
            },
            XdsRequest::Delta(q) => Ev {
                at,
                type_url: q.type_url.clone(),
                nonce: q.response_nonce.clone(),
                version: String::new(),
                nack: q.error_detail.as_ref().map(|e| e.message.clone()),
                names: q.resource_names_subscribe.len(),
            },
        }
    }
}

#[derive(Default)]
struct Log {
    events: Mutex<Vec<Ev>>,
    cv: Condvar,
}

impl Log {
    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The first event after `from` matching `pred`, with its index.
    fn wait(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&Ev) -> bool,
    ) -> anyhow::Result<(usize, Ev)> {
        self.wait_within(from, what, pred, STEP_TIMEOUT)
    }

    fn wait_within(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&Ev) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<(usize, Ev)> {
        let deadline = Instant::now() + timeout;
        let mut ev = self.events.lock().unwrap();
        loop {
            if let Some((i, e)) = ev.iter().enumerate().skip(from).find(|(_, e)| pred(e)) {
                return Ok((i, e.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                let tail: Vec<String> = ev
                    .iter()
                    .skip(from)
                    .map(|e| {
                        format!(
                            "{} nonce={} v={} nack={:?}",
                            short(&e.type_url),
                            e.nonce,
                            e.version,
                            e.nack
                        )
                    })
                    .collect();
                bail!("no {what} within {timeout:?}; requests since: {tail:?}");
            }
            ev = self.cv.wait_timeout(ev, deadline - now).unwrap().0;
        }
    }

    /// Wait for tern's ACK (or NACK: an error) of the response of `type_url` sent after
    /// request `from`; in SotW it must carry `version`.
    fn ack(&self, from: usize, type_url: &str, version: &str, mode: Mode) -> anyhow::Result<Ev> {
        let (_, e) = self.wait(from, &format!("{} ACK", short(type_url)), |e| {
            e.type_url == type_url
                && !e.nonce.is_empty()
                && (e.nack.is_some() || mode == Mode::Delta || e.version == version)
        })?;
        if let Some(m) = &e.nack {
            bail!("tern NACKed {}: {m}", short(type_url));
        }
        Ok(e)
    }

    /// The first subscription request (no nonce) of a type after `from`.
    fn subscription(&self, from: usize, type_url: &str) -> anyhow::Result<Ev> {
        Ok(self
            .wait(from, &format!("{} subscription", short(type_url)), |e| {
                e.type_url == type_url && e.nonce.is_empty()
            })?
            .1)
    }

    /// Wait until tern has sent nothing for `quiet`.
    fn quiesce(&self, quiet: Duration) {
        let start = Instant::now();
        loop {
            let last = self.events.lock().unwrap().last().map(|e| e.at);
            let since = last.map_or(start, |l| l.max(start));
            let wait = (since + quiet).saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return;
            }
            std::thread::sleep(wait);
        }
    }

    fn any_nack_since(&self, from: usize) -> Option<String> {
        let ev = self.events.lock().unwrap();
        ev.iter().skip(from).find_map(|e| {
            e.nack
                .as_ref()
                .map(|m| format!("{}: {m}", short(&e.type_url)))
        })
    }
}

fn short(type_url: &str) -> &'static str {
    if type_url == cds() {
        "CDS"
    } else if type_url == eds() {
        "EDS"
    } else if type_url == lds() {
        "LDS"
    } else if type_url == rds() {
        "RDS"
    } else {
        "?"
    }
}

/// Copy every request the server records into the log, as it is recorded.
async fn record(ads: Arc<AdsServer>, log: Arc<Log>) {
    let mut i = 0;
    loop {
        let r = ads
            .wait_for_since(i, |_| true, Duration::from_secs(86_400))
            .await;
        let ev = Ev::of(&r.request, r.at);
        log.events.lock().unwrap().push(ev);
        log.cv.notify_all();
        i += 1;
    }
}

// ---- tern as a process, and /proc ----

struct Tern {
    child: Child,
    pid: u32,
}

impl Tern {
    /// Start tern (`TERN_ARGS`: extra arguments; `TERN_WRAP`: a command to run it under, such
    /// as `perf record -g -o F --` or `heaptrack -o F`, in which case the measured process is
    /// the `tern` found among the wrapper's descendants).
    fn start(bin: &Path, bootstrap: &Path, log: &Path) -> anyhow::Result<Tern> {
        let log = std::fs::File::create(log)?;
        let wrap: Vec<String> = std::env::var("TERN_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let mut cmd = match wrap.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-c")
            .arg(bootstrap)
            .args(["--concurrency", "1", "--drain-time-s", "1"])
            .args(
                std::env::var("TERN_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut tern = Tern {
            pid: child.id(),
            child,
        };
        if !wrap.is_empty() {
            // On an error here, dropping `tern` stops the wrapper.
            tern.pid = find_descendant(tern.child.id(), "tern")?;
        }
        Ok(tern)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("tern exited: {status}");
        }
        Ok(())
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        // SIGTERM first, so a wrapper (perf, heaptrack) can write its data.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `root` itself or the first process named `comm` among its descendants (a wrapper that
/// execs, like `env`, becomes it); waits up to 10 s.
fn find_descendant(root: u32, comm: &str) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut parent = BTreeMap::new();
        let mut name = BTreeMap::new();
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let ppid = stat[r + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent.insert(pid, ppid);
                name.insert(pid, stat[l + 1..r].to_string());
            }
        }
        let found = name.iter().find(|(pid, n)| {
            let mut p = **pid;
            let mut ancestors = std::iter::from_fn(|| {
                p = *parent.get(&p)?;
                Some(p)
            })
            .take(16);
            *n == comm && (**pid == root || ancestors.any(|a| a == root))
        });
        if let Some((pid, _)) = found {
            return Ok(*pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no {comm} process under pid {root}")
}

/// utime + stime of a process (all threads), in clock ticks.
fn proc_ticks(pid: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are 12 and 13 after "pid (comm) ".
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// (busy, total, irq + softirq, steal) ticks of the whole machine.
fn machine_ticks() -> (u64, u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = g(0) + g(1) + g(2) + g(5) + g(6) + g(7);
    (busy, busy + g(3) + g(4), g(5) + g(6), g(7))
}

/// utime + stime and name of every process.
fn all_procs() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let f: Vec<&str> = stat[r + 2..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(pid, (stat[l + 1..r].to_string(), t(11) + t(12)));
    }
    out
}

fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU use over an interval: tern, this bench, and everything else on the machine.
#[derive(Clone)]
struct CpuSnap {
    at: Instant,
    tern: u64,
    bench: u64,
    busy: u64,
    total: u64,
    irq: u64,
    steal: u64,
    procs: BTreeMap<u32, (String, u64)>,
    tern_pid: u32,
    /// Time tern's data-path threads (all but `tern-xds`) spent runnable but waiting for a
    /// CPU, ns (`/proc/PID/task/TID/schedstat`, second field).
    dp_wait_ns: u64,
}

impl CpuSnap {
    fn take(tern_pid: u32) -> CpuSnap {
        let (busy, total, irq, steal) = machine_ticks();
        CpuSnap {
            at: Instant::now(),
            tern: proc_ticks(&tern_pid.to_string()),
            bench: proc_ticks("self"),
            busy,
            total,
            irq,
            steal,
            procs: all_procs(),
            tern_pid,
            dp_wait_ns: datapath_wait_ns(tern_pid),
        }
    }
}

fn datapath_wait_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut sum = 0;
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == "tern-xds" {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        sum += stat
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    sum
}

struct CpuUse {
    tern_ms: u64,
    bench_ms: u64,
    /// Busy share of the whole machine by other processes, %.
    other_pct: f64,
    /// tern's data-path threads waiting for a CPU, ms.
    dp_wait_ms: f64,
    /// What "other" is made of: irq + softirq and steal, % of the machine, and the other
    /// processes that used the most CPU (name, ms).
    irq_pct: f64,
    steal_pct: f64,
    top: Vec<(String, u64)>,
}

impl CpuUse {
    fn other(&self) -> String {
        let mut s = format!(
            "{:.0} % (irq+softirq {:.0} %, steal {:.0} %",
            self.other_pct, self.irq_pct, self.steal_pct
        );
        for (n, ms) in &self.top {
            let _ = write!(s, ", {n} {ms} ms");
        }
        s.push(')');
        s
    }
}

fn cpu_between(a: &CpuSnap, b: &CpuSnap, tck: u64) -> CpuUse {
    let ms = |t: u64| t * 1000 / tck;
    let total = (b.total - a.total).max(1) as f64;
    let other = (b.busy - a.busy).saturating_sub((b.tern - a.tern) + (b.bench - a.bench));
    let me = std::process::id();
    let mut top: Vec<(String, u64)> = b
        .procs
        .iter()
        .filter(|(pid, _)| **pid != me && **pid != b.tern_pid)
        .filter_map(|(pid, (name, t))| {
            let before = a.procs.get(pid).map_or(0, |(_, t0)| *t0);
            let d = t.saturating_sub(before);
            (d > 0).then(|| (name.clone(), ms(d)))
        })
        .collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    top.truncate(3);
    CpuUse {
        tern_ms: ms(b.tern - a.tern),
        bench_ms: ms(b.bench - a.bench),
        other_pct: other as f64 * 100.0 / total,
        dp_wait_ms: b.dp_wait_ns.saturating_sub(a.dp_wait_ns) as f64 / 1e6,
        irq_pct: (b.irq - a.irq) as f64 * 100.0 / total,
        steal_pct: (b.steal - a.steal) as f64 * 100.0 / total,
        top,
    }
}

/// Lower the priority of the calling thread (`ADS_NICE`, default 10): the ADS server stands
/// in for a control plane on another machine and should not take CPU from tern or the load.
fn nice_this_thread() {
    let nice = env_usize("ADS_NICE", 10);
    if nice == 0 {
        return;
    }
    if let Ok(link) = std::fs::read_link("/proc/thread-self")
        && let Some(tid) = link.file_name().and_then(|t| t.to_str())
    {
        let _ = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", tid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Ask tern's allocator to give free pages back (`malloc_trim(0)` through gdb), to tell
/// memory tern holds from memory glibc keeps after frees. `None` without gdb or with
/// `TRIM_PROBE=0`.
fn trim_probe(pid: u32) -> Option<()> {
    if env_usize("TRIM_PROBE", 1) == 0 {
        return None;
    }
    let ok = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "call (int) malloc_trim(0)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then_some(())
}

fn free_port() -> anyhow::Result<u16> {
    // Below the ephemeral range (shared/BENCHMARKING.md); the port is checked free by binding.
    let seed = std::process::id() as usize;
    for i in 0..2000 {
        let port = 20_000 + ((seed * 7919 + i * 104_729) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in 20000..32000")
}

// ---- upstream and load ----

async fn upstream_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            continue;
        };
        let _ = io.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello from the upstream\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), svc)
                .await;
        });
    }
}

#[derive(Clone, Copy)]
struct Sample {
    /// When the request was due (fixed schedule per connection).
    due: Instant,
    start: Instant,
    end: Instant,
    ok: bool,
}

#[derive(Default)]
struct LoadRecord {
    samples: Vec<Sample>,
    errors: BTreeMap<String, usize>,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn one_request(sender: &mut Sender, host: &str) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = hyper::Request::get("/")
        .header(hyper::header::HOST, host)
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    if status != hyper::StatusCode::OK {
        bail!("status {status}");
    }
    Ok(())
}

/// One keep-alive connection sending on a fixed schedule (at most one request in flight; a
/// late request delays the next, and `due` keeps the schedule it should have met).
async fn load_conn(
    addr: SocketAddr,
    host: String,
    period: Duration,
    phase: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    rec: Arc<Mutex<LoadRecord>>,
) {
    let mut sender: Option<Sender> = None;
    let mut due = tokio::time::Instant::now() + phase;
    while !*stop.borrow() {
        tokio::time::sleep_until(due).await;
        let this_due = due.into_std();
        due += period;
        let now = tokio::time::Instant::now();
        if due < now {
            due = now; // behind: send the next one at once, do not burst to catch up
        }
        let start = Instant::now();
        let result = async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = Some(connect(addr).await?);
            }
            let s = sender.as_mut().expect("connected");
            tokio::time::timeout(Duration::from_secs(5), one_request(s, &host))
                .await
                .map_err(|_| anyhow!("timeout"))?
        }
        .await;
        let end = Instant::now();
        let mut r = rec.lock().unwrap();
        if let Err(e) = &result {
            sender = None;
            *r.errors.entry(format!("{e:#}")).or_default() += 1;
        }
        r.samples.push(Sample {
            due: this_due,
            start,
            end,
            ok: result.is_ok(),
        });
    }
}

struct WindowStats {
    name: String,
    secs: f64,
    requests: usize,
    failed: usize,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// p99 of the latency from when the request was due (counts waiting behind a late one).
    p99_due: u64,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Requests in flight at any time during [start, end).
fn window_stats(name: &str, samples: &[Sample], start: Instant, end: Instant) -> WindowStats {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start < end && s.end > start)
        .collect();
    let mut lat: Vec<u64> = inside
        .iter()
        .map(|s| (s.end - s.start).as_micros() as u64)
        .collect();
    let mut due: Vec<u64> = inside
        .iter()
        .map(|s| (s.end - s.due).as_micros() as u64)
        .collect();
    lat.sort_unstable();
    due.sort_unstable();
    WindowStats {
        name: name.to_owned(),
        secs: (end - start).as_secs_f64(),
        requests: inside.len(),
        failed: inside.iter().filter(|s| !s.ok).count(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        p999: pct(&lat, 0.999),
        max: lat.last().copied().unwrap_or(0),
        p99_due: pct(&due, 0.99),
    }
}

// ---- one mode ----

struct Paths {
    out: PathBuf,
    tern: PathBuf,
}

fn paths() -> anyhow::Result<Paths> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("benches/out");
    std::fs::create_dir_all(&out)?;
    let tern = match std::env::var_os("TERN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = root.join("target/release/tern");
            if !p.exists() {
                eprintln!("xds_scale: {} missing; cargo build --release", p.display());
                let ok = Command::new(env!("CARGO"))
                    .args(["build", "--release", "--bin", "tern"])
                    .current_dir(&root)
                    .status()?
                    .success();
                if !ok {
                    bail!("cargo build --release failed");
                }
            }
            p
        }
    };
    if !tern.exists() {
        bail!("no tern binary at {}", tern.display());
    }
    Ok(Paths { out, tern })
}

/// The ADS server on a runtime of its own, with the request log.
struct Control {
    recorder: tokio::task::JoinHandle<()>,
    ads: Arc<AdsServer>,
    log: Arc<Log>,
    /// Runs the server; dropped last.
    _rt: tokio::runtime::Runtime,
}

impl Control {
    fn start() -> anyhow::Result<Control> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ads")
            .on_thread_start(nice_this_thread)
            .enable_all()
            .build()?;
        let ads = Arc::new(rt.block_on(AdsServer::tcp()));
        let log = Arc::new(Log::default());
        let recorder = rt.spawn(record(ads.clone(), log.clone()));
        Ok(Control {
            recorder,
            ads,
            log,
            _rt: rt,
        })
    }

    fn bootstrap(&self, mode: Mode) -> String {
        let mut dynamic = ads::dynamic_resources_yaml("xds-grpc", mode == Mode::Delta);
        if !v3_fields() {
            dynamic = dynamic
                .replace("    transport_api_version: V3\n", "")
                .replace(", resource_api_version: V3", "");
        }
        format!(
            "node:\n  id: sidecar~127.0.0.1~bench-0.default~default.svc.cluster.local\n  cluster: bench.default\nstatic_resources:\n  listeners: []\n  clusters:{}{}",
            self.ads.cluster_yaml("xds-grpc"),
            dynamic
        )
    }

    /// Start tern on this server and wait until it asked for clusters.
    fn start_tern(&self, mode: Mode, paths: &Paths, tag: &str) -> anyhow::Result<Tern> {
        let bootstrap = paths
            .out
            .join(format!("xds_scale-{tag}-{}.yaml", mode.short()));
        std::fs::write(&bootstrap, self.bootstrap(mode))?;
        let log = paths
            .out
            .join(format!("xds_scale-{tag}-{}.log", mode.short()));
        let tern = Tern::start(&paths.tern, &bootstrap, &log)?;
        self.log
            .wait_within(
                0,
                "CDS subscription",
                |e| e.type_url == cds(),
                Duration::from_secs(15),
            )
            .with_context(|| format!("tern did not connect; see {}", log.display()))?;
        Ok(tern)
    }

    /// Hand a batch to the server.
    fn push(&self, batch: Batch) -> Pushed {
        let mark = self.log.len();
        let resp_mark = self.ads.response_count();
        let t0 = Instant::now();
        self.ads.apply(batch);
        Pushed {
            t0,
            mark,
            resp_mark,
            v: self.ads.system_version().to_string(),
        }
    }

    /// When the server handed tern the response an ACK answers (sent after `p`).
    fn response_at(&self, p: &Pushed, ack: &Ev) -> anyhow::Result<Instant> {
        self.ads
            .responses_since(p.resp_mark)
            .iter()
            .find(|r| r.nonce() == ack.nonce)
            .map(|r| r.at)
            .ok_or_else(|| anyhow!("no response with nonce {}", ack.nonce))
    }
}

/// A batch handed to the server: when, the request and response marks, and its version.
struct Pushed {
    t0: Instant,
    mark: usize,
    resp_mark: usize,
    v: String,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// The staged run: bytes per cluster, per endpoint, per virtual host.
fn memory_split(
    mode: Mode,
    paths: &Paths,
    t: &Templates,
    upstreams: &[SocketAddr],
    listener: &Listener,
    report: &mut String,
) -> anyhow::Result<(f64, f64)> {
    let ctl = Control::start()?;
    let tern = ctl.start_tern(mode, paths, "mem")?;
    let settle = || {
        ctl.log.quiesce(Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(500));
    };
    settle();
    let (r0, _) = tern.rss()?;
    // 1. 10k clusters, then empty assignments so they are active with no hosts.
    let mut b = with_istio_secrets(Batch::new());
    for (n, a) in all_clusters(t, 0) {
        b = b.set(&cds(), &n, a);
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
    settle();
    let mut b = Batch::new();
    for n in 0..CLUSTERS {
        let cla = ClusterLoadAssignment {
            cluster_name: cluster_name(n),
            ..Default::default()
        };
        b = b.set(&eds(), &cla.cluster_name, ads::any(&cla));
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    settle();
    let (r1, _) = tern.rss()?;
    // 2. The 100k endpoints.
    let mut b = Batch::new();
    for (n, a) in all_endpoints(t, upstreams, 1, 0) {
        b = b.set(&eds(), &n, a);
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    settle();
    let (r2, _) = tern.rss()?;
    // 3. The listener and the 10k virtual hosts.
    let b = Batch::new()
        .set(&lds(), &listener.name, ads::any(listener))
        .set(&rds(), "80", ads::any(&t.route_config()));
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &rds(), &p.v, mode)?;
    settle();
    let (r3, hwm) = tern.rss()?;
    if let Some(n) = ctl.log.any_nack_since(0) {
        bail!("NACK in the staged run: {n}");
    }
    let per = |a: u64, b: u64, n: usize| (b.saturating_sub(a) * 1024) as f64 / n as f64;
    let endpoints = CLUSTERS * ENDPOINTS_PER_CLUSTER;
    let pc = per(r0, r1, CLUSTERS);
    let pe = per(r1, r2, endpoints);
    let pv = per(r2, r3, CLUSTERS);
    writeln!(
        report,
        "\n2b. Memory by kind (a second tern, pushed in stages, VmRSS after each settles)\n"
    )?;
    writeln!(report, "| stage | VmRSS | added | per item | aim | met |")?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    writeln!(
        report,
        "| connected, nothing pushed | {} | | | | |",
        mib(r0)
    )?;
    writeln!(
        report,
        "| + 10,000 clusters (active, no endpoints) | {} | {} | {:.0} B per cluster | < 4 KB | {} |",
        mib(r1),
        mib(r1.saturating_sub(r0)),
        pc,
        yes(pc < 4096.0)
    )?;
    writeln!(
        report,
        "| + 100,000 endpoints | {} | {} | {:.0} B per endpoint | < 200 B | {} |",
        mib(r2),
        mib(r2.saturating_sub(r1)),
        pe,
        yes(pe < 200.0)
    )?;
    writeln!(
        report,
        "| + listener, 10,000 virtual hosts | {} | {} | {:.0} B per vhost | | |",
        mib(r3),
        mib(r3.saturating_sub(r2)),
        pv
    )?;
    writeln!(report, "peak (VmHWM) {}", mib(hwm))?;
    drop(tern);
    Ok((pc, pe))
}

fn run_mode(mode: Mode, knobs: &Knobs, paths: &Paths) -> anyhow::Result<String> {
    let mut report = String::new();
    let tck = clk_tck();
    let t = Templates::load()?;

    // Upstream servers (the hot cluster's 10 endpoints) and the load generator's runtime.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let upstreams: Vec<SocketAddr> = load_rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..ENDPOINTS_PER_CLUSTER {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            v.push(l.local_addr()?);
            tokio::spawn(upstream_server(l));
        }
        anyhow::Ok(v)
    })?;
    let port = free_port()?;
    let listener: Listener = decode(&listener_yaml(port))?;
    validate(&t, &upstreams, &listener)?;

    let built = Instant::now();
    let full = Encoded {
        clusters: all_clusters(&t, 0),
        endpoints: all_endpoints(&t, &upstreams, 1, 0),
        listeners: vec![(listener.name.clone(), ads::any(&listener))],
        routes: vec![("80".into(), ads::any(&t.route_config()))],
    };
    let build_time = built.elapsed();

    writeln!(
        report,
        "## xds_scale, {} ({}), {} clusters, {} endpoints, {} virtual hosts\n",
        mode.api_type(),
        if mode == Mode::Delta {
            "incremental"
        } else {
            "state of the world"
        },
        CLUSTERS,
        CLUSTERS * ENDPOINTS_PER_CLUSTER,
        CLUSTERS
    )?;
    writeln!(
        report,
        "tern: {}; payload: CDS {:.1} MB, EDS {:.1} MB, LDS {} B, RDS {:.1} MB (encoded, built in {})",
        paths.tern.display(),
        bytes_of(&full.clusters) as f64 / 1e6,
        bytes_of(&full.endpoints) as f64 / 1e6,
        bytes_of(&full.listeners),
        bytes_of(&full.routes) as f64 / 1e6,
        ms(build_time)
    )?;
    writeln!(
        report,
        "shape: istiod's outbound clusters {} transport_socket_matches, without upstream filters; \
         config sources {} resource_api_version/transport_api_version V3",
        if t.tls.is_some() { "with" } else { "without" },
        if v3_fields() { "with" } else { "without" }
    )?;

    // ---- 1. the initial push ----
    let ctl = Control::start()?;
    let mut tern = ctl.start_tern(mode, paths, "main")?;
    ctl.log.quiesce(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, _) = tern.rss()?;
    let batch = full.batch();
    let cpu0 = CpuSnap::take(tern.pid);
    let p = ctl.push(batch);
    let t0 = p.t0;
    let cds_ack = ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
    let eds_sub = ctl.log.subscription(p.mark, &eds())?;
    let eds_ack = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    let lds_sub = ctl.log.subscription(p.mark, &lds())?;
    let lds_ack = ctl.log.ack(p.mark, &lds(), &p.v, mode)?;
    let rds_sub = ctl.log.subscription(p.mark, &rds())?;
    let rds_ack = ctl.log.ack(p.mark, &rds(), &p.v, mode)?;
    let cpu1 = CpuSnap::take(tern.pid);
    tern.check_alive()?;
    ctl.log.quiesce(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, hwm1) = tern.rss()?;
    let push_cpu = cpu_between(&cpu0, &cpu1, tck);

    writeln!(
        report,
        "\n1. Initial push: one batch handed to the ADS server → tern's ACK received by the server\n"
    )?;
    writeln!(
        report,
        "A response is due at the hand-off (CDS) or when tern subscribes (EDS after CDS, LDS once the \
         clusters are warm, RDS after LDS). \"server\" is the test ADS server building the response \
         (due → handed to gRPC); \"tern\" is response handed to gRPC → ACK received (encode, \
         loopback, tern's decode and apply, the ACK back).\n"
    )?;
    writeln!(
        report,
        "| type | resources | server | tern | due → ACK | hand-off → ACK | due → ACK ≤ 1 s |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |")?;
    let mut slowest = Duration::ZERO;
    for (name, what, sub, ack) in [
        ("CDS", format!("{CLUSTERS} clusters"), None, &cds_ack),
        (
            "EDS",
            format!(
                "{CLUSTERS} assignments, {} endpoints ({} names subscribed)",
                CLUSTERS * ENDPOINTS_PER_CLUSTER,
                eds_sub.names
            ),
            Some(&eds_sub),
            &eds_ack,
        ),
        ("LDS", "1 listener".into(), Some(&lds_sub), &lds_ack),
        (
            "RDS",
            format!("1 route configuration, {CLUSTERS} vhosts"),
            Some(&rds_sub),
            &rds_ack,
        ),
    ] {
        let due = sub.map_or(t0, |s: &Ev| s.at);
        let sent = ctl.response_at(&p, ack)?;
        let total = ack.at.saturating_duration_since(due);
        slowest = slowest.max(total);
        writeln!(
            report,
            "| {name} | {what} | {} | {} | {} | {} | {} |",
            ms(sent.saturating_duration_since(due)),
            ms(ack.at.saturating_duration_since(sent)),
            ms(total),
            ms(ack.at - t0),
            yes(total <= Duration::from_secs(1))
        )?;
    }
    writeln!(
        report,
        "\nWhole push, hand-off → last ACK: {}; tern CPU {} ms, bench (ADS server) CPU {} ms, \
         rest of the machine {}.",
        ms(rds_ack.at - t0),
        push_cpu.tern_ms,
        push_cpu.bench_ms,
        push_cpu.other()
    )?;

    // ---- 2. memory ----
    let pc = (rss1.saturating_sub(rss0) * 1024) as f64 / CLUSTERS as f64;
    writeln!(report, "\n2. tern's memory (VmRSS)\n")?;
    writeln!(
        report,
        "| before the push | after everything is ACKed | added | added per cluster (all kinds) | peak VmHWM | target total < 100 MiB | met |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |")?;
    writeln!(
        report,
        "| {} | {} | {} | {:.0} B | {} | | {} |",
        mib(rss0),
        mib(rss1),
        mib(rss1.saturating_sub(rss0)),
        pc,
        mib(hwm1),
        yes(rss1 < 100 * 1024)
    )?;

    // ---- load, for the rest of the run ----
    let lb = SocketAddr::from(([127, 0, 0, 1], port));
    let rec = Arc::new(Mutex::new(LoadRecord::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let period = Duration::from_secs_f64(knobs.conns as f64 / knobs.rps as f64);
    let load_started = Instant::now();
    let conns: Vec<_> = (0..knobs.conns)
        .map(|i| {
            let phase = period.mul_f64(i as f64 / knobs.conns as f64);
            load_rt.spawn(load_conn(
                lb,
                host_header(HOT),
                period,
                phase,
                stop_rx.clone(),
                rec.clone(),
            ))
        })
        .collect();
    let mut windows: Vec<(String, Instant, Instant, Option<CpuUse>)> = Vec::new();
    std::thread::sleep(Duration::from_secs(1)); // warm-up: connections open
    let a = CpuSnap::take(tern.pid);
    std::thread::sleep(knobs.baseline);
    let b = CpuSnap::take(tern.pid);
    windows.push((
        "quiet baseline".into(),
        a.at,
        b.at,
        Some(cpu_between(&a, &b, tck)),
    ));

    // ---- 3. one cluster's endpoints, repeatedly ----
    // (hand-off → ACK, server share, tern share)
    let mut times: Vec<(Duration, Duration, Duration)> = Vec::with_capacity(knobs.updates);
    let a = CpuSnap::take(tern.pid);
    for i in 0..knobs.updates {
        // Even: the hot cluster's weights (same addresses, pools kept); odd: another cluster
        // gets a new address for one endpoint.
        let (n, cla) = if i % 2 == 0 {
            (HOT, t.cla(HOT, &upstreams, 2 + (i as u32 / 2) % 3, 0))
        } else {
            let n = (i * 7_919 + 13) % CLUSTERS;
            let n = if n == HOT { n + 1 } else { n };
            (n, t.cla(n, &upstreams, 1, i as u32 + 1))
        };
        let b = Batch::new().set(&eds(), &cluster_name(n), ads::any(&cla));
        let p = ctl.push(b);
        let ack = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
        let sent = ctl.response_at(&p, &ack)?;
        times.push((
            ack.at - p.t0,
            sent.saturating_duration_since(p.t0),
            ack.at.saturating_duration_since(sent),
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = CpuSnap::take(tern.pid);
    let label = match mode {
        Mode::Delta => "one-cluster EDS updates",
        Mode::Sotw => "one-cluster EDS changes (full 10k EDS pushes)",
    };
    windows.push((label.into(), a.at, b.at, Some(cpu_between(&a, &b, tck))));
    let stat = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = times.iter().map(f).collect();
        v.sort();
        let at = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        (at(0.5), at(0.9), v.last().copied().unwrap_or_default())
    };
    let (med, p90, max) = stat(|t| t.0);
    let (smed, sp90, smax) = stat(|t| t.1);
    let (tmed, tp90, tmax) = stat(|t| t.2);
    let five = Duration::from_millis(5);
    writeln!(
        report,
        "\n3. One cluster's endpoints change: {} updates, alternately the loaded cluster's weights \
         and another cluster's endpoint address{}\n",
        times.len(),
        if mode == Mode::Sotw {
            " (SotW: each is an EDS response with all 10,000 assignments)"
        } else {
            ""
        }
    )?;
    writeln!(
        report,
        "| | median | p90 | max | median ≤ 5 ms | max ≤ 5 ms |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    for (what, (a, b, c)) in [
        ("hand-off → ACK received", (med, p90, max)),
        (
            "server: hand-off → response handed to gRPC",
            (smed, sp90, smax),
        ),
        ("tern: response → ACK received", (tmed, tp90, tmax)),
    ] {
        writeln!(
            report,
            "| {what} | {} | {} | {} | {} | {} |",
            ms(a),
            ms(b),
            ms(c),
            yes(a <= five),
            yes(c <= five)
        )?;
    }

    // ---- 4b. full re-pushes: every cluster and every assignment changes ----
    let mut repush = Vec::new();
    for r in 0..knobs.repushes {
        std::thread::sleep(Duration::from_secs(1));
        let g = r as u32 + 1;
        let mut b = Batch::new();
        for (n, a) in all_clusters(&t, g) {
            b = b.set(&cds(), &n, a);
        }
        for (n, a) in all_endpoints(&t, &upstreams, 1 + g, 0) {
            b = b.set(&eds(), &n, a);
        }
        let a = CpuSnap::take(tern.pid);
        let p = ctl.push(b);
        let c = ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
        let e = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
        let b = CpuSnap::take(tern.pid);
        let cpu = cpu_between(&a, &b, tck);
        let (cs, es) = (ctl.response_at(&p, &c)?, ctl.response_at(&p, &e)?);
        repush.push((
            c.at - p.t0,
            c.at.saturating_duration_since(cs),
            e.at - p.t0,
            e.at.saturating_duration_since(es),
            cpu.tern_ms,
        ));
        windows.push((format!("full re-push {}", r + 1), p.t0, e.at, Some(cpu)));
    }
    std::thread::sleep(Duration::from_secs(1));
    let a = CpuSnap::take(tern.pid);
    std::thread::sleep(Duration::from_secs(2));
    let b = CpuSnap::take(tern.pid);
    windows.push((
        "quiet after".into(),
        a.at,
        b.at,
        Some(cpu_between(&a, &b, tck)),
    ));
    let _ = stop_tx.send(true);
    load_rt.block_on(async {
        for c in conns {
            let _ = tokio::time::timeout(Duration::from_secs(6), c).await;
        }
    });
    tern.check_alive()?;
    let (rss_end, hwm_end) = tern.rss()?;
    let trimmed = match trim_probe(tern.pid) {
        Some(()) => Some(tern.rss()?.0),
        None => None,
    };
    if let Some(n) = ctl.log.any_nack_since(0) {
        bail!("tern NACKed something: {n}");
    }

    writeln!(
        report,
        "\n3b. Full re-push of all 10,000 clusters (connect_timeout changed: every cluster \
         recompiles) and all 10,000 assignments (weights changed), one batch\n"
    )?;
    writeln!(
        report,
        "| re-push | hand-off → CDS ACK | of which tern | hand-off → EDS ACK | of which tern (EDS) | tern CPU |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    for (i, (c, ct, e, et, cpu)) in repush.iter().enumerate() {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {cpu} ms |",
            i + 1,
            ms(*c),
            ms(*ct),
            ms(*e),
            ms(*et)
        )?;
    }
    writeln!(
        report,
        "\nVmRSS at the end: {} (peak VmHWM {}){}",
        mib(rss_end),
        mib(hwm_end),
        trimmed.map_or(String::new(), |t| format!(
            "; {} after malloc_trim(0) called in tern through gdb (free heap glibc had kept)",
            mib(t)
        ))
    )?;

    // ---- 4. latency through tern ----
    let rec = rec.lock().unwrap();
    let total = rec.samples.len();
    let failed = rec.samples.iter().filter(|s| !s.ok).count();
    writeln!(
        report,
        "\n4. Requests through tern during all this ({} connections, {} requests/s in total, \
         GET / with Host {} to the cluster with the real upstream; latency = request sent → \
         response read, µs; \"p99 from due\" counts from when the request was scheduled)\n",
        knobs.conns,
        knobs.rps,
        host_header(HOT)
    )?;
    writeln!(
        report,
        "| window | length | requests | failed | p50 | p99 | p99.9 | max | p99 from due | tern CPU | tern data path waiting for a CPU | other load | p99 < 5 ms |"
    )?;
    writeln!(
        report,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let mut swap_p99_ok = true;
    let mut merged: BTreeMap<String, Vec<(Instant, Instant)>> = BTreeMap::new();
    for (name, a, b, cpu) in &windows {
        let s = window_stats(name, &rec.samples, *a, *b);
        let swap = name != "quiet baseline" && name != "quiet after";
        if swap {
            swap_p99_ok &= s.p99 < 5000;
            let key = if name.starts_with("full re-push") {
                "all full re-pushes".to_string()
            } else {
                name.clone()
            };
            merged.entry(key).or_default().push((*a, *b));
        }
        let cpu = cpu.as_ref();
        writeln!(
            report,
            "| {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.secs,
            s.requests,
            s.failed,
            s.p50,
            s.p99,
            s.p999,
            s.max,
            s.p99_due,
            cpu.map_or(String::new(), |c| format!("{} ms", c.tern_ms)),
            cpu.map_or(String::new(), |c| format!("{:.1} ms", c.dp_wait_ms)),
            cpu.map_or(String::new(), CpuUse::other),
            if swap { yes(s.p99 < 5000) } else { "" }
        )?;
    }
    // All re-pushes together, for a p99 over more samples.
    if let Some(spans) = merged.get("all full re-pushes")
        && spans.len() > 1
    {
        let inside: Vec<Sample> = rec
            .samples
            .iter()
            .filter(|s| spans.iter().any(|(a, b)| s.start < *b && s.end > *a))
            .copied()
            .collect();
        let (first, last) = (
            inside.iter().map(|s| s.start).min(),
            inside.iter().map(|s| s.end).max(),
        );
        if let (Some(a), Some(b)) = (first, last) {
            let mut s = window_stats("all full re-pushes", &inside, a, b);
            s.secs = spans.iter().map(|(a, b)| (*b - *a).as_secs_f64()).sum();
            writeln!(
                report,
                "| {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | | | | {} |",
                s.name,
                s.secs,
                s.requests,
                s.failed,
                s.p50,
                s.p99,
                s.p999,
                s.max,
                s.p99_due,
                yes(s.p99 < 5000)
            )?;
            swap_p99_ok &= s.p99 < 5000;
        }
    }
    writeln!(
        report,
        "\nAll requests: {total} over {:.1} s, {failed} failed.",
        (Instant::now() - load_started).as_secs_f64()
    )?;
    for (e, n) in &rec.errors {
        writeln!(report, "  failure ×{n}: {e}")?;
    }

    drop(rec);
    drop(tern);
    drop(ctl);

    // ---- 2b. the staged memory run ----
    let split = if knobs.mem_split {
        Some(memory_split(
            mode,
            paths,
            &t,
            &upstreams,
            &listener,
            &mut report,
        )?)
    } else {
        None
    };

    // ---- summary ----
    let ack_max = slowest;
    writeln!(report, "\nTargets ({}):", mode.api_type())?;
    writeln!(
        report,
        "- each type applied within 1 s of its response being due: {} (slowest {})",
        yes(ack_max <= Duration::from_secs(1)),
        ms(ack_max)
    )?;
    writeln!(
        report,
        "- RSS < 100 MiB with the config loaded: {} ({})",
        yes(rss1 < 100 * 1024),
        mib(rss1)
    )?;
    writeln!(
        report,
        "- one-cluster update ≤ 5 ms, hand-off → ACK: median {} ({}), max {} ({}); \
         tern's share alone: median {} ({}), max {} ({})",
        yes(med <= five),
        ms(med),
        yes(max <= five),
        ms(max),
        yes(tmed <= five),
        ms(tmed),
        yes(tmax <= five),
        ms(tmax)
    )?;
    writeln!(
        report,
        "- p99 < 5 ms during swaps: {}; failed requests: {failed}",
        yes(swap_p99_ok)
    )?;
    if let Some((pc, pe)) = split {
        writeln!(
            report,
            "- aim < 4 KB per cluster: {} ({pc:.0} B); aim < 200 B per endpoint: {} ({pe:.0} B)",
            yes(pc < 4096.0),
            yes(pe < 200.0)
        )?;
    }
    Ok(report)
}

fn main() -> anyhow::Result<()> {
    let modes = modes()?;
    let knobs = Knobs::from_env();
    let paths = paths()?;
    let started = chrono_like_now();
    let mut all = format!(
        "xds_scale ({started}), {} CPUs, updates={} repushes={} conns={} rps={}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        knobs.updates,
        knobs.repushes,
        knobs.conns,
        knobs.rps
    );
    for mode in modes {
        eprintln!("xds_scale: running {}", mode.api_type());
        let r = run_mode(mode, &knobs, &paths)?;
        std::fs::write(
            paths.out.join(format!("xds_scale-{}.txt", mode.short())),
            &r,
        )?;
        println!("{r}");
        all.push('\n');
        all.push_str(&r);
    }
    std::fs::write(paths.out.join("xds_scale.txt"), &all)?;
    eprintln!(
        "xds_scale: report written to {}",
        paths.out.join("xds_scale.txt").display()
    );
    Ok(())
}

/// UTC date and time from `date`, for the report header.
fn chrono_like_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
