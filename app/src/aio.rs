//! Async sockets over the stack runtime: [`AsyncTcpListener`], [`AsyncTcpStream`] and
//! [`AsyncUdpSocket`], for tasks that serve many connections without a thread each.
//!
//! A socket operation is a call the runtime answers when the stack lets it complete, as
//! for the blocking sockets; here the answer lands in a slot that wakes the task which
//! polled it ([`Caller::submit`]), so the futures work on any executor: tokio's (with the
//! `tokio` feature the stream also implements `tokio::io::AsyncRead` and `AsyncWrite`),
//! or the simulator's own ([`crate::runtime::SimWorld::spawn_async`]), which keeps a run
//! deterministic on the virtual clock.
//!
//! Every operation is cancel-safe: a read, accept or receive that was submitted stays
//! with its socket when the future that submitted it is dropped, and the next poll takes
//! its answer (no data is lost); a write is accepted into a chunk of at most
//! [`WRITE_CHUNK`] bytes that the socket keeps handing to the stack until all of it is
//! queued, so a dropped write future never leaves it unknown what was sent. `flush`
//! waits until the chunk is queued; `shutdown` flushes, then sends the FIN. Dropping a
//! stream closes it like [`crate::socket::TcpStream`] (a chunk not yet flushed is lost:
//! call `shutdown` first, as with any buffered writer).

use std::future::poll_fn;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::runtime::{Caller, Op, Reply, ReplySlot};
use crate::socket::{failed, BindError, ConnectError, SocketError};
use crate::transport::stack::TcpHandle;
use crate::transport::udp::UdpHandle;

/// Most bytes one write hands to the stack at a time (what the stream holds unflushed).
pub const WRITE_CHUNK: usize = 64 * 1024;

/// The answer to a call made with [`Caller::submit`].
async fn answer(slot: Arc<ReplySlot>) -> Reply {
    poll_fn(|cx| slot.poll(cx)).await
}

/// A call whose answer nobody waits for (closing a socket from `drop`).
fn fire(caller: &Caller, op: Op) {
    let _ = caller.submit(op).abandon();
}

/// A listening TCP socket whose `accept` is a future.
#[derive(Debug)]
pub struct AsyncTcpListener {
    caller: Caller,
    port: u16,
    /// The accept in flight: kept across dropped `accept` futures.
    accepting: Option<Arc<ReplySlot>>,
}

impl AsyncTcpListener {
    /// Listens on `port` of the caller's host with an accept queue of `backlog`.
    pub async fn bind(
        caller: &Caller,
        port: u16,
        backlog: usize,
    ) -> Result<AsyncTcpListener, BindError> {
        match answer(caller.submit(Op::TcpListen { port, backlog })).await {
            Reply::Done => Ok(AsyncTcpListener {
                caller: caller.clone(),
                port,
                accepting: None,
            }),
            r => Err(failed(r)),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next connection, once one is established and queued.
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(AsyncTcpStream, SocketAddrV4), SocketError>> {
        let port = self.port;
        let slot = self
            .accepting
            .get_or_insert_with(|| self.caller.submit(Op::TcpAccept { port }));
        let reply = ready!(slot.poll(cx));
        self.accepting = None;
        Poll::Ready(match reply {
            Reply::Stream { h, local, remote } => Ok((
                AsyncTcpStream::new(self.caller.clone(), h, local, remote),
                remote,
            )),
            r => Err(failed(r)),
        })
    }

    /// Waits for a connection.
    pub async fn accept(&mut self) -> Result<(AsyncTcpStream, SocketAddrV4), SocketError> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }
}

impl Drop for AsyncTcpListener {
    fn drop(&mut self) {
        // A connection accepted for nobody is reset by the runtime (it gets the answer
        // back from the abandoned slot).
        if let Some(Reply::Stream { h, .. }) = self.accepting.take().and_then(|s| s.abandon()) {
            fire(&self.caller, Op::TcpClose { h });
        }
        fire(&self.caller, Op::TcpUnlisten { port: self.port });
    }
}

/// A TCP connection with async reads and writes. Dropping it closes it.
#[derive(Debug)]
pub struct AsyncTcpStream {
    caller: Caller,
    h: TcpHandle,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// The read in flight and what an earlier read brought beyond the caller's buffer.
    reading: Option<Arc<ReplySlot>>,
    unread: Vec<u8>,
    unread_at: usize,
    /// The chunk being handed to the stack: its bytes, how many are queued, and the
    /// write call in flight.
    chunk: Vec<u8>,
    chunk_at: usize,
    writing: Option<Arc<ReplySlot>>,
    /// The FIN call in flight, and whether it was answered.
    closing: Option<Arc<ReplySlot>>,
    shut: bool,
}

impl AsyncTcpStream {
    fn new(caller: Caller, h: TcpHandle, local: SocketAddrV4, remote: SocketAddrV4) -> Self {
        AsyncTcpStream {
            caller,
            h,
            local,
            remote,
            reading: None,
            unread: Vec::new(),
            unread_at: 0,
            chunk: Vec::new(),
            chunk_at: 0,
            writing: None,
            closing: None,
            shut: false,
        }
    }

