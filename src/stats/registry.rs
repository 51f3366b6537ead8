//! The registry behind `Store`'s lock: stats by name, blocks by prefix, explicit tags, and
//! the snapshot that renderers format (taken under the lock, formatted outside it).

use super::block::{BlockCells, BlockSpec, BlockStats};
use super::histogram::{Histogram, HistogramStatistics, Unit};
use super::matcher::StatsMatcher;
use super::render::{StatsQuery, StatsType};
use super::{Counter, Gauge, Tag, counter_read};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What a block holds.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// Counters only (`Store::counter_block`).
    Counters(&'static [&'static str]),
    /// A full spec (`Store::block`).
    Full(&'static BlockSpec),
}

impl Spec {
    fn counters(self) -> &'static [&'static str] {
        match self {
            Spec::Counters(c) => c,
            Spec::Full(s) => s.counters,
        }
    }
    fn gauges(self) -> &'static [&'static str] {
        match self {
            Spec::Counters(_) => &[],
            Spec::Full(s) => s.gauges,
        }
    }
    fn histograms(self) -> &'static [(&'static str, Unit)] {
        match self {
            Spec::Counters(_) => &[],
            Spec::Full(s) => s.histograms,
        }
    }
    fn status_codes(self) -> Option<&'static str> {
        match self {
            Spec::Counters(_) => None,
            Spec::Full(s) => s.status_codes,
        }
    }
}

#[derive(Debug)]
struct Block {
    spec: Spec,
    cells: Arc<BlockCells>,
    /// Stats the stats matcher rejects (counters, gauges, histograms in spec order).
    hidden: Option<Box<[bool]>>,
}

impl Block {
    fn is_hidden(&self, i: usize) -> bool {
        self.hidden
            .as_ref()
            .is_some_and(|h| h.get(i) == Some(&true))
    }
}

/// The full name of a stat with explicit tags: `name.tag.value...`.
pub(crate) fn join_tags(name: &str, tags: &[(&str, &str)]) -> String {
    let mut s = name.to_owned();
    for (k, v) in tags {
        s.push('.');
        s.push_str(k);
        s.push('.');
        s.push_str(v);
    }
    s
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, Gauge>,
    histograms: BTreeMap<String, Histogram>,
    blocks: HashMap<String, Vec<Block>>,
    /// Stats made with explicit tags: full name -> (tag-extracted name, tags).
    tagged: HashMap<String, (String, Vec<Tag>)>,
    namespaces: Vec<String>,
    warned: BTreeSet<String>,
}

/// One counter or gauge in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Stat<T> {
    pub name: String,
    pub value: T,
    /// Explicit tags (extracted name and tags), when the stat was made with them.
    pub tagged: Option<(String, Vec<Tag>)>,
}

/// One histogram in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct HistStat {
    pub name: String,
    pub used: bool,
    pub cumulative: HistogramStatistics,
    pub interval: HistogramStatistics,
    pub tagged: Option<(String, Vec<Tag>)>,
}

/// The stats a query selects, with their values.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub counters: Vec<Stat<u64>>,
    pub gauges: Vec<Stat<i64>>,
    pub histograms: Vec<HistStat>,
}

impl Registry {
    pub(crate) fn counter(&mut self, name: String) -> Counter {
        if let Some(c) = self.block_counter(&name) {
            return c;
        }
        self.counters.entry(name).or_default().clone()
    }

    pub(crate) fn gauge(&mut self, name: String) -> Gauge {
        self.gauges.entry(name).or_default().clone()
    }

    pub(crate) fn histogram(&mut self, name: String, unit: Unit) -> Histogram {
        self.histograms
            .entry(name)
            .or_insert_with(|| Histogram::detached(unit))
            .clone()
    }

