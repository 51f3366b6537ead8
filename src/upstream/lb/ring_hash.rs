//! `RING_HASH`: Envoy's ketama-style ring. Each host gets hashes of `"{address}_{i}"` (xxHash64)
//! in proportion to its normalized weight; the ring size is scaled so the lightest host gets a
//! whole number of entries, within `[minimum_ring_size, maximum_ring_size]`. A request goes to
//! the first entry at or after its hash, wrapping around.

use super::MAX_RING_SIZE;
use super::hashed::{HashTable, NormalizedWeights};
use crate::upstream::host::Host;
use std::fmt::Write;
use std::sync::Arc;

pub(crate) struct Ring {
    hosts: Vec<Arc<Host>>,
    /// Sorted entry hashes, and the host index of each.
    hashes: Vec<u64>,
    owners: Vec<u32>,
}

impl Ring {
    pub(crate) fn new(weights: NormalizedWeights, min_ring_size: u64, max_ring_size: u64) -> Self {
        let max = max_ring_size.clamp(1, MAX_RING_SIZE) as f64;
        let min = min_ring_size.max(1) as f64;
        let min_weight = weights
            .iter()
            .map(|(_, w)| *w)
            .fold(1.0f64, f64::min)
            .max(f64::MIN_POSITIVE);
        let scale = ((min_weight * min).ceil() / min_weight).min(max);
        let ring_size = scale.ceil() as usize;

        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(ring_size);
        let mut key = String::new();
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        let mut hosts = Vec::with_capacity(weights.len());
        for (idx, (host, w)) in weights.into_iter().enumerate() {
            target += scale * w;
            let mut i: u64 = 0;
            while current < target && entries.len() < ring_size.saturating_add(1) {
                key.clear();
                let _ = write!(key, "{}_{}", host.address, i);
                entries.push((xxhash_rust::xxh64::xxh64(key.as_bytes(), 0), idx as u32));
                i += 1;
                current += 1.0;
            }
            hosts.push(host);
        }
        entries.sort_unstable_by_key(|e| e.0);
        let (hashes, owners) = entries.into_iter().unzip();
        Self {
            hosts,
            hashes,
            owners,
        }
    }

    /// Number of entries on the ring.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("hosts", &self.hosts.len())
            .field("entries", &self.hashes.len())
            .finish()
    }
}

impl HashTable for Ring {
    fn pick(&self, hash: u64, attempt: u32) -> Option<&Arc<Host>> {
        let n = self.hashes.len();
        if n == 0 {
            return None;
        }
        let first = self.hashes.partition_point(|h| *h < hash);
        let i = (first + attempt as usize) % n;
        let owner = *self.owners.get(i)?;
        self.hosts.get(owner as usize)
    }
}
