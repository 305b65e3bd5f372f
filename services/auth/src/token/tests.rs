use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rill_domain::{ProfileId, UserId};
use rill_runtime::Secret;
use serde_json::{Value, json};

use super::*;

const NOW_SECS: u64 = 1_800_000_000;
const SECRET_A: &str = "test secret A, thirty-two bytes or more";
const SECRET_B: &str = "test secret B, thirty-two bytes or more";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn hmac_key(kid: &str, secret: &str) -> HmacKey {
    HmacKey {
        kid: kid.into(),
        secret: Secret::new(secret),
    }
}

fn settings_a_and_b() -> TokenSettings {
    TokenSettings {
        hs256_keys: vec![hmac_key("a", SECRET_A), hmac_key("b", SECRET_B)],
        ..Default::default()
    }
}

fn verifier(settings: &TokenSettings) -> TokenVerifier {
    TokenVerifier::new(settings).expect("verifier")
}

/// Claims that hold at `now()`: issued now, ten minutes to live.
fn claims(user: UserId) -> Value {
    json!({ "sub": user.to_string(), "iat": NOW_SECS, "exp": NOW_SECS + 600 })
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().expect("object").remove(field);
    claims
}

fn signed_a(claims: &Value) -> String {
    sign_hs256(Some("a"), SECRET_A.as_bytes(), claims)
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn private_key(algorithm: Algorithm) -> EncodingKey {
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture_bytes("test-only-rs256.key.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture_bytes("test-only-es256.key.pem")),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture_bytes("test-only-ed25519.key.pem")),
        other => panic!("no fixture key for {other:?}"),
    }
    .expect("fixture private key")
}

/// The code `token` is refused with, after checking that the message
/// shows no part of the token.
fn refused(verifier: &TokenVerifier, token: &str) -> &'static str {
    let err = verifier.verify(token, now()).expect_err("refused");
    let message = err.to_string();
    for part in token.split('.').filter(|part| part.len() > 3) {
        assert!(!message.contains(part), "{message} shows the token");
    }
    err.code()
}

#[test]
fn an_hs256_token_verifies_with_and_without_kid() {
    let v = verifier(&TokenSettings {
        hs256_keys: vec![hmac_key("a", SECRET_A)],
        ..Default::default()
    });
    let user = UserId::random();
    let expected = Identity {
        user,
        profiles: None,
        expires_at: now() + Duration::from_secs(600),
    };
    let with_kid = sign_hs256(Some("a"), SECRET_A.as_bytes(), &claims(user));
    assert_eq!(v.verify(&with_kid, now()).expect("valid"), expected);
    let without_kid = sign_hs256(None, SECRET_A.as_bytes(), &claims(user));
    assert_eq!(v.verify(&without_kid, now()).expect("valid"), expected);
}

#[test]
fn both_keys_of_a_rotation_are_accepted() {
    let v = verifier(&settings_a_and_b());
    let user = UserId::random();
    for (kid, secret) in [
        (Some("a"), SECRET_A),
        (Some("b"), SECRET_B),
        (None, SECRET_A),
        (None, SECRET_B),
    ] {
        let token = sign_hs256(kid, secret.as_bytes(), &claims(user));
        assert_eq!(
            v.verify(&token, now()).expect("valid").user,
            user,
            "{kid:?}"
        );
    }
    // The kid picks the key: B's token under A's kid does not verify.
    let crossed = sign_hs256(Some("a"), SECRET_B.as_bytes(), &claims(user));
    assert_eq!(refused(&v, &crossed), "token_bad_signature");
}

#[test]
fn the_profiles_claim_limits_the_token() {
    let v = verifier(&settings_a_and_b());
    let (p1, p2) = (ProfileId::random(), ProfileId::random());
    let token = signed_a(&with(
        claims(UserId::random()),
        "profiles",
        json!([p1.to_string(), p2.to_string()]),
    ));
    assert_eq!(
        v.verify(&token, now()).expect("valid").profiles,
        Some(vec![p1, p2])
    );
    let none_allowed = signed_a(&with(claims(UserId::random()), "profiles", json!([])));
    assert_eq!(
        v.verify(&none_allowed, now()).expect("valid").profiles,
        Some(vec![])
    );
    let null = signed_a(&with(claims(UserId::random()), "profiles", Value::Null));
    assert_eq!(v.verify(&null, now()).expect("valid").profiles, None);
}

