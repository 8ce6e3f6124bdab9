//! ustack on real TUN and TAP devices and raw AF_PACKET sockets against the Linux kernel,
//! inside network namespaces these tests create and delete (addresses from
//! 198.18.0.0/15, traffic only inside them):
//! - `ustack up`: the kernel's `ping` gets replies, Python's sockets get TCP echo,
//!   discard and UDP echo;
//! - on Ethernet (a raw socket on a veth pair, a TAP device, a router namespace between
//!   two veth pairs): ARP both ways, ping, TCP echo and iperf3, with clean captures;
//! - `ustack impair`: the kernel's own TCP and ping run between two namespaces through
//!   the impairment engine.
//!
//! Needs root; without it the tests say SKIPPED (a failure under CI=true).

use std::process::{Command, Stdio};

use ustack_app::netns::Netns;

const OURS: &str = "198.18.1.2";
const KERNEL: &str = "198.18.1.1";

/// A namespace with `ustack up` on TUN device `ustk0` (198.18.1.2) and the kernel's
/// side of it configured (198.18.1.1).
fn ustack_up(tag: &str) -> Netns {
    ustack_up_with(tag, &[])
}

/// [`ustack_up`] with more flags for `ustack up`.
fn ustack_up_with(tag: &str, flags: &[&str]) -> Netns {
    let mut ns = Netns::new(tag).unwrap();
    let addr = format!("{OURS}/24");
    let mut args = vec![
        env!("CARGO_BIN_EXE_ustack"),
        "up",
        "--tun",
        "ustk0",
        "--addr",
        &addr,
    ];
    args.extend_from_slice(flags);
    ns.spawn(&args).unwrap();
    kernel_side_up(&ns, "ustk0");
    ns
}

/// `ustack up --tun DEV --addr 198.18.1.2/24 FLAGS` started in `ns` with the given
/// standard output and error, and the kernel's side of DEV configured
/// ([`kernel_side_up`]).
fn tun_up(ns: &Netns, dev: &str, flags: &[&str], stdout: Stdio, stderr: Stdio) -> Running {
    let addr = format!("{OURS}/24");
    let mut args = vec![
        env!("CARGO_BIN_EXE_ustack"),
        "up",
        "--tun",
        dev,
        "--addr",
        &addr,
    ];
    args.extend_from_slice(flags);
    let up = ns
        .command(&args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("ustack up starts");
    let up = Running(up);
    kernel_side_up(ns, dev);
    up
}

/// Once ustack has created TUN device `dev` in `ns`: gives the kernel's side 198.18.1.1/24
/// and sets it up.
fn kernel_side_up(ns: &Netns, dev: &str) {
    ns.wait_for_link(dev).unwrap();
    ns.must(&["ip", "addr", "add", &format!("{KERNEL}/24"), "dev", dev])
        .unwrap();
    ns.must(&["ip", "link", "set", dev, "up"]).unwrap();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The tests of this file take turns: each moves real traffic through the kernel and a
/// ustack process, and two at once on a 2-core machine starve each other (a UDP test
/// beside a throughput test lost 39% of its datagrams to a busy CPU, not to ustack).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `None` when not root (the test is skipped, which fails under CI=true); otherwise this
/// test's turn, held until it ends.
fn root_only() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !is_root() {
        eprintln!("SKIPPED: tun_netns needs root (network namespaces and /dev/net/tun)");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "a root-only test was skipped under CI=true"
        );
        return None;
    }
    // A test that failed while holding the turn poisons it; the next one still runs.
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Python, run inside the namespace, printing one line to check.
const CLIENT: &str = r#"
import socket, sys
ours = sys.argv[1]
data = bytes(range(256)) * 4096  # 1 MiB
s = socket.create_connection((ours, 7), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
back = bytearray()
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    back += chunk
d = socket.create_connection((ours, 9), timeout=10)
d.sendall(data)
d.close()
# RFC 864: the source service's first line, then the next one a character further.
g = socket.create_connection((ours, 19), timeout=10)
pattern = bytearray()
while len(pattern) < 200000:
    chunk = g.recv(65536)
    if not chunk:
        break
    pattern += chunk
g.close()
line = bytes(range(32, 104)) + b"\r\n"
source = pattern[:74] == line and pattern[74:146] == bytes(range(33, 105)) and len(pattern) >= 200000
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"ticket?", (ours, 7))
reply, _ = u.recvfrom(100)
print("echo", back == data, len(back), "source", source, "udp", reply == b"ticket?")
"#;

#[test]
fn kernel_ping_and_python_sockets_talk_to_ustack_on_tun() {
    let Some(_turn) = root_only() else {
        return;
    };
    ping_and_sockets_answered(&ustack_up("tun"));
}

/// A 1-byte TCP ping-pong on the echo port (TCP_NODELAY both ways), every byte checked.
const PING_PONG: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], 7), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ok = 0
for i in range(2000):
    b = bytes([i % 256])
    s.sendall(b)
    if s.recv(1) == b:
        ok += 1
s.close()
print("pingpong", ok)
"#;

/// With busy-polling the runtime spins instead of sleeping and callers spin on their
/// replies; the answers must be the same (correctness only: speed is `ustack bench`'s).
#[test]
fn ustack_up_with_busy_poll_answers_ping_echo_and_a_ping_pong() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up_with("i10lat-busy", &["--busy-poll", "50"]);
    ping_and_sockets_answered(&ns);
    let client = ns
        .exec(&["timeout", "60", "python3", "-c", PING_PONG, OURS])
        .unwrap();
    let line = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(line.trim(), "pingpong 2000");
}

/// With a writer thread (`--tx-thread`) batches are written on another thread and lone
/// packets inline: every byte must still arrive, in order (echo's 1 MiB and source's
/// pattern checked by the client, iperf3 both ways and with 3 streams).
#[test]
fn ustack_up_with_a_writer_thread_answers_ping_echo_source_and_iperf3() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up_with("i10tx4-txthr", &["--tx-thread"]);
    ping_and_sockets_answered(&ns);
    kernel_iperf3_tcp(
        &ns,
        OURS,
        &[
            &["-t", "1"],
            &["-t", "1", "-R"],
            &["-t", "1", "-R", "-P", "3"],
        ],
    );
}

/// The kernel's ping gets 3 replies from `ustack up` in `ns`, and Python's sockets get
/// TCP echo, TCP discard and UDP echo.
fn ping_and_sockets_answered(ns: &Netns) {
    let ping = ns
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", OURS])
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping failed:\n{text}");
    assert!(text.contains("3 received"), "{text}");
    let client = ns
        .exec(&["timeout", "60", "python3", "-c", CLIENT, OURS])
        .unwrap();
    let line = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(line.trim(), "echo True 1048576 source True udp True");
}

#[test]
fn a_connect_to_a_closed_port_is_refused_like_the_kernel_would() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up("rst");
    let probe = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], 4444), timeout=5)
    print("connected")
except ConnectionRefusedError:
    print("refused")
"#;
    let out = ns
        .exec(&["timeout", "20", "python3", "-c", probe, OURS])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");
}

/// `ustack impair` between two namespaces: A holds device `ia` (198.18.2.1), B gets `ib`
/// (198.18.2.2) moved into it; everything A and B exchange crosses the engine.
struct ImpairedPair {
    a: Netns,
    b: Netns,
}

