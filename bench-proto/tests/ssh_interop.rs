//! `ssh` against OpenSSH, both ways, 64 MiB each way with BLAKE3 checked at
//! both ends:
//!
//! - our ssh client → a test-started `sshd` (public-key login as the user
//!   running the test) → sink,
//! - `ssh -N -D` (OpenSSH's SOCKS5 client side) → our ssh server → sink.
//!
//! Ignored by default: they need OpenSSH (`apt-get update && apt-get install
//! -y openssh-server openssh-client`). `cargo xtask test` runs them where
//! the peers are installed; without OpenSSH they fail, naming the install
//! command. The sshd test runs sshd with its privilege separation, which
//! needs root.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bench_proto::ssh::{self, ClientOptions, ServerOptions};
use support::*;

const INSTALL: &str = "apt-get update && apt-get install -y openssh-server openssh-client";
const LIMIT: Duration = Duration::from_secs(600);
const READY: Duration = Duration::from_secs(20);

/// The name of the user running the test: the only one a test-started sshd
/// can log in without touching the system's accounts.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs OpenSSH sshd: apt-get update && apt-get install -y openssh-server openssh-client"]
async fn our_client_to_openssh_sshd() {
    let sshd = require_program("PROTOPROF_SSHD", &["/usr/sbin/sshd", "sshd"], INSTALL);
    let dir = TempDir::new("ssh-interop-sshd");
    ssh::generate_key(&dir.join("host_key")).unwrap();
    ssh::generate_key(&dir.join("id")).unwrap();
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let config = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {host_key}\n\
         PidFile none\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin yes\n\
         AllowTcpForwarding yes\n\
         UsePAM no\n\
         StrictModes no\n\
         LogLevel INFO\n",
        host_key = dir.join("host_key").display(),
        authorized_keys = dir.join("authorized_keys").display(),
    );
    let config_path = dir.join("sshd_config");
    std::fs::write(&config_path, config).unwrap();
    // sshd's privilege separation directory; Debian's package creates it
    // only when its service starts.
    let _ = std::fs::create_dir_all("/run/sshd");
    let sshd = Proc::spawn(
        "sshd",
        Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config_path),
    );
    sshd.wait_line(READY, |l| l.contains("Server listening on").then_some(()));
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut settings = ssh::Settings::default();
    settings
        .set("known_host_key", dir.join("host_key.pub").to_str().unwrap())
        .unwrap();
    let opts = ClientOptions::new(
        server,
        &current_user(),
        None,
        Some(&dir.join("id")),
        &settings,
    )
    .unwrap();
    with_timeout(LIMIT, async {
        let l = bind().await;
        let socks = l.local_addr().unwrap();
        tokio::spawn(ssh::run_client(l, opts));
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
        concurrent_through(socks, 8, 512 * 1024).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs OpenSSH ssh: apt-get update && apt-get install -y openssh-server openssh-client"]
async fn openssh_dynamic_forwarding_to_our_server() {
    let ssh_bin = require_program("PROTOPROF_SSH", &["ssh"], INSTALL);
    let dir = TempDir::new("ssh-interop-ssh");
    ssh::generate_key(&dir.join("host_key")).unwrap();
    ssh::generate_key(&dir.join("id")).unwrap();

    let l = bind().await;
    let server = l.local_addr().unwrap();
    let opts = ServerOptions::new(
        &dir.join("host_key"),
        Some("bench"),
        None,
        Some(&dir.join("id.pub")),
    )
    .unwrap();
    tokio::spawn(ssh::run_server(l, opts));

    let socks_port = free_port();
    let _ssh = spawn_ssh(&ssh_bin, &dir.join("id"), server, socks_port);
    let socks: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();
    with_timeout(LIMIT, async {
        wait_for_port(socks, READY).await;
        bulk_through(socks, BULK_UP, BULK_DOWN).await;
        concurrent_through(socks, 8, 512 * 1024).await;
    })
    .await;
}

fn spawn_ssh(bin: &Path, identity: &Path, server: SocketAddr, socks_port: u16) -> Proc {
    Proc::spawn(
        "ssh -D",
        Command::new(bin)
            .args(["-N", "-F", "/dev/null"])
            .args(["-D", &format!("127.0.0.1:{socks_port}")])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .arg("-i")
            .arg(identity)
            .args(["-p", &server.port().to_string()])
            .args(["-l", "bench", "127.0.0.1"]),
    )
}
