//! SipHash-1-3, the keyed hash std's HashMap uses, with a random 128-bit
//! key per enforcer, over a flow id's fixed words (2 for IPv4, 5 else):
//! the same function as `RandomState`'s, without the `Hasher` plumbing
//! (buffering of partial words), which cost more than the rounds for a
//! 16-byte key. Whoever chooses the 4-tuples does not know the key, so
//! cannot choose hashes: the index's buckets and the compact table's sets
//! stay evenly used.

pub struct Sip13 {
    k0: u64,
    k1: u64,
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-C-D of the bytes of `words` (little-endian), keyed by k0, k1.
#[inline(always)]
fn sip<const C: usize, const D: usize>(k0: u64, k1: u64, words: &[u64]) -> u64 {
    let mut v = [k0 ^ 0x736f_6d65_7073_6575, k1 ^ 0x646f_7261_6e64_6f6d, k0 ^ 0x6c79_6765_6e65_7261, k1 ^ 0x7465_6462_7974_6573];
    let last = ((words.len() as u64 * 8) & 0xff) << 56;
    for &m in words.iter().chain(std::iter::once(&last)) {
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

impl Sip13 {
    /// Keyed with `key`, which the shell draws at random.
    pub fn new(key: [u64; 2]) -> Sip13 {
        Sip13 { k0: key[0], k1: key[1] }
    }

    #[inline]
    pub fn hash_words(&self, words: &[u64]) -> u64 {
        sip::<1, 3>(self.k0, self.k1, words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<u64> {
        let bytes: Vec<u8> = (0..n as u8).collect();
        bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// The reference vectors of SipHash-2-4 (key 00..0f, message 00..n-1),
    /// and SipHash-1-3 as an independent implementation computes it.
    #[test]
    fn known_answers() {
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(sip::<2, 4>(k0, k1, &words(0)), 0x726f_db47_dd0e_0e31);
        assert_eq!(sip::<2, 4>(k0, k1, &words(8)), 0x93f5_f579_9a93_2462);
        assert_eq!(sip::<2, 4>(k0, k1, &words(16)), 0x3f2a_cc7f_57c2_9bdb);
        let s = Sip13 { k0, k1 };
        assert_eq!(s.hash_words(&words(16)), 0xcc4f_dd1a_7d90_8b66);
        assert_eq!(s.hash_words(&words(40)), 0xc1d2_3632_99e4_1531);
    }
}
