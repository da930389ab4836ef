//! What the fuzz targets share: running an async decoder to completion on
//! fuzz input, and a reader that hands the input over in pieces, so that
//! the decoders' partial-read paths are fuzzed too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bench_proto::packet_obfs::SaltedMask;
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

/// The checks every salted-XOR obfuscation (Salamander, XPlus) must pass
/// on any input: the first byte is the key length, then the key, the rest
/// a datagram. Undoing any datagram either fails for want of a salt or
/// yields the bytes after it; obfuscating and undoing gives the datagram.
pub fn salted_mask_holds<M: SaltedMask>(input: &[u8], keyed: impl Fn(&[u8]) -> M) {
    let Some((&key_len, rest)) = input.split_first() else {
        return;
    };
    let (key, datagram) = rest.split_at(usize::from(key_len).min(rest.len()));
    let m = keyed(key);
    let salt_len = M::SALT_LEN;

    let mut buf = datagram.to_vec();
    match m.deobfuscate(&mut buf) {
        Some(n) => assert_eq!(n, datagram.len() - salt_len),
        None => assert!(datagram.len() < salt_len),
    }

    let mut salt = vec![0u8; salt_len];
    let take = datagram.len().min(salt_len);
    salt[..take].copy_from_slice(&datagram[..take]);
    let mut sealed = Vec::new();
    m.obfuscate(&salt, datagram, &mut sealed);
    assert_eq!(sealed.len(), salt_len + datagram.len());
    let n = m
        .deobfuscate(&mut sealed)
        .expect("an obfuscated packet has a salt");
    assert_eq!(&sealed[..n], datagram);
}