    /// Opens a connection from the caller's host (RFC 9293 3.5's handshake, SYN retries
    /// and all); the error says why it failed. Wrap it in a timeout of your executor to
    /// bound the wait; a connect dropped before it completes is reset.
    pub async fn connect(
        caller: &Caller,
        remote: SocketAddrV4,
    ) -> Result<AsyncTcpStream, ConnectError> {
        let slot = caller.submit(Op::TcpConnect {
            remote,
            started: None,
        });
        // Dropped before the answer: the runtime gets it back and resets the connection.
        struct Pending<'a>(&'a Caller, Option<Arc<ReplySlot>>);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                if let Some(Reply::Stream { h, .. }) = self.1.take().and_then(|s| s.abandon()) {
                    fire(self.0, Op::TcpClose { h });
                }
            }
        }
        let mut pending = Pending(caller, Some(slot));
        let reply = poll_fn(|cx| pending.1.as_ref().expect("until answered").poll(cx)).await;
        pending.1 = None;
        match reply {
            Reply::Stream { h, local, remote } => {
                Ok(AsyncTcpStream::new(caller.clone(), h, local, remote))
            }
            r => Err(failed(r)),
        }
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.remote
    }

    /// Disables (or enables) Nagle's algorithm (RFC 9293 3.7.4), as TCP_NODELAY.
    pub async fn set_nodelay(&self, nodelay: bool) -> Result<(), SocketError> {
        let op = Op::TcpSetNodelay { h: self.h, nodelay };
        match answer(self.caller.submit(op)).await {
            Reply::Done => Ok(()),
            r => Err(failed(r)),
        }
    }

    /// Reads into `buf` what has arrived, waiting for at least one byte; 0 at the end of
    /// the stream (the peer's FIN) or for an empty `buf`.
    pub fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, SocketError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.unread_at == self.unread.len() {
            let (h, max) = (self.h, buf.len().max(WRITE_CHUNK));
            let slot = self
                .reading
                .get_or_insert_with(|| self.caller.submit(Op::TcpRead { h, max }));
            let reply = ready!(slot.poll(cx));
            self.reading = None;
            match reply {
                Reply::Data(data) => {
                    self.unread = data;
                    self.unread_at = 0;
                }
                r => return Poll::Ready(Err(failed(r))),
            }
        }
        let rest = &self.unread[self.unread_at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.unread_at += n;
        Poll::Ready(Ok(n))
    }

    /// Reads what has arrived into `buf` (at least one byte; 0 at the end of the stream).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SocketError> {
        poll_fn(|cx| self.poll_read_some(cx, buf)).await
    }

    /// Moves the chunk on: hands the stack what is not queued yet, until all of it is.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        while self.chunk_at < self.chunk.len() {
            let (h, caller) = (self.h, &self.caller);
            let rest = &self.chunk[self.chunk_at..];
            let slot = self.writing.get_or_insert_with(|| {
                caller.submit(Op::TcpWrite {
                    h,
                    data: rest.to_vec(),
                })
            });
            let reply = ready!(slot.poll(cx));
            self.writing = None;
            match reply {
                Reply::Written(n) => self.chunk_at += n,
                r => {
                    // The connection failed: what is left can never be sent.
                    self.chunk.clear();
                    self.chunk_at = 0;
                    return Poll::Ready(Err(failed(r)));
                }
            }
        }
        self.chunk.clear();
        self.chunk_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Accepts up to [`WRITE_CHUNK`] bytes of `data` once the previous chunk is queued
    /// in the stack; returns how many it took (they will be sent).
    pub fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, SocketError>> {
        if self.shut || self.closing.is_some() {
            return Poll::Ready(Err(SocketError::SendClosed));
        }
        ready!(self.poll_chunk(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(WRITE_CHUNK);
        self.chunk.extend_from_slice(&data[..n]);
        // Start handing it over now; a pending answer is taken by the next poll.
        let _ = self.poll_chunk(cx);
        Poll::Ready(Ok(n))
    }

    /// Waits until every accepted byte is queued in the stack (not acknowledged).
    pub fn poll_flush_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.poll_chunk(cx)
    }

    /// Flushes, then closes the sending side (a FIN after the queued data, RFC 9293
    /// 3.10.4); reads still work.
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_chunk(cx))?;
        let (h, caller) = (self.h, &self.caller);
        let slot = self
            .closing
            .get_or_insert_with(|| caller.submit(Op::TcpShutdown { h }));
        let reply = ready!(slot.poll(cx));
        self.closing = None;
        match reply {
            Reply::Done => {
                self.shut = true;
                Poll::Ready(Ok(()))
            }
            r => Poll::Ready(Err(failed(r))),
        }
    }

    /// Writes all of `data` (queued in the stack when this returns).
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), SocketError> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_write_some(cx, data)).await?;
            data = &data[n..];
        }
        self.flush().await
    }

    pub async fn flush(&mut self) -> Result<(), SocketError> {
        poll_fn(|cx| self.poll_flush_chunk(cx)).await
    }

    pub async fn shutdown(&mut self) -> Result<(), SocketError> {
        poll_fn(|cx| self.poll_shutdown_write(cx)).await
    }
}

