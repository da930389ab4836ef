//! What the probes need from the kernel and the process, checked before a
//! run starts anything: the capabilities to load and attach them and to read
//! the targets' sockets, and the kernel's BTF. Without them a run would
//! start the chain and fail halfway; with this check it says in one line
//! what is missing.

use std::path::Path;

/// Capability numbers (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Where the kernel describes its own types; the offcpu probe reads
/// `task_struct`'s layout from it.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What is missing, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MissingPrivileges(String);

/// The process's state as far as the probes care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The effective capability set (bit n = capability n).
    pub effective: u64,
    /// `kernel.perf_event_paranoid`, when readable.
    pub perf_event_paranoid: Option<i32>,
    pub btf: bool,
}

impl Privileges {
    /// This process's.
    pub fn current() -> Privileges {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Privileges {
            effective: effective_caps(&status).unwrap_or(0),
            perf_event_paranoid: paranoid,
            btf: Path::new(VMLINUX_BTF).is_file(),
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.effective & (1 << cap) != 0
    }

    /// Ok when the probes can run; else the one line naming every missing
    /// piece and how to get it.
    pub fn check(&self) -> Result<(), MissingPrivileges> {
        // Before CAP_BPF and CAP_PERFMON (Linux 5.8) CAP_SYS_ADMIN held both.
        let admin = self.has(CAP_SYS_ADMIN);
        let mut missing = Vec::new();
        if !(self.has(CAP_BPF) || admin) {
            missing.push("CAP_BPF (loading the probes)".to_string());
        }
        if !(self.has(CAP_PERFMON) || admin) {
            let paranoid = self
                .perf_event_paranoid
                .map_or("unreadable".to_string(), |p| p.to_string());
            missing.push(format!(
                "CAP_PERFMON (perf events and uprobes on the targets; without it \
                 kernel.perf_event_paranoid={paranoid} decides, and BPF programs on perf events need the capability)"
            ));
        }
        if !self.has(CAP_SYS_PTRACE) {
            missing.push("CAP_SYS_PTRACE (reading the targets' sockets)".to_string());
        }
        let mut line = String::new();
        if !missing.is_empty() {
            line = format!(
                "missing {}: run as root, or grant them: setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep protoprof",
                missing.join(", ")
            );
        }
        if !self.btf {
            if !line.is_empty() {
                line.push_str("; and ");
            }
            line.push_str(&format!(
                "the kernel has no BTF ({VMLINUX_BTF} is missing): use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
            ));
        }
        if line.is_empty() {
            Ok(())
        } else {
            Err(MissingPrivileges(format!("cannot probe here: {line}")))
        }
    }
}

/// The `CapEff:` field of /proc/PID/status.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(caps: &[u32]) -> Privileges {
        Privileges {
            effective: caps.iter().fold(0, |m, c| m | (1 << c)),
            perf_event_paranoid: Some(2),
            btf: true,
        }
    }

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(effective_caps(status), Some(0x1fffeffffff));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn the_three_capabilities_suffice_and_sys_admin_stands_for_two() {
        assert!(with(&[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE])
            .check()
            .is_ok());
        assert!(with(&[CAP_SYS_ADMIN, CAP_SYS_PTRACE]).check().is_ok());
    }

    #[test]
    fn names_exactly_what_is_missing() {
        let e = with(&[CAP_PERFMON, CAP_SYS_PTRACE]).check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot probe here: missing CAP_BPF (loading the probes): run as root, \
             or grant them: setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep protoprof"
        );
        let none = with(&[]).check().unwrap_err().to_string();
        for name in [
            "CAP_BPF",
            "CAP_PERFMON",
            "kernel.perf_event_paranoid=2",
            "CAP_SYS_PTRACE",
        ] {
            assert!(none.contains(name), "{none}");
        }
        assert!(!none.contains('\n'));
        let mut no_btf = with(&[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE]);
        no_btf.btf = false;
        let e = no_btf.check().unwrap_err().to_string();
        assert!(e.contains("/sys/kernel/btf/vmlinux is missing"), "{e}");
        assert!(!e.contains("CAP_"), "{e}");
    }
}
