//! The server's UDP sessions of one connection, as every QUIC protocol
//! keeps them: per session a reassembler for the client's fragments and,
//! once a packet went out, the socket it went out on with the task that
//! relays answers back. A protocol adds its framing and its session rules
//! (when one opens, when one ends).

use std::collections::HashMap;
use std::fmt::Arguments;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::addr::TargetAddr;
use crate::dial::resolve;
use crate::udp_frag::Reassembler;

/// One UDP session on the server.
pub struct UdpAssoc<X> {
    /// The client's fragments on their way to whole packets.
    pub reassembler: Reassembler,
    /// When the client last sent on it.
    pub last_used: Instant,
    /// What the protocol keeps besides (TUIC: the relay mode).
    pub extra: X,
    socket: Option<Arc<UdpSocket>>,
    back: Option<JoinHandle<()>>,
}

impl<X> UdpAssoc<X> {
    /// A new session, nothing sent yet.
    pub fn new(extra: X) -> UdpAssoc<X> {
        UdpAssoc {
            reassembler: Reassembler::default(),
            last_used: Instant::now(),
            extra,
            socket: None,
            back: None,
        }
    }
}

impl<X> Drop for UdpAssoc<X> {
    fn drop(&mut self) {
        // Ended or connection gone: stop relaying back, which drops the
        // socket.
        if let Some(task) = &self.back {
            task.abort();
        }
    }
}

/// The UDP sessions of one connection, by id.
pub struct UdpSessions<Id, X> {
    map: Mutex<HashMap<Id, UdpAssoc<X>>>,
}

impl<Id, X> Default for UdpSessions<Id, X> {
    fn default() -> Self {
        UdpSessions {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<Id: Hash + Eq + Copy + std::fmt::Display, X> UdpSessions<Id, X> {
    /// The sessions, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Id, UdpAssoc<X>>> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a whole packet of session `id` to `target`: resolved, then
    /// through the session's socket, bound on first use in the family of
    /// the destination with its task `back(socket, extra)` that relays
    /// answers to the client. Failures are lines through `log`: a lost UDP
    /// packet goes unnoticed.
    pub async fn send<B>(
        &self,
        id: Id,
        target: &TargetAddr,
        data: &[u8],
        log: impl Fn(Arguments<'_>),
        back: B,
    ) where
        B: FnOnce(Arc<UdpSocket>, &X) -> JoinHandle<()>,
    {
        let dest = match resolve(target).await {
            Ok(sa) => sa,
            Err(e) => return log(format_args!("UDP to {target}: resolving: {e}")),
        };
        let socket = match self.socket(id, dest, back) {
            Ok(Some(s)) => s,
            Ok(None) => return, // ended meanwhile
            Err(e) => return log(format_args!("UDP session {id}: binding: {e}")),
        };
        if let Err(e) = socket.send_to(data, dest).await {
            log(format_args!("UDP to {dest}: {e}"));
        }
    }

    /// The session's socket, bound on first use; `None` if the session has
    /// ended.
    fn socket<B>(
        &self,
        id: Id,
        dest: SocketAddr,
        back: B,
    ) -> std::io::Result<Option<Arc<UdpSocket>>>
    where
        B: FnOnce(Arc<UdpSocket>, &X) -> JoinHandle<()>,
    {
        let mut map = self.lock();
        let Some(assoc) = map.get_mut(&id) else {
            return Ok(None);
        };
        if let Some(s) = &assoc.socket {
            return Ok(Some(Arc::clone(s)));
        }
        let socket = Arc::new(super::udp_socket_toward(dest)?);
        assoc.back = Some(back(Arc::clone(&socket), &assoc.extra));
        assoc.socket = Some(Arc::clone(&socket));
        Ok(Some(socket))
    }
}
