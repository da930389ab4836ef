//! The TLS 1.3 we implement ourselves, on ring (RFC 8446): the wire codec
//! ([`wire`]), the key schedule ([`keys`]) and the record layer after a
//! handshake ([`record`]).
//!
//! Two protocols use it. `reality` runs its whole handshake on it (rustls
//! has no hook for what REALITY does to the ClientHello and the
//! certificate; see [`crate::reality`]). `tls` lets rustls run the
//! handshake and then moves the connection to [`record::TlsStream`]
//! through rustls's kernel-connection API, because rustls's buffered API
//! copies each record into a fresh allocation both ways
//! (docs/case-studies/tls.md).

pub mod keys;
pub mod record;
pub mod wire;
