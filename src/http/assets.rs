//! The files the binary serves itself: the browser client and the demo pages.
//!
//! They live in `src/web/` and are embedded at compile time, so the binary
//! needs nothing beside it. Add a file there and a line here to serve it.

/// A static file: its content type and bytes.
pub(crate) struct Asset {
    pub(crate) content_type: &'static str,
    pub(crate) bytes: &'static [u8],
}

/// The asset at `path`, if there is one.
pub(crate) fn find(path: &str) -> Option<Asset> {
    let (content_type, bytes): (&str, &[u8]) = match path {
        "" | "/" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/index.html"),
        ),
        "/tandem.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../web/tandem.js"),
        ),
        "/status.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/status.html"),
        ),
        "/live-image.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/live-image.html"),
        ),
        "/chat.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/chat.html"),
        ),
        "/cobrowse.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../web/cobrowse.js"),
        ),
        "/agent" => (
            "text/html; charset=utf-8",
            include_bytes!("../web/agent.html"),
        ),
        "/agent.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../web/agent.js"),
        ),
        _ => return None,
    };
    Some(Asset {
        content_type,
        bytes,
    })
}
