//! `protoprof-endpoint`: runs one side of one protocol of protoprof's
//! reference proxy chain.
//!
//!     protoprof-endpoint tcp server --listen 127.0.0.1:9000
//!     protoprof-endpoint tcp client --listen 127.0.0.1:1080 --server 127.0.0.1:9000
//!
//! Prints `listening on ADDR` to stderr once bound; exits 0 on SIGTERM or
//! SIGINT, 2 on a usage error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench_proto::relay::RelayOptions;
use bench_proto::settings::{parse_assignment, SettingError};
use bench_proto::tcp;
use bench_proto::{ech, hysteria1, hysteria2, reality, ssh, tls, tuic};
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Exit status for bad arguments, as clap uses.
const USAGE_ERROR: u8 = 2;

/// How long shutdown waits for blocking work (a name lookup) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
#[command(
    name = "protoprof-endpoint",
    version,
    about = "One side of protoprof's reference proxy chain: the client side takes SOCKS5 \
             and speaks PROTOCOL to the server side, which connects to the targets."
)]
struct Cli {
    /// Protocol between the client and the server endpoint.
    protocol: Protocol,
    /// Which side to run.
    side: Side,
    /// Address to listen on: SOCKS5 for the client side, PROTOCOL for the
    /// server side (port 0 picks a free port; see the `listening on` line).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The server endpoint to connect to (client side only).
    #[arg(long, value_name = "ADDR", required_if_eq("side", "client"))]
    server: Option<SocketAddr>,
    /// Set an option, KEY=VALUE; repeatable. Keys: relay.buffer_size (bytes
    /// per read, default 65536), relay.mode (reuse, copy, pooled, or splice
    /// for protocol tcp; default reuse), relay.leak (none, memory or fds:
    /// a leak per connection injected on purpose, a test aid; default
    /// none), and per protocol (see its module docs).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Server side of TLS-based protocols: certificate chain (PEM).
    #[arg(long, value_name = "PATH")]
    cert: Option<PathBuf>,
    /// Server side of TLS-based protocols: private key (PEM).
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// Client side of TLS-based protocols: the only certificates to trust (PEM).
    #[arg(long, value_name = "PATH")]
    ca: Option<PathBuf>,
    /// Client side of TLS-based protocols: the name to send and verify.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    server_name: String,
    /// User name or id, where the protocol has one (TUIC: a UUID; SSH: the login).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Password or shared secret, where the protocol has one.
    #[arg(long, value_name = "SECRET")]
    password: Option<String>,
    /// SSH server: host key (OpenSSH private key file).
    #[arg(long, value_name = "PATH")]
    host_key: Option<PathBuf>,
    /// SSH server: public keys allowed to log in (authorized_keys format).
    #[arg(long, value_name = "PATH")]
    authorized_keys: Option<PathBuf>,
    /// SSH client: private key to authenticate with (instead of a password).
    #[arg(long, value_name = "PATH")]
    identity: Option<PathBuf>,
    /// ECH server: its keys ("ECH KEYS" PEM, as `sing-box generate
    /// ech-keypair` writes).
    #[arg(long, value_name = "PATH")]
    ech_keys: Option<PathBuf>,
    /// ECH server: certificate chain (PEM) for the ECH public name.
    #[arg(long, value_name = "PATH")]
    public_cert: Option<PathBuf>,
    /// ECH server: private key (PEM) for the ECH public name.
    #[arg(long, value_name = "PATH")]
    public_key: Option<PathBuf>,
    /// ECH client: the server's ECH configs ("ECH CONFIGS" PEM).
    #[arg(long, value_name = "PATH")]
    ech_config: Option<PathBuf>,
    /// REALITY: the server's static X25519 key, base64url as Xray and
    /// shoes write it: the private key on the server side, its public key
    /// on the client side. (base64url may start with `-`: taken as the
    /// value, not as a flag.)
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    reality_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Plain TCP relay, the baseline.
    Tcp,
    /// Trojan over TLS 1.3 (server: --cert --key --password; client: --ca
    /// --password [--server-name]).
    Tls,
    /// SSH direct-tcpip channels (server: --host-key and --user --password
    /// or --authorized-keys; client: --user, --password or --identity, and
    /// --set ssh.known_host_key=PATH).
    Ssh,
    /// TUIC v5 over QUIC (server: --cert --key --user UUID --password;
    /// client: --ca --user UUID --password [--server-name]; --listen of the
    /// server is a UDP address).
    Tuic,
    /// Hysteria v1 over QUIC (server: --cert --key --password; client:
    /// --ca --password [--server-name]; the password is the authentication
    /// string; --listen of the server is a UDP address).
    Hysteria1,
    /// Hysteria 2 over QUIC + HTTP/3 (server: --cert --key --password;
    /// client: --ca --password [--server-name]; --listen of the server is a
    /// UDP address).
    Hysteria2,
    /// Trojan over TLS 1.3 with Encrypted Client Hello, BoringSSL (server:
    /// --cert --key --public-cert --public-key --ech-keys --password;
    /// client: --ca --ech-config --password [--server-name]).
    Ech,
    /// VLESS over REALITY, a TLS 1.3 of our own (server: --reality-key
    /// PRIVATE --user UUID [--set reality.dest=HOST:PORT]; client:
    /// --reality-key PUBLIC --user UUID [--server-name NAME]).
    Reality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Side {
    /// SOCKS5 in, PROTOCOL out.
    Client,
    /// PROTOCOL in, TCP out.
    Server,
}

/// What to run, with all options applied.
enum Endpoint {
    TcpClient(tcp::ClientOptions),
    TcpServer(tcp::ServerOptions),
    TlsClient(tls::ClientOptions),
    TlsServer(tls::ServerOptions),
    SshClient(ssh::ClientOptions),
    SshServer(ssh::ServerOptions),
    TuicClient(tuic::ClientOptions),
    TuicServer(tuic::ServerOptions),
    Hysteria1Client(hysteria1::ClientOptions),
    Hysteria1Server(hysteria1::ServerOptions),
    Hysteria2Client(hysteria2::ClientOptions),
    Hysteria2Server(hysteria2::ServerOptions),
    EchClient(ech::ClientOptions),
    EchServer(ech::ServerOptions),
    RealityClient(reality::client::ClientOptions),
    RealityServer(reality::server::ServerOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoint = match configure(&cli) {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("protoprof-endpoint: error: {msg}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match run(cli.listen, endpoint) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protoprof-endpoint: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns the arguments into an [`Endpoint`]; the error is one line for the
/// user.
fn configure(cli: &Cli) -> Result<Endpoint, String> {
    let mut settings = Settings::default();
    for arg in &cli.set {
        settings.apply(arg).map_err(|e| e.to_string())?;
    }
    let Settings {
        relay,
        tls: tls_settings,
        ssh: ssh_settings,
        tuic: tuic_settings,
        hysteria1: hysteria1_settings,
        hysteria2: hysteria2_settings,
        ech: ech_settings,
        reality: reality_settings,
    } = settings;
    if cli.protocol != Protocol::Tcp {
        // splice needs two plain sockets; say so now, not per connection.
        let name = cli
            .protocol
            .to_possible_value()
            .map(|v| v.get_name().to_owned());
        relay
            .check_generic(name.as_deref().unwrap_or("?"))
            .map_err(|e| e.to_string())?;
    }
    match (cli.protocol, cli.side, cli.server) {
        (Protocol::Tcp, Side::Client, Some(server)) => {
            Ok(Endpoint::TcpClient(tcp::ClientOptions { server, relay }))
        }
        (Protocol::Tls, Side::Client, Some(server)) => {
            let ca = required(&cli.ca, "the tls client needs --ca PATH")?;
            let password = required(&cli.password, "the tls client needs --password SECRET")?;
            let mut opts =
                tls::ClientOptions::new(server, ca, &cli.server_name, password, &tls_settings)
                    .map_err(|e| e.to_string())?;
            opts.relay = relay;
            Ok(Endpoint::TlsClient(opts))
        }
        (Protocol::Ssh, Side::Client, Some(server)) => {
            let user = required(&cli.user, "the ssh client needs --user NAME")?;
            let mut opts = ssh::ClientOptions::new(
                server,
                user,
                cli.password.as_deref(),
                cli.identity.as_deref(),
                &ssh_settings,
            )
            .map_err(|e| e.to_string())?;
            opts.relay = relay;
            Ok(Endpoint::SshClient(opts))
        }
        (Protocol::Tuic, Side::Client, Some(server)) => {
            let ca = required(&cli.ca, "the tuic client needs --ca PATH")?;
            let tls = bench_proto::pki::client_config(ca, &[]).map_err(|e| e.to_string())?;
            Ok(Endpoint::TuicClient(tuic::ClientOptions {
                server,
                server_name: cli.server_name.clone(),
                uuid: tuic_user(cli)?,
                password: required(&cli.password, "the tuic client needs --password SECRET")?
                    .to_owned(),
                tls,
                settings: tuic_settings,
                relay,
            }))
        }
        (Protocol::Hysteria1, Side::Client, Some(server)) => {
            let ca = required(&cli.ca, "the hysteria1 client needs --ca PATH")?;
            let auth = required(
                &cli.password,
                "the hysteria1 client needs --password SECRET (its authentication string)",
            )?;
            let tls = bench_proto::pki::client_config(ca, &[]).map_err(|e| e.to_string())?;
            Ok(Endpoint::Hysteria1Client(hysteria1::ClientOptions {
                server,
                server_name: cli.server_name.clone(),
                auth: auth.to_owned(),
                tls,
                settings: hysteria1_settings,
                relay,
            }))
        }
        (Protocol::Hysteria2, Side::Client, Some(server)) => {
            let ca = required(&cli.ca, "the hysteria2 client needs --ca PATH")?;
            let password = required(
                &cli.password,
                "the hysteria2 client needs --password SECRET",
            )?;
            let tls = bench_proto::pki::client_config(ca, &[]).map_err(|e| e.to_string())?;
            // Refuse an obfs setting without its key now, not at the first CONNECT.
            hysteria2_settings.obfs().map_err(|e| e.to_string())?;
            Ok(Endpoint::Hysteria2Client(hysteria2::ClientOptions {
                server,
                server_name: cli.server_name.clone(),
                password: password.to_owned(),
                tls,
                settings: hysteria2_settings,
                relay,
            }))
        }
        (Protocol::Ech, Side::Client, Some(server)) => {
            let ca = required(&cli.ca, "the ech client needs --ca PATH")?;
            let password = required(&cli.password, "the ech client needs --password SECRET")?;
            let mut opts = ech::ClientOptions::new(
                server,
                ca,
                &cli.server_name,
                password,
                cli.ech_config.as_deref(),
                &ech_settings,
            )
            .map_err(|e| e.to_string())?;
            opts.relay = relay;
            Ok(Endpoint::EchClient(opts))
        }
        (Protocol::Reality, Side::Client, Some(server)) => {
            let key = required(
                &cli.reality_key,
                "the reality client needs --reality-key PUBLIC (the server's X25519 public key, base64url)",
            )?;
            Ok(Endpoint::RealityClient(reality::client::ClientOptions {
                server,
                server_name: cli.server_name.clone(),
                server_key: reality::parse_x25519_key(key)
                    .map_err(|e| format!("--reality-key: {e}"))?,
                short_id: reality_settings.short_id,
                hybrid_share: reality_settings.hybrid_share,
                user: vless_user(cli)?,
                relay,
            }))
        }
        // clap enforces --server for the client side already.
        (_, Side::Client, None) => Err("the client side needs --server ADDR".into()),
        (Protocol::Tcp, Side::Server, None) => {
            Ok(Endpoint::TcpServer(tcp::ServerOptions { relay }))
        }
        (Protocol::Tls, Side::Server, None) => {
            let cert = required(&cli.cert, "the tls server needs --cert PATH")?;
            let key = required(&cli.key, "the tls server needs --key PATH")?;
            let password = required(&cli.password, "the tls server needs --password SECRET")?;
            let mut opts = tls::ServerOptions::new(cert, key, password, &tls_settings)
                .map_err(|e| e.to_string())?;
            opts.relay = relay;
            Ok(Endpoint::TlsServer(opts))
        }
        (Protocol::Ssh, Side::Server, None) => {
            let host_key = required(&cli.host_key, "the ssh server needs --host-key PATH")?;
            let mut opts = ssh::ServerOptions::new(
                host_key,
                cli.user.as_deref(),
                cli.password.as_deref(),
                cli.authorized_keys.as_deref(),
            )
            .map_err(|e| e.to_string())?;
            opts.cipher = ssh_settings.cipher();
            opts.relay = relay;
            Ok(Endpoint::SshServer(opts))
        }
        (Protocol::Tuic, Side::Server, None) => {
            let cert = required(&cli.cert, "the tuic server needs --cert PATH")?;
            let key = required(&cli.key, "the tuic server needs --key PATH")?;
            let password = required(&cli.password, "the tuic server needs --password SECRET")?;
            let tls = bench_proto::pki::server_config(cert, key, &[]).map_err(|e| e.to_string())?;
            Ok(Endpoint::TuicServer(tuic::ServerOptions {
                tls,
                users: vec![(tuic_user(cli)?, password.to_owned())],
                settings: tuic_settings,
                relay,
            }))
        }
        (Protocol::Hysteria1, Side::Server, None) => {
            let cert = required(&cli.cert, "the hysteria1 server needs --cert PATH")?;
            let key = required(&cli.key, "the hysteria1 server needs --key PATH")?;
            let auth = required(
                &cli.password,
                "the hysteria1 server needs --password SECRET (the authentication string)",
            )?;
            let tls = bench_proto::pki::server_config(cert, key, &[]).map_err(|e| e.to_string())?;
            Ok(Endpoint::Hysteria1Server(hysteria1::ServerOptions {
                tls,
                auth: auth.to_owned(),
                settings: hysteria1_settings,
                relay,
            }))
        }
        (Protocol::Hysteria2, Side::Server, None) => {
            let cert = required(&cli.cert, "the hysteria2 server needs --cert PATH")?;
            let key = required(&cli.key, "the hysteria2 server needs --key PATH")?;
            let password = required(
                &cli.password,
                "the hysteria2 server needs --password SECRET",
            )?;
            let tls = bench_proto::pki::server_config(cert, key, &[]).map_err(|e| e.to_string())?;
            hysteria2_settings.obfs().map_err(|e| e.to_string())?;
            Ok(Endpoint::Hysteria2Server(hysteria2::ServerOptions {
                tls,
                password: password.to_owned(),
                settings: hysteria2_settings,
                relay,
            }))
        }
        (Protocol::Ech, Side::Server, None) => {
            let files = ech::server::ServerFiles {
                cert: required(&cli.cert, "the ech server needs --cert PATH")?,
                key: required(&cli.key, "the ech server needs --key PATH")?,
                public_cert: required(
                    &cli.public_cert,
                    "the ech server needs --public-cert PATH (for the ECH public name)",
                )?,
                public_key: required(
                    &cli.public_key,
                    "the ech server needs --public-key PATH (for the ECH public name)",
                )?,
                ech_keys: required(&cli.ech_keys, "the ech server needs --ech-keys PATH")?,
            };
            let password = required(&cli.password, "the ech server needs --password SECRET")?;
            let mut opts = ech::ServerOptions::new(files, password, &ech_settings)
                .map_err(|e| e.to_string())?;
            opts.trojan.relay = relay;
            Ok(Endpoint::EchServer(opts))
        }
        (Protocol::Reality, Side::Server, None) => {
            let key = required(
                &cli.reality_key,
                "the reality server needs --reality-key PRIVATE (its X25519 private key, base64url)",
            )?;
            let key = reality::parse_x25519_key(key).map_err(|e| format!("--reality-key: {e}"))?;
            let mut opts =
                reality::server::ServerOptions::new(key, vless_user(cli)?, &reality_settings);
            opts.relay = relay;
            Ok(Endpoint::RealityServer(opts))
        }
        (_, Side::Server, Some(_)) => Err(
            "--server is for the client side only; drop it (the server side connects to \
             each connection's target)"
                .into(),
        ),
    }
}

/// The TUIC user id from --user.
fn tuic_user(cli: &Cli) -> Result<tuic::Uuid, String> {
    let user = required(&cli.user, "tuic needs --user UUID")?;
    user.parse()
        .map_err(|e: tuic::UuidError| format!("--user: {e}"))
}

/// The VLESS user id from --user.
fn vless_user(cli: &Cli) -> Result<tuic::Uuid, String> {
    let user = required(&cli.user, "reality needs --user UUID (the VLESS user id)")?;
    user.parse()
        .map_err(|e: tuic::UuidError| format!("--user: {e}"))
}

/// The value of an option the chosen protocol and side need.
fn required<'a, T: ?Sized, O: std::ops::Deref<Target = T>>(
    value: &'a Option<O>,
    missing: &str,
) -> Result<&'a T, String> {
    value.as_deref().ok_or_else(|| missing.to_owned())
}

/// Every group of `--set` options.
#[derive(Default)]
struct Settings {
    relay: RelayOptions,
    tls: tls::Settings,
    ssh: ssh::Settings,
    tuic: tuic::Settings,
    hysteria1: hysteria1::Settings,
    hysteria2: hysteria2::Settings,
    ech: ech::Settings,
    reality: reality::Settings,
}

impl Settings {
    fn apply(&mut self, arg: &str) -> Result<(), SettingError> {
        let (key, value) = parse_assignment(arg)?;
        match key.split_once('.') {
            Some(("relay", rest)) => self.relay.set(rest, value),
            Some(("tls", rest)) => self.tls.set(rest, value),
            Some(("ssh", rest)) => self.ssh.set(rest, value),
            Some(("tuic", rest)) => self.tuic.set(rest, value),
            Some(("hysteria1", rest)) => self.hysteria1.set(rest, value),
            Some(("hysteria2", rest)) => self.hysteria2.set(rest, value),
            Some(("ech", rest)) => self.ech.set(rest, value),
            Some(("reality", rest)) => self.reality.set(rest, value),
            _ => {
                let group = |g: &str, keys: &[&str]| {
                    keys.iter().map(|k| format!("{g}.{k}")).collect::<Vec<_>>()
                };
                let mut known = group("relay", RelayOptions::KEYS);
                known.extend(group("tls", tls::Settings::KEYS));
                known.extend(group("ssh", ssh::Settings::KEYS));
                known.extend(group("tuic", tuic::Settings::KEYS));
                known.extend(group("hysteria1", hysteria1::Settings::KEYS));
                known.extend(group("hysteria2", hysteria2::Settings::KEYS));
                known.extend(group("ech", ech::Settings::KEYS));
                known.extend(group("reality", reality::Settings::KEYS));
                Err(SettingError::UnknownKey {
                    key: key.to_owned(),
                    known,
                })
            }
        }
    }
}

fn run(listen: SocketAddr, endpoint: Endpoint) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(serve_until_signal(listen, endpoint));
    // Connection tasks are dropped here, which closes their sockets.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

async fn serve_until_signal(listen: SocketAddr, endpoint: Endpoint) -> anyhow::Result<()> {
    // Handlers go in before the `listening on` line: a runner may send
    // SIGTERM as soon as it has seen it.
    let mut sigterm = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    // QUIC runs on UDP: the tuic and hysteria servers bind a UDP socket, every other side
    // a TCP listener.
    let endpoint = match endpoint {
        Endpoint::TuicServer(opts) => {
            let (socket, bound) = bind_udp(listen)?;
            return tokio::select! {
                res = tuic::run_server(socket, opts) => {
                    res.with_context(|| format!("serving QUIC on {bound}"))
                }
                _ = sigterm.recv() => Ok(()),
                _ = sigint.recv() => Ok(()),
            };
        }
        Endpoint::Hysteria1Server(opts) => {
            let (socket, bound) = bind_udp(listen)?;
            return tokio::select! {
                res = hysteria1::run_server(socket, opts) => {
                    res.with_context(|| format!("serving QUIC on {bound}"))
                }
                _ = sigterm.recv() => Ok(()),
                _ = sigint.recv() => Ok(()),
            };
        }
        Endpoint::Hysteria2Server(opts) => {
            let (socket, bound) = bind_udp(listen)?;
            return tokio::select! {
                res = hysteria2::run_server(socket, opts) => {
                    res.with_context(|| format!("serving QUIC on {bound}"))
                }
                _ = sigterm.recv() => Ok(()),
                _ = sigint.recv() => Ok(()),
            };
        }
        other => other,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    eprintln!("listening on {bound}");

    let serve = async move {
        match endpoint {
            Endpoint::TcpClient(opts) => tcp::run_client(listener, opts).await,
            Endpoint::TcpServer(opts) => tcp::run_server(listener, opts).await,
            Endpoint::TlsClient(opts) => tls::run_client(listener, opts).await,
            Endpoint::TlsServer(opts) => tls::run_server(listener, opts).await,
            Endpoint::SshClient(opts) => ssh::run_client(listener, opts).await,
            Endpoint::SshServer(opts) => ssh::run_server(listener, opts).await,
            Endpoint::EchClient(opts) => ech::client::run_client(listener, opts).await,
            Endpoint::EchServer(opts) => ech::server::run_server(listener, opts).await,
            Endpoint::RealityClient(opts) => reality::client::run_client(listener, opts).await,
            Endpoint::RealityServer(opts) => reality::server::run_server(listener, opts).await,
            Endpoint::TuicClient(opts) => tuic::run_client(listener, opts)
                .await
                .map_err(std::io::Error::other),
            Endpoint::Hysteria1Client(opts) => hysteria1::run_client(listener, opts)
                .await
                .map_err(std::io::Error::other),
            Endpoint::Hysteria2Client(opts) => hysteria2::run_client(listener, opts)
                .await
                .map_err(std::io::Error::other),
            // Served on their UDP sockets above.
            Endpoint::TuicServer(_)
            | Endpoint::Hysteria1Server(_)
            | Endpoint::Hysteria2Server(_) => Ok(()),
        }
    };
    tokio::select! {
        res = serve => res.with_context(|| format!("accepting on {bound}")),
        _ = sigterm.recv() => Ok(()),
        _ = sigint.recv() => Ok(()),
    }
}

/// Binds the UDP socket of a QUIC server and prints the `listening on`
/// line.
fn bind_udp(listen: SocketAddr) -> anyhow::Result<(std::net::UdpSocket, SocketAddr)> {
    let socket =
        std::net::UdpSocket::bind(listen).with_context(|| format!("binding UDP {listen}"))?;
    let bound = socket.local_addr().context("reading the bound address")?;
    eprintln!("listening on {bound}");
    Ok((socket, bound))
}
