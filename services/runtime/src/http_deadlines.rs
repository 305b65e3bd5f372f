//! Read deadlines of an HTTP connection: a request's headers must arrive
//! within `header_read` of its first byte (slowloris), its body within
//! `body_read` of its headers (a slow body), and a connection with no
//! request in progress is closed after `idle` (keep-alive).
//!
//! Not hyper's `header_read_timeout`: its clock starts as soon as hyper
//! waits for a request, so the idle time between two requests counts as
//! header time, and a short header deadline would close every keep-alive
//! connection as soon as it is quiet, under the proxy that pools them (a
//! request Traefik sends just as the server closes the connection fails).
//!
//! One [`Activity`] per connection sees both sides of it: [`Activity::io`]
//! wraps the socket and sees the first byte of a request arrive while
//! nothing is in progress; [`Activity::service`] wraps the service and sees
//! requests start and their responses end (when hyper drops the body: an
//! SSE stream is in progress for as long as it streams, and owes no
//! deadline), and wraps each request's body to see it end (or be dropped
//! unread). [`Activity::expired`] resolves when a deadline passes; the
//! server then drops the connection. Bytes of a next request read while a
//! response is still in progress (pipelining) start no header clock: such
//! a request is bounded by `idle` instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The deadlines of a connection (from a service's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From a request's first byte to the end of its headers.
    pub header_read: Duration,
    /// With no request in progress, from the last response's end (or the
    /// accept) to the next request's first byte.
    pub idle: Duration,
    /// From a request's headers to the end of its body (while the service
    /// has not dropped it).
    pub body_read: Duration,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderRead,
    BodyRead,
    Idle,
}

impl Expired {
    /// A stable name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderRead => "header_read_timeout",
            Self::BodyRead => "body_read_timeout",
            Self::Idle => "idle_timeout",
        }
    }
}

/// What one connection is doing, as its deadlines need it.
#[derive(Debug, Clone)]
pub struct Activity(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every change of `state`.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Requests whose response has not ended.
    in_flight: usize,
    /// When `in_flight` last fell to 0 (or the connection was accepted).
    quiet_since: Instant,
    /// When the first byte of a request arrived while nothing was in
    /// progress; cleared when the request reaches the service.
    head_started: Option<Instant>,
    /// Request bodies not yet read to their end, and since when the first
    /// of them is awaited.
    bodies: usize,
    body_since: Option<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Self {
        Self(Arc::new(Shared {
            state: Mutex::new(State {
                in_flight: 0,
                quiet_since: Instant::now(),
                head_started: None,
                bodies: 0,
                body_since: None,
            }),
            changed: Notify::new(),
        }))
    }

    /// `io`, watched for the bytes of a request.
    pub fn io<T>(&self, io: T) -> WatchedIo<T> {
        WatchedIo {
            io,
            activity: self.clone(),
        }
    }

    /// `service`, watched for requests and the end of their responses.
    pub fn service<S>(&self, service: S) -> TrackedService<S> {
        TrackedService {
            inner: service,
            activity: self.clone(),
        }
    }

    /// Resolves when one of `deadlines` has passed; never while a request
    /// is in progress.
    pub async fn expired(&self, deadlines: Deadlines) -> Expired {
        loop {
            // Registered before the state is read: a change after the read
            // wakes this wait.
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next = {
                let state = self.lock();
                match (state.in_flight, state.head_started, state.body_since) {
                    (_, _, Some(since)) => Some((since + deadlines.body_read, Expired::BodyRead)),
                    (0, Some(started), None) => {
                        Some((started + deadlines.header_read, Expired::HeaderRead))
                    }
                    (0, None, None) => Some((state.quiet_since + deadlines.idle, Expired::Idle)),
                    _ => None,
                }
            };
            match next {
                None => changed.await,
                Some((at, expired)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => return expired,
                        () = changed => {}
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut State) -> bool) {
        if change(&mut self.lock()) {
            self.0.changed.notify_waiters();
        }
    }

    fn bytes_read(&self) {
        self.update(|state| {
            let starts = state.in_flight == 0 && state.head_started.is_none();
            if starts {
                state.head_started = Some(Instant::now());
            }
            starts
        });
    }

    fn body_started(&self) {
        self.update(|state| {
            state.bodies += 1;
            state.body_since.get_or_insert_with(Instant::now);
            true
        });
    }

    fn body_ended(&self) {
        self.update(|state| {
            state.bodies -= 1;
            if state.bodies == 0 {
                state.body_since = None;
            }
            true
        });
    }

    fn request_started(&self) -> InFlight {
        self.update(|state| {
            state.in_flight += 1;
            state.head_started = None;
            true
        });
        InFlight(self.clone())
    }
}

/// One request in progress; dropped when its response ends (or never
/// comes).
#[derive(Debug)]
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.quiet_since = Instant::now();
            }
            true
        });
    }
}

