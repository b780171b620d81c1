//! The hook for an application mounted beside tandem's own routes.
//!
//! Co-browsing (`crate::cobrowse`) is built on tandem's public surface plus
//! this one trait, and an embedder can mount its own app the same way:
//!
//! * [`App::claims`] picks the paths the app answers (tandem's routes are
//!   asked second, so an app may add pages but cannot hide `/ch/...`);
//! * [`App::serve`] answers them, with the request body already read (at
//!   most [`MAX_APP_BODY`] bytes, so no app can be made to buffer more);
//! * [`App::gate`] is asked before every publish, subscribe (each long-poll,
//!   each stream open, on both connection paths) and `/info` of a channel,
//!   with the request's headers, so an app can keep channels to the people
//!   its own credentials (cookies, headers) name.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, Response};

use super::body::Body;
use crate::error::Error;

/// Most bytes of a request body handed to [`App::serve`].
pub const MAX_APP_BODY: usize = 64 * 1024;

/// What a request wants to do with a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe (any transport) or read `/info`.
    Read,
    /// Publish.
    Write,
}

/// The future an [`App`] answers with.
pub type AppFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The future of [`App::before_gate`].
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// An application served by [`crate::Service`] beside the push routes.
pub trait App: Send + Sync + 'static {
    /// Whether this app answers `path` (stripped of the service's prefix).
    fn claims(&self, path: &str) -> bool;
    /// Answers a request whose path it claimed. `path` is stripped of the prefix.
    fn serve(&self, path: &str, req: Request<Bytes>) -> AppFuture;
    /// Allows (`Ok`) or refuses (an error with its status) access to a channel.
    fn gate(&self, channel: &str, access: Access, headers: &HeaderMap) -> Result<(), Error>;
    /// Awaited just before [`App::gate`] when it returns a future: an app
    /// whose credentials live elsewhere (co-browsing with `--redis`) loads
    /// what the request names, so that `gate` itself stays synchronous. An
    /// error refuses the request (503 when the store cannot be asked). The
    /// default, `None`, costs nothing.
    fn before_gate<'a>(
        &'a self,
        channel: &'a str,
        headers: &'a HeaderMap,
    ) -> Option<GateFuture<'a>> {
        let _ = (channel, headers);
        None
    }

    /// Whether this app guards `channel` itself in [`App::gate`] (its own
    /// credentials, such as co-browsing's `cb.*` channels): signed channel
    /// tokens (`crate::token`) are then not asked for it. None by default.
    fn gates_channel(&self, channel: &str) -> bool {
        let _ = channel;
        false
    }

    /// Whether a request to a path it claims opens a new session (a help
    /// session, say): `serve` limits those per client address
    /// ([`crate::http::HttpConfig::sessions_per_minute`]). None by default.
    fn opens_session(&self, method: &hyper::Method, path: &str) -> bool {
        let _ = (method, path);
        false
    }
}

/// Reads a request body for an app, refusing more than [`MAX_APP_BODY`].
pub(crate) async fn read_body<B>(
    req: Request<B>,
    timeout: std::time::Duration,
) -> Result<Request<Bytes>, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use super::read::{read_all, ReadError};
    let (parts, body) = req.into_parts();
    let data = match read_all(body, MAX_APP_BODY, timeout).await {
        Ok(data) => data,
        Err(ReadError::TooLarge) => {
            return Err(Error::too_large(format!(
                "request body too large (max {MAX_APP_BODY} bytes)"
            )))
        }
        Err(ReadError::Failed) => {
            return Err(Error::bad_request("could not read the request body"))
        }
        Err(ReadError::TooSlow) => return Err(super::read::too_slow(timeout)),
    };
    Ok(Request::from_parts(parts, data))
}
