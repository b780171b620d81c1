//! Channel tokens for servers that ask for them (`--secret-file`): a fixed
//! token, or a source the client asks for a fresh one ahead of expiry.
//!
//! The token rides in `Authorization: Bearer` on every request (never in
//! the URL, so it stays out of proxies' logs). Its expiry is read from its
//! claims (not checked: the client has no secret). A source is asked when
//! there is no token yet or the one it gave has a third of its life, and at
//! most 30 s, left; a stream the server ends at its token's expiry opens
//! again with the fresh one and resumes from its cursor, losing nothing.
//! A token the server refuses (401, 403: say its secret was dropped) is
//! forgotten and the source asked again, once, before the error is given.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::Error;
use crate::token::{now_unix, parse_payload};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Fetch =
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>> + Send + Sync;

/// Where a client's tokens come from; clones share the token in hand.
#[derive(Clone)]
pub(crate) struct Tokens {
    source: Option<Arc<Fetch>>,
    held: Arc<Mutex<Option<Held>>>,
}

#[derive(Clone)]
struct Held {
    token: String,
    /// Unix seconds from which to ask the source again (`None`: never).
    renew_at: Option<u64>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.write_str(match self.source {
            Some(_) => "Tokens(source)",
            None => "Tokens(fixed)",
        })
    }
}

impl Tokens {
    pub(crate) fn fixed(token: String) -> Tokens {
        Tokens {
            source: None,
            held: Arc::new(Mutex::new(Some(Held {
                token,
                renew_at: None,
            }))),
        }
    }

    pub(crate) fn source<F, Fut>(source: F) -> Tokens
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, BoxError>> + Send + 'static,
    {
        Tokens {
            source: Some(Arc::new(move || Box::pin(source()))),
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether a refused token can be replaced (there is a source).
    pub(crate) fn renewable(&self) -> bool {
        self.source.is_some()
    }

    /// After a refusal (401, 403): the next request asks the source again.
    pub(crate) fn forget(&self) {
        if self.renewable() {
            *self.held.lock() = None;
        }
    }

    /// The token to send now: the one in hand, or a fresh one from the
    /// source when it is missing or near its expiry.
    pub(crate) async fn get(&self) -> Result<String, Error> {
        let now = now_unix();
        // The lock is released before the source is awaited.
        let held = self.held.lock().clone();
        if let Some(h) = held {
            if h.renew_at.is_none_or(|at| now < at) {
                return Ok(h.token);
            }
        }
        let Some(source) = &self.source else {
            unreachable!("a fixed token is never renewed");
        };
        let token = source().await.map_err(Error::token)?.trim().to_string();
        let renew_at = match expiry(&token) {
            Some(exp) => {
                let margin = (exp.saturating_sub(now) / 3).min(30);
                Some(exp.saturating_sub(margin))
            }
            // Not a tandem token (or none): the source decides each time.
            None => Some(now),
        };
        *self.held.lock() = Some(Held {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }
}

/// The expiry a tandem token claims (`v1.PAYLOAD.SIG`), unverified.
fn expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(payload)) = (parts.next(), parts.next()) else {
        return None;
    };
    parse_payload(payload).ok().map(|t| t.expires)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Rights, Signer, Token};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn minted(ttl: u64) -> String {
        let signer = Signer::new(&[7u8; 32]).unwrap();
        signer.mint(&Token {
            channel: "c".into(),
            prefix: false,
            rights: Rights::parse("sub").unwrap(),
            expires: now_unix() + ttl,
            client: None,
        })
    }

    #[tokio::test]
    async fn a_source_is_asked_again_only_near_expiry() {
        let asked = Arc::new(AtomicU32::new(0));
        let counter = asked.clone();
        let tokens = Tokens::source(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(minted(3600)) }
        });
        let first = tokens.get().await.unwrap();
        assert_eq!(tokens.get().await.unwrap(), first);
        assert_eq!(asked.load(Ordering::SeqCst), 1, "an hour's token is kept");
        // One about to expire is replaced at once.
        let asked = Arc::new(AtomicU32::new(0));
        let counter = asked.clone();
        let tokens = Tokens::source(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(minted(0)) }
        });
        tokens.get().await.unwrap();
        tokens.get().await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert_eq!(expiry("not.a.token"), None);
        assert!(expiry(&minted(60)).is_some());
    }

    #[tokio::test]
    async fn a_failing_source_is_a_token_error_and_nothing_is_printed() {
        let tokens = Tokens::source(|| async { Err::<String, BoxError>("no network".into()) });
        let e = tokens.get().await.unwrap_err();
        assert!(e.is_token(), "{e:?}");
        assert_eq!(e.to_string(), "getting a token failed: no network");
        assert_eq!(
            format!("{:?}", Tokens::fixed("v1.secret.sig".into())),
            "Tokens(fixed)"
        );
    }
}
