//! Encode-then-parse round trips of every wire format (`tandem::transport`
//! encoders against the `tandem::__private::wire` parsers).
//!
//! Shared by the fuzz target `wire_roundtrip` and by `tests/it/fuzz_regressions.rs`,
//! so it uses only tandem's public API, std, bytes and serde_json.
//!
//! Input layout (every input makes a valid event, so no run is wasted):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 1 | flags: bits 0-2 content type ([`CONTENT_TYPES`], 7 = made from the input), bit 3 `from` is set, bit 4 feed byte by byte, bits 5-7 the epoch ([`EPOCHS`]) |
//! | 8 | id, little-endian |
//! | 1 + n | type: length `1 + b % 64`, then one byte per character, mapped onto the name alphabet |
//! | (1 + n) | content type made from the input: length `1 + b % 128`, printable ASCII, trimmed (none if that leaves nothing) |
//! | (1 + n) | `from`: like the type |
//! | 4 | two split points (u16 each) for feeding the stream in three pieces |
//! | rest | data, any bytes |
//!
//! Each format must give back exactly what it carries: multipart the id, epoch,
//! type, data, content type (or its `text/plain; charset=utf-8` default) and
//! `from`; SSE the id, epoch, type and data (text data with its CR / CRLF line ends turned
//! into LF, as the SSE format defines); JSON all of it. A second, fixed event
//! follows the fuzzed one in the streams, so an event that runs into the next
//! one, or swallows it, is caught.

use bytes::Bytes;
use tandem::__private::wire::{parse_iframe, parse_json_event, parse_jsonp, parse_poll, WireEvent};
use tandem::__private::wire::{MultipartParser, SseParser};
use tandem::__private::BOUNDARY;
use tandem::{Epoch, NewEvent};

/// Content types the flags can pick; index 0 is none and 7 is made from the input.
pub const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("text/plain; charset=utf-8"),
    Some("application/octet-stream"),
    Some("image/png"),
    Some("application/json"),
    Some("application/vnd.api+json"),
    Some("TEXT/HTML; Charset=UTF-8"),
];

/// Epochs the flags can pick: the shortest, the longest, and in between.
pub const EPOCHS: [&str; 8] = [
    "k3j9x2a0qz",
    "0",
    "z",
    "0123456789abcdef",
    "zzzzzzzzzzzzzzzz",
    "9",
    "a1",
    "tandem",
];

/// The content type a multipart part announces when the event has none.
const DEFAULT_PART_TYPE: &str = "text/plain; charset=utf-8";

/// Streams feeding a byte at a time are at most this long (each byte costs the
/// parsers a scan of what they hold).
const BYTEWISE_MAX: usize = 256;

const NAME_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~:@-";

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    /// A string of `1 + b % max` characters from `alphabet` (short inputs repeat `alphabet[0]`).
    fn string(&mut self, max: usize, alphabet: impl Fn(u8) -> char) -> String {
        let n = 1 + self.byte() as usize % max;
        (0..n).map(|_| alphabet(self.byte())).collect()
    }
}

fn name_char(b: u8) -> char {
    NAME_CHARS[b as usize % NAME_CHARS.len()] as char
}

fn printable(b: u8) -> char {
    (0x20 + b % 0x5f) as char
}

/// Builds the event an input describes; also returns the feeding plan.
/// Besides the event: the feeding plan, and the content type as made from the
/// input before its end spaces were trimmed (which the router must refuse).
fn decode(data: &[u8]) -> (u64, NewEvent, Feed, Option<String>, Epoch) {
    let mut input = Input(data);
    let flags = input.byte();
    let mut id = [0u8; 8];
    let raw = input.take(8);
    id[..raw.len()].copy_from_slice(raw);
    let kind = input.string(64, name_char);
    let mut untrimmed = None;
    let content_type = match (flags & 7) as usize {
        7 => {
            let ct = input.string(128, printable);
            let trimmed = Some(ct.trim().to_string()).filter(|t| !t.is_empty());
            untrimmed = Some(ct);
            trimmed
        }
        i => CONTENT_TYPES[i].map(str::to_string),
    };
    let from = (flags & 8 != 0).then(|| input.string(64, name_char));
    let feed = Feed {
        bytewise: flags & 16 != 0,
        splits: [input.byte(), input.byte(), input.byte(), input.byte()],
    };
    let event = NewEvent {
        kind,
        data: Bytes::copy_from_slice(input.0),
        content_type,
        from,
    };
    let epoch = Epoch::new(EPOCHS[(flags >> 5) as usize]).expect("a valid epoch");
    (u64::from_le_bytes(id), event, feed, untrimmed, epoch)
}

/// How a stream is handed to an incremental parser.
struct Feed {
    bytewise: bool,
    splits: [u8; 4],
}

impl Feed {
    fn pieces<'a>(&self, stream: &'a [u8]) -> Vec<&'a [u8]> {
        if self.bytewise && stream.len() <= BYTEWISE_MAX {
            return stream.chunks(1).collect();
        }
        let n = stream.len() + 1;
        let s = self.splits;
        let mut a = u16::from_le_bytes([s[0], s[1]]) as usize % n;
        let mut b = u16::from_le_bytes([s[2], s[3]]) as usize % n;
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        vec![&stream[..a], &stream[a..b], &stream[b..]]
    }
}

