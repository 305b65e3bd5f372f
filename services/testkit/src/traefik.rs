//! Traefik, started with the project's own local configuration
//! (`traefik/local/run.sh` and `dynamic.yml`), in front of given edges.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, free_addr};
use crate::tools;

#[derive(Debug)]
pub struct Traefik {
    pub addr: SocketAddr,
    _process: ChildGuard,
}

impl Traefik {
    /// Starts Traefik balancing `edges` (with the sticky cookie), routing
    /// `/api` to `api`, and waits until it routes to every edge.
    pub async fn start(edges: &[SocketAddr], api: SocketAddr) -> Self {
        Self::start_with_env(edges, api, &[]).await
    }

    /// As [`Traefik::start`], with extra environment for
    /// `traefik/local/run.sh` (`RILL_TRAEFIK_IDLE_TIMEOUT`, say).
    pub async fn start_with_env(
        edges: &[SocketAddr],
        api: SocketAddr,
        env: &[(&str, &str)],
    ) -> Self {
        let addr = free_addr();
        let edge_urls: Vec<String> = edges.iter().map(|e| format!("http://{e}")).collect();
        let script = tools::repo_root().join("traefik/local/run.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .env("RILL_TRAEFIK_BIN", tools::traefik())
            .env("RILL_TRAEFIK_LISTEN", addr.to_string())
            .env("RILL_EDGE_URLS", edge_urls.join(","))
            .env("RILL_API_URL", format!("http://{api}"))
            .envs(env.iter().copied());
        let mut process = ChildGuard::spawn("traefik", &mut command);
        process.wait_for_port(addr, Duration::from_secs(20));
        let traefik = Self {
            addr,
            _process: process,
        };
        traefik.wait_until_routing(edges.len()).await;
        traefik
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Traefik loads its file configuration and health-checks the edges
    /// shortly after it listens: wait until requests reach every edge.
    async fn wait_until_routing(&self, edges: usize) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = std::collections::HashSet::new();
        while seen.len() < edges {
            assert!(
                Instant::now() < deadline,
                "Traefik routed to only {seen:?} of {edges} edges"
            );
            if let Ok(response) = http.get(format!("{}/readyz", self.url())).send().await
                && response.status().is_success()
                && let Some(edge) = response.headers().get("x-rill-edge")
            {
                seen.insert(edge.to_str().unwrap_or_default().to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