impl Drop for AsyncTcpStream {
    fn drop(&mut self) {
        for slot in [&self.reading, &self.writing, &self.closing]
            .into_iter()
            .flatten()
        {
            slot.abandon();
        }
        fire(&self.caller, Op::TcpClose { h: self.h });
    }
}

#[cfg(feature = "tokio")]
mod tokio_io {
    //! `tokio::io::AsyncRead` and `AsyncWrite`, so tokio's codecs, `copy` and the rest
    //! of its ecosystem run over ustack.
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::AsyncTcpStream;

    impl AsyncRead for AsyncTcpStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = std::task::ready!(this.poll_read_some(cx, buf.initialize_unfilled()))?;
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for AsyncTcpStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_write_some(cx, data).map_err(Into::into)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_flush_chunk(cx).map_err(Into::into)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_shutdown_write(cx).map_err(Into::into)
        }
    }
}

/// A UDP socket whose sends and receives are futures.
#[derive(Debug)]
pub struct AsyncUdpSocket {
    caller: Caller,
    u: UdpHandle,
    local: SocketAddrV4,
    /// The receive in flight: kept across dropped `recv_from` futures.
    receiving: Option<Arc<ReplySlot>>,
}

impl AsyncUdpSocket {
    /// Binds on the caller's host; port 0 picks an ephemeral port.
    pub async fn bind(caller: &Caller, local: SocketAddrV4) -> Result<AsyncUdpSocket, BindError> {
        match answer(caller.submit(Op::UdpBind { local })).await {
            Reply::Udp { u, local } => Ok(AsyncUdpSocket {
                caller: caller.clone(),
                u,
                local,
                receiving: None,
            }),
            r => Err(failed(r)),
        }
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Sends one datagram (RFC 768); the error says why it could not leave.
    pub async fn send_to(&self, data: &[u8], dst: SocketAddrV4) -> Result<usize, SocketError> {
        let op = Op::UdpSendTo {
            u: self.u,
            dst,
            data: data.to_vec(),
        };
        match answer(self.caller.submit(op)).await {
            Reply::Written(n) => Ok(n),
            r => Err(failed(r)),
        }
    }

    /// The next datagram, truncated to `buf` as with std, and who sent it.
    pub fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, SocketAddrV4), SocketError>> {
        // The whole datagram is asked for, so a later, larger buffer is not cut short by
        // an earlier one; what does not fit is dropped, as recvfrom(2) does.
        let u = self.u;
        let slot = self
            .receiving
            .get_or_insert_with(|| self.caller.submit(Op::UdpRecvFrom { u, max: 65_535 }));
        let reply = ready!(slot.poll(cx));
        self.receiving = None;
        Poll::Ready(match reply {
            Reply::Datagram(data, from) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            r => Err(failed(r)),
        })
    }

