//! A real Redis server on a free port, without persistence: one a test
//! may stop and start again on the same port (it comes back empty, as a
//! Redis without persistence does), or pause.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, free_addr};
use crate::tools;

#[derive(Debug)]
pub struct Redis {
    pub addr: SocketAddr,
    pub process: ChildGuard,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_addr())
    }

    /// A new, empty server on `addr` (say, where a killed one was).
    pub fn start_on(addr: SocketAddr) -> Self {
        let port = addr.port().to_string();
        let mut command = Command::new(tools::redis_server());
        command.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut process = ChildGuard::spawn("redis", &mut command);
        process.wait_for_port(addr, Duration::from_secs(10));
        Self { addr, process }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL): connections are refused until
    /// [`Redis::start_again`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A new, empty server on the same address, once the old one is gone.
    pub fn start_again(&mut self) {
        self.process.kill();
        *self = Self::start_on(self.addr);
    }
}
