//! Pacing: a paced connection says when its next data segment may leave
//! (`poll_timeout` includes it) and holds data until then; ACKs are never held.

use super::*;
use crate::tcp::Algorithm;

const SEG: usize = MSS as usize;

/// Without pacing (CUBIC's default here) the initial window leaves at once.
#[test]
fn unpaced_cubic_sends_its_window_at_once() {
    let mut s = established(cfg());
    let data = pattern(3 * SEG, 1);
    s.send(&data).unwrap();
    recv!(
        s,
        [
            our_data(ISS + 1, ACK, &data[..SEG]),
            our_data(ISS + 1 + SEG, ACK, &data[SEG..2 * SEG]),
            our_data(ISS + 1 + 2 * SEG, PSH_ACK, &data[2 * SEG..]),
        ]
    );
}

/// Drives the connection to `until`, its timers included; the times data segments left.
fn data_times(s: &mut TestConn, until: Instant) -> Vec<Instant> {
    let mut times = Vec::new();
    loop {
        while let Some(seg) = s.conn.poll_transmit(s.now) {
            if !seg.payload.is_empty() {
                times.push(s.now);
            }
        }
        match s.poll_timeout() {
            Some(at) if at <= until => s.advance(at - s.now),
            _ => break,
        }
    }
    s.now = until;
    times
}

/// Sends 40 segments: the initial window (10, never paced), then the peer acknowledges
/// them two at a time one round trip later, which opens cwnd to 20 segments (slow start)
/// and lets 20 more go, paced. Returns when those 20 left.
fn initial_window_then_twenty(s: &mut TestConn) -> Vec<Instant> {
    let data = pattern(40 * SEG, 1);
    s.send(&data).unwrap();
    let start = s.now;
    assert_eq!(data_times(s, start), vec![start; 10]);
    s.now += RTT;
    for acked in [2, 4, 6, 8, 10] {
        send!(s, peer_ack(ISS + 1 + acked * SEG));
    }
    let times = data_times(s, s.now + ms(200));
    assert_eq!(times.len(), 20);
    times
}

/// Gaps between the segments' times, after the first `lead` ones: those leave at once,
/// as the sender may run one quantum (at least 2 segments) ahead of its schedule, or
/// catch up after the initial window.
fn gaps_after(times: &[Instant], lead: usize) -> Vec<Duration> {
    assert!(times[..lead].iter().all(|&t| t == times[0]), "{times:?}");
    times[lead..].windows(2).map(|w| w[1] - w[0]).collect()
}

/// Linux `tcp_update_pacing_rate`: paced CUBIC in slow start sends at 2 cwnd / SRTT:
/// 2 x 29200 bytes per 100 ms once the ACKs opened cwnd to 20 segments, a 1460-byte
/// segment every 2.5 ms.
#[test]
fn paced_cubic_sends_at_twice_cwnd_per_srtt_in_slow_start() {
    let mut s = established(TcpConfig {
        pacing: true,
        ..cfg()
    });
    let times = initial_window_then_twenty(&mut s);
    assert_eq!(s.cwnd(), 20 * SEG);
    let gaps = gaps_after(&times, 3);
    assert_eq!(gaps, vec![Duration::from_micros(2500); gaps.len()]);
    assert!(s.stats().pacing_waits >= 16);
}

/// While data waits for its pacing time, an ACK owed to the peer goes out at once.
#[test]
fn acks_are_not_paced() {
    let mut s = established(TcpConfig {
        pacing: true,
        ..cfg()
    });
    initial_window_then_twenty(&mut s);
    send!(s, peer_ack(ISS + 1 + 12 * SEG));
    // What the pacing lead allows leaves; the rest waits.
    while s.conn.poll_transmit(s.now).is_some() {}
    assert!(s.poll_timeout().is_some_and(|at| at > s.now));
    let incoming = pattern(2 * SEG, 2);
    send!(s, peer_data(IRS + 1, &incoming[..SEG]));
    send!(s, peer_data(IRS + 1 + SEG, &incoming[SEG..]));
    let ack = s.conn.poll_transmit(s.now).expect("the ACK");
    assert!(ack.payload.is_empty());
    assert_eq!(ack.ack, IRS + 1 + 2 * SEG);
    recv_nothing!(s);
}

/// BBR paces at its Startup gain (2/ln 2, less 1%) times the initial window per SRTT
/// (Linux `bbr_init_pacing_rate_from_rtt`): 2.885 x 0.99 x 14600 bytes per 100 ms, a
/// 1460-byte segment every 3.501 ms; one round's samples do not lower it in Startup.
#[test]
fn bbr_paces_at_its_startup_rate() {
    let mut s = established(TcpConfig {
        congestion: Algorithm::Bbr,
        ..cfg()
    });
    let times = initial_window_then_twenty(&mut s);
    let gaps = gaps_after(&times, 3);
    assert_eq!(gaps, vec![Duration::from_micros(3501); gaps.len()]);
}

/// Paced CUBIC with 20 segments to send after the initial window (as above), woken for
/// its first pacing wait `late` after the time it asked for: the data segments that
/// leave then.
fn sent_on_waking(late: Duration) -> usize {
    let mut s = established(TcpConfig {
        pacing: true,
        ..cfg()
    });
    s.send(&pattern(40 * SEG, 1)).unwrap();
    let start = s.now;
    assert_eq!(data_times(&mut s, start).len(), 10);
    s.now += RTT;
    for acked in [2, 4, 6, 8, 10] {
        send!(s, peer_ack(ISS + 1 + acked * SEG));
    }
    while s.conn.poll_transmit(s.now).is_some() {}
    let release = s.poll_timeout().expect("a pacing wait");
    assert!(release > s.now);
    s.advance(release + late - s.now);
    let mut sent = 0;
    while let Some(seg) = s.conn.poll_transmit(s.now) {
        sent += usize::from(!seg.payload.is_empty());
    }
    sent
}

/// Issue 11: a caller that comes back late for a pacing wait (its timer fired late, as a
/// thread's does on a busy CPU) catches up on the time it overslept: woken 10 ms late at
/// a segment every 2.5 ms, the 4 segments due meanwhile leave with the one due now (a
/// schedule that forgot that time sent 3: the one due and the 2-segment lead, so every
/// late wake-up lost rate, and BBR took the loss for the path's bandwidth). At most a
/// quarter of the SRTT is made up: 60 ms late with a 100 ms SRTT, the schedule restarts
/// 25 ms (10 segments) behind the clock, and the 2-segment lead goes with them.
#[test]
fn a_caller_woken_late_catches_up_on_the_pacing_schedule() {
    assert_eq!(sent_on_waking(Duration::ZERO), 1);
    assert_eq!(sent_on_waking(ms(10)), 5);
    assert_eq!(sent_on_waking(ms(60)), 1 + 10 + 2);
}