impl ImpairedPair {
    fn new(tag: &str, flags: &[&str]) -> ImpairedPair {
        let mut a = Netns::new(&format!("{tag}a")).unwrap();
        let b = Netns::new(&format!("{tag}b")).unwrap();
        let mut impair = vec![
            env!("CARGO_BIN_EXE_ustack"),
            "impair",
            "--tun-a",
            "ia",
            "--tun-b",
            "ib",
            "--for",
            "60s",
        ];
        impair.extend_from_slice(flags);
        a.spawn(&impair).unwrap();
        a.wait_for_link("ib").unwrap();
        a.must(&["ip", "link", "set", "ib", "netns", b.name()])
            .unwrap();
        a.must(&["ip", "addr", "add", "198.18.2.1/24", "dev", "ia"])
            .unwrap();
        a.must(&["ip", "link", "set", "ia", "up"]).unwrap();
        b.must(&["ip", "addr", "add", "198.18.2.2/24", "dev", "ib"])
            .unwrap();
        b.must(&["ip", "link", "set", "ib", "up"]).unwrap();
        ImpairedPair { a, b }
    }
}

#[test]
fn kernel_traffic_crosses_the_impairment_engine() {
    let Some(_turn) = root_only() else {
        return;
    };
    let pair = ImpairedPair::new("imp", &["--delay", "20ms", "--loss", "0.05", "--seed", "3"]);
    // The delay is applied each way: no reply can come back in under 40 ms.
    let ping = pair
        .a
        .exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.2.2"])
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout).to_string();
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split(' ').next()?.parse().ok())
        .collect();
    assert!(!rtts.is_empty(), "no ping replies through 5% loss:\n{text}");
    assert!(
        rtts.iter().all(|&r| r >= 40.0),
        "a reply faster than the configured delay:\n{text}"
    );
    // The kernel's TCP moves 1 MiB through the loss, byte count checked by the server.
    let server = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.2.2", 5000)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    n += len(d)
c.sendall(str(n).encode()); c.close()
"#;
    let mut srv = pair
        .b
        .command(&["timeout", "40", "python3", "-c", server])
        .spawn()
        .expect("python server starts");
    let client = r#"
import socket, time
for _ in range(50):
    try:
        s = socket.create_connection(("198.18.2.2", 5000), timeout=10)
        break
    except OSError:
        time.sleep(0.1)
s.sendall(b"x" * (1 << 20)); s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"#;
    let out = pair
        .a
        .exec(&["timeout", "40", "python3", "-c", client])
        .unwrap();
    let _ = srv.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1048576",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn total_loss_in_the_engine_silences_the_kernel() {
    let Some(_turn) = root_only() else {
        return;
    };
    let pair = ImpairedPair::new("los", &["--loss", "1"]);
    let ping = pair
        .a
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "198.18.2.2"])
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        !ping.status.success() && text.contains(" 0 received"),
        "{text}"
    );
    let _ = &pair.b;
}

/// The real iperf3 client measures ustack: normal, reverse and parallel TCP tests
/// complete with bytes counted on both sides; a UDP test completes too (its numbers are
/// checked in `the_kernel_iperf3_udp_client_measures_ustack_both_ways`).
#[test]
fn the_kernel_iperf3_client_runs_tcp_tests_against_ustack() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up("ipf");
    kernel_iperf3_tcp(
        &ns,
        OURS,
        &[&["-t", "1"], &["-t", "1", "-R"], &["-t", "1", "-P", "3"]],
    );
    let udp = ns
        .exec(&["timeout", "10", "iperf3", "-c", OURS, "-u", "-t", "1"])
        .unwrap();
    let text =
        String::from_utf8_lossy(&udp.stdout).to_string() + &String::from_utf8_lossy(&udp.stderr);
    assert!(
        udp.status.success() && !text.contains("not implemented"),
        "{text}"
    );
}

