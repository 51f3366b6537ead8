//! `choose` never panics and returns a member of the set, for arbitrary sets and settings.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct ArbHost {
    weight: u32,
    healthy: bool,
    degraded: bool,
    locality: usize,
}

fn arb_host() -> impl Strategy<Value = ArbHost> {
    (1u32..1000, any::<bool>(), any::<bool>(), 0usize..3).prop_map(
        |(weight, healthy, degraded, locality)| ArbHost {
            weight,
            healthy,
            degraded,
            locality,
        },
    )
}

fn arb_policy() -> impl Strategy<Value = LbPolicy> {
    prop_oneof![
        Just(LbPolicy::RoundRobin),
        (1u32..5, 0.0f64..3.0).prop_map(|(choice_count, active_request_bias)| {
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            }
        }),
        Just(LbPolicy::Random),
        (0u64..2048, 0u64..4096).prop_map(|(min_ring_size, max_ring_size)| LbPolicy::RingHash {
            min_ring_size,
            max_ring_size,
        }),
        prop_oneof![Just(7u64), Just(101), Just(12), Just(0)]
            .prop_map(|table_size| LbPolicy::Maglev { table_size }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn choose_never_panics_and_returns_a_member(
        levels in prop::collection::vec(prop::collection::vec(arb_host(), 0..8), 0..4),
        policy in arb_policy(),
        locality_weighted in any::<bool>(),
        threshold in 0.0f64..100.0,
        hashes in prop::collection::vec(any::<Option<u64>>(), 1..20),
        active in any::<u64>(),
    ) {
        let mut n = 0;
        let set = Arc::new(PrioritySet {
            priorities: levels
                .iter()
                .map(|level| {
                    let hosts = level
                        .iter()
                        .map(|a| {
                            n += 1;
                            let h = host(n, a.weight, a.locality);
                            h.healthy.store(a.healthy, Ordering::Relaxed);
                            h.degraded.store(a.degraded, Ordering::Relaxed);
                            h.active_requests.store(active % (u64::from(n) + 1), Ordering::Relaxed);
                            h
                        })
                        .collect();
                    host_set(hosts, &[1, 2, 3])
                })
                .collect(),
        });
        let lb = build(
            &LbSettings { policy, locality_weighted, healthy_panic_threshold: threshold },
            &set,
        );
        for hash in hashes {
            let excluded: Vec<_> = set.all_hosts().take(1).cloned().collect();
            for ex in [&[][..], &excluded[..]] {
                let got = lb.choose(&LbContext { hash, excluded: ex });
                match got {
                    Some(h) => prop_assert!(set.all_hosts().any(|m| Arc::ptr_eq(m, &h))),
                    None => prop_assert!(set.is_empty() || threshold == 0.0),
                }
            }
        }
    }
}
