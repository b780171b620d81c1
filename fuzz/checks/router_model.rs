//! The router (`tandem::Hub`) against a model of what it promises.
//!
//! Shared by the fuzz target `router_model` and by `tests/it/fuzz_regressions.rs`,
//! so it uses only tandem's public API and std.
//!
//! The model keeps every event ever published per channel in a `Vec` (id `i`
//! at index `i - 1`); the ring is then simply the last `buffer_events` of them.
//! Each model subscription has a cursor and, like the real one, a queue of
//! deliveries read from the ring but not yet taken: a subscription copies
//! everything after its cursor when its queue runs dry, so what it hands out
//! later was decided then. With `buffer_events <= 8` one read always takes all
//! there is (the real batch is 64), so the model needs no batch size.
//!
//! Input: byte 0 sets `buffer_events = 1 + b % 8`; then one operation per
//! group of bytes (see [`Op`]) until the input runs out.
//!
//! After every operation: ids start at 1 and rise by one per publish; every
//! delivery is exactly the model's (so each subscriber sees events in order,
//! without duplicates, with a gap covering exactly the ids it lost and none of
//! its own events, and a reset gap first when its cursor is of another epoch);
//! every event and gap carries its channel's epoch, which never changes while
//! the channel has events; `cursor()` is where a resume would start; a parked
//! subscriber is woken by the next publish; `Hub::info` matches the model.
//!
//! Epochs are random, so the model learns each channel's from `Hub::info`
//! when it first needs it, and checks that it stays.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tandem::{
    ChannelInfo, Config, Cursor, Delivery, Epoch, Hub, NewEvent, SubscribeOptions, Subscription,
    Transport,
};

const CHANNELS: [&str; 3] = ["a", "b", "c"];
const CLIENTS: [&str; 3] = ["x", "y", "z"];
/// An epoch no channel has (the router's random ones are 10 characters).
const FOREIGN: &str = "f0reign";
/// Most live subscriptions, so that long inputs spend their bytes on reads.
const MAX_SUBS: usize = 16;

/// A published event as the model remembers it.
#[derive(Debug, Clone)]
struct Published {
    kind: String,
    data: Vec<u8>,
    from: Option<String>,
}

/// A delivery as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Event(u64),
    Gap { from: u64, to: u64, reset: bool },
}

struct ModelSub {
    channel: usize,
    transport: Transport,
    client: Option<String>,
    cursor: u64,
    /// The cursor's epoch is another incarnation's, until the first read.
    foreign: bool,
    ready: VecDeque<Expect>,
    /// The waker of the last poll that returned `Pending`, until a publish.
    parked: Option<Arc<Flag>>,
}

/// A waker that remembers it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Every event ever published, per channel.
struct Log {
    buffer: usize,
    events: [Vec<Published>; 3],
    /// Each channel's epoch, once seen.
    epochs: [Option<Epoch>; 3],
}

/// What a run checked, so hand-written inputs can say what they exercise.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Events delivered (and checked).
    pub events: usize,
    /// Gaps delivered, resets included.
    pub gaps: usize,
    /// Gaps with `reset` set.
    pub resets: usize,
    /// Parked wakers a publish woke.
    pub wakes: usize,
}

impl Stats {
    fn count(&mut self, d: &Option<Expect>) {
        match d {
            Some(Expect::Event(_)) => self.events += 1,
            Some(Expect::Gap { reset, .. }) => {
                self.gaps += 1;
                self.resets += usize::from(*reset);
            }
            None => {}
        }
    }
}

struct Model {
    log: Log,
    stats: Stats,
    /// Each live subscription beside its model.
    subs: Vec<(ModelSub, Subscription)>,
}

impl Log {
    fn last(&self, ch: usize) -> u64 {
        self.events[ch].len() as u64
    }

    /// First id still in the ring (`last + 1` when the ring is empty).
    fn first(&self, ch: usize) -> u64 {
        self.last(ch).saturating_sub(self.buffer as u64) + 1
    }

