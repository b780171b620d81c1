//! The live image page: a plain `<img src="ch/cam/multipart?backlog=1">`
//! shows each image pushed to `cam`, read back from the page through a
//! canvas; heartbeats (every 100 ms here) never blank it; the page's own
//! form pushes an image too.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tandem::NewEvent;

use crate::harness::{browser_slot, eventually, png};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

/// The colour and size the page's `<img id=live>` shows now (null before
/// the first image).
const READ_PIXEL: &str = "
    var img = document.getElementById('live');
    if (!img.naturalWidth) { return null; }
    var c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    var ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    var d = ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
    return [d[0], d[1], d[2], img.naturalWidth, img.naturalHeight];";

fn image_event(rgb: [u8; 3]) -> NewEvent {
    let mut e = NewEvent::message(Bytes::from(png(24, 16, rgb))).with_kind("image");
    e.content_type = Some("image/png".into());
    e
}

async fn wait_colour(b: &Browser, rgb: [u8; 3]) {
    let want = json!([rgb[0], rgb[1], rgb[2], 24, 16]);
    let mut last = Value::Null;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            last = b.exec(READ_PIXEL, json!([])).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "the image did not turn {rgb:?}; it shows {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_image_follows_pushed_images() {
    let _slot = browser_slot().await;
    let cfg = browser_config().heartbeat(Duration::from_millis(100));
    let server = Server::start(cfg).await;
    // One image before the page opens: `backlog=1` shows it at once.
    server
        .publish_event("cam", image_event([200, 30, 30]))
        .await;
    // The <img> never finishes loading, so neither does the page: navigate
    // "eager"ly, without waiting for a `load` event that never comes.
    let browser = Browser::start_with(&[], "eager").await;
    browser.goto(&server.url("/live-image.html")).await;
    wait_colour(&browser, [200, 30, 30]).await;

    for rgb in [[20, 180, 40], [30, 60, 220], [250, 250, 0], [0, 0, 0]] {
        server.publish_event("cam", image_event(rgb)).await;
        wait_colour(&browser, rgb).await;
        // Several heartbeats go by: still the same picture, not blank.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let now = browser.exec(READ_PIXEL, json!([])).await;
        assert_eq!(
            now,
            json!([rgb[0], rgb[1], rgb[2], 24, 16]),
            "heartbeats changed the image"
        );
    }

    // The page's form: a multipart/form-data POST of a file to ch/cam.
    let file = std::env::temp_dir().join(format!("tandem-magenta-{}.png", std::process::id()));
    std::fs::write(&file, png(24, 16, [255, 0, 255])).expect("write the png");
    let input = browser.find("input[type=file]").await;
    browser
        .send_keys(&input, file.to_str().expect("utf-8 path"))
        .await;
    browser
        .exec("document.querySelector('form').submit();", json!([]))
        .await;
    wait_colour(&browser, [255, 0, 255]).await;
    let _ = std::fs::remove_file(&file);
    // The form's answer went to the hidden iframe: the page stayed.
    let answer = eventually("the publish answer", Duration::from_secs(10), || async {
        let v = browser
            .exec(
                "var f = document.getElementsByName('sink')[0];
                 try { return f.contentDocument.body.innerText; } catch (e) { return null; }",
                json!([]),
            )
            .await;
        v.as_str().filter(|s| s.contains("ids")).map(String::from)
    })
    .await;
    assert_eq!(answer.trim(), "{\"ids\":[6]}");
    browser.quit().await;
}
