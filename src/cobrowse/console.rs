//! The live list of help sessions on `cb.console`, never left stale.
//!
//! Every change to the sessions (asked, joined, moved to another page,
//! customer gone or back online, ended) republishes the whole list, and the console shows the newest
//! event. So the channel's last event must be the current list. Taking a
//! snapshot under the sessions lock and publishing it after the lock is let
//! go does not ensure that: two changes racing can publish their snapshots
//! in the other order, the older list last, and the console then shows it
//! until the next change, which may never come.
//!
//! So there is one publisher at a time, and it takes the snapshot itself. A
//! change marks the list *dirty*; the caller that finds no publisher running
//! becomes the publisher and, while the list is dirty, clears the mark,
//! takes a fresh snapshot and publishes it. The snapshots are taken one
//! after another by the one publisher, so the lists on the channel only go
//! forward in time; a change marked while a publisher runs is seen by that
//! publisher's next round (it checks the mark before it stops, under the
//! same lock the mark is set under), so the last list published is the
//! current one. Nobody waits for anybody: a change that lands while another
//! caller publishes returns at once, and that caller publishes it. A burst
//! of changes may reach the channel as fewer events than changes: the
//! channel carries the state, not the changes.
//!
//! The loop is async: publishing awaits `Hub::publish`, which a shared
//! backplane (Redis) makes wait for its store. The lock here guards two
//! flags for a few instructions and is never held across an `.await`; the
//! snapshot is taken under the sessions lock inside `publish_current` and
//! that lock is let go before the publish is awaited. While one publisher
//! awaits its store, the changes that land return at once and that
//! publisher's next round carries them.
//!
//! A publisher that stops early (its publish panics, or its future is
//! dropped while it awaits, say because the request's connection went
//! away) leaves the list marked dirty and the loop free, so the next change
//! publishes again; until then the channel may show the list of before the
//! changes that publisher had taken on.

use std::future::Future;

use parking_lot::Mutex;

/// The channel of the live console list.
pub(crate) const CONSOLE_CHANNEL: &str = "cb.console";

/// Orders the publishing of the console list (see the module docs).
#[derive(Default)]
pub(crate) struct Console {
    flags: Mutex<Flags>,
}

#[derive(Default)]
struct Flags {
    /// A change not yet in a published snapshot.
    dirty: bool,
    /// Some caller is in the publishing loop.
    publishing: bool,
}

impl Console {
    /// Notes a change to the list; publishes it with `publish_current`
    /// (whose future takes a snapshot and publishes it) unless another
    /// caller is publishing, which then publishes this change too.
    pub(crate) async fn changed<F, P>(&self, mut publish_current: F)
    where
        F: FnMut() -> P,
        P: Future<Output = ()>,
    {
        {
            let mut f = self.flags.lock();
            f.dirty = true;
            if f.publishing {
                return;
            }
            f.publishing = true;
        }
        // Should `publish_current` panic, or this future be dropped while it
        // awaits, the next change publishes again.
        let unwinding = Stop(&self.flags);
        loop {
            {
                let mut f = self.flags.lock();
                if !f.dirty {
                    f.publishing = false;
                    drop(f);
                    // Stopped under the lock already; the guard must not
                    // stop a publisher that started since.
                    std::mem::forget(unwinding);
                    return;
                }
                f.dirty = false;
            }
            publish_current().await;
        }
    }
}

/// Leaves the publishing loop when `publish_current` unwinds or the
/// publisher's future is dropped mid-publish.
struct Stop<'a>(&'a Mutex<Flags>);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let mut f = self.0.lock();
        f.publishing = false;
        f.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// The combining logic on its own: tasks on several threads bump a
    /// counter (the state) and mark the change; each publish records the
    /// value it saw, after yielding in between as a store round trip would.
    /// The published values only go up and the last one is the final state.
    #[test]
    fn the_last_published_is_the_final_state_and_they_only_go_forward() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let console = Arc::new(Console::default());
        let state = Arc::new(AtomicU64::new(0));
        let published = Arc::new(Mutex::new(Vec::new()));
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (console, state, published) =
                        (console.clone(), state.clone(), published.clone());
                    tokio::spawn(async move {
                        for _ in 0..2000 {
                            state.fetch_add(1, Ordering::SeqCst);
                            console
                                .changed(|| async {
                                    let snapshot = state.load(Ordering::SeqCst);
                                    tokio::task::yield_now().await;
                                    published.lock().push(snapshot);
                                })
                                .await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let published = published.lock();
        assert!(published.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*published.last().unwrap(), 8 * 2000);
    }

    #[tokio::test]
    async fn a_panicking_publish_does_not_stop_the_next_one() {
        let console = Arc::new(Console::default());
        let c = console.clone();
        let r = tokio::spawn(async move {
            c.changed(|| async { panic!("publish failed") }).await;
        })
        .await;
        assert!(r.unwrap_err().is_panic());
        let mut n = 0;
        console
            .changed(|| {
                n += 1;
                async {}
            })
            .await;
        assert_eq!(n, 1);
    }

    /// A publisher dropped while it awaits its publish (its request went
    /// away) frees the loop: the next change publishes.
    #[tokio::test(start_paused = true)]
    async fn a_publisher_dropped_mid_publish_does_not_stop_the_next_one() {
        let console = Console::default();
        let stuck = console.changed(std::future::pending::<()>);
        let r = tokio::time::timeout(Duration::from_secs(1), stuck).await;
        assert!(r.is_err(), "the publish never finished");
        let mut n = 0;
        console
            .changed(|| {
                n += 1;
                async {}
            })
            .await;
        assert_eq!(n, 1);
    }
}
