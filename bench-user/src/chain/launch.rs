//! Command lines for a profile's endpoints.
//!
//! A side with no `[endpoints.<side>]` runs protoprof's reference endpoint
//! for the profile's protocol, with the run's ports and credentials. A side
//! with one runs that command instead (sing-box, shoes, OpenSSH, your own
//! proxy), after substituting placeholders:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `{client_port}`, `{server_port}` | the run's free ports |
//! | `{client_host}`, `{server_host}` | the endpoints' addresses (`127.0.0.1` on loopback, their namespace's address otherwise) |
//! | `{cert}`, `{key}`, `{ca}` | the run's certificate, key, and the certificate as CA |
//! | `{server_name}` | `localhost` (the certificate's name) |
//! | `{password}`, `{uuid}` | the run's credentials |
//! | `{ssh_host_key}`, `{ssh_host_pub}` | the run's SSH host key and its public half |
//! | `{ech_keys}`, `{ech_config}` | the run's ECH keys ("ECH KEYS" PEM) and configs ("ECH CONFIGS" PEM) |
//! | `{ech_ca}` | the certificate and the ECH public name's, both to trust |
//! | `{reality_private_key}`, `{reality_public_key}`, `{reality_short_id}` | the run's REALITY X25519 key pair (base64url) and short id (16 hex digits) |
//! | `{dest_port}` | a third free port, for a listener beside the server (REALITY's destination) |
//! | `{sing_box}` | the sing-box binary (see [`crate::peers`]) |
//! | `{shoes}` | the shoes binary (see [`crate::peers`]) |
//! | `{config:PATH}` | PATH (relative to the profiles directory) rendered with these placeholders into the run's private directory |

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use super::{secrets::Secrets, Launch, Ready, Role};
use crate::spec::{EndpointSpec, ProfileSpec};

/// Everything a placeholder can stand for.
pub struct Context<'a> {
    pub client_port: u16,
    pub server_port: u16,
    /// A third free port, for a listener beside the server (REALITY's
    /// destination in shoes's configuration).
    pub dest_port: u16,
    pub client_host: Ipv4Addr,
    pub server_host: Ipv4Addr,
    /// The namespaces the endpoints run in (`None`: the runner's own).
    pub client_netns: Option<PathBuf>,
    pub server_netns: Option<PathBuf>,
    pub secrets: &'a Secrets,
    /// Where `{config:PATH}` templates are found.
    pub profiles_dir: &'a Path,
    /// protoprof-endpoint.
    pub endpoint: &'a Path,
}

/// Every placeholder [`value`] knows, besides `{config:PATH}`: the list
/// the error names (a test checks that each one is known).
pub const PLACEHOLDERS: &[&str] = &[
    "client_port",
    "server_port",
    "client_host",
    "server_host",
    "cert",
    "key",
    "ca",
    "server_name",
    "password",
    "uuid",
    "ssh_host_key",
    "ssh_host_pub",
    "ech_keys",
    "ech_config",
    "ech_ca",
    "reality_private_key",
    "reality_public_key",
    "reality_short_id",
    "dest_port",
    "sing_box",
    "shoes",
];

/// Errors of building a command line.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "endpoints.{side}.command: unknown placeholder {{{name}}}; use one of {}, config:PATH",
        PLACEHOLDERS.join(", ")
    )]
    Placeholder { side: &'static str, name: String },
    #[error("endpoints.{side}.command: template {path}: {message}")]
    Template {
        side: &'static str,
        path: String,
        message: String,
    },
    #[error("endpoints.{side}: {message}")]
    Peer { side: &'static str, message: String },
    #[error(
        "endpoints.client.socks: {0:?} is not an address; write e.g. \"127.0.0.1:{{client_port}}\""
    )]
    Socks(String),
}

/// The launch of one side, and for the client the SOCKS5 address to drive.
pub fn build(
    spec: &ProfileSpec,
    role: Role,
    ctx: &Context,
) -> Result<(Launch, SocketAddr), LaunchError> {
    let side = role.as_str();
    let own = match role {
        Role::Client => spec.endpoints.client.as_ref(),
        Role::Server => spec.endpoints.server.as_ref(),
    };
    let port = match role {
        Role::Client => ctx.client_port,
        Role::Server => ctx.server_port,
    };
    let (host, netns) = match role {
        Role::Client => (ctx.client_host, ctx.client_netns.clone()),
        Role::Server => (ctx.server_host, ctx.server_netns.clone()),
    };
    let listen = SocketAddr::from((host, port));
    let Some(own) = own else {
        let (args, ready) = builtin_args(spec, role, ctx);
        let launch = Launch {
            role,
            program: ctx.endpoint.to_path_buf(),
            args,
            listen,
            ready,
            netns,
        };
        return Ok((launch, listen));
    };
    let mut words = Vec::with_capacity(own.command.len());
    for w in &own.command {
        words.push(substitute(w, side, ctx)?);
    }
    let program = PathBuf::from(words.remove(0));
    let socks = socks_address(own, side, ctx)?;
    Ok((
        Launch {
            role,
            program,
            args: words,
            listen,
            ready: own.ready,
            netns,
        },
        socks,
    ))
}

