//! The settings of one `istio.stats` filter (Istio's `stats.PluginConfig`, already decoded by
//! `filters`) and their compiled form: which metrics are dropped, which labels each metric
//! loses, gets overridden or gains, and the custom metrics of `definitions`. Istio's rules,
//! applied in its order: `definitions` first; then each `metrics` entry in order (`drop`, then
//! `tags_to_remove`, then `dimensions` sorted by tag name); a later entry overrides an earlier
//! one for the same metric and label.

use super::expr::{Expr, ExprError};
use super::labels::{ListenerDirection, Reporter, standard_index};
use super::registry::Family;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The standard metrics by their configuration name (`stats.MetricConfig.name`), with
/// `istio_` in front as exported.
pub const STANDARD_METRICS: [&str; 10] = [
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
    "request_messages_total",
    "response_messages_total",
    "tcp_connections_opened_total",
    "tcp_connections_closed_total",
    "tcp_sent_bytes_total",
    "tcp_received_bytes_total",
];

pub(crate) const REQUESTS_TOTAL: usize = 0;
pub(crate) const REQUEST_DURATION: usize = 1;
pub(crate) const REQUEST_BYTES: usize = 2;
pub(crate) const RESPONSE_BYTES: usize = 3;
pub(crate) const TCP_OPENED: usize = 6;
pub(crate) const TCP_CLOSED: usize = 7;
pub(crate) const TCP_SENT: usize = 8;
pub(crate) const TCP_RECEIVED: usize = 9;

pub(crate) fn is_histogram(metric: usize) -> bool {
    (REQUEST_DURATION..=RESPONSE_BYTES).contains(&metric)
}

/// `stats.MetricConfig`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricOverride {
    /// `name`: a standard or custom metric; empty for every metric.
    pub name: String,
    /// `dimensions`: label name → CEL expression.
    pub dimensions: BTreeMap<String, String>,
    /// `tags_to_remove`: standard labels to drop.
    pub tags_to_remove: Vec<String>,
    /// `drop`: do not report the metric.
    pub drop: bool,
}

/// `stats.MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefinitionKind {
    /// `COUNTER`.
    #[default]
    Counter,
    /// `GAUGE`.
    Gauge,
    /// `HISTOGRAM`.
    Histogram,
}

/// `stats.MetricDefinition`: a custom metric `istio_<name>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDefinition {
    /// `name`.
    pub name: String,
    /// `value`: a CEL expression giving an unsigned integer.
    pub value: String,
    /// `type`.
    pub kind: DefinitionKind,
}

/// `stats.PluginConfig`, with the reporter resolved against the listener direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Which side this filter reports as.
    pub reporter: Reporter,
    /// The listener's `traffic_direction` (`xds.listener_direction`).
    pub direction: ListenerDirection,
    /// `disable_host_header_fallback`.
    pub disable_host_header_fallback: bool,
    /// `tcp_reporting_duration` (default 5s): how often open connections report bytes.
    pub tcp_reporting_duration: Duration,
    /// `metrics`.
    pub metrics: Vec<MetricOverride>,
    /// `definitions`.
    pub definitions: Vec<MetricDefinition>,
    /// `rotation_interval` and `graceful_deletion_interval` (default 5m, kept below the
    /// rotation), when rotation is on: series not recorded for that long are dropped. The
    /// store is process-wide, so the server runs one [`super::IstioMetrics::run_rotation`]
    /// with the shortest rotation any filter asks for.
    pub rotation: Option<(Duration, Duration)>,
}

impl Settings {
    /// The defaults, for `reporter: SERVER_GATEWAY` (`server_gateway`) or not, on a listener
    /// of this direction.
    pub fn new(server_gateway: bool, direction: ListenerDirection) -> Self {
        Settings {
            reporter: Reporter::resolve(server_gateway, direction),
            direction,
            disable_host_header_fallback: false,
            tcp_reporting_duration: Duration::from_secs(5),
            metrics: Vec::new(),
            definitions: Vec::new(),
            rotation: None,
        }
    }
}

/// An expression of the configuration: `None` when tern cannot evaluate it (its label is
/// `unknown`, as when Istio fails to evaluate one).
#[derive(Debug)]
pub(crate) struct CompiledExpr {
    pub expr: Option<Expr>,
}

/// How one metric's labels are built.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub drop: bool,
    /// By standard label index: `Some(None)` removes the label, `Some(Some(e))` sets it to
    /// expression `e`.
    pub overrides: BTreeMap<usize, Option<usize>>,
    /// Labels appended after the standard ones: name and expression.
    pub additions: Vec<(Arc<str>, usize)>,
}

impl Plan {
    /// The standard labels unchanged.
    pub fn is_identity(&self) -> bool {
        self.overrides.is_empty() && self.additions.is_empty()
    }
}

