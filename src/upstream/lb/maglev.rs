//! `MAGLEV`: Envoy's weighted Maglev table. Each host has a permutation of the table given by
//! `offset = xxh64(address, 0) mod M` and `skip = xxh64(address, 1) mod (M − 1) + 1`; in each
//! round, hosts whose weight has caught up with their share take their next free slot, so slots
//! end up in proportion to weight. A request goes to slot `hash mod M`.

use super::hashed::{HashTable, NormalizedWeights};
use super::{DEFAULT_MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE};
use crate::upstream::host::Host;
use std::sync::Arc;
use xxhash_rust::xxh64::xxh64;

pub(crate) struct Maglev {
    hosts: Vec<Arc<Host>>,
    /// Host index per slot.
    table: Vec<u32>,
}

struct Entry {
    offset: u64,
    skip: u64,
    weight: f64,
    target: f64,
    next: u64,
}

/// Whether `n` is prime (trial division; `n` is at most a few million).
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Maglev {
    /// `table_size` must be a prime no larger than 5000011 (config validation ensures it);
    /// anything else falls back to 65537 rather than build a table that cannot fill.
    pub(crate) fn new(weights: NormalizedWeights, table_size: u64) -> Self {
        let m = if table_size <= MAX_MAGLEV_TABLE_SIZE && is_prime(table_size) {
            table_size
        } else {
            DEFAULT_MAGLEV_TABLE_SIZE
        };
        let max_weight = weights.iter().map(|(_, w)| *w).fold(0.0f64, f64::max);
        let mut hosts = Vec::with_capacity(weights.len());
        let mut entries = Vec::with_capacity(weights.len());
        for (host, w) in weights {
            let key = host.address.to_string();
            entries.push(Entry {
                offset: xxh64(key.as_bytes(), 0) % m,
                skip: xxh64(key.as_bytes(), 1) % (m - 1) + 1,
                weight: w,
                target: 0.0,
                next: 0,
            });
            hosts.push(host);
        }
        let mut table = vec![u32::MAX; m as usize];
        if entries.is_empty() || max_weight <= 0.0 {
            return Self {
                hosts,
                table: Vec::new(),
            };
        }
        let permutation = |e: &Entry| {
            ((u128::from(e.offset) + u128::from(e.skip) * u128::from(e.next)) % u128::from(m))
                as usize
        };
        let mut filled: u64 = 0;
        let mut iteration: f64 = 1.0;
        while filled < m {
            for (idx, e) in entries.iter_mut().enumerate() {
                if filled >= m {
                    break;
                }
                if iteration * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut c = permutation(e);
                // `m` is prime and `skip` in 1..m, so the permutation reaches every slot.
                while table[c] != u32::MAX {
                    e.next += 1;
                    c = permutation(e);
                }
                table[c] = idx as u32;
                e.next += 1;
                filled += 1;
            }
            iteration += 1.0;
        }
        Self { hosts, table }
    }
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("hosts", &self.hosts.len())
            .field("table_size", &self.table.len())
            .finish()
    }
}

impl HashTable for Maglev {
    fn pick(&self, hash: u64, attempt: u32) -> Option<&Arc<Host>> {
        let m = self.table.len() as u64;
        if m == 0 {
            return None;
        }
        let hash = if attempt == 0 {
            hash
        } else {
            xxh64(&hash.to_le_bytes(), u64::from(attempt))
        };
        let owner = *self.table.get((hash % m) as usize)?;
        self.hosts.get(owner as usize)
    }
}
