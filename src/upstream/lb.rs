//! Load balancers: which host of a cluster takes the next request, as Envoy's
//! `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`, `RING_HASH` and `MAGLEV` policies do, over
//! priority levels (with the overprovisioning factor), localities (locality weighted LB) and
//! the healthy panic threshold.
//!
//! A [`LoadBalancer`] is built by [`build`] off the request path whenever a cluster's
//! [`PrioritySet`] or the health of its hosts changes: everything that depends on health
//! (priority load, panic, locality weights, hash tables) is computed then. [`LoadBalancer::choose`]
//! only reads that snapshot, plus atomics (round-robin counters, `active_requests`) and a
//! thread-local random generator: no lock, no allocation.
//!
//! Depends on `config` and `upstream::host` only.
//!
//! Host health at build time:
//! - *healthy*: [`Host::is_healthy`] and not [`Host::is_degraded`];
//! - *degraded*: healthy and degraded; used only for the share of load healthy hosts cannot
//!   take, as Envoy's degraded priority load;
//! - *unhealthy*: the rest; used only in panic mode.
//!
//! Differences from Envoy, all lock-free stand-ins with the same long-run result:
//! - Weighted round robin uses a golden-ratio stride over the weights instead of an EDF
//!   scheduler: over every cycle of Σweights picks each host is chosen exactly `weight` times,
//!   spread over the cycle; with equal weights it is a plain rotation. Locality choice uses the
//!   same schedule over effective locality weights.
//! - `LEAST_REQUEST` with unequal weights samples `choice_count` hosts in proportion to their
//!   weight and keeps the one with the lowest `active_requests^bias / weight` (Envoy runs an EDF
//!   over `weight / (active_requests + 1)^bias`); with `bias == 0` it is weighted round robin, as
//!   in Envoy.
//! - `RANDOM` ignores host weights, as Envoy's does.
//! - For `RING_HASH` and `MAGLEV`, each priority has one table over its healthy hosts (all hosts
//!   when it is in panic, its degraded hosts when it has no healthy one).
//! - Health changes that happen after `build` are noticed only as a best effort: a picked host
//!   that is now unhealthy is skipped like an excluded host. Rebuild on health changes.

mod config;
mod hashed;
mod hosts;
mod maglev;
mod picker;
mod priority;
mod ring_hash;
mod rng;

use super::host::{Host, PrioritySet};
use std::sync::Arc;

/// Envoy's default `healthy_panic_threshold` (50%).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;
/// Default `RingHashLbConfig.minimum_ring_size`.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Default and largest `RingHashLbConfig.maximum_ring_size` (8M).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Default `MaglevLbConfig.table_size`.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
/// Largest `MaglevLbConfig.table_size`.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

/// A cluster's load balancing policy: `Cluster.lb_policy` with its `lb_config`, or the first
/// supported `Cluster.load_balancing_policy.policies` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// `ROUND_ROBIN` / `envoy.load_balancing_policies.round_robin`.
    RoundRobin,
    /// `LEAST_REQUEST` / `envoy.load_balancing_policies.least_request`.
    LeastRequest {
        /// `choice_count` (default 2, at least 2).
        choice_count: u32,
        /// `active_request_bias.default_value` (default 1.0, at least 0).
        active_request_bias: f64,
    },
    /// `RANDOM` / `envoy.load_balancing_policies.random`.
    Random,
    /// `RING_HASH` / `envoy.load_balancing_policies.ring_hash` (xxHash only).
    RingHash {
        /// `minimum_ring_size` (default 1024).
        min_ring_size: u64,
        /// `maximum_ring_size` (default and largest 8M).
        max_ring_size: u64,
    },
    /// `MAGLEV` / `envoy.load_balancing_policies.maglev`.
    Maglev {
        /// `table_size`: a prime, default 65537, at most 5000011.
        table_size: u64,
    },
}

/// Everything [`build`] needs from a `Cluster`.
#[derive(Debug, Clone, PartialEq)]
pub struct LbSettings {
    /// The policy.
    pub policy: LbPolicy,
    /// `common_lb_config.locality_weighted_lb_config` (or a typed policy's locality config):
    /// pick a locality by its effective weight, then a host in it.
    pub locality_weighted: bool,
    /// `common_lb_config.healthy_panic_threshold` in percent (default 50; 0 disables panic).
    pub healthy_panic_threshold: f64,
}

impl Default for LbSettings {
    fn default() -> Self {
        Self {
            policy: LbPolicy::RoundRobin,
            locality_weighted: false,
            healthy_panic_threshold: DEFAULT_PANIC_THRESHOLD,
        }
    }
}

/// What a request brings to host choice.
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The request hash (`RouteAction.hash_policy`), for `RING_HASH` and `MAGLEV`; without
    /// one they pick at random.
    pub hash: Option<u64>,
    /// Hosts to avoid if possible (retries with `previous_hosts`); best effort, as Envoy's
    /// `host_selection_retry_max_attempts`.
    pub excluded: &'a [Arc<Host>],
}

/// A load balancer over one snapshot of a cluster's hosts.
pub trait LoadBalancer: Send + Sync + std::fmt::Debug {
    /// Pick a host, or `None` when there is none to pick (no host, or all priorities empty).
    fn choose(&self, ctx: &LbContext<'_>) -> Option<Arc<Host>> {
        self.choose_with_panic(ctx).map(|(h, _)| h)
    }
    /// Pick a host, and whether it was picked in panic mode (among all hosts of a priority
    /// with too few healthy ones: the cluster's `lb_healthy_panic`).
    fn choose_with_panic(&self, ctx: &LbContext<'_>) -> Option<(Arc<Host>, bool)>;
}

/// How many picks a load balancer makes before giving up on avoiding excluded hosts.
const SELECTION_ATTEMPTS: u32 = 4;

/// Build the load balancer for `set` as it is now (host list and health).
pub fn build(settings: &LbSettings, set: &Arc<PrioritySet>) -> Arc<dyn LoadBalancer> {
    let plan = priority::PriorityPlan::new(set, settings.healthy_panic_threshold);
    match &settings.policy {
        LbPolicy::RoundRobin | LbPolicy::LeastRequest { .. } | LbPolicy::Random => {
            Arc::new(picker::PickerLb::new(settings, set, plan))
        }
        LbPolicy::RingHash {
            min_ring_size,
            max_ring_size,
        } => {
            let (min, max) = (*min_ring_size, *max_ring_size);
            Arc::new(hashed::HashedLb::new(
                set,
                plan,
                settings.locality_weighted,
                |w| ring_hash::Ring::new(w, min, max),
            ))
        }
        LbPolicy::Maglev { table_size } => {
            let size = *table_size;
            Arc::new(hashed::HashedLb::new(
                set,
                plan,
                settings.locality_weighted,
                |w| maglev::Maglev::new(w, size),
            ))
        }
    }
}

/// Whether `host` should not be picked now: excluded by the caller, or no longer healthy
/// (unless the pick is from all hosts, in panic).
fn avoid(host: &Arc<Host>, ctx: &LbContext<'_>, panic: bool) -> bool {
    (!panic && !host.is_healthy())
        || ctx
            .excluded
            .iter()
            .any(|e| Arc::ptr_eq(e, host) || e.address == host.address)
}

#[cfg(test)]
mod tests;
