//! The accept loop: [`SoapServer::serve`] and [`SoapServer::serve_tls`] accept connections
//! up to [`ServerConfig::max_connections`](super::ServerConfig::max_connections), give each
//! a request-head timeout (and a TLS handshake), and on stop let open connections finish
//! within the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::connections::Connections;
use super::{Authenticator, SoapServer, SoapService};

impl<S: SoapService, A: Authenticator> SoapServer<S, A> {
    /// Serves connections from `listener` until `shutdown` completes, then
    /// lets open connections finish (up to the configured grace period).
    /// Needs a tokio runtime with its timer enabled (`enable_time` or `enable_all`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.serve_with(listener, None, shutdown).await
    }

    /// Like [`serve`](Self::serve), over TLS: every connection is a TLS
    /// handshake with `config` first (a handshake that fails or takes over
    /// 10 seconds closes the connection).
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.serve_with(listener, Some(acceptor), shutdown).await
    }

    async fn serve_with(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let connections = Arc::new(Connections::default());
        // SOAP is HTTP/1.1 (keep-alive, pipelining allowed); no HTTP/2 sniffing per connection.
        let mut builder = hyper::server::conn::http1::Builder::new();
        // A client that never finishes its request head (or idles on a kept-alive connection)
        // must not hold a connection, and so a file descriptor, for ever.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.config.header_read_timeout);
        tokio::pin!(shutdown);
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.inner
                .config
                .max_connections
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let mut saturated = false;
        loop {
            // A free connection slot first; while there is none, new connections wait in the
            // listener's backlog.
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    saturated = false;
                    slot
                }
                Err(_) => {
                    // Once per episode, not once per connection of a flood.
                    if !std::mem::replace(&mut saturated, true) {
                        tracing::warn!(
                            max = self.inner.config.max_connections,
                            "connection limit reached; new connections wait"
                        );
                    }
                    tokio::select! {
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(slot) => slot,
                            // The semaphore is never closed.
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let server = self.clone();
                    let builder = builder.clone();
                    let registration = connections.register();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        // Held until the connection ends.
                        let _slot = slot;
                        let service = hyper::service::service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, Infallible>(server.handle(req, Some(remote)).await) }
                        });
                        let result = match tls {
                            None => {
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                registration.drive(conn).await
                            }
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(
                                    Duration::from_secs(10),
                                    acceptor.accept(stream),
                                );
                                let stream = match handshake.await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, ?remote, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(?remote, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                registration.drive(conn).await
                            }
                        };
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        connections.close_all();
        tokio::select! {
            () = connections.all_closed() => {}
            () = tokio::time::sleep(self.inner.config.shutdown_grace) => {
                tracing::warn!("connections still open after the grace period; closing");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::sync::oneshot;

    use super::*;
    use crate::context::CallContext;
    use crate::envelope::BodyElement;
    use crate::operation::OperationInfo;
    use crate::server::{
        CallError, EmptyReply, NoAuthentication, PlainFaults, Reply, ServerConfig,
    };

    /// One operation, `{urn:t}Wait`, answered after `delay`.
    struct Slow {
        delay: Duration,
    }

    static WAIT: [OperationInfo; 1] = [OperationInfo {
        name: "Wait",
        request_namespace: "urn:t",
        request_element: "Wait",
        response_namespace: "urn:t",
        response_element: "WaitResponse",
        soap_action: None,
        understood_headers: &[],
    }];

    impl SoapService for Slow {
        fn operations(&self) -> &'static [OperationInfo] {
            &WAIT
        }

        async fn call(
            &self,
            _ctx: &CallContext,
            _op: usize,
            _body: &BodyElement,
        ) -> Result<Reply, CallError> {
            tokio::time::sleep(self.delay).await;
            Ok(Box::new(EmptyReply) as Reply)
        }
    }

    /// A `Slow` server with the shutdown grace period `grace`, see [`slow_server_with`].
    async fn slow_server(
        delay: Duration,
        grace: Duration,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let config = ServerConfig {
            shutdown_grace: grace,
            ..ServerConfig::default()
        };
        slow_server_with(delay, config).await
    }

    /// A `Slow` server with `config` on 127.0.0.1:0; `stop` shuts it down, the task ends when
    /// `serve` returns.
    async fn slow_server_with(
        delay: Duration,
        config: ServerConfig,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let server = SoapServer::new(Slow { delay }, NoAuthentication, PlainFaults, config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    async fn send_wait(addr: SocketAddr) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt as _;
        let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Wait xmlns="urn:t"/></s:Body></s:Envelope>"#;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn shutdown_answers_requests_in_progress_and_closes_idle_connections() {
        let (addr, stop, task) =
            slow_server(Duration::from_millis(300), Duration::from_secs(60)).await;
        let mut busy = send_wait(addr).await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Both connections are served before the stop.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let answer = read_to_close(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("</soap:Envelope>"), "{answer}");
        assert_eq!(read_to_close(&mut idle).await, "");
        // Well inside the grace period: serve returns once both connections are gone.
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("serve returns when the connections are closed")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// A `Slow` server answering at once, with these read timeouts, on 127.0.0.1:0.
    async fn timed_server(
        header_read_timeout: Duration,
        body_read_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>) {
        let config = ServerConfig {
            header_read_timeout: Some(header_read_timeout),
            body_read_timeout: Some(body_read_timeout),
            ..ServerConfig::default()
        };
        let (addr, stop, _task) = slow_server_with(Duration::ZERO, config).await;
        (addr, stop)
    }

    #[tokio::test]
    async fn beyond_max_connections_a_connection_waits_for_a_free_slot() {
        use tokio::io::AsyncReadExt as _;
        let config = ServerConfig {
            max_connections: 1,
            ..ServerConfig::default()
        };
        let (addr, _stop, _task) = slow_server_with(Duration::ZERO, config).await;
        // The first connection is answered and stays open (keep-alive): it holds the slot.
        let mut first = send_wait(addr).await;
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), first.read(&mut buf))
            .await
            .expect("the first connection is answered")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        // The second is not served while the first is open...
        let mut second = send_wait(addr).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf))
                .await
                .is_err(),
            "served beyond the limit"
        );
        // ...and is as soon as the first closes.
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(20), second.read(&mut buf))
            .await
            .expect("the second connection is served once the slot is free")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test]
    async fn a_request_head_that_never_ends_and_an_idle_connection_are_closed() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, _stop) = timed_server(Duration::from_millis(300), Duration::from_secs(60)).await;
        // Half a request head, then nothing (a "slowloris" client).
        let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/")
            .await
            .unwrap();
        // A connection that never sends anything.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A kept-alive connection idle after one answered request.
        let mut idle = send_wait(addr).await;
        let partial_seen = read_to_close(&mut partial).await;
        assert!(!partial_seen.contains(" 200 "), "{partial_seen}");
        assert_eq!(read_to_close(&mut silent).await, "");
        let answered = read_to_close(&mut idle).await;
        assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered}");
        assert_eq!(answered.matches("HTTP/1.1").count(), 1, "{answered}");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_is_answered_408_and_the_connection_closed() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, _stop) = timed_server(Duration::from_secs(60), Duration::from_millis(300)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n\
                  Content-Length: 200\r\n\r\n<s:Envelope xmlns:s=",
            )
            .await
            .unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(
            answer.ends_with("the request body did not arrive in time\n"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let (addr, stop, task) =
            slow_server(Duration::from_secs(3600), Duration::from_millis(200)).await;
        let _busy = send_wait(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("serve returns after the grace period")
            .unwrap()
            .unwrap();
    }
}
