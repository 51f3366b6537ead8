use super::*;
use crate::config::Address;
use crate::upstream::host::{HostSet, Locality};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

fn host(i: u32, weight: u32, locality: usize) -> Arc<Host> {
    let addr = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
    let mut h = Host::new(Address::Tcp(addr.parse().unwrap()), "", weight);
    h.locality = locality as u32;
    Arc::new(h)
}

fn hosts(n: u32) -> Vec<Arc<Host>> {
    (0..n).map(|i| host(i, 1, 0)).collect()
}

fn host_set(hosts: Vec<Arc<Host>>, locality_weights: &[u32]) -> HostSet {
    HostSet {
        hosts,
        localities: locality_weights
            .iter()
            .map(|w| Locality {
                name: "".into(),
                weight: *w,
            })
            .collect(),
        overprovisioning_factor: 140,
        weighted_priority_health: false,
    }
}

fn set_of(levels: Vec<Vec<Arc<Host>>>) -> Arc<PrioritySet> {
    Arc::new(PrioritySet {
        priorities: levels.into_iter().map(|h| host_set(h, &[1])).collect(),
    })
}

fn settings(policy: LbPolicy) -> LbSettings {
    LbSettings {
        policy,
        ..LbSettings::default()
    }
}

fn least_request() -> LbPolicy {
    LbPolicy::LeastRequest {
        choice_count: 2,
        active_request_bias: 1.0,
    }
}

fn ring() -> LbPolicy {
    LbPolicy::RingHash {
        min_ring_size: DEFAULT_MIN_RING_SIZE,
        max_ring_size: MAX_RING_SIZE,
    }
}

fn maglev() -> LbPolicy {
    LbPolicy::Maglev {
        table_size: DEFAULT_MAGLEV_TABLE_SIZE,
    }
}

fn all_policies() -> Vec<LbPolicy> {
    vec![
        LbPolicy::RoundRobin,
        least_request(),
        LbPolicy::Random,
        ring(),
        maglev(),
    ]
}

fn set_unhealthy(h: &Host) {
    h.healthy.store(false, Ordering::Relaxed);
}

/// Picks per host address over `n` choices.
fn spread(lb: &dyn LoadBalancer, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let h = lb.choose(&LbContext::default()).unwrap();
        *out.entry(h.address.to_string()).or_default() += 1;
    }
    out
}

fn count(spread: &HashMap<String, usize>, h: &Host) -> usize {
    spread.get(&h.address.to_string()).copied().unwrap_or(0)
}

fn assert_near(got: usize, want: f64, tolerance: f64) {
    assert!(
        (got as f64 - want).abs() <= want * tolerance,
        "got {got}, want {want} ± {}%",
        tolerance * 100.0
    );
}

#[test]
fn round_robin_matches_weights_over_a_cycle() {
    let hs = vec![host(0, 1, 0), host(1, 2, 0), host(2, 3, 0)];
    let lb = build(&settings(LbPolicy::RoundRobin), &set_of(vec![hs.clone()]));
    let s = spread(lb.as_ref(), 6 * 50);
    assert_eq!(count(&s, &hs[0]), 50);
    assert_eq!(count(&s, &hs[1]), 100);
    assert_eq!(count(&s, &hs[2]), 150);
}

#[test]
fn round_robin_with_equal_weights_rotates() {
    let hs: Vec<_> = (0..4).map(|i| host(i, 10, 0)).collect();
    let lb = build(&settings(LbPolicy::RoundRobin), &set_of(vec![hs.clone()]));
    let picks: Vec<_> = (0..8)
        .map(|_| lb.choose(&LbContext::default()).unwrap())
        .collect();
    for w in picks.windows(4) {
        let mut addrs: Vec<_> = w.iter().map(|h| h.address.to_string()).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 4, "each window of 4 picks visits every host");
    }
}

#[test]
fn random_spreads_evenly() {
    let hs = hosts(4);
    let lb = build(&settings(LbPolicy::Random), &set_of(vec![hs.clone()]));
    let s = spread(lb.as_ref(), 40_000);
    for h in &hs {
        assert_near(count(&s, h), 10_000.0, 0.1);
    }
}

