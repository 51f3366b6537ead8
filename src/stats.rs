//! Counters and gauges with Envoy's names, cheap enough for the data path.
//!
//! A stat is looked up by name once, when the configuration that uses it is compiled; the
//! request path only touches the returned handle (an atomic). This module is a leaf.

pub mod istio;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing counter: one cell of a block of counters that share an
/// allocation (the stats of one cluster are one block), or a block of one.
#[derive(Debug, Clone)]
pub struct Counter {
    cells: Arc<[AtomicU64]>,
    index: usize,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            cells: Arc::from([AtomicU64::new(0)]),
            index: 0,
        }
    }
}

impl Counter {
    fn cell(&self) -> &AtomicU64 {
        &self.cells[self.index]
    }
    /// Add one.
    pub fn inc(&self) {
        self.cell().fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.cell().fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn value(&self) -> u64 {
        self.cell().load(Ordering::Relaxed)
    }
}

/// Counters that share one prefix and one allocation.
#[derive(Debug)]
struct Block {
    names: &'static [&'static str],
    cells: Arc<[AtomicU64]>,
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
    /// Blocks by prefix (ending with a dot): a large mesh has tens of thousands of clusters,
    /// and a block keeps a cluster's counters in one allocation under one name.
    blocks: Mutex<HashMap<String, Vec<Block>>>,
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
        let name = name.into();
        if let Some(c) = self.block_counter(&name) {
            return c;
        }
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name).or_default().clone()
    }

    /// The counters `<prefix><name>` for each of `names`, in that order, kept in one block.
    /// The same prefix and names give the same counters (a recompiled cluster keeps its
    /// stats). `prefix` ends with a dot.
    pub fn counter_block(&self, prefix: &str, names: &'static [&'static str]) -> Vec<Counter> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let list = blocks.entry(prefix.to_string()).or_default();
        let cells = match list
            .iter()
            .find(|b| std::ptr::eq(b.names, names) || b.names == names)
        {
            Some(b) => b.cells.clone(),
            None => {
                let cells: Arc<[AtomicU64]> = (0..names.len()).map(|_| AtomicU64::new(0)).collect();
                list.push(Block {
                    names,
                    cells: cells.clone(),
                });
                cells
            }
        };
        (0..names.len())
            .map(|index| Counter {
                cells: cells.clone(),
                index,
            })
            .collect()
    }

    /// Forget the block `<prefix>` + `names` and the gauges `<prefix><gauge>` (the stats of a
    /// removed cluster or resource): they are no longer listed, and handles still held keep
    /// counting into cells nobody reads. Stats of names that merely start with the same text
    /// are untouched.
    pub fn remove_block(&self, prefix: &str, names: &'static [&'static str], gauges: &[&str]) {
        {
            let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = blocks.get_mut(prefix) {
                list.retain(|b| !(std::ptr::eq(b.names, names) || b.names == names));
                if list.is_empty() {
                    blocks.remove(prefix);
                }
            }
        }
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        for g in gauges {
            map.remove(&format!("{prefix}{g}"));
        }
    }

    /// The block counter a full name denotes, if any.
    fn block_counter(&self, name: &str) -> Option<Counter> {
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.is_empty() {
            return None;
        }
        for (i, _) in name.match_indices('.') {
            let (prefix, rest) = name.split_at(i + 1);
            for b in blocks.get(prefix).into_iter().flatten() {
                if let Some(index) = b.names.iter().position(|n| *n == rest) {
                    return Some(Counter {
                        cells: b.cells.clone(),
                        index,
                    });
                }
            }
        }
        None
    }

    /// The gauge with this name, created at zero if new.
    pub fn gauge(&self, name: impl Into<String>) -> Gauge {
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.into()).or_default().clone()
    }

    /// Every counter and its value, sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = {
            let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.value())).collect()
        };
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        for (prefix, list) in blocks.iter() {
            for b in list {
                for (n, c) in b.names.iter().zip(b.cells.iter()) {
                    out.push((format!("{prefix}{n}"), c.load(Ordering::Relaxed)));
                }
            }
        }
        drop(blocks);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
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
        if let Some(c) = self.block_counter(name) {
            return Some(c.value());
        }
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
    fn blocks_share_names_with_single_counters() {
        let s = Store::new();
        const NAMES: &[&str] = &["upstream_rq_total", "upstream_rq_retry"];
        let b = s.counter_block("cluster.a.", NAMES);
        b[1].add(2);
        // The same name through `counter` is the same cell, and a recompiled cluster gets the
        // same block.
        s.counter("cluster.a.upstream_rq_retry").inc();
        let again = s.counter_block("cluster.a.", NAMES);
        assert_eq!(again[1].value(), 3);
        assert_eq!(s.counter_value("cluster.a.upstream_rq_retry"), Some(3));
        assert_eq!(s.counter_value("cluster.a.upstream_rq_total"), Some(0));
        s.counter("cluster.a.other").inc();
        let names: Vec<String> = s.counters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "cluster.a.other",
                "cluster.a.upstream_rq_retry",
                "cluster.a.upstream_rq_total"
            ]
        );
    }

    #[test]
    fn removed_blocks_are_no_longer_listed() {
        let s = Store::new();
        const NAMES: &[&str] = &["upstream_rq_total"];
        s.counter_block("cluster.a.", NAMES)[0].inc();
        s.counter_block("cluster.a.b.", NAMES)[0].inc();
        s.gauge("cluster.a.version").set(1);
        s.remove_block("cluster.a.", NAMES, &["version"]);
        let names: Vec<String> = s.counters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["cluster.a.b.upstream_rq_total"]);
        assert!(s.gauges().is_empty());
        assert_eq!(s.counter_block("cluster.a.", NAMES)[0].value(), 0);
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
