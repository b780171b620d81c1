//! A server TLS stream over rustls' unbuffered API: an idle connection
//! holds no buffers.
//!
//! tokio-rustls drives rustls' buffered `ServerConnection`, which keeps a
//! 4 KiB read buffer for the life of the connection once it has read
//! anything (the handshake has), and tandem always has a read pending on a
//! stream, to see the client leave. With 10,000 idle SSE streams that is
//! 40 MiB of buffers waiting for bytes that never come. rustls' unbuffered
//! connection leaves the buffers to its caller, so here:
//!
//! * a read goes onto the stack, and the TLS bytes read wait in
//!   `incoming` only until rustls has processed them (a record cut in two
//!   by the network stays until its end comes), so a read pending on an
//!   idle connection holds nothing;
//! * decrypted bytes wait in `plaintext` until the reader takes them;
//! * records to send wait in `outgoing` until the socket has taken them.
//!
//! Each buffer is freed when it empties. The rest is what tokio-rustls
//! does: the handshake ([`TlsAcceptor::accept`]), then `AsyncRead` and
//! `AsyncWrite` of the plaintext, a `close_notify` at shutdown, and what
//! rustls asks to send meanwhile (session tickets after the handshake, an
//! answer to a key update, an alert) goes out before the next wait.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 4096;

/// Most TLS bytes held waiting for the end of a record or a handshake
/// message: rustls takes handshake messages up to 64 KiB, records up to
/// 16 KiB and a little.
const MAX_INCOMING: usize = 64 * 1024 + 2048;

/// Most plaintext encrypted per write: four full records.
const MAX_WRITE: usize = 64 * 1024;

/// Handshakes server TLS connections with one rustls configuration.
#[derive(Clone)]
pub(crate) struct TlsAcceptor(Arc<ServerConfig>);

impl TlsAcceptor {
    pub(crate) fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor(config)
    }

    /// The TLS handshake on `io`; wrap it in a timeout.
    ///
    /// The stream is boxed from the start: this future then holds a
    /// pointer, not rustls' connection state (about 1 KiB), and neither
    /// does the connection's future that awaits it, for as long as the
    /// connection lives (a future keeps room for its largest state).
    pub(crate) async fn accept(&self, io: TcpStream) -> io::Result<Box<TlsStream>> {
        let conn = UnbufferedServerConnection::new(self.0.clone()).map_err(io::Error::other)?;
        let mut tls = Box::new(TlsStream {
            io,
            conn,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            read_at: 0,
            outgoing: Vec::new(),
            sent: 0,
            read_closed: false,
            write_closed: false,
        });
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }
}

/// The decrypted side of a server TLS connection.
pub(crate) struct TlsStream {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes read and not yet processed.
    incoming: Vec<u8>,
    /// Decrypted bytes, from `read_at` on, for the reader.
    plaintext: Vec<u8>,
    read_at: usize,
    /// TLS records, from `sent` on, for the socket.
    outgoing: Vec<u8>,
    sent: usize,
    /// The client has sent `close_notify` or closed the connection.
    read_closed: bool,
    /// `close_notify` is queued.
    write_closed: bool,
}

/// Where rustls stopped.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// It needs more bytes from the client to go on with the handshake.
    Handshaking,
    /// Application data can be sent (and was, if there was some).
    Traffic,
    /// Both sides have sent `close_notify`.
    Closed,
}

