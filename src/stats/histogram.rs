//! Histograms: values fall into log-linear bins of two significant digits, as in Envoy's
//! circllhist (`[1.0, 1.1)`, ..., `[10, 11)`, ..., `[250, 260)`, ...), from which the
//! quantiles of `/stats` and the cumulative buckets of `/stats/prometheus` are computed.
//! Recording is lock-free: one atomic add on the bin and one on the sum. The bins are
//! allocated on first use, a decade (90 bins) at a time, so an unused histogram costs one
//! pointer and a latency histogram a couple of decades.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Envoy's default histogram buckets (`stats_config.histogram_bucket_settings` unset).
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The quantiles `/stats` reports (`P0` .. `P100`).
pub const SUPPORTED_QUANTILES: [f64; 10] =
    [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// The unit of a histogram's values (Envoy's `Histogram::Unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// No unit.
    Unspecified,
    /// Bytes.
    Bytes,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
}

/// Decades of u64 values: `[1, 10)` .. `[10^19, 10^20)`.
const DECADES: usize = 20;
/// Bins per decade (two significant digits: 10..99).
const PER_DECADE: usize = 90;

/// The bin of a value: 0 for zero, else `1 + decade * 90 + (mantissa - 10)`.
fn bin_of(v: u64) -> usize {
    if v == 0 {
        return 0;
    }
    if v < 10 {
        return 1 + (v as usize * 10 - 10);
    }
    let mut d = 1;
    let mut scale = 1u64; // 10^(d-1)
    while v / scale >= 100 {
        scale *= 10;
        d += 1;
    }
    1 + d * PER_DECADE + (v / scale) as usize - 10
}

/// The lower edge and width of a bin.
fn bin_edges(bin: usize) -> (f64, f64) {
    if bin == 0 {
        return (0.0, 0.0);
    }
    let d = (bin - 1) / PER_DECADE;
    let m = ((bin - 1) % PER_DECADE + 10) as f64;
    let width = 10f64.powi(d as i32 - 1);
    (m * width, width)
}

#[derive(Debug)]
struct Bins {
    zero: AtomicU64,
    sum: AtomicU64,
    decades: [OnceLock<Box<[AtomicU64; PER_DECADE]>>; DECADES],
}

/// The values of the last flush and the interval between the last two (Envoy's interval
/// statistics). Touched by `flush` and renderers only.
#[derive(Debug, Default)]
struct Interval {
    at_last_flush: Vec<(u16, u64)>,
    interval: Vec<(u16, u64)>,
}

/// One histogram's storage.
#[derive(Debug)]
pub(crate) struct HistogramCell {
    unit: Unit,
    bins: OnceLock<Box<Bins>>,
    interval: Mutex<Option<Box<Interval>>>,
}

impl HistogramCell {
    pub(crate) fn new(unit: Unit) -> Self {
        Self {
            unit,
            bins: OnceLock::new(),
            interval: Mutex::new(None),
        }
    }

    pub(crate) fn record(&self, v: u64) {
        let bins = self.bins.get_or_init(|| {
            Box::new(Bins {
                zero: AtomicU64::new(0),
                sum: AtomicU64::new(0),
                decades: Default::default(),
            })
        });
        bins.sum.fetch_add(v, Ordering::Relaxed);
        let b = bin_of(v);
        if b == 0 {
            bins.zero.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let d = (b - 1) / PER_DECADE;
        let table =
            bins.decades[d].get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        table[(b - 1) % PER_DECADE].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_duration(&self, d: Duration) {
        let v = match self.unit {
            Unit::Microseconds => d.as_micros(),
            _ => d.as_millis(),
        };
        self.record(u64::try_from(v).unwrap_or(u64::MAX));
    }

    /// Whether a value was ever recorded.
    pub(crate) fn used(&self) -> bool {
        self.bins.get().is_some()
    }

    /// The non-empty bins, ascending, and the sum.
    fn bins(&self) -> (Vec<(u16, u64)>, u64) {
        let Some(bins) = self.bins.get() else {
            return (Vec::new(), 0);
        };
        let mut out = Vec::new();
        let zero = bins.zero.load(Ordering::Relaxed);
        if zero > 0 {
            out.push((0, zero));
        }
        for (d, table) in bins.decades.iter().enumerate() {
            let Some(t) = table.get() else { continue };
            for (i, c) in t.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    out.push(((1 + d * PER_DECADE + i) as u16, n));
                }
            }
        }
        (out, bins.sum.load(Ordering::Relaxed))
    }

