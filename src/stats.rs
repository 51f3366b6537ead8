//! Counters, gauges and histograms with Envoy's names, cheap enough for the data path, and the
//! admin renderings of them (`/stats` text and JSON, `/stats/prometheus`).
//!
//! A stat is looked up by name once, when the configuration that uses it is compiled; the
//! request path only touches the returned handle (atomics, no lock, no formatting, no lookup).
//! The stats of one cluster live in one block (one allocation, one registry entry): a large
//! mesh has tens of thousands of clusters. Tag extraction (`stats_config.stats_tags` and
//! Envoy's default extractors) and `stats_config.stats_matcher` apply when stats are listed.
//! This module uses no other module of the crate but the protocol layer's query-string parser.

mod block;
mod histogram;
pub mod istio;
mod matcher;
mod prometheus;
mod registry;
mod render;
mod tags;
#[cfg(test)]
mod tests;

pub use block::{BlockSpec, BlockStats, CounterRef, GaugeRef, HistogramRef, StatusCodes};
pub use histogram::{DEFAULT_BUCKETS, Histogram, HistogramStatistics, SUPPORTED_QUANTILES, Unit};
pub use matcher::StatsMatcher;
pub(crate) use render::fmt_g;
pub use render::{BucketsMode, Format, StatsQuery, StatsType};
pub use tags::{Tag, TagProducer};

pub(crate) use block::block_stats;

use block::BlockCells;
use registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The top bit of a counter cell: set by `add(0)`, so that a counter written with nothing is
/// still "used" (Envoy's `usedonly`) while its value stays 0.
const USED_BIT: u64 = 1 << 63;

/// A monotonically increasing counter: one cell of a block of stats that share an allocation
/// (the stats of one cluster are one block), or a block of one.
#[derive(Debug, Clone)]
pub struct Counter {
    cells: Arc<BlockCells>,
    index: u32,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            cells: Arc::new(BlockCells::counters_only(1)),
            index: 0,
        }
    }
}

impl Counter {
    fn cell(&self) -> &AtomicU64 {
        &self.cells.counters[self.index as usize]
    }
    /// Add one.
    pub fn inc(&self) {
        self.cell().fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n` (0 marks the counter used, as Envoy does).
    pub fn add(&self, n: u64) {
        counter_add(self.cell(), n);
    }
    /// The current value.
    pub fn value(&self) -> u64 {
        self.cell().load(Ordering::Relaxed) & !USED_BIT
    }
    /// Whether the counter was ever written (`usedonly`).
    pub fn used(&self) -> bool {
        self.cell().load(Ordering::Relaxed) != 0
    }
}

fn counter_add(cell: &AtomicU64, n: u64) {
    if n == 0 {
        cell.fetch_or(USED_BIT, Ordering::Relaxed);
    } else {
        cell.fetch_add(n, Ordering::Relaxed);
    }
}

/// The value and used flag of a counter cell.
fn counter_read(cell: &AtomicU64) -> (u64, bool) {
    let v = cell.load(Ordering::Relaxed);
    (v & !USED_BIT, v != 0)
}

/// A gauge cell: the value and whether it was ever written (a gauge set to 0 is used:
/// pilot-agent reads `server.state` 0 with `usedonly`).
#[derive(Debug, Default)]
pub(crate) struct GaugeCell {
    value: AtomicI64,
    used: AtomicBool,
}

impl GaugeCell {
    fn mark(&self) {
        // A load first: once used, writers do not dirty the flag's cache line again.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }
    fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.mark();
    }
    fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
        self.mark();
    }
    fn read(&self) -> (i64, bool) {
        (
            self.value.load(Ordering::Relaxed),
            self.used.load(Ordering::Relaxed),
        )
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone)]
pub struct Gauge {
    cells: Arc<BlockCells>,
    index: u32,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge {
            cells: Arc::new(BlockCells::new(0, 1, &[], false)),
            index: 0,
        }
    }
}

impl Gauge {
    fn cell(&self) -> &GaugeCell {
        &self.cells.gauges[self.index as usize]
    }
    /// Add one.
    pub fn inc(&self) {
        self.cell().add(1);
    }
    /// Subtract one.
    pub fn dec(&self) {
        self.cell().add(-1);
    }
    /// Add `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.cell().add(n);
    }
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.cell().set(v);
    }
    /// The current value.
    pub fn value(&self) -> i64 {
        self.cell().read().0
    }
    /// Whether the gauge was ever written (`usedonly`).
    pub fn used(&self) -> bool {
        self.cell().read().1
    }
}