fn socks_address(
    own: &EndpointSpec,
    side: &'static str,
    ctx: &Context,
) -> Result<SocketAddr, LaunchError> {
    let text = match &own.socks {
        Some(t) => substitute(t, side, ctx)?,
        None => format!("{}:{}", ctx.client_host, ctx.client_port),
    };
    text.parse().map_err(|_| LaunchError::Socks(text))
}

/// Arguments of protoprof-endpoint for this protocol and side.
fn builtin_args(spec: &ProfileSpec, role: Role, ctx: &Context) -> (Vec<String>, Ready) {
    let s = ctx.secrets;
    let path = |p: &Path| p.display().to_string();
    let mut args = vec![spec.protocol.clone(), role.as_str().to_string()];
    let listen = match role {
        Role::Client => ctx.client_port,
        Role::Server => ctx.server_port,
    };
    let host = match role {
        Role::Client => ctx.client_host,
        Role::Server => ctx.server_host,
    };
    args.extend(["--listen".into(), format!("{host}:{listen}")]);
    if role == Role::Client {
        args.extend([
            "--server".into(),
            format!("{}:{}", ctx.server_host, ctx.server_port),
        ]);
    }
    let tls = matches!(
        spec.protocol.as_str(),
        "tls" | "tuic" | "hysteria1" | "hysteria2" | "ech"
    );
    match (tls, role) {
        (true, Role::Server) => {
            args.extend(["--cert".into(), path(&s.cert), "--key".into(), path(&s.key)])
        }
        (true, Role::Client) => args.extend([
            "--ca".into(),
            // An ech client trusts the ECH public name's certificate too,
            // which a server shows when it rejects ECH.
            path(if spec.protocol == "ech" {
                &s.ech.ca
            } else {
                &s.cert
            }),
            "--server-name".into(),
            "localhost".into(),
        ]),
        _ => {}
    }
    match spec.protocol.as_str() {
        "tuic" => args.extend([
            "--user".into(),
            s.uuid.clone(),
            "--password".into(),
            s.password.clone(),
        ]),
        "tls" | "hysteria1" | "hysteria2" => args.extend(["--password".into(), s.password.clone()]),
        "reality" => {
            args.extend(["--user".into(), s.uuid.clone()]);
            match role {
                Role::Server => args.extend([
                    "--reality-key".into(),
                    s.reality.private_key.clone(),
                    "--set".into(),
                    format!("reality.short_ids={}", s.reality.short_id),
                    // The destination the runner serves (chain/destination.rs).
                    "--set".into(),
                    format!("reality.dest=127.0.0.1:{}", ctx.dest_port),
                ]),
                Role::Client => args.extend([
                    "--reality-key".into(),
                    s.reality.public_key.clone(),
                    "--set".into(),
                    format!("reality.short_id={}", s.reality.short_id),
                    "--server-name".into(),
                    "localhost".into(),
                ]),
            }
        }
        "ech" => {
            args.extend(["--password".into(), s.password.clone()]);
            match role {
                Role::Server => args.extend([
                    "--public-cert".into(),
                    path(&s.ech.public_cert),
                    "--public-key".into(),
                    path(&s.ech.public_key),
                    "--ech-keys".into(),
                    path(&s.ech.keys),
                ]),
                Role::Client => args.extend(["--ech-config".into(), path(&s.ech.config)]),
            }
        }
        "ssh" => {
            args.extend([
                "--user".into(),
                "bench".into(),
                "--password".into(),
                s.password.clone(),
            ]);
            match role {
                Role::Server => args.extend(["--host-key".into(), path(&s.ssh_host_key)]),
                Role::Client => args.extend([
                    "--set".into(),
                    format!("ssh.known_host_key={}", path(&s.ssh_host_pub)),
                ]),
            }
        }
        _ => {}
    }
    for setting in spec.endpoint_settings() {
        args.extend(["--set".into(), setting]);
    }
    // QUIC servers listen on UDP.
    let ready = match (spec.protocol.as_str(), role) {
        ("tuic" | "hysteria1" | "hysteria2", Role::Server) => Ready::Udp,
        _ => Ready::Tcp,
    };
    (args, ready)
}

