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
//! One module per protocol: [`tcp`] (plain relay baseline).
//! Also [`tls`] (Trojan over TLS 1.3; its [`wire`](tls::wire) and
//! [`serve_trojan`](tls::server::serve_trojan) serve any Trojan protocol).
//! Also [`ssh`] (SSH direct-tcpip channels).
//! Also [`tuic`] (TUIC v5 over QUIC).
//! Also [`hysteria1`] (Hysteria v1, protocol version 3, over QUIC).
//! Also [`hysteria2`] (Hysteria 2 over QUIC with HTTP/3 authentication).
//! Also [`ech`] (Trojan over TLS 1.3 with Encrypted Client Hello, BoringSSL).

pub mod addr;
pub mod brutal;
pub mod buffer_pool;
pub mod dial;
pub mod ech;
pub mod hysteria1;
pub mod hysteria2;
pub mod outbound;
pub mod packet_obfs;
pub mod pki;
pub mod quic;
pub mod relay;
pub mod settings;
pub mod socks5;
pub mod splice;
pub mod ssh;
pub mod tcp;
pub mod tls;
pub mod tuic;
pub mod udp_frag;

mod serve;

pub use addr::{AddrError, TargetAddr};
pub use relay::{relay, RelayMode, RelayOptions, RelayStats};
