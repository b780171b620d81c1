//! The live list of help sessions on `cb.console`, never left stale.
//!
//! Every change to the sessions (asked, joined, moved to another page,
//! ended) republishes the whole list, and the console shows the newest
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
//! The lock here guards two flags for a few instructions; the snapshot and
//! the publish happen under no lock of this file, so a `Hub::publish` that
//! becomes async (a Redis backplane) needs only this loop to await it.

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
    /// (which takes a snapshot and publishes it) unless another caller is
    /// publishing, which then publishes this change too.
    pub(crate) fn changed(&self, mut publish_current: impl FnMut()) {
        {
            let mut f = self.flags.lock();
            f.dirty = true;
            if f.publishing {
                return;
            }
            f.publishing = true;
        }
        // Should `publish_current` panic, the next change publishes again.
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
            publish_current();
        }
    }
}

/// Leaves the publishing loop when `publish_current` unwinds.
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

    /// The combining logic on its own: threads bump a counter (the state)
    /// and mark the change; each publish records the value it saw. The
    /// published values only go up and the last one is the final state.
    #[test]
    fn the_last_published_is_the_final_state_and_they_only_go_forward() {
        let console = Arc::new(Console::default());
        let state = Arc::new(AtomicU64::new(0));
        let published = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (console, state, published) =
                    (console.clone(), state.clone(), published.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        state.fetch_add(1, Ordering::SeqCst);
                        console.changed(|| {
                            let snapshot = state.load(Ordering::SeqCst);
                            published.lock().push(snapshot);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let published = published.lock();
        assert!(published.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*published.last().unwrap(), 8 * 2000);
    }

    #[test]
    fn a_panicking_publish_does_not_stop_the_next_one() {
        let console = Console::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            console.changed(|| panic!("publish failed"));
        }));
        assert!(r.is_err());
        let mut n = 0;
        console.changed(|| n += 1);
        assert_eq!(n, 1);
    }
}
