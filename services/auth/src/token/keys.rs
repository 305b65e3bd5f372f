//! Reading the public keys: a PEM file, a JWKS file. Each key is checked
//! here, at start-up, so that a key that could never verify a token stops
//! the service with the file and the reason instead of refusing every
//! token later.

use std::collections::HashSet;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;

use super::{TokenError, VerifyingKey};

/// RSA moduli accepted, in bits: RFC 7518 §3.3 asks for 2048 at least; the
/// rsa crate verifies up to 8192.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The keys of a PEM file of public keys, without key ids.
pub(super) fn read_pem_file(path: &Path) -> Result<Vec<VerifyingKey>, TokenError> {
    let text = read(path)?;
    read_pem(&text).map_err(|reason| TokenError::KeyFile {
        path: path.to_owned(),
        reason,
    })
}

/// The keys of a JWKS file, each with its key id.
pub(super) fn read_jwks_file(path: &Path) -> Result<Vec<VerifyingKey>, TokenError> {
    let text = read(path)?;
    read_jwks(&text).map_err(|reason| TokenError::KeyFile {
        path: path.to_owned(),
        reason,
    })
}

fn read(path: &Path) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|e| TokenError::KeyFile {
        path: path.to_owned(),
        reason: format!("cannot read it: {e}"),
    })
}

fn read_pem(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let blocks = pem_blocks(text)?;
    if blocks.is_empty() {
        return Err("no PEM block (-----BEGIN PUBLIC KEY-----) in it".into());
    }
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, (label, block))| {
            let n = i + 1;
            match label {
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    pem_key(block).map_err(|reason| format!("block {n}: {reason}"))
                }
                _ if label.contains("PRIVATE KEY") => Err(format!(
                    "block {n} is a private key: give public keys only (openssl pkey -pubout)"
                )),
                "CERTIFICATE" => Err(format!(
                    "block {n} is a certificate: give its public key (openssl x509 -pubkey -noout)"
                )),
                other => Err(format!("block {n} is a {other}, not a public key")),
            }
        })
        .collect()
}

/// The (label, whole block) of each PEM block in `text`.
fn pem_blocks(text: &str) -> Result<Vec<(&str, &str)>, String> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let label_len = block[BEGIN.len()..]
            .find(DASHES)
            .ok_or_else(|| format!("block {} has a broken BEGIN line", blocks.len() + 1))?;
        let label = &block[BEGIN.len()..BEGIN.len() + label_len];
        let end_line = format!("-----END {label}-----");
        let end = block
            .find(&end_line)
            .ok_or_else(|| format!("block {} ({label}) has no END line", blocks.len() + 1))?
            + end_line.len();
        blocks.push((label, &block[..end]));
        rest = &block[end..];
    }
    Ok(blocks)
}

/// A PEM public key, its kind found by trying each: jsonwebtoken's PEM
/// reader tells them apart by the key's OID.
fn pem_key(block: &str) -> Result<VerifyingKey, String> {
    let pem = block.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        rsa_key(None, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        ec_key(None, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        ed_key(None, key)
    } else {
        Err("not an RSA, EC or Ed25519 public key".into())
    }
}

fn read_jwks(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let document: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS (not JSON: {e})"))?;
    let items = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS: no \"keys\" list")?;
    if items.is_empty() {
        return Err("its \"keys\" list is empty".into());
    }
    let mut kids = HashSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let kid = item
                .get("kid")
                .and_then(Value::as_str)
                .filter(|kid| !kid.is_empty())
                .ok_or_else(|| format!("key {} has no kid (tokens choose keys by kid)", i + 1))?;
            if !kids.insert(kid) {
                return Err(format!("kid {kid:?} is given twice"));
            }
            jwk_key(kid, item).map_err(|reason| format!("key {kid:?}: {reason}"))
        })
        .collect()
}

