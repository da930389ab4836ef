//! `protoprof-fixture`: programs with known behaviour, for the probe tests.
//! Each prints `ready`, then waits for one byte on stdin before acting, so
//! the test can register its pid with the probes first; then it does exactly
//! what it is told.

use std::{
    fs::OpenOptions,
    io::{Read, Write},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// `getppid` N times, then M writes of K bytes to /dev/null.
    Syscalls {
        #[arg(long)]
        getppid: u64,
        #[arg(long)]
        writes: u64,
        #[arg(long)]
        size: usize,
    },
    /// Spin on the CPU inside `spin_in_named_function` for S seconds, print
    /// `done`, then stay alive (for symbolization) until stdin closes.
    Spin {
        #[arg(long)]
        seconds: f64,
    },
    /// `malloc` N blocks of S bytes (libc, directly), `free` all but the
    /// last K, print `done`, stay alive until stdin closes.
    Alloc {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        keep: usize,
    },
    /// Seal K records of S bytes with ring's ChaCha20-Poly1305, print
    /// `done`, stay alive until stdin closes.
    Crypto {
        #[arg(long)]
        calls: u64,
        #[arg(long)]
        size: usize,
    },
    /// Sleep T times for M milliseconds.
    Sleep {
        #[arg(long)]
        ms: u64,
        #[arg(long, default_value_t = 1)]
        times: u32,
    },
    /// Fork C children one after another, each making `getppid` N times,
    /// sleeping `settle-ms`, allocating `mallocs` blocks of 3 MiB (each
    /// freed at once) and spinning S ms in `spin_in_named_function` before
    /// it exits (with `--exec`, after exec'ing this program's `child-work`;
    /// with `--exec-program P`, P runs instead, with the arguments
    /// `MALLOCS SETTLE_MS SPIN_MS`); wait for each, print `done`, stay
    /// alive until stdin closes.
    Forks {
        #[arg(long)]
        children: u32,
        #[arg(long)]
        getppid: u64,
        #[arg(long)]
        spin_ms: u64,
        #[arg(long)]
        exec: bool,
        #[arg(long, default_value_t = 0)]
        mallocs: u64,
        #[arg(long, default_value_t = 0)]
        settle_ms: u64,
        #[arg(long)]
        exec_program: Option<String>,
    },
    /// Start T threads one after another, each sleeping N times for 100 µs
    /// (a voluntary context switch each), touching P fresh pages and
    /// spinning S ms before it exits; join each, print `done`, stay alive
    /// until stdin closes.
    Threads {
        #[arg(long)]
        threads: u32,
        #[arg(long)]
        sleeps: u32,
        #[arg(long)]
        pages: usize,
        #[arg(long)]
        spin_ms: u64,
    },
    /// What a `forks --exec` child runs: no `ready`, no go signal.
    #[command(hide = true)]
    ChildWork {
        #[arg(long)]
        getppid: u64,
        #[arg(long)]
        spin_ms: u64,
        #[arg(long)]
        mallocs: u64,
        #[arg(long)]
        settle_ms: u64,
    },
}

/// What each forked child does.
#[derive(Debug, Clone, Copy)]
struct ChildWork {
    getppid: u64,
    spin_ms: u64,
    mallocs: u64,
    settle_ms: u64,
}

