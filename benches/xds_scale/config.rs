//! The configuration, shaped like istiod's: templates decoded once, filled in per service.

use super::*;

pub(crate) const CLUSTER_YAML: &str = r#"
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
pub(crate) const ISTIO_TLS_YAML: &str = r#"
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
pub(crate) const CLA_YAML: &str = r#"
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

pub(crate) const VHOST_YAML: &str = r#"
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

pub(crate) fn listener_yaml(port: u16) -> String {
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
pub(crate) fn v3_fields() -> bool {
    env_usize("V3_FIELDS", 1) != 0
}

pub(crate) fn api_version_field() -> &'static str {
    if v3_fields() {
        ", resource_api_version: V3"
    } else {
        ""
    }
}

pub(crate) fn decode<M: prost::Message + Name + Default>(yaml: &str) -> anyhow::Result<M> {
    let yaml = yaml.replace("RESOURCE_API_VERSION", api_version_field());
    tern::config::decode_message_file::<M>(Path::new("x.yaml"), yaml.as_bytes())
        .map_err(|e| anyhow!("template {}: {e}", M::full_name()))
}

/// `svc-N` and `ns-M` of service N.
pub(crate) fn svc_ns(n: usize) -> (String, String) {
    (format!("svc-{n}"), format!("ns-{}", n % NAMESPACES))
}

pub(crate) fn cluster_name(n: usize) -> String {
    let (s, ns) = svc_ns(n);
    format!("outbound|80||{s}.{ns}.svc.cluster.local")
}

pub(crate) fn host_header(n: usize) -> String {
    let (s, ns) = svc_ns(n);
    format!("{s}.{ns}.svc.cluster.local")
}

/// Replace the `SVC` and `NS` placeholders.
pub(crate) fn fill(s: &str, svc: &str, ns: &str) -> String {
    s.replace("SVC", svc).replace("NS", ns)
}

pub(crate) fn fill_value(v: &mut pb::Value, svc: &str, ns: &str) {
    match &mut v.kind {
        Some(ValueKind::StringValue(s)) => *s = fill(s, svc, ns),
        Some(ValueKind::StructValue(st)) => fill_struct(st, svc, ns),
        Some(ValueKind::ListValue(l)) => l.values.iter_mut().for_each(|v| fill_value(v, svc, ns)),
        _ => {}
    }
}

pub(crate) fn fill_struct(st: &mut pb::Struct, svc: &str, ns: &str) {
    st.fields.values_mut().for_each(|v| fill_value(v, svc, ns));
}

pub(crate) fn fill_metadata(m: &mut Option<core_pb::Metadata>, svc: &str, ns: &str) {
    if let Some(m) = m {
        m.filter_metadata
            .values_mut()
            .for_each(|s| fill_struct(s, svc, ns));
    }
}

/// The templates, decoded once.
pub(crate) struct Templates {
    pub(crate) cluster: Cluster,
    /// `ISTIO_TLS=1`: Istio's transport socket matches.
    pub(crate) tls:
        Option<Vec<envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch>>,
    pub(crate) endpoint: LbEndpoint,
    pub(crate) locality: LocalityLbEndpoints,
    pub(crate) vhost: VirtualHost,
}

impl Templates {
    pub(crate) fn load() -> anyhow::Result<Templates> {
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
    pub(crate) fn cluster(&self, n: usize, generation: u32) -> Cluster {
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
    pub(crate) fn cla(
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

    pub(crate) fn vhost(&self, n: usize) -> VirtualHost {
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

    pub(crate) fn route_config(&self) -> RouteConfiguration {
        RouteConfiguration {
            name: "80".into(),
            virtual_hosts: (0..CLUSTERS).map(|n| self.vhost(n)).collect(),
            validate_clusters: Some(pb::BoolValue { value: false }),
            ..Default::default()
        }
    }
}

/// Set the SNI of the first transport socket match's `UpstreamTlsContext`.
pub(crate) fn set_sni(c: &mut Cluster, sni: &str) {
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

pub(crate) fn set_address(ep: &mut LbEndpoint, addr: SocketAddr) {
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
pub(crate) struct Encoded {
    pub(crate) clusters: Vec<(String, Any)>,
    pub(crate) endpoints: Vec<(String, Any)>,
    pub(crate) listeners: Vec<(String, Any)>,
    pub(crate) routes: Vec<(String, Any)>,
}

pub(crate) fn cds() -> String {
    Cluster::type_url()
}
pub(crate) fn eds() -> String {
    ClusterLoadAssignment::type_url()
}
pub(crate) fn lds() -> String {
    Listener::type_url()
}
pub(crate) fn rds() -> String {
    RouteConfiguration::type_url()
}

pub(crate) fn bytes_of(v: &[(String, Any)]) -> usize {
    v.iter().map(|(_, a)| a.value.len()).sum()
}

/// With `ISTIO_TLS=1` the clusters name SDS secrets `default` and `ROOTCA` (over ADS, waiting for
/// ever as Istio's do): the ADS server serves them, as pilot-agent would.
pub(crate) fn with_istio_secrets(mut b: Batch) -> Batch {
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
    pub(crate) fn batch(&self) -> Batch {
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

pub(crate) fn all_clusters(t: &Templates, generation: u32) -> Vec<(String, Any)> {
    (0..CLUSTERS)
        .map(|n| (cluster_name(n), ads::any(&t.cluster(n, generation))))
        .collect()
}

pub(crate) fn all_endpoints(
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
pub(crate) fn validate(
    t: &Templates,
    upstreams: &[SocketAddr],
    listener: &Listener,
) -> anyhow::Result<()> {
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