fn jwk_key(kid: &str, item: &Value) -> Result<VerifyingKey, String> {
    if item.get("d").is_some() {
        return Err("it has a private part (d): publish public keys only".into());
    }
    let jwk: Jwk = serde_json::from_value(item.clone()).map_err(|e| e.to_string())?;
    if let Some(key_use) = &jwk.common.public_key_use
        && *key_use != PublicKeyUse::Signature
    {
        return Err("its use is not sig".into());
    }
    let unusable = |e: jsonwebtoken::errors::Error| format!("not a usable key ({e})");
    let kid = Some(kid.to_owned());
    let key = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            rsa_key(kid, DecodingKey::from_jwk(&jwk).map_err(unusable)?)?
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            ec_key(kid, DecodingKey::from_jwk(&jwk).map_err(unusable)?)?
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            ed_key(kid, DecodingKey::from_jwk(&jwk).map_err(unusable)?)?
        }
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {
            return Err("its curve is not supported (P-256 for EC, Ed25519 for OKP)".into());
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "an HMAC secret (kty oct) has no place in a JWKS file: use token.hs256_keys".into(),
            );
        }
        _ => return Err("its kty is not supported (RSA, EC or OKP)".into()),
    };
    match jwk.common.key_algorithm {
        Some(alg) if alg != KeyAlgorithm::from(key.algorithm) => Err(format!(
            "its alg {alg} is not supported: {:?} is the one for this key",
            key.algorithm
        )),
        _ => Ok(key),
    }
}

/// An RSA key for RS256, held as its modulus and exponent (whether it came
/// as DER or as a JWK), its size checked.
fn rsa_key(kid: Option<String>, key: DecodingKey) -> Result<VerifyingKey, String> {
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { .. } => key,
        DecodingKeyKind::SecretOrDer(_) => Jwk::from_decoding_key(&key, None)
            .and_then(|jwk| DecodingKey::from_jwk(&jwk))
            .map_err(|e| format!("not a valid RSA public key ({e})"))?,
    };
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return Err("not a valid RSA public key".into());
    };
    let bits = modulus_bits(n);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "an RSA key of {bits} bits: {} to {} are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    if e.iter().all(|&b| b == 0) {
        return Err("an RSA key without an exponent".into());
    }
    Ok(VerifyingKey::new(kid, Algorithm::RS256, key))
}

fn modulus_bits(n: &[u8]) -> usize {
    let n = &n[n.iter().take_while(|&&b| b == 0).count()..];
    n.first()
        .map_or(0, |first| n.len() * 8 - first.leading_zeros() as usize)
}

/// A P-256 key for ES256; a key on another curve fails to load as one.
fn ec_key(kid: Option<String>, key: DecodingKey) -> Result<VerifyingKey, String> {
    usable(&key, Algorithm::ES256)
        .map_err(|_| "not a P-256 public key (ES256 is the one EC algorithm accepted)")?;
    Ok(VerifyingKey::new(kid, Algorithm::ES256, key))
}

/// An Ed25519 key for EdDSA.
fn ed_key(kid: Option<String>, key: DecodingKey) -> Result<VerifyingKey, String> {
    // jsonwebtoken's EdDSA verifier slices the first 32 bytes (and panics on
    // fewer): the length is checked here, once.
    let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
    if len != 32 {
        return Err(format!("an Ed25519 public key is 32 bytes, this one {len}"));
    }
    usable(&key, Algorithm::EdDSA).map_err(|_| "not a valid Ed25519 public key")?;
    Ok(VerifyingKey::new(kid, Algorithm::EdDSA, key))
}