/// The size of a child's allocations: alone in its power-of-two bucket
/// ([2 MiB, 4 MiB)), so a test can count exactly these.
const CHILD_MALLOC_BYTES: usize = 3 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ChildWork {
        getppid,
        spin_ms,
        mallocs,
        settle_ms,
    } = cli.command
    {
        child_work(ChildWork {
            getppid,
            spin_ms,
            mallocs,
            settle_ms,
        });
        return ExitCode::SUCCESS;
    }
    // Open before the go signal so the open is not among the counted calls.
    let devnull = match OpenOptions::new().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fixture: /dev/null: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Room for the alloc fixture's pointers, reserved before the go signal
    // so that it is not among the counted allocations.
    let mut blocks: Vec<*mut libc::c_void> = match &cli.command {
        Command::Alloc { count, .. } => Vec::with_capacity(*count),
        _ => Vec::new(),
    };
    // "ready": the dynamic loader is done, so the test finds every library
    // mapped when it attaches.
    let ready = b"ready\n";
    // SAFETY: write(2) on our own stdout with a valid buffer.
    unsafe { libc::write(1, ready.as_ptr().cast(), ready.len()) };
    let mut go = [0u8; 1];
    if std::io::stdin().read_exact(&mut go).is_err() {
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Syscalls {
            getppid,
            writes,
            size,
        } => {
            let buf = vec![0x5au8; size];
            for _ in 0..getppid {
                // SAFETY: getppid has no preconditions.
                std::hint::black_box(unsafe { libc::getppid() });
            }
            let mut f = &devnull;
            for _ in 0..writes {
                // /dev/null takes every byte in one write(2).
                if f.write(&buf).is_err() {
                    return ExitCode::FAILURE;
                }
            }
        }
        Command::Spin { seconds } => {
            let x = spin_in_named_function(Duration::from_secs_f64(seconds));
            std::hint::black_box(x);
            done_then_wait();
        }
        Command::Alloc { count, size, keep } => {
            allocate_known_sizes(&mut blocks, count, size, keep);
            done_then_wait();
        }
        Command::Crypto { calls, size } => {
            if seal_known_records(calls, size).is_err() {
                return ExitCode::FAILURE;
            }
            done_then_wait();
        }
        Command::Sleep { ms, times } => {
            for _ in 0..times {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        Command::Forks {
            children,
            getppid,
            spin_ms,
            exec,
            mallocs,
            settle_ms,
            exec_program,
        } => {
            let work = ChildWork {
                getppid,
                spin_ms,
                mallocs,
                settle_ms,
            };
            let exec = match (exec, exec_program) {
                (_, Some(p)) => Exec::Program(p),
                (true, None) => Exec::Itself,
                (false, None) => Exec::No,
            };
            for _ in 0..children {
                if fork_child(work, &exec).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            done_then_wait();
        }
        Command::Threads {
            threads,
            sleeps,
            pages,
            spin_ms,
        } => {
            for _ in 0..threads {
                let worker = std::thread::spawn(move || thread_work(sleeps, pages, spin_ms));
                if worker.join().is_err() {
                    return ExitCode::FAILURE;
                }
            }
            done_then_wait();
        }
        Command::ChildWork { .. } => {}
    }
    ExitCode::SUCCESS
}

/// Sleep N times for 100 µs, touch P fresh pages, spin S ms.
fn thread_work(sleeps: u32, pages: usize, spin_ms: u64) {
    for _ in 0..sleeps {
        std::thread::sleep(Duration::from_micros(100));
    }
    // SAFETY: a private anonymous mapping, unmapped below; each page is
    // first touched here, so each touch faults once.
    unsafe {
        let len = pages * 4096;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            for i in 0..pages {
                std::ptr::write_volatile((p as *mut u8).add(i * 4096), 1);
            }
            libc::munmap(p, len);
        }
    }
    std::hint::black_box(spin_in_named_function(Duration::from_millis(spin_ms)));
}

/// `getppid` N times, sleep, allocate, then spin for S ms.
fn child_work(w: ChildWork) {
    for _ in 0..w.getppid {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    // SAFETY: nanosleep with a valid timespec; malloc'd blocks are written
    // once and freed once.
    unsafe {
        let ts = libc::timespec {
            tv_sec: (w.settle_ms / 1000) as libc::time_t,
            tv_nsec: ((w.settle_ms % 1000) * 1_000_000) as libc::c_long,
        };
        libc::nanosleep(&ts, std::ptr::null_mut());
        for _ in 0..w.mallocs {
            let p = libc::malloc(CHILD_MALLOC_BYTES);
            if !p.is_null() {
                std::ptr::write_volatile(p as *mut u8, 1);
                libc::free(p);
            }
        }
    }
    std::hint::black_box(spin_in_named_function(Duration::from_millis(w.spin_ms)));
}

/// What a forked child execs, if anything.
enum Exec {
    No,
    /// A fresh image of this program, running `child-work`.
    Itself,
    /// Another program, given `MALLOCS SETTLE_MS SPIN_MS`.
    Program(String),
}

/// Fork one child that does [`child_work`] (in this image, or in a fresh
/// one) or runs another program, and wait for it to exit successfully.
fn fork_child(w: ChildWork, exec: &Exec) -> Result<(), ()> {
    // Built before the fork: the child only calls async-signal-safe code.
    let (path, args): (String, Vec<String>) = match exec {
        Exec::Program(p) => (
            p.clone(),
            vec![
                p.clone(),
                w.mallocs.to_string(),
                w.settle_ms.to_string(),
                w.spin_ms.to_string(),
            ],
        ),
        _ => (
            "/proc/self/exe".into(),
            vec![
                "protoprof-fixture".to_string(),
                "child-work".into(),
                "--getppid".into(),
                w.getppid.to_string(),
                "--spin-ms".into(),
                w.spin_ms.to_string(),
                "--mallocs".into(),
                w.mallocs.to_string(),
                "--settle-ms".into(),
                w.settle_ms.to_string(),
            ],
        ),
    };
    let args: Vec<std::ffi::CString> = args
        .into_iter()
        .map(|a| std::ffi::CString::new(a).map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    let exe = std::ffi::CString::new(path).map_err(|_| ())?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let exec = !matches!(exec, Exec::No);
    // SAFETY: this process is single-threaded; the child runs plain
    // computation and syscalls, then leaves through _exit or execv.
    match unsafe { libc::fork() } {
        -1 => Err(()),
        0 => {
            if exec {
                // SAFETY: valid NUL-terminated strings and argv array.
                unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
                // SAFETY: leave the child without running the parent's
                // exit handlers.
                unsafe { libc::_exit(127) };
            }
            child_work(w);
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            let ok = waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            if ok {
                Ok(())
            } else {
                Err(())
            }
        }
    }
}

/// Tell the test the work is done, then stay alive (so the test can
/// symbolize our stacks) until it closes our stdin. Raw read/write: Rust's
/// buffered stdio would allocate, inside the window the alloc test counts.
fn done_then_wait() {
    let msg = b"done\n";
    // SAFETY: write(2)/read(2) on our own stdout/stdin with valid buffers.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
    let mut buf = [0u8; 64];
    while unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// `count` mallocs of `size` bytes into `blocks` (capacity reserved by the
/// caller); frees all but the last `keep`, which stay allocated.
#[inline(never)]
fn allocate_known_sizes(
    blocks: &mut Vec<*mut libc::c_void>,
    count: usize,
    size: usize,
    keep: usize,
) {
    for _ in 0..count {
        // SAFETY: plain malloc; the result is only stored and freed below.
        let p = unsafe { libc::malloc(size) };
        blocks.push(std::hint::black_box(p));
    }
    let free_until = count.saturating_sub(keep);
    for &p in &blocks[..free_until] {
        // SAFETY: each pointer came from malloc above and is freed once.
        unsafe { libc::free(p) };
    }
}

/// Seals `calls` records of `size` bytes with ChaCha20-Poly1305 (ring).
#[inline(never)]
fn seal_known_records(calls: u64, size: usize) -> Result<(), ring::error::Unspecified> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32])?);
    let mut record = vec![0x42u8; size];
    for i in 0..calls {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let tag = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut record,
        )?;
        let _ = std::hint::black_box(tag);
    }
    Ok(())
}

/// Burns CPU in user space, without syscalls, until `d` has passed.
#[inline(never)]
fn spin_in_named_function(d: Duration) -> u64 {
    let end = Instant::now() + d;
    let mut x: u64 = 1;
    while Instant::now() < end {
        for _ in 0..100_000 {
            x = std::hint::black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
    }
    x
}
