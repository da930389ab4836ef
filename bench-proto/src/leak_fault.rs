//! `relay.leak`: a leak the reference endpoints can inject on purpose, a
//! test aid that proves protoprof's leak verdicts (off by default; never
//! set it outside a test of the detector).
//!
//! Every relayed connection keeps, for the life of the process, either one
//! descriptor (`fds`: `/dev/null`, opened and never closed) or 64 KiB of
//! heap (`memory`: written, so that it is resident, and never freed).

use std::fmt;
use std::str::FromStr;

use crate::settings::SettingError;

/// Heap kept per connection by [`LeakFault::Memory`].
pub const LEAKED_BYTES_PER_CONNECTION: usize = 64 * 1024;

/// What each relayed connection leaks (`relay.leak`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LeakFault {
    /// Nothing: the endpoint as it should be.
    #[default]
    None,
    /// 64 KiB of resident heap per connection.
    Memory,
    /// One open descriptor per connection.
    Fds,
}

impl LeakFault {
    /// Every value, as written in `relay.leak=NAME`.
    pub const NAMES: &'static [&'static str] = &["none", "memory", "fds"];

    /// The name of the fault in settings.
    pub fn name(self) -> &'static str {
        match self {
            LeakFault::None => "none",
            LeakFault::Memory => "memory",
            LeakFault::Fds => "fds",
        }
    }

    /// Leaks what this fault leaks for one connection. Never inlined: the
    /// leak tests find this frame in the stacks of the unfreed bytes.
    #[inline(never)]
    pub fn keep_for_connection(self) {
        match self {
            LeakFault::None => {}
            LeakFault::Memory => {
                // Filled with a non-zero byte so that every page is touched
                // and counts in RSS; black_box keeps the optimiser from
                // dropping an allocation nothing reads.
                let kept = vec![0xa5u8; LEAKED_BYTES_PER_CONNECTION].leak();
                std::hint::black_box(kept);
            }
            LeakFault::Fds => {
                // At the descriptor limit there is nothing more to leak.
                if let Ok(f) = std::fs::File::open("/dev/null") {
                    std::mem::forget(f);
                }
            }
        }
    }
}

impl fmt::Display for LeakFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LeakFault {
    type Err = SettingError;

    fn from_str(value: &str) -> Result<Self, SettingError> {
        match value {
            "none" => Ok(LeakFault::None),
            "memory" => Ok(LeakFault::Memory),
            "fds" => Ok(LeakFault::Fds),
            _ => Err(SettingError::BadValue {
                key: "relay.leak".into(),
                value: value.to_owned(),
                expected: format!("one of {}", LeakFault::NAMES.join(", ")),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[test]
    fn names_round_trip_and_bad_values_name_the_key() {
        for n in LeakFault::NAMES {
            assert_eq!(n.parse::<LeakFault>().map(LeakFault::name), Ok(*n));
        }
        let e = "some".parse::<LeakFault>().unwrap_err().to_string();
        assert!(
            e.contains("relay.leak") && e.contains("none, memory, fds"),
            "{e}"
        );
    }

    #[test]
    fn fds_keeps_one_descriptor_per_connection() {
        // Other tests of this binary may open and close descriptors at the
        // same time: the count is bounded, not exact.
        let before = open_fds();
        for _ in 0..50 {
            LeakFault::Fds.keep_for_connection();
        }
        let grew = open_fds() as i64 - before as i64;
        assert!((45..=55).contains(&grew), "{grew}");
        LeakFault::None.keep_for_connection();
    }
}