/// A socket whose reads tell its [`Activity`] when a request begins.
#[derive(Debug)]
pub struct WatchedIo<T> {
    io: T,
    activity: Activity,
}

impl<T> WatchedIo<T> {
    /// The socket (say, once upgraded to a WebSocket, which has deadlines
    /// of its own).
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A hyper service whose requests are counted in progress until their
/// response's body is dropped.
#[derive(Debug, Clone)]
pub struct TrackedService<S> {
    inner: S,
    activity: Activity,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, In, Out> hyper::service::Service<Request<In>> for TrackedService<S>
where
    S: hyper::service::Service<Request<RequestBody<In>>, Response = Response<Out>>,
    S::Future: Send + 'static,
    In: Body + Unpin,
    Out: Body + Unpin,
{
    type Response = Response<TrackedBody<Out>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn call(&self, request: Request<In>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let request = request.map(|body| RequestBody::new(body, &self.activity));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A request's body, awaited (under `body_read`) until it ends or the
/// service drops it.
#[derive(Debug)]
pub struct RequestBody<B> {
    body: B,
    /// Set while the body is awaited.
    activity: Option<Activity>,
}

impl<B: Body> RequestBody<B> {
    fn new(body: B, activity: &Activity) -> Self {
        let activity = (!body.is_end_stream()).then(|| {
            activity.body_started();
            activity.clone()
        });
        Self { body, activity }
    }
}

impl<B> RequestBody<B> {
    fn ended(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.body_ended();
        }
    }
}

impl<B> Drop for RequestBody<B> {
    fn drop(&mut self) {
        self.ended();
    }
}

impl<B: Body + Unpin> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its request in progress until dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(100),
        body_read: Duration::from_secs(20),
    };

    /// Whether `activity` expires within `wait` (time jumps: paused clock).
    async fn expires_within(activity: &Activity, wait: Duration) -> Option<Expired> {
        tokio::time::timeout(wait, activity.expired(DEADLINES))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_expires_after_the_idle_deadline() {
        let activity = Activity::new();
        assert_eq!(
            expires_within(&activity, Duration::from_secs(99)).await,
            None
        );
        assert_eq!(
            expires_within(&activity, Duration::from_secs(2)).await,
            Some(Expired::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_begun_must_reach_the_service_within_the_header_deadline() {
        let activity = Activity::new();
        tokio::time::advance(Duration::from_secs(50)).await;
        activity.bytes_read();
        assert_eq!(
            expires_within(&activity, Duration::from_secs(11)).await,
            Some(Expired::HeaderRead)
        );
        // In time: the request is in progress, and nothing expires while
        // it is, however long its response streams.
        let activity = Activity::new();
        activity.bytes_read();
        tokio::time::advance(Duration::from_secs(9)).await;
        let in_flight = activity.request_started();
        activity.bytes_read(); // its body: no header clock
        assert_eq!(
            expires_within(&activity, Duration::from_secs(1000)).await,
            None
        );
        // Its response ends: idle from then on.
        drop(in_flight);
        assert_eq!(
            expires_within(&activity, Duration::from_secs(99)).await,
            None
        );
        assert_eq!(
            expires_within(&activity, Duration::from_secs(2)).await,
            Some(Expired::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_must_end_within_the_body_deadline() {
        let activity = Activity::new();
        activity.bytes_read();
        let _in_flight = activity.request_started();
        activity.body_started();
        assert_eq!(
            expires_within(&activity, Duration::from_secs(21)).await,
            Some(Expired::BodyRead)
        );
        // Read to its end in time: the response then streams as long as it
        // likes.
        let activity = Activity::new();
        let _in_flight = activity.request_started();
        activity.body_started();
        tokio::time::advance(Duration::from_secs(19)).await;
        activity.body_ended();
        assert_eq!(
            expires_within(&activity, Duration::from_secs(1000)).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_in_force_follows_changes_made_while_waiting() {
        let activity = Activity::new();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(DEADLINES).await }
        });
        tokio::time::advance(Duration::from_secs(60)).await;
        activity.bytes_read();
        // The header deadline (10 s from now) replaces the idle one (40 s).
        tokio::time::advance(Duration::from_secs(11)).await;
        let expired = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("expired by now")
            .expect("task");
        assert_eq!(expired, Expired::HeaderRead);
    }
}
