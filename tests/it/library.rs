//! The router as a library, without HTTP: publish, subscribe, info, gaps,
//! echo suppression, and sweeping idle channels.

use std::time::Duration;

use bytes::Bytes;
use tandem::{Config, Cursor, Delivery, Hub, NewEvent, SubscribeOptions, Transport};

fn hub(cfg: Config) -> Hub {
    Hub::new(cfg).unwrap()
}

fn event(d: Delivery) -> std::sync::Arc<tandem::Event> {
    match d {
        Delivery::Event(e) => e,
        Delivery::Gap(g) => panic!("unexpected gap {g:?}"),
    }
}

async fn next(sub: &mut tandem::Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery within 5 s")
}

#[tokio::test]
async fn publish_subscribe_next() {
    let hub = hub(Config::default());
    let mut sub = hub.subscribe("demo", SubscribeOptions::default()).unwrap();
    assert!(sub.try_next().is_none());
    // A subscriber parked in next() is woken by a publish from another task.
    let h = hub.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.publish("demo", NewEvent::message("hello").with_kind("greet"))
            .await
            .unwrap()
            .id()
    });
    let e = event(next(&mut sub).await);
    assert_eq!(publisher.await.unwrap(), 1);
    assert_eq!(
        (e.id(), e.kind(), &e.data()[..]),
        (1, "greet", &b"hello"[..])
    );
    assert!(e.time_ms() > 1_600_000_000_000);
    assert_eq!(sub.cursor(), e.cursor());
    assert_eq!(
        sub.cursor(),
        Cursor::new(hub.info("demo").epoch.unwrap(), 1)
    );

    let e2 = hub
        .publish(
            "demo",
            NewEvent {
                kind: "bin".into(),
                data: Bytes::from_static(&[0, 1, 2]),
                content_type: Some("application/octet-stream".into()),
                from: Some("me".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(e2.id(), 2);
    assert!(!e2.is_text());
    let got = event(next(&mut sub).await);
    assert_eq!(got.from(), Some("me"));
    assert_eq!(got.content_type(), Some("application/octet-stream"));
}

#[tokio::test]
async fn info_reports_the_channel() {
    let hub = hub(Config::default().buffer_events(3));
    assert_eq!(hub.info("none"), tandem::ChannelInfo::default());
    assert_eq!(hub.channel_count(), 0, "info does not create channels");
    let sse = hub
        .subscribe(
            "c",
            SubscribeOptions {
                transport: Transport::Sse,
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    let lib = hub.subscribe("c", SubscribeOptions::default()).unwrap();
    for i in 0..5 {
        hub.publish("c", NewEvent::message(format!("{i}")))
            .await
            .unwrap();
    }
    let info = hub.info("c");
    assert_eq!((info.last_id, info.buffered), (5, 3));
    assert_eq!(info.subscribers[Transport::Sse as usize], 1);
    assert_eq!(info.subscribers[Transport::Library as usize], 1);
    drop(sse);
    drop(lib);
    assert_eq!(hub.info("c").subscribers, [0; Transport::COUNT]);
}

#[tokio::test]
async fn since_backlog_and_gap() {
    let hub = hub(Config::default().buffer_events(4));
    for i in 1..=10 {
        hub.publish("c", NewEvent::message(format!("e{i}")))
            .await
            .unwrap();
    }
    let mut sub = hub
        .subscribe(
            "c",
            SubscribeOptions {
                since: Some(Cursor::bare(2)),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    match next(&mut sub).await {
        Delivery::Gap(g) => {
            assert_eq!((g.from, g.to, g.reset), (3, 6, false));
            let epoch = hub.info("c").epoch.unwrap();
            assert_eq!(g.epoch, epoch);
            assert_eq!(
                g.json(),
                format!("{{\"from\":3,\"to\":6,\"epoch\":\"{epoch}\"}}")
            );
        }
        d => panic!("expected a gap first, got {d:?}"),
    }
    for want in 7..=10 {
        assert_eq!(event(next(&mut sub).await).id(), want);
    }
    assert!(sub.try_next().is_none());

    let mut sub = hub
        .subscribe(
            "c",
            SubscribeOptions {
                backlog: Some(2),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(event(next(&mut sub).await).id(), 9);
    assert_eq!(event(next(&mut sub).await).id(), 10);
    assert!(sub.try_next().is_none());
}

#[tokio::test]
async fn client_skips_its_own_events() {
    let hub = hub(Config::default());
    let mut me = hub
        .subscribe(
            "c",
            SubscribeOptions {
                client: Some("me".into()),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    let from = |who: &str, d: &'static str| NewEvent {
        from: Some(who.into()),
        ..NewEvent::message(d)
    };
    hub.publish("c", from("me", "mine")).await.unwrap();
    hub.publish("c", from("you", "yours")).await.unwrap();
    let e = event(next(&mut me).await);
    assert_eq!((e.id(), e.from()), (2, Some("you")));
    assert_eq!(me.cursor().id, 2);
}

#[tokio::test]
async fn publish_refuses_invalid_events() {
    let hub = hub(Config::default().max_event_bytes(8));
    let e = hub
        .publish("c", NewEvent::message("123456789"))
        .await
        .unwrap_err();
    assert!(
        e.is_too_large() && e.message().contains("max 8 bytes"),
        "{e}"
    );
    let e = hub
        .publish("bad name", NewEvent::message("x"))
        .await
        .unwrap_err();
    assert!(e.is_bad_request(), "{e}");
    let e = hub
        .publish("c", NewEvent::message("x").with_kind(""))
        .await
        .unwrap_err();
    assert!(e.is_bad_request(), "{e}");
    assert_eq!(
        tandem::http::error_json(&e),
        format!("{{\"error\":\"{}\"}}", e.message())
    );
    assert_eq!(hub.info("c").last_id, 0);
    assert!(hub.subscribe("a/b", SubscribeOptions::default()).is_err());
}

#[test]
fn invalid_config_is_refused() {
    let err = Hub::new(Config::default().max_parts(0)).unwrap_err();
    assert!(err.to_string().contains("max-parts"), "{err}");
    assert!(Hub::new(Config::default().heartbeat(Duration::from_millis(1))).is_err());
}

// The router's clock is tokio's: with the clock paused, the sleeps below
// advance it at once instead of waiting.
#[tokio::test(start_paused = true)]
async fn sweep_removes_idle_channels_with_expired_buffers() {
    let hub = hub(Config::default().buffer_age(Duration::from_secs(1)));
    hub.publish("idle", NewEvent::message("x")).await.unwrap();
    hub.publish("watched", NewEvent::message("x"))
        .await
        .unwrap();
    let sub = hub
        .subscribe("watched", SubscribeOptions::default())
        .unwrap();
    // Subscribing alone makes a channel; with no events it is idle at once.
    drop(hub.subscribe("empty", SubscribeOptions::default()).unwrap());
    assert_eq!(hub.channel_count(), 3);

    // Nothing expired yet: only the empty, unwatched channel goes.
    hub.sweep();
    assert_eq!(hub.channel_count(), 2);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    hub.publish("fresh", NewEvent::message("x")).await.unwrap();
    hub.sweep();
    // "idle" expired and has no subscriber; "watched" has one; "fresh" is young.
    assert_eq!(hub.channel_count(), 2);
    assert_eq!(hub.info("idle"), tandem::ChannelInfo::default());
    assert_eq!(
        hub.info("watched").subscribers[Transport::Library as usize],
        1
    );
    assert_eq!(hub.info("watched").buffered, 0, "its buffer expired");
    assert_eq!(hub.info("fresh").last_id, 1);

    drop(sub);
    hub.sweep();
    assert_eq!(hub.channel_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_swept_channel_starts_over_and_old_cursors_get_a_reset() {
    let hub = hub(Config::default().buffer_age(Duration::from_secs(1)));
    for _ in 0..3 {
        hub.publish("c", NewEvent::message("old")).await.unwrap();
    }
    let old = hub.info("c").cursor();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    hub.sweep();
    assert_eq!(hub.channel_count(), 0);
    // Made again: ids start over, in a new epoch.
    assert_eq!(
        hub.publish("c", NewEvent::message("new1"))
            .await
            .unwrap()
            .id(),
        1
    );
    let epoch = hub.info("c").epoch.unwrap();
    assert_ne!(Some(epoch), old.epoch);
    let since = |cursor| {
        hub.subscribe(
            "c",
            SubscribeOptions {
                since: Some(cursor),
                ..SubscribeOptions::default()
            },
        )
        .unwrap()
    };
    let reset = tandem::Gap {
        from: 1,
        to: 0,
        epoch,
        reset: true,
    };
    // A bare 3 is ahead of the new incarnation: told to reset.
    let mut sub = since(Cursor::bare(3));
    match next(&mut sub).await {
        Delivery::Gap(g) => assert_eq!(g, reset),
        d => panic!("expected a reset gap, got {d:?}"),
    }
    assert_eq!(&event(next(&mut sub).await).data()[..], b"new1");
    // Once the new incarnation has passed 3, only the epoch tells: the old
    // cursor gets the reset and every new event, not just 4 and 5.
    for i in 2..=5 {
        hub.publish("c", NewEvent::message(format!("new{i}")))
            .await
            .unwrap();
    }
    let mut sub = since(old);
    match next(&mut sub).await {
        Delivery::Gap(g) => assert_eq!(g, reset),
        d => panic!("expected a reset gap, got {d:?}"),
    }
    for i in 1..=5 {
        let e = event(next(&mut sub).await);
        assert_eq!((e.id(), e.epoch()), (i, epoch));
        assert_eq!(e.data(), format!("new{i}").as_bytes());
    }
    assert_eq!(sub.cursor(), Cursor::new(epoch, 5));
}

#[tokio::test(start_paused = true)]
async fn reading_never_hands_out_expired_events() {
    // No publish and no sweep after the events age out: the read itself expires them.
    let hub = hub(Config::default().buffer_age(Duration::from_secs(1)));
    hub.publish("c", NewEvent::message("old")).await.unwrap();
    hub.publish("c", NewEvent::message("old")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut sub = hub
        .subscribe(
            "c",
            SubscribeOptions {
                since: Some(Cursor::bare(0)),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    match sub.try_next() {
        Some(tandem::Delivery::Gap(g)) => assert_eq!((g.from, g.to), (1, 2)),
        other => panic!("expected a gap for the expired events, got {other:?}"),
    }
    assert!(sub.try_next().is_none());
    assert_eq!(hub.info("c").buffered, 0);
}

#[tokio::test]
async fn a_closed_subscription_gets_the_rest_then_ends() {
    let hub = hub(Config::default());
    let mut sub = hub.subscribe("c", SubscribeOptions::default()).unwrap();
    let id = hub
        .publish("c", NewEvent::message("last"))
        .await
        .unwrap()
        .id();
    assert!(hub.close("c"));
    match next_or_end(&mut sub).await {
        Some(tandem::Delivery::Event(e)) => assert_eq!(e.id(), id),
        other => panic!("expected the last event, got {other:?}"),
    }
    assert!(next_or_end(&mut sub).await.is_none(), "the stream ends");
    assert!(sub.is_closed());
    assert_eq!(hub.info("c"), tandem::ChannelInfo::default());
}

/// The subscription's `Stream::poll_next`: `None` once the channel is closed.
async fn next_or_end(sub: &mut tandem::Subscription) -> Option<tandem::Delivery> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *sub), cx))
        .await
}
