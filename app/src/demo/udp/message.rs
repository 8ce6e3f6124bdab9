//! The ticket office's messages and their wire format, and a UDP endpoint that speaks
//! them.
//!
//! Every message is a UDP payload that starts with a kind byte and the purchase it is
//! about (big-endian): `kind client:u16 request:u32`. Then, by kind:
//! - BUY `b'B'`: nothing more (client to server);
//! - REPLY `b'R'`: `status:u8 seat:u32` (server to client; status 0: the seat, 1: sold
//!   out, 2: not the leader, ask the other server);
//! - REPLICATE `b'P'`: the REPLY fields, the primary's proposal (primary to backup);
//! - ACK `b'A'`: `ok:u8 status:u8 seat:u32`, the backup's decision, which the primary
//!   commits (ok 0: fenced, the backup leads; status and seat are then 0).
//!
//! A datagram that is not exactly one of these is a [`MessageError`]: the endpoint counts
//! it and drops it.

use std::io::{self, ErrorKind};
use std::net::SocketAddrV4;

use crate::link::Duration;
use crate::runtime::Caller;
use crate::socket::UdpSocket;

const KIND_BUY: u8 = b'B';
const KIND_REPLY: u8 = b'R';
const KIND_REPLICATE: u8 = b'P';
const KIND_ACK: u8 = b'A';

const STATUS_SEAT: u8 = 0;
const STATUS_SOLD_OUT: u8 = 1;
const STATUS_NOT_LEADER: u8 = 2;

/// Offsets of the common header.
const KIND: usize = 0;
const CLIENT: usize = 1;
const REQUEST: usize = 3;
const HEADER_LEN: usize = 7;
/// An answer, `status:u8 seat:u32`, relative to where it starts.
const STATUS: usize = 0;
const SEAT: usize = 1;
const ANSWER_LEN: usize = 5;
/// ACK: the `ok` flag, then the answer.
const ACK_OK: usize = HEADER_LEN;
const ACK_ANSWER: usize = HEADER_LEN + 1;

/// Who is buying: the client's id and its request number (the reply cache's key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Purchase {
    pub client: u16,
    pub request: u32,
}

/// A server's answer to a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Seat(u32),
    SoldOut,
    /// This server no longer leads: ask the other one.
    NotLeader,
}

/// One datagram of the ticket office.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Buy {
        who: Purchase,
    },
    Reply {
        who: Purchase,
        answer: Answer,
    },
    Replicate {
        who: Purchase,
        proposal: Answer,
    },
    /// `None`: fenced, the backup leads now.
    Ack {
        who: Purchase,
        decision: Option<Answer>,
    },
}

/// Why a datagram is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("empty datagram")]
    Empty,
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("message kind {kind:#04x} is {expected} bytes, not {got}")]
    Length {
        kind: u8,
        expected: usize,
        got: usize,
    },
    #[error("unknown answer status {0}")]
    Status(u8),
    #[error("the ACK flag must be 0 or 1, not {0}")]
    AckFlag(u8),
}

impl Answer {
    fn encode(self, out: &mut Vec<u8>) {
        let (status, seat) = match self {
            Answer::Seat(seat) => (STATUS_SEAT, seat),
            Answer::SoldOut => (STATUS_SOLD_OUT, 0),
            Answer::NotLeader => (STATUS_NOT_LEADER, 0),
        };
        out.push(status);
        out.extend_from_slice(&seat.to_be_bytes());
    }

    /// Decodes the `ANSWER_LEN` bytes of `b`.
    fn decode(b: &[u8]) -> Result<Answer, MessageError> {
        match b[STATUS] {
            STATUS_SEAT => Ok(Answer::Seat(be_u32(&b[SEAT..]))),
            STATUS_SOLD_OUT => Ok(Answer::SoldOut),
            STATUS_NOT_LEADER => Ok(Answer::NotLeader),
            other => Err(MessageError::Status(other)),
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Buy { .. } => KIND_BUY,
            Message::Reply { .. } => KIND_REPLY,
            Message::Replicate { .. } => KIND_REPLICATE,
            Message::Ack { .. } => KIND_ACK,
        }
    }

    fn who(&self) -> Purchase {
        match *self {
            Message::Buy { who }
            | Message::Reply { who, .. }
            | Message::Replicate { who, .. }
            | Message::Ack { who, .. } => who,
        }
    }

    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        let who = self.who();
        let mut out = Vec::with_capacity(HEADER_LEN + 1 + ANSWER_LEN);
        out.push(self.kind());
        out.extend_from_slice(&who.client.to_be_bytes());
        out.extend_from_slice(&who.request.to_be_bytes());
        match *self {
            Message::Buy { .. } => {}
            Message::Reply { answer, .. }
            | Message::Replicate {
                proposal: answer, ..
            } => answer.encode(&mut out),
            Message::Ack { decision, .. } => {
                out.push(u8::from(decision.is_some()));
                decision.unwrap_or(Answer::Seat(0)).encode(&mut out);
            }
        }
        out
    }

    /// Reads one datagram; anything but exactly one message is an error.
    pub fn decode(b: &[u8]) -> Result<Message, MessageError> {
        let kind = *b.first().ok_or(MessageError::Empty)?;
        let expected = match kind {
            KIND_BUY => HEADER_LEN,
            KIND_REPLY | KIND_REPLICATE => HEADER_LEN + ANSWER_LEN,
            KIND_ACK => HEADER_LEN + 1 + ANSWER_LEN,
            other => return Err(MessageError::UnknownKind(other)),
        };
        if b.len() != expected {
            return Err(MessageError::Length {
                kind,
                expected,
                got: b.len(),
            });
        }
        debug_assert_eq!(b[KIND], kind);
        let who = Purchase {
            client: u16::from_be_bytes([b[CLIENT], b[CLIENT + 1]]),
            request: be_u32(&b[REQUEST..]),
        };
        Ok(match kind {
            KIND_BUY => Message::Buy { who },
            KIND_REPLY => Message::Reply {
                who,
                answer: Answer::decode(&b[HEADER_LEN..])?,
            },
            KIND_REPLICATE => Message::Replicate {
                who,
                proposal: Answer::decode(&b[HEADER_LEN..])?,
            },
            _ => Message::Ack {
                who,
                decision: match b[ACK_OK] {
                    0 => None,
                    1 => Some(Answer::decode(&b[ACK_ANSWER..])?),
                    other => return Err(MessageError::AckFlag(other)),
                },
            },
        })
    }
}