/// `ustack iperf3 -c KERNEL --tun DEV ... TEST EXTRA --json` in `ns` against the kernel's
/// `iperf3 -s -1` there, the kernel's side of DEV set up once ustack opened it; the
/// client's output.
fn ustack_iperf3_client_on_tun(
    ns: &Netns,
    dev: &str,
    test: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let mut server = ns
        .command(&["timeout", "30", "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s starts");
    let mut args = vec![
        "timeout",
        "30",
        env!("CARGO_BIN_EXE_ustack"),
        "iperf3",
        "-c",
        KERNEL,
        "--tun",
        dev,
        "--addr",
        "198.18.1.2/24",
        "--json",
    ];
    args.extend_from_slice(test);
    args.extend_from_slice(extra);
    let client = ns
        .command(&args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ustack iperf3 starts");
    ns.wait_for_link(dev).unwrap();
    ns.must(&["ip", "addr", "add", &format!("{KERNEL}/24"), "dev", dev])
        .unwrap();
    ns.must(&["ip", "link", "set", dev, "up"]).unwrap();
    let out = client.wait_with_output().expect("ustack iperf3 ends");
    let _ = server.kill();
    let _ = server.wait();
    out
}

/// `ustack iperf3 -c` against the kernel's `iperf3 -s`, both directions: both sides count
/// the bytes (the kernel up to TEST_END, so never more than ustack).
#[test]
fn ustack_iperf3_client_measures_against_the_kernel_server() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("ipc").unwrap();
    for (i, reverse) in [false, true].into_iter().enumerate() {
        let extra: &[&str] = if reverse { &["-R"] } else { &[] };
        let out = ustack_iperf3_client_on_tun(&ns, &format!("ustc{i}"), &["-t", "1"], extra);
        let text = String::from_utf8_lossy(&out.stdout);
        let v = json_summary(out.status.success(), &text, &format!("reverse={reverse}"));
        let bytes = v["bytes"].as_u64().unwrap_or(0);
        assert!(bytes > 1_000_000, "reverse={reverse}: {v}");
        // The kernel's count stops at TEST_END, so bytes still in flight then are ours
        // alone: it can be lower, never higher.
        let server = v["server_bytes"].as_u64().unwrap_or(0);
        assert!(
            server > 1_000_000 && server <= bytes,
            "reverse={reverse}: {v}"
        );
    }
}

/// The rows `ustack bench` must measure, and in which columns (kernel, ustack, smoltcp):
/// CPU per Gbit of the stack's process has no kernel column (the whole machine's has),
/// iperf3 and the lossy paths through `ustack impair` (issue 11) no smoltcp one, the
/// SimLink row only ustack.
const BENCH_ROWS: &[(&str, [bool; 3])] = &[
    ("receive", [true, true, true]),
    ("receive_cpu", [false, true, true]),
    ("receive_machine_cpu", [true, true, true]),
    ("send", [true, true, true]),
    ("send_cpu", [false, true, true]),
    ("send_machine_cpu", [true, true, true]),
    ("send_tx_thread", [true, true, true]),
    ("send_tx_thread_cpu", [false, true, true]),
    ("send_tx_thread_machine_cpu", [true, true, true]),
    ("offload_receive", [true, true, true]),
    ("offload_receive_cpu", [false, true, true]),
    ("offload_receive_machine_cpu", [true, true, true]),
    ("offload_send", [true, true, true]),
    ("offload_send_cpu", [false, true, true]),
    ("offload_send_machine_cpu", [true, true, true]),
    ("pingpong_p50", [true, true, true]),
    ("pingpong_p99", [true, true, true]),
    ("pingpong_p999", [true, true, true]),
    ("ping_p50", [true, true, true]),
    ("ping_p99", [true, true, true]),
    ("ping_cpu", [false, true, true]),
    ("ping_busy_p50", [true, true, true]),
    ("ping_busy_p99", [true, true, true]),
    ("ping_busy_cpu", [false, true, true]),
    ("connect_rate", [true, true, false]),
    ("idle_bytes_per_conn", [false, true, false]),
    ("idle_rss_after", [false, true, false]),
    ("iperf3_in", [true, true, false]),
    ("iperf3_out", [true, true, false]),
    ("iperf3_in_p4", [true, true, false]),
    ("iperf3_in_p4_q2", [true, true, false]),
    ("iperf3_out_p4", [true, true, false]),
    ("iperf3_out_p4_q2", [true, true, false]),
    ("lossy1_send_cubic", [true, true, false]),
    ("lossy1_send_bbr", [true, true, false]),
    ("lossy1_receive", [true, true, false]),
    ("lossy01_send_cubic", [true, true, false]),
    ("lossy01_send_bbr", [true, true, false]),
    ("lossy01_receive", [true, true, false]),
    ("sim", [false, true, false]),
    ("sim_idle_bytes_per_conn", [false, true, false]),
    ("sim_connect_rate", [false, true, false]),
];

/// `ustack bench --quick` measures the kernel, ustack and smoltcp side by side (issue 10):
/// every row has a positive finite median in every column it applies to (the offload
/// rows' ustack column may only be missing as "not built"), the JSON keeps the samples,
/// the SVG parses as XML with a bar per cell, and no namespace is left behind. No speed is
/// asserted: the machine is shared.
#[test]
fn bench_quick_measures_every_row_in_three_columns_with_json_and_svg() {
    let Some(_turn) = root_only() else {
        return;
    };
    let dir = std::env::temp_dir();
    let json = dir.join(format!("ustack-bench-{}.json", std::process::id()));
    let svg = dir.join(format!("ustack-bench-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("ustack bench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for head in [
        "kernel",
        "ustack",
        "smoltcp",
        "/kernel",
        "/smoltcp",
        "cubic",
        "4 MiB",
        "2 s per lossy-path test",
        "ustack impair --loss 0.01 --delay 10ms --seed 1",
        "ustack impair --loss 0.001 --delay 50ms --seed 1",
    ] {
        assert!(text.contains(head), "{head} missing from:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    assert_eq!(v["config"]["runs"], 1, "{}", v["config"]);
    let rows = v["rows"].as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        BENCH_ROWS.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        "{text}"
    );
    for (row, (key, applies)) in rows.iter().zip(BENCH_ROWS) {
        for (col, applies) in ["kernel", "ustack", "smoltcp"].into_iter().zip(applies) {
            let cell = &row[col];
            if !applies {
                assert!(cell.is_null(), "{key} / {col} should be empty: {row}");
                continue;
            }
            if cell.is_null() && key.starts_with("offload") && col == "ustack" {
                let note = row["notes"][col].as_str().unwrap_or_default();
                assert!(note.starts_with("not built"), "{key} / {col}: {row}");
                continue;
            }
            let median = cell["median"].as_f64().unwrap_or(f64::NAN);
            assert!(
                median.is_finite() && median > 0.0,
                "{key} / {col} not measured: {row}\n{text}"
            );
            let samples = cell["samples"].as_array().unwrap();
            assert_eq!(samples.len(), 1, "{row}");
            assert!(cell["min"].as_f64() <= Some(median) && Some(median) <= cell["max"].as_f64());
        }
        if applies[0] && row["kernel"].is_object() && row["ustack"].is_object() {
            assert!(
                row["ratio_to_kernel"].as_f64().is_some_and(|r| r > 0.0),
                "{row}"
            );
        }
        if applies[2] && row["smoltcp"].is_object() && row["ustack"].is_object() {
            assert!(
                row["ratio_to_smoltcp"].as_f64().is_some_and(|r| r > 0.0),
                "{row}"
            );
        }
    }
    // A browser renders what parses as SVG: count the bars (one per cell) with Python.
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             r = E.parse(sys.argv[1]).getroot()\n\
             assert r.tag == '{http://www.w3.org/2000/svg}svg', r.tag\n\
             print(sum(1 for e in r.iter() if e.tag.endswith('rect') and e.get('x') == '300'))",
        ])
        .arg(&svg)
        .output()
        .expect("python3 runs");
    std::fs::remove_file(&svg).ok();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let bars: usize = String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(bars, 3 * BENCH_ROWS.len());
    let leftover = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let me = format!("-{}", std::process::id());
    assert!(!String::from_utf8_lossy(&leftover.stdout)
        .lines()
        .any(|l| l.contains("ustack-bench") && l.contains(&me)));
}

/// `ustack bench` needs `ustack-bench-peer` beside its executable; without it, it says
/// how to build it (one sentence, exit status 1) before anything else, root or not.
#[test]
fn bench_without_the_peer_beside_it_says_how_to_build_it() {
    let dir = std::env::temp_dir().join(format!("ustack-bench-nopeer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lone = dir.join("ustack");
    std::fs::copy(env!("CARGO_BIN_EXE_ustack"), &lone).unwrap();
    let out = Command::new(&lone).args(["bench", "--quick"]).output();
    std::fs::remove_dir_all(&dir).ok();
    let out = out.expect("the copied ustack runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ustack-bench-peer") && err.contains("cargo build --release"),
        "{err}"
    );
}

/// `ustack up` stops cleanly on SIGTERM (as on SIGINT): it closes its connections, flushes
/// the capture and exits 0, so the pcap holds the whole run.
#[test]
fn ustack_up_stops_on_sigterm_with_exit_0_and_a_complete_capture() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("sig").unwrap();
    let pcap = std::env::temp_dir().join(format!("ustack-sig-{}.pcapng", std::process::id()));
    let pcap_arg = pcap.to_string_lossy().to_string();
    let up = tun_up(
        &ns,
        "ustk0",
        &["--pcap", &pcap_arg],
        Stdio::null(),
        Stdio::piped(),
    );
    let ping = ns
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", OURS])
        .unwrap();
    assert!(ping.status.success());
    // A connection left open when the signal comes: ustack closes it.
    let holder = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7), timeout=10)
s.sendall(b"hello"); assert s.recv(5) == b"hello"
print("open", flush=True)
s.settimeout(10)
print("closed" if s.recv(10) == b"" else "data", flush=True)
"#;
    let mut client = ns
        .command(&["timeout", "20", "python3", "-c", holder, OURS])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        client.stdout.take().expect("piped"),
    ));
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("open"));
    // `ip netns exec` execs the command, so the child's pid is ustack's.
    let (status, _, stderr) = up.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "ustack up on SIGTERM: {status}\n{stderr}"
    );
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("closed"));
    let _ = client.wait();
    let tshark = Command::new("tshark")
        .args(["-r", &pcap_arg, "-T", "fields", "-e", "frame.protocols"])
        .output()
        .expect("tshark runs");
    std::fs::remove_file(&pcap).ok();
    let text = String::from_utf8_lossy(&tshark.stdout);
    assert!(
        tshark.status.success(),
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    assert!(
        text.lines().filter(|l| l.contains("icmp")).count() >= 6,
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("tcp")), "{text}");
}

/// The largest loss a UDP test may show on the clean TUN path of these tests: generous,
/// since the machine is shared and a debug build paces and receives on busy cores.
const UDP_LOSS_PERCENT_BOUND: f64 = 20.0;

