//! Checks for the `inject` target: the proxy's HTML injection
//! (`src/proxy/inject.rs`) on a page in any content coding, declared
//! charset and chunking, against a whole-page model of its insertion rule
//! written out again here (searching rather than stepping a state machine).
//!
//! Input layout: byte 0 picks the content coding (bits 0-1: identity, gzip,
//! deflate, br) and the `Content-Type` (bits 2-3: `text/html`, `text/html;
//! charset=utf-16le`, `text/html; charset=utf-16be`,
//! `application/xhtml+xml`); byte 1 seeds the chunk sizes; the rest is the
//! page, as the upstream sends it before encoding.
//!
//! * no panic, no error frame;
//! * decoded, the output is the page with the markup (widened for UTF-16)
//!   inserted exactly once at the model's place, or the page as it is where
//!   the model says nowhere;
//! * `Content-Length` is gone, `Content-Encoding` kept, the CSP has the nonce;
//! * the same page as `application/json` passes byte for byte, in the same
//!   chunks.

use bytes::Bytes;
use tandem::__private::{content_decode_for_test, content_encode_for_test, inject_for_test};

const CODINGS: [&str; 4] = ["identity", "gzip", "deflate", "br"];
const TYPES: [&str; 4] = [
    "text/html",
    "text/html; charset=utf-16le",
    "text/html; charset=utf-16be",
    "application/xhtml+xml",
];

#[derive(Clone, Copy, PartialEq)]
enum Width {
    One,
    Le,
    Be,
}

pub fn check(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, page)) = rest.split_first() else {
        return;
    };
    let coding = CODINGS[usize::from(pick & 3)];
    let content_type = TYPES[usize::from((pick >> 2) & 3)];
    let encoded = content_encode_for_test(coding, page);
    let chunks = chunk(&encoded, seed);
    let headers = [
        ("content-type", content_type),
        ("content-encoding", coding),
        ("content-length", "1"),
        ("content-security-policy", "script-src 'none'"),
    ];
    let got = inject_for_test(&headers, chunks.clone(), &["/_tandem/tandem.js"]);
    assert!(got.injecting, "an HTML page in {coding} is rewritten");
    let mut body = Vec::new();
    for frame in &got.frames {
        body.extend_from_slice(frame.as_ref().expect("no error frame"));
    }
    let out = content_decode_for_test(coding, &body).expect("the output decodes");

    let declared = match pick >> 2 & 3 {
        1 => Width::Le,
        2 => Width::Be,
        _ => Width::One,
    };
    let want = match model(page, declared, content_type.contains("xml")) {
        Some((at, width)) => {
            let markup: Vec<u8> = got
                .markup
                .bytes()
                .flat_map(|b| match width {
                    Width::One => vec![b],
                    Width::Le => vec![b, 0],
                    Width::Be => vec![0, b],
                })
                .collect();
            [&page[..at], &markup, &page[at..]].concat()
        }
        None => page.to_vec(),
    };
    assert_eq!(out, want, "the page, the markup at the rule's place");

    let header = |n: &str| {
        got.headers
            .iter()
            .filter(|(name, _)| name == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert!(header("content-length").is_empty());
    assert_eq!(header("content-encoding"), [coding]);
    assert_eq!(
        header("content-security-policy"),
        [format!("script-src 'nonce-{}'", got.nonce)]
    );

    let json = [
        ("content-type", "application/json"),
        ("content-encoding", coding),
    ];
    let passed = inject_for_test(&json, chunks.clone(), &["/_tandem/tandem.js"]);
    assert!(!passed.injecting);
    let frames: Vec<Bytes> = passed.frames.into_iter().map(|f| f.unwrap()).collect();
    assert_eq!(frames, chunks, "not HTML: the same chunks");
}

/// `data` cut into chunks of 1 to 64 bytes, from `seed` (0: one chunk).
fn chunk(data: &[u8], seed: u8) -> Vec<Bytes> {
    if seed == 0 {
        return vec![Bytes::copy_from_slice(data)];
    }
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 64 + 1) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(Bytes::copy_from_slice(a));
        rest = b;
    }
    out
}

