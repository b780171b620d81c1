//! Reading a whole request body, within a limit.
//!
//! A publish body is usually one chunk: the lean path reads it whole
//! (`server/sniff.rs`), and a small body through hyper arrives in one read.
//! That chunk is kept as it is; only a body in several chunks is joined,
//! once. (`http_body_util`'s `collect` queues the chunks in a list it
//! allocates even for one, a measurable part of a publish.)

use std::pin::pin;

use bytes::{Bytes, BytesMut};

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// More than the limit.
    TooLarge,
    /// The connection failed or the body was malformed.
    Failed,
}

/// The whole body, or `TooLarge` as soon as it exceeds `max` bytes.
pub(crate) async fn read_all<B>(body: B, max: usize) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::task::{Context, Poll};

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
            .block_on(read_all(body, max))
    }

    #[test]
    fn one_chunk_is_kept_and_several_are_joined() {
        let one = Bytes::from_static(b"hello");
        let kept = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_all(Chunks(VecDeque::from([one.clone()])), 5))
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
