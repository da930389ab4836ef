//! The server side every QUIC protocol shares: each bidirectional stream of
//! a connection is one proxied TCP connection, served by [`serve_stream`]
//! in its own task: the request header read in time, the target dialled,
//! the client told, the bytes relayed.
//!
//! A protocol adds a [`StreamServer`] (its per-connection state): how to
//! read its request header, how to answer a refused or a connected target,
//! and its stream error codes. Generic, not `dyn`.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, RecvStream};
use tokio::net::TcpStream;

use super::QuicStream;
use crate::addr::TargetAddr;
use crate::dial::{connect, DialError};

/// One connection of a QUIC protocol's server, as far as its proxy streams
/// go.
pub trait StreamServer: Send + Sync + 'static {
    /// The log prefix, e.g. `tuic server`.
    const NAME: &'static str;
    /// How long a stream may take to deliver its request header.
    const HEADER_TIMEOUT: Duration;
    /// What the request header is called in the log (`no … in time`).
    const HEADER: &'static str;
    /// The code a stream with a bad request header is aborted with.
    const BAD_REQUEST: u32;
    /// The code a stream whose relay failed is aborted with.
    const RELAY_FAILED: u32;

    /// What a stream's request header asks for.
    type Request: Send;
    /// Why a request header is bad.
    type BadRequest: Display + Send;

    /// The client's address.
    fn peer(&self) -> SocketAddr;

    /// Reads the request header from a new stream.
    fn read_request(
        &self,
        recv: &mut RecvStream,
    ) -> impl Future<Output = Result<Self::Request, Self::BadRequest>> + Send;

    /// The TCP target `request` asks for, once the protocol lets it go on
    /// (TUIC: once the connection is authenticated); `None` when there is
    /// none (the connection closed meanwhile, or the protocol served the
    /// stream otherwise, e.g. as a UDP session).
    fn target(
        &self,
        request: Self::Request,
        stream: &mut QuicStream,
    ) -> impl Future<Output = Option<TargetAddr>> + Send;

    /// Tells the client that its target could not be reached, then ends
    /// the stream as the protocol says.
    fn refuse(&self, stream: &mut QuicStream, why: &DialError) -> impl Future<Output = ()> + Send;

    /// Tells the client that its target is connected (a protocol without
    /// an answer does nothing).
    fn accept(&self, stream: &mut QuicStream) -> impl Future<Output = io::Result<()>> + Send;

    /// Relays between `stream` and `tcp` until both have closed. The
    /// protocol's own function, so that its name is on the relay's stacks
    /// in flame graphs; usually [`relay`](crate::relay::relay).
    fn relay(
        &self,
        stream: &mut QuicStream,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// One stderr line about this connection.
    fn log(&self, what: impl Display) {
        eprintln!("{}: connection from {}: {what}", Self::NAME, self.peer());
    }
}

/// Serves every bidirectional stream of `conn` with [`serve_stream`], each
/// in its own task, until the connection ends.
pub async fn serve_streams<S: StreamServer>(conn: &Connection, session: &Arc<S>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_stream(Arc::clone(session), QuicStream { send, recv }));
    }
}

/// One proxy stream: its request, the target, the answer, the relay.
/// Failures end the stream (the connection goes on) with one stderr line.
pub async fn serve_stream<S: StreamServer>(s: Arc<S>, mut stream: QuicStream) {
    let request = match tokio::time::timeout(S::HEADER_TIMEOUT, s.read_request(&mut stream.recv))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return bad_stream(&*s, &mut stream, e),
        Err(_) => return bad_stream(&*s, &mut stream, format_args!("no {} in time", S::HEADER)),
    };
    let Some(target) = s.target(request, &mut stream).await else {
        return;
    };
    let tcp = match connect(&target).await {
        Ok(t) => t,
        Err(e) => {
            s.refuse(&mut stream, &e).await;
            return s.log(e);
        }
    };
    if let Err(e) = s.accept(&mut stream).await {
        return s.log(format_args!("stream to {target}: {e}"));
    }
    if let Err(e) = s.relay(&mut stream, tcp).await {
        stream.abort(S::RELAY_FAILED);
        s.log(format_args!("relaying for {target}: {e}"));
    }
}

/// Aborts a stream whose request is bad, with one line saying why.
pub fn bad_stream<S: StreamServer>(s: &S, stream: &mut QuicStream, why: impl Display) {
    stream.abort(S::BAD_REQUEST);
    s.log(format_args!("stream: {why}"));
}
