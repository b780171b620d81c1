//! Parsers for what tandem writes: the client side of each wire format.
//!
//! Incremental parsers for SSE and multipart streams (feed bytes as they
//! arrive, get whole events out), and functions for long-poll JSON, JSONP and
//! iframe scripts. A Rust program can subscribe with them; the integration
//! tests use them to check bytes on the wire; the fuzz targets check that each
//! format gives back exactly what was encoded.
//!
//! Every event carries its channel's epoch beside its id; a client resumes
//! from [`WireEvent::cursor`] (`EPOCH:ID`), or from a poll answer's `next`.
//! A gap's payload is read with [`WireEvent::gap`]; after a reset gap the
//! client must forget the ids it has seen: the channel started over.

use base64::Engine;
use serde_json::Value;

/// An event as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireEvent {
    /// The id (`None` for a gap).
    pub id: Option<u64>,
    /// The epoch of the channel's incarnation the id belongs to (`None` for a
    /// gap, whose epoch is in its payload: see [`WireEvent::gap`]).
    pub epoch: Option<String>,
    /// The type (`gap` for a gap notice).
    pub kind: String,
    /// The payload, base64 already undone.
    pub data: Vec<u8>,
    /// The payload's media type, where the format carries it.
    pub content_type: Option<String>,
    /// The publisher's client id, where the format carries it.
    pub from: Option<String>,
}

impl WireEvent {
    /// Where this event is, `EPOCH:ID` (a bare `ID` if the format carried no
    /// epoch): pass it as `since` to resume after it. For a gap, the cursor
    /// just after it. `None` for anything else without an id.
    pub fn cursor(&self) -> Option<String> {
        match (self.id, &self.epoch) {
            (Some(id), Some(e)) => Some(format!("{e}:{id}")),
            (Some(id), None) => Some(id.to_string()),
            (None, _) => self.gap().ok().flatten().map(|g| g.cursor()),
        }
    }

    /// The payload of a gap notice (`type` `gap` and no id); `Ok(None)` for
    /// anything else, an error if a gap's payload is malformed.
    pub fn gap(&self) -> Result<Option<WireGap>, String> {
        if self.kind != "gap" || self.id.is_some() {
            return Ok(None);
        }
        let v: Value =
            serde_json::from_slice(&self.data).map_err(|e| format!("bad gap payload: {e}"))?;
        let n = |k: &str| v[k].as_u64().ok_or_else(|| format!("gap has no {k}"));
        Ok(Some(WireGap {
            from: n("from")?,
            to: n("to")?,
            epoch: v["epoch"].as_str().map(str::to_string),
            reset: v["reset"].as_bool().unwrap_or(false),
        }))
    }
}

/// A gap notice's payload: `{"from":A,"to":B,"epoch":"E"}`, plus
/// `"reset":true` when the channel started over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireGap {
    /// First id lost.
    pub from: u64,
    /// Last id lost (`to < from`: none, only a reset).
    pub to: u64,
    /// The incarnation the ids belong to.
    pub epoch: Option<String>,
    /// The cursor was of another incarnation (or ahead of this one): forget
    /// the ids seen, and continue from `epoch:to`.
    pub reset: bool,
}

impl WireGap {
    /// The cursor just after the gap: `EPOCH:TO`.
    pub fn cursor(&self) -> String {
        match &self.epoch {
            Some(e) => format!("{e}:{}", self.to),
            None => self.to.to_string(),
        }
    }
}

/// Splits an SSE `id:` value, `EPOCH:ID` or `ID`.
fn split_cursor(s: &str) -> Result<(Option<String>, u64), String> {
    let c: crate::Cursor = s
        .parse()
        .map_err(|e: crate::Error| e.message().to_string())?;
    Ok((c.epoch.map(|e| e.as_str().to_string()), c.id))
}

fn b64(s: &[u8]) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("bad base64: {e}"))
}