    pub(crate) fn statistics(&self) -> HistogramStatistics {
        let (bins, sum) = self.bins();
        HistogramStatistics::from_bins(bins, sum as f64)
    }

    /// The statistics of the last complete flush interval (empty before two flushes).
    pub(crate) fn interval_statistics(&self) -> HistogramStatistics {
        let guard = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        let bins = guard
            .as_ref()
            .map(|i| i.interval.clone())
            .unwrap_or_default();
        let sum = bins
            .iter()
            .map(|(b, n)| {
                let (lo, w) = bin_edges(*b as usize);
                (lo + w / 2.0) * *n as f64
            })
            .sum();
        HistogramStatistics::from_bins(bins, sum)
    }

    pub(crate) fn flush(&self) {
        if !self.used() {
            return;
        }
        let (now, _) = self.bins();
        let mut guard = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        let state = guard.get_or_insert_with(Box::default);
        let mut interval = Vec::new();
        let mut prev = state.at_last_flush.iter().peekable();
        for (b, n) in &now {
            let mut before = 0;
            while let Some((pb, pn)) = prev.peek() {
                if pb < b {
                    prev.next();
                } else {
                    if pb == b {
                        before = *pn;
                    }
                    break;
                }
            }
            if *n > before {
                interval.push((*b, n - before));
            }
        }
        state.interval = interval;
        state.at_last_flush = now;
    }
}

/// A histogram handle (a cell of a block, or a block of one).
#[derive(Debug, Clone)]
pub struct Histogram {
    cells: std::sync::Arc<super::BlockCells>,
    index: u32,
}

impl Histogram {
    pub(crate) fn from_cells(cells: std::sync::Arc<super::BlockCells>, index: u32) -> Self {
        Self { cells, index }
    }

    /// A histogram listed nowhere (rejected by the stats matcher).
    pub(crate) fn detached(unit: Unit) -> Self {
        Self::from_cells(
            std::sync::Arc::new(super::BlockCells::new(0, 0, &[unit], false)),
            0,
        )
    }

    pub(crate) fn cell(&self) -> &HistogramCell {
        &self.cells.histograms[self.index as usize]
    }
    /// Record a value in the histogram's unit.
    pub fn record(&self, v: u64) {
        self.cell().record(v);
    }
    /// Record a duration in the histogram's unit (milliseconds unless microseconds).
    pub fn record_duration(&self, d: Duration) {
        self.cell().record_duration(d);
    }
    /// The cumulative statistics.
    pub fn statistics(&self) -> HistogramStatistics {
        self.cell().statistics()
    }
    /// Whether a value was ever recorded.
    pub fn used(&self) -> bool {
        self.cell().used()
    }
}

/// Statistics of a histogram: count, sum, the supported quantiles and cumulative counts per
/// default bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramStatistics {
    /// Number of values.
    pub count: u64,
    /// Sum of the values (exact for the cumulative statistics).
    pub sum: f64,
    /// One value per [`SUPPORTED_QUANTILES`] entry (NaN when empty).
    pub quantiles: [f64; 10],
    /// Values at or below each [`DEFAULT_BUCKETS`] bound, cumulative.
    pub buckets: [u64; 19],
}

impl HistogramStatistics {
    fn from_bins(bins: Vec<(u16, u64)>, sum: f64) -> Self {
        let count: u64 = bins.iter().map(|(_, n)| n).sum();
        let mut buckets = [0u64; 19];
        for (i, bound) in DEFAULT_BUCKETS.iter().enumerate() {
            // A bin counts below a bound when its lower edge is at or below it: an integer
            // value v is counted in every bucket `le >= v`.
            buckets[i] = bins
                .iter()
                .filter(|(b, _)| bin_edges(*b as usize).0 <= *bound)
                .map(|(_, n)| n)
                .sum();
        }
        Self {
            count,
            sum,
            quantiles: quantiles(&bins, count),
            buckets,
        }
    }
}

