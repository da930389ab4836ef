//! Programs' links, kept so that they can be detached and attached again
//! while the programs stay loaded and their maps keep what they hold: the
//! main pass's (the syscalls, cpu and offcpu programs, or their floor).
//!
//! `probes.alternate` measures what those programs cost by taking them off
//! the machine and putting them back, second by second, while the same
//! traffic runs (docs/probes.md): a cost measured side by side, where a
//! control pass before the main pass meets whatever else the machine did
//! in between.

use aya::{
    programs::{
        perf_event::{
            PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
        },
        raw_trace_point::RawTracePointLinkId,
        PerfEvent, RawTracePoint,
    },
    Ebpf,
};

use super::CaptureError;

/// One program and its links while attached.
pub(super) enum ProgramLink {
    /// A raw tracepoint program, attached to `event`.
    Tracepoint {
        program: &'static str,
        event: &'static str,
        link: Option<RawTracePointLinkId>,
    },
    /// The CPU sampling program: one software clock event per CPU.
    CpuClock {
        program: &'static str,
        frequency_hz: u64,
        cpus: Vec<u32>,
        links: Vec<PerfEventLinkId>,
    },
}

impl ProgramLink {
    /// Attach the loaded program (again); attached already, nothing.
    pub(super) fn attach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        match self {
            ProgramLink::Tracepoint {
                program,
                event,
                link,
            } => {
                if link.is_none() {
                    let name = *program;
                    let p = tracepoint(ebpf, name)?;
                    *link = Some(
                        p.attach(event)
                            .map_err(|source| CaptureError::Program { name, source })?,
                    );
                }
            }
            ProgramLink::CpuClock {
                program,
                frequency_hz,
                cpus,
                links,
            } => {
                if links.is_empty() {
                    let name = *program;
                    let p = perf_event(ebpf, name)?;
                    for &cpu in cpus.iter() {
                        let link = p
                            .attach(
                                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                                PerfEventScope::AllProcessesOneCpu { cpu },
                                SamplePolicy::Frequency(*frequency_hz),
                                false,
                            )
                            .map_err(|source| CaptureError::Program { name, source })?;
                        links.push(link);
                    }
                }
            }
        }
        Ok(())
    }

    /// Detach the program, keeping it loaded; detached already, nothing.
    pub(super) fn detach(&mut self, ebpf: &mut Ebpf) -> Result<(), CaptureError> {
        match self {
            ProgramLink::Tracepoint { program, link, .. } => {
                if let Some(id) = link.take() {
                    let name = *program;
                    tracepoint(ebpf, name)?
                        .detach(id)
                        .map_err(|source| CaptureError::Program { name, source })?;
                }
            }
            ProgramLink::CpuClock { program, links, .. } => {
                let name = *program;
                for id in links.drain(..) {
                    perf_event(ebpf, name)?
                        .detach(id)
                        .map_err(|source| CaptureError::Program { name, source })?;
                }
            }
        }
        Ok(())
    }
}

fn tracepoint<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut RawTracePoint, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })
}

fn perf_event<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut PerfEvent, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::Missing(name))?
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })
}

/// Load program `name` and attach it to raw tracepoint `event` (by name: no
/// tracefs mount needed).
pub(super) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    event: &'static str,
) -> Result<ProgramLink, CaptureError> {
    tracepoint(ebpf, name)?
        .load()
        .map_err(|source| CaptureError::Program { name, source })?;
    let mut link = ProgramLink::Tracepoint {
        program: name,
        event,
        link: None,
    };
    link.attach(ebpf)?;
    Ok(link)
}

/// Load the sampling program `name` and attach it to every online CPU's
/// software clock at `frequency_hz`.
pub(super) fn attach_cpu_clock(
    ebpf: &mut Ebpf,
    name: &'static str,
    frequency_hz: u64,
) -> Result<ProgramLink, CaptureError> {
    perf_event(ebpf, name)?
        .load()
        .map_err(|source| CaptureError::Program { name, source })?;
    let cpus =
        aya::util::online_cpus().map_err(|(what, e)| CaptureError::Cpus(format!("{what}: {e}")))?;
    let mut link = ProgramLink::CpuClock {
        program: name,
        frequency_hz,
        cpus,
        links: Vec::new(),
    };
    link.attach(ebpf)?;
    Ok(link)
}
