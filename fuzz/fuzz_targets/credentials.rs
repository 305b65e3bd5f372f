//! Credentials: a request's `Cookie` and `Authorization` headers and
//! `?token=` read by the edge, then the session cookie and the connection
//! token (JWT) checked by their verifiers. Arbitrary values fail at their
//! signatures, so the target also signs what it is given, with the keys
//! the verifiers hold, to reach what is read past them: the cookie's value
//! and the token's claims. Never a panic, and what verifies says what it
//! was signed to say.
//!
//! Input: lines of the `Cookie` header, the `Authorization` header, the
//! query string, then the rest: a cookie value and token claims (JSON) to
//! sign.

#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieJar, Key};
use libfuzzer_sys::fuzz_target;
use rill_auth::token::{HmacKey, TokenSettings, TokenVerifier, sign_hs256};
use rill_runtime::Secret;
use rill_runtime::session_cookie::{SessionCookies, SessionSettings};

const COOKIE_KEY: &str = "fuzz-cookie-key-0123456789abcdef0123456789abcdef0123456789abcdef";
const TOKEN_SECRET: &str = "fuzz-token-secret-0123456789abcdef";
const KID: &str = "k1";

/// A fixed clock: a run replays exactly.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Verifiers {
    cookies: SessionCookies,
    tokens: TokenVerifier,
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(|| Verifiers {
    cookies: SessionCookies::new(&SessionSettings {
        cookie_key: Some(Secret::new(COOKIE_KEY)),
        ..SessionSettings::default()
    })
    .expect("a valid cookie key"),
    tokens: TokenVerifier::new(&TokenSettings {
        hs256_keys: vec![HmacKey {
            kid: KID.into(),
            secret: Secret::new(TOKEN_SECRET),
        }],
        ..TokenSettings::default()
    })
    .expect("a valid token key"),
});

fuzz_target!(|data: &[u8]| {
    let verifiers = &*VERIFIERS;
    let mut lines = data.splitn(4, |b| *b == b'\n');
    let cookie = lines.next();
    let authorization = lines.next();
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    rill_edge::fuzzing::credentials(
        cookie,
        authorization,
        query.unwrap_or(""),
        |cookie, bearer| {
            let _ = verifiers.cookies.verify(cookie, now());
            if let Some(token) = bearer {
                let _ = verifiers.tokens.verify(token, now());
            }
        },
    );
    let Some(signed) = lines.next().and_then(|s| std::str::from_utf8(s).ok()) else {
        return;
    };
    signed_cookie(verifiers, signed);
    if let Ok(claims) = serde_json::from_str::<serde_json::Value>(signed) {
        signed_token(verifiers, &claims);
    }
});

/// A cookie whose value is `value`, signed with the edge's key.
fn signed_cookie(verifiers: &Verifiers, value: &str) {
    let name = verifiers.cookies.name();
    let mut jar = CookieJar::new();
    jar.signed_mut(&Key::from(COOKIE_KEY.as_bytes()))
        .add(Cookie::new(name.to_owned(), value.to_owned()));
    let Some(signed) = jar.get(name) else {
        return;
    };
    let header = format!("{name}={}", signed.value());
    if let Ok(session) = verifiers.cookies.verify(Some(&header), now()) {
        let mut parts = value.split('.');
        assert_eq!(parts.next(), Some("v2"), "{value:?} verified");
        let user = parts.next().and_then(|user| user.parse().ok());
        assert_eq!(user, Some(session.user), "{value:?} verified");
    }
}

/// A token of `claims`, signed with the edge's key (named or not).
fn signed_token(verifiers: &Verifiers, claims: &serde_json::Value) {
    for kid in [Some(KID), None] {
        let token = sign_hs256(kid, TOKEN_SECRET.as_bytes(), claims);
        if let Ok(identity) = verifiers.tokens.verify(&token, now()) {
            let sub = claims["sub"].as_str().expect("a verified sub is a string");
            assert_eq!(sub.parse().ok(), Some(identity.user), "sub {sub:?}");
            let leeway = TokenSettings::default().leeway_secs;
            assert!(
                identity.expires_at + leeway > now(),
                "verified past its exp"
            );
        }
    }
}