    /// What a read from the ring finds for `sub`: everything after its cursor,
    /// after a gap for what left the ring, less the subscriber's own events.
    fn fill(&self, sub: &mut ModelSub) {
        if !sub.ready.is_empty() {
            return;
        }
        let (last, first) = (self.last(sub.channel), self.first(sub.channel));
        let foreign = std::mem::take(&mut sub.foreign);
        if foreign || sub.cursor > last {
            // A cursor of another incarnation, or from the future (a `since`
            // past the last id): the ids must have started over, so the
            // subscriber is told to reset.
            sub.ready.push_back(Expect::Gap {
                from: 1,
                to: first - 1,
                reset: true,
            });
            sub.cursor = first - 1;
        }
        if sub.cursor + 1 < first {
            sub.ready.push_back(Expect::Gap {
                from: sub.cursor + 1,
                to: first - 1,
                reset: false,
            });
            sub.cursor = first - 1;
        }
        for id in sub.cursor + 1..=last {
            sub.cursor = id;
            let from = &self.events[sub.channel][id as usize - 1].from;
            if sub.client.is_none() || *from != sub.client {
                sub.ready.push_back(Expect::Event(id));
            }
        }
    }

    /// Checks a delivery against the model's prediction.
    fn check_delivery(&self, ch: usize, expected: Option<Expect>, got: Option<Delivery>) {
        match (expected, got) {
            (None, None) => {}
            (Some(Expect::Event(id)), Some(Delivery::Event(e))) => {
                let p = &self.events[ch][id as usize - 1];
                assert_eq!(e.id(), id, "delivered the wrong event");
                assert_eq!(Some(e.epoch()), self.epochs[ch], "the event's epoch");
                assert_eq!(e.kind(), p.kind);
                assert_eq!(&e.data()[..], &p.data[..]);
                assert_eq!(e.from(), p.from.as_deref());
            }
            (Some(Expect::Gap { from, to, reset }), Some(Delivery::Gap(g))) => {
                assert_eq!((g.from, g.to, g.reset), (from, to, reset), "wrong gap");
                assert_eq!(Some(g.epoch), self.epochs[ch], "the gap's epoch");
            }
            (e, g) => panic!("expected {e:?}, got {g:?}"),
        }
    }
}

impl Log {
    /// The channel's epoch as `Hub::info` tells it (the channel must exist).
    /// `kept`: the channel has held events or subscribers since the epoch was
    /// last learned, so it cannot have been swept: the epoch must be the same.
    fn learn_epoch(&mut self, hub: &Hub, ch: usize, kept: bool) -> Epoch {
        let epoch = hub.info(CHANNELS[ch]).epoch.expect("the channel exists");
        if kept {
            if let Some(known) = self.epochs[ch] {
                assert_eq!(epoch, known, "channel {} changed epoch", CHANNELS[ch]);
            }
        }
        self.epochs[ch] = Some(epoch);
        epoch
    }
}

impl Model {
    /// Whether a channel holds events or subscribers (and so is never swept).
    fn held(&self, ch: usize) -> bool {
        self.log.last(ch) > 0 || self.subs.iter().any(|(s, _)| s.channel == ch)
    }

    fn check_info(&mut self, hub: &Hub) {
        for (ch, name) in CHANNELS.iter().enumerate() {
            let mut subscribers = [0; Transport::COUNT];
            for (s, _) in self.subs.iter().filter(|(s, _)| s.channel == ch) {
                subscribers[s.transport as usize] += 1;
            }
            // Only a channel with nothing in it and nobody on it may be swept
            // (and made again with another epoch); the model cannot tell when.
            let held = self.log.last(ch) > 0 || subscribers.iter().sum::<usize>() > 0;
            let info = hub.info(name);
            let epoch = match info.epoch {
                Some(_) => Some(self.log.learn_epoch(hub, ch, held)),
                None => {
                    assert!(!held, "channel {name} with events or subscribers is gone");
                    None
                }
            };
            let log = &self.log;
            let expected = ChannelInfo {
                epoch,
                last_id: log.last(ch),
                buffered: (log.last(ch) as usize).min(log.buffer),
                subscribers,
            };
            assert_eq!(hub.info(name), expected, "info of channel {name}");
        }
    }
}

/// Which epoch a `since` cursor is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    /// A bare id: the current incarnation.
    Bare,
    /// The channel's current epoch (learned from `Hub::info` first).
    Current,
    /// An epoch no incarnation has.
    Foreign,
}

