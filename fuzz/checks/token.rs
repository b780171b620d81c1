//! Checks for the `token` target: the channel-token parser and verifier
//! (`src/token.rs`), which reads what any client sends as a Bearer
//! credential, a cookie or `?token=`.
//!
//! Input: any bytes, read as text (lossily). Checked:
//!
//! * no panic, whatever the input, as a whole token or as a payload;
//! * an input that verifies (only a token this secret minted can) gives
//!   claims that mint and verify again to the same claims;
//! * a payload that parses gives claims that mint to a token verifying to
//!   the same claims, and that token with any one byte changed (at a few
//!   positions the input picks) is refused.

use tandem::token::{parse_payload, Signer};

const SECRET: &[u8] = b"fuzz secret: thirty-two bytes or more";

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let signer = Signer::new(SECRET).expect("a long enough secret");
    if let Ok(t) = signer.verify(&text, 0) {
        assert_eq!(signer.verify(&signer.mint(&t), 0).as_ref(), Ok(&t));
    }
    let _ = signer.verify_signature(&text);
    let Ok(claims) = parse_payload(&text) else {
        return;
    };
    let minted = signer.mint(&claims);
    assert_eq!(signer.verify_signature(&minted).as_ref(), Ok(&claims));
    let bytes = minted.as_bytes();
    for &pick in data.iter().take(8) {
        let i = pick as usize * 7 % bytes.len();
        let mut changed = bytes.to_vec();
        changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).expect("ascii");
        assert!(
            signer.verify_signature(&changed).is_err(),
            "{minted} changed at {i} still verifies: {changed}"
        );
    }
}
