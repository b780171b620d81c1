//! The demo portal built into the binary: a few pages, a sign-in, and a cart
//! kept in a server-side session (`/portal/...`).
//!
//! It stands for "the customer's web application" in the co-browsing demo
//! and tests, mounted with [`crate::cobrowse::Cobrowse::with_portal`]. Its
//! session is the cookie `tandem_portal` (`HttpOnly`), a key into a table
//! kept here. It finds the session of a request the way an embedder would
//! with the library hook: first the shared session
//! ([`crate::cobrowse::Cobrowse::shared_session`], which `routes.rs` asks
//! and hands in: a joined agent viewing a help session gets the customer's
//! portal session), then its own cookie. So the agent sees the customer's
//! cart and sign-in without the cookie value ever leaving the server. It
//! knows nothing else of co-browsing.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;

use super::secret::random_token;
use super::share::cookie;
use crate::http::Body;

/// The portal's session cookie.
pub(crate) const COOKIE: &str = "tandem_portal";
/// Most portal sessions kept (the oldest go first).
const MAX_SESSIONS: usize = 10_000;
/// Most items in a cart.
const MAX_CART: usize = 50;

/// The products on sale.
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("1", "Blue kettle", "Boils 1.7 litres in three minutes."),
    ("2", "Reading lamp", "Warm light, three brightness steps."),
    ("3", "Wool blanket", "Soft, warm, machine washable."),
];

#[derive(Default, Clone)]
struct PortalSession {
    user: Option<String>,
    cart: Vec<String>,
    seq: u64,
}

/// The demo portal.
#[derive(Default)]
pub(crate) struct Portal {
    sessions: Mutex<(HashMap<String, PortalSession>, u64)>,
}

impl Portal {
    pub(crate) fn new() -> Portal {
        Portal::default()
    }

    pub(crate) fn claims(&self, path: &str) -> bool {
        path == "/portal" || path.starts_with("/portal/")
    }

    /// The session id this request uses, and whether it is shared (an agent's view).
    fn session_of(headers: &HeaderMap, shared: Option<String>) -> (Option<String>, bool) {
        match shared {
            Some(s) => (Some(s), true),
            None => (cookie(headers, COOKIE), false),
        }
    }

