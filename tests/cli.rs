//! The command-line contract of DESIGN.md: the subcommands exist, unbuilt ones say so
//! with exit status 2, bad flags are one clear error, and the ping demo's JSON line holds.

use std::process::{Command, Output};

fn ustack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args(args)
        .output()
        .expect("ustack runs")
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
    for args in [
        &["up", "--raw", "veth0", "--addr", "198.18.0.2/24"][..],
        &[
            "up",
            "--tun",
            "ustk9",
            "--offload",
            "--addr",
            "198.18.0.2/24",
        ],
        &[
            "iperf3",
            "-c",
            "198.18.1.1",
            "-u",
            "--tun",
            "ustk9",
            "--addr",
            "198.18.1.2/24",
        ],
        &["bench", "--quick", "--svg", "/tmp/ustack-bench-never.svg"],
    ] {
        let out = ustack(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("not implemented yet"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed as if it worked");
    }
}

#[test]
fn bad_flags_are_one_clear_error() {
    let out = ustack(&["demo", "ping", "--loss", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("`1.5` is not a probability between 0 and 1"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let out = ustack(&["demo", "ping", "--outage", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("START+LEN"));
}

#[test]
fn ping_demo_json_is_the_last_line() {
    let out = ustack(&["demo", "ping", "--count", "20", "--seed", "3", "--json"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
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
    let out = ustack(&["demo", "ping", "--count", "5", "--loss", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no replies"));
}

#[test]
fn tcp_demo_json_through_a_long_outage_reconnects_and_matches() {
    let out = ustack(&[
        "demo",
        "tcp",
        "--size",
        "2M",
        "--rate-mbit",
        "4",
        "--outage",
        "2s+120s",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["demo"], "tcp");
    assert_eq!(v["bytes"], 2 << 20);
    assert_eq!(v["sha256_match"], true);
    assert!(v["reconnects"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["retransmits"].as_u64().unwrap() > 0);
    assert!(v["virtual_s"].as_f64().unwrap() > 122.0);
}

#[test]
fn tcp_demo_bad_size_is_one_clear_error() {
    let out = ustack(&["demo", "tcp", "--size", "12X"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("is not a size"));
}

#[test]
fn udp_demo_json_with_a_crashed_primary_fails_over_without_double_sales() {
    let out = ustack(&[
        "demo",
        "udp",
        "--crash-primary-at",
        "5s",
        "--loss",
        "0.1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["demo"], "udp");
    assert_eq!(v["duplicate_sales"], 0);
    assert!(v["failovers"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["requests"], 200);
    assert!(v["sold"].as_u64().unwrap() > 0);
    assert!(v["retries"].as_u64().is_some());
}

#[test]
fn the_main_demo_runs_all_three_and_succeeds() {
    let out = ustack(&["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("sha256 match"), "{stdout}");
    assert!(stdout.contains("audit passed"), "{stdout}");
}

#[test]
fn up_without_a_device_or_with_a_bad_address_is_a_clear_error() {
    let out = ustack(&["up", "--addr", "198.18.0.2/24"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--tun"));
    let out = ustack(&["up", "--tun", "ustk9", "--addr", "198.18.0.2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("prefix length"));
}

#[test]
fn impair_refuses_bad_flags_before_touching_devices() {
    let out = ustack(&["impair", "--tun-a", "ia", "--tun-b", "ib", "--loss", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("probability"));
}

#[test]
fn iperf3_without_a_device_is_a_clear_error() {
    let out = ustack(&["iperf3", "-c", "198.18.1.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--tun NAME --addr"));
}