/// What one wait on an [`Endpoint`] brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Nothing before the timeout.
    Nothing,
    /// A datagram that is not a message (counted in [`Endpoint::malformed`]).
    Malformed,
    Message(Message, SocketAddrV4),
}

/// A UDP socket that sends and receives [`Message`]s.
pub struct Endpoint {
    sock: UdpSocket,
    buf: [u8; 64],
    malformed: u64,
}

impl Endpoint {
    pub fn bind(net: &Caller, local: SocketAddrV4) -> io::Result<Endpoint> {
        Ok(Endpoint {
            sock: UdpSocket::bind(net, local).map_err(io::Error::from)?,
            buf: [0; 64],
            malformed: 0,
        })
    }

    /// Sends `msg` to `to`; a datagram the network loses is the protocol's business, so
    /// a failed send is one too.
    pub fn send(&self, msg: &Message, to: SocketAddrV4) {
        let _ = self.sock.send_to(&msg.encode(), to);
    }

    /// Waits up to `timeout` for a datagram; `Err` when the network shuts down.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Incoming> {
        self.sock.set_read_timeout(Some(timeout));
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, from)) => Ok(match Message::decode(&self.buf[..n]) {
                Ok(msg) => Incoming::Message(msg, from),
                Err(_) => {
                    self.malformed += 1;
                    Incoming::Malformed
                }
            }),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Incoming::Nothing),
            Err(e) => Err(e),
        }
    }

    /// Datagrams dropped because they were not messages.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Purchase = Purchase {
        client: 0x0102,
        request: 0x0304_0506,
    };

    fn every_kind() -> Vec<Message> {
        let mut all = vec![Message::Buy { who: WHO }];
        for answer in [Answer::Seat(149), Answer::SoldOut, Answer::NotLeader] {
            all.push(Message::Reply { who: WHO, answer });
            all.push(Message::Replicate {
                who: WHO,
                proposal: answer,
            });
            all.push(Message::Ack {
                who: WHO,
                decision: Some(answer),
            });
        }
        all.push(Message::Ack {
            who: WHO,
            decision: None,
        });
        all
    }

    #[test]
    fn every_message_survives_a_round_trip() {
        for m in every_kind() {
            assert_eq!(Message::decode(&m.encode()), Ok(m), "{m:?}");
        }
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        let reply = Message::Reply {
            who: WHO,
            answer: Answer::Seat(7),
        };
        assert_eq!(
            reply.encode(),
            b"R\x01\x02\x03\x04\x05\x06\x00\x00\x00\x00\x07"
        );
        assert_eq!(
            Message::Buy { who: WHO }.encode(),
            b"B\x01\x02\x03\x04\x05\x06"
        );
        let fenced = Message::Ack {
            who: WHO,
            decision: None,
        };
        assert_eq!(
            fenced.encode(),
            b"A\x01\x02\x03\x04\x05\x06\x00\x00\x00\x00\x00\x00"
        );
        let acked = Message::Ack {
            who: WHO,
            decision: Some(Answer::SoldOut),
        };
        assert_eq!(acked.encode()[ACK_OK..], [1, STATUS_SOLD_OUT, 0, 0, 0, 0]);
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        assert_eq!(Message::decode(b""), Err(MessageError::Empty));
        assert_eq!(
            Message::decode(b"X\x00\x00\x00\x00\x00\x00"),
            Err(MessageError::UnknownKind(b'X'))
        );
        let mut reply = Message::Reply {
            who: WHO,
            answer: Answer::SoldOut,
        }
        .encode();
        reply[HEADER_LEN + STATUS] = 9;
        assert_eq!(Message::decode(&reply), Err(MessageError::Status(9)));
        let mut ack = Message::Ack {
            who: WHO,
            decision: None,
        }
        .encode();
        ack[ACK_OK] = 2;
        assert_eq!(Message::decode(&ack), Err(MessageError::AckFlag(2)));
        // Every truncation and one byte too many of every kind.
        for m in every_kind() {
            let bytes = m.encode();
            for n in 0..bytes.len() {
                assert!(Message::decode(&bytes[..n]).is_err(), "{m:?} cut to {n}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(Message::decode(&long).is_err(), "{m:?} with a tail");
        }
    }
}
