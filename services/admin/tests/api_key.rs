//! `rill-admin api-key`: a new key, and the digest the api keeps of it.

use std::process::Command;

use rill_auth::api_key::{ApiKeyEntry, ApiKeySettings, ApiKeys};

fn rill_admin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rill-admin"))
        .args(args)
        .output()
        .expect("run rill-admin")
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
}

#[test]
fn a_new_key_is_printed_with_the_digest_that_accepts_it() {
    let output = rill_admin(&["api-key", "backend"]);
    assert!(output.status.success(), "{output:?}");
    let out = String::from_utf8_lossy(&output.stdout);
    let (key, digest) = (field(&out, "key:"), field(&out, "digest:"));
    assert!(key.starts_with("rk_") && key.len() > 40, "{key}");
    assert!(out.contains(&format!("sha256 = \"{digest}\"")), "{out}");
    let keys = ApiKeys::new(&ApiKeySettings {
        keys: vec![ApiKeyEntry {
            name: "backend".into(),
            sha256: digest.to_owned(),
        }],
    })
    .expect("the printed digest is a valid setting");
    assert_eq!(keys.check(key), Some("backend"));
    assert!(
        !out.contains(&format!("sha256 = \"{key}\"")),
        "the key is not the digest"
    );

    let again = rill_admin(&["api-key", "backend"]);
    let again = String::from_utf8_lossy(&again.stdout);
    assert_ne!(field(&again, "key:"), key, "every key is new");
}

#[test]
fn a_key_needs_a_name() {
    let output = rill_admin(&["api-key"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NAME"));
}
