//! The store of Istio's metrics: one family per metric name, one series per label set. Label
//! values vary per request, so every record looks its series up by label set (Envoy does the
//! same): the label set is hashed once and shared by the families it is recorded in, and the
//! map is split into shards behind read-write locks, so concurrent requests rarely wait and a
//! hit takes only a read lock. The number of series is capped; a label set past the cap is not
//! recorded and counts `tern.istio_stats.series_overflow`.

use super::labels::Label;
use crate::stats::Counter;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

const SHARDS: usize = 16;

/// Every family: name, kind, and its series (label set, values).
pub(crate) type Snapshot = Vec<(Arc<str>, Kind, Vec<(Arc<[Label]>, SeriesValue)>)>;

/// What a family holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A counter.
    Counter,
    /// A gauge (set to a value).
    Gauge,
    /// A histogram with these bucket upper bounds (ascending).
    Histogram(Arc<[f64]>),
}

impl Kind {
    fn same_type(&self, other: &Kind) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A label set with its hash computed once.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    hash: u64,
    labels: Arc<[Label]>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.labels, &other.labels) || self.labels == other.labels)
    }
}

impl Eq for Key {}

/// Passes [`Key`]'s precomputed hash through.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = RwLock<HashMap<Key, Arc<Series>, BuildHasherDefault<KeyHasher>>>;

/// One series: a counter, gauge or histogram, and the generation it was last recorded in.
#[derive(Debug)]
pub(crate) struct Series {
    last_generation: AtomicU64,
    value: Value,
}

#[derive(Debug)]
enum Value {
    Scalar(AtomicU64),
    Histogram {
        /// Per bucket, not cumulative; the last one is `+Inf`.
        counts: Box<[AtomicU64]>,
        sum: AtomicU64,
        count: AtomicU64,
    },
}

impl Series {
    fn new(kind: &Kind, generation: u64) -> Self {
        let value = match kind {
            Kind::Counter | Kind::Gauge => Value::Scalar(AtomicU64::new(0)),
            Kind::Histogram(bounds) => Value::Histogram {
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0),
                count: AtomicU64::new(0),
            },
        };
        Series {
            last_generation: AtomicU64::new(generation),
            value,
        }
    }
}

/// The current values of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    /// A counter or gauge.
    Scalar(u64),
    /// A histogram: cumulative counts per bucket bound (`+Inf` excluded), sum and count.
    Histogram {
        /// `(upper bound, samples <= bound)`.
        buckets: Vec<(f64, u64)>,
        /// Sum of the samples.
        sum: u64,
        /// Number of samples.
        count: u64,
    },
}

/// All series of one metric.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Kind,
    /// Series of this family survive rotation (the `istio_build` gauge).
    pinned: bool,
    shards: [Shard; SHARDS],
}

impl Family {
    fn shard(&self, key: &Key) -> &Shard {
        &self.shards[(key.hash as usize) % SHARDS]
    }
}

/// The registry.
#[derive(Debug)]
pub(crate) struct Registry {
    families: RwLock<Vec<Arc<Family>>>,
    hasher: RandomState,
    series: AtomicUsize,
    max_series: usize,
    overflow: Counter,
    generation: AtomicU64,
}

impl Registry {
    pub(crate) fn new(max_series: usize, overflow: Counter) -> Self {
        Registry {
            families: RwLock::new(Vec::new()),
            hasher: RandomState::new(),
            series: AtomicUsize::new(0),
            max_series,
            overflow,
            generation: AtomicU64::new(0),
        }
    }

    /// The family `name` of this kind, created if new (configuration time).
    pub(crate) fn family(&self, name: &str, kind: Kind, pinned: bool) -> Arc<Family> {
        let mut fams = self.families.write().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fams
            .iter()
            .find(|f| &*f.name == name && f.kind.same_type(&kind))
        {
            return f.clone();
        }
        let f = Arc::new(Family {
            name: name.into(),
            kind,
            pinned,
            shards: std::array::from_fn(|_| RwLock::default()),
        });
        fams.push(f.clone());
        f
    }

