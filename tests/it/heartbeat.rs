//! Heartbeats on idle streams: SSE comments, multipart header lines that never
//! start a part, iframe comments; at the configured interval, not faster.

use std::time::{Duration, Instant};

use kit::*;

const BEAT: Duration = Duration::from_millis(100);

fn cfg() -> Setup {
    config().heartbeat(BEAT).stream_padding(16)
}

/// Reads until `beat` has appeared `n` times after `from`; returns how long that took.
async fn beats<P: Feed>(s: &mut Events<P>, from: usize, beat: &[u8], n: usize) -> Duration {
    let t0 = Instant::now();
    s.read_until("heartbeats", |b| count(&b[from..], beat) >= n)
        .await;
    t0.elapsed()
}

/// `n` beats after a write take at least about `n` intervals (each is due one
/// interval after the last byte), with slack for timer granularity.
fn assert_paced(elapsed: Duration, n: u32) {
    let least = BEAT * n - BEAT / 2;
    assert!(
        elapsed >= least,
        "{n} heartbeats came in {elapsed:?}, faster than every {BEAT:?}"
    );
}

both_flavors!(sse_heartbeats_are_comments);
async fn sse_heartbeats_are_comments(flavor: Flavor) {
    let srv = flavor.start(cfg()).await;
    let mut s = srv.sse("/ch/c/sse").await;
    let prelude = format!(":{}\nretry: 1500\n\n", " ".repeat(16));
    s.read_until("prelude", |b| b.len() >= prelude.len()).await;
    let elapsed = beats(&mut s, prelude.len(), b":hb\n\n", 3).await;
    assert_paced(elapsed, 3);
    // Idle: nothing but heartbeat comments after the prelude.
    let after = &s.body.raw()[prelude.len()..];
    assert_eq!(after, b":hb\n\n".repeat(after.len() / 5).as_slice());

    // Heartbeats are invisible to the event parser; the next event is intact.
    let id = srv.publish("c", "after the beats").await;
    let e = s.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), "after the beats"));
    assert!(s.parser.heartbeats >= 3);
}

both_flavors!(multipart_heartbeats_are_header_lines_not_parts);
async fn multipart_heartbeats_are_header_lines_not_parts(flavor: Flavor) {
    let srv = flavor.start(cfg()).await;
    let mut s = srv.multipart("/ch/c/multipart").await;
    let prelude = format!("{}\r\n{}\r\n", " ".repeat(16), delimiter());
    s.read_until("prelude", |b| b.len() >= prelude.len()).await;
    let elapsed = beats(&mut s, prelude.len(), b"X-Heartbeat: 1\r\n", 3).await;
    assert_paced(elapsed, 3);
    let after = s.body.raw()[prelude.len()..].to_vec();
    assert_eq!(
        after,
        b"X-Heartbeat: 1\r\n".repeat(after.len() / 16),
        "only heartbeat header lines, no blank line that would start a part"
    );
    assert_eq!(s.pending(), 0);

    // The next part's headers simply follow the heartbeat lines.
    let id = srv.publish("c", "one").await;
    let e = s.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), "one"));
    let raw = s.body.raw().to_vec();
    let part_at = prelude.len() + after.len();
    assert!(
        raw[part_at..].starts_with(b"X-Heartbeat: 1\r\n")
            || raw[part_at..].starts_with(b"Content-Type: "),
        "{:?}",
        String::from_utf8_lossy(&raw[part_at..])
    );

    // Heartbeats after a part, then another part: still exactly one part per event.
    let mark = s.body.raw().len();
    beats(&mut s, mark, b"X-Heartbeat: 1\r\n", 2).await;
    let id2 = srv.publish("c", "two").await;
    let e = s.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id2), "two"));
    assert_eq!(s.pending(), 0, "no empty parts from heartbeats");
    assert_eq!(count(s.body.raw(), b"Event-Id: "), 2);
    assert!(s.parser.heartbeats >= 5);
}

both_flavors!(iframe_heartbeats_are_comments);
async fn iframe_heartbeats_are_comments(flavor: Flavor) {
    let srv = flavor.start(cfg()).await;
    let mut page = srv.iframe("/ch/c/iframe", "tandemEvent").await;
    page.read_until("padding", |b| find(b, b"-->\n").is_some())
        .await;
    let from = find(page.body.raw(), b"-->\n").unwrap() + 4;
    let elapsed = beats(&mut page, from, b"<!-- hb -->\n", 3).await;
    assert_paced(elapsed, 3);
    assert!(find(page.body.raw(), b"<script").is_none());
    let id = srv.publish("c", "x").await;
    assert_eq!(page.next_event().await.id, Some(id));
}

both_flavors!(busy_stream_sends_events_not_heartbeats);
async fn busy_stream_sends_events_not_heartbeats(flavor: Flavor) {
    // Any write resets the heartbeat timer: a stream written to every 250 ms
    // for well over one interval carries no heartbeats at all (a fixed beat
    // would have fired at least once).
    let srv = flavor
        .start(cfg().heartbeat(Duration::from_millis(1500)))
        .await;
    let mut s = srv.sse("/ch/c/sse").await;
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        srv.publish("c", &format!("e{i}")).await;
        s.next_event().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        i += 1;
    }
    assert_eq!(
        s.parser.heartbeats,
        0,
        "{:?}",
        String::from_utf8_lossy(s.body.raw())
    );
}
