//! Co-browsing and web assistance, built on tandem's own channels.
//!
//! A customer on any page of a site that loads `/cobrowse.js` asks for help;
//! a signed-in agent sees the request appear in the console (`/agent`),
//! joins, and from then on both browsers stay in step: the agent pushes a
//! page or pulls the customer's, either side's clicks blink on both sides
//! before both navigate, and they chat. Every one of those events travels
//! over an ordinary tandem channel, so whatever transport reaches the
//! browser (a stream, or long-poll behind a buffering proxy) carries them.
//!
//! The parts, one idea a file:
//!
//! * `secret.rs`: ids and tokens from the OS random source; digests kept
//!   instead of tokens.
//! * `session.rs`: help sessions (plain data), phone codes.
//! * `agents.rs`: agent accounts (argon2), the per-run key, sign-in cookies.
//! * `audit.rs`: the hash-chained JSON-lines audit log and its verifier.
//! * `share.rs`: sharing the application's own session with joined agents
//!   (the hook for embedders, and the demo portal's use of it).
//! * `portal.rs`: the small demo portal built into the binary.
//! * `routes.rs`: the HTTP face: `/cobrowse/...`, `/agent/...`, and the
//!   channel gate.
//!
//! **The gate.** Channels whose names start with `cb.` belong to
//! co-browsing: `cb.console` (the live list of sessions, read by signed-in
//! agents) and `cb.{id}` for each help session (read by its customer and the
//! agents who joined it). tandem's [`crate::Service`] asks this app before
//! every subscribe, long-poll, stream open and publish of a channel, with
//! the request's headers; the app looks for the participant's cookie
//! (`HttpOnly`, so page scripts and a Referer never carry it) and answers
//! 401/403 unless it names someone allowed. Nobody publishes to `cb.`
//! channels directly: writes go through `POST /cobrowse/event`, where the
//! server checks who is speaking, validates the event, sets its `from`, and
//! writes the audit line. The gate is checked when a subscription opens; a
//! stream already open when its session ends receives the `end` event and
//! is closed by the client, and no new subscription is let in.

mod agents;
pub mod audit;
mod portal;
mod routes;
mod secret;
mod session;
pub mod share;

use std::io;
use std::sync::Arc;

pub use agents::{agent_line, check_agent_name, hash_password};
pub use audit::{verify as verify_audit, Verified};
pub use routes::Cobrowse;
pub use share::{CookieShare, ShareSession};

use crate::http::Service;

/// Checks the co-browsing files of a config (agents, canned replies, the
/// audit log's directory) so `tandem serve` can refuse to start with a clear
/// message before it listens. `serve` checks them again when it mounts.
pub fn check_files(cfg: &crate::Config) -> Result<(), String> {
    if !cfg.cobrowse {
        return Ok(());
    }
    if let Some(p) = &cfg.agents_file {
        agents::Agents::from_file(p, cfg.agent_session_ttl)?;
    }
    routes::load_canned(cfg.canned_file.as_deref())?;
    if let Some(p) = &cfg.audit_file {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("--audit {}: {e}", p.display()))?;
    }
    Ok(())
}

/// Mounts co-browsing on a service (when `Config::cobrowse`), with the demo
/// portal, printing the agent sign-in link when it made a per-run key.
pub fn mount(service: Service, addr: std::net::SocketAddr) -> io::Result<Service> {
    let hub = service.hub().clone();
    if !hub.config().cobrowse {
        return Ok(service);
    }
    let cb = Cobrowse::new(hub)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .with_share(Arc::new(share::CookieShare::new(portal::COOKIE)));
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        // Listening on every interface: this machine's own is a link that works.
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if let Some(key) = cb.printable_key() {
        // Printed, not logged: the key must reach the operator whatever
        // RUST_LOG says. It sits in the fragment, which no browser sends.
        eprintln!("tandem: agent sign-in for this run: http://{addr}/agent#key={key}");
    }
    let portal = portal::Portal::new(cb.clone());
    Ok(service.with_app(Arc::new(routes::Apps(cb, portal))))
}
