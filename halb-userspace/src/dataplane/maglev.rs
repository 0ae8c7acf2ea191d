//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4),
//! computed in userspace; the XDP program only indexes the table it produces.
//!
//! Each backend has a permutation of the table's slots derived from its
//! identity alone, so the table changes little when the backend set does.
//! Weights follow the cumulative-weight rounds of Katran's "Maglev v2": in
//! each round a backend adds its weight to a running sum and claims its next
//! preferred free slot each time that sum reaches the largest weight.

/// One backend as Maglev sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Stable identity (hash of address and port): decides the permutation.
    pub identity: u64,
    /// Relative share of the table; 0 takes no slot.
    pub weight: u32,
    /// What the table holds for this backend's slots (its id in the backend map).
    pub id: u32,
}

/// Default table size: a prime, as Maglev needs, and the paper's.
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// The slot value for "no backend" (every weight zero, or none given).
pub const NO_BACKEND: u32 = u32::MAX;

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = n as u64;
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Builds a table of `size` slots (a prime) over `entries`.
pub fn build(entries: &[Entry], size: u32) -> Vec<u32> {
    assert!(is_prime(size), "Maglev table size {size} is not prime");
    let m = size as u64;
    let mut table = vec![NO_BACKEND; size as usize];
    // Sorted by identity, so the table depends on the set, not the order
    // the config lists it in.
    let mut live: Vec<&Entry> = entries.iter().filter(|e| e.weight > 0).collect();
    live.sort_by_key(|e| (e.identity, e.id));
    let Some(max_weight) = live.iter().map(|e| e.weight as u64).max() else {
        return table;
    };
    // Permutation j of backend i: (offset_i + j * skip_i) mod M.
    let offsets: Vec<u64> = live.iter().map(|e| mix(e.identity, 0) % m).collect();
    let skips: Vec<u64> = live
        .iter()
        .map(|e| mix(e.identity, 1) % (m - 1) + 1)
        .collect();
    let mut next = vec![0u64; live.len()];
    let mut cumulative = vec![0u64; live.len()];
    let mut filled = 0u64;
    loop {
        for i in 0..live.len() {
            cumulative[i] += live[i].weight as u64;
            if cumulative[i] < max_weight {
                continue;
            }
            cumulative[i] -= max_weight;
            let slot = loop {
                let candidate = (offsets[i] + next[i] * skips[i]) % m;
                next[i] += 1;
                if table[candidate as usize] == NO_BACKEND {
                    break candidate;
                }
            };
            table[slot as usize] = live[i].id;
            filled += 1;
            if filled == m {
                return table;
            }
        }
    }
}

/// A well-mixed 64-bit value from `x` and a salt (splitmix64's finaliser).
fn mix(x: u64, salt: u64) -> u64 {
    let mut z = x ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stable identity of a backend from its address bytes and port, the same
/// across restarts and agents, so every node builds the same table.
pub fn identity(addr: &[u8], port: u16) -> u64 {
    // FNV-1a, then mixed: cheap, stable, and good enough to seed permutations.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.iter().chain(port.to_be_bytes().iter()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(weights: &[u32]) -> Vec<Entry> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Entry {
                identity: identity(&[198, 18, 1, 10 + i as u8], 80),
                weight,
                id: i as u32,
            })
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / table.len() as f64)
            .collect()
    }

    #[test]
    fn every_slot_is_filled_and_equal_weights_share_evenly() {
        let table = build(&entries(&[1, 1, 1]), DEFAULT_TABLE_SIZE);
        assert!(table.iter().all(|&id| id < 3));
        for share in shares(&table, 3) {
            assert!((share - 1.0 / 3.0).abs() < 0.01, "share {share}");
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let table = build(&entries(&[1, 2, 3]), DEFAULT_TABLE_SIZE);
        let s = shares(&table, 3);
        for (share, want) in s.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((share - want).abs() < 0.01, "{s:?}");
        }
    }

    #[test]
    fn zero_weight_takes_nothing_and_all_zero_is_empty() {
        let table = build(&entries(&[1, 0, 1]), 251);
        assert!(!table.contains(&1));
        let empty = build(&entries(&[0, 0]), 251);
        assert!(empty.iter().all(|&id| id == NO_BACKEND));
        assert!(build(&[], 251).iter().all(|&id| id == NO_BACKEND));
    }

    #[test]
    fn removing_a_backend_moves_little_more_than_its_own_slots() {
        let all = entries(&[1, 1, 1, 1, 1]);
        let before = build(&all, DEFAULT_TABLE_SIZE);
        let after = build(&all[..4], DEFAULT_TABLE_SIZE);
        let moved =
            before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64 / before.len() as f64;
        // Ideal: only the removed backend's 1/5; Maglev adds a little churn.
        assert!((0.2..0.23).contains(&moved), "moved {moved}");
    }

    #[test]
    fn the_table_depends_on_identities_not_on_order() {
        let mut all = entries(&[1, 2, 3]);
        let a = build(&all, 251);
        all.reverse();
        assert_eq!(a, build(&all, 251));
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0));
    }
}
