//! The registry of a server's open connections: each registers when it is accepted and
//! gets a stop signal of its own, so that a graceful stop reaches every connection and the
//! server knows when the last one has ended.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{oneshot, Notify};

/// The open connections of a server, each with a stop signal of its own.
///
/// Polling a connection touches nothing the others share: hyper-util's `GracefulShutdown`
/// polls one watch channel from every connection on every wake-up, a lock shared by all
/// connections on all cores. Here a connection polls its own `oneshot` receiver, and the
/// shared state is locked only when a connection opens or ends.
#[derive(Default)]
pub(super) struct Connections {
    state: Mutex<ConnectionsState>,
    /// Woken when the last connection ends.
    idle: Notify,
}

#[derive(Default)]
struct ConnectionsState {
    next_id: u64,
    /// The stop signals not sent yet, by connection.
    signals: HashMap<u64, oneshot::Sender<()>>,
    /// Connections registered and not ended (signalled or not).
    live: usize,
    closing: bool,
}

impl Connections {
    fn state(&self) -> std::sync::MutexGuard<'_, ConnectionsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection; it counts as open until the registration is dropped.
    pub(super) fn register(self: &Arc<Self>) -> Registration {
        let (tx, stop) = oneshot::channel();
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.live += 1;
        if state.closing {
            let _ = tx.send(());
        } else {
            state.signals.insert(id, tx);
        }
        Registration {
            connections: Arc::clone(self),
            id,
            stop,
        }
    }

    /// Asks every open connection to finish: the request in progress is answered, then the
    /// connection closes.
    pub(super) fn close_all(&self) {
        let mut state = self.state();
        state.closing = true;
        for (_, tx) in state.signals.drain() {
            let _ = tx.send(());
        }
    }

    /// Completes when no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            // Registered before the check, so that a connection ending in between wakes it.
            idle.as_mut().enable();
            if self.state().live == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One connection of [`Connections`].
pub(super) struct Registration {
    connections: Arc<Connections>,
    id: u64,
    stop: oneshot::Receiver<()>,
}

impl Registration {
    /// Serves `conn` to its end, shutting it down gracefully when the server stops.
    pub(super) async fn drive<C: GracefulConnection>(mut self, conn: C) -> Result<(), C::Error> {
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        std::future::poll_fn(|cx| {
            // (A received or dropped signal is never polled again.)
            if !stopping && Pin::new(&mut self.stop).poll(cx).is_ready() {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.connections.state();
        state.signals.remove(&self.id);
        state.live -= 1;
        if state.live == 0 {
            self.connections.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_until_their_registration_ends() {
        let connections = Arc::new(Connections::default());
        let mut first = connections.register();
        let second = connections.register();
        assert_eq!(connections.state().live, 2);
        drop(second);
        assert_eq!(connections.state().live, 1);
        connections.close_all();
        assert!(first.stop.try_recv().is_ok(), "the open one is signalled");
        // One registered while closing is signalled at once.
        let mut late = connections.register();
        assert!(late.stop.try_recv().is_ok());
        drop((first, late));
        let state = connections.state();
        assert_eq!((state.live, state.signals.len()), (0, 0));
    }
}