/// `sum` of a UDP test as iperf3 `-J` prints it: the fields exist, bytes and packets
/// were counted, and the loss stays under the bound.
fn check_udp_sum(sum: &serde_json::Value, what: &str) {
    for field in [
        "bytes",
        "packets",
        "lost_packets",
        "jitter_ms",
        "lost_percent",
    ] {
        assert!(sum[field].is_number(), "{what}: no {field} in {sum}");
    }
    assert!(sum["bytes"].as_u64().unwrap() > 0, "{what}: {sum}");
    assert!(sum["packets"].as_u64().unwrap() > 0, "{what}: {sum}");
    let jitter = sum["jitter_ms"].as_f64().unwrap();
    assert!(jitter >= 0.0, "{what}: {sum}");
    let loss = sum["lost_percent"].as_f64().unwrap();
    assert!(loss < UDP_LOSS_PERCENT_BOUND, "{what}: {sum}");
}

/// The kernel's `iperf3 -c ADDR -u -b 50M -t SECONDS -J` with each of `runs`' flags:
/// iperf3 completes, its `sum` passes [`check_udp_sum`], and what the receiving side
/// counted never exceeds what was sent.
fn kernel_iperf3_udp_against(ns: &Netns, addr: &str, seconds: &str, runs: &[&[&str]]) {
    for flags in runs {
        let mut args = vec![
            "timeout", "30", "iperf3", "-c", addr, "-u", "-b", "50M", "-t", seconds, "-J",
        ];
        args.extend_from_slice(flags);
        let out = ns.exec(&args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "iperf3 -u {flags:?} to {addr} failed:\n{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("iperf3 -J prints JSON");
        assert!(v.get("error").is_none(), "{flags:?}: {}", v["error"]);
        let what = format!("iperf3 -u {flags:?} to {addr}");
        check_udp_sum(&v["end"]["sum"], &what);
        let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
        let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            received > 0 && received <= sent,
            "{what}: sent {sent}, received {received}"
        );
    }
}

/// The kernel's `iperf3 -c -u -b 50M` against `ustack up`, both directions, with one
/// datagram per packet and with 8000-byte datagrams (fragmented and reassembled on each
/// side): iperf3 completes, and its `-J` summary holds bytes, packets, loss and jitter
/// as iperf3 computes them from what ustack's server reported or sent.
#[test]
fn the_kernel_iperf3_udp_client_measures_ustack_both_ways() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up("ipu");
    kernel_iperf3_udp_against(
        &ns,
        OURS,
        "2",
        &[&[], &["-R"], &["-l", "8000"], &["-l", "8000", "-R"]],
    );
}

/// `ustack iperf3 -c -u -b 50M` against the kernel's `iperf3 -s`, both directions, also
/// with 8000-byte datagrams: the run succeeds and its JSON `sum` has iperf3's fields, with
/// the kernel's count of the same bytes beside ours.
#[test]
fn ustack_iperf3_udp_client_measures_against_the_kernel_server() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("ipcu").unwrap();
    for (i, flags) in [&[][..], &["-R"], &["-l", "8000"], &["-l", "8000", "-R"]]
        .into_iter()
        .enumerate()
    {
        let test = ["-u", "-b", "50M", "-t", "2"];
        let out = ustack_iperf3_client_on_tun(&ns, &format!("ustu{i}"), &test, flags);
        let text = String::from_utf8_lossy(&out.stdout);
        let what = format!("ustack iperf3 -u {flags:?}");
        let v = json_summary(out.status.success(), &text, &what);
        assert_eq!(v["protocol"], "udp", "{what}: {v}");
        check_udp_sum(&v["sum"], &what);
        let (ours, theirs) = (v["bytes"].as_u64().unwrap(), v["server_bytes"].as_u64());
        assert!(theirs.is_some_and(|b| b > 0), "{what}: {v}");
        assert_eq!(v["sum"]["bytes"].as_u64(), Some(ours), "{what}: {v}");
    }
}

/// RFC 1122 section 3.3.1: a host sends datagrams for a destination off its network to
/// a gateway. On TUN, with `--gateway`, ustack answers a ping from an address outside its
/// /24 (one the kernel owns on its loopback); without a gateway it has no route back.
#[test]
fn a_gateway_on_tun_reaches_hosts_off_our_network_rfc1122_3_3_1() {
    let Some(_turn) = root_only() else {
        return;
    };
    for (i, gateway) in [Some(KERNEL), None].into_iter().enumerate() {
        let flags = match gateway {
            Some(gw) => vec!["--gateway", gw],
            None => vec![],
        };
        let ns = ustack_up_with(&format!("tgw{i}"), &flags);
        ns.must(&["ip", "addr", "add", "198.19.7.1/32", "dev", "lo"])
            .unwrap();
        let ping = ns
            .exec(&[
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                "198.19.7.1",
                OURS,
            ])
            .unwrap();
        let text = String::from_utf8_lossy(&ping.stdout);
        if gateway.is_some() {
            assert!(text.contains(" 2 received"), "with --gateway:\n{text}");
        } else {
            assert!(text.contains(" 0 received"), "without a gateway:\n{text}");
        }
    }
}

// ---- Ethernet: raw AF_PACKET sockets on veth pairs, TAP devices, gateways ----

/// ustack's address on Ethernet links, and the kernel's beside it.
const RAW_OURS: &str = "198.18.6.2";
const RAW_KERNEL: &str = "198.18.6.1";

/// A process the test started, killed (by its pid) if the test ends without stopping it.
struct Running(std::process::Child);

impl Running {
    /// SIGTERM (ustack and tcpdump then flush their captures), and the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.0.wait().unwrap()
    }

    /// SIGTERM, then what the process wrote to its piped standard output and error until
    /// it ended, and its exit status.
    fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (self.0.wait().unwrap(), out, err)
    }

    /// Waits for the process to end by itself: its status and standard output.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let mut text = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        (self.0.wait().unwrap(), text)
    }
}