#[test]
fn least_request_avoids_busy_hosts() {
    let hs = hosts(3);
    hs[0].active_requests.store(10, Ordering::Relaxed);
    let lb = build(&settings(least_request()), &set_of(vec![hs.clone()]));
    let s = spread(lb.as_ref(), 9_000);
    // Only when both choices are the busy host: 1/9.
    assert_near(count(&s, &hs[0]), 1_000.0, 0.25);
    assert_near(count(&s, &hs[1]), 4_000.0, 0.1);
}

#[test]
fn least_request_with_weights() {
    let hs = vec![host(0, 1, 0), host(1, 3, 0)];
    let lb = build(&settings(least_request()), &set_of(vec![hs.clone()]));
    let s = spread(lb.as_ref(), 20_000);
    assert_near(count(&s, &hs[0]), 5_000.0, 0.1);
    assert_near(count(&s, &hs[1]), 15_000.0, 0.1);

    // A busy heavy host loses to an idle light one.
    hs[1].active_requests.store(100, Ordering::Relaxed);
    let s = spread(lb.as_ref(), 10_000);
    assert!(count(&s, &hs[0]) > 4_000, "{s:?}");

    // Bias 0 is weighted round robin.
    let lb = build(
        &settings(LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 0.0,
        }),
        &set_of(vec![hs.clone()]),
    );
    let s = spread(lb.as_ref(), 400);
    assert_eq!(count(&s, &hs[0]), 100);
}

fn hash_map(lb: &dyn LoadBalancer, keys: u64) -> Vec<String> {
    (0..keys)
        .map(|k| {
            let hash = xxhash_rust::xxh64::xxh64(&k.to_le_bytes(), 7);
            let ctx = LbContext {
                hash: Some(hash),
                excluded: &[],
            };
            lb.choose(&ctx).unwrap().address.to_string()
        })
        .collect()
}

fn consistent_hashing(policy: LbPolicy, max_moved: f64) {
    let hs = hosts(10);
    let lb = build(&settings(policy.clone()), &set_of(vec![hs.clone()]));
    let before = hash_map(lb.as_ref(), 20_000);
    assert_eq!(
        before,
        hash_map(lb.as_ref(), 20_000),
        "same hash, same host"
    );

    let mut counts: HashMap<&String, usize> = HashMap::new();
    for a in &before {
        *counts.entry(a).or_default() += 1;
    }
    assert_eq!(counts.len(), 10);
    for c in counts.values() {
        assert_near(*c, 2_000.0, 0.35);
    }

    let removed = hs[3].address.to_string();
    let rest: Vec<_> = hs
        .iter()
        .filter(|h| h.address.to_string() != removed)
        .cloned()
        .collect();
    let lb = build(&settings(policy), &set_of(vec![rest]));
    let after = hash_map(lb.as_ref(), 20_000);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let fraction = moved as f64 / 20_000.0;
    assert!(fraction < max_moved, "moved {fraction}");
    assert!(after.iter().all(|a| *a != removed));
}

#[test]
fn ring_hash_is_consistent() {
    // 1/10 of the keys were on the removed host; the ring is also rescaled so that each of
    // the 9 hosts left gets more entries (as in Envoy), which moves a few more.
    consistent_hashing(ring(), 0.2);
}

#[test]
fn maglev_is_consistent() {
    consistent_hashing(maglev(), 0.2);
}

#[test]
fn hash_policies_honour_weights_and_pick_at_random_without_hash() {
    for policy in [ring(), maglev()] {
        let hs = vec![host(0, 1, 0), host(1, 3, 0)];
        let lb = build(&settings(policy), &set_of(vec![hs.clone()]));
        let s = spread(lb.as_ref(), 20_000);
        assert_near(count(&s, &hs[0]), 5_000.0, 0.15);
    }
}

#[test]
fn ring_size_is_scaled_and_bounded() {
    let w = |n: usize| -> hashed::NormalizedWeights {
        hosts(n as u32)
            .into_iter()
            .map(|h| (h, 1.0 / n as f64))
            .collect()
    };
    assert_eq!(
        ring_hash::Ring::new(w(3), 1024, MAX_RING_SIZE).len(),
        3 * 342
    );
    assert_eq!(ring_hash::Ring::new(w(4), 1024, 8).len(), 8);
    // The maximum wins even below the host count (Envoy would build an empty ring).
    assert_eq!(ring_hash::Ring::new(w(2), 0, 0).len(), 1);
}

