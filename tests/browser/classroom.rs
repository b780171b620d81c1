//! Classroom mode in three separate headless Chromium sessions (each its
//! own user-data-dir): a presenter on the demo portal opens a class, one
//! follower joins by typing the code and another by the class's link, both
//! on long-poll. The presenter navigates and clicks a link: both followers
//! end on the presenter's page and their copy of the link blinked first. A
//! follower's own click steers nobody (an error on screen says why); the
//! presenter hands control to a follower, whose click leads everyone, the
//! presenter included, takes it back, and ends the class. A second test
//! runs a class on an application behind the proxy.

use std::time::Duration;

use serde_json::json;

use crate::cobrowse::{click, js, text, type_into, ONE_STORY};
use crate::harness::{browser_slot, eventually};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

const WAIT: Duration = Duration::from_secs(20);

/// The text of `css` if it is shown (it and its ancestors displayed: it has boxes).
async fn visible_text(b: &Browser, css: &str) -> String {
    b.exec(
        "var e = document.querySelector(arguments[0]); \
         if (!e || !e.getClientRects().length) { return ''; } \
         return e.textContent;",
        json!([css]),
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

async fn wait_visible(b: &Browser, what: &str, css: &str, needle: &str) {
    eventually(what, WAIT, || async {
        visible_text(b, css).await.contains(needle).then_some(())
    })
    .await;
}

async fn path(b: &Browser) -> String {
    js(b, "return location.pathname;")
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_path(b: &Browser, who: &str, want: &str) {
    eventually(&format!("{who} on {want}"), WAIT, || async {
        (path(b).await == want).then_some(())
    })
    .await;
}

/// Waits until the page's class connection is open, and returns its status.
async fn connected(b: &Browser, who: &str) -> String {
    eventually(
        &format!("{who}'s page connected to the class"),
        WAIT,
        || async {
            let s = js(
                b,
                "return window.tandemCobrowse && window.tandemCobrowse.status;",
            )
            .await;
            s.as_str()
                .filter(|s| s.starts_with("open"))
                .map(str::to_string)
        },
    )
    .await
}

async fn blinks(b: &Browser) -> Vec<String> {
    let v = js(
        b,
        "return (window.tandemCobrowse && window.tandemCobrowse.blinks) || [];",
    )
    .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// A follower's page on long-poll (as behind a buffering proxy).
async fn on_long_poll(b: &Browser, server: &Server, page: &str) {
    b.goto(&server.url(page)).await;
    js(
        b,
        "sessionStorage.setItem('tandem.cobrowse.transport', 'poll');",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presenter_leads_two_followers_on_long_poll() {
    // Three browsers: every slot the harness has (two by default) is held,
    // so no other browser test runs beside this one. Taking two slots only
    // under the stories' lock keeps two such tests from deadlocking, each
    // holding one.
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let server = Server::start(browser_config()).await;
    let presenter = Browser::start(&[]).await;
    let ann = Browser::start(&[]).await;
    let bob = Browser::start(&[]).await;

    // The presenter opens a class from the shop's front page.
    presenter.goto(&server.url("/portal/")).await;
    click(&presenter, "#tcb-toggle").await;
    type_into(&presenter, "#tcb-name", "Ms Lee").await;
    click(&presenter, "#tcb-class-start-button").await;
    let code = eventually("the class's code", WAIT, || async {
        let c = text(&presenter, "#tcb-class-code-value").await;
        (c.len() == 11).then_some(c)
    })
    .await;
    let link = js(
        &presenter,
        "return document.getElementById('tcb-class-link').value;",
    )
    .await
    .as_str()
    .unwrap()
    .to_string();
    assert!(
        link.starts_with(&server.url("/portal/#tandem-class=")),
        "{link}"
    );
    connected(&presenter, "the presenter").await;

    // Ann types the code on another page of the site; Bob opens the link.
    on_long_poll(&ann, &server, "/portal/products/1").await;
    click(&ann, "#tcb-toggle").await;
    type_into(&ann, "#tcb-name", "Ann").await;
    type_into(&ann, "#tcb-class-code", &code).await;
    click(&ann, "#tcb-class-join-button").await;
    on_long_poll(&bob, &server, "/portal/help").await;
    bob.goto(&link).await;
    assert_eq!(
        js(&bob, "return location.hash;").await,
        json!(""),
        "the link's key leaves the address bar"
    );
    eventually("the join form filled in from the link", WAIT, || async {
        let v = js(
            &bob,
            "return document.getElementById('tcb-class-code').value;",
        )
        .await;
        (v.as_str()
            .is_some_and(|k| !k.is_empty() && link.ends_with(k)))
        .then_some(())
    })
    .await;
    click(&bob, "#tcb-class-join-button").await;

    // Both follow: on the presenter's page, the banner says whom, long-poll.
    for (b, who) in [(&ann, "Ann"), (&bob, "Bob")] {
        wait_path(b, who, "/portal/").await;
        wait_visible(
            b,
            &format!("{who}'s banner"),
            "#tcb-following",
            "Following Ms Lee",
        )
        .await;
        let status = connected(b, who).await;
        assert!(status.ends_with("poll"), "{who} on long-poll: {status}");
    }
    wait_visible(
        &presenter,
        "two followers",
        "#tcb-class-count",
        "2 following",
    )
    .await;

    // The presenter goes to a product page: both follow.
    presenter.goto(&server.url("/portal/products/2")).await;
    for (b, who) in [(&ann, "Ann"), (&bob, "Bob")] {
        wait_path(b, who, "/portal/products/2").await;
        connected(b, who).await;
    }
    connected(&presenter, "the presenter").await;

    // The presenter clicks "Your cart": it blinks there and at both
    // followers, then all three are on the cart.
    click(&presenter, "a[href='/portal/cart']").await;
    let blinking = js(
        &presenter,
        "return !!document.querySelector('.tandem-blink, .tandem-marked');",
    )
    .await;
    assert_eq!(blinking, json!(true), "the presenter's link blinks first");
    wait_path(&presenter, "the presenter", "/portal/cart").await;
    for (b, who) in [(&ann, "Ann"), (&bob, "Bob")] {
        wait_path(b, who, "/portal/cart").await;
        assert!(
            blinks(b).await.contains(&"/portal/cart".to_string()),
            "{who} saw the link blink: {:?}",
            blinks(b).await
        );
        connected(b, who).await;
    }

    // Ann's own click steers nobody: she stays, and is told why on screen.
    click(&ann, "a[href='/portal/']").await;
    wait_visible(
        &ann,
        "the refusal on screen",
        "#tcb-class-error",
        "only the presenter (or who holds control)",
    )
    .await;
    assert_eq!(path(&ann).await, "/portal/cart");
    assert_eq!(path(&bob).await, "/portal/cart");

    // The presenter hands control to Ann: her click leads everyone.
    wait_visible(&presenter, "Ann in the list", "#tcb-class-followers", "Ann").await;
    click(&presenter, "#tcb-class-followers button[data-id='f1']").await;
    wait_visible(&ann, "Ann's control", "#tcb-following", "You have control").await;
    wait_visible(&bob, "Bob follows Ann", "#tcb-following", "Following Ann").await;
    click(&ann, "a[href='/portal/']").await;
    for (b, who) in [(&presenter, "the presenter"), (&bob, "Bob")] {
        wait_path(b, who, "/portal/").await;
    }
    wait_path(&ann, "Ann", "/portal/").await;
    assert!(blinks(&bob).await.contains(&"/portal/".to_string()));

    // The presenter takes control back and ends the class.
    connected(&presenter, "the presenter").await;
    click(&presenter, "#tcb-class-take-back").await;
    wait_visible(
        &ann,
        "Ann follows again",
        "#tcb-following",
        "Following Ms Lee",
    )
    .await;
    click(&presenter, "#tcb-class-end").await;
    for (b, who) in [(&ann, "Ann"), (&bob, "Bob")] {
        wait_visible(
            b,
            &format!("{who} told"),
            "#tcb-class-ended",
            "The class has ended",
        )
        .await;
        assert_eq!(visible_text(b, "#tcb-following").await, "");
    }

    presenter.quit().await;
    ann.quit().await;
    bob.quit().await;
}

/// The user signs in to the test application behind the proxy.
async fn sign_in_upstream(b: &Browser, server: &Server, user: &str) {
    b.goto(&server.url("/signin")).await;
    type_into(b, "#user", user).await;
    click(b, "#signin").await;
    wait_path(b, user, "/account").await;
}

/// Behind the proxy, on an application that knows nothing of tandem (the
/// widget injected, tandem under `/_tandem`): a presenter and a follower,
/// each signed in as themselves. The follower follows the presenter's
/// clicked link and sees the page with their own data, not the presenter's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_on_a_proxied_application() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let up = kit::Upstream::start().await;
    let server = Server::start(browser_config().proxy(&up.url())).await;
    let presenter = Browser::start(&[]).await;
    let ann = Browser::start(&[]).await;
    sign_in_upstream(&presenter, &server, "lee").await;
    sign_in_upstream(&ann, &server, "ann").await;
    js(
        &ann,
        "sessionStorage.setItem('tandem.cobrowse.transport', 'poll');",
    )
    .await;

    click(&presenter, "#tcb-toggle").await;
    type_into(&presenter, "#tcb-name", "Ms Lee").await;
    click(&presenter, "#tcb-class-start-button").await;
    let code = eventually("the class's code", WAIT, || async {
        let c = text(&presenter, "#tcb-class-code-value").await;
        (c.len() == 11).then_some(c)
    })
    .await;
    connected(&presenter, "the presenter").await;

    click(&ann, "#tcb-toggle").await;
    type_into(&ann, "#tcb-class-code", &code).await;
    click(&ann, "#tcb-class-join-button").await;
    wait_visible(&ann, "Ann's banner", "#tcb-following", "Following Ms Lee").await;
    let status = connected(&ann, "Ann").await;
    assert!(status.ends_with("poll"), "Ann on long-poll: {status}");

    click(&presenter, "#to-orders").await;
    wait_path(&ann, "Ann", "/orders").await;
    assert!(blinks(&ann).await.contains(&"/orders".to_string()));
    assert_eq!(text(&ann, "#who").await, "Orders of ann", "her own data");
    wait_path(&presenter, "the presenter", "/orders").await;
    assert_eq!(text(&presenter, "#who").await, "Orders of lee");
    // None of tandem's requests (nor its cookies) reached the application.
    let seen = up.seen();
    assert!(
        seen.iter().all(|s| !s.target.contains("cobrowse")
            && s.headers
                .iter()
                .all(|(k, v)| k != "cookie" || !v.contains("tandem_"))),
        "{:?}",
        seen.iter().map(|s| s.target.clone()).collect::<Vec<_>>()
    );
    presenter.quit().await;
    ann.quit().await;
}
