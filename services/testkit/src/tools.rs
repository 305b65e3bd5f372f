//! Where the tools installed by `scripts/lib/tools.sh` are. The test script
//! exports `RILL_TANSU_BIN`, `RILL_TRAEFIK_BIN` and `RILL_REDIS_BIN`; without
//! them, the default install locations are tried.

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

/// The repository's root (for `traefik/local/run.sh`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
