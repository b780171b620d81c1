//! The live status feed behind `/status.html`.
//!
//! The binary spawns [`run`] beside its server (an embedder may too). Once a second it
//! reads the server's counters and, only while someone subscribes to the
//! channel [`CHANNEL`], publishes a JSON snapshot there, so the status page
//! is itself a tandem client (with any transport) and an idle server
//! publishes nothing:
//!
//! ```json
//! {"time":1795439067073,"connections":3,"channels":2,
//!  "open":{"multipart":0,"mixed":1,"sse":0,"poll":1,"jsonp":0,"iframe":0,"library":0},
//!  "published":120,"deliveries":480,"gaps":0,"bytes_written":90311,
//!  "events_per_second":10.0,"deliveries_per_second":40.0,"bytes_per_second":7420.0}
//! ```
//!
//! `open` counts open subscriber responses per transport; the rates are over
//! the last interval and leave out the snapshots themselves.
//!
//! With `--redis` every node publishes its own snapshot, with its name in
//! `"node"`, while anyone on any node listens (the cluster's figures,
//! `docs/scaling.md`), so the page, wherever it is served from, shows every
//! node.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::MissedTickBehavior;

use crate::event::NewEvent;
use crate::router::{Hub, Transport};
use crate::shutdown::Shutdown;

/// The channel the snapshots are published to.
pub const CHANNEL: &str = "tandem.status";

/// How often a snapshot is taken.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counter values at one tick, for the rates.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    published: u64,
    deliveries: u64,
    bytes: u64,
}

/// Publishes snapshots of `hub`'s counters to [`CHANNEL`] once a second,
/// while anyone subscribes there, until `stop` is triggered.
pub async fn run(hub: Hub, stop: Shutdown) {
    let stopped = stop.wait();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut own = 0u64; // snapshots published, left out of the rates
    let mut last: Option<Sample> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let m = hub.metrics();
        let now = Sample {
            at: Instant::now(),
            published: m.published.get().saturating_sub(own),
            deliveries: m.deliveries.get(),
            bytes: m.bytes_written.get(),
        };
        let prev = last.replace(now);
        let here = hub.info(CHANNEL).subscribers.iter().sum::<usize>();
        let anywhere = match hub.cluster(Some(CHANNEL)).await {
            Some(Ok(c)) => c.subscribers > 0,
            _ => false,
        };
        if here == 0 && !anywhere {
            continue;
        }
        let json = snapshot(&hub, now, prev);
        let event = NewEvent {
            kind: "status".into(),
            data: Bytes::from(json),
            content_type: Some("application/json".into()),
            from: None,
        };
        if hub.publish(CHANNEL, event).await.is_ok() {
            own += 1;
        }
    }
}

fn snapshot(hub: &Hub, now: Sample, prev: Option<Sample>) -> String {
    let m = hub.metrics();
    let rate = |f: fn(&Sample) -> u64| -> f64 {
        let Some(p) = prev else { return 0.0 };
        let secs = now.at.duration_since(p.at).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let per_s = f(&now).saturating_sub(f(&p)) as f64 / secs;
        (per_s * 10.0).round() / 10.0
    };
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let open = Transport::ALL
        .iter()
        .map(|t| format!("\"{}\":{}", t.name(), m.open[*t as usize].get()))
        .collect::<Vec<_>>()
        .join(",");
    let node = hub
        .node()
        .map_or_else(String::new, |n| format!("\"node\":\"{n}\","));
    format!(
        "{{{node}\"time\":{time},\"connections\":{},\"channels\":{},\"open\":{{{open}}},\
         \"published\":{},\"deliveries\":{},\"gaps\":{},\"bytes_written\":{},\
         \"events_per_second\":{:.1},\"deliveries_per_second\":{:.1},\"bytes_per_second\":{:.1}}}",
        m.connections.get(),
        hub.channel_count(),
        now.published,
        now.deliveries,
        m.gaps.get(),
        now.bytes,
        rate(|s| s.published),
        rate(|s| s.deliveries),
        rate(|s| s.bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Delivery, SubscribeOptions};

    #[tokio::test(start_paused = true)]
    async fn publishes_only_while_watched() {
        let hub = Hub::new(Config::default()).unwrap();
        let stop = Shutdown::new();
        let task = tokio::spawn(run(hub.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(hub.info(CHANNEL).last_id, 0, "nobody listened");

        let mut sub = hub.subscribe(CHANNEL, SubscribeOptions::default()).unwrap();
        hub.publish("other", NewEvent::message("x")).await.unwrap();
        let Delivery::Event(e) = sub.next().await else {
            panic!("a gap")
        };
        assert_eq!(e.kind(), "status");
        let v: serde_json::Value = serde_json::from_slice(e.data()).unwrap();
        assert_eq!(v["open"].as_object().map(|o| o.len()), Some(7));
        assert_eq!(v["published"], 1, "its own snapshots are left out");
        assert!(v["events_per_second"].is_number());

        stop.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends on shutdown")
            .unwrap();
    }
}