/// Incremental `text/event-stream` parser.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    base64: bool,
    /// The last `retry:` value seen, in milliseconds.
    pub retry: Option<u64>,
    /// Heartbeat comments seen.
    pub heartbeats: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            let Some(end) = rest.iter().position(|&c| c == b'\n' || c == b'\r') else {
                break;
            };
            // A lone CR at the end might be the first half of CRLF: wait.
            if rest[end] == b'\r' && end + 1 == rest.len() {
                break;
            }
            let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line = String::from_utf8(rest[..end].to_vec())
                .map_err(|_| "sse line is not utf-8".to_string())?;
            start += end + skip;
            self.line(&line, &mut out)?;
        }
        self.buf.drain(..start);
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<WireEvent>) -> Result<(), String> {
        if line.is_empty() {
            let kind = self.event.take().unwrap_or_else(|| "message".into());
            let id = self.id.take();
            let base64 = std::mem::take(&mut self.base64);
            if let Some(data) = self.data.take() {
                let data = if base64 {
                    b64(data.as_bytes())?
                } else {
                    data.into_bytes()
                };
                let (epoch, id) = match id {
                    Some(i) => {
                        let (e, n) = split_cursor(&i).map_err(|e| format!("bad sse id: {e}"))?;
                        (e, Some(n))
                    }
                    None => (None, None),
                };
                out.push(WireEvent {
                    id,
                    epoch,
                    kind,
                    data,
                    ..WireEvent::default()
                });
            }
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            match comment {
                "base64" => self.base64 = true,
                "hb" => self.heartbeats += 1,
                _ => {}
            }
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            "retry" => self.retry = value.parse().ok(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug)]
enum MpState {
    Preamble,
    Headers,
    Body(Vec<(String, String)>),
    Done,
}

/// Incremental multipart (`x-mixed-replace` / `mixed`) parser.
#[derive(Debug)]
pub struct MultipartParser {
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: MpState,
    /// Heartbeat header lines seen.
    pub heartbeats: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl MultipartParser {
    /// A parser for a stream with this boundary.
    pub fn new(boundary: &str) -> MultipartParser {
        MultipartParser {
            delimiter: format!("--{boundary}").into_bytes(),
            buf: Vec::new(),
            state: MpState::Preamble,
            heartbeats: 0,
        }
    }

    /// Whether the close delimiter has been seen.
    pub fn is_done(&self) -> bool {
        matches!(self.state, MpState::Done)
    }

    /// Feeds bytes; returns the parts they complete, as events.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match std::mem::replace(&mut self.state, MpState::Done) {
                MpState::Done => return Ok(out),
                MpState::Preamble => {
                    let pos = if self.buf.starts_with(&self.delimiter) {
                        Some(0)
                    } else {
                        find(&self.buf, &[b"\r\n", &self.delimiter[..]].concat()).map(|p| p + 2)
                    };
                    let Some(pos) = pos else {
                        self.state = MpState::Preamble;
                        return Ok(out);
                    };
                    let after = pos + self.delimiter.len();
                    match self.after_delimiter(after) {
                        Some(next) => self.buf.drain(..next),
                        None => {
                            self.state = MpState::Preamble;
                            return Ok(out);
                        }
                    };
                }
                MpState::Headers => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n")
                        .or_else(|| self.buf.starts_with(b"\r\n").then_some(0))
                    else {
                        self.state = MpState::Headers;
                        return Ok(out);
                    };
                    let block = String::from_utf8(self.buf[..end].to_vec())
                        .map_err(|_| "multipart headers are not utf-8".to_string())?;
                    let mut headers = Vec::new();
                    for line in block.split("\r\n").filter(|l| !l.is_empty()) {
                        let (k, v) = line
                            .split_once(':')
                            .ok_or_else(|| format!("bad part header {line:?}"))?;
                        if k.eq_ignore_ascii_case("x-heartbeat") {
                            self.heartbeats += 1;
                            continue;
                        }
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    let skip = if end == 0 { 2 } else { end + 4 };
                    self.buf.drain(..skip);
                    self.state = MpState::Body(headers);
                }
                MpState::Body(headers) => {
                    let get =
                        |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let delim = [b"\r\n", &self.delimiter[..]].concat();
                    let len = match get("content-length") {
                        Some(l) => {
                            let n: usize =
                                l.parse().map_err(|_| format!("bad content-length {l:?}"))?;
                            if self.buf.len() < n + delim.len() {
                                self.state = MpState::Body(headers);
                                return Ok(out);
                            }
                            if !self.buf[n..].starts_with(&delim) {
                                return Err("part does not end with the delimiter".into());
                            }
                            n
                        }
                        None => match find(&self.buf, &delim) {
                            Some(n) => n,
                            None => {
                                self.state = MpState::Body(headers);
                                return Ok(out);
                            }
                        },
                    };
                    let Some(next) = self.after_delimiter(len + delim.len()) else {
                        self.state = MpState::Body(headers);
                        return Ok(out);
                    };
                    let mut data = self.buf[..len].to_vec();
                    if get("content-transfer-encoding")
                        .is_some_and(|v| v.eq_ignore_ascii_case("base64"))
                    {
                        data = b64(&data)?;
                    }
                    let id = match get("event-id") {
                        Some(i) => Some(i.parse().map_err(|_| format!("bad event-id {i:?}"))?),
                        None => None,
                    };
                    out.push(WireEvent {
                        id,
                        epoch: get("event-epoch"),
                        kind: get("event-type").unwrap_or_else(|| "message".into()),
                        data,
                        content_type: get("content-type"),
                        from: get("event-from"),
                    });
                    self.buf.drain(..next);
                }
            }
        }
    }

    /// After a delimiter ending at `at`: sets the next state and returns where
    /// it starts, or `None` if more bytes are needed.
    fn after_delimiter(&mut self, at: usize) -> Option<usize> {
        let rest = &self.buf[at..];
        if rest.starts_with(b"--") {
            self.state = MpState::Done;
            return Some(at + 2);
        }
        let ws = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        if rest.len() < ws + 2 {
            return None;
        }
        if &rest[ws..ws + 2] == b"\r\n" {
            self.state = MpState::Headers;
            Some(at + ws + 2)
        } else {
            // Not a delimiter line after all; treat as more preamble.
            self.state = MpState::Preamble;
            Some(at)
        }
    }
}

