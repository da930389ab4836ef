//! The fixed-size header the generator sends through the tunnel right after
//! the SOCKS5 reply, telling the sink what to do on this connection.
//!
//! 48 bytes, integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 4 | magic `PPDR` |
//! | 4  | 2 | version, 2 |
//! | 6  | 1 | pattern: 1 = bulk, 2 = rr |
//! | 7  | 1 | direction: 0 = none (rr), 1 = up, 2 = down, 3 = both |
//! | 8  | 8 | run nonce (one per phase) |
//! | 16 | 4 | connection id (0 ..= N-1) |
//! | 20 | 4 | chunk size (bulk; 0 for rr) |
//! | 24 | 4 | request size (rr; 0 for bulk) |
//! | 28 | 4 | response size (rr; 0 for bulk) |
//! | 32 | 4 | io_timeout in milliseconds, applied by the sink too |
//! | 36 | 8 | exact bytes per direction (bulk exact-length; 0 = until EOF) |
//! | 44 | 4 | check: the first 4 bytes of BLAKE3(bytes 0..44) |

use super::options::Direction;

/// Length of the header on the wire.
pub(crate) const HEADER_LEN: usize = 48;
const MAGIC: [u8; 4] = *b"PPDR";
const VERSION: u16 = 2;
const PATTERN_BULK: u8 = 1;
const PATTERN_RR: u8 = 2;

/// What the sink does on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Stream until EOF (or, with `exact`, exactly that many bytes each
    /// way the direction carries); send `chunk_size` writes if the
    /// direction is down or both.
    Bulk {
        direction: Direction,
        chunk_size: u32,
        exact: Option<u64>,
    },
    /// Read `request_size`, answer `response_size`, until EOF.
    Rr {
        request_size: u32,
        response_size: u32,
    },
}

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) nonce: u64,
    pub(crate) conn_id: u32,
    pub(crate) work: Work,
    pub(crate) io_timeout_ms: u32,
}

fn check(bytes: &[u8]) -> [u8; 4] {
    let h = blake3::hash(bytes);
    let mut c = [0u8; 4];
    c.copy_from_slice(&h.as_bytes()[..4]);
    c
}

fn be32(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_be_bytes());
        let mut exact_bytes = 0u64;
        let (pattern, direction, chunk, req, resp) = match self.work {
            Work::Bulk {
                direction,
                chunk_size,
                exact,
            } => {
                exact_bytes = exact.unwrap_or(0);
                let d = match direction {
                    Direction::Up => 1,
                    Direction::Down => 2,
                    Direction::Both => 3,
                };
                (PATTERN_BULK, d, chunk_size, 0, 0)
            }
            Work::Rr {
                request_size,
                response_size,
            } => (PATTERN_RR, 0, 0, request_size, response_size),
        };
        b[6] = pattern;
        b[7] = direction;
        b[8..16].copy_from_slice(&self.nonce.to_be_bytes());
        b[16..20].copy_from_slice(&self.conn_id.to_be_bytes());
        b[20..24].copy_from_slice(&chunk.to_be_bytes());
        b[24..28].copy_from_slice(&req.to_be_bytes());
        b[28..32].copy_from_slice(&resp.to_be_bytes());
        b[32..36].copy_from_slice(&self.io_timeout_ms.to_be_bytes());
        b[36..44].copy_from_slice(&exact_bytes.to_be_bytes());
        let c = check(&b[..44]);
        b[44..48].copy_from_slice(&c);
        b
    }

    /// Decodes and validates a header; the error says what is wrong.
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, String> {
        if b[0..4] != MAGIC {
            return Err(format!("bad header magic {:02x?}", &b[0..4]));
        }
        let version = u16::from_be_bytes([b[4], b[5]]);
        if version != VERSION {
            return Err(format!("unsupported header version {version}"));
        }
        if b[44..48] != check(&b[..44]) {
            return Err("header check bytes do not match (corrupted header)".to_string());
        }
        let nonce = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        let conn_id = be32(b, 16);
        let (chunk, req, resp) = (be32(b, 20), be32(b, 24), be32(b, 28));
        let io_timeout_ms = be32(b, 32);
        let mut exact = [0u8; 8];
        exact.copy_from_slice(&b[36..44]);
        let exact = u64::from_be_bytes(exact);
        if io_timeout_ms == 0 {
            return Err("header io_timeout is 0".to_string());
        }
        let work = match (b[6], b[7]) {
            (PATTERN_BULK, d @ 1..=3) => {
                if chunk == 0 {
                    return Err("bulk header with chunk size 0".to_string());
                }
                let direction = match d {
                    1 => Direction::Up,
                    2 => Direction::Down,
                    _ => Direction::Both,
                };
                Work::Bulk {
                    direction,
                    chunk_size: chunk,
                    exact: (exact > 0).then_some(exact),
                }
            }
            (PATTERN_RR, 0) => {
                if req == 0 || resp == 0 {
                    return Err("rr header with a zero request or response size".to_string());
                }
                Work::Rr {
                    request_size: req,
                    response_size: resp,
                }
            }
            (p, d) => return Err(format!("unknown pattern/direction {p}/{d} in header")),
        };
        Ok(Header {
            nonce,
            conn_id,
            work,
            io_timeout_ms,
        })
    }
}
