//! uprobe_multi links: many uprobes of one program in one file of one
//! process behind a single BPF link.
//!
//! Why: a perf-event uprobe link detaches under the kernel's `event_mutex`
//! and waits for RCU grace periods each time, so closing the per-call
//! pass's links took about 0.1 s apiece, serialised, however many threads
//! close them (7.5 s of a 40 s tuic run). A uprobe_multi link
//! (`BPF_TRACE_UPROBE_MULTI`, Linux 6.6) unregisters all its uprobes and
//! then waits for one grace period.
//!
//! aya 0.14 neither loads a program with that expected attach type nor
//! creates such links, so this module does both through the bpf(2)
//! syscall: it takes the program's relocated instructions from aya-obj
//! (against the maps aya already created, so both copies share them) and
//! loads them with `expected_attach_type = BPF_TRACE_UPROBE_MULTI`.

use std::{
    collections::HashMap,
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

use aya::{maps::Map, Ebpf};

/// `bpf(2)` commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the field we need.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr`, uprobe_multi variant.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    _pad: u32,
}

/// Why a uprobe_multi program or link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error("parsing the probe object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    #[error("relocating the probe object: {0}")]
    Relocate(#[from] aya_obj::relocation::EbpfRelocationError),
    #[error("map {0}: no file descriptor")]
    Map(String),
    #[error("program {0} not in the probe object")]
    Missing(String),
    #[error("loading {program} for uprobe_multi: {error}{log}")]
    Load {
        program: String,
        error: std::io::Error,
        log: String,
    },
    #[error("uprobe_multi link for {program} in {path}: {error}")]
    Link {
        program: String,
        path: String,
        error: std::io::Error,
    },
}

/// bpf(2) for a command that returns a new file descriptor. `attr` is one
/// of the attr structs above: every pointer in it must outlive the call
/// (the kernel copies what they point to).
fn bpf<A>(cmd: libc::c_long, attr: &A) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const A,
            std::mem::size_of::<A>(),
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: a new fd the kernel just returned, owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// The probe object's programs, loaded for uprobe_multi on first use.
pub(super) struct MultiPrograms {
    object: aya_obj::Object,
    loaded: HashMap<String, OwnedFd>,
}

/// The file descriptor behind one of aya's maps.
fn map_fd(map: &Map) -> Option<RawFd> {
    let data = match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::RingBuf(d)
        | Map::StackTraceMap(d) => d,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

impl MultiPrograms {
    /// Relocate the object's code against the maps `ebpf` created. Call
    /// before any map is taken out of `ebpf`.
    pub(super) fn new(object: &[u8], ebpf: &Ebpf) -> Result<MultiPrograms, MultiError> {
        let mut obj = aya_obj::Object::parse(object)?;
        let mut fds = HashMap::new();
        for (name, map) in ebpf.maps() {
            let fd = map_fd(map).ok_or_else(|| MultiError::Map(name.to_string()))?;
            fds.insert(name.to_string(), fd);
        }
        let maps: Vec<(String, RawFd, aya_obj::Map)> = obj
            .maps
            .iter()
            .map(|(name, m)| {
                fds.get(name)
                    .map(|fd| (name.clone(), *fd, m.clone()))
                    .ok_or_else(|| MultiError::Map(name.clone()))
            })
            .collect::<Result<_, _>>()?;
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
            &text_sections,
        )?;
        obj.relocate_calls(&text_sections)?;
        Ok(MultiPrograms {
            object: obj,
            loaded: HashMap::new(),
        })
    }

    /// Program `name`, loaded for uprobe_multi links (once).
    fn program(&mut self, name: &str) -> Result<RawFd, MultiError> {
        if let Some(fd) = self.loaded.get(name) {
            return Ok(fd.as_raw_fd());
        }
        let program = self
            .object
            .programs
            .get(name)
            .ok_or_else(|| MultiError::Missing(name.to_string()))?;
        let function = self
            .object
            .functions
            .get(&program.function_key())
            .ok_or_else(|| MultiError::Missing(name.to_string()))?;
        let insns = &function.instructions;
        let license = CString::new(program.license.as_bytes())
            .map_err(|_| MultiError::Missing(name.to_string()))?;
        let mut prog_name = [0u8; 16];
        for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        let load = |log: &mut Vec<u8>| {
            let attr = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_KPROBE,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: u32::from(!log.is_empty()),
                log_size: log.len() as u32,
                log_buf: log.as_mut_ptr() as u64,
                prog_name,
                expected_attach_type: BPF_TRACE_UPROBE_MULTI,
                ..Default::default()
            };
            // The verifier gives up with EAGAIN when a signal is pending
            // (the endpoints' SIGCHLD, say): try again, as libbpf does.
            let mut attempts = 0;
            loop {
                match bpf(BPF_PROG_LOAD, &attr) {
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempts < 5 => {
                        attempts += 1;
                    }
                    other => return other,
                }
            }
        };
        let fd = match load(&mut Vec::new()) {
            Ok(fd) => fd,
            Err(error) => {
                // Again with the verifier's log, to say why. The first error
                // is the one reported: with a log the kernel may fail with
                // ENOSPC merely because the log did not fit.
                let mut log = vec![0u8; 1 << 22];
                if let Ok(fd) = load(&mut log) {
                    self.loaded.insert(name.to_string(), fd);
                    return self.program(name);
                }
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0').trim_end();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                let log = if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (verifier: {})",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    )
                };
                return Err(MultiError::Load {
                    program: name.to_string(),
                    error,
                    log,
                });
            }
        };
        let raw = fd.as_raw_fd();
        self.loaded.insert(name.to_string(), fd);
        Ok(raw)
    }

    /// Whether `program` is a return probe (a `uretprobe` section).
    pub(super) fn is_return(&self, program: &str) -> bool {
        self.object
            .programs
            .get(program)
            .is_some_and(|p| matches!(p.section, aya_obj::ProgramSection::URetProbe { .. }))
    }

    /// One link: `program` at every `(offset, cookie)` in `path`, for
    /// process `pid` only; `ret` = return probes.
    pub(super) fn attach(
        &mut self,
        program: &str,
        ret: bool,
        path: &Path,
        pid: u32,
        points: &[(u64, u64)],
    ) -> Result<OwnedFd, MultiError> {
        let prog_fd = self.program(program)?;
        let link_err = |error| MultiError::Link {
            program: program.to_string(),
            path: path.display().to_string(),
            error,
        };
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| link_err(std::io::ErrorKind::InvalidInput.into()))?;
        let offsets: Vec<u64> = points.iter().map(|p| p.0).collect();
        let cookies: Vec<u64> = points.iter().map(|p| p.1).collect();
        let attr = LinkCreateAttr {
            prog_fd: prog_fd as u32,
            attach_type: BPF_TRACE_UPROBE_MULTI,
            path: c_path.as_ptr() as u64,
            offsets: offsets.as_ptr() as u64,
            cookies: cookies.as_ptr() as u64,
            cnt: points.len() as u32,
            multi_flags: if ret { BPF_F_UPROBE_MULTI_RETURN } else { 0 },
            pid,
            ..Default::default()
        };
        bpf(BPF_LINK_CREATE, &attr).map_err(link_err)
    }
}