/// The JSON object on the last line of a ustack command's `--json` output, after
/// checking that the command (`what`) succeeded.
fn json_summary(success: bool, text: &str, what: &str) -> serde_json::Value {
    assert!(success, "{what}: {text}");
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("a JSON line")
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A namespace with IPv6 off, so that captures hold only what the tests make.
fn quiet_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.must(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        .unwrap();
    ns.must(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        .unwrap();
    ns
}

/// A veth pair between namespaces: `ours` in `u` (up, no address: the kernel there must
/// not own ustack's address), `theirs` in `k` with `cidr`. The kernel must not hand a
/// packet socket TSO super-frames or partial checksums, so `theirs` sends plain frames
/// (README, "On a raw interface").
fn veth(u: &Netns, ours: &str, k: &Netns, theirs: &str, cidr: &str) {
    u.must(&[
        "ip",
        "link",
        "add",
        ours,
        "type",
        "veth",
        "peer",
        "name",
        theirs,
        "netns",
        k.name(),
    ])
    .unwrap();
    u.must(&["ip", "link", "set", ours, "up"]).unwrap();
    k.must(&[
        "ethtool", "-K", theirs, "tso", "off", "gso", "off", "tx", "off",
    ])
    .unwrap();
    k.must(&["ip", "addr", "add", cidr, "dev", theirs]).unwrap();
    k.must(&["ip", "link", "set", theirs, "up"]).unwrap();
}

/// `ustack ARGS` started in `ns`, with its standard output kept for the caller.
fn start_ustack(ns: &Netns, args: &[&str]) -> Running {
    let mut all = vec![env!("CARGO_BIN_EXE_ustack")];
    all.extend_from_slice(args);
    Running(
        ns.command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ustack starts"),
    )
}

/// `ustack up ARGS` started in `ns`, returned once its device is open and its stack
/// running (it printed its first line): nothing the kernel sends after that is lost.
fn start_ustack_up(ns: &Netns, args: &[&str]) -> Running {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    let mut up = start_ustack(ns, &all);
    let stdout = up.0.stdout.take().expect("piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("ustack up on"), "ustack up said: {first}");
    std::thread::spawn(move || lines.for_each(drop));
    up
}

/// Waits (at most 10 s) until ustack in `ns` answers a ping to `addr`.
fn wait_for_ping(ns: &Netns, addr: &str) {
    for _ in 0..50 {
        let out = ns.exec(&["ping", "-c", "1", "-W", "1", addr]).unwrap();
        if out.status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("ustack at {addr} never answered a ping");
}

/// Bytes of each frame the wire captures keep: Ethernet, IPv4 and TCP headers with all
/// options fit (14 + 60 + 60), so tshark checks every header, while iperf3's bulk payload
/// (a raw veth carries 64 KiB GSO frames) stays out of the file. Without it the capture
/// grew to hundreds of megabytes and tshark's TCP analysis of it took over 20 CPU-minutes.
/// A frame cut short is "packet size limited during capture" to tshark, not an error.
const WIRE_SNAPLEN: &str = "256";

/// tcpdump on `dev` in `ns`, writing `path` (frames cut to [`WIRE_SNAPLEN`]); returns
/// once it is listening.
fn tcpdump(ns: &Netns, dev: &str, path: &str) -> Running {
    let mut child = ns
        .command(&["tcpdump", "-i", dev, "-nU", "-s", WIRE_SNAPLEN, "-w", path])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("listening on"))),
        "tcpdump never started listening"
    );
    Running(child)
}

/// `tshark -r CAPTURE ARGS`, which must succeed; its standard output.
fn tshark(capture: &str, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-r", capture])
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wireshark's expert analysis finds nothing at error level in `capture`. iperf3's
/// streams (port 5201) are random bytes, which heuristic dissectors (Thrift, say) now and
/// then mistake for their protocol and then call malformed: they are decoded as data.
fn assert_no_expert_errors(capture: &str) {
    let expert = tshark(
        capture,
        &["-d", "tcp.port==5201,data", "-q", "-z", "expert,error"],
    );
    assert!(
        !expert
            .lines()
            .any(|l| l.trim_start().starts_with("Errors (")),
        "{capture}:\n{expert}"
    );
}

/// The ARP packets in `capture` as `(opcode, sender IP, target IP)`.
fn arp_packets(capture: &str) -> Vec<(u16, String, String)> {
    tshark(
        capture,
        &[
            "-Y",
            "arp",
            "-T",
            "fields",
            "-e",
            "arp.opcode",
            "-e",
            "arp.src.proto_ipv4",
            "-e",
            "arp.dst.proto_ipv4",
        ],
    )
    .lines()
    .filter_map(|l| {
        let mut f = l.split('\t');
        Some((
            f.next()?.parse().ok()?,
            f.next()?.to_string(),
            f.next()?.to_string(),
        ))
    })
    .collect()
}

/// Python, run in the kernel's namespace: `size` bytes through ustack's TCP echo, every
/// byte checked.
const ECHO_CHECK: &str = r#"
import socket, sys
ours, size = sys.argv[1], int(sys.argv[2])
data = bytes((i * 7 + i // 251) & 0xff for i in range(size))
s = socket.create_connection((ours, 7), timeout=20)
s.settimeout(20)
back = bytearray()
sent = 0
while sent < len(data) or len(back) < len(data):
    if sent < len(data):
        sent += s.send(data[sent:sent + 65536])
    while len(back) < sent:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        back += chunk
print("echo", len(back), back == data)
"#;

/// The kernel's iperf3 client against ustack at `addr`: normal, reverse and four
/// streams, each counting more than a megabyte on both sides.
fn kernel_iperf3_against(ns: &Netns, addr: &str) {
    kernel_iperf3_tcp(
        ns,
        addr,
        &[&["-t", "1"], &["-t", "1", "-R"], &["-t", "1", "-P", "4"]],
    );
}

/// The kernel's `iperf3 -c addr -J` with each set of `runs` flags: it succeeds, reports
/// no error, and both sides count more than a megabyte, the receiver never more than the
/// sender.
fn kernel_iperf3_tcp(ns: &Netns, addr: &str, runs: &[&[&str]]) {
    for flags in runs {
        let mut args = vec!["timeout", "30", "iperf3", "-c", addr, "-J"];
        args.extend_from_slice(flags);
        let out = ns.exec(&args).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "iperf3 {flags:?} failed:\n{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("iperf3 -J prints JSON");
        assert!(v.get("error").is_none(), "{flags:?}: {}", v["error"]);
        let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            received > 1_000_000 && sent >= received,
            "{flags:?}: sent {sent}, received {received}"
        );
    }
}

/// `ustack up --raw` on one end of a veth pair answers the kernel on the other end as it
/// does on TUN: ping (also 8000-byte, fragmented), 4 MiB of TCP echo with every byte
/// checked, discard, UDP echo, and the kernel's iperf3 (normal, -R, -P 4, and UDP with
/// -R and -l 8000). Then `ustack iperf3 -c` on the
/// same interface measures against the kernel's server. The kernel side's capture shows
/// ARP both ways (RFC 826): the kernel asks for ustack's MAC and ustack answers, ustack
/// asks for the kernel's and the kernel answers; it and ustack's own Ethernet capture
/// (LINKTYPE_ETHERNET) read without expert errors in tshark.
#[test]
fn kernel_tools_talk_to_ustack_on_a_raw_veth_and_arp_runs_both_ways_rfc826() {
    let Some(_turn) = root_only() else {
        return;
    };
    let (u, k) = (quiet_netns("rawu"), quiet_netns("rawk"));
    veth(&u, "ur0", &k, "kr0", &format!("{RAW_KERNEL}/24"));
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let wire = dir.join(format!("ustack-raw-wire-{pid}.pcap"));
    let ours = dir.join(format!("ustack-raw-own-{pid}.pcapng"));
    let (wire, ours) = (wire.to_string_lossy(), ours.to_string_lossy());
    let dump = tcpdump(&k, "kr0", &wire);
    let addr = format!("{RAW_OURS}/24");
    let up = start_ustack_up(&u, &["--raw", "ur0", "--addr", &addr, "--pcap", &ours]);
    wait_for_ping(&k, RAW_OURS);
    for size in ["56", "8000"] {
        let ping = k
            .exec(&[
                "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", size, RAW_OURS,
            ])
            .unwrap();
        let text = String::from_utf8_lossy(&ping.stdout);
        assert!(text.contains(" 3 received"), "ping -s {size}:\n{text}");
    }
    let echo = k
        .exec(&[
            "timeout", "60", "python3", "-c", ECHO_CHECK, RAW_OURS, "4194304",
        ])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "echo 4194304 True",
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );
    // The other services, as on TUN: discard and UDP echo.
    let services = k
        .exec(&["timeout", "60", "python3", "-c", CLIENT, RAW_OURS])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&services.stdout).trim(),
        "echo True 1048576 source True udp True"
    );
    kernel_iperf3_against(&k, RAW_OURS);
    // UDP tests as on TUN, one datagram per frame and 8000-byte datagrams (fragmented
    // into Ethernet frames and reassembled by each side), both directions.
    kernel_iperf3_udp_against(&k, RAW_OURS, "1", &[&["-R"], &["-l", "8000"]]);
    assert_eq!(up.terminate().code(), Some(0), "ustack up on SIGTERM");

    // Now ustack starts the conversation: it must ask for the kernel's MAC.
    let server = Running(
        k.command(&["timeout", "30", "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s starts"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = start_ustack(
        &u,
        &[
            "iperf3", "-c", RAW_KERNEL, "--raw", "ur0", "--addr", &addr, "-t", "1", "--json",
        ],
    );
    let (status, text) = client.finish();
    drop(server);
    let v = json_summary(status.success(), &text, "ustack iperf3 -c");
    assert!(v["bytes"].as_u64().unwrap_or(0) > 1_000_000, "{v}");
    assert!(dump.terminate().success());

    let arp = arp_packets(&wire);
    let has =
        |op: u16, from: &str, to: &str| arp.iter().any(|a| *a == (op, from.into(), to.into()));
    assert!(has(1, RAW_KERNEL, RAW_OURS), "kernel asks: {arp:?}");
    assert!(has(2, RAW_OURS, RAW_KERNEL), "ustack answers: {arp:?}");
    assert!(has(1, RAW_OURS, RAW_KERNEL), "ustack asks: {arp:?}");
    assert!(has(2, RAW_KERNEL, RAW_OURS), "kernel answers: {arp:?}");
    let linktype = tshark(&ours, &["-c", "1", "-T", "fields", "-e", "frame.protocols"]);
    assert!(linktype.starts_with("eth:ethertype:"), "{linktype}");
    for capture in [&wire, &ours] {
        assert_no_expert_errors(capture);
    }
    std::fs::remove_file(&*wire).ok();
    std::fs::remove_file(&*ours).ok();
}

/// RFC 1122 section 3.3.1 on Ethernet: ustack on a raw veth reaches a host on another
/// network through a router namespace (ip_forward between two veth pairs), with
/// `--gateway`: the far host's ping, TCP echo and iperf3 all cross the router, so ustack
/// sends to the router's MAC; then `ustack iperf3 -c --gateway` reaches the far host's
/// server, resolving the router's MAC with ARP itself.
#[test]
fn a_gateway_on_a_raw_link_reaches_a_host_behind_a_router_rfc1122_3_3_1() {
    let Some(_turn) = root_only() else {
        return;
    };
    let (u, r, h) = (quiet_netns("gwu"), quiet_netns("gwr"), quiet_netns("gwh"));
    veth(&u, "ur0", &r, "rr0", &format!("{RAW_KERNEL}/24"));
    veth(&h, "hr0", &r, "rh0", "198.18.7.1/24");
    h.must(&["ip", "addr", "add", "198.18.7.2/24", "dev", "hr0"])
        .unwrap();
    h.must(&["ip", "route", "add", "default", "via", "198.18.7.1"])
        .unwrap();
    r.must(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    let addr = format!("{RAW_OURS}/24");
    let up = start_ustack_up(
        &u,
        &["--raw", "ur0", "--addr", &addr, "--gateway", RAW_KERNEL],
    );
    wait_for_ping(&h, RAW_OURS);
    let ping = h
        .exec(&[
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000", RAW_OURS,
        ])
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains(" 3 received"), "{text}");
    assert!(
        text.contains("ttl=63"),
        "the reply crossed the router: {text}"
    );
    let echo = h
        .exec(&[
            "timeout", "60", "python3", "-c", ECHO_CHECK, RAW_OURS, "2097152",
        ])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "echo 2097152 True",
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );
    kernel_iperf3_against(&h, RAW_OURS);
    assert_eq!(up.terminate().code(), Some(0), "ustack up on SIGTERM");

    // `ustack iperf3 -c` to the far host: ustack resolves the router's MAC itself.
    let server = Running(
        h.command(&["timeout", "30", "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s starts"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = start_ustack(
        &u,
        &[
            "iperf3",
            "-c",
            "198.18.7.2",
            "--raw",
            "ur0",
            "--addr",
            &addr,
            "--gateway",
            RAW_KERNEL,
            "-t",
            "1",
            "--json",
        ],
    );
    let (status, text) = client.finish();
    drop(server);
    let v = json_summary(status.success(), &text, "ustack iperf3 -c");
    assert!(v["bytes"].as_u64().unwrap_or(0) > 1_000_000, "{v}");
}

/// `ustack up --tap`: the kernel's side of a TAP device pings ustack (ARP first, RFC
/// 826) and runs TCP echo and iperf3; ustack answers from a locally administered MAC of
/// its own. Then `ustack iperf3 -c --tap` measures against the kernel's server.
#[test]
fn the_kernel_pings_ustack_through_a_tap_device_rfc826() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = quiet_netns("tap");
    let addr = format!("{RAW_OURS}/24");
    let up = start_ustack(&ns, &["up", "--tap", "utap0", "--addr", &addr]);
    ns.wait_for_link("utap0").unwrap();
    ns.must(&[
        "ip",
        "addr",
        "add",
        &format!("{RAW_KERNEL}/24"),
        "dev",
        "utap0",
    ])
    .unwrap();
    ns.must(&["ip", "link", "set", "utap0", "up"]).unwrap();
    wait_for_ping(&ns, RAW_OURS);
    let ping = ns
        .exec(&[
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "8000", RAW_OURS,
        ])
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains(" 3 received"), "{text}");
    let neigh = ns.must(&["ip", "neigh", "show", RAW_OURS]).unwrap();
    let mac = neigh.split("lladdr ").nth(1).unwrap_or("").to_string();
    assert!(
        mac.starts_with("02:"),
        "ustack's MAC is locally administered: {neigh}"
    );
    let echo = ns
        .exec(&[
            "timeout", "60", "python3", "-c", ECHO_CHECK, RAW_OURS, "1048576",
        ])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "echo 1048576 True"
    );
    kernel_iperf3_against(&ns, RAW_OURS);
    assert_eq!(up.terminate().code(), Some(0), "ustack up on SIGTERM");

    // `ustack iperf3 -c` on a TAP device of its own, against the kernel's server.
    let server = Running(
        ns.command(&["timeout", "30", "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s starts"),
    );
    let client = start_ustack(
        &ns,
        &[
            "iperf3", "-c", RAW_KERNEL, "--tap", "utap1", "--addr", &addr, "-t", "1", "--json",
        ],
    );
    ns.wait_for_link("utap1").unwrap();
    ns.must(&[
        "ip",
        "addr",
        "add",
        &format!("{RAW_KERNEL}/24"),
        "dev",
        "utap1",
    ])
    .unwrap();
    ns.must(&["ip", "link", "set", "utap1", "up"]).unwrap();
    let (status, text) = client.finish();
    drop(server);
    let v = json_summary(status.success(), &text, "ustack iperf3 -c");
    assert!(v["bytes"].as_u64().unwrap_or(0) > 1_000_000, "{v}");
}

/// The kernel's iperf3 against ustack on each kind of device, in one run: a raw socket
/// on a veth pair, a TAP device, a TUN device; into ustack and out of it (`-R`). Prints
/// the table (run with `--nocapture`, in release for real numbers, and
/// `USTACK_LINK_BENCH_SECS` for longer runs); asserts only that every cell was measured.
#[test]
fn iperf3_throughput_over_raw_tap_and_tun_side_by_side() {
    let Some(_turn) = root_only() else {
        return;
    };
    let secs = std::env::var("USTACK_LINK_BENCH_SECS").unwrap_or_else(|_| "1".into());
    let addr = format!("{RAW_OURS}/24");
    let gbits = |ns: &Netns, reverse: bool| {
        let mut args = vec!["timeout", "60", "iperf3", "-c", RAW_OURS, "-J", "-t", &secs];
        if reverse {
            args.push("-R");
        }
        let out = ns.exec(&args).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J");
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9
    };
    let mut rows = Vec::new();
    for kind in ["raw", "tap", "tun"] {
        let u = quiet_netns(&format!("bw{kind}u"));
        let k = quiet_netns(&format!("bw{kind}k"));
        let (_up, kernel) = match kind {
            "raw" => {
                veth(&u, "ur0", &k, "kr0", &format!("{RAW_KERNEL}/24"));
                let up = start_ustack_up(&u, &["--raw", "ur0", "--addr", &addr]);
                (up, &k)
            }
            _ => {
                let up = start_ustack(&u, &["up", &format!("--{kind}"), "ud0", "--addr", &addr]);
                u.wait_for_link("ud0").unwrap();
                u.must(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{RAW_KERNEL}/24"),
                    "dev",
                    "ud0",
                ])
                .unwrap();
                u.must(&["ip", "link", "set", "ud0", "up"]).unwrap();
                (up, &u)
            }
        };
        wait_for_ping(kernel, RAW_OURS);
        rows.push((kind, gbits(kernel, false), gbits(kernel, true)));
    }
    eprintln!("iperf3 from the kernel, Gbit/s    into ustack   out of it (-R)");
    for (kind, into, out) in &rows {
        eprintln!("  {kind:<31} {into:>11.2} {out:>16.2}");
        assert!(*into > 0.0 && *out > 0.0, "{kind}: {into} / {out}");
    }
}

/// Address conflicts on a raw link, probed with `arping` from the kernel's side: a probe
/// for ustack's address (sender 0.0.0.0, RFC 5227 section 2.1.1) is answered, so the
/// prober sees the address is taken; a gratuitous ARP from another MAC claiming ustack's
/// address is a conflict, which ustack defends with an announcement of its own (section
/// 2.4) and never learns (it still answers ping).
#[test]
fn arping_probes_are_answered_and_claims_on_our_address_defended_rfc5227() {
    let Some(_turn) = root_only() else {
        return;
    };
    let (u, k) = (quiet_netns("arpu"), quiet_netns("arpk"));
    veth(&u, "ur0", &k, "kr0", &format!("{RAW_KERNEL}/24"));
    let wire = std::env::temp_dir().join(format!("ustack-arp-{}.pcap", std::process::id()));
    let wire = wire.to_string_lossy();
    let addr = format!("{RAW_OURS}/24");
    let _up = start_ustack_up(&u, &["--raw", "ur0", "--addr", &addr]);
    wait_for_ping(&k, RAW_OURS);
    let ours = u.must(&["ip", "-br", "link", "show", "ur0"]).unwrap();
    let ours = ours.split_whitespace().nth(2).unwrap().to_string();
    let probe = k
        .exec(&["arping", "-0", "-c", "1", "-w", "2", "-i", "kr0", RAW_OURS])
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "the probe was not answered:\n{text}"
    );
    assert!(
        text.contains(&ours),
        "answered from ustack's MAC {ours}:\n{text}"
    );
    let dump = tcpdump(&k, "kr0", &wire);
    let claim = k
        .exec(&[
            "arping", "-U", "-S", RAW_OURS, "-c", "1", "-w", "1", "-i", "kr0", RAW_OURS,
        ])
        .unwrap();
    assert!(claim.status.code().is_some(), "arping ran");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(dump.terminate().success());
    let frames = tshark(
        &wire,
        &[
            "-Y",
            "arp",
            "-T",
            "fields",
            "-e",
            "eth.src",
            "-e",
            "arp.src.proto_ipv4",
        ],
    );
    std::fs::remove_file(&*wire).ok();
    let claimed = frames
        .lines()
        .position(|l| !l.starts_with(&ours) && l.ends_with(RAW_OURS))
        .unwrap_or_else(|| panic!("no claim captured:\n{frames}"));
    assert!(
        frames
            .lines()
            .skip(claimed + 1)
            .any(|l| l == format!("{ours}\t{RAW_OURS}")),
        "ustack did not defend its address:\n{frames}"
    );
    let ping = k
        .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", RAW_OURS])
        .unwrap();
    assert!(ping.status.success());
}

/// `ustack up -C bbr` runs BBR and tells iperf3 so: the kernel's client reports the
/// server side's congestion control as `receiver_tcp_congestion` (from the results'
/// `congestion_used`), and the test moves data.
#[test]
fn the_kernel_iperf3_client_sees_the_congestion_control_ustack_runs() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up_with("ipcc", &["-C", "bbr"]);
    let out = ns
        .exec(&["timeout", "30", "iperf3", "-c", OURS, "-t", "1", "-J"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iperf3 failed:\n{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("iperf3 -J prints JSON");
    assert_eq!(v["end"]["receiver_tcp_congestion"], "bbr", "{}", v["end"]);
    assert!(v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 1_000_000);
}

/// TCP packets longer than the MTU (1500) from `src` in `capture`: the super-segments
/// the stack saw (GRO/GSO from the kernel) or sent (TSO), which an offload capture shows.
fn super_segments_from(capture: &str, src: &str) -> usize {
    let filter = format!("tcp && ip.src == {src} && ip.len > 1500");
    tshark(capture, &["-Y", &filter, "-T", "fields", "-e", "ip.len"])
        .lines()
        .count()
}

/// `ustack up --offload` (IFF_VNET_HDR, TUN_F_CSUM | TUN_F_TSO4) answers ping, TCP echo
/// with 1 MiB and 4 MiB checked byte for byte, discard and UDP echo, and stops cleanly on
/// SIGTERM; its capture shows super-segments both ways (the kernel's GSO packets it took
/// whole, the TSO packets it had the kernel cut), so offload that silently did nothing
/// fails here.
#[test]
fn ustack_up_with_offload_moves_checked_data_in_super_segments_both_ways() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("i10off-echo").unwrap();
    let pcap = std::env::temp_dir().join(format!("ustack-i10off-{}.pcapng", std::process::id()));
    let pcap_arg = pcap.to_string_lossy().to_string();
    let up = tun_up(
        &ns,
        "i10off0",
        &["--offload", "--pcap", &pcap_arg],
        Stdio::null(),
        Stdio::piped(),
    );
    let ping = ns
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", OURS])
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    let client = ns
        .exec(&["timeout", "60", "python3", "-c", CLIENT, OURS])
        .unwrap();
    let line = String::from_utf8_lossy(&client.stdout);
    assert_eq!(
        line.trim(),
        "echo True 1048576 source True udp True",
        "{client:?}"
    );
    let echo = ns
        .exec(&[
            "timeout", "60", "python3", "-c", ECHO_CHECK, OURS, "4194304",
        ])
        .unwrap();
    let line = String::from_utf8_lossy(&echo.stdout);
    assert_eq!(line.trim(), "echo 4194304 True", "{echo:?}");
    let (status, _, stderr) = up.stop();
    assert_eq!(status.code(), Some(0), "{status}\n{stderr}");
    let received = super_segments_from(&pcap_arg, KERNEL);
    let sent = super_segments_from(&pcap_arg, OURS);
    std::fs::remove_file(&pcap).ok();
    assert!(
        received > 0 && sent > 0,
        "super-segments received {received}, sent {sent}"
    );
}

/// The kernel's iperf3 client against `ustack up --offload`: TCP both ways (-R: ustack
/// sends TSO super-segments) moves data without an error on either side.
#[test]
fn the_kernel_iperf3_client_runs_both_ways_against_ustack_up_with_offload() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = ustack_up_with("i10off-ipf", &["--offload"]);
    kernel_iperf3_tcp(&ns, OURS, &[&["-t", "2"], &["-t", "2", "-R"]]);
}

/// `ustack iperf3 -c --offload` against the kernel's `iperf3 -s`, both directions: both
/// sides count the bytes, the kernel's never more than ustack's.
#[test]
fn ustack_iperf3_client_with_offload_measures_against_the_kernel_server() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("i10off-ipc").unwrap();
    for (i, reverse) in [false, true].into_iter().enumerate() {
        let mut extra = vec!["--offload"];
        if reverse {
            extra.push("-R");
        }
        let dev = format!("i10offc{i}");
        let out = ustack_iperf3_client_on_tun(&ns, &dev, &["-t", "1"], &extra);
        let text = String::from_utf8_lossy(&out.stdout);
        let v = json_summary(out.status.success(), &text, &format!("reverse={reverse}"));
        let bytes = v["bytes"].as_u64().unwrap_or(0);
        let server = v["server_bytes"].as_u64().unwrap_or(0);
        assert!(
            bytes > 1_000_000 && server > 1_000_000 && server <= bytes,
            "reverse={reverse}: {v}"
        );
    }
}

