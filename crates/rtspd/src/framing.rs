//! RTSP over TCP, shared by every RTSP server here (the re-serve and camsim's simulated
//! cameras): taking one request off a connection's input buffer, the bare 400 for garbage, and
//! the accept loop that gives each connection its task.

use std::net::SocketAddr;
use std::time::Duration;

use rtsp_types::{Message, ParseError, Request, Response, StatusCode, Version};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug};

/// Outcome of trying to take one message off the input buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A complete request.
    Request(Box<Request<Vec<u8>>>),
    /// Interleaved data or a response from the client (RTCP receiver reports): ignored.
    Ignored,
    /// Not a full message yet.
    Incomplete,
    /// Unparseable, or larger than the server allows: answer 400 and close.
    Bad,
}

/// Takes the next message off the front of `buf`; a request that is still incomplete at `max`
/// bytes is [`Parsed::Bad`], which bounds memory per connection.
pub fn parse_next(buf: &mut Vec<u8>, max: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    // Interleaved frames from the client (`$`, channel, length): RTCP; skipped whole.
    if buf[0] == b'$' {
        if buf.len() < 4 {
            return Parsed::Incomplete;
        }
        let len = 4 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < len {
            return Parsed::Incomplete;
        }
        buf.drain(..len);
        return Parsed::Ignored;
    }
    match Message::<Vec<u8>>::parse(buf.as_slice()) {
        Ok((msg, consumed)) => {
            buf.drain(..consumed);
            match msg {
                Message::Request(r) => Parsed::Request(Box::new(r)),
                _ => Parsed::Ignored,
            }
        }
        Err(ParseError::Incomplete(_)) if buf.len() < max => Parsed::Incomplete,
        Err(_) => Parsed::Bad,
    }
}

/// A bare 400 response for unparseable input.
pub fn bad_request() -> Response<Vec<u8>> {
    Response::builder(Version::V1_0, StatusCode::BadRequest).build(Vec::new())
}

/// Accepts connections on `listener` until `cancel`, running `serve` for each on `tracker` in
/// the span `span` makes for its peer. A failing accept (out of file descriptors and the like)
/// backs off instead of spinning.
pub async fn accept_loop<Fut>(
    listener: TcpListener,
    cancel: CancellationToken,
    tracker: TaskTracker,
    span: impl Fn(SocketAddr) -> Span,
    serve: impl Fn(TcpStream, SocketAddr) -> Fut,
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(serve(stream, peer).instrument(span(peer)));
            }
            Err(e) => {
                debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
