//! Demos that run on the embedded simulated network: no root, no OS networking, virtual
//! time.

pub mod ping;
pub mod scale;
pub mod tcp;
pub mod udp;

/// What a finished run reports: the `--json` summary, and why the run failed if it did.
pub trait Outcome {
    /// The summary object `--json` prints as the last line.
    fn to_json(&self) -> serde_json::Value;
    /// Why the run did not succeed, in one sentence; `None` if it did.
    fn failure(&self) -> Option<String>;
}

impl Outcome for ping::PingReport {
    fn to_json(&self) -> serde_json::Value {
        ping::PingReport::to_json(self)
    }

    fn failure(&self) -> Option<String> {
        if self.mismatched > 0 {
            Some(format!(
                "{} replies did not match their request",
                self.mismatched
            ))
        } else if self.received() == 0 {
            Some(format!("no replies from {}", ping::HOST_B))
        } else {
            None
        }
    }
}

impl Outcome for scale::ScaleReport {
    fn to_json(&self) -> serde_json::Value {
        scale::ScaleReport::to_json(self)
    }

    /// A run that finished succeeded: every stage checks itself (and errors otherwise).
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Outcome for tcp::TcpDemoReport {
    fn to_json(&self) -> serde_json::Value {
        tcp::TcpDemoReport::to_json(self)
    }

    fn failure(&self) -> Option<String> {
        (!self.sha256_match()).then(|| {
            self.failure
                .clone()
                .unwrap_or_else(|| "the received file does not match".to_string())
        })
    }
}

impl Outcome for udp::UdpDemoReport {
    fn to_json(&self) -> serde_json::Value {
        udp::UdpDemoReport::to_json(self)
    }

    fn failure(&self) -> Option<String> {
        if !self.audit_ok() {
            Some("the audit failed".to_string())
        } else if self.audit.gave_up > 0 {
            Some(format!(
                "{} purchases got no answer before the clients gave up",
                self.audit.gave_up
            ))
        } else {
            None
        }
    }
}
