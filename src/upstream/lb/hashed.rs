//! The frame of the consistent-hash load balancers (Envoy's `ThreadAwareLoadBalancerBase`):
//! one table per priority, built from normalized host weights; the request hash picks the
//! priority, then the table entry.

use super::priority::{PriorityPlan, Source, Split};
use super::{LbContext, LoadBalancer, SELECTION_ATTEMPTS, avoid, rng};
use crate::upstream::host::{Host, HostSet, PrioritySet};
use std::sync::Arc;

/// Hosts with weights that sum to 1.
pub(crate) type NormalizedWeights = Vec<(Arc<Host>, f64)>;

/// A consistent-hash table over one priority's hosts.
pub(crate) trait HashTable: Send + Sync + std::fmt::Debug {
    /// The host for `hash`; `attempt > 0` asks for an alternative (retries).
    fn pick(&self, hash: u64, attempt: u32) -> Option<&Arc<Host>>;
}

#[derive(Debug)]
pub(crate) struct HashedLb<T> {
    plan: PriorityPlan,
    /// Per priority; `None` when it has no host to hash onto.
    tables: Vec<Option<T>>,
}

impl<T: HashTable> HashedLb<T> {
    pub(crate) fn new(
        set: &PrioritySet,
        plan: PriorityPlan,
        locality_weighted: bool,
        make: impl Fn(NormalizedWeights) -> T,
    ) -> Self {
        let tables = set
            .priorities
            .iter()
            .enumerate()
            .map(|(i, hs)| {
                let split = Split::of(hs);
                let hosts = if plan.panic.get(i).copied().unwrap_or(false) {
                    hs.hosts.clone()
                } else if !split.healthy.is_empty() {
                    split.healthy
                } else {
                    split.degraded
                };
                let weights = normalize(hs, &hosts, locality_weighted);
                (!weights.is_empty()).then(|| make(weights))
            })
            .collect();
        Self { plan, tables }
    }
}

/// Envoy's `normalizeWeights`: host weight over the sum of weights; when locality weighted, each
/// locality's share is its configured weight over the sum of the weights of localities that
/// have hosts here. Hosts whose share is 0 are left out.
fn normalize(hs: &HostSet, hosts: &[Arc<Host>], locality_weighted: bool) -> NormalizedWeights {
    let mut out = Vec::with_capacity(hosts.len());
    if !locality_weighted {
        let sum: f64 = hosts.iter().map(|h| f64::from(h.weight.max(1))).sum();
        for h in hosts {
            out.push((h.clone(), f64::from(h.weight.max(1)) / sum));
        }
        return out;
    }
    let n = hs.localities.len();
    let mut host_sum = vec![0f64; n];
    for h in hosts {
        if let Some(s) = host_sum.get_mut(h.locality_index()) {
            *s += f64::from(h.weight.max(1));
        }
    }
    let locality_total: f64 = hs
        .localities
        .iter()
        .zip(&host_sum)
        .filter(|(_, s)| **s > 0.0)
        .map(|(l, _)| f64::from(l.weight))
        .sum();
    if locality_total <= 0.0 {
        return out;
    }
    for h in hosts {
        let (Some(l), Some(s)) = (
            hs.localities.get(h.locality_index()),
            host_sum.get(h.locality_index()),
        ) else {
            continue;
        };
        let w = f64::from(l.weight) / locality_total * f64::from(h.weight.max(1)) / s;
        if w > 0.0 {
            out.push((h.clone(), w));
        }
    }
    out
}

impl<T: HashTable> LoadBalancer for HashedLb<T> {
    fn choose_with_panic(&self, ctx: &LbContext<'_>) -> Option<(Arc<Host>, bool)> {
        let hash = ctx.hash.unwrap_or_else(rng::next_u64);
        let (priority, source) = self.plan.choose(hash)?;
        let table = self.tables.get(priority)?.as_ref()?;
        let panic = source == Source::All;
        let mut last = None;
        for attempt in 0..SELECTION_ATTEMPTS {
            let h = table.pick(hash, attempt)?;
            if !avoid(h, ctx, panic) {
                return Some((h.clone(), panic));
            }
            last = Some(h);
        }
        last.map(|h| (h.clone(), panic))
    }
}
