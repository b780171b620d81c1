//! Signed channel tokens: who may subscribe to or publish on which channels,
//! until when, checked in-process with no call to another service.
//!
//! A token is `v1.PAYLOAD.SIG`, URL-safe as it stands (a query parameter, a
//! cookie value or an `Authorization: Bearer` credential):
//!
//! - `PAYLOAD`: base64url (no padding) of a small JSON object:
//!   `{"c":"chat.*","r":"sp","exp":1767225600,"cid":"alice"}` where `c` is a
//!   channel name, or a prefix when it ends in `*` (`*` is not a channel
//!   character, so the two cannot be confused); `r` the rights, `s`
//!   (subscribe: streams, polls, info) and/or `p` (publish); `exp` the
//!   expiry in unix seconds; `cid` (optional) the only client id it is for.
//! - `SIG`: base64url (no padding) of HMAC-SHA256(secret, `v1.PAYLOAD`).
//!
//! The signature is compared in constant time before the payload is read.
//! HMAC is written here over `sha2` (already a dependency, for the
//! co-browsing codes) rather than pulling in the `hmac` crate: it is the
//! twelve lines of RFC 2104.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest token read; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// What a token allows: subscribing (streams, polls, channel info),
/// publishing, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Streams, long-polls and `/info/{c}`.
    pub subscribe: bool,
    /// `POST /ch/{c}`.
    pub publish: bool,
}

impl Rights {
    /// Parses `sub`, `pub`, `sub,pub` (also `s`, `p`, `sp`, `subscribe`,
    /// `publish`).
    pub fn parse(s: &str) -> Result<Rights, String> {
        let mut r = Rights {
            subscribe: false,
            publish: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "sub" | "subscribe" | "s" => r.subscribe = true,
                "pub" | "publish" | "p" => r.publish = true,
                "sp" | "ps" => {
                    r.subscribe = true;
                    r.publish = true
                }
                _ => return Err(format!("unknown right {part:?} (sub, pub or sub,pub)")),
            }
        }
        Ok(r)
    }

    fn letters(self) -> &'static str {
        match (self.subscribe, self.publish) {
            (true, true) => "sp",
            (true, false) => "s",
            (false, true) => "p",
            (false, false) => "",
        }
    }
}

/// The claims of one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// A channel name, or a prefix when `prefix` is set.
    pub channel: String,
    /// Whether `channel` is a prefix (`chat.` matches `chat.room1`).
    pub prefix: bool,
    /// What it allows.
    pub rights: Rights,
    /// Expiry, unix seconds: the token is refused from this second on.
    pub expires: u64,
    /// The one client id (`client=` of the request) it is for, if any.
    pub client: Option<String>,
}

/// Why a token was refused (each answered 403, saying which).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not `v1.PAYLOAD.SIG`, or a payload that is not the JSON above.
    Malformed,
    /// The signature does not match: another secret, or altered.
    BadSignature,
    /// Past its expiry.
    Expired,
    /// For another channel or prefix.
    WrongChannel,
    /// Does not carry the right asked for.
    WrongRight,
    /// For another client id.
    WrongClient,
}