    pub async fn recv_from(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddrV4), SocketError> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }
}

impl Drop for AsyncUdpSocket {
    fn drop(&mut self) {
        if let Some(slot) = self.receiving.take() {
            slot.abandon();
        }
        fire(&self.caller, Op::UdpClose { u: self.u });
    }
}

/// Sleeps on the runtime's clock (virtual time in a simulation); false if the runtime
/// is gone instead.
pub async fn sleep(caller: &Caller, length: crate::link::Duration) -> bool {
    let op = Op::Sleep {
        until: None,
        length,
    };
    matches!(answer(caller.submit(op)).await, Reply::Done)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::SocketAddrV4;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use futures_util::stream::{FuturesUnordered, StreamExt};

    use super::*;
    use crate::link::{Duration, Instant, SimConfig};
    use crate::runtime::{HostId, RuntimeError, SimWorld, WorldError};
    use crate::sim::{host_addr, two_hosts};
    use crate::socket::{ConnectError, SocketError};
    use crate::transport::stack::StackConfig;
    use crate::transport::tcp::ConnectionError;

    const PORT: u16 = 4000;

    fn world(seed: u64) -> (SimWorld, HostId, HostId) {
        println!("seed {seed}");
        let (world, client, server, _) =
            two_hosts(SimConfig::default(), StackConfig::default(), seed).expect("sim");
        (world, client, server)
    }

    fn data(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + seed * 7) as u8).collect()
    }

    /// Reads until the end of the stream.
    async fn read_to_end(s: &mut AsyncTcpStream) -> Result<Vec<u8>, SocketError> {
        let (mut all, mut buf) = (Vec::new(), vec![0u8; 1000]);
        loop {
            match s.read(&mut buf).await? {
                0 => return Ok(all),
                n => all.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Echoes one connection until the peer's FIN, then closes its own side.
    async fn echo(mut s: AsyncTcpStream) -> Result<usize, SocketError> {
        let (mut buf, mut moved) = (vec![0u8; 3000], 0);
        loop {
            match s.read(&mut buf).await? {
                0 => break,
                n => {
                    s.write_all(&buf[..n]).await?;
                    moved += n;
                }
            }
        }
        s.shutdown().await?;
        Ok(moved)
    }

    /// Issue 12: one async participant (one thread) serves `n` connections at once, a
    /// second opens them at once and checks every byte. Returns the virtual time it took.
    fn many_connections(seed: u64, n: usize, len: usize) -> Instant {
        let (mut world, client, server) = world(seed);
        let served = world.spawn_async_daemon(server, "async echo", move |caller| async move {
            let mut listener = AsyncTcpListener::bind(&caller, PORT, n)
                .await
                .expect("bind");
            let mut conns = FuturesUnordered::new();
            for _ in 0..n {
                let (s, _) = listener.accept().await?;
                conns.push(echo(s));
            }
            let mut total = 0;
            while let Some(moved) = conns.next().await {
                total += moved?;
            }
            Ok::<usize, SocketError>(total)
        });
        let checked = world.spawn_async(client, "async clients", move |caller| async move {
            let remote = SocketAddrV4::new(host_addr(2), PORT);
            let mut clients = FuturesUnordered::new();
            for i in 0..n {
                let caller = caller.clone();
                clients.push(async move {
                    let mut s = AsyncTcpStream::connect(&caller, remote)
                        .await
                        .map_err(|e| format!("connect {i}: {e}"))?;
                    let sent = data(len, i);
                    s.write_all(&sent).await.map_err(|e| e.to_string())?;
                    s.shutdown().await.map_err(|e| e.to_string())?;
                    let back = read_to_end(&mut s).await.map_err(|e| e.to_string())?;
                    if back != sent {
                        return Err(format!(
                            "connection {i}: {} bytes came back wrong",
                            back.len()
                        ));
                    }
                    Ok::<(), String>(())
                });
            }
            while let Some(done) = clients.next().await {
                done?;
            }
            Ok::<(), String>(())
        });
        world.run(Duration::from_secs(600)).expect("served");
        checked
            .join()
            .expect("no panic")
            .expect("ran")
            .expect("echoed");
        assert_eq!(
            served
                .join()
                .expect("no panic")
                .expect("ran")
                .expect("served"),
            n * len
        );
        world.now()
    }

    #[test]
    fn one_async_participant_serves_many_connections_at_once() {
        many_connections(12, 200, 20_000);
    }

    /// The world resumes async participants only at the end of a round, with every
    /// answer of the round in place: the same seed gives the same run, to the tick.
    #[test]
    fn async_runs_are_deterministic() {
        let first = many_connections(5, 40, 50_000);
        assert_eq!(many_connections(5, 40, 50_000), first);
    }

    /// A read whose future is dropped before data came stays with the stream: the next
    /// read gets the data (cancel safety, as `tokio::select!` needs).
    #[test]
    fn a_dropped_read_loses_no_data() {
        let (mut world, client, server) = world(3);
        world.spawn_async_daemon(server, "late writer", |caller| async move {
            let mut listener = AsyncTcpListener::bind(&caller, PORT, 4)
                .await
                .expect("bind");
            let (mut s, _) = listener.accept().await?;
            sleep(&caller, Duration::from_millis(500)).await;
            s.write_all(b"after the drop").await?;
            s.shutdown().await?;
            // Keep the stream until the client has read it all.
            read_to_end(&mut s).await
        });
        let got = world.spawn_async(client, "reader", |caller| async move {
            let remote = SocketAddrV4::new(host_addr(2), PORT);
            let mut s = AsyncTcpStream::connect(&caller, remote)
                .await
                .expect("connect");
            let mut buf = [0u8; 64];
            {
                let mut read = pin!(s.read(&mut buf));
                struct Noop;
                impl Wake for Noop {
                    fn wake(self: Arc<Self>) {}
                }
                let waker = Waker::from(Arc::new(Noop));
                let mut cx = Context::from_waker(&waker);
                assert!(read.as_mut().poll(&mut cx).is_pending());
            }
            sleep(&caller, Duration::from_secs(1)).await;
            let got = read_to_end(&mut s).await.expect("read");
            s.shutdown().await.expect("fin");
            got
        });
        world.run(Duration::from_secs(60)).expect("ran");
        assert_eq!(got.join().unwrap().unwrap(), b"after the drop");
    }

    #[test]
    fn connecting_to_a_closed_port_is_refused() {
        let (mut world, client, _server) = world(4);
        let refused = world.spawn_async(client, "connect", |caller| async move {
            let remote = SocketAddrV4::new(host_addr(2), 9999);
            AsyncTcpStream::connect(&caller, remote).await.map(|_| ())
        });
        world.run(Duration::from_secs(60)).expect("ran");
        let err = refused.join().unwrap().unwrap().unwrap_err();
        assert!(
            matches!(err, ConnectError::Tcp(ConnectionError::Refused)),
            "{err:?}"
        );
    }

    #[test]
    fn udp_datagrams_both_ways() {
        let (mut world, client, server) = world(6);
        world.spawn_async_daemon(server, "udp echo", |caller| async move {
            let mut s = AsyncUdpSocket::bind(&caller, SocketAddrV4::new(host_addr(2), PORT))
                .await
                .expect("bind");
            let mut buf = [0u8; 100];
            loop {
                let (n, from) = s.recv_from(&mut buf).await?;
                s.send_to(&buf[..n], from).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), SocketError>(())
        });
        let got = world.spawn_async(client, "udp client", |caller| async move {
            let any = SocketAddrV4::new(host_addr(1), 0);
            let mut s = AsyncUdpSocket::bind(&caller, any).await.expect("bind");
            let mut got = Vec::new();
            for i in 0..5u8 {
                s.send_to(&[i; 10], SocketAddrV4::new(host_addr(2), PORT))
                    .await
                    .expect("send");
                let mut buf = [0u8; 100];
                let (n, from) = s.recv_from(&mut buf).await.expect("recv");
                assert_eq!(from, SocketAddrV4::new(host_addr(2), PORT));
                got.push(buf[..n].to_vec());
            }
            got
        });
        world.run(Duration::from_secs(60)).expect("ran");
        let got = got.join().unwrap().unwrap();
        assert_eq!(got, (0..5u8).map(|i| vec![i; 10]).collect::<Vec<_>>());
    }

    /// A future that waits on a peer that never sends, with nothing else scheduled, is
    /// a deadlock: the world says so and the read fails with it instead of hanging.
    #[test]
    fn a_stuck_async_participant_is_a_deadlock_not_a_hang() {
        let (mut world, client, server) = world(8);
        world.spawn_async_daemon(server, "silent", |caller| async move {
            let mut listener = AsyncTcpListener::bind(&caller, PORT, 4)
                .await
                .expect("bind");
            let (s, _) = listener.accept().await?;
            // Holds the connection and waits on nothing the world can give.
            std::future::pending::<()>().await;
            drop(s);
            Ok::<(), SocketError>(())
        });
        let read = world.spawn_async(client, "reader", |caller| async move {
            let remote = SocketAddrV4::new(host_addr(2), PORT);
            let mut s = AsyncTcpStream::connect(&caller, remote)
                .await
                .expect("connect");
            let mut buf = [0u8; 10];
            s.read(&mut buf).await
        });
        assert_eq!(
            world.run(Duration::from_secs(600)),
            Err(WorldError::Deadlock)
        );
        let err = read.join().unwrap().unwrap().unwrap_err();
        assert!(
            matches!(err, SocketError::Runtime(RuntimeError::Deadlock)),
            "{err:?}"
        );
    }

    /// With the `tokio` feature the stream is a `tokio::io::AsyncRead + AsyncWrite`:
    /// tokio's own helpers (split, copy, read_to_end) run over it, here on the
    /// simulator's executor.
    #[cfg(feature = "tokio")]
    #[test]
    fn tokio_io_traits_carry_a_stream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut world, client, server) = world(9);
        world.spawn_async_daemon(server, "tokio copy", |caller| async move {
            let mut listener = AsyncTcpListener::bind(&caller, PORT, 4)
                .await
                .expect("bind");
            let (s, _) = listener.accept().await?;
            let (mut r, mut w) = tokio::io::split(s);
            tokio::io::copy(&mut r, &mut w).await?;
            w.shutdown().await?;
            Ok::<(), std::io::Error>(())
        });
        let back = world.spawn_async(client, "tokio client", |caller| async move {
            let remote = SocketAddrV4::new(host_addr(2), PORT);
            let mut s = AsyncTcpStream::connect(&caller, remote)
                .await
                .expect("connect");
            let sent = data(300_000, 1);
            s.write_all(&sent).await.expect("write");
            AsyncWriteExt::shutdown(&mut s).await.expect("fin");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read");
            back == sent
        });
        world.run(Duration::from_secs(60)).expect("ran");
        assert!(back.join().unwrap().unwrap());
    }
}
