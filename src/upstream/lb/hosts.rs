//! Weighted choice over a fixed list: a lock-free weighted round-robin schedule (used for hosts
//! and for localities) and the per-list picks of `ROUND_ROBIN`, `LEAST_REQUEST` and `RANDOM`.

use super::rng;
use crate::upstream::host::Host;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Weights as cumulative sums, with a round-robin schedule over them.
///
/// The schedule maps the `n`-th pick to position `(n mod total) * stride mod total` of the
/// cumulative range; `stride` is coprime with `total`, so every cycle of `total` picks visits
/// each position once and each entry exactly `weight` times. The stride is near
/// `total / golden ratio`, which spreads an entry's picks over the cycle. Weights are divided by
/// their gcd first, so equal weights give a plain rotation.
#[derive(Debug)]
pub(crate) struct WeightedIndex {
    /// Empty when every weight is the same non-zero value: entry `i` is then position `i`
    /// (the common case, kept without an allocation).
    cumulative: Vec<u64>,
    total: u64,
    stride: u64,
    next: AtomicU64,
    equal: bool,
}

impl WeightedIndex {
    /// Entries with weight 0 are never picked. The schedule starts at a random point, as Envoy
    /// starts each worker's round robin at a random host.
    pub(crate) fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let weights: Vec<u64> = weights.into_iter().collect();
        let g = weights.iter().fold(0, |g, w| gcd(g, *w)).max(1);
        let mut total: u64 = 0;
        let cumulative = weights
            .iter()
            .map(|w| {
                total = total.saturating_add(w / g);
                total
            })
            .collect();
        let first_nonzero = weights.iter().find(|w| **w > 0);
        let equal = weights.iter().all(|w| *w == 0 || Some(w) == first_nonzero);
        let stride = if equal { 1 } else { golden_stride(total) };
        let dense = equal && weights.iter().all(|w| *w > 0);
        Self {
            cumulative: if dense { Vec::new() } else { cumulative },
            total,
            stride,
            next: AtomicU64::new(rng::next_u64()),
            equal,
        }
    }

    /// Whether nothing can be picked (no entry with a weight).
    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Whether all entries with a weight have the same one.
    pub(crate) fn equal_weights(&self) -> bool {
        self.equal
    }

    /// The next entry of the round-robin schedule.
    pub(crate) fn next_rr(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.total;
        let pos = (u128::from(n) * u128::from(self.stride) % u128::from(self.total)) as u64;
        Some(self.at(pos))
    }

    /// An entry chosen at random in proportion to its weight.
    pub(crate) fn weighted_random(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        Some(self.at(rng::below(self.total)))
    }

    fn at(&self, pos: u64) -> usize {
        if self.cumulative.is_empty() {
            return pos as usize;
        }
        self.cumulative.partition_point(|c| *c <= pos)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A stride coprime with `total`, close to `total / φ`.
fn golden_stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    let mut s = ((total as f64) * 0.618_033_988_749_895) as u64;
    s = s.clamp(1, total - 1);
    while gcd(s, total) != 1 {
        s = if s + 1 >= total { 1 } else { s + 1 };
    }
    s
}

/// Which per-list pick to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pick {
    RoundRobin,
    LeastRequest { choice_count: u32, bias: f64 },
    Random,
}

/// Hosts to choose among, with their weights.
#[derive(Debug)]
pub(crate) struct HostList {
    pub(crate) hosts: Vec<Arc<Host>>,
    index: WeightedIndex,
}

impl HostList {
    pub(crate) fn new(hosts: Vec<Arc<Host>>) -> Self {
        let index = WeightedIndex::new(hosts.iter().map(|h| u64::from(h.weight.max(1))));
        Self { hosts, index }
    }

    /// One pick according to `pick`.
    pub(crate) fn pick(&self, pick: Pick) -> Option<&Arc<Host>> {
        if self.hosts.is_empty() {
            return None;
        }
        let i = match pick {
            Pick::RoundRobin => self.index.next_rr()?,
            Pick::Random => rng::below(self.hosts.len() as u64) as usize,
            Pick::LeastRequest { bias, .. } if bias == 0.0 && !self.index.equal_weights() => {
                self.index.next_rr()?
            }
            Pick::LeastRequest { choice_count, bias } => self.least_request(choice_count, bias)?,
        };
        self.hosts.get(i)
    }

    /// Power of `choice_count` choices. With equal weights, uniform samples and the fewest
    /// active requests win (Envoy's P2C). With unequal weights, samples are drawn in proportion
    /// to weight and the lowest `active^bias / weight` wins; ties keep the earlier sample, so an
    /// idle cluster is balanced by weight.
    fn least_request(&self, choice_count: u32, bias: f64) -> Option<usize> {
        let equal = self.index.equal_weights();
        let n = self.hosts.len() as u64;
        let mut best: Option<(usize, f64)> = None;
        for _ in 0..choice_count.max(1) {
            let i = if equal {
                rng::below(n) as usize
            } else {
                self.index.weighted_random()?
            };
            let host = self.hosts.get(i)?;
            let active = host.active_requests.load(Ordering::Relaxed) as f64;
            let score = if equal {
                active
            } else {
                let load = if bias == 1.0 {
                    active
                } else {
                    active.powf(bias)
                };
                load / f64::from(host.weight.max(1))
            };
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rr_cycle_is_exact_and_equal_weights_rotate() {
        let idx = WeightedIndex::new([5, 1, 1, 3]);
        let mut counts = [0; 4];
        for _ in 0..10 * 7 {
            counts[idx.next_rr().unwrap()] += 1;
        }
        assert_eq!(counts, [35, 7, 7, 21]);

        let idx = WeightedIndex::new([4, 4, 4]);
        let first = idx.next_rr().unwrap();
        for k in 1..9 {
            assert_eq!(idx.next_rr().unwrap(), (first + k) % 3);
        }
    }

    #[test]
    fn zero_weights_are_skipped() {
        let idx = WeightedIndex::new([0, 2, 0]);
        for _ in 0..10 {
            assert_eq!(idx.next_rr(), Some(1));
            assert_eq!(idx.weighted_random(), Some(1));
        }
        assert!(WeightedIndex::new([0, 0]).next_rr().is_none());
        assert!(WeightedIndex::new([]).weighted_random().is_none());
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let idx = WeightedIndex::new([u64::MAX, u64::MAX, 3]);
        for _ in 0..100 {
            assert!(idx.next_rr().unwrap() < 3);
        }
    }
}
