//! A per-thread pseudo-random generator for host choice: a few arithmetic operations per
//! number, seeded once per thread from `rand`'s thread RNG. Not for anything secret.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(rand::random::<u64>());
}

/// A uniformly distributed `u64` (wyrand).
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A number in `0..n` (0 when `n == 0`), without modulo bias worth speaking of.
pub(crate) fn below(n: u64) -> u64 {
    ((u128::from(next_u64()) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        assert_eq!(below(0), 0);
        for _ in 0..1000 {
            assert!(below(7) < 7);
        }
    }
}