    /// Hash a label set once, for every family it is recorded in.
    pub(crate) fn key(&self, labels: Arc<[Label]>) -> Key {
        Key {
            hash: self.hasher.hash_one(&*labels),
            labels,
        }
    }

    fn series(&self, family: &Family, key: &Key) -> Option<Arc<Series>> {
        let generation = self.generation.load(Ordering::Relaxed);
        let shard = family.shard(key);
        let found = shard
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(s) = found {
            s.last_generation.store(generation, Ordering::Relaxed);
            return Some(s);
        }
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(key) {
            s.last_generation.store(generation, Ordering::Relaxed);
            return Some(s.clone());
        }
        if self.series.fetch_add(1, Ordering::Relaxed) >= self.max_series {
            self.series.fetch_sub(1, Ordering::Relaxed);
            self.overflow.inc();
            return None;
        }
        let s = Arc::new(Series::new(&family.kind, generation));
        map.insert(key.clone(), s.clone());
        Some(s)
    }

    /// Add `n` to a counter.
    pub(crate) fn add(&self, family: &Family, key: &Key, n: u64) {
        if let Some(s) = self.series(family, key)
            && let Value::Scalar(v) = &s.value
        {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Set a gauge.
    pub(crate) fn set(&self, family: &Family, key: &Key, n: u64) {
        if let Some(s) = self.series(family, key)
            && let Value::Scalar(v) = &s.value
        {
            v.store(n, Ordering::Relaxed);
        }
    }

    /// Record one histogram sample.
    pub(crate) fn record(&self, family: &Family, key: &Key, sample: u64) {
        let Kind::Histogram(bounds) = &family.kind else {
            return;
        };
        if let Some(s) = self.series(family, key)
            && let Value::Histogram { counts, sum, count } = &s.value
        {
            let i = bounds.partition_point(|b| *b < sample as f64);
            if let Some(c) = counts.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            // Saturate rather than wrap: a sum of u64 byte counts cannot reach this honestly.
            let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(sample))
            });
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Start a new generation; returns its number. Series recorded from now on are kept by
    /// [`Registry::delete_before`] with this number.
    pub(crate) fn rotate(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Drop the series last recorded before `generation` (Istio's scope rotation: stats not
    /// touched since the rotation go away after the grace period). Returns how many.
    pub(crate) fn delete_before(&self, generation: u64) -> usize {
        let fams = self
            .families
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut removed = 0;
        for f in fams.iter().filter(|f| !f.pinned) {
            for shard in &f.shards {
                let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
                let before = map.len();
                map.retain(|_, s| s.last_generation.load(Ordering::Relaxed) >= generation);
                removed += before - map.len();
            }
        }
        self.series.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// How many series exist.
    pub(crate) fn len(&self) -> usize {
        self.series.load(Ordering::Relaxed)
    }

    /// Every family (sorted by name, counters before gauges before histograms, as Envoy lists
    /// them) with its series sorted by label set.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut fams = self
            .families
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let rank = |k: &Kind| match k {
            Kind::Counter => 0,
            Kind::Gauge => 1,
            Kind::Histogram(_) => 2,
        };
        fams.sort_by(|a, b| (rank(&a.kind), &a.name).cmp(&(rank(&b.kind), &b.name)));
        let mut out = Vec::with_capacity(fams.len());
        for f in fams {
            let mut series = Vec::new();
            for shard in &f.shards {
                let map = shard.read().unwrap_or_else(|e| e.into_inner());
                for (k, s) in map.iter() {
                    series.push((k.labels.clone(), read(&f.kind, s)));
                }
            }
            if series.is_empty() {
                continue;
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            out.push((f.name.clone(), f.kind.clone(), series));
        }
        out
    }
}

fn read(kind: &Kind, s: &Series) -> SeriesValue {
    match (&s.value, kind) {
        (Value::Histogram { counts, sum, count }, Kind::Histogram(bounds)) => {
            let mut acc = 0u64;
            let buckets = bounds
                .iter()
                .zip(counts.iter())
                .map(|(b, c)| {
                    acc = acc.saturating_add(c.load(Ordering::Relaxed));
                    (*b, acc)
                })
                .collect();
            SeriesValue::Histogram {
                buckets,
                sum: sum.load(Ordering::Relaxed),
                count: count.load(Ordering::Relaxed),
            }
        }
        (Value::Scalar(v), _) => SeriesValue::Scalar(v.load(Ordering::Relaxed)),
        (Value::Histogram { count, .. }, _) => SeriesValue::Scalar(count.load(Ordering::Relaxed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DEFAULT_BUCKETS;

    fn labels(v: &[(&str, &str)]) -> Arc<[Label]> {
        v.iter()
            .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
            .collect()
    }

    #[test]
    fn equal_label_sets_share_a_series() {
        let r = Registry::new(10, Counter::default());
        let f = r.family("istio_requests_total", Kind::Counter, false);
        r.add(&f, &r.key(labels(&[("a", "1")])), 1);
        r.add(&f, &r.key(labels(&[("a", "1")])), 2);
        r.add(&f, &r.key(labels(&[("a", "2")])), 1);
        let snap = r.snapshot();
        assert_eq!(snap.len(), 1);
        let values: Vec<_> = snap[0]
            .2
            .iter()
            .map(|(l, v)| (l[0].1.clone(), v.clone()))
            .collect();
        assert_eq!(
            values,
            [
                (Arc::from("1"), SeriesValue::Scalar(3)),
                (Arc::from("2"), SeriesValue::Scalar(1))
            ]
        );
    }

    #[test]
    fn histograms_are_cumulative_with_exact_sums() {
        let r = Registry::new(10, Counter::default());
        let kind = Kind::Histogram(Arc::from(&DEFAULT_BUCKETS[..]));
        let f = r.family("istio_request_duration_milliseconds", kind, false);
        let k = r.key(labels(&[]));
        for v in [0, 1, 3, 7, 4_000_000] {
            r.record(&f, &k, v);
        }
        let SeriesValue::Histogram {
            buckets,
            sum,
            count,
        } = &r.snapshot()[0].2[0].1
        else {
            panic!("histogram expected");
        };
        assert_eq!((*sum, *count), (4_000_011, 5));
        assert_eq!(buckets[0], (0.5, 1));
        assert_eq!(buckets[1], (1.0, 2));
        assert_eq!(buckets[2], (5.0, 3));
        assert_eq!(buckets[3], (10.0, 4));
        assert_eq!(buckets.last(), Some(&(3600000.0, 4)));
    }

    #[test]
    fn the_cap_counts_overflow_instead_of_growing() {
        let overflow = Counter::default();
        let r = Registry::new(2, overflow.clone());
        let f = r.family("istio_requests_total", Kind::Counter, false);
        for i in 0..5 {
            r.add(&f, &r.key(labels(&[("n", &i.to_string())])), 1);
        }
        // An existing series still counts at the cap.
        r.add(&f, &r.key(labels(&[("n", "0")])), 1);
        assert_eq!(r.len(), 2);
        assert_eq!(overflow.value(), 3);
        assert_eq!(r.snapshot()[0].2[0].1, SeriesValue::Scalar(2));
    }

    #[test]
    fn rotation_drops_series_not_recorded_since() {
        let r = Registry::new(10, Counter::default());
        let f = r.family("istio_requests_total", Kind::Counter, false);
        let build = r.family("istio_build", Kind::Gauge, true);
        r.set(&build, &r.key(labels(&[])), 1);
        r.add(&f, &r.key(labels(&[("n", "old")])), 1);
        r.add(&f, &r.key(labels(&[("n", "both")])), 1);
        let g = r.rotate();
        r.add(&f, &r.key(labels(&[("n", "both")])), 1);
        r.add(&f, &r.key(labels(&[("n", "new")])), 1);
        assert_eq!(r.delete_before(g), 1);
        let snap = r.snapshot();
        let names: Vec<_> = snap[0].2.iter().map(|(l, _)| l[0].1.to_string()).collect();
        assert_eq!(names, ["both", "new"]);
        assert_eq!(snap[0].2[0].1, SeriesValue::Scalar(2));
        assert_eq!(&*snap[1].0, "istio_build");
        assert_eq!(r.len(), 3);
    }
}