    pub(crate) fn set_tags(&mut self, full: &str, name: &str, tags: &[(&str, &str)]) {
        if !self.tagged.contains_key(full) {
            let tags = tags
                .iter()
                .map(|(k, v)| Tag {
                    name: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect();
            self.tagged.insert(full.to_owned(), (name.to_owned(), tags));
        }
    }

    pub(crate) fn add_namespace(&mut self, ns: &str) {
        if !self.namespaces.iter().any(|n| n == ns) {
            self.namespaces.push(ns.to_owned());
        }
    }

    pub(crate) fn namespaces(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    pub(crate) fn warn_once(&mut self, what: &str) -> bool {
        self.warned.insert(what.to_owned())
    }

    pub(crate) fn block(
        &mut self,
        prefix: &str,
        spec: &'static BlockSpec,
        hidden: Option<Box<[bool]>>,
    ) -> BlockStats {
        let list = self.blocks.entry(prefix.to_owned()).or_default();
        let same =
            |b: &&mut Block| matches!(b.spec, Spec::Full(s) if std::ptr::eq(s, spec) || s == spec);
        let cells = match list.iter_mut().find(same) {
            // The latest registration says what is listed (a cluster that became EDS lists
            // its EDS stats).
            Some(b) => {
                b.hidden = hidden;
                b.cells.clone()
            }
            None => {
                let cells = Arc::new(BlockCells::for_spec(spec));
                list.push(Block {
                    spec: Spec::Full(spec),
                    cells: cells.clone(),
                    hidden,
                });
                cells
            }
        };
        BlockStats { cells }
    }

    pub(crate) fn counter_block(
        &mut self,
        prefix: &str,
        names: &'static [&'static str],
        hidden: Option<Box<[bool]>>,
    ) -> Arc<BlockCells> {
        let list = self.blocks.entry(prefix.to_owned()).or_default();
        let same = |b: &&Block| matches!(b.spec, Spec::Counters(n) if std::ptr::eq(n, names) || n == names);
        match list.iter().find(same) {
            Some(b) => b.cells.clone(),
            None => {
                let cells = Arc::new(BlockCells::counters_only(names.len()));
                list.push(Block {
                    spec: Spec::Counters(names),
                    cells: cells.clone(),
                    hidden,
                });
                cells
            }
        }
    }

    /// Remove the blocks under `prefix` that `which` selects (by their counter names for
    /// counter blocks, by spec for full blocks), and the named gauges under `prefix`.
    pub(crate) fn remove_block(
        &mut self,
        prefix: &str,
        which: impl Fn(&BlockSpec) -> bool,
        gauges: &[&str],
    ) {
        if let Some(list) = self.blocks.get_mut(prefix) {
            list.retain(|b| match b.spec {
                Spec::Full(s) => !which(s),
                Spec::Counters(names) => !which(&BlockSpec {
                    counters: names,
                    gauges: &[],
                    histograms: &[],
                    status_codes: None,
                }),
            });
            if list.is_empty() {
                self.blocks.remove(prefix);
            }
        }
        for g in gauges {
            self.gauges.remove(&format!("{prefix}{g}"));
        }
    }

    /// The block counter a full name denotes, if any.
    fn block_counter(&self, name: &str) -> Option<Counter> {
        if self.blocks.is_empty() {
            return None;
        }
        for (i, _) in name.match_indices('.') {
            let (prefix, rest) = name.split_at(i + 1);
            for b in self.blocks.get(prefix).into_iter().flatten() {
                if let Some(index) = b.spec.counters().iter().position(|n| *n == rest) {
                    return Some(Counter {
                        cells: b.cells.clone(),
                        index: index as u32,
                    });
                }
            }
        }
        None
    }

    pub(crate) fn counter_value(&self, name: &str) -> Option<u64> {
        if let Some(c) = self.counters.get(name) {
            return Some(c.value());
        }
        for (i, _) in name.match_indices('.') {
            let (prefix, rest) = name.split_at(i + 1);
            for b in self.blocks.get(prefix).into_iter().flatten() {
                if let Some(index) = b.spec.counters().iter().position(|n| *n == rest) {
                    return Some(counter_read(&b.cells.counters[index]).0);
                }
                if let (Some(stem), Some(codes)) = (
                    b.spec.status_codes(),
                    b.cells.codes.as_ref().and_then(|c| c.get()),
                ) && let Some(v) = rest.strip_prefix(stem).and_then(|s| codes.value(s))
                {
                    return Some(v);
                }
            }
        }
        None
    }

    pub(crate) fn gauge_value(&self, name: &str) -> Option<i64> {
        if let Some(g) = self.gauges.get(name) {
            return Some(g.value());
        }
        for (i, _) in name.match_indices('.') {
            let (prefix, rest) = name.split_at(i + 1);
            for b in self.blocks.get(prefix).into_iter().flatten() {
                if let Some(index) = b.spec.gauges().iter().position(|n| *n == rest) {
                    return Some(b.cells.gauges[index].read().0);
                }
            }
        }
        None
    }

    pub(crate) fn histogram_value(&self, name: &str) -> Option<HistogramStatistics> {
        if let Some(h) = self.histograms.get(name) {
            return Some(h.statistics());
        }
        for (i, _) in name.match_indices('.') {
            let (prefix, rest) = name.split_at(i + 1);
            for b in self.blocks.get(prefix).into_iter().flatten() {
                if let Some(index) = b.spec.histograms().iter().position(|(n, _)| *n == rest) {
                    return Some(b.cells.histograms[index].statistics());
                }
            }
        }
        None
    }

    pub(crate) fn flush(&self) {
        for h in self.histograms.values() {
            h.cell().flush();
        }
        for b in self.blocks.values().flatten() {
            for h in b.cells.histograms.iter() {
                h.flush();
            }
        }
    }

    /// The stats `q` selects. `matcher` filters the names made on first use (status codes).
    pub(crate) fn snapshot(&self, q: &StatsQuery, matcher: Option<&StatsMatcher>) -> Snapshot {
        let mut s = Snapshot::default();
        let keep = |name: &str, used: bool| (!q.used_only || used) && q.matches(name);
        let tagged = |name: &str| self.tagged.get(name).cloned();
        if q.wants(StatsType::Counters) {
            for (name, c) in &self.counters {
                if keep(name, c.used()) {
                    s.counters.push(Stat {
                        name: name.clone(),
                        value: c.value(),
                        tagged: tagged(name),
                    });
                }
            }
        }
        if q.wants(StatsType::Gauges) {
            for (name, g) in &self.gauges {
                if keep(name, g.used()) {
                    s.gauges.push(Stat {
                        name: name.clone(),
                        value: g.value(),
                        tagged: tagged(name),
                    });
                }
            }
        }
        if q.wants(StatsType::Histograms) {
            for (name, h) in &self.histograms {
                let h = h.cell();
                if keep(name, h.used()) {
                    s.histograms.push(HistStat {
                        name: name.clone(),
                        used: h.used(),
                        cumulative: h.statistics(),
                        interval: h.interval_statistics(),
                        tagged: tagged(name),
                    });
                }
            }
        }
        for (prefix, list) in &self.blocks {
            for b in list {
                self.block_snapshot(prefix, b, q, matcher, &mut s);
            }
        }
        s.counters.sort_by(|a, b| a.name.cmp(&b.name));
        s.gauges.sort_by(|a, b| a.name.cmp(&b.name));
        s.histograms.sort_by(|a, b| a.name.cmp(&b.name));
        s
    }

    fn block_snapshot(
        &self,
        prefix: &str,
        b: &Block,
        q: &StatsQuery,
        matcher: Option<&StatsMatcher>,
        s: &mut Snapshot,
    ) {
        let keep = |name: &str, used: bool| (!q.used_only || used) && q.matches(name);
        let counters = b.spec.counters();
        let gauges = b.spec.gauges();
        if q.wants(StatsType::Counters) {
            for (i, n) in counters.iter().enumerate() {
                let name = format!("{prefix}{n}");
                let (value, used) = counter_read(&b.cells.counters[i]);
                if !b.is_hidden(i) && keep(&name, used) {
                    s.counters.push(Stat {
                        name,
                        value,
                        tagged: None,
                    });
                }
            }
            if let (Some(stem), Some(codes)) = (
                b.spec.status_codes(),
                b.cells.codes.as_ref().and_then(|c| c.get()),
            ) {
                for (suffix, value) in codes.list() {
                    let name = format!("{prefix}{stem}{suffix}");
                    if matcher.is_none_or(|m| m.accepts(&name)) && keep(&name, true) {
                        s.counters.push(Stat {
                            name,
                            value,
                            tagged: None,
                        });
                    }
                }
            }
        }
        if q.wants(StatsType::Gauges) {
            for (i, n) in gauges.iter().enumerate() {
                let name = format!("{prefix}{n}");
                let (value, used) = b.cells.gauges[i].read();
                if !b.is_hidden(counters.len() + i) && keep(&name, used) {
                    s.gauges.push(Stat {
                        name,
                        value,
                        tagged: None,
                    });
                }
            }
        }
        if q.wants(StatsType::Histograms) {
            for (i, (n, _)) in b.spec.histograms().iter().enumerate() {
                let name = format!("{prefix}{n}");
                let h = &b.cells.histograms[i];
                if !b.is_hidden(counters.len() + gauges.len() + i) && keep(&name, h.used()) {
                    s.histograms.push(HistStat {
                        name,
                        used: h.used(),
                        cumulative: h.statistics(),
                        interval: h.interval_statistics(),
                        tagged: None,
                    });
                }
            }
        }
    }
}
