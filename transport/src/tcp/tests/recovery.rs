//! Recovery from timeouts and the RTT samples taken around retransmissions.

use super::*;

/// RFC 7323 section 4.3 and RFC 6298 section 3 (Karn): a retransmitted segment that the
/// peer already has draws an ACK echoing the TSval of an older copy (a duplicate does
/// not update TS.Recent), so the time since that echo is not a round trip. Here the
/// original arrives but its ACK is lost, the first retransmission is lost, and the ACK
/// for the second echoes the original: no sample (it would read 1 s against a 100 ms
/// path). A later ACK echoing data sent once is sampled as usual.
#[test]
fn no_rtt_sample_from_an_echo_older_than_the_retransmission_rfc7323_4_3() {
    let mut s = established(TcpConfig {
        timestamps: true,
        ..cfg()
    });
    assert_eq!(s.srtt(), Some(RTT));
    let with_ts = |tsval: u32, seg: Segment<'static>| Segment {
        options: ts(tsval, PEER_TS),
        ..seg
    };
    let sent = TS0 + 100;
    s.send(b"hello").unwrap();
    let hello = our_data(ISS + 1, PSH_ACK, b"hello");
    recv!(s, [with_ts(sent, hello)]);
    s.advance(ms(300));
    recv!(s, [with_ts(sent + 300, hello)]);
    s.advance(ms(600));
    recv!(s, [with_ts(sent + 900, hello)]);
    s.now += ms(100);
    send!(
        s,
        Segment {
            ack: ISS + 6,
            options: ts(PEER_TS + 1000, sent),
            ..SEND_TEMPL
        }
    );
    assert_eq!(s.send_queue(), 0);
    assert_eq!(
        s.srtt(),
        Some(RTT),
        "a stale echo was taken as a round trip"
    );
    s.send(b"world").unwrap();
    let world = our_data(ISS + 6, PSH_ACK, b"world");
    recv!(
        s,
        [Segment {
            options: ts(sent + 1000, PEER_TS + 1000),
            ..world
        }]
    );
    s.now += ms(200);
    send!(
        s,
        Segment {
            ack: ISS + 11,
            options: ts(PEER_TS + 1200, sent + 1000),
            ..SEND_TEMPL
        }
    );
    // SRTT = 7/8 * 100 + 1/8 * 200.
    assert_eq!(s.srtt(), Some(Duration::from_micros(112_500)));
}
