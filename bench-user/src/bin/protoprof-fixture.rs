//! `protoprof-fixture`: programs with known behaviour, for the probe tests.
//! Each waits for one byte on stdin before acting, so the test can register
//! its pid with the probes first; then it does exactly what it is told.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Open before the go signal so the open is not among the counted calls.
    let devnull = match OpenOptions::new().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fixture: /dev/null: {e}");
            return ExitCode::FAILURE;
        }
    };
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
            println!("done");
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        }
    }
    ExitCode::SUCCESS
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