/// The bootstrap's `stats_config`, compiled: tag extraction and the stats matcher.
#[derive(Debug, Default)]
pub struct StatsSettings {
    /// `stats_tags` and `use_all_default_tags`.
    pub tags: TagProducer,
    /// `stats_matcher`.
    pub matcher: StatsMatcher,
}

/// Why a `stats_config` was refused.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StatsConfigError {
    /// The field of `stats_config` at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl StatsConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl StatsSettings {
    /// Compile the bootstrap's `stats_config`.
    pub fn from_proto(
        c: &envoy_types::pb::envoy::config::metrics::v3::StatsConfig,
    ) -> Result<Self, StatsConfigError> {
        Ok(Self {
            tags: TagProducer::from_proto(c)?,
            matcher: match &c.stats_matcher {
                Some(m) => StatsMatcher::from_proto(m)?,
                None => StatsMatcher::default(),
            },
        })
    }
}

/// The process-wide registry of stats by full Envoy name (`cluster.<name>.upstream_rq_total`).
/// Lookups take a lock and happen only when configuration is compiled or stats are listed.
#[derive(Debug, Default)]
pub struct Store {
    registry: Mutex<Registry>,
    settings: StatsSettings,
    /// Istio's standard metrics, made when the node is known or an `istio.stats` filter
    /// first compiles.
    istio: std::sync::OnceLock<Arc<istio::IstioMetrics>>,
    istio_node: std::sync::OnceLock<istio::NodeInfo>,
}

/// The prefix of the counters of configuration that tern accepts but does not enforce yet.
pub const NOT_ENFORCED_PREFIX: &str = "tern.config.not_enforced.";