/// Whether jsonwebtoken can make a verifier of `key` for `algorithm`: it
/// parses EC and Ed25519 points when it does (an empty signature then
/// simply does not verify).
fn usable(key: &DecodingKey, algorithm: Algorithm) -> Result<(), jsonwebtoken::errors::Error> {
    jsonwebtoken::crypto::verify("", b"", key, algorithm).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("../../tests/fixtures/public_keys.pem");
    const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

    fn algorithms(keys: &[VerifyingKey]) -> Vec<(Option<&str>, Algorithm)> {
        keys.iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect()
    }

    #[test]
    fn the_fixture_files_hold_one_key_of_each_kind() {
        let pem = read_pem(PEM).expect("PEM keys");
        assert_eq!(
            algorithms(&pem),
            [
                (None, Algorithm::RS256),
                (None, Algorithm::ES256),
                (None, Algorithm::EdDSA)
            ]
        );
        let jwks = read_jwks(JWKS).expect("JWKS keys");
        assert_eq!(
            algorithms(&jwks),
            [
                (Some("rsa-1"), Algorithm::RS256),
                (Some("ec-1"), Algorithm::ES256),
                (Some("ed-1"), Algorithm::EdDSA)
            ]
        );
    }

    #[test]
    fn private_keys_certificates_and_junk_are_refused_by_block() {
        let private = include_str!("../../tests/fixtures/test-only-es256.key.pem");
        let err = read_pem(&format!("{PEM}{private}")).expect_err("refused");
        assert!(err.contains("block 4 is a private key"), "{err}");
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = read_pem(cert).expect_err("refused");
        assert!(err.contains("certificate"), "{err}");
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = read_pem(junk).expect_err("refused");
        assert!(err.contains("block 1: not an RSA, EC or Ed25519"), "{err}");
        let err = read_pem("hello").expect_err("refused");
        assert!(err.contains("no PEM block"), "{err}");
        let cut = &PEM[..PEM.len() - 30];
        let err = read_pem(cut).expect_err("refused");
        assert!(
            err.contains("block 3 (PUBLIC KEY) has no END line"),
            "{err}"
        );
    }

    fn jwks_with(key: Value) -> String {
        serde_json::json!({ "keys": [key] }).to_string()
    }

    fn fixture_jwk(kid: &str) -> Value {
        let document: Value = serde_json::from_str(JWKS).expect("JSON");
        document["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
            .cloned()
            .expect("fixture key")
    }

    #[test]
    fn unusable_jwks_keys_are_refused_with_their_kid() {
        let refused = |key: Value| read_jwks(&jwks_with(key)).expect_err("refused");

        let mut no_kid = fixture_jwk("ec-1");
        no_kid.as_object_mut().expect("object").remove("kid");
        assert!(refused(no_kid).contains("key 1 has no kid"));

        let mut private = fixture_jwk("ed-1");
        private["d"] = "AAAA".into();
        assert!(refused(private).contains("key \"ed-1\": it has a private part"));

        let mut wrong_alg = fixture_jwk("rsa-1");
        wrong_alg["alg"] = "PS256".into();
        let err = refused(wrong_alg);
        assert!(err.contains("alg PS256 is not supported"), "{err}");

        let mut p384 = fixture_jwk("ec-1");
        p384["crv"] = "P-384".into();
        assert!(refused(p384).contains("curve is not supported"));

        let mut off_curve = fixture_jwk("ec-1");
        off_curve["y"] = off_curve["x"].clone();
        assert!(refused(off_curve).contains("not a P-256 public key"));

        let mut short_ed = fixture_jwk("ed-1");
        short_ed["x"] = "AAAA".into();
        let err = refused(short_ed);
        assert!(err.contains("32 bytes, this one 3"), "{err}");

        let mut small_rsa = fixture_jwk("rsa-1");
        small_rsa["n"] = "wQ".repeat(80).into();
        let err = refused(small_rsa);
        assert!(err.contains("an RSA key of 960 bits"), "{err}");

        let oct = serde_json::json!({ "kty": "oct", "kid": "h", "k": "c2VjcmV0" });
        assert!(refused(oct).contains("kty oct"));

        let mut encryption = fixture_jwk("rsa-1");
        encryption["use"] = "enc".into();
        assert!(refused(encryption).contains("use is not sig"));

        let twice = serde_json::json!({ "keys": [fixture_jwk("ec-1"), fixture_jwk("ec-1")] });
        let err = read_jwks(&twice.to_string()).expect_err("refused");
        assert!(err.contains("kid \"ec-1\" is given twice"), "{err}");

        assert!(
            read_jwks("{}")
                .expect_err("refused")
                .contains("no \"keys\"")
        );
        assert!(read_jwks(PEM).expect_err("refused").contains("not JSON"));
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        assert_eq!(modulus_bits(&[0, 0, 1]), 1);
        assert_eq!(modulus_bits(&[0x80, 0]), 16);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
