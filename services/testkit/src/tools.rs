//! Where the tools installed by `scripts/lib/tools.sh` are. The test script
//! exports `RILL_TANSU_BIN`, `RILL_TRAEFIK_BIN` and `RILL_REDIS_BIN`, and for
//! the browser tests `RILL_CHROMIUM_BIN`, `RILL_NODE_BIN` and
//! `RILL_BROWSER_TESTS_DIR`; without them, the default install locations
//! are tried.

use std::path::{Path, PathBuf};

fn tools_dir() -> PathBuf {
    match std::env::var_os("RILL_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            Path::new(&home).join(".local/share/rill")
        }
    }
}

fn find(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{} not found at {}: run the tests with scripts/test.sh, which installs it, or set {var}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        path.display()
    );
    path
}

pub fn tansu() -> PathBuf {
    find("RILL_TANSU_BIN", tools_dir().join("tansu-0.6.0/bin/tansu"))
}

pub fn traefik() -> PathBuf {
    find(
        "RILL_TRAEFIK_BIN",
        tools_dir().join("traefik-3.7.15/bin/traefik"),
    )
}

pub fn redis_server() -> PathBuf {
    find("RILL_REDIS_BIN", PathBuf::from("/usr/bin/redis-server"))
}

/// Debian's Chromium, which the browser tests drive.
pub fn chromium() -> PathBuf {
    find("RILL_CHROMIUM_BIN", PathBuf::from("/usr/bin/chromium"))
}

/// Node.js, which runs the browser tests' Playwright scripts.
pub fn node() -> PathBuf {
    find("RILL_NODE_BIN", PathBuf::from("/usr/bin/node"))
}

/// The folder of the browser tests' scripts, with `playwright-core`
/// installed in its `node_modules` (`npm ci`, which `scripts/test.sh` runs).
pub fn browser_tests_dir() -> PathBuf {
    let dir = find(
        "RILL_BROWSER_TESTS_DIR",
        repo_root().join("services/edge/tests/browser"),
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}/node_modules: run the tests with \
         scripts/test.sh, which runs `npm ci` there, or run `npm ci` in that folder",
        dir.display()
    );
    dir
}

/// The repository's root (for `traefik/local/run.sh`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
