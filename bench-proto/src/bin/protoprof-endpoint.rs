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
    /// per read, default 65536), and per protocol (see its module docs).
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Plain TCP relay, the baseline.
    Tcp,
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
    let mut relay = RelayOptions::default();
    for arg in &cli.set {
        apply_setting(&mut relay, arg).map_err(|e| e.to_string())?;
    }
    match (cli.protocol, cli.side, cli.server) {
        (Protocol::Tcp, Side::Client, Some(server)) => {
            Ok(Endpoint::TcpClient(tcp::ClientOptions { server, relay }))
        }
        // clap enforces --server for the client side already.
        (_, Side::Client, None) => Err("the client side needs --server ADDR".into()),
        (Protocol::Tcp, Side::Server, None) => {
            Ok(Endpoint::TcpServer(tcp::ServerOptions { relay }))
        }
        (_, Side::Server, Some(_)) => Err(
            "--server is for the client side only; drop it (the server side connects to \
             each connection's target)"
                .into(),
        ),
    }
}

fn apply_setting(relay: &mut RelayOptions, arg: &str) -> Result<(), SettingError> {
    let (key, value) = parse_assignment(arg)?;
    match key.split_once('.') {
        Some(("relay", rest)) => relay.set(rest, value),
        _ => Err(SettingError::UnknownKey {
            key: key.to_owned(),
            known: RelayOptions::KEYS
                .iter()
                .map(|k| format!("relay.{k}"))
                .collect(),
        }),
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
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    eprintln!("listening on {bound}");

    let serve = async move {
        match endpoint {
            Endpoint::TcpClient(opts) => tcp::run_client(listener, opts).await,
            Endpoint::TcpServer(opts) => tcp::run_server(listener, opts).await,
        }
    };
    tokio::select! {
        res = serve => res.with_context(|| format!("accepting on {bound}")),
        _ = sigterm.recv() => Ok(()),
        _ = sigint.recv() => Ok(()),
    }
}
