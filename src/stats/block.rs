//! Blocks: the stats of one resource (a cluster) in one allocation under one prefix, with
//! the names kept once in a static spec. Status-code counters (`upstream_rq_200`,
//! `upstream_rq_2xx`) are made on first use, as Envoy makes them.

use super::histogram::{HistogramCell, Unit};
use super::{GaugeCell, counter_add};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The names of the stats of a block. Counters, gauges and histograms are named
/// `<prefix><name>`; status codes `<prefix><stem><code>` and `<prefix><stem><N>xx`.
#[derive(Debug, PartialEq)]
pub struct BlockSpec {
    /// Counter names.
    pub counters: &'static [&'static str],
    /// Gauge names.
    pub gauges: &'static [&'static str],
    /// Histogram names and units.
    pub histograms: &'static [(&'static str, Unit)],
    /// The stem of per-status-code counters (`upstream_rq_`), if the block has them.
    pub status_codes: Option<&'static str>,
}

impl BlockSpec {
    /// Which stats (counters, then gauges, then histograms) `hide` rejects, if any.
    pub(crate) fn hidden_by(&self, hide: impl Fn(&str) -> bool) -> Option<Box<[bool]>> {
        let all = self
            .counters
            .iter()
            .chain(self.gauges)
            .copied()
            .chain(self.histograms.iter().map(|(n, _)| *n));
        let mask: Box<[bool]> = all.map(hide).collect();
        mask.iter().any(|h| *h).then_some(mask)
    }
}

/// Which of `names` `hide` rejects, if any.
pub(crate) fn hidden_names(names: &[&str], hide: impl Fn(&str) -> bool) -> Option<Box<[bool]>> {
    let mask: Box<[bool]> = names.iter().map(|n| hide(n)).collect();
    mask.iter().any(|h| *h).then_some(mask)
}

/// Counters per status code, made on first use: per class (1xx..9xx) a table of 100 codes,
/// and one counter per class.
#[derive(Debug, Default)]
pub(crate) struct StatusCodeCells {
    classes: [AtomicU64; 10],
    codes: [OnceLock<Box<[AtomicU64; 100]>>; 10],
}

impl StatusCodeCells {
    fn record(&self, code: u16) {
        let class = (code / 100) as usize;
        if !(1..10).contains(&class) {
            return;
        }
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let table = self.codes[class].get_or_init(|| Box::new(std::array::from_fn(|_| 0.into())));
        table[(code % 100) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every code and class counted so far: (`"200"`, n) and (`"2xx"`, n).
    pub(crate) fn list(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for class in 1..10 {
            let n = self.classes[class].load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            out.push((format!("{class}xx"), n));
            if let Some(t) = self.codes[class].get() {
                for (i, c) in t.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        out.push((format!("{}", class * 100 + i), n));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn value(&self, suffix: &str) -> Option<u64> {
        let n = if let Some(class) = suffix.strip_suffix("xx") {
            let c: usize = class.parse().ok().filter(|c| (1..10).contains(c))?;
            self.classes[c].load(Ordering::Relaxed)
        } else {
            let code: usize = suffix.parse().ok().filter(|c| (100..1000).contains(c))?;
            self.codes[code / 100].get()?[code % 100].load(Ordering::Relaxed)
        };
        (n > 0).then_some(n)
    }
}

/// The cells of a block.
#[derive(Debug)]
pub(crate) struct BlockCells {
    pub(crate) counters: Box<[AtomicU64]>,
    pub(crate) gauges: Box<[GaugeCell]>,
    pub(crate) histograms: Box<[HistogramCell]>,
    /// Present when the spec has status codes; allocated on the first response.
    pub(crate) codes: Option<OnceLock<Box<StatusCodeCells>>>,
}

impl BlockCells {
    pub(crate) fn new(counters: usize, gauges: usize, histograms: &[Unit], codes: bool) -> Self {
        Self {
            counters: (0..counters).map(|_| AtomicU64::new(0)).collect(),
            gauges: (0..gauges).map(|_| GaugeCell::default()).collect(),
            histograms: histograms.iter().map(|u| HistogramCell::new(*u)).collect(),
            codes: codes.then(OnceLock::new),
        }
    }

    pub(crate) fn counters_only(n: usize) -> Self {
        Self::new(n, 0, &[], false)
    }

    pub(crate) fn for_spec(spec: &BlockSpec) -> Self {
        let units: Vec<Unit> = spec.histograms.iter().map(|(_, u)| *u).collect();
        Self::new(
            spec.counters.len(),
            spec.gauges.len(),
            &units,
            spec.status_codes.is_some(),
        )
    }
}

/// The handle of a block: cheap to keep per resource (one pointer), with borrowed views of
/// each stat by index. Use [`block_stats!`](crate::stats::block_stats) for named accessors.
#[derive(Debug, Clone)]
pub struct BlockStats {
    pub(crate) cells: std::sync::Arc<BlockCells>,
}

impl BlockStats {
    /// The counter at `index` of the spec's counters.
    pub fn counter(&self, index: usize) -> CounterRef<'_> {
        CounterRef(&self.cells.counters[index])
    }
    /// The gauge at `index` of the spec's gauges.
    pub fn gauge(&self, index: usize) -> GaugeRef<'_> {
        GaugeRef(&self.cells.gauges[index])
    }
    /// The histogram at `index` of the spec's histograms.
    pub fn histogram(&self, index: usize) -> HistogramRef<'_> {
        HistogramRef(&self.cells.histograms[index])
    }
    /// The status-code counters (none if the spec has no `status_codes`).
    pub fn status_codes(&self) -> StatusCodes<'_> {
        StatusCodes(self.cells.codes.as_ref())
    }
}

/// A counter of a block.
#[derive(Debug, Clone, Copy)]
pub struct CounterRef<'a>(&'a AtomicU64);

