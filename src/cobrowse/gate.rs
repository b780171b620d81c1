//! The gate on `cb.` channels: who may read which co-browsing channel.
//!
//! tandem's [`crate::Service`] asks the mounted app before every subscribe
//! (each long-poll, each stream open, on both connection paths), `/info`
//! and publish of a channel. Channels named `cb.*` belong to co-browsing:
//!
//! * nobody publishes to them through `/ch/...`: events go through
//!   `POST /cobrowse/event`, where the server checks who speaks, validates,
//!   sets `from` and writes the audit line (403);
//! * `cb.console`, the live list, is read by signed-in agents (401);
//! * `cb.{id}` is read by that session's customer and the agents who joined
//!   it: 401 with no co-browsing credential at all, 403 with one that is not
//!   for this session (or for a session that ended);
//! * `cb.class.{id}`, a class (see `class.rs`), is read by its presenter
//!   and its followers: 401 with no class cookie, 403 with one that is not
//!   for this class (or for a class that ended).
//!
//! The gate is asked when a subscription opens; a stream already open when
//! its session ends receives the `end` event and the channel closes, and
//! no new subscription is let in. Other channels are none of its business.

use super::class::CLASS_PREFIX;
use super::console::CONSOLE_CHANNEL;
use super::sync::SYNC_CHANNEL;

/// The start of every co-browsing channel's name (`cb.console`, `cb.{id}`).
pub(crate) const CHANNEL_PREFIX: &str = "cb.";
use super::state::{Cobrowse, Cookies};
use crate::error::Error;
use crate::http::Access;

impl Cobrowse {
    /// Allows or refuses `access` to `channel` for a request that carried
    /// these co-browsing cookies.
    pub(crate) fn check_gate(
        &self,
        channel: &str,
        access: Access,
        cookies: &Cookies,
    ) -> Result<(), Error> {
        let Some(rest) = channel.strip_prefix(CHANNEL_PREFIX) else {
            return Ok(());
        };
        if access == Access::Write {
            return Err(Error::forbidden(
                "co-browsing channels are written by the server only (POST /cobrowse/event)",
            ));
        }
        if channel == SYNC_CHANNEL {
            return Err(Error::forbidden(
                "cb.sync carries the nodes' notices to each other: no client reads it",
            ));
        }
        if channel == CONSOLE_CHANNEL {
            return self.agent(cookies).map(|_| ());
        }
        if let Some(class) = rest.strip_prefix(CLASS_PREFIX) {
            if self.class_member(class, cookies) {
                return Ok(());
            }
            if cookies.present.is_none() && cookies.follow.is_none() {
                return Err(Error::unauthorized(
                    "class channel: join the class first (POST /cobrowse/class/join)",
                ));
            }
            return Err(Error::forbidden(
                "not a member of this class (it may have ended)",
            ));
        }
        if self.customer(cookies).is_some_and(|id| id == rest) {
            return Ok(());
        }
        let agent = self.agent_named(cookies);
        if agent.is_none() && cookies.help.is_none() {
            return Err(Error::unauthorized(
                "co-browsing channel: ask for help first, or sign in as an agent",
            ));
        }
        match agent.and_then(|a| self.joined_open(rest, &a)) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::forbidden("join this help session first")),
            None => Err(Error::forbidden(
                "not a participant of this help session (it may have ended)",
            )),
        }
    }
}