#[test]
fn malformed_tokens_are_refused() {
    let v = verifier(&settings_a_and_b());
    let good = signed_a(&claims(UserId::random()));
    let (_, rest) = good.split_once('.').expect("three parts");
    for token in [
        "",
        "abc",
        "a.b",
        &format!("{good}.x"),
        &format!("bm90IGpzb24.{rest}"), // header "not json"
        &format!("!!!.{rest}"),         // header not base64url
        &format!("eyJhbGciOiJIUzI1NiIsImtpZCI6NX0.{rest}"), // kid 5
        &format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
    ] {
        assert_eq!(refused(&v, token), "token_malformed", "{token:.40}");
    }
    let bad_signature_encoding = format!("{}!", good);
    assert_eq!(refused(&v, &bad_signature_encoding), "token_malformed");
    let user = UserId::random();
    for claims in [
        without(claims(user), "exp"),
        with(claims(user), "exp", json!("soon")),
        with(claims(user), "exp", json!(-5)),
        with(claims(user), "nbf", json!("now")),
        with(claims(user), "iat", json!(true)),
        with(claims(user), "aud", json!(7)),
        json!(["not", "an", "object"]),
    ] {
        assert_eq!(
            refused(&v, &signed_a(&claims)),
            "token_malformed",
            "{claims}"
        );
    }
}

#[test]
fn expiry_and_not_before_allow_the_leeway_only() {
    let v = verifier(&settings_a_and_b()); // leeway 30 s
    let user = UserId::random();
    let expired = |exp: u64| signed_a(&with(claims(user), "exp", json!(exp)));
    assert!(v.verify(&expired(NOW_SECS - 29), now()).is_ok());
    assert_eq!(refused(&v, &expired(NOW_SECS - 30)), "token_expired");
    assert_eq!(refused(&v, &expired(NOW_SECS - 3600)), "token_expired");
    // A fractional NumericDate is read too.
    let fractional = signed_a(&with(claims(user), "exp", json!(NOW_SECS as f64 + 60.5)));
    assert!(v.verify(&fractional, now()).is_ok());

    let not_before = |nbf: u64| signed_a(&with(claims(user), "nbf", json!(nbf)));
    assert!(v.verify(&not_before(NOW_SECS + 30), now()).is_ok());
    assert_eq!(
        refused(&v, &not_before(NOW_SECS + 31)),
        "token_not_yet_valid"
    );
}

#[test]
fn long_lived_tokens_are_refused() {
    let v = verifier(&settings_a_and_b()); // a day at most, leeway 30 s
    let user = UserId::random();
    let day = 24 * 3600;
    let lives = |iat: Option<u64>, exp: u64| {
        let claims = with(claims(user), "exp", json!(exp));
        signed_a(&match iat {
            Some(iat) => with(claims, "iat", json!(iat)),
            None => without(claims, "iat"),
        })
    };
    assert!(
        v.verify(&lives(Some(NOW_SECS), NOW_SECS + day), now())
            .is_ok()
    );
    let too_long = lives(Some(NOW_SECS), NOW_SECS + day + 31);
    assert_eq!(refused(&v, &too_long), "token_too_long_lived");
    // Issued an hour ago for a day: an hour of it is left, and it is allowed.
    assert!(
        v.verify(&lives(Some(NOW_SECS - 3600), NOW_SECS + day - 3600), now())
            .is_ok()
    );
    // Without iat, the life counts from now.
    assert!(v.verify(&lives(None, NOW_SECS + day), now()).is_ok());
    assert_eq!(
        refused(&v, &lives(None, NOW_SECS + 2 * day)),
        "token_too_long_lived"
    );
    // An iat in the future does not stretch the life.
    let future_iat = lives(Some(NOW_SECS + 30 * day), NOW_SECS + 30 * day + 600);
    assert_eq!(refused(&v, &future_iat), "token_too_long_lived");
    let forever = lives(Some(NOW_SECS), u64::MAX);
    assert_eq!(refused(&v, &forever), "token_too_long_lived");
}

#[test]
fn signatures_that_do_not_verify_are_refused() {
    let v = verifier(&settings_a_and_b());
    let user = UserId::random();
    let foreign = "another secret of thirty-two bytes or more";
    let wrong_key = sign_hs256(Some("a"), foreign.as_bytes(), &claims(user));
    assert_eq!(refused(&v, &wrong_key), "token_bad_signature");
    let wrong_key_no_kid = sign_hs256(None, foreign.as_bytes(), &claims(user));
    assert_eq!(refused(&v, &wrong_key_no_kid), "token_bad_signature");

    // Another user's claims under a valid signature.
    let good = signed_a(&claims(user));
    let other = signed_a(&claims(UserId::random()));
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_eq!(refused(&v, &spliced), "token_bad_signature");
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(refused(&v, &unsigned), "token_bad_signature");
}

#[test]
fn an_unknown_kid_is_refused() {
    let v = verifier(&settings_a_and_b());
    let token = sign_hs256(Some("c"), SECRET_A.as_bytes(), &claims(UserId::random()));
    assert_eq!(refused(&v, &token), "token_unknown_key");
}

