//! The `ROUND_ROBIN`, `LEAST_REQUEST` and `RANDOM` load balancer (Envoy's zone-unaware
//! `EdfLoadBalancerBase` family): priority, then locality when locality weighted, then a host.

use super::hosts::{HostList, Pick, WeightedIndex};
use super::priority::{PriorityPlan, Source, Split, effective_locality_weights};
use super::{LbContext, LbPolicy, LbSettings, LoadBalancer, SELECTION_ATTEMPTS, avoid, rng};
use crate::upstream::host::{Host, HostSet, PrioritySet};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct PickerLb {
    pick: Pick,
    plan: PriorityPlan,
    priorities: Box<[PriorityLists]>,
}

/// One priority's host lists, by source. A mesh keeps tens of thousands of these, most with
/// every host healthy: the other lists are boxed, and absent when empty.
#[derive(Debug)]
struct PriorityLists {
    healthy: SourceLists,
    /// `None` when no host is degraded.
    degraded: Option<Box<SourceLists>>,
    /// All hosts, for panic mode; `None` when every host is healthy (`healthy` has them all).
    all: Option<Box<HostList>>,
}

#[derive(Debug)]
struct SourceLists {
    hosts: HostList,
    /// Locality weighted LB: the schedule over effective locality weights and each locality's
    /// hosts. `None` when not locality weighted or when no locality has an effective weight.
    localities: Option<(WeightedIndex, Vec<HostList>)>,
}

impl SourceLists {
    fn new(hs: &HostSet, hosts: Vec<Arc<Host>>, locality_weighted: bool) -> Self {
        let localities = locality_weighted
            .then(|| {
                let weights = effective_locality_weights(hs, &hosts);
                // When one locality with weight holds every host, the plain list is the same
                // choice, without a copy.
                let mut weighted = weights.iter().enumerate().filter(|(_, w)| **w > 0);
                if let (Some((only, _)), None) = (weighted.next(), weighted.next())
                    && hosts.iter().all(|h| h.locality_index() == only)
                {
                    return None;
                }
                let index = WeightedIndex::new(weights);
                if index.is_empty() {
                    return None;
                }
                let mut per: Vec<Vec<Arc<Host>>> = vec![Vec::new(); hs.localities.len()];
                for h in &hosts {
                    if let Some(l) = per.get_mut(h.locality_index()) {
                        l.push(h.clone());
                    }
                }
                Some((index, per.into_iter().map(HostList::new).collect()))
            })
            .flatten();
        Self {
            hosts: HostList::new(hosts),
            localities,
        }
    }

    fn pick(&self, pick: Pick) -> Option<&Arc<Host>> {
        if let Some((index, lists)) = &self.localities
            && let Some(h) = index
                .next_rr()
                .and_then(|l| lists.get(l))
                .and_then(|l| l.pick(pick))
        {
            return Some(h);
        }
        self.hosts.pick(pick)
    }
}

impl PickerLb {
    pub(crate) fn new(settings: &LbSettings, set: &PrioritySet, plan: PriorityPlan) -> Self {
        let pick = match settings.policy {
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            } => Pick::LeastRequest {
                choice_count,
                bias: if active_request_bias.is_finite() {
                    active_request_bias.max(0.0)
                } else {
                    1.0
                },
            },
            LbPolicy::Random => Pick::Random,
            _ => Pick::RoundRobin,
        };
        let lw = settings.locality_weighted;
        let priorities = set
            .priorities
            .iter()
            .map(|hs| {
                let split = Split::of(hs);
                let all_healthy = split.healthy.len() == hs.hosts.len();
                PriorityLists {
                    healthy: SourceLists::new(hs, split.healthy, lw),
                    degraded: (!split.degraded.is_empty())
                        .then(|| Box::new(SourceLists::new(hs, split.degraded, lw))),
                    all: (!all_healthy).then(|| Box::new(HostList::new(hs.hosts.clone()))),
                }
            })
            .collect();
        Self {
            pick,
            plan,
            priorities,
        }
    }

    fn pick_once(&self, priority: usize, source: Source) -> Option<&Arc<Host>> {
        let p = self.priorities.get(priority)?;
        match source {
            Source::Healthy => p.healthy.pick(self.pick),
            Source::Degraded => p.degraded.as_ref()?.pick(self.pick),
            Source::All => p.all.as_deref().unwrap_or(&p.healthy.hosts).pick(self.pick),
        }
    }
}

impl LoadBalancer for PickerLb {
    fn choose_with_panic(&self, ctx: &LbContext<'_>) -> Option<(Arc<Host>, bool)> {
        let (priority, source) = self.plan.choose(rng::next_u64())?;
        let panic = source == Source::All;
        let mut last = None;
        for _ in 0..SELECTION_ATTEMPTS {
            let h = self.pick_once(priority, source)?;
            if !avoid(h, ctx, panic) {
                return Some((h.clone(), panic));
            }
            last = Some(h);
        }
        // Every attempt hit a host to avoid: look through the whole source once.
        let p = self.priorities.get(priority)?;
        let list = match source {
            Source::Healthy => &p.healthy.hosts,
            Source::Degraded => &p.degraded.as_ref()?.hosts,
            Source::All => p.all.as_deref().unwrap_or(&p.healthy.hosts),
        };
        let n = list.hosts.len();
        let start = rng::below(n as u64) as usize;
        (0..n)
            .filter_map(|k| list.hosts.get((start + k) % n))
            .find(|h| !avoid(h, ctx, panic))
            .or(last)
            .map(|h| (h.clone(), panic))
    }
}
