//! Reading a whole request body, within a limit; and a body passed on
//! (to the proxy's upstream) that must keep arriving.
//!
//! A publish body is usually one chunk: the lean path reads it whole
//! (`server/sniff.rs`), and a small body through hyper arrives in one read.
//! That chunk is kept as it is; only a body in several chunks is joined,
//! once. (`http_body_util`'s `collect` queues the chunks in a list it
//! allocates even for one, a measurable part of a publish.)

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The connection failed or the body was malformed.
    Failed,
    /// The body did not all arrive within the time allowed: a chunked
    /// body that stops mid-way would otherwise hold the request for ever.
    TooSlow,
}

/// The whole body, or `TooLarge` as soon as it exceeds `max` bytes, or
/// `TooSlow` if it has not all arrived `timeout` after the first wait for
/// it. A body already there (the lean path's, a small one through hyper)
/// never waits, and no timer is made for it.
pub(crate) async fn read_all<B>(body: B, max: usize, timeout: Duration) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let next = std::future::poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Ok(frame)),
            Poll::Pending => {
                let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match t.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(ReadError::TooSlow)),
                    Poll::Pending => Poll::Pending,
                }
            }
        })
        .await?;
        let Some(frame) = next else { break };
        let Ok(data) = frame.map_err(|_| ReadError::Failed)?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > max {
            return Err(ReadError::TooLarge);
        }
        match &mut joined {
            Some(all) => all.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut all = BytesMut::with_capacity(total);
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// A request body passed on as it arrives (the proxy streams uploads to
/// its upstream), that fails with [`BodyStalled`] when nothing more of it
/// has come for `timeout`. Not a limit on the whole body as for a publish:
/// an upload to the application may be large and slow, but one that
/// stops would otherwise hold the request, and the upstream's, for ever.
pub(crate) struct Stalling<B> {
    body: B,
    timeout: Duration,
    /// Armed on the first wait after a frame, dropped when one comes.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Stalling<B> {
    pub(crate) fn new(body: B, timeout: Duration) -> Stalling<B> {
        Stalling {
            body,
            timeout,
            timer: None,
        }
    }
}

/// The error a [`Stalling`] body ends with; the proxy finds it among its
/// upstream request's error sources and answers 408 (not 502).
#[derive(Debug)]
pub(crate) struct BodyStalled(pub(crate) Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request body stalled (max {} without a byte of it)",
            seconds(self.0)
        )
    }
}

impl std::error::Error for BodyStalled {}

impl<B> hyper::body::Body for Stalling<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<super::BoxError>,
{
    type Data = Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let t = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match t.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The refusal of a body that did not arrive in time (408).
pub(crate) fn too_slow(timeout: Duration) -> crate::Error {
    crate::Error::request_timeout(format!(
        "request body too slow (max {} to send it)",
        seconds(timeout)
    ))
}

/// `30 s`, `250 ms`: a limit's duration in an error message.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::task::Context;

    use hyper::body::Frame;

    /// A body that arrives in the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn read(parts: &[&'static str], max: usize) -> Result<Bytes, ReadError> {
        let body = Chunks(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        );
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_all(body, max, Duration::from_secs(1)))
    }

    #[test]
    fn one_chunk_is_kept_and_several_are_joined() {
        let one = Bytes::from_static(b"hello");
        let kept = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_all(
                Chunks(VecDeque::from([one.clone()])),
                5,
                Duration::from_secs(1),
            ))
            .expect("within the limit");
        assert_eq!(kept.as_ptr(), one.as_ptr(), "one chunk is not copied");
        assert_eq!(
            read(&["he", "", "llo", " you"], 100).as_deref(),
            Ok(&b"hello you"[..])
        );
        assert_eq!(read(&[], 100).as_deref(), Ok(&b""[..]));
    }

    #[test]
    fn the_limit_counts_every_chunk() {
        assert_eq!(read(&["hello"], 5).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(read(&["hello!"], 5), Err(ReadError::TooLarge));
        assert_eq!(read(&["hel", "lo", "!"], 5), Err(ReadError::TooLarge));
    }
}
