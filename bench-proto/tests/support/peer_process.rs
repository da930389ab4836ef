//! A peer program run by a test (sing-box, shoes): started with its
//! stdout and stderr in files, killed and reaped when dropped (also on
//! panic), its log printed when the test is failing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct PeerProcess {
    who: &'static str,
    child: Child,
    log: PathBuf,
}

impl PeerProcess {
    /// Spawns `cmd` with stdout in `dir/NAME.out` and stderr (where both
    /// peers log) in `dir/NAME.log`.
    pub fn spawn(who: &'static str, mut cmd: Command, dir: &Path, name: &str) -> PeerProcess {
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        PeerProcess { who, child, log }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} log ---\n{log}", self.who);
        }
    }
}
