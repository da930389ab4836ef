//! The relay between a TCP connection and a QUIC stream, moving `Bytes`
//! chunks instead of copying through a buffer (relay mode `reuse`, the
//! default).
//!
//! Through the generic pump ([`crate::relay`]) every byte is copied once in
//! user space on each side of quinn: `SendStream::write(&[u8])` copies the
//! slice into a fresh allocation that quinn keeps until it is acknowledged,
//! and `RecvStream::read(&mut [u8])` copies out of quinn's received frames.
//! A tuic profile showed it: `memcpy` 9 % of each endpoint's CPU samples,
//! the `copy` category 18 %, and quinn's `write_source` allocation a quarter
//! of all bytes allocated (docs/case-studies/tuic.md). Here:
//!
//! - TCP → QUIC reads into the spare room of a block of [`BLOCK`] bytes and
//!   hands what was read to quinn as a `Bytes` split off the block
//!   (`write_chunk`: no copy, and one allocation per block, not per read).
//!   A block comes back for reuse once quinn has dropped every chunk of it
//!   (after their acknowledgements), or a new one is made.
//! - QUIC → TCP takes quinn's received frames as they are (`read_chunks`)
//!   and writes them with one vectored write (`writev`), so a write still
//!   carries many frames' worth of bytes.
//!
//! The modes that exist to be compared (`copy`, `pooled`) keep the generic
//! pump, whose buffers they are about.

use std::io::{self, IoSlice};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::QuicStream;
use crate::relay::{RelayMode, RelayOptions, RelayStats};

/// Bytes per block that TCP reads fill, chunk after chunk: four reads of
/// the default 64 KiB between allocations at most. Larger blocks would
/// allocate less often but hold more per connection (a block lives while
/// quinn holds any chunk of it, until acknowledged, and an idle connection
/// keeps its current block): 256 KiB is what the pump's two 64-KiB buffers
/// held, twice.
pub const BLOCK: usize = 256 << 10;

/// Received frames taken per vectored write, and the iovecs it passes.
const CHUNKS_PER_WRITE: usize = 32;

/// Relays between `tcp` and `stream` until both directions have ended, the
/// way [`crate::relay::relay`] does (half-close carried across, the first
/// error returned); mode `reuse` moves chunks (this module), the other
/// modes go through the generic pump.
pub async fn relay(
    tcp: TcpStream,
    stream: &mut QuicStream,
    opts: &RelayOptions,
) -> io::Result<RelayStats> {
    if opts.mode != RelayMode::Reuse {
        return crate::relay::relay(tcp, &mut *stream, opts).await;
    }
    opts.leak.keep_for_connection();
    relay_chunks(tcp, stream, opts.buffer_size).await
}

/// Both directions in this one future (no task, no lock): TCP's halves are
/// borrowed, the QUIC stream's halves are separate values already.
async fn relay_chunks(
    mut tcp: TcpStream,
    stream: &mut QuicStream,
    read_size: usize,
) -> io::Result<RelayStats> {
    let (tcp_read, tcp_write) = tcp.split();
    let (up, down) = tokio::try_join!(
        tcp_to_quic(tcp_read, &mut stream.send, read_size.clamp(1, BLOCK)),
        quic_to_tcp(&mut stream.recv, tcp_write),
    )?;
    Ok(RelayStats {
        a_to_b: up.moved,
        b_to_a: down.moved,
        reads: up.reads + down.reads,
        buffers_allocated: up.blocks,
        splices: 0,
    })
}

/// What one direction did.
#[derive(Debug, Default)]
struct Direction {
    moved: u64,
    reads: u64,
    /// Blocks reserved (new, or a reclaimed one: the allocator cannot tell).
    blocks: u64,
}

/// TCP into the QUIC stream, chunks split off a block; finishes the
/// stream at TCP's EOF.
async fn tcp_to_quic<R>(mut r: R, send: &mut SendStream, read_size: usize) -> io::Result<Direction>
where
    R: AsyncRead + Unpin,
{
    let mut d = Direction::default();
    let mut block = BytesMut::new();
    loop {
        if block.capacity() < read_size {
            // Reclaims the block if quinn has let go of all of it, else
            // allocates a new one; nothing is copied (the block is empty).
            block.reserve(BLOCK);
            d.blocks += 1;
        }
        let n = r.read_buf(&mut (&mut block).limit(read_size)).await?;
        d.reads += 1;
        if n == 0 {
            break;
        }
        d.moved += n as u64;
        send.write_chunk(block.split().freeze())
            .await
            .map_err(io::Error::from)?;
    }
    // Fails only when the stream is closed already (the peer stopped it):
    // then there is nothing left to end, as the generic pump's shutdown.
    let _ = send.finish();
    Ok(d)
}

/// The QUIC stream into TCP, frames as quinn holds them, one vectored
/// write per batch; shuts down TCP's write half at the stream's end.
async fn quic_to_tcp<W>(recv: &mut RecvStream, mut w: W) -> io::Result<Direction>
where
    W: AsyncWrite + Unpin,
{
    let mut d = Direction::default();
    let mut chunks: [Bytes; CHUNKS_PER_WRITE] = Default::default();
    loop {
        d.reads += 1;
        let Some(filled) = recv
            .read_chunks(&mut chunks)
            .await
            .map_err(io::Error::from)?
        else {
            break;
        };
        d.moved += write_all_chunks(&mut w, &mut chunks[..filled]).await?;
        // A written chunk is empty but still holds quinn's packet buffer;
        // let go of them before waiting for more.
        chunks[..filled].fill(Bytes::new());
    }
    match w.shutdown().await {
        Ok(()) => Ok(d),
        // The peer closed already: there is no write half left to end.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(d),
        Err(e) => Err(e),
    }
}

/// Writes every byte of `chunks` with vectored writes; returns the bytes.
async fn write_all_chunks<W>(w: &mut W, chunks: &mut [Bytes]) -> io::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    let mut first = 0;
    while first < chunks.len() {
        let n = {
            let mut iov = [IoSlice::new(&[]); CHUNKS_PER_WRITE];
            let mut used = 0;
            for (slot, c) in iov.iter_mut().zip(&chunks[first..]) {
                *slot = IoSlice::new(c);
                used += 1;
            }
            w.write_vectored(&iov[..used]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        total += n as u64;
        let mut left = n;
        while left > 0 {
            let c = &mut chunks[first];
            let take = left.min(c.len());
            c.advance(take);
            left -= take;
            if c.is_empty() {
                first += 1;
            }
        }
        // Skip chunks that were empty to begin with.
        while first < chunks.len() && chunks[first].is_empty() {
            first += 1;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn vectored_writes_carry_every_chunk_in_order() {
        // A pipe of 5 bytes forces partial writes inside and across chunks.
        let (mut a, mut b) = duplex(5);
        let mut chunks: Vec<Bytes> = ["abc", "", "defghij", "k", "", "lmnopqrstu"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got)
        });
        let n = write_all_chunks(&mut a, &mut chunks).await.unwrap();
        drop(a);
        assert_eq!(n, 21);
        assert_eq!(reader.await.unwrap().unwrap(), b"abcdefghijklmnopqrstu");
        assert!(chunks.iter().all(Bytes::is_empty));
    }
}