#[test]
fn the_audience_must_name_us_when_set_and_be_absent_when_not() {
    let v = verifier(&TokenSettings {
        audience: Some("rill".into()),
        ..settings_a_and_b()
    });
    let user = UserId::random();
    let aud = |aud: Value| signed_a(&with(claims(user), "aud", aud));
    assert!(v.verify(&aud(json!("rill")), now()).is_ok());
    assert!(v.verify(&aud(json!(["other", "rill"])), now()).is_ok());
    assert_eq!(refused(&v, &aud(json!("other"))), "token_wrong_audience");
    assert_eq!(refused(&v, &aud(json!(["a", "b"]))), "token_wrong_audience");
    assert_eq!(
        refused(&v, &signed_a(&claims(user))),
        "token_wrong_audience"
    );

    let no_audience = verifier(&settings_a_and_b());
    assert!(no_audience.verify(&signed_a(&claims(user)), now()).is_ok());
    assert_eq!(
        refused(&no_audience, &aud(json!("rill"))),
        "token_wrong_audience"
    );
}

#[test]
fn the_issuer_must_match_when_set() {
    let v = verifier(&TokenSettings {
        issuer: Some("https://app.example".into()),
        ..settings_a_and_b()
    });
    let user = UserId::random();
    let iss = |iss: Value| signed_a(&with(claims(user), "iss", iss));
    assert!(v.verify(&iss(json!("https://app.example")), now()).is_ok());
    assert_eq!(
        refused(&v, &iss(json!("https://evil.example"))),
        "token_wrong_issuer"
    );
    assert_eq!(
        refused(&v, &iss(json!(["https://app.example"]))),
        "token_wrong_issuer"
    );
    assert_eq!(refused(&v, &signed_a(&claims(user))), "token_wrong_issuer");

    let any_issuer = verifier(&settings_a_and_b());
    assert!(
        any_issuer
            .verify(&iss(json!("https://evil.example")), now())
            .is_ok()
    );
}

#[test]
fn the_subject_and_profiles_must_be_ids() {
    let v = verifier(&settings_a_and_b());
    let user = UserId::random();
    for claims in [
        with(claims(user), "sub", json!("alice")),
        with(claims(user), "sub", json!(42)),
        without(claims(user), "sub"),
        with(claims(user), "profiles", json!(["not-a-uuid"])),
        with(
            claims(user),
            "profiles",
            json!([ProfileId::random().to_string(), 3]),
        ),
        with(
            claims(user),
            "profiles",
            json!(ProfileId::random().to_string()),
        ),
    ] {
        assert_eq!(
            refused(&v, &signed_a(&claims)),
            "token_bad_subject",
            "{claims}"
        );
    }
}

#[test]
fn other_algorithms_and_none_are_refused() {
    let v = verifier(&settings_a_and_b());
    let claims = claims(UserId::random());
    let hs512 = sign(
        Algorithm::HS512,
        Some("a"),
        &EncodingKey::from_secret(SECRET_A.as_bytes()).expect("key"),
        &claims,
    );
    assert_eq!(refused(&v, &hs512), "token_algorithm_not_allowed");
    // `{"alg":"none"}`, with and without the signature of a real token.
    let good = signed_a(&claims);
    let (_, payload_and_signature) = good.split_once('.').expect("three parts");
    let (payload, _) = payload_and_signature.split_once('.').expect("three parts");
    let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
    assert_eq!(refused(&v, &none), "token_algorithm_not_allowed");
    let none_signed = format!("eyJhbGciOiJub25lIn0.{payload_and_signature}");
    assert_eq!(refused(&v, &none_signed), "token_algorithm_not_allowed");
    // RS256 when only HMAC keys are configured.
    let rs256 = sign(
        Algorithm::RS256,
        None,
        &private_key(Algorithm::RS256),
        &claims,
    );
    assert_eq!(refused(&v, &rs256), "token_algorithm_not_allowed");
}

fn pem_settings() -> TokenSettings {
    TokenSettings {
        public_keys_file: Some(fixture("public_keys.pem")),
        ..Default::default()
    }
}

fn jwks_settings() -> TokenSettings {
    TokenSettings {
        jwks_file: Some(fixture("jwks.json")),
        ..Default::default()
    }
}