#[test]
fn priorities_spill_over_with_the_overprovisioning_factor() {
    let p0 = hosts(10);
    let p1: Vec<_> = (100..110).map(|i| host(i, 1, 0)).collect();
    let set = set_of(vec![p0.clone(), p1.clone()]);
    let plan = priority::PriorityPlan::new(&set, 50.0);
    assert_eq!(plan.healthy_load, [100, 0]);

    // 8 of 10 healthy: 112% capped at 100, no spill.
    p0[..2].iter().for_each(|h| set_unhealthy(h));
    let plan = priority::PriorityPlan::new(&set, 50.0);
    assert_eq!(plan.healthy_load, [100, 0]);

    // 5 of 10: 70% to P0, 30% to P1.
    p0[..5].iter().for_each(|h| set_unhealthy(h));
    let plan = priority::PriorityPlan::new(&set, 50.0);
    assert_eq!(plan.healthy_load, [70, 30]);
    let to = |p: usize| (0..100).filter(|r| plan.choose(*r).unwrap().0 == p).count();
    assert_eq!((to(0), to(1)), (70, 30));
    let lb = build(&settings(LbPolicy::RoundRobin), &set);
    let s = spread(lb.as_ref(), 10_000);
    let to_p1: usize = p1.iter().map(|h| count(&s, h)).sum();
    assert_near(to_p1, 3_000.0, 0.1);
    assert!(p0[..5].iter().all(|h| count(&s, h) == 0));
}

#[test]
fn degraded_hosts_take_what_healthy_hosts_cannot() {
    let p0 = hosts(10);
    for h in &p0[2..] {
        h.degraded.store(true, Ordering::Relaxed);
    }
    let set = set_of(vec![p0.clone()]);
    let plan = priority::PriorityPlan::new(&set, 50.0);
    assert_eq!(plan.healthy_load, [28]);
    assert_eq!(plan.degraded_load, [72]);
    // Each of the 100 slots goes to exactly one band, in order.
    let picks: Vec<_> = (0..100).map(|r| plan.choose(r).unwrap()).collect();
    assert!(
        picks[..28]
            .iter()
            .all(|p| *p == (0, priority::Source::Healthy))
    );
    assert!(
        picks[28..]
            .iter()
            .all(|p| *p == (0, priority::Source::Degraded))
    );
    assert_eq!(plan.choose(127), Some((0, priority::Source::Healthy)));
    assert_eq!(plan.choose(128), Some((0, priority::Source::Degraded)));
    let lb = build(&settings(LbPolicy::Random), &set);
    let s = spread(lb.as_ref(), 10_000);
    let healthy: usize = p0[..2].iter().map(|h| count(&s, h)).sum();
    assert_near(healthy, 2_800.0, 0.1);
}

#[test]
fn panic_mode_uses_all_hosts() {
    let hs = hosts(10);
    hs[..6].iter().for_each(|h| set_unhealthy(h));
    let set = set_of(vec![hs.clone()]);
    for policy in all_policies() {
        let lb = build(&settings(policy.clone()), &set);
        let s = spread(lb.as_ref(), 5_000);
        let to_unhealthy: usize = hs[..6].iter().map(|h| count(&s, h)).sum();
        assert!(to_unhealthy > 2_000, "{policy:?}: {s:?}");
    }
    // 40% healthy is above a 30% threshold: no panic.
    let lb = build(
        &LbSettings {
            healthy_panic_threshold: 30.0,
            ..settings(LbPolicy::RoundRobin)
        },
        &set,
    );
    let s = spread(lb.as_ref(), 1_000);
    assert!(hs[..6].iter().all(|h| count(&s, h) == 0));

    // Threshold 0 disables panic: nothing healthy means no host.
    hs.iter().for_each(|h| set_unhealthy(h));
    for policy in all_policies() {
        let lb = build(
            &LbSettings {
                healthy_panic_threshold: 0.0,
                ..settings(policy)
            },
            &set,
        );
        assert!(lb.choose(&LbContext::default()).is_none());
    }
}

