//! Payload bytes: a 1 MiB pool of pseudo-random bytes, made once per process,
//! sent as chunks whose start offsets rotate through the pool.
//!
//! Each chunk starts `SKEW` bytes after the previous one ended (modulo the
//! pool), so chunk starts are not multiples of the chunk size, neighbouring
//! chunks differ, and the sequence of chunk starts only repeats after 2^20
//! chunks when the chunk size plus `SKEW` is odd. A dropped, duplicated or
//! reordered chunk therefore changes the stream's hash.

use std::sync::OnceLock;

/// Size of the payload pool.
pub(crate) const POOL_LEN: usize = 1 << 20;
/// Gap between the end of one chunk and the start of the next (a prime).
const SKEW: usize = 4099;

static POOL: OnceLock<Box<[u8]>> = OnceLock::new();

fn pool() -> &'static [u8] {
    POOL.get_or_init(|| {
        // xorshift64*: fast, deterministic, and far from repetitive.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut pool = Vec::with_capacity(POOL_LEN);
        while pool.len() < POOL_LEN {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            pool.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        pool.into_boxed_slice()
    })
}

/// splitmix64 finaliser: spreads a seed over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of one direction of one connection.
pub(crate) fn seed(nonce: u64, conn_id: u32, downstream: bool) -> u64 {
    mix(nonce ^ mix((u64::from(conn_id) << 1) | u64::from(downstream)))
}

/// An endless payload stream of `chunk`-byte chunks.
pub(crate) struct PayloadStream {
    pos: usize,
    left_in_chunk: usize,
    chunk: usize,
}

impl PayloadStream {
    /// A stream starting at a seed-dependent offset. `chunk` must be at least 1.
    pub(crate) fn new(seed: u64, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        PayloadStream {
            pos: (mix(seed) % POOL_LEN as u64) as usize,
            left_in_chunk: chunk,
            chunk,
        }
    }

    /// The next bytes to send: at most the rest of the current chunk, and
    /// contiguous in the pool (so possibly shorter). Never empty.
    pub(crate) fn next_slice(&self) -> &'static [u8] {
        let end = (self.pos + self.left_in_chunk).min(POOL_LEN);
        &pool()[self.pos..end]
    }

    /// Marks `n` bytes of the last [`next_slice`](Self::next_slice) as sent.
    pub(crate) fn advance(&mut self, n: usize) {
        let n = n.min(self.left_in_chunk).min(POOL_LEN - self.pos);
        self.pos += n;
        self.left_in_chunk -= n;
        if self.pos == POOL_LEN {
            self.pos = 0;
        }
        if self.left_in_chunk == 0 {
            self.pos = (self.pos + SKEW) % POOL_LEN;
            self.left_in_chunk = self.chunk;
        }
    }
}
