//! The HTTP/1.1 server loop around the router. What `axum::serve` does, plus what a server
//! facing hostile clients needs: at most `max_connections` connections open (more wait in the
//! listen backlog), a request head must arrive within `header_read_timeout`, a keep-alive
//! connection idle for `idle_timeout` is closed, each request has a deadline
//! (`request_timeout`; the long-poll claim `max_wait` more), and a connection the server
//! closes while the client still sends a body it refused is drained for a bounded while
//! first, so the client reads the answer instead of a reset. On shutdown no connection is
//! accepted any more and in-flight requests finish.

use super::AppState;
use super::error::ApiError;
use crate::config::CascadeConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Longest a closing connection is drained of what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Most bytes a closing connection is drained of.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Connection limits, from `cascade.*` (zero timeouts count as one second).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request head (from the connection or its first byte).
    pub header_read: Duration,
    /// Time a connection may sit between requests with no byte moving.
    pub idle: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits configured in `c`.
    pub fn from_config(c: &CascadeConfig) -> Self {
        Self {
            header_read: Duration::from_secs(c.header_read_timeout.max(1)),
            idle: Duration::from_secs(c.idle_timeout.max(1)),
            max_connections: usize::try_from(c.max_connections.max(1)).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to finish
/// their requests.
///
/// # Errors
/// None today; kept `io::Result` like `axum::serve`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = Connection {
                    app: app.clone(),
                    peer,
                    limits,
                    shutdown: shutdown.clone(),
                };
                connections.spawn(conn.run(stream, slot));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection.
struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    shutdown: CancellationToken,
}

/// How serving a connection ended.
enum Ended {
    /// hyper finished it (the client closed, or a response closed it).
    Done(Result<(), hyper::Error>),
    /// No request head in time, or idle too long.
    Stalled,
}

type Served = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Connection {
    async fn run(self, stream: TcpStream, _slot: OwnedSemaphorePermit) {
        let watch = Arc::new(Watch::new(Instant::now()));
        let io = TokioIo::new(Watched {
            inner: stream,
            watch: watch.clone(),
        });
        let Self {
            app,
            peer,
            limits,
            shutdown,
        } = self;
        let service = hyper::service::service_fn({
            let watch = watch.clone();
            move |mut req: hyper::Request<Incoming>| -> Served {
                let busy = Busy::start(&watch);
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                Box::pin(async move {
                    let response = app.oneshot(req.map(Body::new)).await;
                    drop(busy);
                    response
                })
            }
        });
        // Our own deadlines replace hyper's header timer (which would also end idle
        // keep-alive connections after `header_read`).
        let mut conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service);
        let mut draining = false;
        let ended = loop {
            let deadline = watch.deadline(&limits);
            let event = tokio::select! {
                done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => Some(Ended::Done(done)),
                () = sleep_until(deadline) => watch.expired(&limits).then_some(Ended::Stalled),
                () = watch.changed.notified() => None,
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    None
                }
            };
            if let Some(ended) = event {
                break ended;
            }
            if draining {
                Pin::new(&mut conn).graceful_shutdown();
            }
        };
        match ended {
            Ended::Stalled => {
                tracing::debug!(peer = %peer, "closing a stalled or idle connection");
            }
            Ended::Done(result) => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                if !shutdown.is_cancelled() {
                    let stream = conn.into_parts().io.into_inner().inner;
                    tokio::select! {
                        () = linger(stream) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Closes our side, then reads and discards what the client still sends (bounded), so that
/// a client writing a body we did not read gets our answer rather than a reset.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = vec![0_u8; 64 * 1024];
        let mut left = LINGER_BYTES;
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || n >= left {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// What a connection is doing, for its deadlines.
struct Watch {
    state: Mutex<WatchState>,
    /// Signalled when the deadline may have moved earlier.
    changed: Notify,
}

struct WatchState {
    /// Requests being handled.
    busy: usize,
    /// When the last request finished or the response last moved.
    since: Instant,
    /// When the next request's first byte came (a fresh connection: when it was accepted).
    head_started: Option<Instant>,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(WatchState {
                busy: 0,
                since: now,
                head_started: Some(now),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes came in.
    fn read(&self) {
        let mut s = self.lock();
        if s.busy == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Bytes went out.
    fn wrote(&self) {
        let mut s = self.lock();
        if s.busy == 0 {
            s.since = Instant::now();
        }
    }

    /// When the connection is to be closed unless something happens; none while a request
    /// is handled (the request deadline bounds that).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let s = self.lock();
        if s.busy > 0 {
            return None;
        }
        Some(match s.head_started {
            Some(at) => at + limits.header_read,
            None => s.since + limits.idle,
        })
    }

    fn expired(&self, limits: &Limits) -> bool {
        self.deadline(limits).is_some_and(|at| Instant::now() >= at)
    }
}

/// Marks a request as being handled while it lives.
struct Busy(Arc<Watch>);

impl Busy {
    fn start(watch: &Arc<Watch>) -> Self {
        let mut s = watch.lock();
        s.busy += 1;
        s.head_started = None;
        drop(s);
        Self(watch.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.busy -= 1;
        if s.busy == 0 {
            s.since = Instant::now();
            s.head_started = None;
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

/// A TCP stream that reports progress to its [`Watch`].
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Route layer: every request must be answered within `request_timeout` seconds (0: no
/// deadline), the long-poll claim within `max_wait` more; late ones get 503 `timeout`.
pub(crate) async fn request_deadline(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let c = &state.config.cascade;
    if c.request_timeout == 0 {
        return next.run(req).await;
    }
    let long_poll = req.extensions().get::<MatchedPath>().is_some_and(|p| {
        p.as_str().ends_with("/claim-task") || p.as_str().ends_with("/pending-tasks")
    });
    let secs = if long_poll {
        c.request_timeout.saturating_add(c.max_wait)
    } else {
        c.request_timeout
    };
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(seconds = secs, "request timed out");
            ApiError::timeout(secs).into_response()
        }
    }
}