/// circllhist's approximate quantiles: walk the bins, interpolating linearly inside the bin
/// where the quantile's rank falls.
fn quantiles(bins: &[(u16, u64)], total: u64) -> [f64; 10] {
    let mut out = [f64::NAN; 10];
    if total == 0 {
        return out;
    }
    let total = total as f64;
    let mut i = 0;
    let (mut left, mut width) = bin_edges(bins[0].0 as usize);
    let mut lower = 0.0;
    let mut upper = bins[0].1 as f64;
    for (q_in, q_out) in SUPPORTED_QUANTILES.iter().zip(out.iter_mut()) {
        let rank = total * q_in;
        while i + 1 < bins.len() && upper < rank {
            i += 1;
            (left, width) = bin_edges(bins[i].0 as usize);
            lower = upper;
            upper = lower + bins[i].1 as f64;
        }
        *q_out = if lower == rank {
            left
        } else if upper == rank {
            left + width
        } else if width == 0.0 {
            left
        } else {
            left + (rank - lower) / (upper - lower) * width
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_have_two_significant_digits() {
        assert_eq!(bin_edges(bin_of(0)), (0.0, 0.0));
        let (lo, w) = bin_edges(bin_of(5));
        assert!((lo - 5.0).abs() < 1e-9 && (w - 0.1).abs() < 1e-12);
        assert_eq!(bin_edges(bin_of(42)), (42.0, 1.0));
        assert_eq!(bin_edges(bin_of(255)), (250.0, 10.0));
        assert_eq!(bin_edges(bin_of(3_600_000)), (3_600_000.0, 100_000.0));
        assert!(bin_of(u64::MAX) < 1 + DECADES * PER_DECADE);
    }

    #[test]
    fn buckets_count_values_at_or_below_the_bound() {
        let h = HistogramCell::new(Unit::Milliseconds);
        for v in [0, 1, 5, 6, 10, 249, 250, 251, 4_000_000] {
            h.record(v);
        }
        let s = h.statistics();
        assert_eq!(s.count, 9);
        assert_eq!(s.sum, (1 + 5 + 6 + 10 + 249 + 250 + 251 + 4_000_000) as f64);
        // le: 0.5 1 5 10 25 50 100 250 500 ... 3600000
        assert_eq!(&s.buckets[..9], &[1, 2, 3, 5, 5, 5, 5, 8, 8]);
        assert_eq!(s.buckets[18], 8, "4e6 is above the last bound");
    }

    #[test]
    fn quantiles_interpolate_inside_bins() {
        let h = HistogramCell::new(Unit::Milliseconds);
        assert!(h.statistics().quantiles.iter().all(|q| q.is_nan()));
        h.record(1);
        let q = h.statistics().quantiles;
        // One value in [1.0, 1.1): P0 is the bin's left edge, P100 its right edge.
        assert_eq!(q[0], 1.0);
        assert!((q[2] - 1.05).abs() < 1e-9);
        assert!((q[9] - 1.1).abs() < 1e-9);
        for _ in 0..3 {
            h.record(0);
        }
        let q = h.statistics().quantiles;
        assert_eq!(&q[..3], &[0.0, 0.0, 0.0]);
        assert!((q[4] - 1.06).abs() < 1e-9, "{q:?}");
    }

    #[test]
    fn flush_keeps_the_last_interval() {
        let h = HistogramCell::new(Unit::Milliseconds);
        assert_eq!(h.interval_statistics().count, 0);
        h.record(10);
        h.flush();
        assert_eq!(h.interval_statistics().count, 1);
        h.record(20);
        h.record(20);
        h.flush();
        let i = h.interval_statistics();
        assert_eq!(i.count, 2);
        assert_eq!(i.quantiles[0], 20.0);
        h.flush();
        assert_eq!(h.interval_statistics().count, 0);
        assert_eq!(h.statistics().count, 3);
    }
}
