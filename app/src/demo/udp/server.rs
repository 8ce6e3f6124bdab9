//! The two servers: the primary answers clients after the backup has taken every
//! decision; the backup takes replication until a client asks it, then leads.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use super::message::{Answer, Endpoint, Incoming, Message, Purchase};
use super::{backup_addr, primary_addr, CLIENT_PORT, REPL_PORT};
use crate::link::{Duration, Instant};
use crate::runtime::Caller;

/// How long the primary waits for a client request before looking at the clock again.
const PRIMARY_WAIT: Duration = Duration::from_millis(200);
/// How long the primary waits for the backup's ACK of one replication attempt.
const REPLICATION_WAIT: Duration = Duration::from_millis(50);
/// Replication attempts before the primary gives a request up (the client retries).
const REPLICATION_TRIES: usize = 5;
/// The backup's wait on each of its two sockets in turn.
const BACKUP_WAIT: Duration = Duration::from_millis(5);

/// A server's durable state: the sale log and the reply cache.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub seats: BTreeMap<u32, Purchase>,
    pub cache: BTreeMap<Purchase, Answer>,
    next_seat: u32,
}

impl Ledger {
    /// What a new request would get (not yet committed).
    pub fn decide(&self, capacity: u32) -> Answer {
        if self.next_seat < capacity {
            Answer::Seat(self.next_seat)
        } else {
            Answer::SoldOut
        }
    }

    /// Records `answer` for `who`, unless `who` already has one.
    pub fn commit(&mut self, who: Purchase, answer: Answer) {
        if self.cache.contains_key(&who) {
            return;
        }
        if let Answer::Seat(seat) = answer {
            self.seats.insert(seat, who);
            self.next_seat = self.next_seat.max(seat + 1);
        }
        self.cache.insert(who, answer);
    }

    /// The cached answer for `who`, or a new one decided and committed now.
    fn execute(&mut self, who: Purchase, capacity: u32) -> Answer {
        if let Some(&answer) = self.cache.get(&who) {
            return answer;
        }
        let answer = self.decide(capacity);
        self.commit(who, answer);
        answer
    }
}

/// What a server ends with.
#[derive(Debug, Clone, Default)]
pub struct ServerLog {
    pub ledger: Ledger,
    /// Whether this server led at the end (the backup after a take-over).
    pub leader: bool,
    /// Datagrams dropped because they were not messages.
    pub malformed: u64,
}

/// Both of a server's sockets: one for the clients, one for replication.
fn bind(net: &Caller, addr: std::net::Ipv4Addr) -> Option<(Endpoint, Endpoint)> {
    let clients = Endpoint::bind(net, SocketAddrV4::new(addr, CLIENT_PORT)).ok()?;
    let repl = Endpoint::bind(net, SocketAddrV4::new(addr, REPL_PORT)).ok()?;
    Some((clients, repl))
}

/// The primary: serves clients, replicating every decision to the backup first.
pub fn primary(net: &Caller, seats: u32, crash_at: Option<Instant>, stop_at: Instant) -> ServerLog {
    let mut log = ServerLog {
        leader: true,
        ..ServerLog::default()
    };
    let Some((mut clients, mut repl)) = bind(net, primary_addr()) else {
        return log;
    };
    let backup = SocketAddrV4::new(backup_addr(), REPL_PORT);
    let ledger = &mut log.ledger;
    loop {
        let now = net.now();
        if now >= stop_at || crash_at.is_some_and(|t| now >= t) {
            break;
        }
        let (who, from) = match clients.recv(PRIMARY_WAIT) {
            Err(_) => break,
            Ok(Incoming::Message(Message::Buy { who }, from)) => (who, from),
            Ok(_) => continue,
        };
        if !log.leader {
            let answer = Answer::NotLeader;
            clients.send(&Message::Reply { who, answer }, from);
            continue;
        }
        if let Some(&answer) = ledger.cache.get(&who) {
            clients.send(&Message::Reply { who, answer }, from);
            continue;
        }
        // Replicate before answering; give the request up if the backup stays silent
        // (the client will retry). The backup's answer is the one committed: if an
        // earlier replication reached it but its ACK was lost, the backup already
        // holds that sale, and a proposal of our own could hand the same seat out twice.
        let proposal = ledger.decide(seats);
        let mut acked = None;
        for _ in 0..REPLICATION_TRIES {
            repl.send(&Message::Replicate { who, proposal }, backup);
            if let Ok(Incoming::Message(Message::Ack { who: w, decision }, _)) =
                repl.recv(REPLICATION_WAIT)
            {
                if w == who {
                    acked = Some(decision);
                    break;
                }
            }
        }
        match acked {
            Some(Some(answer)) => {
                ledger.commit(who, answer);
                clients.send(&Message::Reply { who, answer }, from);
            }
            // Fenced: the backup leads now; step down for good.
            Some(None) => log.leader = false,
            None => {}
        }
    }
    log.malformed = clients.malformed() + repl.malformed();
    log
}

/// The backup: takes replication until the first client asks it, then leads.
pub fn backup(net: &Caller, seats: u32, stop_at: Instant) -> ServerLog {
    let mut log = ServerLog::default();
    let Some((mut clients, mut repl)) = bind(net, backup_addr()) else {
        return log;
    };
    // One thread, two sockets: alternate short waits (deterministic, unlike two threads).
    while net.now() < stop_at {
        match repl.recv(BACKUP_WAIT) {
            Err(_) => break,
            Ok(Incoming::Message(Message::Replicate { who, .. }, from)) => {
                // While backing up, this ledger sequences the seats: the primary commits
                // whatever it is told here.
                let decision = (!log.leader).then(|| log.ledger.execute(who, seats));
                repl.send(&Message::Ack { who, decision }, from);
            }
            Ok(_) => {}
        }
        match clients.recv(BACKUP_WAIT) {
            Err(_) => break,
            Ok(Incoming::Message(Message::Buy { who }, from)) => {
                log.leader = true;
                let answer = log.ledger.execute(who, seats);
                clients.send(&Message::Reply { who, answer }, from);
            }
            Ok(_) => {}
        }
    }
    log.malformed = clients.malformed() + repl.malformed();
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_cache_executes_a_purchase_once() {
        let who = Purchase {
            client: 1,
            request: 0,
        };
        let mut l = Ledger::default();
        let first = l.decide(10);
        l.commit(who, first);
        l.commit(who, Answer::Seat(7));
        assert_eq!(l.cache[&who], Answer::Seat(0));
        assert_eq!(l.seats.len(), 1);
        assert_eq!(l.decide(1), Answer::SoldOut);
        assert_eq!(l.execute(who, 10), Answer::Seat(0));
    }
}