/// Checks every format's round trip for the event the input describes.
pub fn check(data: &[u8]) {
    let (id, event, feed, untrimmed, epoch) = decode(data);
    let e = Some(epoch.to_string());
    // Every input must describe an event the router would accept, or the
    // round trip proves nothing about real traffic.
    let hub = tandem::Hub::new(tandem::Config::default()).expect("default config");
    if event.data.len() > hub.config().max_event_bytes {
        return;
    }
    tandem::__private::now(hub.publish("fuzz", event.clone()))
        .expect("the fuzz input builds a valid event");
    // A content type with a space at either end cannot cross a multipart
    // header intact (values are trimmed), so the router must refuse it.
    if let Some(ct) = untrimmed.filter(|ct| ct.trim() != ct) {
        let spaced = NewEvent {
            content_type: Some(ct),
            ..event.clone()
        };
        let e =
            tandem::__private::now(hub.publish("fuzz", spaced)).expect_err("spaced content type");
        assert!(e.is_bad_request(), "{e:?}");
    }

    let tail_id = id.wrapping_add(1);
    let tail = NewEvent::message("tail").with_kind("tail");
    let [part, sse, json] = tandem::__private::encode_for_test(epoch, id, event.clone());
    let [tail_part, tail_sse, _] = tandem::__private::encode_for_test(epoch, tail_id, tail.clone());
    let tail_expected = WireEvent {
        id: Some(tail_id),
        epoch: e.clone(),
        kind: "tail".into(),
        data: b"tail".to_vec(),
        content_type: None,
        from: None,
    };

    // JSON first: whether it chose `data` or `data_b64` says whether the event
    // travels as text, which SSE must agree with.
    let value: serde_json::Value = serde_json::from_slice(&json).expect("json frame is json");
    let text = value.get("data").is_some();
    assert_ne!(text, value.get("data_b64").is_some(), "data xor data_b64");
    if text {
        assert!(
            std::str::from_utf8(&event.data).is_ok(),
            "non-UTF-8 data sent as text"
        );
    }
    check_json(epoch, id, &event, &json);

    // Multipart: the stream's first delimiter, then the two parts.
    let stream = [format!("--{BOUNDARY}\r\n").as_bytes(), &part, &tail_part].concat();
    assert!(
        part.ends_with(format!("\r\n--{BOUNDARY}\r\n").as_bytes()),
        "a part ends with the next delimiter"
    );
    let mut parser = MultipartParser::new(BOUNDARY);
    let mut got = Vec::new();
    for piece in feed.pieces(&stream) {
        got.extend(parser.feed(piece).expect("multipart parses"));
    }
    let expected = WireEvent {
        id: Some(id),
        epoch: e.clone(),
        kind: event.kind.clone(),
        data: event.data.to_vec(),
        content_type: Some(
            event
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_PART_TYPE.into()),
        ),
        from: event.from.clone(),
    };
    let tail_part_expected = WireEvent {
        content_type: Some(DEFAULT_PART_TYPE.into()),
        ..tail_expected.clone()
    };
    assert_eq!(got, [expected, tail_part_expected], "multipart round trip");
    assert!(!parser.is_done());
    assert_eq!(parser.heartbeats, 0);

    // SSE: the two event blocks.
    let base64 = sse.windows(9).any(|w| w == b"\n:base64\n");
    assert_eq!(base64, !text, "SSE and JSON agree on text");
    let stream = [&sse[..], &tail_sse].concat();
    let mut parser = SseParser::new();
    let mut got = Vec::new();
    for piece in feed.pieces(&stream) {
        got.extend(parser.feed(piece).expect("sse parses"));
    }
    let data = if text {
        normalize_newlines(&event.data)
    } else {
        event.data.to_vec()
    };
    let expected = WireEvent {
        id: Some(id),
        epoch: e.clone(),
        kind: event.kind.clone(),
        data,
        content_type: None,
        from: None,
    };
    assert_eq!(
        got.iter().map(WireEvent::cursor).collect::<Vec<_>>(),
        [
            Some(format!("{epoch}:{id}")),
            Some(format!("{epoch}:{tail_id}"))
        ],
        "sse cursors"
    );
    assert_eq!(got, [expected, tail_expected], "sse round trip");
}

/// The JSON frame, alone and inside a long-poll answer, a JSONP call and an
/// iframe script.
fn check_json(epoch: Epoch, id: u64, event: &NewEvent, json: &[u8]) {
    let expected = WireEvent {
        id: Some(id),
        epoch: Some(epoch.to_string()),
        kind: event.kind.clone(),
        data: event.data.to_vec(),
        content_type: event.content_type.clone(),
        from: event.from.clone(),
    };
    assert_eq!(
        parse_json_event(json).expect("json parses"),
        expected,
        "json round trip"
    );

    // Script-safe: nothing in the frame can end a <script> element, open a
    // comment or break a JavaScript string, so it can sit in JSONP and iframes.
    let text = std::str::from_utf8(json).expect("json frame is utf-8");
    // No line break either: the SSE JSON envelope sends it as one `data:` line.
    for bad in ['<', '>', '&', '\u{2028}', '\u{2029}', '\r', '\n'] {
        assert!(!text.contains(bad), "json frame contains {bad:?}: {text}");
    }

    let poll = format!("{{\"events\":[{text}],\"next\":\"{epoch}:{id}\"}}");
    let (events, next) = parse_poll(poll.as_bytes()).expect("poll answer parses");
    assert_eq!(
        (events, next),
        (vec![expected.clone()], format!("{epoch}:{id}"))
    );

    let jsonp = format!("/**/app.got({poll});");
    let (cb, events, _) = parse_jsonp(jsonp.as_bytes()).expect("jsonp parses");
    assert_eq!((cb.as_str(), events), ("app.got", vec![expected.clone()]));

    let page = format!("<script>parent.f({text});</script>\n<!-- hb -->\n");
    let events = parse_iframe(page.as_bytes(), "f").expect("iframe page parses");
    assert_eq!(events, [expected]);
}

/// SSE has no way to carry a CR in text: CR, LF and CRLF all end a line, and
/// lines are joined with LF.
fn normalize_newlines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.push(b'\n');
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}
