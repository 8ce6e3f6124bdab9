//! Network namespaces for the tests and benchmarks that touch the OS network (DESIGN.md,
//! "Test networks"): [`Netns`] creates `ustack-<tag>-<pid>`, runs commands and processes
//! inside it, and on drop stops those processes and deletes the namespace, whatever
//! happened in between. Needs root and iproute2's `ip`.

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Why a namespace command failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("the device {device} never appeared in {netns}")]
    NoDevice { device: String, netns: String },
}

/// A network namespace and the processes started in it, removed when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    children: Vec<Child>,
}

/// How long [`Netns::wait_for_link`] waits for a process to create its device.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

impl Netns {
    /// Creates the namespace `ustack-<tag>-<pid>` with its loopback device up.
    pub fn new(tag: &str) -> Result<Netns, NetnsError> {
        let name = format!("ustack-{tag}-{}", std::process::id());
        let add = ["ip", "netns", "add", &name];
        success(output(Command::new("ip").args(&add[1..]), &add)?, &add)?;
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        ns.must(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `args` as a command inside the namespace, to be configured and started by the
    /// caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs `args` inside the namespace to completion, whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Result<Output, NetnsError> {
        output(&mut self.command(args), args)
    }

    /// Runs `args` inside the namespace; it must succeed. Returns its standard output.
    pub fn must(&self, args: &[&str]) -> Result<String, NetnsError> {
        success(self.exec(args)?, args)
    }

    /// Starts `args` inside the namespace with its output discarded; it is killed when
    /// the namespace is dropped.
    pub fn spawn(&mut self, args: &[&str]) -> Result<(), NetnsError> {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| NetnsError::Spawn {
                command: describe(args),
                source,
            })?;
        self.children.push(child);
        Ok(())
    }

    /// Waits (at most 10 s) for a process in the namespace to create device `dev`.
    pub fn wait_for_link(&self, dev: &str) -> Result<(), NetnsError> {
        let deadline = Instant::now() + LINK_TIMEOUT;
        while !self.exec(&["ip", "link", "show", dev])?.status.success() {
            if Instant::now() > deadline {
                return Err(NetnsError::NoDevice {
                    device: dev.to_string(),
                    netns: self.name.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn describe(args: &[&str]) -> String {
    format!("`{}`", args.join(" "))
}

/// Runs `command` (described by `args`) to completion.
fn output(command: &mut Command, args: &[&str]) -> Result<Output, NetnsError> {
    command.output().map_err(|source| NetnsError::Spawn {
        command: describe(args),
        source,
    })
}

/// The standard output of a command that must have succeeded.
fn success(out: Output, args: &[&str]) -> Result<String, NetnsError> {
    if !out.status.success() {
        return Err(NetnsError::Failed {
            command: describe(args),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
