//! A client: buys its tickets one after another, retrying with exponential backoff and
//! failing over to the other server after a few unanswered tries or a "not the leader".

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use super::message::{Answer, Endpoint, Incoming, Message, Purchase};
use super::{backup_addr, client_addr, primary_addr, CLIENT_PORT};
use crate::link::Duration;
use crate::runtime::Caller;

/// Consecutive unanswered tries before a client switches server.
const TRIES_BEFORE_FAILOVER: u32 = 3;
const FIRST_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_millis(1600);

/// What a client was told and what it took.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// The final answer to each request number.
    pub answers: BTreeMap<u32, Answer>,
    pub retries: u64,
    pub failovers: u64,
    pub gave_up: u32,
    /// Datagrams dropped because they were not messages.
    pub malformed: u64,
}

/// Client `id` makes `requests` purchases; it gives up (on that one and the rest) when one
/// stays unanswered for `give_up_after`.
pub fn client(net: &Caller, id: u16, requests: u32, give_up_after: Duration) -> ClientLog {
    let mut log = ClientLog::default();
    let Ok(mut sock) = Endpoint::bind(net, SocketAddrV4::new(client_addr(usize::from(id)), 0))
    else {
        return log;
    };
    let servers = [
        SocketAddrV4::new(primary_addr(), CLIENT_PORT),
        SocketAddrV4::new(backup_addr(), CLIENT_PORT),
    ];
    let mut current = 0;
    'purchases: for request in 0..requests {
        let who = Purchase {
            client: id,
            request,
        };
        let started = net.now();
        let mut timeout = FIRST_TIMEOUT;
        let mut silent = 0;
        let mut first = true;
        loop {
            if net.now() - started > give_up_after {
                log.gave_up += requests - request;
                break 'purchases;
            }
            if !first {
                log.retries += 1;
            }
            first = false;
            sock.send(&Message::Buy { who }, servers[current]);
            let deadline = net.now() + timeout;
            let mut answer = None;
            while answer.is_none() && net.now() < deadline {
                match sock.recv(deadline - net.now()) {
                    Ok(Incoming::Message(Message::Reply { who: w, answer: a }, _)) if w == who => {
                        answer = Some(a)
                    }
                    Ok(Incoming::Message(..) | Incoming::Malformed) => {}
                    Ok(Incoming::Nothing) | Err(_) => break,
                }
            }
            match answer {
                Some(Answer::NotLeader) => {
                    current = 1 - current;
                    log.failovers += 1;
                    silent = 0;
                }
                Some(answer) => {
                    log.answers.insert(request, answer);
                    break;
                }
                None => {
                    silent += 1;
                    timeout = (timeout * 2).min(MAX_TIMEOUT);
                    if silent >= TRIES_BEFORE_FAILOVER {
                        current = 1 - current;
                        log.failovers += 1;
                        silent = 0;
                        timeout = FIRST_TIMEOUT;
                    }
                }
            }
        }
    }
    log.malformed = sock.malformed();
    log
}