/// A custom metric of `definitions`.
#[derive(Debug)]
pub(crate) struct Custom {
    pub family: Arc<Family>,
    pub value: usize,
    pub additions: Vec<(Arc<str>, usize)>,
}

/// A problem found while compiling, for the caller to count and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The metric (`name` of the entry, empty for all).
    pub metric: String,
    /// The label, or `value` for a definition.
    pub what: String,
    /// The error.
    pub error: ExprError,
}

/// The compiled overrides.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub exprs: Vec<CompiledExpr>,
    pub plans: [Plan; 10],
    pub custom: Vec<Custom>,
    pub issues: Vec<Issue>,
}

struct Builder {
    exprs: Vec<CompiledExpr>,
    ids: BTreeMap<String, Option<usize>>,
    issues: Vec<Issue>,
}

impl Builder {
    /// Istio's `getOrCreateExpression`: one id per distinct text; `None` when it does not parse.
    fn expression(&mut self, text: &str, metric: &str, what: &str) -> Option<usize> {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = match Expr::parse(text) {
            Ok(e) => {
                self.exprs.push(CompiledExpr { expr: Some(e) });
                Some(self.exprs.len() - 1)
            }
            Err(error) => {
                self.issues.push(Issue {
                    metric: metric.into(),
                    what: what.into(),
                    error: error.clone(),
                });
                match error {
                    ExprError::Invalid(_) => None,
                    ExprError::Unsupported(_) => {
                        self.exprs.push(CompiledExpr { expr: None });
                        Some(self.exprs.len() - 1)
                    }
                }
            }
        };
        self.ids.insert(text.to_owned(), id);
        id
    }
}

/// Compile `settings`. `family` gives the registry family of a metric name and kind.
pub(crate) fn compile(
    settings: &Settings,
    family: &dyn Fn(&str, DefinitionKind) -> Arc<Family>,
) -> Compiled {
    let mut b = Builder {
        exprs: Vec::new(),
        ids: BTreeMap::new(),
        issues: Vec::new(),
    };
    let mut plans: [Plan; 10] = Default::default();
    let mut custom: Vec<(String, Custom)> = Vec::new();
    for d in &settings.definitions {
        if STANDARD_METRICS.contains(&d.name.as_str()) || custom.iter().any(|(n, _)| *n == d.name) {
            // Istio: re-defining a standard metric is not allowed; the first definition wins.
            continue;
        }
        let Some(value) = b.expression(&d.value, &d.name, "value") else {
            continue;
        };
        if b.exprs[value].expr.is_none() {
            // A value tern cannot compute would report zeros: leave the metric out.
            continue;
        }
        let fam = family(&format!("istio_{}", d.name), d.kind);
        custom.push((
            d.name.clone(),
            Custom {
                family: fam,
                value,
                additions: Vec::new(),
            },
        ));
    }
    let standard = |name: &str| STANDARD_METRICS.iter().position(|m| *m == name);
    for m in &settings.metrics {
        if m.drop {
            if let Some(i) = standard(&m.name) {
                plans[i].drop = true;
            }
            continue;
        }
        for tag in &m.tags_to_remove {
            let Some(t) = standard_index(tag) else {
                tracing::info!(tag = %tag, "istio.stats: tag is not standard");
                continue;
            };
            if m.name.is_empty() {
                for p in plans.iter_mut() {
                    p.overrides.insert(t, None);
                }
            } else if let Some(i) = standard(&m.name) {
                plans[i].overrides.insert(t, None);
            }
        }
        for (tag, text) in &m.dimensions {
            let id = b.expression(text, &m.name, tag);
            let name: Arc<str> = tag.as_str().into();
            let customs = custom
                .iter_mut()
                .filter(|(n, _)| m.name.is_empty() || *n == m.name);
            match standard_index(tag) {
                None => {
                    let Some(id) = id else { continue };
                    for c in customs {
                        c.1.additions.push((name.clone(), id));
                    }
                    for (i, p) in plans.iter_mut().enumerate() {
                        if m.name.is_empty() || standard(&m.name) == Some(i) {
                            p.additions.push((name.clone(), id));
                        }
                    }
                }
                Some(t) => {
                    if let Some(id) = id {
                        for c in customs {
                            c.1.additions.push((name.clone(), id));
                        }
                    }
                    for (i, p) in plans.iter_mut().enumerate() {
                        if m.name.is_empty() || standard(&m.name) == Some(i) {
                            p.overrides.insert(t, id);
                        }
                    }
                }
            }
        }
    }
    Compiled {
        exprs: b.exprs,
        plans,
        custom: custom.into_iter().map(|(_, c)| c).collect(),
        issues: b.issues,
    }
}
