//! Resources over time: each target read from /proc once a second for
//! the whole run (set-up phase, every pass and the gaps between them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Role;
use crate::capture::resources as rt;

/// Every target's resources over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resources {
    /// Seconds between two readings.
    pub interval_s: f64,
    /// What is not here, and why.
    pub notes: Vec<String>,
    pub targets: Vec<TargetResources>,
}

/// One target's readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetResources {
    pub role: Role,
    pub pid: u32,
    pub samples: Vec<ResourcePoint>,
    /// Descriptors and TCP sockets before the main pass and after the
    /// run's last connection closed; absent when either could not be read.
    #[serde(default)]
    pub return_to_baseline: Option<super::BaselineCheck>,
}

/// One reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourcePoint {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Resident memory (VmRSS).
    pub rss_bytes: u64,
    pub fds: FdCounts,
    pub threads: u64,
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// CPU since the previous reading, in cores (absent on the first).
    pub cpu_cores: Option<f64>,
    /// The target's TCP sockets by state: those it holds a descriptor to
    /// (TIME_WAIT sockets belong to no process and are not counted).
    pub tcp: TcpCounts,
    /// Connections the sink had accepted by this reading, since the run
    /// started (each crossed the whole chain); absent in older reports.
    #[serde(default)]
    pub connections_served: Option<u64>,
}

/// Open descriptors by kind (/proc/PID/fd link targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FdCounts {
    pub total: u64,
    pub socket: u64,
    pub pipe: u64,
    pub eventfd: u64,
    pub eventpoll: u64,
    pub timerfd: u64,
    /// Other anonymous inodes (signalfd, pidfd, bpf …).
    pub anon: u64,
    /// Files and devices.
    pub file: u64,
}

/// TCP sockets by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TcpCounts {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
}

impl TcpCounts {
    /// Every socket counted, in any state (TIME_WAIT ones are never
    /// counted: no process holds them).
    pub fn total(&self) -> u64 {
        self.established
            + self.syn_sent
            + self.syn_recv
            + self.fin_wait1
            + self.fin_wait2
            + self.time_wait
            + self.close
            + self.close_wait
            + self.last_ack
            + self.listen
            + self.closing
    }
}

impl From<&rt::FdKinds> for FdCounts {
    fn from(f: &rt::FdKinds) -> FdCounts {
        FdCounts {
            total: f.total(),
            socket: f.socket,
            pipe: f.pipe,
            eventfd: f.eventfd,
            eventpoll: f.eventpoll,
            timerfd: f.timerfd,
            anon: f.anon,
            file: f.file,
        }
    }
}

impl From<&rt::TcpStates> for TcpCounts {
    fn from(t: &rt::TcpStates) -> TcpCounts {
        TcpCounts {
            established: t.established,
            syn_sent: t.syn_sent,
            syn_recv: t.syn_recv,
            fin_wait1: t.fin_wait1,
            fin_wait2: t.fin_wait2,
            time_wait: t.time_wait,
            close: t.close,
            close_wait: t.close_wait,
            last_ack: t.last_ack,
            listen: t.listen,
            closing: t.closing,
        }
    }
}

/// The section from the sampler's readings; `roles` names each pid.
pub fn resources(samples: &[rt::TimedSample], roles: &[(Role, u32)], interval_s: f64) -> Resources {
    let targets = roles
        .iter()
        .map(|&(role, pid)| {
            let mut prev: Option<(f64, f64)> = None;
            let samples = samples
                .iter()
                .filter(|s| s.pid == pid)
                .map(|s| {
                    let cpu_cores = prev.and_then(|(t, cpu)| {
                        let dt = s.t_s - t;
                        (dt > 0.0).then(|| (s.sample.cpu_s - cpu) / dt)
                    });
                    prev = Some((s.t_s, s.sample.cpu_s));
                    ResourcePoint {
                        t_s: s.t_s,
                        rss_bytes: s.sample.rss_bytes,
                        fds: (&s.sample.fds).into(),
                        threads: s.sample.threads,
                        cpu_s: s.sample.cpu_s,
                        cpu_cores,
                        tcp: (&s.sample.tcp).into(),
                        connections_served: s.served,
                    }
                })
                .collect();
            TargetResources {
                role,
                pid,
                samples,
                return_to_baseline: None,
            }
        })
        .collect();
    Resources {
        interval_s,
        notes: vec![
            "live heap bytes are not sampled here: the allocation probe's live bytes are in targets[].alloc (per-call pass only)".into(),
        ],
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cores_are_the_difference_over_the_interval() {
        let at = |t_s: f64, cpu_s: f64| rt::TimedSample {
            t_s,
            pid: 7,
            sample: rt::ResourceSample {
                cpu_s,
                ..rt::ResourceSample::default()
            },
            served: None,
        };
        let r = resources(
            &[at(0.0, 1.0), at(1.0, 1.5), at(3.0, 3.5)],
            &[(Role::Client, 7), (Role::Server, 8)],
            1.0,
        );
        let cores: Vec<Option<f64>> = r.targets[0].samples.iter().map(|p| p.cpu_cores).collect();
        assert_eq!(cores, vec![None, Some(0.5), Some(1.0)]);
        assert!(r.targets[1].samples.is_empty());
    }
}