impl TokenError {
    /// The message of the 403 answer.
    pub fn message(&self) -> &'static str {
        match self {
            TokenError::Malformed => "token malformed",
            TokenError::BadSignature => "token signature invalid",
            TokenError::Expired => "token expired",
            TokenError::WrongChannel => "token is not for this channel",
            TokenError::WrongRight => "token does not grant this right",
            TokenError::WrongClient => "token is for another client id",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TokenError {}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints and checks tokens with one secret; after [`Signer::rotated`],
/// tokens of the secret before it are still accepted.
#[derive(Clone)]
pub struct Signer {
    key: Key,
    /// The secret before a rotation, still accepted (never used to mint).
    previous: Option<Key>,
}

/// An HMAC-SHA256 key, padded to SHA-256's block: `K ^ ipad`, `K ^ opad`.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    ipad: [u8; 64],
    opad: [u8; 64],
}

impl Key {
    fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let inner = Sha256::new()
            .chain_update(self.ipad)
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(self.opad)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with this secret (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: &[u8]) -> Result<Signer, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the token secret is {} bytes; at least {MIN_SECRET_BYTES} are needed (e.g. head -c 32 /dev/urandom | base64 > FILE)",
                secret.len()
            ));
        }
        let mut key = [0u8; 64];
        if secret.len() > 64 {
            key[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for i in 0..64 {
            ipad[i] ^= key[i];
            opad[i] ^= key[i];
        }
        Ok(Signer {
            key: Key { ipad, opad },
            previous: None,
        })
    }

    /// This signer's secret replaced by `next`'s, the secret before it
    /// still accepted (one generation only: a token of two rotations ago
    /// is refused). Rotating to the same secret again drops the previous
    /// one: that is how a leaked secret's tokens are refused at once.
    /// `serve --secret-file` does this on SIGHUP.
    pub fn rotated(&self, next: Signer) -> Signer {
        let previous = (next.key != self.key).then(|| self.key.clone());
        Signer {
            key: next.key,
            previous,
        }
    }

    /// Whether tokens of a previous secret are still accepted.
    pub fn accepts_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// A signer with the secret in this file (its bytes, surrounding white
    /// space trimmed).
    pub fn from_file(path: &std::path::Path) -> Result<Signer, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
        let trimmed = bytes.trim_ascii();
        Signer::new(trimmed).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The token for these claims.
    pub fn mint(&self, t: &Token) -> String {
        let mut c = t.channel.clone();
        if t.prefix {
            c.push('*');
        }
        let mut json = serde_json::json!({
            "c": c,
            "r": t.rights.letters(),
            "exp": t.expires,
        });
        if let Some(cid) = &t.client {
            json["cid"] = cid.clone().into();
        }
        let mut out = String::from("v1.");
        B64.encode_string(json.to_string(), &mut out);
        let sig = self.key.mac(out.as_bytes());
        out.push('.');
        B64.encode_string(sig, &mut out);
        out
    }

    /// The claims of a token whose signature is this secret's and which has
    /// not expired at `now` (unix seconds). Says nothing of channel or
    /// rights: see [`Token::allows`].
    pub fn verify(&self, token: &str, now: u64) -> Result<Token, TokenError> {
        let t = self.verify_signature(token)?;
        if now >= t.expires {
            return Err(TokenError::Expired);
        }
        Ok(t)
    }

    /// The claims of a token signed with this secret, expired or not.
    pub fn verify_signature(&self, token: &str) -> Result<Token, TokenError> {
        self.verify_signature_by(token).map(|(t, _)| t)
    }

    /// The claims, and whether the previous secret signed them.
    fn verify_signature_by(&self, token: &str) -> Result<(Token, bool), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload = signed.strip_prefix("v1.").ok_or(TokenError::Malformed)?;
        let mut got = [0u8; 32];
        match B64.decode_slice(sig, &mut got) {
            Ok(32) => {}
            _ => return Err(TokenError::Malformed),
        }
        let signed_by = |k: &Key| ct_eq(&k.mac(signed.as_bytes()), &got);
        let by_previous = if signed_by(&self.key) {
            false
        } else if self.previous.as_ref().is_some_and(signed_by) {
            true
        } else {
            return Err(TokenError::BadSignature);
        };
        Ok((parse_payload(payload)?, by_previous))
    }

    /// Whether `other` has this signer's (current) secret.
    pub(crate) fn same_secret(&self, other: &Signer) -> bool {
        self.key == other.key
    }

    /// Whether `token` allows `right` on `channel` for `client` at `now`:
    /// its claims, or why not.
    pub fn check(
        &self,
        token: &str,
        channel: &str,
        right: Right,
        client: Option<&str>,
        now: u64,
    ) -> Result<Token, TokenError> {
        self.check_by(token, channel, right, client, now)
            .map(|(t, _)| t)
    }

    /// [`Signer::check`], and whether the previous secret signed the token.
    fn check_by(
        &self,
        token: &str,
        channel: &str,
        right: Right,
        client: Option<&str>,
        now: u64,
    ) -> Result<(Token, bool), TokenError> {
        let (t, by_previous) = self.verify_signature_by(token)?;
        if now >= t.expires {
            return Err(TokenError::Expired);
        }
        t.allows(channel, right, client)?;
        Ok((t, by_previous))
    }
}

/// One right asked for by a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Streams, long-polls, channel info.
    Subscribe,
    /// Publishing.
    Publish,
}

impl Token {
    /// Whether these claims allow `right` on `channel` for `client`.
    pub fn allows(
        &self,
        channel: &str,
        right: Right,
        client: Option<&str>,
    ) -> Result<(), TokenError> {
        let matches = if self.prefix {
            channel.starts_with(&self.channel)
        } else {
            channel == self.channel
        };
        if !matches {
            return Err(TokenError::WrongChannel);
        }
        let ok = match right {
            Right::Subscribe => self.rights.subscribe,
            Right::Publish => self.rights.publish,
        };
        if !ok {
            return Err(TokenError::WrongRight);
        }
        if let Some(cid) = &self.client {
            if client != Some(cid.as_str()) {
                return Err(TokenError::WrongClient);
            }
        }
        Ok(())
    }
}