/// One step, decoded from the next bytes of the input.
#[derive(Debug)]
enum Op {
    /// `0, channel, client` (client >= 3: none)
    Publish { ch: usize, client: Option<usize> },
    /// `1, channel, client, start, n, transport`: `start % 6` is since `n`
    /// (a bare id), backlog `n`, neither, since `n` in the channel's epoch,
    /// since `n` in a foreign epoch, or since `n` in the channel's epoch if it
    /// has one yet (else bare); since may pass the last id by up to 3.
    Subscribe {
        ch: usize,
        client: Option<usize>,
        since: Option<(Since, u64)>,
        backlog: Option<u64>,
        transport: Transport,
    },
    /// `2, sub`: one `try_next`.
    Read(usize),
    /// `3, sub`: `try_next` until nothing is ready.
    Drain(usize),
    /// `4, sub`: one `poll_delivery` with a fresh waker.
    Poll(usize),
    /// `5, sub`
    Drop(usize),
    /// `6`: `Hub::sweep` (only idle, empty channels may go, which the model cannot tell apart).
    Sweep,
}

fn decode(bytes: &mut impl Iterator<Item = u8>, model: &Model) -> Option<Op> {
    let mut next = || bytes.next();
    let op = next()? % 7;
    Some(match op {
        0 => Op::Publish {
            ch: next()? as usize % 3,
            client: Some(next()? as usize % 4).filter(|&c| c < 3),
        },
        1 => {
            let ch = next()? as usize % 3;
            let client = Some(next()? as usize % 4).filter(|&c| c < 3);
            let start = next()? % 6;
            let n = u64::from(next()?) % (model.log.last(ch) + 4);
            let transport = Transport::ALL[next()? as usize % Transport::COUNT];
            let since = match start {
                0 => Some(Since::Bare),
                3 | 5 => Some(Since::Current),
                4 => Some(Since::Foreign),
                _ => None,
            };
            Op::Subscribe {
                ch,
                client,
                since: since.map(|s| (s, n)),
                backlog: (start == 1).then_some(n),
                transport,
            }
        }
        2 => Op::Read(next()? as usize),
        3 => Op::Drain(next()? as usize),
        4 => Op::Poll(next()? as usize),
        5 => Op::Drop(next()? as usize),
        _ => Op::Sweep,
    })
}

/// Runs the operations an input describes against a hub and the model.
pub fn check(data: &[u8]) -> Stats {
    let Some((&b, ops)) = data.split_first() else {
        return Stats::default();
    };
    let buffer = 1 + b as usize % 8;
    let hub = Hub::new(Config::default().buffer_events(buffer)).expect("valid config");
    let mut model = Model {
        log: Log {
            buffer,
            events: Default::default(),
            epochs: [None; 3],
        },
        stats: Stats::default(),
        subs: Vec::new(),
    };
    let mut bytes = ops.iter().copied();
    let mut count = 0u64;
    while let Some(op) = decode(&mut bytes, &model) {
        count += 1;
        step(&hub, &mut model, op, count);
        model.check_info(&hub);
    }
    // Whatever is left must still come out as the model says.
    for i in 0..model.subs.len() {
        drain(&mut model, i);
    }
    model.subs.clear();
    model.check_info(&hub);
    model.stats
}