#[test]
fn rs256_es256_and_eddsa_tokens_verify_from_a_pem_file_and_a_jwks() {
    let from_pem = verifier(&pem_settings());
    let from_jwks = verifier(&jwks_settings());
    let user = UserId::random();
    for (algorithm, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let key = private_key(algorithm);
        let no_kid = sign(algorithm, None, &key, &claims(user));
        let with_kid = sign(algorithm, Some(kid), &key, &claims(user));
        assert_eq!(from_pem.verify(&no_kid, now()).expect("PEM").user, user);
        assert_eq!(from_jwks.verify(&with_kid, now()).expect("JWKS").user, user);
        // Without a kid, each JWKS key of the algorithm is tried.
        assert_eq!(from_jwks.verify(&no_kid, now()).expect("JWKS").user, user);
        // PEM keys have no ids.
        assert_eq!(refused(&from_pem, &with_kid), "token_unknown_key");
        // Another key's kid: its algorithm is not the token's.
        let other_kid = if kid == "ec-1" { "ed-1" } else { "ec-1" };
        let crossed = sign(algorithm, Some(other_kid), &key, &claims(user));
        assert_eq!(refused(&from_jwks, &crossed), "token_algorithm_not_allowed");
        // The same token with its signature's first character changed.
        let (signed_part, signature) = no_kid.rsplit_once('.').expect("three parts");
        let changed = if signature.starts_with('A') { 'B' } else { 'A' };
        let tampered = format!("{signed_part}.{changed}{}", &signature[1..]);
        assert_eq!(refused(&from_pem, &tampered), "token_bad_signature");
    }
}

#[test]
fn an_rsa_public_key_used_as_an_hmac_secret_is_refused() {
    let public_pem = fixture_bytes("public_keys.pem");
    let rsa_block_end = "-----END PUBLIC KEY-----\n";
    let end = String::from_utf8_lossy(&public_pem)
        .find(rsa_block_end)
        .expect("RSA block")
        + rsa_block_end.len();
    let claims = claims(UserId::random());
    for secret in [&public_pem[..end], &public_pem[..]] {
        let forged_no_kid = sign_hs256(None, secret, &claims);
        let forged_kid = sign_hs256(Some("rsa-1"), secret, &claims);
        // Only RSA keys configured: nothing verifies HS256.
        assert_eq!(
            refused(&verifier(&pem_settings()), &forged_no_kid),
            "token_algorithm_not_allowed"
        );
        // The kid names an RSA key: RS256 or nothing.
        assert_eq!(
            refused(&verifier(&jwks_settings()), &forged_kid),
            "token_algorithm_not_allowed"
        );
        // HMAC keys beside the RSA ones: the forgery is tried against the
        // HMAC secrets only.
        let both = verifier(&TokenSettings {
            hs256_keys: vec![hmac_key("a", SECRET_A)],
            ..pem_settings()
        });
        assert_eq!(refused(&both, &forged_no_kid), "token_bad_signature");
    }
}

#[test]
fn key_files_that_cannot_be_used_stop_start_up_naming_the_file() {
    let missing = fixture("no-such-file.pem");
    let err = TokenVerifier::new(&TokenSettings {
        public_keys_file: Some(missing.clone()),
        ..Default::default()
    })
    .expect_err("refused");
    assert_eq!(err.code(), "token_key_file");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("cannot read it"), "{err}");

    let private = fixture("test-only-rs256.key.pem");
    let err = TokenVerifier::new(&TokenSettings {
        public_keys_file: Some(private),
        ..Default::default()
    })
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("test-only-rs256.key.pem: block 1 is a private key"),
        "{err}"
    );

    let err = TokenVerifier::new(&TokenSettings {
        jwks_file: Some(fixture("public_keys.pem")),
        ..Default::default()
    })
    .expect_err("refused");
    assert!(
        err.to_string().contains("public_keys.pem: not a JWKS"),
        "{err}"
    );

    let err = TokenVerifier::new(&TokenSettings {
        hs256_keys: vec![hmac_key("ec-1", SECRET_A)],
        ..jwks_settings()
    })
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("kid \"ec-1\" is also the kid of a key in token.hs256_keys"),
        "{err}"
    );

    let err = TokenVerifier::new(&TokenSettings {
        hs256_keys: vec![hmac_key("a", "short")],
        ..Default::default()
    })
    .expect_err("refused");
    assert_eq!(err.code(), "token_settings");
}

#[test]
fn a_verifier_without_keys_refuses_everything() {
    let v = verifier(&TokenSettings::default());
    let token = signed_a(&claims(UserId::random()));
    assert_eq!(refused(&v, &token), "token_unknown_key");
    let no_kid = sign_hs256(None, SECRET_A.as_bytes(), &claims(UserId::random()));
    assert_eq!(refused(&v, &no_kid), "token_algorithm_not_allowed");
}

#[test]
fn base64url_decodes_unpadded_text_only() {
    assert_eq!(base64url_decode(""), Some(vec![]));
    assert_eq!(base64url_decode("QQ"), Some(b"A".to_vec()));
    assert_eq!(base64url_decode("QUI"), Some(b"AB".to_vec()));
    assert_eq!(base64url_decode("QUJD"), Some(b"ABC".to_vec()));
    assert_eq!(base64url_decode("-_8"), Some(vec![0xfb, 0xff]));
    assert_eq!(base64url_decode("Q"), None);
    assert_eq!(base64url_decode("QQ=="), None);
    assert_eq!(base64url_decode("+/8"), None);
}