/// Where the markup goes in `page` (a byte offset) and how it is written,
/// or `None` for nowhere: the rule of `src/proxy/inject.rs` on the whole page.
fn model(page: &[u8], declared: Width, xml: bool) -> Option<(usize, Width)> {
    if page.is_empty() {
        return None;
    }
    let (bom, width) = if page.starts_with(&[0xef, 0xbb, 0xbf]) {
        (3, Width::One)
    } else if page.starts_with(&[0xff, 0xfe]) {
        (2, Width::Le)
    } else if page.starts_with(&[0xfe, 0xff]) {
        (2, Width::Be)
    } else {
        (0, declared)
    };
    let body = &page[bom..];
    // One byte per character, anything not ASCII as 0x80.
    let text: Vec<u8> = match width {
        Width::One => body.to_vec(),
        Width::Le | Width::Be => body
            .chunks_exact(2)
            .map(|p| {
                let u = if width == Width::Le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                };
                if u < 0x80 {
                    u as u8
                } else {
                    0x80
                }
            })
            .collect(),
    };
    let unit = if width == Width::One { 1 } else { 2 };
    let (at, placed) = place(&text, xml)?;
    if !placed {
        return None;
    }
    Some((bom + at * unit, width))
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The character index of the insertion point in `t`, and whether the
/// scripts go there: in XHTML, not outside the root (an `<html>` start tag
/// before, or right after a `<head>` tag).
fn place(t: &[u8], xml: bool) -> Option<(usize, bool)> {
    let mut root = false;
    let mut i = 0;
    loop {
        while i < t.len() && is_space(t[i]) {
            i += 1;
        }
        if i == t.len() {
            return Some((i, root || !xml));
        }
        let rest = &t[i..];
        if rest.starts_with(b"<!--") {
            if rest.starts_with(b"<!-->") {
                i += 5;
            } else if rest.starts_with(b"<!--->") {
                i += 6;
            } else {
                let a = find(t, i + 4, b"-->").map(|e| e + 3);
                let b = find(t, i + 4, b"--!>").map(|e| e + 4);
                i = match (a, b) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(e), None) | (None, Some(e)) => e,
                    (None, None) => return None,
                };
            }
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            let mut depth = 0u32;
            let mut j = i + 2;
            loop {
                match t.get(j) {
                    None => return None,
                    Some(b'>') if depth == 0 => break,
                    Some(b'[') if xml => depth += 1,
                    Some(b']') if xml => depth = depth.saturating_sub(1),
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else if rest.len() >= 2 && rest[0] == b'<' && rest[1].is_ascii_alphabetic() {
            let mut j = i + 1;
            while j < t.len() && !is_space(t[j]) && t[j] != b'/' && t[j] != b'>' {
                j += 1;
            }
            let name = t[i + 1..j].to_ascii_lowercase();
            if (name != b"head" && name != b"html") || j == t.len() {
                return Some((i, root || !xml));
            }
            let end = tag_end(t, j)?;
            if name == b"head" {
                return Some((end + 1, true));
            }
            root = true;
            i = end + 1;
        } else {
            return Some((i, root || !xml));
        }
    }
}

/// The index of the `>` closing a start tag whose attributes begin at `j`.
fn tag_end(t: &[u8], mut j: usize) -> Option<usize> {
    loop {
        while j < t.len() && (is_space(t[j]) || t[j] == b'/') {
            j += 1;
        }
        match t.get(j)? {
            b'>' => return Some(j),
            _ => j += 1, // The name's first character, even `=`.
        }
        while j < t.len() && !matches!(t[j], b'/' | b'>' | b'=') && !is_space(t[j]) {
            j += 1;
        }
        while j < t.len() && is_space(t[j]) {
            j += 1;
        }
        if t.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < t.len() && is_space(t[j]) {
            j += 1;
        }
        match t.get(j)? {
            q @ (b'"' | b'\'') => {
                j = find(t, j + 1, &[*q])? + 1;
            }
            b'>' => return Some(j),
            _ => {
                while j < t.len() && t[j] != b'>' && !is_space(t[j]) {
                    j += 1;
                }
            }
        }
    }
}
