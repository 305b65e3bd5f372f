//! How a service reaches Kafka: in the clear, over TLS, with a SASL user,
//! or both (the `kafka.security_protocol`, `kafka.ssl_*` and `kafka.sasl_*`
//! settings; [`crate::kafka`] turns them into librdkafka's properties).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SettingsError;

/// Kafka's `security.protocol`, in the settings' lower-case form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication: for a broker on a trusted network only.
    #[default]
    Plaintext,
    /// TLS, the broker's certificate checked against `kafka.ssl_ca_file`.
    Ssl,
    /// A SASL user without TLS: the password travels hashed with SCRAM,
    /// but the records do not.
    SaslPlaintext,
    /// TLS and a SASL user.
    SaslSsl,
}

impl SecurityProtocol {
    /// The value of librdkafka's `security.protocol`.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka speaks without Kerberos (Rill builds it
/// without GSSAPI) nor OAuth.
pub const SASL_MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// Checks the security fields of `kafka` (the error names the field).
pub(super) fn validate(kafka: &super::KafkaSettings) -> Result<(), SettingsError> {
    let protocol = kafka.security_protocol;
    if !kafka.ssl_ca_file.is_empty() {
        if !protocol.uses_tls() {
            return Err(SettingsError::invalid(
                "kafka.ssl_ca_file",
                "is set, but kafka.security_protocol uses no TLS (ssl or sasl_ssl)",
            ));
        }
        readable_file("kafka.ssl_ca_file", &kafka.ssl_ca_file)?;
    }
    if protocol.uses_sasl() {
        if !SASL_MECHANISMS.contains(&kafka.sasl_mechanism.as_str()) {
            return Err(SettingsError::invalid(
                "kafka.sasl_mechanism",
                format!("must be one of {}", SASL_MECHANISMS.join(", ")),
            ));
        }
        if kafka.sasl_username.is_empty() {
            return Err(SettingsError::invalid(
                "kafka.sasl_username",
                "must be set with a sasl_* security_protocol",
            ));
        }
        if kafka.sasl_password.expose().is_empty() {
            return Err(SettingsError::invalid(
                "kafka.sasl_password",
                "must be set with a sasl_* security_protocol",
            ));
        }
    } else if !kafka.sasl_username.is_empty() || !kafka.sasl_password.expose().is_empty() {
        return Err(SettingsError::invalid(
            "kafka.sasl_username",
            "a SASL user is set, but kafka.security_protocol is not sasl_plaintext or sasl_ssl",
        ));
    }
    Ok(())
}

/// An error naming `field` unless `path` is a file this process can read.
pub fn readable_file(field: &'static str, path: &str) -> Result<(), SettingsError> {
    std::fs::File::open(Path::new(path))
        .map(drop)
        .map_err(|err| SettingsError::invalid(field, format!("cannot read {path}: {err}")))
}