    /// Answers a request whose path [`Portal::claims`], given the shared
    /// application session of the help session an agent is viewing, if any.
    pub(crate) fn answer(
        &self,
        path: &str,
        req: &Request<Bytes>,
        shared: Option<String>,
    ) -> Response<Body> {
        let headers = req.headers();
        let (sid, shared) = Portal::session_of(headers, shared);
        let current = sid
            .as_ref()
            .and_then(|s| self.sessions.lock().0.get(s).cloned())
            .unwrap_or_default();
        if req.method() == Method::POST {
            let form = parse_form(req.body());
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let (sid, new) = match sid.filter(|s| self.sessions.lock().0.contains_key(s)) {
                Some(s) => (s, false),
                None => (random_token(24), true),
            };
            let back = match path {
                "/portal/signin" => {
                    let name: String = get("name")
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(40)
                        .collect();
                    self.update(&sid, |s| s.user = (!name.trim().is_empty()).then_some(name));
                    "/portal/"
                }
                "/portal/signout" => {
                    self.update(&sid, |s| s.user = None);
                    "/portal/"
                }
                "/portal/cart/add" => {
                    if let Some(p) =
                        get("product").filter(|p| PRODUCTS.iter().any(|(id, ..)| id == p))
                    {
                        self.update(&sid, |s| {
                            if s.cart.len() < MAX_CART {
                                s.cart.push(p)
                            }
                        });
                    }
                    "/portal/cart"
                }
                "/portal/cart/clear" => {
                    self.update(&sid, |s| s.cart.clear());
                    "/portal/cart"
                }
                _ => {
                    return page(
                        StatusCode::NOT_FOUND,
                        "Not found",
                        "<p>No such page.</p>",
                        shared,
                        None,
                    )
                }
            };
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::SEE_OTHER;
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static(back));
            // An agent's view never gets the customer's cookie: it reaches
            // the shared session through its own sign-in instead.
            if new && !shared {
                let c = format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax");
                resp.headers_mut()
                    .insert(SET_COOKIE, HeaderValue::from_str(&c).expect("ascii"));
            }
            return resp;
        }
        let who = match &current.user {
            Some(u) => format!(
                "<p id=\"user\">Signed in as <b>{}</b>. <form method=\"post\" action=\"/portal/signout\" style=\"display:inline\"><button>Sign out</button></form></p>",
                esc(u)
            ),
            None => "<form method=\"post\" action=\"/portal/signin\" id=\"signin\"><label>Your name <input name=\"name\" autocomplete=\"name\"></label> <button>Sign in</button></form>".into(),
        };
        // The signed-in name goes to the co-browsing widget (`data-name`): the
        // agent then knows the customer by it.
        let name = current.user.as_deref();
        let page =
            |status, title: &str, body: &str, shared| page(status, title, body, shared, name);
        match path {
            "/portal" | "/portal/" => {
                let mut list = String::from("<ul id=\"products\">");
                for (id, name, _) in PRODUCTS {
                    list.push_str(&format!(
                        "<li><a href=\"/portal/products/{id}\" id=\"product-{id}\">{name}</a></li>"
                    ));
                }
                list.push_str("</ul><p><a href=\"/portal/cart\" id=\"cart-link\">Your cart</a> · <a href=\"/portal/help\" id=\"help-link\">Help and delivery</a></p>");
                page(StatusCode::OK, "Shop", &format!("{who}{list}"), shared)
            }
            "/portal/cart" => {
                let mut body = String::from("<ul id=\"cart\">");
                for p in &current.cart {
                    let name = PRODUCTS.iter().find(|(id, ..)| id == p).map_or("?", |x| x.1);
                    body.push_str(&format!("<li class=\"cart-item\">{}</li>", esc(name)));
                }
                body.push_str("</ul>");
                if current.cart.is_empty() {
                    body.push_str("<p id=\"empty\">Your cart is empty.</p>");
                }
                body.push_str("<form method=\"post\" action=\"/portal/cart/clear\"><button>Empty the cart</button></form><p><a href=\"/portal/\">Back to the shop</a></p>");
                page(StatusCode::OK, "Your cart", &format!("{who}{body}"), shared)
            }
            "/portal/help" => page(
                StatusCode::OK,
                "Help and delivery",
                "<p>Orders leave within two working days.</p><p><a href=\"/portal/\" id=\"home-link\">Back to the shop</a> · <a href=\"/portal/cart\">Your cart</a></p>",
                shared,
            ),
            p => match p.strip_prefix("/portal/products/").and_then(|id| PRODUCTS.iter().find(|(i, ..)| *i == id)) {
                Some((id, name, text)) => page(
                    StatusCode::OK,
                    name,
                    &format!(
                        "{who}<p>{text}</p><form method=\"post\" action=\"/portal/cart/add\"><input type=\"hidden\" name=\"product\" value=\"{id}\"><button id=\"add\">Add to cart</button></form><p><a href=\"/portal/\">Back to the shop</a> · <a href=\"/portal/cart\">Your cart</a></p>"
                    ),
                    shared,
                ),
                None => page(StatusCode::NOT_FOUND, "Not found", "<p>No such page. <a href=\"/portal/\">Back to the shop</a></p>", shared),
            },
        }
    }

    /// A session's user and cart as JSON (with `--redis`, kept in Redis so
    /// that every node's portal has it: `routes.rs`).
    pub(crate) fn export(&self, sid: &str) -> Option<String> {
        let guard = self.sessions.lock();
        let s = guard.0.get(sid)?;
        Some(serde_json::json!({"user": s.user, "cart": s.cart}).to_string())
    }

    /// Takes a session [`Portal::export`] made (on any node).
    pub(crate) fn import(&self, sid: &str, json: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            return;
        };
        let user = v["user"].as_str().map(str::to_string);
        let cart: Vec<String> = v["cart"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .take(MAX_CART)
                    .collect()
            })
            .unwrap_or_default();
        self.update(sid, |s| {
            s.user = user;
            s.cart = cart;
        });
    }

    fn update(&self, sid: &str, f: impl FnOnce(&mut PortalSession)) {
        let mut guard = self.sessions.lock();
        let (map, seq) = &mut *guard;
        *seq += 1;
        if !map.contains_key(sid) && map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let s = map.entry(sid.to_string()).or_default();
        s.seq = *seq;
        f(s);
    }
}

fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    shared: bool,
    name: Option<&str>,
) -> Response<Body> {
    let name = name.map_or(String::new(), |n| format!(" data-name=\"{}\"", esc(n)));
    let banner = if shared {
        "<p id=\"shared-view\" style=\"background:#fff3c4;padding:.3em\">Agent view: the customer's session</p>"
    } else {
        ""
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Demo shop</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head><body>{banner}<h1>{t}</h1>{body}\
         <script src=\"/tandem.js\"></script><script src=\"/cobrowse.js\"{name}></script></body></html>",
        t = esc(title)
    );
    let mut resp = Response::new(Body::from(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    crate::http::no_store(&mut resp);
    resp
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let s = std::str::from_utf8(body).unwrap_or("");
    crate::http::route::parse_pairs(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}
