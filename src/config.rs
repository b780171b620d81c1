//! The core settings: the router, the transports, the size limits.
//!
//! Settings come in layers, one struct each, validated once and passed down:
//! this [`Config`] (held by the [`crate::Hub`]), [`crate::http::HttpConfig`]
//! (held by the [`crate::Service`]: connections, timeouts, origins) and the
//! co-browsing settings. Each is `#[non_exhaustive]`: start from `Default`
//! and change what you need with the builder methods, so a new setting never
//! breaks a caller. `main.rs` lays the command-line flags over these
//! defaults, so each default is written once, here. There are no globals:
//! two servers with different settings can live in one process, which is
//! exactly what the integration tests do.

use std::fmt;
use std::time::Duration;

/// The settings of the router and the transports.
///
/// ```
/// use std::time::Duration;
/// let cfg = tandem::Config::default()
///     .buffer_events(1000)
///     .heartbeat(Duration::from_secs(20));
/// let hub = tandem::Hub::new(cfg).unwrap(); // validates
/// assert_eq!(hub.config().buffer_events, 1000);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Events kept per channel for resume (the ring size).
    pub buffer_events: usize,
    /// How long an event stays in the ring.
    pub buffer_age: Duration,
    /// Largest event body accepted by publish.
    pub max_event_bytes: usize,
    /// Most parts (events) in one `multipart/form-data` publish.
    pub max_parts: usize,
    /// Most events one long-poll answer carries.
    pub poll_batch: usize,
    /// Long-poll hold time when the request names none.
    pub poll_timeout: Duration,
    /// Upper bound on the `timeout` a long-poll may ask for.
    pub poll_timeout_max: Duration,
    /// Interval between heartbeats on idle streams.
    pub heartbeat: Duration,
    /// Bytes of padding sent first on streams (for buffering proxies and old browsers).
    pub stream_padding: usize,
    /// Reconnect delay announced to SSE clients (`retry:`).
    pub sse_retry: Duration,
    /// How often idle channels are swept away.
    pub sweep_interval: Duration,
    /// Most channels that clients may make (by publishing or subscribing to
    /// a new name); beyond it, a new name is refused with 503 while every
    /// existing channel works on. It bounds what a flood of channel names
    /// can cost (each channel keeps its own ring).
    pub max_channels: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            buffer_events: 256,
            buffer_age: Duration::from_secs(600),
            max_event_bytes: 64 * 1024,
            max_parts: 64,
            poll_batch: 100,
            poll_timeout: Duration::from_secs(25),
            poll_timeout_max: Duration::from_secs(120),
            heartbeat: Duration::from_secs(15),
            stream_padding: 2048,
            sse_retry: Duration::from_secs(2),
            sweep_interval: Duration::from_secs(30),
            max_channels: 100_000,
        }
    }
}

/// A setting out of range; the message names the setting and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error with this message (lowercase, naming the setting).
    pub(crate) fn new(msg: impl Into<String>) -> ConfigError {
        ConfigError(msg.into())
    }
}

/// Builder methods, one per field: `Config::default().buffer_events(64)`.
macro_rules! setters {
    ($ty:ident { $($field:ident: $t:ty,)* }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets [`", stringify!($ty), "::", stringify!($field), "`].")]
                #[must_use]
                pub fn $field(mut self, value: $t) -> $ty {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
pub(crate) use setters;

setters!(Config {
    buffer_events: usize,
    buffer_age: Duration,
    max_event_bytes: usize,
    max_parts: usize,
    poll_batch: usize,
    poll_timeout: Duration,
    poll_timeout_max: Duration,
    heartbeat: Duration,
    stream_padding: usize,
    sse_retry: Duration,
    sweep_interval: Duration,
    max_channels: usize,
});

pub(crate) fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError(msg()))
    }
}

impl Config {
    /// Checks every setting; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check((1..=1_000_000).contains(&self.buffer_events), || {
            "buffer-events must be between 1 and 1000000".into()
        })?;
        check(self.buffer_age >= Duration::from_secs(1), || {
            "buffer-age must be at least 1 second".into()
        })?;
        check((1..=64 << 20).contains(&self.max_event_bytes), || {
            "max-event-bytes must be between 1 and 67108864".into()
        })?;
        check((1..=10_000).contains(&self.max_parts), || {
            "max-parts must be between 1 and 10000".into()
        })?;
        check((1..=10_000).contains(&self.poll_batch), || {
            "poll-batch must be between 1 and 10000".into()
        })?;
        check(self.poll_timeout <= self.poll_timeout_max, || {
            "poll-timeout must not exceed poll-timeout-max".into()
        })?;
        check(self.heartbeat >= Duration::from_millis(10), || {
            "heartbeat must be at least 10 ms".into()
        })?;
        check(self.stream_padding <= 64 * 1024, || {
            "stream-padding must be at most 65536 bytes".into()
        })?;
        check(self.sweep_interval >= Duration::from_millis(10), || {
            "sweep-interval must be at least 10 ms".into()
        })?;
        check((1..=100_000_000).contains(&self.max_channels), || {
            "max-channels must be between 1 and 100000000".into()
        })?;
        Ok(())
    }

    /// The body size a publish may send: every part at its largest, plus headers.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_event_bytes
            .saturating_mul(self.max_parts)
            .saturating_add(self.max_parts * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    /// What `validate` says of the default config changed by `change`.
    fn error_of(change: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        change(&mut c);
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_limit() {
        assert_eq!(
            error_of(|c| c.max_parts = 0),
            "max-parts must be between 1 and 10000"
        );
    }
}
