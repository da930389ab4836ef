//! The other implementations the interop suite runs against, as
//! [`Peer`]s: sing-box 1.14.4 for Trojan (tls), TUIC, Hysteria v1 and
//! Hysteria 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::harness::{Case, Peer};
use super::sing_box::{free_tcp_port, free_udp_port, json_path, SingBox};
use super::tuic::{PASSWORD, UUID};
use super::TempDir;

/// A sing-box peer from the JSON of its protocol's inbound (server side,
/// `{port}` to fill) and outbound (client side, `{server_port}`).
fn sing_box(
    name: &'static str,
    inbound: impl Fn(u16) -> String + 'static,
    outbound: impl Fn(u16) -> String + 'static,
    udp: bool,
) -> Peer {
    Peer {
        name,
        start_server: Box::new(move || {
            let dir = TempDir::new("sing-box-server");
            let port = if udp {
                free_udp_port()
            } else {
                free_tcp_port()
            };
            let config = format!(
                r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [{inbound}],
  "outbounds": [{{ "type": "direct", "tag": "direct" }}]
}}"#,
                inbound = inbound(port)
            );
            let sing_box = SingBox::start(dir.path(), "server", &config);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            (Box::new((sing_box, dir)), addr)
        }),
        start_client: Box::new(move |server: SocketAddr| {
            let dir = TempDir::new("sing-box-client");
            let socks_port = free_tcp_port();
            let config = format!(
                r#"{{
  "log": {{ "level": "warn" }},
  "inbounds": [
    {{ "type": "socks", "tag": "socks-in", "listen": "127.0.0.1", "listen_port": {socks_port} }}
  ],
  "outbounds": [{outbound}]
}}"#,
                outbound = outbound(server.port())
            );
            let sing_box = SingBox::start(dir.path(), "client", &config);
            let addr: SocketAddr = format!("127.0.0.1:{socks_port}").parse().unwrap();
            (Box::new((sing_box, dir)), addr)
        }),
    }
}

/// The certificate and key of a case, as sing-box config paths.
fn cert_key(case: &Case) -> (String, String) {
    let (cert, key): &(PathBuf, PathBuf) = case
        .cert_key
        .as_ref()
        .expect("a sing-box peer needs a case with a certificate");
    (json_path(cert), json_path(key))
}

/// sing-box's `trojan` for the tls case (password `pw`).
pub fn trojan(case: &Case) -> Peer {
    let (cert, key) = cert_key(case);
    let client_cert = cert.clone();
    sing_box(
        "sing-box trojan",
        move |port| {
            format!(
                r#"{{
      "type": "trojan", "tag": "trojan-in", "listen": "127.0.0.1", "listen_port": {port},
      "users": [{{ "name": "bench", "password": "pw" }}],
      "tls": {{ "enabled": true, "server_name": "localhost",
               "certificate_path": "{cert}", "key_path": "{key}" }}
    }}"#
            )
        },
        move |server_port| {
            format!(
                r#"{{
      "type": "trojan", "tag": "trojan-out", "server": "127.0.0.1", "server_port": {server_port},
      "password": "pw",
      "tls": {{ "enabled": true, "server_name": "localhost", "certificate_path": "{client_cert}" }}
    }}"#
            )
        },
        false,
    )
}

/// sing-box's `tuic` for the tuic case.
pub fn tuic(case: &Case) -> Peer {
    let (cert, key) = cert_key(case);
    let client_cert = cert.clone();
    sing_box(
        "sing-box tuic",
        move |port| {
            format!(
                r#"{{
      "type": "tuic", "tag": "tuic-in", "listen": "127.0.0.1", "listen_port": {port},
      "users": [{{ "name": "bench", "uuid": "{UUID}", "password": "{PASSWORD}" }}],
      "congestion_control": "bbr", "auth_timeout": "3s",
      "tls": {{ "enabled": true, "alpn": ["h3"],
               "certificate_path": "{cert}", "key_path": "{key}" }}
    }}"#
            )
        },
        move |server_port| {
            format!(
                r#"{{
      "type": "tuic", "tag": "tuic-out", "server": "127.0.0.1", "server_port": {server_port},
      "uuid": "{UUID}", "password": "{PASSWORD}",
      "congestion_control": "bbr", "udp_relay_mode": "native", "heartbeat": "10s",
      "tls": {{ "enabled": true, "server_name": "localhost", "alpn": ["h3"],
               "certificate_path": "{client_cert}" }}
    }}"#
            )
        },
        true,
    )
}