impl Store {
    /// A new, empty store with Envoy's default tag extractors and no stats matcher.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new, empty store with the bootstrap's `stats_config`.
    pub fn with_settings(settings: StatsSettings) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::default(),
            settings,
            istio: std::sync::OnceLock::new(),
            istio_node: std::sync::OnceLock::new(),
        })
    }

    /// The node Istio's metrics describe (the bootstrap's `node`): set once, before any
    /// `istio.stats` filter compiles; a later call changes nothing and returns `false`.
    pub fn init_istio(&self, node: istio::NodeInfo) -> bool {
        self.istio_node.set(node).is_ok()
    }

    /// Istio's metrics: the process-wide store every `istio.stats` filter records into, made
    /// on first use (for an empty node if [`Store::init_istio`] was not called).
    pub fn istio(&self) -> &Arc<istio::IstioMetrics> {
        self.istio.get_or_init(|| {
            // Envoy's Prometheus names of the Istio filter's stats drop this namespace.
            self.register_custom_namespace(istio::STAT_NAMESPACE);
            let node = self.istio_node.get().cloned().unwrap_or_default();
            istio::IstioMetrics::new(node, istio::Options::default(), self)
        })
    }

    /// Tag extraction and the stats matcher in force.
    pub fn settings(&self) -> &StatsSettings {
        &self.settings
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `stats_config.stats_matcher` keeps this stat (rejected stats still count into a
    /// cell of their own but are never listed, as Envoy's null stats).
    fn accepts(&self, name: &str) -> bool {
        self.settings.matcher.accepts(name)
    }

    /// The counter with this name, created at zero if new.
    pub fn counter(&self, name: impl Into<String>) -> Counter {
        let name = name.into();
        if !self.accepts(&name) {
            return Counter::default();
        }
        self.registry().counter(name)
    }

    /// The gauge with this name, created at zero (and unused) if new.
    pub fn gauge(&self, name: impl Into<String>) -> Gauge {
        let name = name.into();
        if !self.accepts(&name) {
            return Gauge::default();
        }
        self.registry().gauge(name)
    }

    /// The histogram with this name, created empty if new.
    pub fn histogram(&self, name: impl Into<String>, unit: Unit) -> Histogram {
        let name = name.into();
        if !self.accepts(&name) {
            return Histogram::detached(unit);
        }
        self.registry().histogram(name, unit)
    }

    /// A counter named by a tag-extracted name and explicit tags (no tag extractor runs on
    /// it), as Envoy's `counterFromStatNameWithTags`: its full name is `name` followed by
    /// `.<tag>.<value>` for each tag. For stats whose dimensions are not in their name
    /// (Istio's standard metrics).
    pub fn counter_with_tags(&self, name: &str, tags: &[(&str, &str)]) -> Counter {
        let full = registry::join_tags(name, tags);
        if !self.accepts(&full) {
            return Counter::default();
        }
        let mut r = self.registry();
        r.set_tags(&full, name, tags);
        r.counter(full)
    }

    /// A gauge with explicit tags (see [`Store::counter_with_tags`]).
    pub fn gauge_with_tags(&self, name: &str, tags: &[(&str, &str)]) -> Gauge {
        let full = registry::join_tags(name, tags);
        if !self.accepts(&full) {
            return Gauge::default();
        }
        let mut r = self.registry();
        r.set_tags(&full, name, tags);
        r.gauge(full)
    }

    /// A histogram with explicit tags (see [`Store::counter_with_tags`]).
    pub fn histogram_with_tags(&self, name: &str, tags: &[(&str, &str)], unit: Unit) -> Histogram {
        let full = registry::join_tags(name, tags);
        if !self.accepts(&full) {
            return Histogram::detached(unit);
        }
        let mut r = self.registry();
        r.set_tags(&full, name, tags);
        r.histogram(full, unit)
    }

    /// Register a custom stat namespace (Envoy's `registerCustomNamespace`): Prometheus names
    /// of stats `<namespace>.<rest>` are `<rest>` sanitized, without the `envoy_` prefix.
    pub fn register_custom_namespace(&self, namespace: &str) {
        self.registry().add_namespace(namespace);
    }

    /// The stats of `spec` under `prefix` (ending with a dot), in one block. The same prefix
    /// and spec give the same cells (a recompiled cluster keeps its stats).
    pub fn block(&self, prefix: &str, spec: &'static BlockSpec) -> BlockStats {
        self.block_without(prefix, spec, &[])
    }

    /// As [`block`](Self::block), with the stats named in `unlisted` kept but not listed (stats
    /// Envoy has only for some kinds of the resource, such as EDS's `update_rejected`).
    pub fn block_without(
        &self,
        prefix: &str,
        spec: &'static BlockSpec,
        unlisted: &[&str],
    ) -> BlockStats {
        let hidden = if self.settings.matcher.accepts_all() && unlisted.is_empty() {
            None
        } else {
            spec.hidden_by(|n| unlisted.contains(&n) || !self.accepts(&format!("{prefix}{n}")))
        };
        self.registry().block(prefix, spec, hidden)
    }

    /// The counters `<prefix><name>` for each of `names`, in that order, kept in one block.
    /// The same prefix and names give the same counters. `prefix` ends with a dot.
    pub fn counter_block(&self, prefix: &str, names: &'static [&'static str]) -> Vec<Counter> {
        let hidden = if self.settings.matcher.accepts_all() {
            None
        } else {
            block::hidden_names(names, |n| !self.accepts(&format!("{prefix}{n}")))
        };
        let cells = self.registry().counter_block(prefix, names, hidden);
        (0..names.len())
            .map(|index| Counter {
                cells: cells.clone(),
                index: index as u32,
            })
            .collect()
    }

    /// Forget the block `<prefix>` + `names` and the gauges `<prefix><gauge>` (the stats of a
    /// removed resource): they are no longer listed, and handles still held keep counting
    /// into cells nobody reads. Stats of names that merely start with the same text are
    /// untouched.
    pub fn remove_block(&self, prefix: &str, names: &'static [&'static str], gauges: &[&str]) {
        self.registry()
            .remove_block(prefix, |s| s.counters == names, gauges);
    }

    /// Forget the block of `spec` under `prefix` (a removed cluster).
    pub fn remove_spec_block(&self, prefix: &str, spec: &'static BlockSpec) {
        self.registry()
            .remove_block(prefix, |s| std::ptr::eq(s, spec), &[]);
    }

    /// Every listed counter and its value, sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .registry()
            .snapshot(&StatsQuery::default(), None)
            .counters
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every listed gauge and its value, sorted by name.
    pub fn gauges(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .registry()
            .snapshot(&StatsQuery::default(), None)
            .gauges
            .into_iter()
            .map(|g| (g.name, g.value))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Count one instance of configuration that tern accepts but does not enforce yet (a
    /// filter, listener filter, transport socket or cluster field that README.md lists under
    /// "Accepted, not yet enforced"): `tern.config.not_enforced.<what>` goes up by one, and the
    /// first instance of each `what` logs a warning that says what is missing.
    pub fn not_enforced(&self, what: &str, missing: &str) {
        self.counter(format!("{NOT_ENFORCED_PREFIX}{what}")).inc();
        let first = self.registry().warn_once(what);
        if first {
            tracing::warn!(
                config = what,
                missing,
                "configuration accepted but not enforced yet"
            );
        }
    }

    /// The value of a listed counter, if it exists (status-code counters included).
    pub fn counter_value(&self, name: &str) -> Option<u64> {
        self.registry().counter_value(name)
    }

    /// The value of a listed gauge, if it exists.
    pub fn gauge_value(&self, name: &str) -> Option<i64> {
        self.registry().gauge_value(name)
    }

    /// The statistics of a listed histogram (cumulative), if it exists.
    pub fn histogram_value(&self, name: &str) -> Option<HistogramStatistics> {
        self.registry().histogram_value(name)
    }

    /// End a stats flush interval (Envoy's `stats_flush_interval`, 5 s by default): the
    /// interval quantiles of `/stats` cover the values recorded between the last two flushes.
    pub fn flush(&self) {
        self.registry().flush();
    }

    /// `/stats` as text: counters and gauges `name: value` sorted by name, then histograms
    /// (`name: P0(interval,cumulative) P25(..) ...`, or buckets with `histogram_buckets`).
    pub fn render_text(&self, q: &StatsQuery) -> String {
        render::text(&self.snapshot(q), q)
    }

    /// `/stats?format=json`: `{"stats":[{"name":..,"value":..},..,{"histograms":{..}}]}`.
    pub fn render_json(&self, q: &StatsQuery) -> String {
        render::json(&self.snapshot(q), q)
    }

    /// `/stats/prometheus`: the text exposition format 0.0.4 with Envoy's names and labels.
    pub fn render_prometheus(&self, q: &StatsQuery) -> String {
        let snap = self.snapshot(q);
        let namespaces = self.registry().namespaces();
        prometheus::render(&snap, &self.settings.tags, &namespaces)
    }

    /// Render in the query's format (`format=`; text when absent).
    pub fn render(&self, q: &StatsQuery) -> String {
        match q.format {
            Format::Text => self.render_text(q),
            Format::Json => self.render_json(q),
            Format::Prometheus => self.render_prometheus(q),
        }
    }

    fn snapshot(&self, q: &StatsQuery) -> registry::Snapshot {
        let mut snap = self.registry().snapshot(q, Some(&self.settings.matcher));
        if let Some(m) = self.istio.get() {
            m.add_to_snapshot(&mut snap, q, &self.settings.matcher);
            snap.counters.sort_by(|a, b| a.name.cmp(&b.name));
            snap.gauges.sort_by(|a, b| a.name.cmp(&b.name));
            snap.histograms.sort_by(|a, b| a.name.cmp(&b.name));
        }
        snap
    }
}