/// Replace every `{placeholder}` in `text`. Only `{lower_case}` and
/// `{config:PATH}` are placeholders, so JSON and TOML braces pass through.
fn substitute(text: &str, side: &'static str, ctx: &Context) -> Result<String, LaunchError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name = after.find('}').map(|close| &after[..close]);
        match name {
            Some(name) if is_placeholder(name) => {
                out.push_str(&value(name, side, ctx)?);
                rest = &after[name.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_placeholder(name: &str) -> bool {
    name.starts_with("config:")
        || (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

fn value(name: &str, side: &'static str, ctx: &Context) -> Result<String, LaunchError> {
    let s = ctx.secrets;
    Ok(match name {
        "client_port" => ctx.client_port.to_string(),
        "server_port" => ctx.server_port.to_string(),
        "client_host" => ctx.client_host.to_string(),
        "server_host" => ctx.server_host.to_string(),
        "cert" | "ca" => s.cert.display().to_string(),
        "key" => s.key.display().to_string(),
        "server_name" => "localhost".into(),
        "password" => s.password.clone(),
        "ssh_host_key" => s.ssh_host_key.display().to_string(),
        "ssh_host_pub" => s.ssh_host_pub.display().to_string(),
        "ech_keys" => s.ech.keys.display().to_string(),
        "ech_config" => s.ech.config.display().to_string(),
        "ech_ca" => s.ech.ca.display().to_string(),
        "uuid" => s.uuid.clone(),
        "reality_private_key" => s.reality.private_key.clone(),
        "reality_public_key" => s.reality.public_key.clone(),
        "reality_short_id" => s.reality.short_id.clone(),
        "dest_port" => ctx.dest_port.to_string(),
        "sing_box" => crate::peers::sing_box()
            .map_err(|message| LaunchError::Peer { side, message })?
            .display()
            .to_string(),
        "shoes" => crate::peers::shoes()
            .map_err(|message| LaunchError::Peer { side, message })?
            .display()
            .to_string(),
        _ => match name.strip_prefix("config:") {
            Some(rel) => render_template(rel, side, ctx)?.display().to_string(),
            None => {
                return Err(LaunchError::Placeholder {
                    side,
                    name: name.to_string(),
                })
            }
        },
    })
}

/// Render a configuration template into the private directory.
fn render_template(rel: &str, side: &'static str, ctx: &Context) -> Result<PathBuf, LaunchError> {
    let src = ctx.profiles_dir.join(rel);
    let err = |message: String| LaunchError::Template {
        side,
        path: src.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&src).map_err(|e| err(e.to_string()))?;
    if text.contains("{config:") {
        return Err(err("templates cannot include other templates".into()));
    }
    let rendered = substitute(&text, side, ctx)?;
    let name = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let dst = ctx.secrets.dir().join(format!("{side}-{name}"));
    std::fs::write(&dst, rendered).map_err(|e| err(e.to_string()))?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_templates() {
        let secrets = Secrets::create().expect("secrets");
        let profiles = secrets.dir().join("profiles");
        std::fs::create_dir_all(profiles.join("x")).expect("dir");
        std::fs::write(
            profiles.join("x/t.json"),
            "{\"port\": {server_port}, \"pw\": \"{password}\"}",
        )
        .expect("t");
        let ctx = Context {
            client_port: 1080,
            server_port: 9000,
            dest_port: 9001,
            client_host: Ipv4Addr::LOCALHOST,
            server_host: Ipv4Addr::LOCALHOST,
            client_netns: None,
            server_netns: None,
            secrets: &secrets,
            profiles_dir: &profiles,
            endpoint: Path::new("/bin/true"),
        };
        assert_eq!(
            substitute("a {client_port} b", "client", &ctx).expect("ok"),
            "a 1080 b"
        );
        let p = substitute("{config:x/t.json}", "server", &ctx).expect("rendered");
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(
            text,
            format!("{{\"port\": 9000, \"pw\": \"{}\"}}", secrets.password)
        );
        assert!(Path::new(&p).starts_with(secrets.dir()));
        let e = substitute("{nope}", "client", &ctx)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("endpoints.client.command: unknown placeholder {nope}"),
            "{e}"
        );
        // Every listed placeholder is known (a missing peer binary is
        // another error, not an unknown placeholder).
        for name in PLACEHOLDERS {
            let got = substitute(&format!("{{{name}}}"), "client", &ctx);
            assert!(
                !matches!(got, Err(LaunchError::Placeholder { .. })),
                "{name}: {got:?}"
            );
        }
        // A brace that closes nothing stays as it is (JSON in arguments).
        assert_eq!(
            substitute("{\"a\": 1", "client", &ctx).expect("ok"),
            "{\"a\": 1"
        );
    }
}