/// The password of the hysteria2 case's Salamander, as in
/// [`HYSTERIA2_OBFS`](super::cases::HYSTERIA2_OBFS).
const OBFS_PASSWORD: &str = "pass the salt";

/// sing-box's `hysteria2` for the hysteria2 case, with Salamander and
/// bandwidths when `obfs` (as the case).
pub fn hysteria2(case: &Case, obfs: bool) -> Peer {
    let (cert, key) = cert_key(case);
    let client_cert = cert.clone();
    let extras = move || {
        if obfs {
            format!(
                r#""up_mbps": 1000, "down_mbps": 1000,
      "obfs": {{ "type": "salamander", "password": "{OBFS_PASSWORD}" }},"#
            )
        } else {
            String::new()
        }
    };
    sing_box(
        "sing-box hysteria2",
        move |port| {
            format!(
                r#"{{
      "type": "hysteria2", "tag": "hy2-in", "listen": "127.0.0.1", "listen_port": {port},
      {extras}
      "users": [{{ "name": "bench", "password": "{PASSWORD}" }}],
      "tls": {{ "enabled": true, "alpn": ["h3"],
               "certificate_path": "{cert}", "key_path": "{key}" }}
    }}"#,
                extras = extras()
            )
        },
        move |server_port| {
            format!(
                r#"{{
      "type": "hysteria2", "tag": "hy2-out", "server": "127.0.0.1", "server_port": {server_port},
      {extras}
      "password": "{PASSWORD}",
      "tls": {{ "enabled": true, "server_name": "localhost", "alpn": ["h3"],
               "certificate_path": "{client_cert}" }}
    }}"#,
                extras = extras()
            )
        },
        true,
    )
}

/// sing-box's `hysteria` (v1) for the hysteria1 case: 1000 Mbit/s each way
/// as the case, the case's authentication string, XPlus when `obfs`.
pub fn hysteria1(case: &Case, obfs: bool) -> Peer {
    use super::cases::HYSTERIA1_OBFS_KEY;
    let (cert, key) = cert_key(case);
    let client_cert = cert.clone();
    let extras = move || {
        let obfs = if obfs {
            format!(r#""obfs": "{HYSTERIA1_OBFS_KEY}","#)
        } else {
            String::new()
        };
        format!(r#""up_mbps": 1000, "down_mbps": 1000, {obfs}"#)
    };
    sing_box(
        "sing-box hysteria",
        move |port| {
            format!(
                r#"{{
      "type": "hysteria", "tag": "hy-in", "listen": "127.0.0.1", "listen_port": {port},
      {extras}
      "users": [{{ "name": "bench", "auth_str": "{PASSWORD}" }}],
      "tls": {{ "enabled": true, "alpn": ["hysteria"],
               "certificate_path": "{cert}", "key_path": "{key}" }}
    }}"#,
                extras = extras()
            )
        },
        move |server_port| {
            format!(
                r#"{{
      "type": "hysteria", "tag": "hy-out", "server": "127.0.0.1", "server_port": {server_port},
      {extras}
      "auth_str": "{PASSWORD}",
      "tls": {{ "enabled": true, "server_name": "localhost", "alpn": ["hysteria"],
               "certificate_path": "{client_cert}" }}
    }}"#,
                extras = extras()
            )
        },
        true,
    )
}
