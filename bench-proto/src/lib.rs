//! protoprof's reference proxy endpoints.
//!
//! Every protocol has a client side (SOCKS5 in, protocol out) and a server
//! side (protocol in, TCP out); see `DESIGN.md`, "The chain". The pieces that
//! every protocol shares live in their own modules:
//!
//! - [`addr`]: the target address and its SOCKS5-style wire encoding,
//! - [`socks5`]: the server side of SOCKS5 (the client endpoint's inbound),
//! - [`outbound`]: the one client loop (SOCKS5 CONNECT in, a protocol's
//!   [`Outbound`](outbound::Outbound) stream out) and the one mapping of
//!   failures to SOCKS5 replies,
//! - [`dial`]: the one way a server reaches its target,
//! - [`quic`]: what the QUIC protocols share (endpoint binding, the client's
//!   lazily opened, reconnecting connection, the server's accept loop),
//! - [`relay`](mod@relay): the bidirectional byte pump used once a stream is established,
//!   with its buffer modes; [`buffer_pool`] for mode `pooled`, [`splice`] for
//!   mode `splice` (protocol `tcp` only),
//! - [`settings`]: `KEY=VALUE` settings as given by `--set`,
//! - [`pki`]: per-run certificates and rustls configurations,
//! - [`udp_frag`]: reassembly of UDP packets fragmented into QUIC datagrams,
//! - [`brutal`]: the Hysteria protocols' fixed-rate congestion control,
//! - [`packet_obfs`]: the Hysteria protocols' salted XOR of every UDP packet
//!   below quinn (Salamander, XPlus).
//!
//! Feature `endpoints` (default) builds the endpoints; without it only the
//! wire decoders build (`addr`, `socks5`, `udp_frag`, and each protocol's
//! `wire` module, Salamander and XPlus), which is what the fuzz targets in
//! `fuzz/` link.
//!
//! One module per protocol: [`tcp`] (plain relay baseline).
//! Also [`tls`] (Trojan over TLS 1.3; its [`wire`](tls::wire) and
//! [`serve_trojan`](tls::server::serve_trojan) serve any Trojan protocol).
//! Also [`ssh`] (SSH direct-tcpip channels).
//! Also [`tuic`] (TUIC v5 over QUIC).
//! Also [`hysteria1`] (Hysteria v1, protocol version 3, over QUIC).
//! Also [`hysteria2`] (Hysteria 2 over QUIC with HTTP/3 authentication).
//! Also [`ech`] (Trojan over TLS 1.3 with Encrypted Client Hello, BoringSSL).
//! Also [`reality`] (VLESS over REALITY, on a TLS 1.3 of our own).

// The wire decoders: built with and without the `endpoints` feature (the
// fuzz crate, fuzz/, builds them alone).
pub mod addr;
pub mod packet_obfs;
pub mod socks5;
pub mod udp_frag;

// The endpoints.
#[cfg(feature = "endpoints")]
pub mod brutal;
#[cfg(feature = "endpoints")]
pub mod buffer_pool;
#[cfg(feature = "endpoints")]
pub mod dial;
#[cfg(feature = "endpoints")]
pub mod ech;
#[cfg(feature = "endpoints")]
pub mod hysteria1;
#[cfg(feature = "endpoints")]
pub mod hysteria2;
#[cfg(feature = "endpoints")]
pub mod leak_fault;
#[cfg(feature = "endpoints")]
pub mod outbound;
#[cfg(feature = "endpoints")]
pub mod pki;
#[cfg(feature = "endpoints")]
pub mod quic;
#[cfg(feature = "endpoints")]
pub mod reality;
#[cfg(feature = "endpoints")]
pub mod relay;
#[cfg(feature = "endpoints")]
pub mod settings;
#[cfg(feature = "endpoints")]
pub mod splice;
#[cfg(feature = "endpoints")]
pub mod ssh;
#[cfg(feature = "endpoints")]
pub mod tcp;
#[cfg(feature = "endpoints")]
pub mod tls;
#[cfg(feature = "endpoints")]
pub mod tls13;
#[cfg(feature = "endpoints")]
pub mod tuic;

#[cfg(feature = "endpoints")]
mod serve;

// Without the endpoints, each protocol module is its wire decoders alone
// (the same files, at the same paths).
/// Protocol `ech`'s decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod ech {
    pub mod wire;
}
/// Protocol `hysteria1`'s decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod hysteria1 {
    pub mod wire;
    pub mod xplus;
}
/// Protocol `hysteria2`'s decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod hysteria2 {
    pub mod obfs;
    pub mod wire;
}
/// Protocol `reality`'s decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod reality {
    pub mod vless;
}
/// Protocol `tls`'s (Trojan's) decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod tls {
    pub mod wire;
}
/// The TLS 1.3 wire codec only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod tls13 {
    pub mod wire;
}
/// Protocol `tuic`'s decoders only (built without the `endpoints` feature).
#[cfg(not(feature = "endpoints"))]
pub mod tuic {
    pub mod wire;
}

pub use addr::{AddrError, TargetAddr};
#[cfg(feature = "endpoints")]
pub use relay::{relay, RelayMode, RelayOptions, RelayStats};