/// Parses a token's payload (the part between `v1.` and the signature),
/// without looking at any signature. Public for the fuzz target.
pub fn parse_payload(payload: &str) -> Result<Token, TokenError> {
    let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    let c = v
        .get("c")
        .and_then(|c| c.as_str())
        .ok_or(TokenError::Malformed)?;
    let (channel, prefix) = match c.strip_suffix('*') {
        Some(p) => (p, true),
        None => (c, false),
    };
    // A prefix may be empty (`*`: every channel); a channel may not.
    let name_ok = channel.len() <= crate::event::MAX_CHANNEL_LEN
        && (prefix && channel.is_empty() || crate::event::check_channel(channel).is_ok());
    if !name_ok {
        return Err(TokenError::Malformed);
    }
    let r = v
        .get("r")
        .and_then(|r| r.as_str())
        .ok_or(TokenError::Malformed)?;
    let rights = Rights {
        subscribe: r.contains('s'),
        publish: r.contains('p'),
    };
    if r.len() > 2 || !r.bytes().all(|b| b == b's' || b == b'p') {
        return Err(TokenError::Malformed);
    }
    let expires = v
        .get("exp")
        .and_then(|e| e.as_u64())
        .ok_or(TokenError::Malformed)?;
    let client = match v.get("cid") {
        None => None,
        Some(c) => Some(c.as_str().ok_or(TokenError::Malformed)?.to_string()),
    };
    Ok(Token {
        channel: channel.to_string(),
        prefix,
        rights,
        expires,
        client,
    })
}

/// Equal bytes, in a time that depends only on the length.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for i in 0..32 {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}

/// `uri` (or any `path?query`) with the value of every `token=` query
/// parameter replaced by `REDACTED`, for logs.
pub fn redact(uri: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.into();
    };
    if !query.split('&').any(|p| p.starts_with("token=")) {
        return uri.into();
    }
    let q: Vec<&str> = query
        .split('&')
        .map(|p| {
            if p.starts_with("token=") {
                "token=REDACTED"
            } else {
                p
            }
        })
        .collect();
    format!("{path}?{}", q.join("&")).into()
}

/// Which channels need a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Every channel.
    All,
    /// None (tokens are not looked at).
    None,
    /// Channels whose names start with one of these.
    Prefixes(Vec<String>),
}

impl Needs {
    /// Whether `channel` needs a token.
    pub fn covers(&self, channel: &str) -> bool {
        match self {
            Needs::All => true,
            Needs::None => false,
            Needs::Prefixes(p) => p.iter().any(|p| channel.starts_with(p.as_str())),
        }
    }
}

/// What a [`crate::Service`] checks: the signer and which channels need a
/// token.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    /// Checks the tokens.
    pub signer: Signer,
    /// Which channels need one.
    pub needs: Needs,
}

/// What a request's token was found to be: when it expires, and whether
/// the previous secret signed it (its stream ends if that secret is dropped).
pub(crate) struct Checked {
    pub(crate) expires: u64,
    pub(crate) by_previous: bool,
}

/// The name of the cookie a token may ride in.
pub const COOKIE: &str = "tandem_token";

