//! Errors of a connection's calls, typed per operation (smoltcp's `SendError` /
//! `RecvError` shape): how a connection ended is one enum, [`ConnectionError`], and each
//! call's error wraps it together with the ways that call can be misused.

/// How a connection ended abnormally, as the application sees it; what
/// [`Connection::error`](super::Connection::error) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConnectionError {
    /// The peer answered our SYN with a RST (RFC 9293 section 3.10.7.3), a RST ended
    /// SYN-RECEIVED, or an ICMP hard error arrived in SYN-SENT (RFC 1122 section
    /// 4.2.3.9).
    #[error("connection refused")]
    Refused,
    /// The peer reset a synchronized connection (RFC 9293 section 3.10.7.4).
    #[error("connection reset by peer")]
    Reset,
    /// Retransmissions, keep-alive probes or the user timeout ran out (RFC 9293 section
    /// 3.8.3).
    #[error("connection timed out")]
    TimedOut,
    /// The application aborted it (RFC 9293 section 3.10.5).
    #[error("connection aborted")]
    Aborted,
}

/// Why [`Connection::send`](super::Connection::send) queued nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The application already closed its sending side.
    #[error("the sending side is shut down")]
    Closed,
    /// The connection is not open (nor opening) for sending.
    #[error("not connected")]
    NotConnected,
}

/// Why [`Connection::recv`](super::Connection::recv) returned no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RecvError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// End of stream: the peer sent its FIN and every byte before it was read.
    #[error("end of stream")]
    Finished,
}
