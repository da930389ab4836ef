//! Readers of the binaries protoprof profiles but did not build: any of
//! them may be malformed or unlike what the reader expects, so every reader
//! takes bytes, returns an error or a note for what it cannot read, and
//! never panics (each has a fuzz target in `fuzz/`).
//!
//! - [`elf`]: functions and loadable segments of an ELF file (symbol
//!   tables, and for stripped Go binaries the function table below),
//! - [`gopclntab`]: function names and addresses from a Go binary's
//!   `.gopclntab`,
//! - [`btf`]: struct field offsets from the kernel's BTF,
//! - [`unwind`]: unwind tables (`.eh_frame`, `.debug_frame`) and whether
//!   the code keeps frame pointers, for unwinding stack copies.

pub mod btf;
pub mod elf;
pub mod gopclntab;
pub mod unwind;