impl CounterRef<'_> {
    /// Add one.
    pub fn inc(self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(self, n: u64) {
        counter_add(self.0, n);
    }
    /// The current value.
    pub fn value(self) -> u64 {
        super::counter_read(self.0).0
    }
}

/// A gauge of a block.
#[derive(Debug, Clone, Copy)]
pub struct GaugeRef<'a>(&'a GaugeCell);

impl GaugeRef<'_> {
    /// Add one.
    pub fn inc(self) {
        self.0.add(1);
    }
    /// Subtract one.
    pub fn dec(self) {
        self.0.add(-1);
    }
    /// Set the value.
    pub fn set(self, v: i64) {
        self.0.set(v);
    }
    /// The current value.
    pub fn value(self) -> i64 {
        self.0.read().0
    }
}

/// A histogram of a block.
#[derive(Debug, Clone, Copy)]
pub struct HistogramRef<'a>(&'a HistogramCell);

impl HistogramRef<'_> {
    /// Record a value in the histogram's unit.
    pub fn record(self, v: u64) {
        self.0.record(v);
    }
    /// Record a duration (in the histogram's unit: milliseconds or microseconds).
    pub fn record_duration(self, d: std::time::Duration) {
        self.0.record_duration(d);
    }
    /// Number of values recorded.
    pub fn count(self) -> u64 {
        self.0.statistics().count
    }
}

/// The per-status-code counters of a block.
#[derive(Debug, Clone, Copy)]
pub struct StatusCodes<'a>(Option<&'a OnceLock<Box<StatusCodeCells>>>);

impl StatusCodes<'_> {
    /// Count a response with this status: `<stem><code>` and `<stem><N>xx`.
    pub fn record(self, code: u16) {
        if let Some(c) = self.0 {
            c.get_or_init(Box::default).record(code);
        }
    }
}

/// Declare a struct of named stats kept in one block: a static [`BlockSpec`] built from the
/// field names, and one accessor per stat. The struct is one pointer.
///
/// ```ignore
/// block_stats! {
///     /// Doc.
///     pub struct FooStats: FOO_SPEC {
///         counters { a_total, b_total }
///         gauges { c_active }
///         histograms { d_ms: Unit::Milliseconds }
///         status_codes: Some("upstream_rq_")
///     }
/// }
/// ```
macro_rules! block_stats {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident : $spec:ident {
            counters { $($(#[$cm:meta])* $c:ident),* $(,)? }
            gauges { $($(#[$gm:meta])* $g:ident),* $(,)? }
            histograms { $($(#[$hm:meta])* $h:ident : $unit:expr),* $(,)? }
            status_codes: $codes:expr $(,)?
        }
    ) => {
        /// The names of the block.
        $vis static $spec: $crate::stats::BlockSpec = $crate::stats::BlockSpec {
            counters: &[$(stringify!($c)),*],
            gauges: &[$(stringify!($g)),*],
            histograms: &[$((stringify!($h), $unit)),*],
            status_codes: $codes,
        };

        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            block: $crate::stats::BlockStats,
        }

        #[allow(dead_code, non_camel_case_types, clippy::enum_variant_names)]
        impl $name {
            /// The stats under `prefix` (ending with a dot) in `store`.
            pub fn new(store: &$crate::stats::Store, prefix: &str) -> Self {
                Self { block: store.block(prefix, &$spec) }
            }
            /// The whole block.
            pub fn block(&self) -> &$crate::stats::BlockStats {
                &self.block
            }
            $crate::stats::block_stats!(@counters 0usize; $($(#[$cm])* $c,)*);
            $crate::stats::block_stats!(@gauges 0usize; $($(#[$gm])* $g,)*);
            $crate::stats::block_stats!(@histograms 0usize; $($(#[$hm])* $h,)*);
        }
    };
    (@counters $i:expr; ) => {};
    (@counters $i:expr; $(#[$m:meta])* $c:ident, $($rest:tt)*) => {
        $(#[$m])*
        pub fn $c(&self) -> $crate::stats::CounterRef<'_> { self.block.counter($i) }
        $crate::stats::block_stats!(@counters $i + 1usize; $($rest)*);
    };
    (@gauges $i:expr; ) => {};
    (@gauges $i:expr; $(#[$m:meta])* $g:ident, $($rest:tt)*) => {
        $(#[$m])*
        pub fn $g(&self) -> $crate::stats::GaugeRef<'_> { self.block.gauge($i) }
        $crate::stats::block_stats!(@gauges $i + 1usize; $($rest)*);
    };
    (@histograms $i:expr; ) => {};
    (@histograms $i:expr; $(#[$m:meta])* $h:ident, $($rest:tt)*) => {
        $(#[$m])*
        pub fn $h(&self) -> $crate::stats::HistogramRef<'_> { self.block.histogram($i) }
        $crate::stats::block_stats!(@histograms $i + 1usize; $($rest)*);
    };
}

pub(crate) use block_stats;
