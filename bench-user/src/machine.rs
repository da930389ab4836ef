//! machine: what identifies the machine a run measured, so that numbers are
//! only compared with numbers from the same kind of machine (baselines key
//! on [`Machine::fingerprint`]).

use crate::report::Machine;

/// Describe this machine from /proc and uname.
pub fn this_machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    describe(cpu_model, cpus, memory_bytes, kernel)
}

/// A [`Machine`] with its fingerprint. Memory is rounded to GiB so that the
/// few MiB a kernel update reserves do not change the fingerprint.
pub fn describe(cpu_model: String, cpus: usize, memory_bytes: u64, kernel: String) -> Machine {
    let gib = (memory_bytes as f64 / (1u64 << 30) as f64).round() as u64;
    let mut h = blake3::Hasher::new();
    h.update(b"protoprof machine v1\0");
    h.update(cpu_model.as_bytes());
    h.update(format!("\0{cpus}\0{gib}\0").as_bytes());
    h.update(kernel.as_bytes());
    Machine {
        fingerprint: h.finalize().to_hex().to_string(),
        cpu_model,
        cpus,
        memory_bytes,
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_the_hardware_not_spare_mib() {
        let a = describe("X".into(), 2, 24 << 30, "6.18".into());
        let b = describe("X".into(), 2, (24 << 30) - (3 << 20), "6.18".into());
        let c = describe("X".into(), 4, 24 << 30, "6.18".into());
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(
            this_machine().cpus,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
    }
}
