//! Priority load and panic, as Envoy's `LoadBalancerBase`: each priority's availability is
//! `min(100, overprovisioning_factor × healthy / total)` (and the same for degraded hosts);
//! load goes to the highest priorities first, healthy hosts before degraded ones, scaled up when
//! the sum of availabilities is below 100. A priority whose healthy-plus-degraded percentage is
//! under the panic threshold picks among all its hosts; when every priority is in panic, load
//! is shared in proportion to host counts.

use crate::upstream::host::{Host, HostSet, PrioritySet};
use std::sync::Arc;

/// Which hosts of a priority a pick draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Healthy,
    Degraded,
    /// Panic mode: every host.
    All,
}

/// A priority's hosts split by health at build time.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) healthy: Vec<Arc<Host>>,
    pub(crate) degraded: Vec<Arc<Host>>,
}

impl Split {
    pub(crate) fn of(hs: &HostSet) -> Self {
        let mut s = Split::default();
        for h in &hs.hosts {
            if h.is_healthy() {
                if h.is_degraded() {
                    s.degraded.push(h.clone());
                } else {
                    s.healthy.push(h.clone());
                }
            }
        }
        s
    }
}

/// Per request: `r in 0..100` → priority and source.
#[derive(Debug)]
pub(crate) struct PriorityPlan {
    /// The 100 load slots as bands in order: each (end, priority, source) takes the slots
    /// from the previous band's end up to `end` (exclusive). Empty when the set has no
    /// priority. Bands instead of 100 entries: a plan is kept per cluster, and a mesh has
    /// tens of thousands of clusters with one or two bands each.
    bands: Box<[(u8, usize, Source)]>,
    /// Per priority: in panic.
    pub(crate) panic: Box<[bool]>,
    /// Healthy and degraded load per priority, in percent: the bands say it all, so these are
    /// kept for tests only.
    #[cfg(test)]
    pub(crate) healthy_load: Vec<u32>,
    #[cfg(test)]
    pub(crate) degraded_load: Vec<u32>,
}

impl PriorityPlan {
    pub(crate) fn new(set: &PrioritySet, panic_threshold: f64) -> Self {
        let n = set.priorities.len();
        let splits: Vec<Split> = set.priorities.iter().map(Split::of).collect();
        let mut health = vec![0u32; n];
        let mut degraded = vec![0u32; n];
        for (i, (hs, split)) in set.priorities.iter().zip(&splits).enumerate() {
            let weigh = |hosts: &[Arc<Host>]| -> u64 {
                if hs.weighted_priority_health {
                    hosts.iter().map(|h| u64::from(h.weight)).sum()
                } else {
                    hosts.len() as u64
                }
            };
            let total = weigh(&hs.hosts);
            if total > 0 {
                let factor = u64::from(hs.overprovisioning_factor);
                let avail = |part: u64| (factor.saturating_mul(part) / total).min(100) as u32;
                health[i] = avail(weigh(&split.healthy));
                degraded[i] = avail(weigh(&split.degraded));
            }
        }
        let normalized: u32 = health
            .iter()
            .chain(&degraded)
            .fold(0u32, |a, b| a.saturating_add(*b))
            .min(100);

        let threshold = if panic_threshold.is_finite() {
            panic_threshold.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let panic: Vec<bool> = set
            .priorities
            .iter()
            .zip(&splits)
            .map(|(hs, split)| {
                threshold > 0.0 && {
                    let total = hs.hosts.len();
                    let up = split.healthy.len() + split.degraded.len();
                    total == 0 || 100.0 * (up as f64) / (total as f64) < threshold
                }
            })
            .collect();

        let mut healthy_load = vec![0u32; n];
        let mut degraded_load = vec![0u32; n];
        if n > 0 {
            if normalized == 0 && threshold == 0.0 {
                healthy_load[0] = 100;
            } else if normalized < 100 && panic.iter().all(|p| *p) {
                total_panic_load(set, &mut healthy_load);
            } else if normalized > 0 {
                let (first_h, rest) = distribute(&mut healthy_load, &health, 100, normalized);
                let (first_d, rest) = distribute(&mut degraded_load, &degraded, rest, normalized);
                if rest > 0 {
                    if let Some(i) = first_h {
                        healthy_load[i] += rest;
                    } else if let Some(i) = first_d {
                        degraded_load[i] += rest;
                    }
                }
            } else {
                // No availability yet some priority out of panic: an overprovisioning factor
                // so small that availability rounds down to 0. Envoy finds no load anywhere
                // and falls back to priority 0.
                healthy_load[0] = 100;
            }
        }

        let mut bands: Vec<(u8, usize, Source)> = Vec::new();
        if n > 0 {
            let source = |i: usize, s: Source| if panic[i] { Source::All } else { s };
            let mut end = 0u32;
            let loads = healthy_load
                .iter()
                .enumerate()
                .map(|(i, l)| (i, Source::Healthy, *l))
                .chain(
                    degraded_load
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (i, Source::Degraded, *l)),
                );
            for (i, s, l) in loads {
                if l == 0 || end >= 100 {
                    continue;
                }
                end = (end + l).min(100);
                bands.push((end as u8, i, source(i, s)));
            }
            // Loads sum to 100; guard against rounding all the same: the last band (or
            // priority 0's healthy hosts) takes the rest.
            match bands.last_mut() {
                Some(last) => last.0 = 100,
                None => bands.push((100, 0, source(0, Source::Healthy))),
            }
        }
        Self {
            bands: bands.into_boxed_slice(),
            panic: panic.into_boxed_slice(),
            #[cfg(test)]
            healthy_load,
            #[cfg(test)]
            degraded_load,
        }
    }

