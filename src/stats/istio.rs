//! Istio's standard metrics, as Istio's `istio.stats` HTTP and network filters export them:
//! `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`, `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`,
//! `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total` (and
//! `istio_build`), with Istio's labels in Istio's order, the overrides of
//! `stats.PluginConfig.metrics` / `definitions`, and Prometheus text exposition.
//!
//! [`IstioMetrics`] is the process-wide store (Istio's per-process context: one per node,
//! read from the bootstrap's `node.metadata`). Each `istio.stats` filter configuration compiles
//! into an [`IstioStats`] handle ([`IstioMetrics::filter`]) that the data path calls at the end
//! of a stream ([`IstioStats::record_http`]) or along a TCP connection
//! ([`IstioStats::tcp_connection`]). [`peer`] reads and writes the metadata-exchange headers.
//!
//! Like the rest of `stats`, this module depends on no other module of tern: the filter
//! configuration arrives already decoded as [`Settings`].

mod attrs;
pub mod exchange;
pub mod expr;
pub mod labels;
pub mod peer;
mod record;
mod registry;
mod render;
mod settings;
mod snapshot;

pub use attrs::NodeInfo;
pub use labels::{
    ClusterRef, ClusterService, DestinationService, IstioCluster, ListenerDirection, LocalLabels,
    Principals, Reporter, STANDARD_LABELS, destination_service,
};
pub use peer::{WorkloadMetadata, WorkloadType};
pub use record::{
    ConnectionInfo, HttpObservation, TcpConnection, TcpObservation, UpstreamInfo,
    http_to_grpc_status, is_grpc,
};
pub use registry::SeriesValue;
pub use render::{STAT_NAMESPACE, envoy_name};
pub use settings::{
    DefinitionKind, Issue, MetricDefinition, MetricOverride, STANDARD_METRICS, Settings,
};

use super::{Counter, DEFAULT_BUCKETS, Store};
use expr::ExprError;
use labels::{INTERNED, Label};
use registry::{Family, Kind, Registry};
use settings::Compiled;
use std::sync::Arc;
use std::time::Duration;

/// Limits of the store. Histograms use Envoy's default buckets (as Envoy without
/// `stats_config.histogram_bucket_settings`).
#[derive(Debug, Clone)]
pub struct Options {
    /// The most series (label sets, over every metric) kept; a new label set beyond it is not
    /// recorded and counts `tern.istio_stats.series_overflow`.
    pub max_series: usize,
    /// Longer label values (a Host header, peer metadata, an expression) are cut to this many
    /// bytes, counting `tern.istio_stats.label_truncated`.
    pub max_label_value_len: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_series: 20_000,
            max_label_value_len: 512,
        }
    }
}

/// The process-wide store of Istio's metrics.
#[derive(Debug)]
pub struct IstioMetrics {
    node: NodeInfo,
    local: LocalLabels,
    registry: Registry,
    options: Options,
    truncated: Counter,
    rotating: std::sync::atomic::AtomicBool,
}

impl IstioMetrics {
    /// A store for this node. `store` provides the overflow and truncation counters.
    pub fn new(node: NodeInfo, options: Options, store: &Store) -> Arc<Self> {
        let local = LocalLabels::from_node_metadata(&node.metadata);
        Arc::new(IstioMetrics {
            registry: Registry::new(
                options.max_series,
                store.counter("tern.istio_stats.series_overflow"),
            ),
            truncated: store.counter("tern.istio_stats.label_truncated"),
            node,
            local,
            options,
            rotating: Default::default(),
        })
    }

