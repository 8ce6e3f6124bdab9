//! The command-line contract of DESIGN.md: the subcommands exist, unbuilt ones say so
//! with exit status 2, bad flags are one clear error, and the ping demo's JSON line holds.

use std::process::{Command, Output};

fn ustack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args(args)
        .output()
        .expect("ustack runs")
}

/// Runs `args`, which must succeed; returns stdout.
fn succeeds(args: &[&str]) -> String {
    let out = ustack(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The JSON object on the last line of `stdout`.
fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Runs `args`, which must exit with `code` and say `needle` on stderr.
fn fails(args: &[&str], code: i32, needle: &str) -> Output {
    let out = ustack(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: {err}");
    out
}

#[test]
fn help_lists_the_design_subcommands() {
    let out = ustack(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["demo", "up", "iperf3", "impair", "bench"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{help}"
        );
    }
}

#[test]
fn unbuilt_commands_exit_2_and_say_so() {
    // Offload is built for TUN; on a TAP device it is not (refused before the device is
    // opened).
    let args = [
        "up",
        "--tap",
        "ustk9",
        "--offload",
        "--addr",
        "198.18.0.2/24",
    ];
    let out = fails(&args, 2, "not implemented yet");
    assert!(out.stdout.is_empty(), "{args:?} printed as if it worked");
}

/// `-u` is built and its help says nothing else; its flags out of range are usage
/// errors found before any device is opened (a datagram too short for iperf3's header
/// or beyond 65507).
#[test]
fn iperf3_udp_flags_out_of_range_are_usage_errors() {
    let client = [
        "iperf3",
        "-c",
        "198.18.1.1",
        "--tun",
        "ustk9",
        "--addr",
        "198.18.1.2/24",
    ];
    for (extra, why) in [
        (&["-u", "-l", "8"][..], "give 16 to 65507 bytes"),
        (&["-u", "-l", "65508"], "give 16 to 65507 bytes"),
        (&["-u", "-b", "fast"], "is not a bitrate"),
    ] {
        let args: Vec<&str> = client.iter().chain(extra).copied().collect();
        let out = fails(&args, 2, why);
        assert!(out.stdout.is_empty(), "{args:?} printed as if it worked");
    }
    let help = ustack(&["iperf3", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--udp", "--bitrate", "--length"] {
        let line = help.lines().find(|l| l.contains(flag)).expect(flag);
        assert!(!line.contains("not built"), "{line}");
    }
}

#[test]
fn bad_flags_are_one_clear_error() {
    let out = fails(
        &["demo", "ping", "--loss", "1.5"],
        2,
        "`1.5` is not a probability between 0 and 1",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    fails(&["demo", "udp", "--loss", "2"], 2, "not a probability");
    fails(&["demo", "ping", "--outage", "soon"], 2, "START+LEN");
}

#[test]
fn ping_demo_json_is_the_last_line() {
    let stdout = succeeds(&["demo", "ping", "--count", "20", "--seed", "3", "--json"]);
    let v = last_json(&stdout);
    assert_eq!(v["demo"], "ping");
    assert_eq!(v["sent"], 20);
    assert_eq!(v["mismatched"], 0);
    let received = v["received"].as_u64().unwrap();
    assert!(received > 0 && received <= 20);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("bytes from 198.18.0.2"))
            .count() as u64,
        received
    );
}

#[test]
fn total_loss_fails_clearly_instead_of_hanging() {
    fails(
        &["demo", "ping", "--count", "5", "--loss", "1"],
        1,
        "no replies",
    );
}

#[test]
fn tcp_demo_json_through_a_long_outage_reconnects_and_matches() {
    let v = last_json(&succeeds(&[
        "demo",
        "tcp",
        "--size",
        "2M",
        "--rate-mbit",
        "4",
        "--outage",
        "2s+120s",
        "--json",
    ]));
    assert_eq!(v["demo"], "tcp");
    assert_eq!(v["bytes"], 2 << 20);
    assert_eq!(v["sha256_match"], true);
    assert!(v["reconnects"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["retransmits"].as_u64().unwrap() > 0);
    assert!(v["virtual_s"].as_f64().unwrap() > 122.0);
}

/// `demo tcp --cc`: each congestion control carries the file through loss; an unknown
/// one is a usage error that names the choices.
#[test]
fn tcp_demo_takes_a_congestion_control() {
    for cc in ["reno", "cubic", "bbr"] {
        let v = last_json(&succeeds(&[
            "demo",
            "tcp",
            "--size",
            "1M",
            "--cc",
            cc,
            "--loss",
            "0.01",
            "--no-outage",
            "--json",
        ]));
        assert_eq!(v["sha256_match"], true, "{cc}: {v}");
        assert_eq!(v["congestion"], cc, "{v}");
    }
    fails(&["demo", "tcp", "--cc", "vegas"], 2, "newreno, cubic, bbr");
}

#[test]
fn tcp_demo_bad_size_is_one_clear_error() {
    fails(&["demo", "tcp", "--size", "12X"], 2, "is not a size");
}

#[test]
fn udp_demo_json_with_a_crashed_primary_fails_over_without_double_sales() {
    let v = last_json(&succeeds(&[
        "demo",
        "udp",
        "--crash-primary-at",
        "5s",
        "--loss",
        "0.1",
        "--json",
    ]));
    assert_eq!(v["demo"], "udp");
    assert_eq!(v["duplicate_sales"], 0);
    assert!(v["failovers"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["requests"], 200);
    assert!(v["sold"].as_u64().unwrap() > 0);
    assert!(v["retries"].as_u64().is_some());
}

#[test]
fn the_main_demo_runs_all_three_and_succeeds() {
    let stdout = succeeds(&["demo"]);
    assert!(stdout.contains("sha256 match"), "{stdout}");
    assert!(stdout.contains("audit passed"), "{stdout}");
}

/// Raw interfaces, TAP devices and gateways are built: the help offers them without a
/// "not built yet", and a missing interface is a failed run (1), not a usage error.
#[test]
fn raw_tap_and_gateway_are_offered_and_a_missing_interface_fails_the_run() {
    for cmd in [&["up", "--help"][..], &["iperf3", "--help"]] {
        let help = succeeds(cmd);
        for flag in ["--raw", "--tap", "--gateway"] {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{flag} missing from {cmd:?}:\n{help}"));
            assert!(!line.contains("not built yet"), "{line}");
        }
    }
    let out = fails(
        &["up", "--raw", "ustk-none9", "--addr", "198.18.0.2/24"],
        1,
        "there is no interface ustk-none9",
    );
    assert!(out.stdout.is_empty());
}

/// RFC 1122 section 3.3.1: a gateway must be on a connected network; one that is not is
/// refused before any device is touched.
#[test]
fn a_gateway_off_our_network_is_a_usage_error_rfc1122_3_3_1() {
    fails(
        &[
            "up",
            "--tun",
            "ustk9",
            "--addr",
            "198.18.0.2/24",
            "--gateway",
            "198.18.5.1",
        ],
        2,
        "--gateway: gateway 198.18.5.1 is not on our network 198.18.0.0/24",
    );
    fails(
        &[
            "up",
            "--tap",
            "ustk9",
            "--raw",
            "eth9",
            "--addr",
            "198.18.0.2/24",
        ],
        2,
        "cannot be used with",
    );
}

#[test]
fn up_without_a_device_or_with_a_bad_address_is_a_clear_error() {
    fails(&["up", "--addr", "198.18.0.2/24"], 2, "--tun");
    fails(
        &["up", "--tun", "ustk9", "--addr", "198.18.0.2"],
        2,
        "prefix length",
    );
}

#[test]
fn impair_refuses_bad_flags_before_touching_devices() {
    fails(
        &["impair", "--tun-a", "ia", "--tun-b", "ib", "--loss", "2"],
        2,
        "probability",
    );
}

#[test]
fn iperf3_without_a_device_is_a_clear_error() {
    fails(&["iperf3", "-c", "198.18.1.1"], 2, "--tun NAME --addr");
}

/// A capture file that cannot be created is a failed run (1) in every demo, not a usage
/// error: the flags were fine, the file system said no.
#[test]
fn a_capture_that_cannot_be_created_fails_the_run() {
    for demo in ["ping", "tcp", "udp"] {
        fails(
            &["demo", demo, "--pcap", "/nonexistent/ustack.pcapng"],
            1,
            "cannot write the capture",
        );
    }
}
