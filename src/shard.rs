//! `--shard K/N`: a deterministic split of the users into N parts, so that N machines (GNU
//! parallel, Ansible, Kubernetes Jobs) can each take one part of a large site.
//!
//! A user belongs to shard `K` when `fnv1a64(name) % N == K - 1`. FNV-1a is fixed by its
//! definition (unlike std's `DefaultHasher`, which may change between Rust releases), so a user
//! lands in the same shard on every machine, every run and every mboxfs version. Every user is in
//! exactly one shard of N.

use std::fmt;
use std::str::FromStr;

/// One part of N (K is 1-based on the command line, as people count machines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1..=count.
    pub k: u32,
    pub count: u32,
}

/// The 64-bit FNV-1a hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// Whether `user` belongs to this shard.
    pub fn contains(&self, user: &str) -> bool {
        fnv1a64(user.as_bytes()) % u64::from(self.count) == u64::from(self.k - 1)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?}: expected K/N with 1 <= K <= N (e.g. 2/8)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || k == 0 || k > count {
            return Err(bad());
        }
        Ok(Shard { k, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("2/8".parse::<Shard>().unwrap(), Shard { k: 2, count: 8 });
        assert_eq!("1/1".parse::<Shard>().unwrap(), Shard { k: 1, count: 1 });
        for bad in ["0/4", "5/4", "1/0", "x/2", "2", "", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_user_is_in_exactly_one_shard_and_shards_are_even() {
        let users: Vec<String> = (0..10_000).map(|i| format!("user{i:05}")).collect();
        for n in [1u32, 2, 3, 7, 16] {
            let mut sizes = vec![0usize; n as usize];
            for u in &users {
                let owners: Vec<u32> = (1..=n)
                    .filter(|&k| Shard { k, count: n }.contains(u))
                    .collect();
                assert_eq!(owners.len(), 1, "{u} in {owners:?} of {n}");
                sizes[owners[0] as usize - 1] += 1;
            }
            let even = users.len() / n as usize;
            for s in sizes {
                assert!(s.abs_diff(even) * 10 < even, "{n} shards: {s} vs {even}");
            }
        }
    }
}