/// The token a request carries: `Authorization: Bearer`, else the `token`
/// query parameter, else the `tandem_token` cookie.
pub(crate) fn from_request(headers: &hyper::HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get(hyper::header::AUTHORIZATION) {
        if let Some(t) = v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    if let Some(q) = query {
        for p in q.split('&') {
            if let Some(t) = p.strip_prefix("token=") {
                // base64url and dots: nothing to percent-decode in a real one.
                return Some(t.to_string());
            }
        }
    }
    for v in headers.get_all(hyper::header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for kv in s.split(';') {
            if let Some((k, val)) = kv.trim().split_once('=') {
                if k == COOKIE {
                    return Some(val.trim_matches('"').to_string());
                }
            }
        }
    }
    None
}

impl TokenPolicy {
    /// Checks a request for `right` on `channel`: `Ok(None)` when the
    /// channel needs no token, `Ok(Some(expiry))` when its token allows it,
    /// else the 401 (no token) or 403 (which reason) to answer.
    pub(crate) fn check(
        &self,
        channel: &str,
        right: Right,
        headers: &hyper::HeaderMap,
        query: Option<&str>,
        client: Option<&str>,
    ) -> Result<Option<Checked>, Error> {
        if !self.needs.covers(channel) {
            return Ok(None);
        }
        let Some(token) = from_request(headers, query) else {
            return Err(Error::unauthorized(
                "token required: send Authorization: Bearer, a tandem_token cookie or ?token=",
            ));
        };
        match self
            .signer
            .check_by(&token, channel, right, client, now_unix())
        {
            Ok((t, by_previous)) => Ok(Some(Checked {
                expires: t.expires,
                by_previous,
            })),
            Err(e) => Err(Error::forbidden(e.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(&[7u8; 32]).unwrap()
    }

    fn tok(channel: &str, prefix: bool, rights: &str) -> Token {
        Token {
            channel: channel.into(),
            prefix,
            rights: Rights::parse(rights).unwrap(),
            expires: 2_000_000_000,
            client: None,
        }
    }

    #[test]
    fn hmac_matches_rfc4231_case2() {
        // RFC 4231 test case 2 with a key under MIN_SECRET_BYTES: build the
        // pads by hand through a long enough key's path instead.
        let mut s = Key {
            ipad: [0x36; 64],
            opad: [0x5c; 64],
        };
        for (i, k) in b"Jefe".iter().enumerate() {
            s.ipad[i] ^= k;
            s.opad[i] ^= k;
        }
        let mac = s.mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_rotated_signer_accepts_one_previous_secret() {
        let (a, b, c) = (
            Signer::new(&[1u8; 32]).unwrap(),
            Signer::new(&[2u8; 32]).unwrap(),
            Signer::new(&[3u8; 32]).unwrap(),
        );
        let t = tok("chat", false, "sub");
        let (by_a, by_b) = (a.mint(&t), b.mint(&t));
        let ab = a.rotated(b.clone());
        assert!(ab.accepts_previous());
        assert_eq!(ab.mint(&t), by_b, "the new secret mints");
        assert!(ab.verify_signature(&by_a).is_ok() && ab.verify_signature(&by_b).is_ok());
        // The same secret again: the previous one is dropped.
        let bb = ab.rotated(b.clone());
        assert!(!bb.accepts_previous());
        assert_eq!(bb.verify_signature(&by_a), Err(TokenError::BadSignature));
        // One generation only.
        let bc = ab.rotated(c);
        assert!(bc.verify_signature(&by_b).is_ok());
        assert_eq!(bc.verify_signature(&by_a), Err(TokenError::BadSignature));
    }

    #[test]
    fn round_trip_and_refusals() {
        let s = signer();
        let t = s.mint(&tok("chat", true, "sub"));
        assert!(t.starts_with("v1.") && !t.contains(['+', '/', '=']));
        let now = 1_000_000_000;
        assert!(
            s.check(&t, "chat.room", Right::Subscribe, None, now)
                .unwrap()
                .prefix
        );
        assert_eq!(
            s.check(&t, "news", Right::Subscribe, None, now),
            Err(TokenError::WrongChannel)
        );
        assert_eq!(
            s.check(&t, "chat.room", Right::Publish, None, now),
            Err(TokenError::WrongRight)
        );
        assert_eq!(
            s.check(&t, "chat", Right::Subscribe, None, 2_000_000_000),
            Err(TokenError::Expired)
        );
        let other = Signer::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.check(&t, "chat", Right::Subscribe, None, now),
            Err(TokenError::BadSignature)
        );
        let mut bad = t.clone();
        bad.insert(5, 'x');
        assert!(s.verify(&bad, now).is_err());
        assert_eq!(s.verify("v1.x", now), Err(TokenError::Malformed));
        let mut c = tok("room", false, "sub,pub");
        c.client = Some("alice".into());
        let t = s.mint(&c);
        assert!(s
            .check(&t, "room", Right::Publish, Some("alice"), now)
            .is_ok());
        assert_eq!(
            s.check(&t, "room", Right::Publish, Some("bob"), now),
            Err(TokenError::WrongClient)
        );
        assert_eq!(
            s.check(&t, "room.x", Right::Publish, Some("alice"), now),
            Err(TokenError::WrongChannel)
        );
    }

    #[test]
    fn short_secret_refused() {
        assert!(Signer::new(b"short").is_err());
    }

    #[test]
    fn redacts_token() {
        assert_eq!(
            redact("/sse/c?token=abc.def&since=1"),
            "/sse/c?token=REDACTED&since=1"
        );
        assert_eq!(redact("/sse/c?a=1&token=x"), "/sse/c?a=1&token=REDACTED");
        assert_eq!(redact("/sse/c?mytoken=x"), "/sse/c?mytoken=x");
        assert_eq!(redact("/sse/c"), "/sse/c");
    }
}
