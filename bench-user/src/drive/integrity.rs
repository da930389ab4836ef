//! Byte accounting: both ends hash what they send and receive; the phase
//! compares the generator's view with the sink's, connection by connection.

use std::collections::HashMap;

use super::result::{ConnectionBytes, Integrity, IntegrityStatus};

/// Count and BLAKE3 of one direction of one connection, as one side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) bytes: u64,
    pub(crate) hash: blake3::Hash,
}

/// A running count and hash.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn digest(&self) -> Digest {
        Digest {
            bytes: self.bytes,
            hash: self.hasher.finalize(),
        }
    }
}

/// What the generator saw on one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GeneratorSide {
    pub(crate) conn_id: u32,
    /// Sent to the sink.
    pub(crate) up: Digest,
    /// Received from the sink.
    pub(crate) down: Digest,
}

/// What the sink saw on one connection.
#[derive(Debug, Clone)]
pub(crate) struct SinkRecord {
    /// Received from the generator.
    pub(crate) up: Digest,
    /// Sent to the generator.
    pub(crate) down: Digest,
    /// Why the sink stopped serving the connection, if not a clean EOF.
    pub(crate) error: Option<String>,
}

fn short(h: &blake3::Hash) -> String {
    h.to_hex()[..16].to_string()
}

fn compare(
    out: &mut Vec<String>,
    id: u32,
    dir: &str,
    sender: (&str, &Digest),
    receiver: (&str, &Digest),
) -> bool {
    if sender.1 == receiver.1 {
        return true;
    }
    let what = if sender.1.bytes == receiver.1.bytes {
        "same byte count, different content"
    } else if sender.1.bytes > receiver.1.bytes {
        "bytes lost"
    } else {
        "bytes added"
    };
    out.push(format!(
        "connection {id} {dir}: {what}: {} sent {} bytes (blake3 {}), {} received {} bytes (blake3 {})",
        sender.0,
        sender.1.bytes,
        short(&sender.1.hash),
        receiver.0,
        receiver.1.bytes,
        short(&receiver.1.hash),
    ));
    false
}

/// Which directions the phase's pattern asks every connection to carry
/// payload in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) up: bool,
    pub(crate) down: bool,
}

/// Two views that agree on zero bytes agree on nothing: a direction asked to
/// carry payload that carried none is a failure of its own.
fn carried(out: &mut Vec<String>, g: &GeneratorSide, expected: Expected) {
    for (dir, asked, bytes) in [
        ("up", expected.up, g.up.bytes),
        ("down", expected.down, g.down.bytes),
    ] {
        if asked && bytes == 0 {
            out.push(format!(
                "connection {} {dir}: asked to carry payload, carried none",
                g.conn_id
            ));
        }
    }
}

/// A connection that moved under this fraction of the median connection's
/// bytes is named in a warning.
const THIN_FRACTION: f64 = 0.1;

/// Warnings for connections that moved under [`THIN_FRACTION`] of the
/// median connection's bytes (both directions; the upper median when the
/// count is even).
pub(crate) fn thin_connections(conns: &[ConnectionBytes]) -> Vec<String> {
    let mut totals: Vec<u64> = conns.iter().map(ConnectionBytes::total).collect();
    totals.sort_unstable();
    let Some(&median) = totals.get(totals.len() / 2) else {
        return Vec::new();
    };
    let floor = median as f64 * THIN_FRACTION;
    conns
        .iter()
        .filter(|c| (c.total() as f64) < floor)
        .map(|c| {
            format!(
                "connection {} moved {} bytes, under {:.0} % of the median connection's {median} bytes",
                c.id,
                c.total(),
                THIN_FRACTION * 100.0
            )
        })
        .collect()
}

/// Compares every connection's two views. A connection the sink has no record
/// of, a record for a connection the generator did not open, a sink-side
/// error and a direction in `expected` that carried no payload are mismatches
/// too; `sink_errors` (connections whose header the sink could not read) are
/// listed when anything is missing.
pub(crate) fn check(
    generator: &[GeneratorSide],
    mut sink: HashMap<u32, SinkRecord>,
    sink_errors: &[String],
    expected: Expected,
) -> Integrity {
    let mut mismatches = Vec::new();
    let mut bytes_checked = 0u64;
    for g in generator {
        bytes_checked += g.up.bytes + g.down.bytes;
        carried(&mut mismatches, g, expected);
        let Some(rec) = sink.remove(&g.conn_id) else {
            mismatches.push(format!(
                "connection {}: the sink has no record of it (generator sent {} bytes, received {} bytes)",
                g.conn_id, g.up.bytes, g.down.bytes
            ));
            continue;
        };
        compare(
            &mut mismatches,
            g.conn_id,
            "up",
            ("generator", &g.up),
            ("sink", &rec.up),
        );
        compare(
            &mut mismatches,
            g.conn_id,
            "down",
            ("sink", &rec.down),
            ("generator", &g.down),
        );
        if let Some(e) = rec.error {
            mismatches.push(format!("connection {}: sink error: {e}", g.conn_id));
        }
    }
    let mut extra: Vec<u32> = sink.into_keys().collect();
    extra.sort_unstable();
    for id in extra {
        mismatches.push(format!(
            "connection {id}: the sink recorded it, but the generator did not open it"
        ));
    }
    if !mismatches.is_empty() {
        for e in sink_errors {
            mismatches.push(format!("sink, unattributed: {e}"));
        }
    }
    let connections: Vec<ConnectionBytes> = generator
        .iter()
        .map(|g| ConnectionBytes {
            id: g.conn_id,
            bytes_up: g.up.bytes,
            bytes_down: g.down.bytes,
        })
        .collect();
    Integrity {
        warnings: thin_connections(&connections),
        connections,
        status: if mismatches.is_empty() {
            IntegrityStatus::Ok
        } else {
            IntegrityStatus::Mismatch
        },
        connections_checked: generator.len(),
        bytes_checked,
        mismatches,
    }
}
