//! The bodies of requests and responses, shared by every handler
//! (`api`) and the server that runs them (`server`): below both.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming, SizeHint};

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A complete body of shared pieces (such as the cached JSON of each
/// object of a list), sent one after another with their total length and
/// never copied into one buffer.
pub fn pieces(pieces: Vec<Bytes>) -> Body {
    let remaining = pieces.iter().map(|piece| piece.len() as u64).sum();
    Pieces {
        pieces: pieces.into(),
        remaining,
    }
    .boxed()
}

struct Pieces {
    pieces: VecDeque<Bytes>,
    /// Bytes not yet sent.
    remaining: u64,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = std::iter::from_fn(|| this.pieces.pop_front()).find(|piece| !piece.is_empty());
        Poll::Ready(next.map(|piece| {
            this.remaining -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A request's body as handlers get it.
///
/// What a handler leaves unread (it answered before reading: 413, 400, 401,
/// 403, ...) is not dropped with the request. Over HTTP/2, dropping an
/// unfinished request body resets the stream, and the reset goes out
/// before (or instead of) the queued answer: clients such as curl then
/// report "Stream error in the HTTP/2 framing layer" instead of the
/// `Status`. Over HTTP/1.1, closing the connection with the body unread
/// makes the client's send fail ("Broken pipe") before it reads the
/// answer. So the rest of the body is read and discarded after the answer,
/// up to a bound (the server's `drain`), over both.
#[derive(Debug)]
pub struct RequestBody {
    body: Option<Incoming>,
    unread: Arc<Mutex<Option<Incoming>>>,
}

impl RequestBody {
    /// The body of a request, and where what the handler leaves unread
    /// ends up for the server to drain.
    pub(crate) fn new(body: Incoming) -> (Self, Arc<Mutex<Option<Incoming>>>) {
        let unread = Arc::default();
        let body = Self {
            body: Some(body),
            unread: Arc::clone(&unread),
        };
        (body, unread)
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut().body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(body) = self.body.take()
            && !hyper::body::Body::is_end_stream(&body)
        {
            *self.unread.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
    }
}
