//! The peer's command line without root: usage errors and a refused connection are one
//! sentence and a non-zero exit. (Its services are measured by `ustack bench`, whose root
//! test in tests/tun_netns.rs runs this binary in network namespaces.)

use std::process::Command;

fn peer(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ustack-bench-peer"))
        .args(args)
        .output()
        .expect("the peer runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_are_a_usage_error() {
    let (code, err) = peer(&[
        "client",
        "--target",
        "127.0.0.1",
        "--mode",
        "chargen",
        "--seconds",
        "1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--mode") && err.contains("chargen"), "{err}");
    let (code, err) = peer(&["smoltcp", "--tun", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing --addr"), "{err}");
    let (code, err) = peer(&["serve", "--addr", "not-an-address"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _) = peer(&[]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_client_that_cannot_connect_fails_with_the_reason() {
    // 127.0.0.2 port 9: nothing listens on loopback's discard port in a test machine, so
    // the kernel refuses at once.
    let (code, err) = peer(&[
        "client",
        "--target",
        "127.0.0.2",
        "--mode",
        "discard",
        "--seconds",
        "1",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect to 127.0.0.2:9"), "{err}");
}
