//! The audit: the servers' sale logs checked against each other and against what the
//! clients were told.

use std::collections::BTreeMap;
use std::fmt;

use super::client::ClientLog;
use super::message::{Answer, Purchase};
use super::server::Ledger;

/// The audit's findings, and the clients' counters it adds up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audit {
    /// Distinct seats in the servers' sale logs.
    pub sold: u32,
    /// Purchases the clients were told succeeded.
    pub confirmed: u32,
    pub sold_out_answers: u32,
    /// Seats recorded for two different purchases: must be 0.
    pub duplicate_sales: u32,
    /// Purchases recorded with two different seats: must be 0.
    pub double_charges: u32,
    /// Confirmed purchases missing from the sale logs, or sales nobody was told about
    /// while no client gave up: must be 0.
    pub mismatches: u32,
    pub retries: u64,
    pub failovers: u64,
    /// Purchases the clients gave up on.
    pub gave_up: u32,
}

impl Audit {
    /// No seat sold twice, no purchase charged twice, the books match what clients heard.
    pub fn ok(&self) -> bool {
        self.duplicate_sales == 0 && self.double_charges == 0 && self.mismatches == 0
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit {}: {} seats sold, {} purchases confirmed, {} sold-out answers, {} duplicate sales, {} double charges, {} mismatches",
            if self.ok() { "passed" } else { "FAILED" },
            self.sold,
            self.confirmed,
            self.sold_out_answers,
            self.duplicate_sales,
            self.double_charges,
            self.mismatches
        )
    }
}

/// Checks the servers' sale logs against each other and against what clients were told:
/// no seat sold twice, no purchase charged twice, every confirmed purchase on record,
/// and (when no client gave up) nothing sold that nobody was told about.
pub fn audit(primary: &Ledger, backup: &Ledger, logs: &[(u16, ClientLog)]) -> Audit {
    let mut a = Audit::default();
    let mut seat_owner: BTreeMap<u32, Purchase> = BTreeMap::new();
    let mut purchase_seat: BTreeMap<Purchase, u32> = BTreeMap::new();
    for ledger in [primary, backup] {
        for (&seat, &who) in &ledger.seats {
            match seat_owner.get(&seat) {
                Some(&other) if other != who => a.duplicate_sales += 1,
                _ => {
                    seat_owner.insert(seat, who);
                }
            }
            match purchase_seat.get(&who) {
                Some(&other) if other != seat => a.double_charges += 1,
                _ => {
                    purchase_seat.insert(who, seat);
                }
            }
        }
    }
    let mut client_seats: BTreeMap<u32, Purchase> = BTreeMap::new();
    for &(client, ref log) in logs {
        a.retries += log.retries;
        a.failovers += log.failovers;
        a.gave_up += log.gave_up;
        for (&request, &answer) in &log.answers {
            let Answer::Seat(seat) = answer else {
                a.sold_out_answers += u32::from(answer == Answer::SoldOut);
                continue;
            };
            let who = Purchase { client, request };
            a.confirmed += 1;
            if purchase_seat.get(&who) != Some(&seat) {
                a.mismatches += 1;
            }
            if client_seats.insert(seat, who).is_some() {
                a.duplicate_sales += 1;
            }
        }
    }
    if a.gave_up == 0 && seat_owner.len() != a.confirmed as usize {
        a.mismatches += 1;
    }
    a.sold = seat_owner.len() as u32;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(client: u16, request: u32) -> Purchase {
        Purchase { client, request }
    }

    fn ledger(sales: &[(u32, Purchase)]) -> Ledger {
        let mut l = Ledger::default();
        for &(seat, who) in sales {
            l.commit(who, Answer::Seat(seat));
        }
        l
    }

    fn told(id: u16, answers: &[(u32, u32)]) -> (u16, ClientLog) {
        let log = ClientLog {
            answers: answers
                .iter()
                .map(|&(req, seat)| (req, Answer::Seat(seat)))
                .collect(),
            ..ClientLog::default()
        };
        (id, log)
    }

    #[test]
    fn a_consistent_outcome_passes() {
        let p = ledger(&[(0, who(1, 0)), (1, who(2, 0))]);
        let b = ledger(&[(0, who(1, 0)), (1, who(2, 0)), (2, who(1, 1))]);
        let a = audit(&p, &b, &[told(1, &[(0, 0), (1, 2)]), told(2, &[(0, 1)])]);
        assert_eq!(
            (
                a.sold,
                a.confirmed,
                a.duplicate_sales,
                a.double_charges,
                a.mismatches
            ),
            (3, 3, 0, 0, 0)
        );
    }

    #[test]
    fn the_audit_catches_every_kind_of_failure() {
        // Split brain: both servers sold seat 0, to different buyers.
        let a = audit(
            &ledger(&[(0, who(1, 0))]),
            &ledger(&[(0, who(2, 0))]),
            &[told(1, &[(0, 0)]), told(2, &[(0, 0)])],
        );
        assert!(a.duplicate_sales >= 1);
        // One purchase executed twice: two seats for (1, 0).
        let a = audit(
            &ledger(&[(0, who(1, 0))]),
            &ledger(&[(5, who(1, 0))]),
            &[told(1, &[(0, 0)])],
        );
        assert_eq!(a.double_charges, 1);
        // A client told about a seat no server recorded.
        let a = audit(
            &Ledger::default(),
            &Ledger::default(),
            &[told(1, &[(0, 3)])],
        );
        assert_eq!(a.mismatches, 2);
    }

    #[test]
    fn sold_out_answers_are_counted_not_confirmed() {
        let mut log = told(1, &[(0, 0)]);
        log.1.answers.insert(1, Answer::SoldOut);
        let a = audit(&ledger(&[(0, who(1, 0))]), &Ledger::default(), &[log]);
        assert_eq!((a.confirmed, a.sold_out_answers, a.mismatches), (1, 1, 0));
    }
}
