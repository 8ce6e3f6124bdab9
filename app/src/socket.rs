//! Blocking sockets over the stack runtime, shaped like std's: [`TcpListener`],
//! [`TcpStream`] (std::io::Read + Write), [`UdpSocket`]. Errors are typed per operation
//! and convert into `std::io::Error` with the `ErrorKind` std's sockets use on Linux.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::link::Duration;
use crate::runtime::{CallError, Caller, Op, Reply, RuntimeError, TcpInfo};
use crate::transport::stack::{StackError, TcpHandle, UdpSendFailure};
use crate::transport::tcp::{ConnectionError, RecvError, SendError};
use crate::transport::udp::{BindError as UdpBindError, UdpHandle};

fn kind_of_tcp(e: ConnectionError) -> io::ErrorKind {
    match e {
        ConnectionError::Refused => io::ErrorKind::ConnectionRefused,
        ConnectionError::Reset => io::ErrorKind::ConnectionReset,
        ConnectionError::TimedOut => io::ErrorKind::TimedOut,
        ConnectionError::Aborted => io::ErrorKind::ConnectionAborted,
    }
}

/// Why a call on an open socket (read, write, accept, send, receive...) failed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The connection failed (how it ended).
    #[error(transparent)]
    Tcp(#[from] ConnectionError),
    #[error("the sending side is shut down")]
    SendClosed,
    #[error("not connected")]
    NotConnected,
    #[error("the socket is closed")]
    Closed,
    #[error("the operation timed out")]
    Timeout,
    #[error(transparent)]
    Send(UdpSendFailure),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why `TcpStream::connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Refused, reset or timed out after the SYN retries.
    #[error(transparent)]
    Tcp(#[from] ConnectionError),
    #[error("no route to host {0}")]
    NoRoute(Ipv4Addr),
    #[error("no free ephemeral port")]
    NoPort,
    /// The connection was removed before it was established.
    #[error("the socket is closed")]
    Closed,
    /// The caller's connect timeout passed.
    #[error("the operation timed out")]
    Timeout,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why `TcpListener::bind` or `UdpSocket::bind` failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("address in use: port {0}")]
    AddrInUse(u16),
    #[error("no free ephemeral port")]
    NoPort,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl SocketError {
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            SocketError::Tcp(e) => kind_of_tcp(*e),
            SocketError::SendClosed => io::ErrorKind::BrokenPipe,
            SocketError::NotConnected => io::ErrorKind::NotConnected,
            SocketError::Closed => io::ErrorKind::NotConnected,
            // std on Linux reports an elapsed read timeout as EAGAIN.
            SocketError::Timeout => io::ErrorKind::WouldBlock,
            SocketError::Send(_) => io::ErrorKind::Other,
            SocketError::Runtime(e) => e.kind(),
        }
    }
}

impl ConnectError {
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ConnectError::Tcp(e) => kind_of_tcp(*e),
            ConnectError::NoRoute(_) => io::ErrorKind::HostUnreachable,
            ConnectError::NoPort => io::ErrorKind::AddrNotAvailable,
            ConnectError::Closed => io::ErrorKind::NotConnected,
            ConnectError::Timeout => io::ErrorKind::WouldBlock,
            ConnectError::Runtime(e) => e.kind(),
        }
    }
}

impl BindError {
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            BindError::AddrInUse(_) => io::ErrorKind::AddrInUse,
            BindError::NoPort => io::ErrorKind::AddrNotAvailable,
            BindError::Runtime(e) => e.kind(),
        }
    }
}

/// `From<E> for io::Error` with the kind each error names.
macro_rules! into_io_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for io::Error {
            fn from(e: $ty) -> io::Error {
                io::Error::new(e.kind(), e)
            }
        }
    )*};
}

into_io_error!(SocketError, ConnectError, BindError);

/// An error a call cannot produce for this operation: the runtime mixed up replies.
fn wrong(e: &CallError) -> RuntimeError {
    RuntimeError::WrongReply(match e {
        CallError::Stack(_) => "stack error",
        CallError::UdpBind(_) => "UDP bind error",
        CallError::UdpSend(_) => "UDP send error",
        CallError::UdpClosed => "UDP closed",
        CallError::Deadline => "deadline",
        CallError::Ended(_) => "runtime error",
    })
}

impl From<CallError> for SocketError {
    fn from(e: CallError) -> SocketError {
        match e {
            CallError::Stack(
                StackError::Tcp(t)
                | StackError::Send(SendError::Connection(t))
                | StackError::Recv(RecvError::Connection(t)),
            ) => SocketError::Tcp(t),
            CallError::Stack(StackError::Send(SendError::Closed)) => SocketError::SendClosed,
            CallError::Stack(StackError::Send(SendError::NotConnected)) => {
                SocketError::NotConnected
            }
            // The runtime answers a read at end of stream with no data, never with this.
            CallError::Stack(StackError::Recv(RecvError::Finished) | StackError::BadHandle)
            | CallError::UdpClosed => SocketError::Closed,
            CallError::UdpSend(f) => SocketError::Send(f),
            CallError::Deadline => SocketError::Timeout,
            CallError::Ended(r) => SocketError::Runtime(r),
            other => SocketError::Runtime(wrong(&other)),
        }
    }
}

impl From<CallError> for ConnectError {
    fn from(e: CallError) -> ConnectError {
        match e {
            CallError::Stack(StackError::Tcp(t)) => ConnectError::Tcp(t),
            CallError::Stack(StackError::NoRoute(ip)) => ConnectError::NoRoute(ip),
            CallError::Stack(StackError::NoEphemeralPort(_)) => ConnectError::NoPort,
            CallError::Stack(StackError::BadHandle) => ConnectError::Closed,
            CallError::Deadline => ConnectError::Timeout,
            CallError::Ended(r) => ConnectError::Runtime(r),
            other => ConnectError::Runtime(wrong(&other)),
        }
    }
}

impl From<CallError> for BindError {
    fn from(e: CallError) -> BindError {
        match e {
            CallError::Stack(StackError::AddrInUse(p))
            | CallError::UdpBind(UdpBindError::AddrInUse(p)) => BindError::AddrInUse(p),
            CallError::UdpBind(UdpBindError::NoEphemeralPort) => BindError::NoPort,
            CallError::Ended(r) => BindError::Runtime(r),
            other => BindError::Runtime(wrong(&other)),
        }
    }
}

/// The error for a reply that is not the answer `E`'s operation expects.
pub(crate) fn failed<E: From<CallError>>(r: Reply) -> E {
    match r {
        Reply::Err(e) => e.into(),
        other => CallError::Ended(RuntimeError::WrongReply(other.name())).into(),
    }
}

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpListener {
    caller: Caller,
    port: u16,
    timeout: Option<Duration>,
}

impl TcpListener {
    /// Listens on `port` of the caller's host with an accept queue of `backlog`.
    pub fn bind(caller: &Caller, port: u16, backlog: usize) -> Result<TcpListener, BindError> {
        match caller.call(Op::TcpListen { port, backlog }, None) {
            Reply::Done => Ok(TcpListener {
                caller: caller.clone(),
                port,
                timeout: None,
            }),
            r => Err(failed(r)),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Limits how long `accept` blocks (`None`: for ever).
    pub fn set_accept_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Waits for a connection.
    pub fn accept(&self) -> Result<(TcpStream, SocketAddrV4), SocketError> {
        match self
            .caller
            .call(Op::TcpAccept { port: self.port }, self.timeout)
        {
            Reply::Stream { h, local, remote } => Ok((
                TcpStream::new(self.caller.clone(), h, local, remote),
                remote,
            )),
            r => Err(failed(r)),
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = self.caller.call(Op::TcpUnlisten { port: self.port }, None);
    }
}

/// A TCP connection. Dropping it closes it (FIN, or RST if unread data remains).
#[derive(Debug)]
pub struct TcpStream {
    caller: Caller,
    h: TcpHandle,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// False once [`TcpStream::into_raw`] handed the connection over: dropping does not
    /// close it then.
    owned: bool,
}

impl TcpStream {
    fn new(caller: Caller, h: TcpHandle, local: SocketAddrV4, remote: SocketAddrV4) -> TcpStream {
        TcpStream {
            caller,
            h,
            local,
            remote,
            read_timeout: None,
            write_timeout: None,
            owned: true,
        }
    }

    /// The connection's runtime and handle, without closing it: whoever takes them (a
    /// service inside the runtime) closes it.
    pub(crate) fn into_raw(mut self) -> (Caller, TcpHandle) {
        self.owned = false;
        (self.caller.clone(), self.h)
    }

    /// Opens a connection from the caller's host; blocks until established or failed
    /// (refused, timed out after the SYN retries, or after `timeout` if given).
    pub fn connect(
        caller: &Caller,
        remote: SocketAddrV4,
        timeout: Option<Duration>,
    ) -> Result<TcpStream, ConnectError> {
        match caller.call(
            Op::TcpConnect {
                remote,
                started: None,
            },
            timeout,
        ) {
            Reply::Stream { h, local, remote } => {
                Ok(TcpStream::new(caller.clone(), h, local, remote))
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

    /// Limits how long `read` blocks; an elapsed timeout is `ErrorKind::WouldBlock`, as
    /// with std on Linux.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), SocketError> {
        match self
            .caller
            .call(Op::TcpSetNodelay { h: self.h, nodelay }, None)
        {
            Reply::Done => Ok(()),
            r => Err(failed(r)),
        }
    }

    /// Closes the sending side; the peer reads end of stream.
    pub fn shutdown(&self) -> Result<(), SocketError> {
        match self.caller.call(Op::TcpShutdown { h: self.h }, None) {
            Reply::Done => Ok(()),
            r => Err(failed(r)),
        }
    }

    /// State, RTT estimate and counters of the connection.
    pub fn info(&self) -> Result<TcpInfo, SocketError> {
        match self.caller.call(Op::TcpInfo { h: self.h }, None) {
            Reply::Info(info) => Ok(*info),
            r => Err(failed(r)),
        }
    }

    /// Reads up to `max` bytes; an empty vector is end of stream.
    pub fn read_vec(&self, max: usize) -> Result<Vec<u8>, SocketError> {
        match self
            .caller
            .call(Op::TcpRead { h: self.h, max }, self.read_timeout)
        {
            Reply::Data(data) => Ok(data),
            r => Err(failed(r)),
        }
    }
}

impl io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let data = self.read_vec(buf.len())?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

impl io::Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.caller.call(
            Op::TcpWrite {
                h: self.h,
                data: buf.to_vec(),
            },
            self.write_timeout,
        ) {
            Reply::Written(n) => Ok(n),
            r => Err(failed::<SocketError>(r).into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = self.caller.call(Op::TcpClose { h: self.h }, None);
    }
}

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    caller: Caller,
    u: UdpHandle,
    local: SocketAddrV4,
    read_timeout: Option<Duration>,
}

impl UdpSocket {
    /// Binds on the caller's host; port 0 picks an ephemeral port.
    pub fn bind(caller: &Caller, local: SocketAddrV4) -> Result<UdpSocket, BindError> {
        match caller.call(Op::UdpBind { local }, None) {
            Reply::Udp { u, local } => Ok(UdpSocket {
                caller: caller.clone(),
                u,
                local,
                read_timeout: None,
            }),
            r => Err(failed(r)),
        }
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    pub fn send_to(&self, data: &[u8], dst: SocketAddrV4) -> io::Result<usize> {
        match self.caller.call(
            Op::UdpSendTo {
                u: self.u,
                dst,
                data: data.to_vec(),
            },
            None,
        ) {
            Reply::Written(n) => Ok(n),
            r => Err(failed::<SocketError>(r).into()),
        }
    }

    /// Receives one datagram; a datagram longer than `buf` is truncated, as with std.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        match self.caller.call(
            Op::UdpRecvFrom {
                u: self.u,
                max: buf.len(),
            },
            self.read_timeout,
        ) {
            Reply::Datagram(data, from) => {
                buf[..data.len()].copy_from_slice(&data);
                Ok((data.len(), from))
            }
            r => Err(failed::<SocketError>(r).into()),
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let _ = self.caller.call(Op::UdpClose { u: self.u }, None);
    }
}