/// What to encrypt once rustls allows it.
enum Encrypt<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl TlsStream {
    /// The protocol chosen by ALPN.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let stop = self.process(Encrypt::Nothing);
            // The server's flight goes out before it waits for the client's
            // (an alert too, as far as the socket takes it at once).
            let sent = self.poll_send(cx);
            let stop = stop?;
            ready!(sent)?;
            match stop {
                // A TLS 1.3 server may send once its Finished is out; the
                // handshake ends with the client's.
                Stop::Traffic if !self.conn.is_handshaking() => return Poll::Ready(Ok(())),
                Stop::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Stop::Traffic | Stop::Handshaking => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
            }
        }
    }

    /// Runs rustls over the bytes read so far until it needs more or has
    /// nothing left to say: decrypted data goes to `plaintext`, records to
    /// `outgoing`, and `send` is encrypted once rustls allows it (when it
    /// returns `Stop::Traffic`).
    fn process(&mut self, mut send: Encrypt<'_>) -> io::Result<Stop> {
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let stop = match state {
                Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut failed = None;
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                self.plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                failed = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                                break;
                            }
                        }
                    }
                    failed.map_or(Ok(None), Err)
                }
                Ok(ConnectionState::EncodeTlsData(mut record)) => {
                    grow_into(&mut self.outgoing, 0, |out| {
                        record.encode(out).map_err(needed_to_encode)
                    })
                    .map(|()| None)
                }
                // The records are in `outgoing`, which is sent before
                // anything encrypted later.
                Ok(ConnectionState::TransmitTlsData(sent)) => {
                    sent.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Stop::Handshaking)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let estimate = |n: usize| n + 32 * (n / 16384 + 1);
                    let r = match std::mem::replace(&mut send, Encrypt::Nothing) {
                        Encrypt::Nothing => Ok(()),
                        Encrypt::Data(data) => {
                            grow_into(&mut self.outgoing, estimate(data.len()), |out| {
                                traffic.encrypt(data, out).map_err(needed_to_encrypt)
                            })
                        }
                        Encrypt::CloseNotify => grow_into(&mut self.outgoing, 64, |out| {
                            traffic.queue_close_notify(out).map_err(needed_to_encrypt)
                        }),
                    };
                    r.map(|()| Some(Stop::Traffic))
                }
                // Edge-triggered: next time round it says what can be done.
                Ok(ConnectionState::PeerClosed) => {
                    self.read_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    self.read_closed = true;
                    Ok(Some(Stop::Closed))
                }
                // Early data is off (`max_early_data_size` 0).
                Ok(state) => Err(io::Error::other(format!("unexpected tls state {state:?}"))),
            };
            self.incoming.drain(..discard);
            if self.incoming.is_empty() && self.incoming.capacity() > 0 {
                self.incoming = Vec::new();
            }
            match stop {
                Ok(Some(stop)) => return Ok(stop),
                Ok(None) => {}
                Err(e) => {
                    self.queue_alert();
                    return Err(e);
                }
            }
        }
    }

    /// After an error, the alert rustls queued for the client, if any.
    fn queue_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut record)) => {
                    let _ = grow_into(&mut self.outgoing, 0, |out| {
                        record.encode(out).map_err(needed_to_encode)
                    });
                }
                Ok(ConnectionState::TransmitTlsData(sent)) => sent.done(),
                _ => return,
            }
        }
    }

    /// Writes `outgoing` to the socket; ready once all of it has gone.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS bytes into `incoming`. The read goes onto the stack and
    /// only what came is kept, so an idle connection waits with no buffer
    /// of its own. Ready with 0 at the end of the client's data.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tls record or handshake message too large",
            )));
        }
        // The socket's own `poll_read`, not `try_read` after
        // `poll_read_ready`: it knows a short read emptied the socket and
        // waits for the next event instead of asking again (measured: a
        // publish over TLS cost a quarter more server CPU without it).
        let mut raw = [MaybeUninit::<u8>::uninit(); READ_SIZE];
        let mut buf = ReadBuf::uninit(&mut raw);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.incoming.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }
}

/// Writes into the spare end of `out` with `write`, which answers how many
/// bytes it wrote, or how many it needs (`Some`), or fails (`None`); starts
/// with `estimate` bytes of room and grows once if told to.
fn grow_into(
    out: &mut Vec<u8>,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + estimate, 0);
    loop {
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > out.len() - start => out.resize(start + needed, 0),
            Err(_) => {
                out.truncate(start);
                return Err(io::Error::other("tls: could not encode a record"));
            }
        }
    }
}

fn needed_to_encode(e: EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        EncodeError::AlreadyEncoded => None,
    }
}

fn needed_to_encrypt(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        EncryptError::EncryptExhausted => None,
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_at < this.plaintext.len() {
                let n = buf.remaining().min(this.plaintext.len() - this.read_at);
                buf.put_slice(&this.plaintext[this.read_at..this.read_at + n]);
                this.read_at += n;
                if this.read_at == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.read_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            let stop = this.process(Encrypt::Nothing);
            // What rustls had to say (tickets, alerts) goes out now; if the
            // socket is full, this task is woken when it drains.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            stop?;
            if this.read_at < this.plaintext.len() || this.read_closed {
                continue;
            }
            if ready!(this.poll_fill(cx))? == 0 {
                this.read_closed = true;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was encrypted before goes first: the socket sets the pace.
        ready!(this.poll_send(cx))?;
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(MAX_WRITE);
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // One record for the lot: a chunk's head, its frames and its end
        // are gathered (a copy), not sent as a record each.
        let gathered;
        let data = match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if first.len() >= total => &first[..total],
            _ => {
                let mut all = Vec::with_capacity(total);
                for b in bufs {
                    let take = b.len().min(total - all.len());
                    all.extend_from_slice(&b[..take]);
                }
                gathered = all;
                &gathered[..]
            }
        };
        if this.process(Encrypt::Data(data))? != Stop::Traffic {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Sent as far as the socket takes it now; the rest before the
        // next write, or at the flush.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            this.process(Encrypt::CloseNotify)?;
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }
}
