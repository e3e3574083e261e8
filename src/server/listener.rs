//! The TLS listener: accepts TCP connections, completes the TLS handshake within a
//! deadline, serves HTTP/1.1 (keep-alive) or HTTP/2 on each with hyper-util's auto
//! builder, and drains in-flight requests on shutdown.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Per-connection limits of the TLS listener.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest time a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// HTTP/1.1: longest time to receive a request's headers, counted from when the
    /// connection starts waiting for them (so it also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// Any connection from which no byte arrives for this long is closed (gracefully:
    /// HTTP/2 gets a GOAWAY). Covers what `header_read_timeout` does not: a client
    /// that sends nothing after the handshake, and idle HTTP/2 connections.
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Reviews read and answered at once, over all connections (each holds up to a
    /// 3 MiB body); further requests wait for a slot within their deadline.
    pub max_in_flight: usize,
    /// On shutdown, how long in-flight requests may take before their connections are cut.
    pub drain_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_in_flight: 256,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub(crate) async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn http_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    // No server pings: a dead or silent peer is closed by the idle watch instead.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}

/// Serves `app` over TLS on `listener` until `shutdown` turns true; then stops
/// accepting, lets the open connections finish their requests (HTTP/2 gets a
/// GOAWAY, idle HTTP/1.1 connections are closed) for at most `drain_timeout`,
/// and returns.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let builder = Arc::new(http_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let stop = wait_for(shutdown);
    tokio::pin!(stop);
    loop {
        // Forget the connections that ended.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut stop => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let conn = serve_connection(
                    tcp,
                    peer,
                    acceptor.clone(),
                    builder.clone(),
                    app.clone(),
                    limits.clone(),
                    drain_rx.clone(),
                );
                connections.spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        open_connections = open,
        drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
        "stopped accepting connections; draining"
    );
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            still_open = connections.len(),
            "drain timeout reached: closing the remaining connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    } else {
        tracing::info!("all connections drained");
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    limits: ConnLimits,
    drain: watch::Receiver<bool>,
) {
    let (handshake_timeout, idle_timeout) = (limits.tls_handshake_timeout, limits.idle_timeout);
    let _ = tcp.set_nodelay(true);
    let tls = tokio::select! {
        _ = wait_for(drain.clone()) => return,
        handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)) => match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let service = TowerToHyperService::new(app);
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        inner: tls,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = wait_for(drain) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = activity.idle_for(idle_timeout) => {
            tracing::debug!(%peer, "closing an idle connection");
            conn.as_mut().graceful_shutdown();
            // A peer that does not even read the GOAWAY is cut off.
            tokio::time::timeout(Duration::from_secs(5), conn).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// When a connection last received bytes from its peer.
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last_read: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_read: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has been read for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last_read.load(Ordering::Relaxed));
            let idle = self.start.elapsed().saturating_sub(last);
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// A stream that records when it last read something.
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
