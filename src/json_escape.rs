//! The script-safe JSON string escaper, a leaf every other module may use.
//!
//! It lives apart so that `error.rs` (which renders `{"error":"..."}`) and
//! `transport/json.rs` (which encodes events) share it without `error.rs`
//! depending on the transports, which depend on `event.rs`, which depends on
//! `error.rs`.
//!
//! The escaping is script-safe as well as JSON: `<`, `>`, `&`, U+2028 and
//! U+2029 are written as `\uXXXX`, so the same bytes can sit inside a
//! `<script>` element (iframe) or a JavaScript call (JSONP) and no payload can
//! close the element or break out of the call.

/// Appends `s` as a script-safe JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\x1f' | '\x7f' => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_safe_escaping() {
        let mut s = String::new();
        push_str(&mut s, "</script><!--\u{2028}\"\\\n\u{1}");
        assert_eq!(s, r#""\u003c/script\u003e\u003c!--\u2028\"\\\n\u0001""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "</script><!--\u{2028}\"\\\n\u{1}");
    }
}