fn step(hub: &Hub, model: &mut Model, op: Op, count: u64) {
    let live = model.subs.len();
    match op {
        Op::Publish { ch, client } => {
            let p = Published {
                kind: format!("t{}", count % 5),
                data: count.to_le_bytes().to_vec(),
                from: client.map(|c| CLIENTS[c].to_string()),
            };
            // The in-memory backplane answers at once: no runtime needed.
            let e = tandem::__private::now(hub.publish(
                CHANNELS[ch],
                NewEvent {
                    kind: p.kind.clone(),
                    data: p.data.clone().into(),
                    content_type: None,
                    from: p.from.clone(),
                },
            ))
            .expect("publish of a valid event");
            let held = model.held(ch);
            model.log.events[ch].push(p);
            assert_eq!(e.id(), model.log.last(ch), "ids count up from 1");
            let epoch = model.log.learn_epoch(hub, ch, held);
            assert_eq!(e.epoch(), epoch, "the event carries its channel's epoch");
            // Every subscriber parked on this channel must have been woken.
            for (s, _) in model.subs.iter_mut().filter(|(s, _)| s.channel == ch) {
                if let Some(flag) = s.parked.take() {
                    assert!(flag.0.load(Ordering::SeqCst), "parked subscriber not woken");
                    model.stats.wakes += 1;
                }
            }
        }
        Op::Subscribe {
            ch,
            client,
            since,
            backlog,
            transport,
        } => {
            if live >= MAX_SUBS {
                return;
            }
            let client = client.map(|c| CLIENTS[c].to_string());
            let held = model.held(ch);
            let foreign_epoch = Epoch::new(FOREIGN).expect("a valid epoch");
            let which = since.map(|(w, _)| w);
            // Subscribing from the current epoch needs it known: the channel
            // is looked up (and made) by a throwaway subscription first.
            let since = since.map(|(which, n)| match which {
                Since::Bare => Cursor::bare(n),
                Since::Foreign => Cursor::new(foreign_epoch, n),
                Since::Current => {
                    let probe = hub.subscribe(CHANNELS[ch], SubscribeOptions::default());
                    let epoch = model.log.learn_epoch(hub, ch, held);
                    drop(probe);
                    Cursor::new(epoch, n)
                }
            });
            let sub = hub
                .subscribe(
                    CHANNELS[ch],
                    SubscribeOptions {
                        since,
                        backlog,
                        client: client.clone(),
                        transport,
                    },
                )
                .expect("subscribe with valid options");
            // The channel's epoch: the one just learned for `Current`, else
            // the one it had if it held anything.
            let kept = held || matches!(which, Some(Since::Current));
            let epoch = model.log.learn_epoch(hub, ch, kept);
            let last = model.log.last(ch);
            let id = match since {
                Some(c) => c.id,
                // A backlog never reaches behind the ring.
                None => last
                    .saturating_sub(backlog.unwrap_or(0))
                    .max(model.log.first(ch) - 1),
            };
            // Until its first read, a foreign cursor stays as it was given.
            let foreign = matches!(which, Some(Since::Foreign));
            let expected = Cursor::new(if foreign { foreign_epoch } else { epoch }, id);
            assert_eq!(sub.cursor(), expected, "cursor of a new subscription");
            let m = ModelSub {
                channel: ch,
                transport,
                client,
                cursor: id,
                foreign,
                ready: VecDeque::new(),
                parked: None,
            };
            model.subs.push((m, sub));
        }
        Op::Read(i) if live > 0 => {
            read(model, i % live);
        }
        Op::Drain(i) if live > 0 => drain(model, i % live),
        Op::Poll(i) if live > 0 => poll(model, i % live),
        Op::Drop(i) if live > 0 => {
            // Dropping the subscription unregisters it; `check_info` sees the count.
            model.subs.swap_remove(i % live);
        }
        Op::Sweep => hub.sweep(),
        _ => {}
    }
}

/// One `try_next`, checked; returns whether it delivered something.
fn read(model: &mut Model, i: usize) -> bool {
    let (m, sub) = &mut model.subs[i];
    model.log.fill(m);
    let expected = m.ready.pop_front();
    model.stats.count(&expected);
    let got = sub.try_next();
    let delivered = got.is_some();
    model.log.check_delivery(m.channel, expected, got);
    check_cursor(&model.log, m, sub);
    delivered
}

fn drain(model: &mut Model, i: usize) {
    while read(model, i) {}
}

/// One `poll_delivery` with a fresh waker: `Pending` exactly when the model
/// has nothing, and then the waker must be woken by the next publish.
fn poll(model: &mut Model, i: usize) {
    let (m, sub) = &mut model.subs[i];
    model.log.fill(m);
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let got = match sub.poll_delivery(&mut Context::from_waker(&waker)) {
        Poll::Ready(d) => Some(d),
        Poll::Pending => None,
    };
    let expected = m.ready.pop_front();
    model.stats.count(&expected);
    if got.is_none() {
        m.parked = Some(flag);
    }
    model.log.check_delivery(m.channel, expected, got);
    check_cursor(&model.log, m, sub);
}

/// `cursor()` is where `since` would resume without loss or duplicates: just
/// before the next delivery still queued, else the last id accounted for.
/// It is in the channel's epoch once the subscription has read.
fn check_cursor(log: &Log, m: &ModelSub, sub: &Subscription) {
    let id = match m.ready.front() {
        Some(Expect::Event(id)) => id - 1,
        Some(Expect::Gap { from, .. }) => from - 1,
        None => m.cursor,
    };
    let epoch = log.epochs[m.channel].expect("the epoch is known once subscribed");
    assert_eq!(sub.cursor(), Cursor::new(epoch, id), "cursor");
}