#[test]
fn total_panic_shares_load_by_host_count() {
    let p0 = hosts(3);
    let p1: Vec<_> = (100..101).map(|i| host(i, 1, 0)).collect();
    p0.iter().chain(&p1).for_each(|h| set_unhealthy(h));
    let set = set_of(vec![p0, p1]);
    let plan = priority::PriorityPlan::new(&set, 50.0);
    assert_eq!(plan.healthy_load, [75, 25]);
    assert_eq!(*plan.panic, [true, true]);
}

#[test]
fn locality_weights_follow_health() {
    // X weight 1, Y weight 2; the table of Envoy's locality weighted LB docs.
    let x: Vec<_> = (0..10).map(|i| host(i, 1, 0)).collect();
    let y: Vec<_> = (100..110).map(|i| host(i, 1, 1)).collect();
    let set = Arc::new(PrioritySet {
        priorities: vec![host_set(x.iter().chain(&y).cloned().collect(), &[1, 2])],
    });
    let lw = |policy| LbSettings {
        locality_weighted: true,
        ..settings(policy)
    };
    let to_x = |lb: &dyn LoadBalancer, n| {
        let s = spread(lb, n);
        x.iter().map(|h| count(&s, h)).sum::<usize>()
    };
    let lb = build(&lw(LbPolicy::RoundRobin), &set);
    assert_eq!(to_x(lb.as_ref(), 3_000), 1_000);

    // Half of X healthy: 1 × 0.7 against 2, 26%.
    x[..5].iter().for_each(|h| set_unhealthy(h));
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        least_request(),
        ring(),
        maglev(),
    ] {
        let lb = build(&lw(policy.clone()), &set);
        let got = to_x(lb.as_ref(), 20_000);
        let want = if matches!(policy, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }) {
            // Hash policies use configured locality weights over healthy hosts, as Envoy.
            20_000.0 / 3.0
        } else {
            20_000.0 * 0.7 / 2.7
        };
        assert_near(got, want, 0.1);
    }
}

#[test]
fn excluded_hosts_are_avoided() {
    let hs = hosts(3);
    let set = set_of(vec![hs.clone()]);
    for policy in all_policies() {
        let lb = build(&settings(policy.clone()), &set);
        let excluded = [hs[0].clone(), hs[2].clone()];
        for k in 0..200u64 {
            let ctx = LbContext {
                hash: Some(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                excluded: &excluded,
            };
            let h = lb.choose(&ctx).unwrap();
            if !matches!(policy, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }) {
                assert!(Arc::ptr_eq(&h, &hs[1]), "{policy:?}");
            }
        }
        // Excluding everything still gives a host.
        let ctx = LbContext {
            hash: None,
            excluded: &hs,
        };
        assert!(lb.choose(&ctx).is_some());
    }
}

#[test]
fn hash_policies_mostly_avoid_excluded_hosts() {
    let hs = hosts(5);
    let set = set_of(vec![hs.clone()]);
    for policy in [ring(), maglev()] {
        let lb = build(&settings(policy.clone()), &set);
        let excluded = [hs[0].clone()];
        let hits = (0..2_000u64)
            .filter(|k| {
                let ctx = LbContext {
                    hash: Some(xxhash_rust::xxh64::xxh64(&k.to_le_bytes(), 1)),
                    excluded: &excluded,
                };
                Arc::ptr_eq(&lb.choose(&ctx).unwrap(), &hs[0])
            })
            .count();
        assert!(hits < 40, "{policy:?}: {hits}");
    }
}

#[test]
fn empty_sets_give_no_host() {
    for policy in all_policies() {
        for set in [
            Arc::new(PrioritySet::default()),
            set_of(vec![vec![]]),
            set_of(vec![vec![], vec![]]),
        ] {
            let lb = build(&settings(policy.clone()), &set);
            assert!(lb.choose(&LbContext::default()).is_none(), "{policy:?}");
        }
    }
}

#[test]
fn maglev_table_size_falls_back_when_not_prime() {
    let hs = hosts(2);
    let lb = build(
        &settings(LbPolicy::Maglev { table_size: 100 }),
        &set_of(vec![hs]),
    );
    assert!(lb.choose(&LbContext::default()).is_some());
    assert!(maglev::is_prime(65537) && maglev::is_prime(5_000_011));
    assert!(!maglev::is_prime(65535) && !maglev::is_prime(1) && !maglev::is_prime(0));
}

mod proptests;
