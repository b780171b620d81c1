//! The browser test binary: headless chromium against a live tandem, and
//! tandem behind real and simulated proxies. Each module is one area.

// tandem behind squid, nginx and test proxies: the harnesses (proxies) and
// the raw-protocol tests through them (proxy_tests).
mod proxies;
mod proxy_tests;
// tandem.js in Chromium through those proxies (needs harness and webdriver).
mod proxy_browser;
mod scaleout;
mod shared_view;

// The browser side: a small WebDriver client (webdriver), what the browser
// tests share (harness: restartable server, connection-cutting proxy, page
// helpers, PNGs), tandem.js over every transport (client), the live image
// page (live_image), and the ES5 check of the client and pages (es5).
mod classroom;
mod client;
mod cobrowse;
mod es5;
mod harness;
mod live_image;
mod tls;
mod tokens;
mod webdriver;
