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
//! **Using it.** Make a [`Cobrowse`] from a [`crate::Hub`] and [`CobrowseConfig`],
//! add the demo portal ([`Cobrowse::with_portal`]) or your application's own
//! session hook ([`Cobrowse::with_share`]), and mount it with
//! [`crate::Service::with_app`]. Without an agents file it makes a per-run
//! key; [`Cobrowse::sign_in_link`] gives the link to show the operator (the
//! library prints nothing). `docs/cobrowse.md` has the whole story.
//!
//! **The parts, one idea a file**, each using only those listed above it:
//!
//! * `helpers.rs`: refusals by kind, the limits on what clients send,
//!   string fields, paths within the site.
//! * `settings.rs`: [`CobrowseConfig`] and [`SetupError`]; loading the canned replies.
//! * `secret.rs`: ids and tokens from the OS random source; digests kept
//!   instead of tokens.
//! * `store.rs`: with `--redis`, the help sessions, sign-ins, phone codes,
//!   limits and the console list as Redis keeps them (plain I/O).
//! * `session.rs`: help sessions (plain data), phone codes, the kept chat,
//!   the customer's presence.
//! * `agents.rs`: agent accounts (argon2), the per-run key, sign-ins.
//! * `audit.rs`: the hash-chained JSON-lines audit log, its writer thread,
//!   and its verifier.
//! * `console.rs`: publishing the live list on `cb.console` so that its
//!   last event is always the current list.
//! * `share.rs`: sharing the application's own session with joined agents
//!   (the hook for embedders).
//! * `jar.rs`: a help session's cookies on a proxied application, kept
//!   server-side (plain data).
//! * `portal.rs`: the small demo portal (knows nothing of the rest).
//! * `state.rs`: [`Cobrowse`], the state and its operations, no HTTP in it:
//!   plain inputs (cookie values, a checked request), plain outputs, errors
//!   as [`crate::Error`]; the task that marks silent customers gone.
//! * `class.rs`: classroom mode: classes (plain data), their codes and
//!   links, followers, control, and the operations on them (the state in
//!   `state.rs` holds the `Classes`).
//! * `sync.rs`: with `--redis`, loading what a request names from Redis
//!   before it is decided, and hearing other nodes' changes on `cb.sync`.
//! * `gate.rs`: who may read which `cb.` channel.
//! * `proxied.rs`: what the proxy asks of co-browsing: whose request it
//!   forwards (a customer's, a page of an agent's view), the jars, the
//!   control the customer hands over, the audit of requests made with the
//!   customer's session.
//! * `routes.rs`: the HTTP face: `/cobrowse/...`, `/agent/...` and the
//!   portal's paths, cookies, request bodies, answers; the [`crate::http::App`]
//!   impl.
//!
//! **Where to change what.** A new kind of session event: `Say` in
//! `state.rs`, its parsing in `routes.rs`, `docs/cobrowse.md`. Who may read
//! a channel: `gate.rs`. A new setting: `settings.rs`. What the console
//! shows: `Session::summary` in `session.rs`. Classroom mode (a presenter,
//! followers, control): `class.rs`, its routes in `routes.rs`
//! (`class_route`), its channel in `gate.rs`.
//!
//! **The gate.** Channels whose names start with `cb.` belong to
//! co-browsing: `cb.console` (the live list of sessions, read by signed-in
//! agents), `cb.{id}` for each help session (read by its customer and the
//! agents who joined it) and `cb.class.{id}` for each class (read by its
//! presenter and followers). tandem's [`crate::Service`] asks this app before
//! every subscribe, long-poll, stream open and publish of a channel, with
//! the request's headers; the app looks for the participant's cookie
//! (`HttpOnly`, so page scripts and a Referer never carry it) and answers
//! 401/403 unless it names someone allowed. Nobody publishes to `cb.`
//! channels directly: writes go through `POST /cobrowse/event`, where the
//! server checks who is speaking, validates the event, sets its `from`, and
//! writes the audit line.

mod agents;
pub mod audit;
mod class;
mod console;
mod gate;
mod helpers;
pub(crate) mod jar;
mod portal;
pub(crate) mod proxied;
mod routes;
mod secret;
mod session;
mod settings;
pub mod share;
mod state;
mod store;
mod sync;

pub use agents::{agent_line, hash_password};
pub use audit::{verify as verify_audit, verify_logs as verify_audit_logs, Verified, VerifyError};
pub use routes::VIEW_PARAM;
pub use settings::{CobrowseConfig, SetupError};
pub use share::{CookieShare, ShareSession};
pub use state::Cobrowse;

/// Reads the files `settings` names (agents, canned replies) and opens the
/// audit log for appending, so a program can refuse to start with a clear
/// message before it listens. [`Cobrowse::new`] reads them again.
pub fn check_files(settings: &CobrowseConfig) -> Result<(), SetupError> {
    if let Some(p) = &settings.agents_file {
        agents::Agents::from_file(p, settings.agent_session_ttl)?;
    }
    settings::load_canned(settings.canned_file.as_deref())?;
    if let Some(p) = &settings.audit_file {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| SetupError::file(format!("--audit {}: {e}", p.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
