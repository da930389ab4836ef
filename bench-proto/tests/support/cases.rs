//! Every protocol as a [`Case`] of the harness: its endpoint command lines,
//! a client with a wrong credential, and the bad command lines that must
//! exit 2.

use bench_proto::{pki, ssh};

use super::ech::{self, ech_pki};
use super::harness::{args, Case, Transport};
use super::{pki as test_pki, TempDir};

/// The tuic user and password, as in the in-process tests.
use super::tuic::{PASSWORD, UUID};

/// A command line that must exit 2 and what its line must name.
fn bad(line: &[&str], needle: &str) -> (Vec<String>, String) {
    (args(line), needle.to_owned())
}

/// A command line (already owned) that must exit 2 and its needle.
fn owned(line: Vec<String>, needle: &str) -> (Vec<String>, String) {
    (line, needle.to_owned())
}

/// `line` with `--set SETTING` appended.
fn with_set(line: &[&str], setting: &str) -> Vec<String> {
    let mut v = args(line);
    v.extend(args(&["--set", setting]));
    v
}

/// Trojan over TLS 1.3, with an ALPN and a relay setting.
pub fn tls() -> Case {
    let dir = TempDir::new("case-tls");
    let (cert_path, key_path) = pki::self_signed(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let (cert, key) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let client = |password: &str| {
        args(&[
            "--ca",
            cert,
            "--server-name",
            "localhost",
            "--password",
            password,
            "--set",
            "tls.alpn=h2",
        ])
    };
    let server = ["tls", "server", "--listen", "127.0.0.1:0"];
    let with_certs = [
        &server[..],
        &["--cert", cert, "--key", key, "--password", "pw"],
    ]
    .concat();
    let client_line = |extra: &[&str]| -> Vec<String> {
        let mut v = args(&[
            "tls",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--password",
            "pw",
        ]);
        v.extend(args(extra));
        v
    };
    let mut bad_lines = vec![
        (with_set(&with_certs, "tls.nope=1"), "tls.nope".to_owned()),
        (
            with_set(&with_certs, "tls.fallback=nowhere"),
            "tls.fallback".to_owned(),
        ),
        (
            with_set(&with_certs, "tls.alpn=a,,b"),
            "tls.alpn".to_owned(),
        ),
        (with_set(&with_certs, "nope.x=1"), "tls.fallback".to_owned()),
    ];
    bad_lines.extend([
        bad(
            &[&server[..], &["--key", key, "--password", "pw"]].concat(),
            "--cert",
        ),
        bad(
            &[
                &server[..],
                &["--cert", cert, "--key", cert, "--password", "pw"],
            ]
            .concat(),
            cert,
        ),
        bad(
            &[&server[..], &["--cert", cert, "--key", key]].concat(),
            "--password",
        ),
        owned(client_line(&[]), "--ca"),
        owned(client_line(&["--ca", key]), "certificate"),
        owned(
            client_line(&["--ca", cert, "--server-name", "no name"]),
            "server name",
        ),
    ]);
    Case {
        protocol: "tls",
        transport: Transport::Tcp,
        server: args(&[
            "--cert",
            cert,
            "--key",
            key,
            "--password",
            "pw",
            "--set",
            "tls.alpn=h2",
            "--set",
            "relay.buffer_size=16384",
        ]),
        client: client("pw"),
        wrong_client: Some(client("not the password")),
        bad: bad_lines,
        cert_key: Some((cert_path.clone(), key_path.clone())),
        _files: Box::new(dir),
    }
}

/// SSH `direct-tcpip`, password authentication; `by_key` makes the client
/// authenticate with a key instead.
pub fn ssh(by_key: bool) -> Case {
    let dir = TempDir::new("case-ssh");
    ssh::generate_key(&dir.join("host_key")).unwrap();
    ssh::generate_key(&dir.join("id")).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (host_key, host_pub, id, id_pub) = (p("host_key"), p("host_key.pub"), p("id"), p("id.pub"));
    let known = format!("ssh.known_host_key={host_pub}");
    let client = if by_key {
        args(&["--user", "bench", "--identity", &id, "--set", &known])
    } else {
        args(&["--user", "bench", "--password", "pw", "--set", &known])
    };
    let server = ["ssh", "server", "--listen", "127.0.0.1:0"];
    let client_line = |extra: &[&str]| -> Vec<String> {
        let mut v = args(&[
            "ssh",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
        ]);
        v.extend(args(extra));
        v
    };
    let bad_lines = vec![
        bad(
            &[
                &server[..],
                &[
                    "--host-key",
                    &host_key,
                    "--user",
                    "u",
                    "--password",
                    "p",
                    "--set",
                    "ssh.nope=1",
                ],
            ]
            .concat(),
            "ssh.nope",
        ),
        bad(
            &[&server[..], &["--user", "u", "--password", "p"]].concat(),
            "--host-key",
        ),
        bad(
            &[&server[..], &["--host-key", &host_key]].concat(),
            "--authorized-keys",
        ),
        bad(
            &[&server[..], &["--host-key", &host_key, "--password", "p"]].concat(),
            "--user",
        ),
        bad(
            &[
                &server[..],
                &["--host-key", &host_pub, "--user", "u", "--password", "p"],
            ]
            .concat(),
            &host_pub,
        ),
        bad(
            &[
                &server[..],
                &["--host-key", &host_key, "--authorized-keys", &host_key],
            ]
            .concat(),
            &host_key,
        ),
        owned(
            client_line(&["--user", "u", "--password", "p"]),
            "ssh.known_host_key",
        ),
        owned(
            client_line(&[
                "--user",
                "u",
                "--password",
                "p",
                "--set",
                "ssh.accept_any_host_key=maybe",
            ]),
            "ssh.accept_any_host_key",
        ),
        owned(client_line(&["--password", "p", "--set", &known]), "--user"),
        owned(client_line(&["--user", "u", "--set", &known]), "--identity"),
        owned(
            client_line(&["--user", "u", "--identity", &host_pub, "--set", &known]),
            &host_pub,
        ),
    ];
    Case {
        protocol: "ssh",
        transport: Transport::Tcp,
        server: args(&[
            "--host-key",
            &host_key,
            "--user",
            "bench",
            "--password",
            "pw",
            "--authorized-keys",
            &id_pub,
        ]),
        client,
        wrong_client: Some(args(&[
            "--user",
            "bench",
            "--password",
            "nope",
            "--set",
            &known,
        ])),
        bad: bad_lines,
        cert_key: None,
        _files: Box::new(dir),
    }
}

/// TUIC v5 over QUIC, with non-default settings on both sides.
pub fn tuic() -> Case {
    let pki = test_pki();
    let cert = pki.cert.to_str().unwrap().to_owned();
    let key = pki.key.to_str().unwrap().to_owned();
    let server_line = |set: &str| {
        with_set(
            &[
                "tuic",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                &cert,
                "--key",
                &key,
                "--user",
                UUID,
                "--password",
                PASSWORD,
            ],
            set,
        )
    };
    let mut bad_lines: Vec<(Vec<String>, String)> = [
        ("tuic.x=1", "tuic.x"),
        ("tuic.udp_relay_mode=tcp", "tuic.udp_relay_mode"),
        ("tuic.congestion_control=vegas", "tuic.congestion_control"),
        ("tuic.heartbeat_s=0", "tuic.heartbeat_s"),
    ]
    .iter()
    .map(|(set, name)| (server_line(set), (*name).to_owned()))
    .collect();
    // A user that is not a UUID, and a missing --ca, are usage errors too.
    bad_lines.push(bad(
        &[
            "tuic",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            &cert,
            "--key",
            &key,
            "--user",
            "bob",
            "--password",
            PASSWORD,
        ],
        "",
    ));
    bad_lines.push(bad(
        &[
            "tuic",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--user",
            UUID,
            "--password",
            PASSWORD,
        ],
        "",
    ));
    let client = |password: &str| {
        args(&[
            "--ca",
            &cert,
            "--user",
            UUID,
            "--password",
            password,
            "--set",
            "tuic.udp_relay_mode=quic",
            "--set",
            "tuic.heartbeat_s=5",
        ])
    };
    Case {
        protocol: "tuic",
        transport: Transport::Udp,
        server: args(&[
            "--cert",
            &cert,
            "--key",
            &key,
            "--user",
            UUID,
            "--password",
            PASSWORD,
            "--set",
            "tuic.congestion_control=cubic",
        ]),
        client: client(PASSWORD),
        wrong_client: Some(client("not the password")),
        bad: bad_lines,
        cert_key: Some((pki.cert.clone(), pki.key.clone())),
        _files: Box::new(pki),
    }
}

/// The settings of the hysteria2 case with Salamander and Brutal.
pub const HYSTERIA2_OBFS: &[&str] = &[
    "--set",
    "hysteria2.obfs=salamander",
    "--set",
    "hysteria2.obfs_password=pass the salt",
    "--set",
    "hysteria2.up_mbps=1000",
    "--set",
    "hysteria2.down_mbps=1000",
];

/// Hysteria 2 over QUIC; `obfs` adds Salamander and Brutal at 1000 Mbit/s
/// on both sides.
pub fn hysteria2(obfs: bool) -> Case {
    let pki = test_pki();
    let cert = pki.cert.to_str().unwrap().to_owned();
    let key = pki.key.to_str().unwrap().to_owned();
    let extra: &[&str] = if obfs { HYSTERIA2_OBFS } else { &[] };
    let server_base = [
        "hysteria2",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &cert,
        "--key",
        &key,
        "--password",
        PASSWORD,
    ];
    let mut bad_lines: Vec<(Vec<String>, String)> = [
        ("hysteria2.x=1", "hysteria2.x"),
        ("hysteria2.obfs=xor", "hysteria2.obfs"),
        ("hysteria2.obfs=salamander", "hysteria2.obfs_password"),
        ("hysteria2.up_mbps=fast", "hysteria2.up_mbps"),
        ("hysteria2.udp=maybe", "hysteria2.udp"),
    ]
    .iter()
    .map(|(set, name)| (with_set(&server_base, set), (*name).to_owned()))
    .collect();
    // A missing --ca or --password is a usage error too.
    bad_lines.push(bad(
        &[
            "hysteria2",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--password",
            PASSWORD,
        ],
        "",
    ));
    bad_lines.push(bad(&server_base[..8], ""));
    let client = |password: &str| {
        let mut v = args(&[
            "--ca",
            &cert,
            "--server-name",
            "localhost",
            "--password",
            password,
        ]);
        v.extend(args(extra));
        v
    };
    let mut server = args(&["--cert", &cert, "--key", &key, "--password", PASSWORD]);
    server.extend(args(extra));
    Case {
        protocol: "hysteria2",
        transport: Transport::Udp,
        server,
        client: client(PASSWORD),
        wrong_client: Some(client("not the password")),
        bad: bad_lines,
        cert_key: Some((pki.cert.clone(), pki.key.clone())),
        _files: Box::new(pki),
    }
}

/// The XPlus key of the hysteria1 case with obfuscation.
pub const HYSTERIA1_OBFS_KEY: &str = "pass the salt";

/// Hysteria v1 over QUIC at 1000 Mbit/s each way on both sides (Brutal);
/// `obfs` adds XPlus.
pub fn hysteria1(obfs: bool) -> Case {
    let pki = test_pki();
    let cert = pki.cert.to_str().unwrap().to_owned();
    let key = pki.key.to_str().unwrap().to_owned();
    let obfs_set = format!("hysteria1.obfs={HYSTERIA1_OBFS_KEY}");
    let mut extra = args(&[
        "--set",
        "hysteria1.up_mbps=1000",
        "--set",
        "hysteria1.down_mbps=1000",
    ]);
    if obfs {
        extra.extend(args(&["--set", &obfs_set]));
    }
    let server_base = [
        "hysteria1",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &cert,
        "--key",
        &key,
        "--password",
        PASSWORD,
    ];
    let mut bad_lines: Vec<(Vec<String>, String)> = [
        ("hysteria1.x=1", "hysteria1.x"),
        ("hysteria1.up_mbps=0", "hysteria1.up_mbps"),
        ("hysteria1.down_mbps=fast", "hysteria1.down_mbps"),
        ("hysteria1.udp=maybe", "hysteria1.udp"),
        ("hysteria1.idle_timeout_s=0", "hysteria1.idle_timeout_s"),
    ]
    .iter()
    .map(|(set, name)| (with_set(&server_base, set), (*name).to_owned()))
    .collect();
    // A missing --ca, --password or --cert is a usage error too.
    bad_lines.push(bad(
        &[
            "hysteria1",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--password",
            PASSWORD,
        ],
        "--ca",
    ));
    bad_lines.push(bad(&server_base[..8], "--password"));
    bad_lines.push(bad(
        &[&server_base[..4], &server_base[6..]].concat(),
        "--cert",
    ));
    let client = |auth: &str| {
        let mut v = args(&[
            "--ca",
            &cert,
            "--server-name",
            "localhost",
            "--password",
            auth,
        ]);
        v.extend(extra.iter().cloned());
        v
    };
    let mut server = args(&["--cert", &cert, "--key", &key, "--password", PASSWORD]);
    server.extend(extra.iter().cloned());
    Case {
        protocol: "hysteria1",
        transport: Transport::Udp,
        server,
        client: client(PASSWORD),
        wrong_client: Some(client("not the password")),
        bad: bad_lines,
        cert_key: Some((pki.cert.clone(), pki.key.clone())),
        _files: Box::new(pki),
    }
}

/// Trojan over TLS 1.3 with ECH (BoringSSL): the server holds the ECH keys
/// and both certificates, the client seals its ClientHello to the config.
/// Its bad lines are ECH's own; the Trojan settings are `tls`'s case's.
pub fn ech() -> Case {
    let pki = ech_pki();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (cert, key, public_cert, public_key) = (
        path(&pki.cert),
        path(&pki.key),
        path(&pki.public_cert),
        path(&pki.public_key),
    );
    let (ca, ech_config, ech_keys) = (path(&pki.ca), path(&pki.ech_config), path(&pki.ech_keys));
    let client = |password: &str| {
        args(&[
            "--ca",
            &ca,
            "--ech-config",
            &ech_config,
            "--server-name",
            ech::INNER_NAME,
            "--password",
            password,
        ])
    };
    let server_files = [
        "--cert",
        &cert,
        "--key",
        &key,
        "--public-cert",
        &public_cert,
        "--public-key",
        &public_key,
        "--ech-keys",
        &ech_keys,
    ];
    let server_line = |files: &[&str]| -> Vec<String> {
        let mut v = args(&["ech", "server", "--listen", "127.0.0.1:0"]);
        v.extend(args(files));
        v.extend(args(&["--password", "pw"]));
        v
    };
    let client_line = |extra: &[&str]| -> Vec<String> {
        let mut v = args(&[
            "ech",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
            "--ca",
            &ca,
            "--password",
            "pw",
        ]);
        v.extend(args(extra));
        v
    };
    let bad_lines = vec![
        owned(server_line(&server_files[..8]), "--ech-keys"),
        owned(server_line(&server_files[4..]), "--cert"),
        owned(
            server_line(&[&server_files[..4], &server_files[8..]].concat()),
            "--public-cert",
        ),
        // The ECH configs are no ECH keys.
        owned(
            server_line(&[&server_files[..9], &[ech_config.as_str()]].concat()),
            &ech_config,
        ),
        owned(client_line(&[]), "--ech-config"),
        owned(
            client_line(&["--ech-config", &ech_config, "--set", "ech.grease=true"]),
            "ech.grease",
        ),
        owned(client_line(&["--set", "ech.grease=yes"]), "ech.grease"),
        owned(client_line(&["--ech-config", &cert]), &cert),
        owned(
            [server_line(&server_files), args(&["--set", "ech.nope=1"])].concat(),
            "ech.nope",
        ),
    ];
    let server_args = {
        let mut v = args(&server_files);
        v.extend(args(&["--password", "pw"]));
        v
    };
    Case {
        protocol: "ech",
        transport: Transport::Tcp,
        server: server_args,
        client: client("pw"),
        wrong_client: Some(client("not the password")),
        bad: bad_lines,
        cert_key: Some((pki.cert.clone(), pki.key.clone())),
        _files: Box::new(pki),
    }
}

/// The run's REALITY keys and short id, made per case.
#[derive(Clone)]
pub struct RealityKeys {
    pub private: String,
    pub public: String,
    pub short_id: &'static str,
}

impl RealityKeys {
    /// Keys whose base64url texts both start with `-`, which a command
    /// line must take as values, not flags (1 pair in 4096 does).
    pub fn with_leading_hyphens() -> RealityKeys {
        loop {
            let k = RealityKeys::new();
            if k.private.starts_with('-') && k.public.starts_with('-') {
                return k;
            }
        }
    }

    pub fn new() -> RealityKeys {
        let (private, public) = bench_proto::reality::generate_key_pair().unwrap();
        RealityKeys {
            private,
            public,
            short_id: "0a1b2c3d",
        }
    }
}

/// VLESS over REALITY: the server holds the X25519 private key and accepts
/// one short id; the client poses as `localhost`. The wrong client holds
/// another server's public key, so its ClientHello does not authenticate
/// and (no `reality.dest` here) the server closes it.
pub fn reality() -> Case {
    reality_with(RealityKeys::new())
}

/// [`reality`] with these keys (an interop peer needs them too).
pub fn reality_with(keys: RealityKeys) -> Case {
    let other = RealityKeys::new();
    let short_id = format!("reality.short_id={}", keys.short_id);
    let client = |public: &str| {
        args(&[
            "--reality-key",
            public,
            "--user",
            UUID,
            "--server-name",
            "localhost",
            "--set",
            &short_id,
        ])
    };
    let server = ["reality", "server", "--listen", "127.0.0.1:0"];
    let with_key = [
        &server[..],
        &["--reality-key", &keys.private, "--user", UUID],
    ]
    .concat();
    let client_line = |extra: &[&str]| -> Vec<String> {
        let mut v = args(&[
            "reality",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
        ]);
        v.extend(args(extra));
        v
    };
    let bad_lines = vec![
        bad(&[&server[..], &["--user", UUID]].concat(), "--reality-key"),
        bad(
            &[&server[..], &["--reality-key", "not-a-key", "--user", UUID]].concat(),
            "--reality-key",
        ),
        bad(
            &[&server[..], &["--reality-key", &keys.private]].concat(),
            "--user",
        ),
        bad(
            &[
                &server[..],
                &["--reality-key", &keys.private, "--user", "nope"],
            ]
            .concat(),
            "--user",
        ),
        owned(
            with_set(&with_key, "reality.short_ids=xyz"),
            "reality.short_ids",
        ),
        owned(with_set(&with_key, "reality.dest=nowhere"), "reality.dest"),
        owned(with_set(&with_key, "reality.nope=1"), "reality.nope"),
        owned(client_line(&["--user", UUID]), "--reality-key"),
        owned(
            client_line(&[
                "--reality-key",
                &keys.public,
                "--user",
                UUID,
                "--set",
                "reality.short_id=123",
            ]),
            "reality.short_id",
        ),
    ];
    let server_args = args(&[
        "--reality-key",
        &keys.private,
        "--user",
        UUID,
        "--set",
        &format!("reality.short_ids={}", keys.short_id),
    ]);
    Case {
        protocol: "reality",
        transport: Transport::Tcp,
        server: server_args,
        client: client(&keys.public),
        wrong_client: Some(client(&other.public)),
        bad: bad_lines,
        cert_key: None,
        _files: Box::new(keys),
    }
}
