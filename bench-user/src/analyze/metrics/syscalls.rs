//! Syscall metrics: syscalls and wake-ups per MiB, bytes per read and
//! write, vectored and zero-copy shares, context switches per MiB, and the
//! datagrams the kernel dropped at the target's full UDP receive buffers
//! per MiB.

use std::collections::BTreeMap;

use super::{
    ratio, un, Evidence, MetricInputs, Scope, MIB, NO_BYTES, READ_SYSCALLS, VECTORED_SYSCALLS,
    WAKEUP_SYSCALLS, WRITE_SYSCALLS, ZERO_COPY_SYSCALLS,
};
use crate::report::{Metric, MetricEvidence};

/// The syscall family, over the target's metric phases (`scope`).
pub(super) fn insert(
    inp: &MetricInputs,
    scope: &Scope,
    m: &mut BTreeMap<String, Metric>,
    ev: &mut Evidence,
) {
    let mib = scope.bytes / MIB;
    // Syscalls.
    if inp.probes.options.syscalls {
        let sum = |names: &[&str], f: &dyn Fn(&crate::report::SyscallCount) -> u64| -> u64 {
            scope
                .syscalls
                .iter()
                .filter(|r| names.contains(&r.name.as_str()))
                .map(f)
                .sum()
        };
        let all: u64 = scope.syscalls.iter().map(|r| r.count).sum();
        m.insert("syscalls_per_mib".into(), ratio(all as f64, mib, NO_BYTES));
        m.insert(
            "wakeups_per_mib".into(),
            ratio(sum(WAKEUP_SYSCALLS, &|r| r.count) as f64, mib, NO_BYTES),
        );
        let reads = sum(READ_SYSCALLS, &|r| r.count - r.errors);
        let writes = sum(WRITE_SYSCALLS, &|r| r.count - r.errors);
        let read_bytes = sum(READ_SYSCALLS, &|r| r.bytes);
        let write_bytes = sum(WRITE_SYSCALLS, &|r| r.bytes);
        let zero_copy_bytes = sum(ZERO_COPY_SYSCALLS, &|r| r.bytes);
        // When splice/sendfile carried the payload, the reads and writes
        // left are control traffic (SOCKS5, headers): their sizes say
        // nothing about the data path.
        let spliced = zero_copy_bytes > 0 && zero_copy_bytes >= read_bytes + write_bytes;
        let by_splice = |what: &str| {
            un(&format!(
                "the payload moved by splice/sendfile ({}); the {what} left carry control traffic only",
                crate::units::bytes(zero_copy_bytes as f64)
            ))
        };
        m.insert(
            "bytes_per_read".into(),
            if spliced {
                by_splice("reads")
            } else {
                ratio(
                    read_bytes as f64,
                    reads as f64,
                    "no successful read-family syscall",
                )
            },
        );
        m.insert(
            "bytes_per_write".into(),
            if spliced {
                by_splice("writes")
            } else {
                ratio(
                    write_bytes as f64,
                    writes as f64,
                    "no successful write-family syscall",
                )
            },
        );
        // Exact counts, not samples: no interval.
        let calls = |names: &[&[&str]]| MetricEvidence {
            samples: names.iter().map(|n| sum(n, &|r| r.count)).sum(),
            interval: None,
        };
        if !spliced {
            ev.insert(
                "vectored_share".into(),
                calls(&[READ_SYSCALLS, WRITE_SYSCALLS]),
            );
        }
        ev.insert(
            "zero_copy_share".into(),
            calls(&[READ_SYSCALLS, WRITE_SYSCALLS, ZERO_COPY_SYSCALLS]),
        );
        m.insert(
            "vectored_share".into(),
            if spliced {
                by_splice("reads and writes")
            } else {
                ratio(
                    sum(VECTORED_SYSCALLS, &|r| r.count) as f64,
                    (sum(READ_SYSCALLS, &|r| r.count) + sum(WRITE_SYSCALLS, &|r| r.count)) as f64,
                    "no read- or write-family syscall",
                )
            },
        );
        // Splice moves each byte twice (socket → pipe → socket), read+write
        // once each: both count a byte per call that touches it.
        m.insert(
            "zero_copy_share".into(),
            ratio(
                zero_copy_bytes as f64,
                (zero_copy_bytes + read_bytes + write_bytes) as f64,
                "no bytes moved by any syscall",
            ),
        );
    } else {
        let why = "the syscalls probe was off (probes.syscalls)";
        for name in [
            "syscalls_per_mib",
            "wakeups_per_mib",
            "bytes_per_read",
            "bytes_per_write",
            "vectored_share",
            "zero_copy_share",
        ] {
            m.insert(name.into(), un(why));
        }
    }

    m.insert(
        "context_switches_per_mib".into(),
        match scope.counters.get("context_switches") {
            Some(crate::report::Reading::Value(v)) => ratio(*v as f64, mib, NO_BYTES),
            Some(crate::report::Reading::Unavailable(why)) => un(why),
            None => un("perf counters were off (probes.counters)"),
        },
    );
    m.insert(
        "udp_drops_per_mib".into(),
        match scope.counters.get(crate::capture::sockets::UDP_DROPS) {
            Some(crate::report::Reading::Value(v)) => ratio(*v as f64, mib, NO_BYTES),
            Some(crate::report::Reading::Unavailable(why)) => un(why),
            None => un("UDP drops were not read (a report from before they were)"),
        },
    );
}