    /// This node's own labels.
    pub fn local_labels(&self) -> &LocalLabels {
        &self.local
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn family(&self, name: &str, kind: DefinitionKind) -> Arc<Family> {
        let kind = match kind {
            DefinitionKind::Counter => Kind::Counter,
            DefinitionKind::Gauge => Kind::Gauge,
            DefinitionKind::Histogram => Kind::Histogram(Arc::from(&DEFAULT_BUCKETS[..])),
        };
        self.registry.family(name, kind, false)
    }

    /// Compile one `istio.stats` filter configuration. Expressions tern cannot evaluate count
    /// `tern.config.not_enforced.istio.stats.expression` (their labels read `unknown`); ones
    /// that are not CEL are skipped as Istio skips them (logged). Sets `istio_build`.
    pub fn filter(self: &Arc<Self>, settings: &Settings, store: &Store) -> IstioStats {
        let compiled = settings::compile(settings, &|name, kind| self.family(name, kind));
        for issue in &compiled.issues {
            match &issue.error {
                ExprError::Unsupported(_) => store.not_enforced(
                    "istio.stats.expression",
                    "CEL beyond attribute paths, literals, operators and has/string/int/uint/size",
                ),
                ExprError::Invalid(_) => {}
            }
            tracing::warn!(metric = %issue.metric, label = %issue.what, error = %issue.error,
                "istio.stats: metric override expression not used as written");
        }
        let families = std::array::from_fn(|i| {
            let kind = if settings::is_histogram(i) {
                DefinitionKind::Histogram
            } else {
                DefinitionKind::Counter
            };
            self.family(&format!("istio_{}", STANDARD_METRICS[i]), kind)
        });
        self.record_build();
        IstioStats {
            inner: Arc::new(Shared {
                metrics: self.clone(),
                reporter: settings.reporter,
                reporter_label: settings.reporter.label().into(),
                listener_direction: match settings.direction {
                    ListenerDirection::Unspecified => 0,
                    ListenerDirection::Inbound => 1,
                    ListenerDirection::Outbound => 2,
                },
                disable_host_header_fallback: settings.disable_host_header_fallback,
                tcp_reporting_duration: settings.tcp_reporting_duration,
                compiled,
                families,
            }),
        }
    }

    /// `istio_build{component="proxy",tag="<ISTIO_VERSION>"} 1`.
    fn record_build(&self) {
        let fam = self.registry.family("istio_build", Kind::Gauge, true);
        let version = if self.local.istio_version.is_empty() {
            INTERNED.unknown.clone()
        } else {
            self.local.istio_version.clone()
        };
        let labels: Arc<[Label]> = Arc::from([
            (Arc::from("component"), Arc::from("proxy")),
            (Arc::from("tag"), version),
        ]);
        self.registry.set(&fam, &self.registry.key(labels), 1);
    }

    /// A label, its value cut to the length limit.
    pub(crate) fn label(
        &self,
        std_index: usize,
        value: &Arc<str>,
        name: Option<&Arc<str>>,
    ) -> Label {
        let name = match name {
            Some(n) => n.clone(),
            None => INTERNED.names.get(std_index).cloned().unwrap_or_default(),
        };
        let max = self.options.max_label_value_len;
        if value.len() <= max {
            return (name, value.clone());
        }
        self.truncated.inc();
        let mut cut = max;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        (name, Arc::from(&value[..cut]))
    }

    /// Every Istio metric in Prometheus text format 0.0.4, as `/stats/prometheus` writes
    /// them (the store's renderer, with `istiocustom` as a custom namespace).
    pub fn render_prometheus(&self, out: &mut String) {
        let mut snap = super::registry::Snapshot::default();
        let accept_all = super::StatsMatcher::default();
        self.add_to_snapshot(&mut snap, &super::StatsQuery::default(), &accept_all);
        let namespaces = [STAT_NAMESPACE.to_owned()];
        out.push_str(&super::prometheus::render(
            &snap,
            &super::TagProducer::default(),
            &namespaces,
        ));
    }

    /// How many series exist.
    pub fn series_count(&self) -> usize {
        self.registry.len()
    }

    /// Start a new generation (Istio's `rotation_interval`); returns its number.
    pub fn rotate(&self) -> u64 {
        self.registry.rotate()
    }

    /// Drop the series not recorded since generation `generation` began (after Istio's
    /// `graceful_deletion_interval`). `istio_build` stays. Returns how many were dropped.
    pub fn delete_generations_before(&self, generation: u64) -> usize {
        self.registry.delete_before(generation)
    }

    /// Start [`IstioMetrics::run_rotation`] on the current Tokio runtime, once per process
    /// (the first filter's intervals win, as Istio keeps one per-process context). Outside a
    /// runtime nothing starts.
    pub fn ensure_rotation(self: &Arc<Self>, rotation: Duration, grace: Duration) {
        use std::sync::atomic::Ordering;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.rotating.swap(true, Ordering::Relaxed) {
            rt.spawn(self.clone().run_rotation(rotation, grace));
        }
    }

    /// Rotate every `rotation` and drop, `grace` later, the series not recorded since; run it
    /// as a task when a filter sets `rotation_interval` (Istio requires `grace < rotation`).
    pub async fn run_rotation(self: Arc<Self>, rotation: Duration, grace: Duration) {
        let grace = grace.min(rotation);
        loop {
            tokio::time::sleep(rotation - grace).await;
            let generation = self.rotate();
            tokio::time::sleep(grace).await;
            let dropped = self.delete_generations_before(generation);
            tracing::debug!(dropped, "istio.stats: rotated");
        }
    }
}

#[derive(Debug)]
struct Shared {
    metrics: Arc<IstioMetrics>,
    reporter: Reporter,
    reporter_label: Arc<str>,
    listener_direction: i64,
    disable_host_header_fallback: bool,
    tcp_reporting_duration: Duration,
    compiled: Compiled,
    families: [Arc<Family>; 10],
}

/// One compiled `istio.stats` filter: what the data path records through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IstioStats {
    inner: Arc<Shared>,
}

impl IstioStats {
    /// The reporter of this filter.
    pub fn reporter_kind(&self) -> Reporter {
        self.inner.reporter
    }

    /// The store this filter records into.
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.inner.metrics
    }
}

#[cfg(test)]
mod tests;
