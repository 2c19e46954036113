//! The HTTP/1 server: the accept loop and each connection's time limits, so that slow or idle
//! clients cannot hold connections (and file descriptors) for ever.
//!
//! A connection is always in one of three phases, and two of them have a deadline:
//! - idle (just accepted, or its last response sent): it must start a request within the idle
//!   timeout, or it is closed;
//! - reading a header (a byte of the next request arrived): the whole header must be there
//!   within the header timeout of that first byte, or the connection is closed (a client
//!   trickling a header line every few seconds is cut there);
//! - busy (a request is being answered, until its response body has been sent): no deadline
//!   here; `MINIPAY_REQUEST_TIMEOUT_MS` bounds the handler.
//!
//! At most `max_connections` are open at once: past that the loop stops accepting, so new
//! clients wait in the listen backlog while the open connections are served, and get in as
//! others close. Shutdown stops accepting, closes connections that are not busy, lets busy
//! ones finish their response (then closes them), and returns once all are gone.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::shutdown::Shutdown;

pub use crate::config::ConnectionLimits;

/// Pause after an accept error (out of file descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle { since: Instant },
    Header { since: Instant },
    Busy { requests: usize },
}

/// What a connection is doing, shared by its socket (reads), its service (requests and
/// response bodies) and its task (deadlines).
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
    /// Whether a request ever started: a connection that never had one has nothing to flush.
    served: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            phase: Mutex::new(Phase::Idle { since: Instant::now() }),
            changed: Notify::new(),
            served: AtomicBool::new(false),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = change(*phase);
        if next != *phase {
            *phase = next;
            self.changed.notify_one();
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes arrived: an idle connection starts reading a header.
    fn read_some(&self) {
        self.update(|phase| match phase {
            Phase::Idle { .. } => Phase::Header { since: Instant::now() },
            other => other,
        });
    }

    fn request_started(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.update(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            _ => Phase::Busy { requests: 1 },
        });
    }

    /// The response body was sent (or dropped with its connection).
    fn request_ended(&self) {
        self.update(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: Instant::now() },
        });
    }

    /// When the connection is to be closed unless its phase changes; `None` while busy.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        match self.phase() {
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Header { since } => Some(since + limits.header_read_timeout),
            Phase::Busy { .. } => None,
        }
    }
}

/// The socket, telling the connection's [`Activity`] when bytes arrive.
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Ends its request's busy phase when dropped: with the response body, once hyper has sent
/// it, or with the request's future, if the connection went first.
struct RequestInFlight(Arc<Activity>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that holds its request's [`RequestInFlight`].
struct TrackedBody {
    body: Body,
    _in_flight: RequestInFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains the connections as the
/// module says and returns. The peer address reaches handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, router, limits, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot until it is gone.
    let _all = slots.acquire_many(limits.max_connections).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedStream { stream, activity: activity.clone() });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        service_activity.request_started();
        let in_flight = RequestInFlight(service_activity.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {});
            Ok::<_, Infallible>(response.map(|body| TrackedBody { body, _in_flight: in_flight }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines are this module's (see above): hyper's own header timer would also run
    // while a connection waits idle for its next request.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if activity.deadline(&limits).is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!(%peer, phase = ?activity.phase(), "closing a connection past its deadline");
                    return;
                }
            }
            _ = activity.changed.notified() => {}
            _ = shutdown.wait(), if !draining => {
                draining = true;
                // hyper finishes the response in flight (busy), or the sending of the last one
                // (idle after a request), and then closes the connection.
                connection.as_mut().graceful_shutdown();
                match activity.phase() {
                    // Half a request, or none yet: nothing is owed, and hyper would wait for it.
                    Phase::Header { .. } => return,
                    Phase::Idle { .. } if !activity.served.load(Ordering::Relaxed) => return,
                    _ => {}
                }
            }
        }
    }
}
