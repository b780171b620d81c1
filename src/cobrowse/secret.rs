//! Unguessable ids and tokens, and how they are kept.
//!
//! Every id and token comes from the operating system's CSPRNG (`getrandom`):
//! a help session id, a participant token, an agent's sign-in cookie. A
//! seeded userspace generator would do as well only if seeded and reseeded
//! right; asking the OS for each one leaves nothing to get wrong, and these
//! are made a few times a minute, not a million times a second.
//!
//! The server keeps only the SHA-256 of each token, so a memory dump or a
//! debug print shows nothing that opens a session, and comparing digests
//! leaks nothing useful through timing (an attacker who learns a prefix of a
//! digest is no closer to a token that produces it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// `n` random bytes, base64url without padding (cookie, path and JSON safe).
pub(crate) fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the operating system's random source");
    URL_SAFE_NO_PAD.encode(b)
}

/// A random number below `bound` (for phone codes), without modulo bias.
pub(crate) fn random_below(bound: u32) -> u32 {
    let zone = u32::MAX - u32::MAX % bound;
    loop {
        let mut b = [0u8; 4];
        getrandom::getrandom(&mut b).expect("the operating system's random source");
        let v = u32::from_le_bytes(b);
        if v < zone {
            return v % bound;
        }
    }
}

/// The digest the server keeps instead of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Digest32([u8; 32]);

impl std::fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest32(..)")
    }
}

impl Digest32 {
    /// Lowercase hex (how Redis keeps it, `store.rs`).
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The digest of [`Digest32::hex`].
    pub(crate) fn from_hex(s: &str) -> Option<Digest32> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest32(out))
    }
}

/// SHA-256 of a token.
pub(crate) fn digest(token: &str) -> Digest32 {
    Digest32(Sha256::digest(token.as_bytes()).into())
}

/// Lowercase hex SHA-256 of some bytes (the audit chain).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_go_through_hex() {
        let d = digest("a token");
        assert_eq!(d.hex().len(), 64);
        assert!(Digest32::from_hex(&d.hex()) == Some(d));
        assert!(Digest32::from_hex("zz").is_none());
        assert!(Digest32::from_hex(&"g".repeat(64)).is_none());
    }

    #[test]
    fn tokens_differ_and_are_url_safe() {
        let a = random_token(24);
        let b = random_token(24);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!((0..100).all(|_| random_below(1_000_000) < 1_000_000));
    }
}
