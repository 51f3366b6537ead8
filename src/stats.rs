//! Counters and gauges with Envoy's names, cheap enough for the data path.
//!
//! A stat is looked up by name once, when the configuration that uses it is compiled; the
//! request path only touches the returned handle (an atomic). This module is a leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtract one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The process-wide registry of stats by full Envoy name (`cluster.<name>.upstream_rq_total`).
/// Lookups take a lock and happen only when configuration is compiled.
#[derive(Debug, Default)]
pub struct Store {
    counters: Mutex<BTreeMap<String, Counter>>,
    gauges: Mutex<BTreeMap<String, Gauge>>,
    warned: Mutex<BTreeSet<String>>,
}

/// The prefix of the counters of configuration that tern accepts but does not enforce yet.
pub const NOT_ENFORCED_PREFIX: &str = "tern.config.not_enforced.";

impl Store {
    /// A new, empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counter with this name, created at zero if new.
    pub fn counter(&self, name: impl Into<String>) -> Counter {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.into()).or_default().clone()
    }

    /// The gauge with this name, created at zero if new.
    pub fn gauge(&self, name: impl Into<String>) -> Gauge {
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.into()).or_default().clone()
    }

    /// Every counter and its value, sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.value())).collect()
    }

    /// Every gauge and its value, sorted by name.
    pub fn gauges(&self) -> Vec<(String, i64)> {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.value())).collect()
    }

    /// Count one instance of configuration that tern accepts but does not enforce yet (a
    /// filter, listener filter, transport socket or cluster field that README.md lists under
    /// "Accepted, not yet enforced"): `tern.config.not_enforced.<what>` goes up by one, and the
    /// first instance of each `what` logs a warning that says what is missing.
    pub fn not_enforced(&self, what: &str, missing: &str) {
        self.counter(format!("{NOT_ENFORCED_PREFIX}{what}")).inc();
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(what.to_owned());
        if first {
            tracing::warn!(
                config = what,
                missing,
                "configuration accepted but not enforced yet"
            );
        }
    }

    /// The value of a counter, if it exists.
    pub fn counter_value(&self, name: &str) -> Option<u64> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).map(Counter::value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_the_value() {
        let s = Store::new();
        let a = s.counter("x.y");
        let b = s.counter("x.y");
        a.inc();
        b.add(2);
        assert_eq!(s.counter_value("x.y"), Some(3));
        let g = s.gauge("g");
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(s.gauges(), vec![("g".to_string(), 1)]);
    }

    #[test]
    fn not_enforced_counts_each_instance() {
        let s = Store::new();
        s.not_enforced("envoy.filters.http.cors", "CORS");
        s.not_enforced("envoy.filters.http.cors", "CORS");
        assert_eq!(
            s.counter_value("tern.config.not_enforced.envoy.filters.http.cors"),
            Some(2)
        );
    }
}