fn json_event(v: &Value) -> Result<WireEvent, String> {
    let obj = v.as_object().ok_or("event is not an object")?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let data = match (s("data"), s("data_b64")) {
        (Some(d), _) => d.into_bytes(),
        (None, Some(b)) => b64(b.as_bytes())?,
        (None, None) => return Err("event has no data".into()),
    };
    Ok(WireEvent {
        id: obj.get("id").and_then(Value::as_u64),
        epoch: s("epoch"),
        kind: s("type").ok_or("event has no type")?,
        data,
        content_type: s("content_type"),
        from: s("from"),
    })
}

/// Parses one JSON event object (as in long-poll answers and iframe scripts).
pub fn parse_json_event(text: &[u8]) -> Result<WireEvent, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    json_event(&v)
}

/// Parses a long-poll answer: its events and `next`, the cursor to poll
/// from next (`EPOCH:ID`; a bare number is taken too).
pub fn parse_poll(body: &[u8]) -> Result<(Vec<WireEvent>, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let events = v["events"]
        .as_array()
        .ok_or("no events array")?
        .iter()
        .map(json_event)
        .collect::<Result<_, _>>()?;
    let next = match &v["next"] {
        Value::String(s) => {
            split_cursor(s).map_err(|e| format!("bad next: {e}"))?;
            s.clone()
        }
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return Err("no next".into()),
    };
    Ok((events, next))
}

/// Parses a JSONP answer `/**/callback({...});`: the callback and the answer.
pub fn parse_jsonp(body: &[u8]) -> Result<(String, Vec<WireEvent>, String), String> {
    let text = std::str::from_utf8(body).map_err(|_| "jsonp is not utf-8")?;
    let text = text
        .strip_prefix("/**/")
        .ok_or("jsonp lacks the /**/ prefix")?;
    let open = text.find('(').ok_or("jsonp has no call")?;
    let inner = text[open + 1..]
        .strip_suffix(");")
        .ok_or("jsonp does not end with );")?;
    let (events, next) = parse_poll(inner.as_bytes())?;
    Ok((text[..open].to_string(), events, next))
}

/// Parses the `<script>parent.f(...)</script>` calls of a forever-iframe page.
pub fn parse_iframe(page: &[u8], callback: &str) -> Result<Vec<WireEvent>, String> {
    let text = std::str::from_utf8(page).map_err(|_| "iframe page is not utf-8")?;
    let open = format!("<script>parent.{callback}(");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let end = rest.find(");</script>").ok_or("unterminated script")?;
        out.push(parse_json_event(&rest.as_bytes()[..end])?);
        rest = &rest[end..];
    }
    Ok(out)
}
