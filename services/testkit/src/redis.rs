//! A real Redis server on a free port, without persistence: one a test
//! may stop and start again on the same port (it comes back empty, as a
//! Redis without persistence does), or pause. Or one that speaks only TLS
//! and knows one ACL user ([`Redis::start_tls`]).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::certs::TestCerts;
use crate::process::{ChildGuard, free_addr};
use crate::tools;

#[derive(Debug)]
pub struct Redis {
    pub addr: SocketAddr,
    pub process: ChildGuard,
    /// The ACL user (name, password) of a TLS-only server.
    user: Option<(String, String)>,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_addr())
    }

    /// A new, empty server on `addr` (say, where a killed one was).
    pub fn start_on(addr: SocketAddr) -> Self {
        let port = addr.port().to_string();
        let mut command = Command::new(tools::redis_server());
        command.args(["--port", &port]).args(COMMON);
        Self::spawn(addr, &mut command, None)
    }

    /// A new, empty server that speaks only TLS (`--port 0`: no plaintext
    /// listener), with the server certificate of `certs`, and whose only
    /// user is the ACL user `user` with `password`, allowed everything
    /// (the `default` user is off).
    pub fn start_tls(certs: &TestCerts, user: &str, password: &str) -> Self {
        let addr = free_addr();
        let port = addr.port().to_string();
        let path = |p: std::path::PathBuf| p.display().to_string();
        let mut command = Command::new(tools::redis_server());
        command
            .args(["--port", "0", "--tls-port", &port])
            .args(["--tls-cert-file", &path(certs.server_cert())])
            .args(["--tls-key-file", &path(certs.server_key())])
            .args(["--tls-ca-cert-file", &path(certs.ca())])
            // Clients show no certificate: they log in as an ACL user.
            .args(["--tls-auth-clients", "no"])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ])
            .args(COMMON);
        Self::spawn(addr, &mut command, Some((user.into(), password.into())))
    }

    fn spawn(addr: SocketAddr, command: &mut Command, user: Option<(String, String)>) -> Self {
        let mut process = ChildGuard::spawn("redis", command);
        process.wait_for_port(addr, Duration::from_secs(10));
        Self {
            addr,
            process,
            user,
        }
    }

    /// `redis://HOST:PORT`, or for a TLS server
    /// `rediss://USER:PASSWORD@HOST:PORT`.
    pub fn url(&self) -> String {
        match &self.user {
            Some((user, password)) => format!("rediss://{user}:{password}@{}", self.addr),
            None => format!("redis://{}", self.addr),
        }
    }

    /// Kills the server (SIGKILL): connections are refused until
    /// [`Redis::start_again`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A new, empty server on the same address, once the old one is gone.
    pub fn start_again(&mut self) {
        assert!(self.user.is_none(), "only a plaintext server starts again");
        self.process.kill();
        *self = Self::start_on(self.addr);
    }
}

/// On 127.0.0.1, without persistence.
const COMMON: [&str; 6] = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