    /// The priority and source for the request number `r` (random or a hash).
    pub(crate) fn choose(&self, r: u64) -> Option<(usize, Source)> {
        let slot = (r % 100) as u8;
        self.bands
            .iter()
            .find(|b| slot < b.0)
            .map(|&(_, priority, source)| (priority, source))
    }
}

/// Envoy's `distributeLoad`: as much load as each priority's availability allows, in order.
/// Returns the first priority with availability and the load left over.
fn distribute(
    load: &mut [u32],
    availability: &[u32],
    mut total: u32,
    normalized: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (i, a) in availability.iter().enumerate() {
        if first.is_none() && *a > 0 {
            first = Some(i);
        }
        let l = (a.saturating_mul(100) / normalized.max(1)).min(total);
        load[i] = l;
        total -= l;
    }
    (first, total)
}

/// Envoy's `recalculateLoadInTotalPanic`: load in proportion to host counts.
fn total_panic_load(set: &PrioritySet, load: &mut [u32]) {
    let total: usize = set.len();
    if total == 0 {
        load[0] = 100;
        return;
    }
    let mut left = 100u32;
    let mut first = None;
    for (i, hs) in set.priorities.iter().enumerate() {
        if first.is_none() && !hs.hosts.is_empty() {
            first = Some(i);
        }
        let l = (100 * hs.hosts.len() / total) as u32;
        load[i] = l;
        left -= l;
    }
    load[first.unwrap_or(0)] += left;
}

/// Effective locality weights for locality weighted LB, Envoy's `effectiveLocalityWeight`:
/// `weight × min(1, overprovisioning_factor × eligible / total)`, in units of 1/10000 so that
/// integers keep the precision. Localities with no host or weight 0 get 0.
pub(crate) fn effective_locality_weights(hs: &HostSet, eligible: &[Arc<Host>]) -> Vec<u64> {
    let n = hs.localities.len();
    let mut total = vec![0u64; n];
    let mut up = vec![0u64; n];
    for h in &hs.hosts {
        if let Some(t) = total.get_mut(h.locality_index()) {
            *t += 1;
        }
    }
    for h in eligible {
        if let Some(u) = up.get_mut(h.locality_index()) {
            *u += 1;
        }
    }
    let factor = u64::from(hs.overprovisioning_factor);
    hs.localities
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if total[i] == 0 {
                return 0;
            }
            let avail = (factor.saturating_mul(up[i]).saturating_mul(100) / total[i]).min(10_000);
            u64::from(l.weight) * avail
        })
        .collect()
}
