//! The HTTP server around the API router: accepting connections with a cap
//! on how many are open, a deadline for each request's headers, TLS when
//! configured, and a drain on shutdown. (axum's own `serve` has neither the
//! cap nor the deadline: a socket that never finishes its headers would
//! hold a file descriptor for ever.)

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest request head (request line and headers) hyper reads; the API's
/// own header limit (16 KiB, answered with the JSON body) is well inside.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection gets to read its 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// From when the server waits for a request (a new connection, or a
    /// kept-alive one after its last answer) until its headers are in;
    /// past it the connection is closed. So it also bounds idle time.
    pub header_read_timeout: Duration,
    /// Most connections open at once; past it a new connection is answered
    /// 503 and closed, instead of the process running out of descriptors.
    pub max_connections: usize,
    /// How long an answer may wait for its client to take more of it:
    /// past it the connection is closed (a client that stops reading an
    /// event feed would otherwise hold it, its task and its long-poll
    /// permit for ever, since nothing polls the feed while the socket is
    /// full).
    pub write_stall_timeout: Duration,
    /// How long open requests get to finish after a stop signal.
    pub drain: Duration,
}

impl ServerConfig {
    /// Below the process's open-file limit, leaving room for the database
    /// pool, the data files and the refusals themselves.
    pub fn default_max_connections() -> usize {
        let soft = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
            })
            .unwrap_or(1024);
        soft.saturating_sub(256).clamp(64, 100_000)
    }
}

/// Bind with the listen backlog the system allows (`somaxconn`), not the
/// 128 the standard library asks for: a burst of long-polls must queue in
/// the kernel, not be dropped by it.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{address} resolves to no address"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    Ok(socket.listen(backlog)?)
}

/// Serve `app` on `listener` until `stop`, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    config: ServerConfig,
    stop: CancellationToken,
) {
    let open = Arc::new(Semaphore::new(config.max_connections));
    // Refusing holds a descriptor for up to a second: a few, in proportion.
    let refusals = Arc::new(Semaphore::new((config.max_connections / 8).clamp(1, 256)));
    let max = config.max_connections;
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or the peer gave up: keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Refusing takes a descriptor too, briefly; past a bound of
            // those, just close.
            if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                connections.spawn(async move {
                    refuse(tcp, max).await;
                    drop(refusing);
                });
            }
            continue;
        };
        let (app, tls, stop, timeout) = (
            app.clone(),
            tls.clone(),
            stop.clone(),
            config.header_read_timeout,
        );
        let tcp = WriteStall::new(tcp, config.write_stall_timeout);
        connections.spawn(async move {
            match tls {
                None => connection(tcp, app, timeout, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => connection(tls, app, timeout, stop).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    connections.close();
    tracing::info!(
        "shutting down; draining requests for up to {} s",
        config.drain.as_secs()
    );
    if tokio::time::timeout(config.drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the drain; stopping anyway");
    }
}

/// One HTTP/1.1 connection, closed gracefully (after its current answer)
/// when the server stops.
async fn connection<I>(io: I, app: Router, header_read_timeout: Duration, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        // Timeouts and resets by clients are their business, not an alarm.
        tracing::debug!(%error, "connection ended");
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited
/// `limit` for the peer to take more bytes (its receive window stayed
/// full). Progress of any size restarts the clock.
struct WriteStall<I> {
    io: I,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteStall<I> {
    fn new(io: I, limit: Duration) -> WriteStall<I> {
        WriteStall {
            io,
            limit,
            stalled: None,
        }
    }

    /// What a write returned, with the stall clock applied: started on the
    /// first `Pending`, cleared by progress, an error once it runs out.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {} s", limit.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteStall<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStall<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// Answer a connection over the cap with the JSON error body and close it.
async fn refuse(mut tcp: TcpStream, max: usize) {
    // The API's own error body, written by hand only around it: there is
    // no connection to serve it on.
    let body = serde_json::to_string(&sluice_api::error::ErrorBody {
        error: sluice_api::error::ErrorDetail {
            kind: "too_many_connections".into(),
            message: format!(
                "the server holds its maximum of {max} open connections; retry shortly"
            ),
        },
    })
    .expect("an error body serializes");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client sent until it closes: closing with unread
        // bytes would reset the connection before it reads the answer.
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
