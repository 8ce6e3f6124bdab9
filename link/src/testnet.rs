//! Test helpers for the device tests that need root: a network namespace of the test
//! thread's own (anonymous, so it disappears with the thread, devices included; children
//! started from the thread inherit it) and commands run inside it.

use std::process::Command;

use crate::poll::wait_readable;
use crate::time::{Duration, Instant};
use crate::Link;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn skip_unless_root() -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "SKIPPED: device tests need root (a network namespace, CAP_NET_ADMIN and CAP_NET_RAW)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "a root-only test was skipped under CI=true"
    );
    true
}

/// Runs `ip ARGS` (or any command) in this thread's network namespace.
pub fn must(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into a new, empty network namespace with loopback up.
pub fn own_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    must(&["ip", "link", "set", "lo", "up"]);
}

pub fn mac_of(dev: &str) -> [u8; 6] {
    // `ua@ub  UP  aa:bb:cc:dd:ee:ff <...>` (this thread's /sys is the old namespace's).
    let text = must(&["ip", "-br", "link", "show", dev]);
    let word = text.split_whitespace().nth(2).unwrap().to_string();
    let mut mac = [0; 6];
    for (d, s) in mac.iter_mut().zip(word.split(':')) {
        *d = u8::from_str_radix(s, 16).unwrap();
    }
    mac
}

/// Waits up to 5 s for a frame of EtherType `ethertype`, skipping others (IPv6
/// neighbour discovery and the like).
pub fn recv_ethertype(link: &mut impl Link, ethertype: u16) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut buf = vec![0; 2048];
    while std::time::Instant::now() < deadline {
        wait_readable([link.fd().unwrap()], Duration::from_millis(100)).unwrap();
        while let Some(n) = link.recv(Instant::ZERO, &mut buf).unwrap() {
            if u16::from_be_bytes([buf[12], buf[13]]) == ethertype {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("no frame of EtherType {ethertype:#06x} arrived");
}
