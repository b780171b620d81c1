//! The graceful-shutdown signal shared by a server and everything it serves.
//!
//! One [`Shutdown`] is made with a [`crate::Service`] and cloned into every
//! connection, stream and long-poll, and into whatever else should stop with
//! the server (the status feed). `trigger` flips it once; every waiter wakes.
//! It is a `tokio::sync::watch` underneath (the axum pattern), hidden so that
//! callers hold one small handle instead of a raw `watch::Receiver<bool>`.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// A cloneable graceful-shutdown signal.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let shutdown = tandem::Shutdown::new();
/// let waiter = shutdown.wait();
/// shutdown.trigger();
/// waiter.await; // returns at once
/// assert!(shutdown.is_triggered());
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts the shutdown: streams write their closing words and end,
    /// long-polls answer at once, servers stop accepting. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the signal is triggered (at once if it already is).
    /// The future owns what it needs: keep it across a connection's life.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // Err only if the sender is gone, which `self` prevents until
            // every clone is dropped: then nobody can trigger, so wait forever.
            if rx.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
