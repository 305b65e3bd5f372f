//! Certificates made by a test: a CA of its own and a server certificate it
//! signed for `127.0.0.1` and `localhost`, written to a folder of the
//! test's own in the forms the backends read (PEM for Redis and the
//! clients, a PKCS#12 keystore for Kafka's and Cassandra's JVMs).
//!
//! Made with the `openssl` crate: the system's OpenSSL, which the clients'
//! TLS already links, so the tests add no second crypto library and run no
//! `openssl` command line.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

/// The password of [`TestCerts::keystore`] (a test's throw-away keystore).
pub const KEYSTORE_PASSWORD: &str = "rill-test-keystore";

/// A CA and a server certificate it signed, as files in a folder that goes
/// when this drops.
#[derive(Debug)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// A new CA and server certificate (for `127.0.0.1` and `localhost`),
    /// valid from a day ago for a day.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("rill-test-certs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a folder for the test's certificates");
        let certs = Self { dir };
        let (ca_key, ca) = authority("Rill test CA");
        let key = new_key();
        let server = signed(&ca_key, &ca, &key);
        let pem = |cert: &X509| cert.to_pem().expect("PEM");
        certs.write("ca.pem", &pem(&ca));
        certs.write("server.pem", &pem(&server));
        certs.write(
            "server.key",
            &key.private_key_to_pem_pkcs8().expect("PKCS#8"),
        );
        let mut chain = openssl::stack::Stack::new().expect("a stack");
        chain.push(ca.clone()).expect("push");
        let keystore = Pkcs12::builder()
            .name("server")
            .pkey(&key)
            .cert(&server)
            .ca(chain)
            .build2(KEYSTORE_PASSWORD)
            .expect("a PKCS#12 keystore");
        certs.write("server.p12", &keystore.to_der().expect("DER"));
        // A CA that signed nothing here: what a client trusting the wrong
        // authority has.
        let (_, other) = authority("Another CA");
        certs.write("other-ca.pem", &pem(&other));
        certs
    }

    /// The CA's certificate (PEM): what the clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Another CA's certificate (PEM), which signed none of these.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key (PEM, PKCS#8, not encrypted).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The server's key and certificate chain as a PKCS#12 keystore
    /// (password [`KEYSTORE_PASSWORD`]), for the JVMs.
    pub fn keystore(&self) -> PathBuf {
        self.dir.join("server.p12")
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A P-256 key: quick to make, and every party here speaks ECDSA.
fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("an EC key")).expect("a key")
}

/// The name `CN=cn`.
fn builder_subject(cn: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().expect("a name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    name.build()
}

/// A builder for a certificate named `cn`, valid from a day ago for two
/// days (a clock a little off does not make it "not yet valid").
fn builder(cn: &str, key: &PKey<Private>) -> X509Builder {
    let name = builder_subject(cn);
    let mut serial = BigNum::new().expect("a number");
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .expect("a serial");
    let mut builder = X509Builder::new().expect("a builder");
    builder.set_version(2).expect("v3");
    builder
        .set_serial_number(&serial.to_asn1_integer().expect("ASN.1"))
        .expect("serial");
    builder.set_subject_name(&name).expect("subject");
    builder.set_pubkey(key).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let day = 24 * 3600;
    let at = |secs: u64| Asn1Time::from_unix(i64::try_from(secs).expect("a time")).expect("time");
    builder.set_not_before(&at(now - day)).expect("not before");
    builder.set_not_after(&at(now + day)).expect("not after");
    builder
}

/// A self-signed CA named `cn`: its key and certificate.
fn authority(cn: &str) -> (PKey<Private>, X509) {
    let key = new_key();
    let mut builder = builder(cn, &key);
    // Self-signed: its own issuer.
    let name = builder_subject(cn);
    builder.set_issuer_name(&name).expect("issuer");
    builder
        .append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("basic constraints");
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("ku"),
        )
        .expect("key usage");
    builder.sign(&key, MessageDigest::sha256()).expect("signed");
    (key, builder.build())
}

/// A server certificate for `127.0.0.1` and `localhost` with `key`, signed
/// by the CA.
fn signed(ca_key: &PKey<Private>, ca: &X509, key: &PKey<Private>) -> X509 {
    let mut builder = builder("localhost", key);
    builder.set_issuer_name(ca.subject_name()).expect("issuer");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(Some(ca), None))
        .expect("names");
    builder.append_extension(san).expect("names");
    builder
        .append_extension(BasicConstraints::new().build().expect("bc"))
        .expect("basic constraints");
    builder
        .append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()
                .expect("ku"),
        )
        .expect("key usage");
    builder
        .append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
        .expect("extended key usage");
    builder
        .sign(ca_key, MessageDigest::sha256())
        .expect("signed");
    builder.build()
}