/// Python, run in the namespace: three connections at once to the tokio example, each
/// sending lines and checking they come back in upper case.
#[cfg(feature = "tokio")]
const UPPER_CHECK: &str = r#"
import socket, sys
addr = (sys.argv[1], int(sys.argv[2]))
conns = [socket.create_connection(addr, timeout=10) for _ in range(3)]
for i, s in enumerate(conns):
    s.sendall(b"".join(b"line %d of conn %d\n" % (j, i) for j in range(500)))
    s.shutdown(socket.SHUT_WR)
for i, s in enumerate(conns):
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    want = b"".join(b"LINE %d OF CONN %d\n" % (j, i) for j in range(500))
    assert got == want, (i, len(got), got[:60])
print("upper ok")
"#;

/// The README's tokio example (issue 12): a tokio service on ustack's async sockets on
/// TUN serves three kernel connections at once, and ends after them with exit status 0.
#[cfg(feature = "tokio")]
#[test]
fn the_tokio_example_serves_kernel_clients_on_tun() {
    let Some(_turn) = root_only() else {
        return;
    };
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_ustack"))
        .parent()
        .expect("target dir")
        .join("examples/tokio_echo");
    assert!(
        example.is_file(),
        "{} missing: cargo test --features tokio builds it",
        example.display()
    );
    let ns = Netns::new("tokio").unwrap();
    let addr = format!("{OURS}/24");
    let example = example.to_string_lossy().to_string();
    let args = [
        example.as_str(),
        "--tun",
        "ustk0",
        "--addr",
        &addr,
        "--port",
        "7777",
        "--connections",
        "3",
    ];
    let mut running = Running(
        ns.command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts"),
    );
    let stdout = running.0.stdout.take().expect("piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    // Listening once it says so: a SYN before that would be refused.
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.starts_with("tokio_echo: serving"), "it said: {first}");
    ns.must(&["ip", "addr", "add", &format!("{KERNEL}/24"), "dev", "ustk0"])
        .unwrap();
    ns.must(&["ip", "link", "set", "ustk0", "up"]).unwrap();
    let out = ns
        .exec(&["python3", "-c", UPPER_CHECK, OURS, "7777"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text: Vec<String> = lines.map_while(Result::ok).collect();
    let text = text.join("\n");
    let status = running.0.wait().unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("served 3 connection(s)"), "{text}");
    assert_eq!(text.matches(": 500 line(s)").count(), 3, "{text}");
}

/// Python, run in the namespace: `n` echo connections open at once, one line each.
const MANY_ECHOES: &str = r#"
import socket, sys
ours, n = sys.argv[1], int(sys.argv[2])
conns = [socket.create_connection((ours, 7), timeout=10) for _ in range(n)]
for i, s in enumerate(conns):
    s.sendall(b"conn %d\n" % i)
for i, s in enumerate(conns):
    want = b"conn %d\n" % i
    got = b""
    while len(got) < len(want):
        d = s.recv(100)
        assert d, i
        got += d
    assert got == want, (i, got)
    s.close()
print("echoed", n)
"#;

/// `ustack up --queues 2` (issue 12): a multi-queue TUN with a stack per queue. The
/// kernel spreads flows over the queues: 64 echo connections and iperf3 with four
/// streams (normal and -R) work, every queue accepted connections (the odds that 64
/// flows all hash to one queue are 2^-63), a UDP iperf3 test is refused with iperf3's
/// own error, and SIGTERM still ends it with status 0.
#[test]
fn ustack_up_with_two_queues_spreads_connections_over_two_stacks() {
    let Some(_turn) = root_only() else {
        return;
    };
    let ns = Netns::new("mq").unwrap();
    let up = tun_up(
        &ns,
        "ustk0",
        &["--queues", "2"],
        Stdio::piped(),
        Stdio::piped(),
    );
    // Each queue has its own ring of this length (see the bench's TUN_TXQUEUELEN).
    ns.must(&["ip", "link", "set", "ustk0", "txqueuelen", "10000"])
        .unwrap();
    wait_for_ping(&ns, OURS);
    let out = ns
        .exec(&["python3", "-c", MANY_ECHOES, OURS, "64"])
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("echoed 64"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kernel_iperf3_tcp(
        &ns,
        OURS,
        &[&["-t", "1", "-P", "4"], &["-t", "1", "-P", "4", "-R"]],
    );
    let udp = ns
        .exec(&["timeout", "30", "iperf3", "-c", OURS, "-u", "-t", "1"])
        .unwrap();
    let said =
        String::from_utf8_lossy(&udp.stdout).to_string() + &String::from_utf8_lossy(&udp.stderr);
    assert!(!udp.status.success(), "{said}");
    assert!(said.contains("Protocol not supported"), "{said}");
    let (status, text, errors) = up.stop();
    assert!(status.success(), "{text}{errors}");
    let accepted: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("ustack up: queue "))
        .map(|l| {
            let n = l.split(", ").nth(1).and_then(|p| p.split(' ').next());
            n.and_then(|n| n.parse().ok()).unwrap_or(0)
        })
        .collect();
    assert_eq!(accepted.len(), 2, "{text}");
    assert!(accepted.iter().all(|&n| n > 0), "{text}");
    // 64 echoes, and per iperf3 test a control connection and four streams.
    assert!(accepted.iter().sum::<u64>() >= 64 + 2 * 5, "{text}");
    assert!(errors.contains("UDP tests need a single queue"), "{errors}");
}
