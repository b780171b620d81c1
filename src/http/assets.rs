//! The files the binary serves itself: the browser client and the demo pages.
//!
//! They live in `src/client/` and are embedded at compile time, so the binary
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
            include_bytes!("../client/index.html"),
        ),
        "/tandem.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../client/tandem.js"),
        ),
        "/status.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../client/status.html"),
        ),
        "/live-image.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../client/live-image.html"),
        ),
        "/chat.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../client/chat.html"),
        ),
        "/cobrowse.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../client/cobrowse.js"),
        ),
        "/agent" => (
            "text/html; charset=utf-8",
            include_bytes!("../client/agent.html"),
        ),
        "/agent.js" => (
            "application/javascript; charset=utf-8",
            include_bytes!("../client/agent.js"),
        ),
        _ => return None,
    };
    Some(Asset {
        content_type,
        bytes,
    })
}
