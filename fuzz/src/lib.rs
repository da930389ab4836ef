//! What the fuzz targets share: running an async decoder to completion on
//! fuzz input, and a reader that hands the input over in pieces, so that
//! the decoders' partial-read paths are fuzzed too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime");
}

/// Runs `f` to completion on this thread's runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}

/// Hands out `data` at most `chunk` bytes per read (1 to 256 bytes).
pub struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl<'a> Chunked<'a> {
    /// The first byte of `input` picks the chunk size, the rest is the data.
    pub fn from_input(input: &'a [u8]) -> Chunked<'a> {
        match input.split_first() {
            Some((&c, data)) => Chunked {
                data,
                chunk: usize::from(c) + 1,
            },
            None => Chunked {
                data: &[],
                chunk: 1,
            },
        }
    }

    /// What has not been read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}
