//! tandem's channels inside an existing hyper app: `/push/...` is tandem
//! (every transport, publish, resume), the rest is the app's own.
//!
//!     cargo run --example embed
//!     curl -N localhost:3000/push/ch/news/sse     # then open localhost:3000/
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tandem::{http::Body, Config, Hub, NewEvent, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::new(Config::default())?;
    let push = Service::new(hub.clone()).with_prefix("/push");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            // Ctrl-C: tandem's streams end cleanly, its long-polls answer.
            _ = tokio::signal::ctrl_c() => break,
        };
        let (push, hub) = (push.clone(), hub.clone());
        let app = service_fn(move |req: Request<Incoming>| {
            let (push, hub) = (push.clone(), hub.clone());
            async move {
                if req.uri().path().starts_with("/push/") {
                    return Ok::<_, std::convert::Infallible>(push.handle(req).await);
                }
                // The app's own page; it tells the channel, no HTTP hop.
                let visit = NewEvent::message("someone opened /");
                hub.publish("news", visit).await.ok();
                Ok(Response::new(Body::from("hello from the app\n")))
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), app));
    }
    push.shutdown().trigger();
    Ok(())
}
