//! Typed settings, layered: the struct's defaults, then a TOML file named by
//! `RILL_CONFIG` (if set), then environment variables `RILL_<FIELD>` with
//! `__` between nested fields (`RILL_KAFKA__BROKERS=host:9092`).
//!
//! Every service shares the `RILL_` prefix, so the local stack can set one
//! variable for all of them; a service reads only the variables whose first
//! segment names one of its own fields. Inside a section, an unknown field is
//! an error, so that a typo stops start-up instead of being ignored.

use std::fmt;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod security;

pub use security::SecurityProtocol;

/// Settings that could not be loaded or are invalid. The message names the
/// field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("bad settings: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("bad settings: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl SettingsError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A service's settings struct.
pub trait ServiceSettings: Serialize + DeserializeOwned + Default {
    /// Checks what types alone cannot say. The error names the field.
    fn validate(&self) -> Result<(), SettingsError> {
        Ok(())
    }
}

/// Loads settings from defaults, the file named by `RILL_CONFIG`, and the
/// environment, then validates them.
pub fn load<S: ServiceSettings>() -> Result<S, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(S::default()));
    let own_fields: Vec<String> = figment
        .extract::<figment::value::Dict>()
        .map_err(Box::new)?
        .into_keys()
        .collect();
    if let Ok(path) = std::env::var("RILL_CONFIG") {
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed("RILL_").split("__").filter(move |key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        own_fields
            .iter()
            .any(|field| field.eq_ignore_ascii_case(first))
    });
    let settings: S = figment.merge(env).extract().map_err(Box::new)?;
    settings.validate()?;
    Ok(settings)
}

/// Reads a list of strings given either as a list (`[a, b]` in the
/// environment or TOML) or as one comma-separated string (`a,b`): the form
/// people write in environment variables.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(items) => items,
    })
}

/// A secret string: never printed by `Debug`. The default is empty (no
/// secret).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A duration setting written as whole seconds (the `_secs` fields), so
/// that the code holds a `Duration` and the settings keep their plain
/// numbers: `#[serde(with = "rill_runtime::settings::secs")]`.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Duration, D::Error> {
        u64::deserialize(from).map(Duration::from_secs)
    }
}

/// A duration setting written as whole milliseconds (the `_ms` fields).
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Duration, D::Error> {
        u64::deserialize(from).map(Duration::from_millis)
    }
}

/// Kafka connection and topics, shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic of chat messages as the edges accept them, keyed by sender.
    /// Default `rill.messages`.
    pub message_topic: String,
    /// Topic of chat messages in their profile's order, keyed by profile:
    /// the sequencer copies each message there, in the partition that
    /// orders its profile; its offset is the message's position. Edges
    /// deliver and persist stores from here. Default `rill.sequenced`.
    pub sequenced_topic: String,
    /// Topic of user and profile events. Default `rill.directory`.
    pub directory_topic: String,
    /// Topic of server-side publishes, keyed by target. Default `rill.push`.
    pub push_topic: String,
    /// Topic of presence changes (a user's session on a profile opened or
    /// closed), keyed by user. Default `rill.presence`.
    pub presence_topic: String,
    /// Partitions of each topic when `rill-admin create-topics` creates it.
    /// Default 8.
    pub partitions: i32,
    /// Copies of each partition when `rill-admin create-topics` creates
    /// the topics. Default 1 (one local broker); 3 on a production cluster,
    /// so that a broker can be lost without losing an acknowledged record.
    pub replication_factor: i32,
    /// The topics' `min.insync.replicas` when `rill-admin create-topics`
    /// creates them: how many copies a write with `acks=all` (every
    /// producer's) must reach before it is acknowledged. Default 1; 2 with
    /// a replication factor of 3. At most `replication_factor`.
    pub min_insync_replicas: i32,
    /// Producer idempotence: a produce retried after a lost answer is
    /// written once. Default `true`.
    pub idempotence: bool,
    /// How long the producer waits to fill a batch, in ms. Default 1.
    pub linger_ms: u32,
    /// How long a fetch may wait on the broker when it has no new data, in
    /// ms. Default 100. Kafka answers a waiting fetch as soon as a record
    /// arrives, so this bounds idle polling, not latency.
    pub fetch_wait_max_ms: u32,
    /// How long a produce may take before it fails, in ms. Default 10000.
    #[serde(with = "millis")]
    pub message_timeout_ms: Duration,
    /// How long a consumer group member (persist) may go without a
    /// heartbeat before the broker gives its partitions to the others, in
    /// ms: after a crash, its records wait this long. Default 10000; the
    /// broker allows 6000 to 300000 (`group.min/max.session.timeout.ms`).
    pub group_session_timeout_ms: u32,
    /// How the link to the brokers is protected: `plaintext`, `ssl` (TLS),
    /// `sasl_plaintext` (a SASL user, no TLS) or `sasl_ssl` (both).
    /// Default `plaintext`.
    pub security_protocol: SecurityProtocol,
    /// The CA certificates (PEM) that the brokers' TLS certificates are
    /// checked against, with `ssl` or `sasl_ssl`. Default empty: the
    /// system's CAs (OpenSSL's default paths).
    pub ssl_ca_file: String,
    /// The SASL mechanism, with `sasl_plaintext` or `sasl_ssl`:
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`. Default `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// The SASL user. Default empty (none); required by the sasl_*
    /// protocols.
    pub sasl_username: String,
    /// The SASL user's password; never logged. Default empty (none);
    /// required by the sasl_* protocols.
    pub sasl_password: Secret,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            message_topic: "rill.messages".into(),
            sequenced_topic: "rill.sequenced".into(),
            directory_topic: "rill.directory".into(),
            push_topic: "rill.push".into(),
            presence_topic: "rill.presence".into(),
            partitions: 8,
            replication_factor: 1,
            min_insync_replicas: 1,
            idempotence: true,
            linger_ms: 1,
            fetch_wait_max_ms: 100,
            message_timeout_ms: Duration::from_secs(10),
            group_session_timeout_ms: 10_000,
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_file: String::new(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
        }
    }
}

/// Rill's topics. Every consumer dispatches on this with a `match`, so
/// that a topic it does not read is an error, not another topic's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Chat messages as accepted, by sender (`kafka.message_topic`).
    Messages,
    /// Chat messages in their profile's order (`kafka.sequenced_topic`).
    Sequenced,
    /// User and profile events (`kafka.directory_topic`).
    Directory,
    /// Server-side publishes (`kafka.push_topic`).
    Push,
    /// Joins and leaves (`kafka.presence_topic`).
    Presence,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Self::Messages,
        Self::Sequenced,
        Self::Directory,
        Self::Push,
        Self::Presence,
    ];
}

impl KafkaSettings {
    /// The name `topic` has in these settings.
    pub fn topic_name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Messages => &self.message_topic,
            Topic::Sequenced => &self.sequenced_topic,
            Topic::Directory => &self.directory_topic,
            Topic::Push => &self.push_topic,
            Topic::Presence => &self.presence_topic,
        }
    }

    /// Which of Rill's topics `name` is, if any.
    pub fn topic(&self, name: &str) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|topic| self.topic_name(*topic) == name)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.brokers.trim().is_empty() {
            return Err(SettingsError::invalid(
                "kafka.brokers",
                "must name at least one broker",
            ));
        }
        if Topic::ALL.iter().any(|t| self.topic_name(*t).is_empty()) {
            return Err(SettingsError::invalid(
                "kafka.message_topic",
                "topic names must not be empty",
            ));
        }
        if self.partitions < 1 {
            return Err(SettingsError::invalid(
                "kafka.partitions",
                "must be at least 1",
            ));
        }
        if self.replication_factor < 1 {
            return Err(SettingsError::invalid(
                "kafka.replication_factor",
                "must be at least 1",
            ));
        }
        if !(1..=self.replication_factor).contains(&self.min_insync_replicas) {
            return Err(SettingsError::invalid(
                "kafka.min_insync_replicas",
                "must be between 1 and kafka.replication_factor (a write could never reach more copies than there are)",
            ));
        }
        if !(6_000..=300_000).contains(&self.group_session_timeout_ms) {
            return Err(SettingsError::invalid(
                "kafka.group_session_timeout_ms",
                "must be between 6000 and 300000 (the broker's defaults for group sessions)",
            ));
        }
        if self.message_timeout_ms.is_zero() {
            return Err(SettingsError::invalid(
                "kafka.message_timeout_ms",
                "must be above 0",
            ));
        }
        security::validate(self)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Logs and traces, shared by every service. Traces are exported over OTLP
/// (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, as the
/// OpenTelemetry specification names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `json` or `text`. Default `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter directive; `RUST_LOG` wins when set. Default `info`.
    pub log_filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        port: u16,
        kafka: KafkaSettings,
        key: Option<Secret>,
        #[serde(deserialize_with = "one_or_many")]
        hosts: Vec<String>,
    }

    impl ServiceSettings for Example {
        fn validate(&self) -> Result<(), SettingsError> {
            self.kafka.validate()
        }
    }

    /// Runs `f` with the given environment variables and files in a
    /// sandbox (figment's `Jail` serializes tests that touch the environment).
    #[allow(clippy::result_large_err)] // figment's error type, in a test helper
    fn with_env<T>(pairs: &[(&str, &str)], f: impl FnOnce(&mut Jail) -> T) -> T {
        let mut out = None;
        Jail::expect_with(|jail| {
            for (key, value) in pairs {
                jail.set_env(key, value);
            }
            out = Some(f(jail));
            Ok(())
        });
        out.expect("jail ran the closure")
    }

    #[test]
    fn topics_are_known_by_their_names() {
        let kafka = KafkaSettings {
            push_topic: "t.push".into(),
            ..KafkaSettings::default()
        };
        assert_eq!(kafka.topic("t.push"), Some(Topic::Push));
        assert_eq!(kafka.topic("rill.messages"), Some(Topic::Messages));
        assert_eq!(kafka.topic("rill.push"), None, "renamed");
        for topic in Topic::ALL {
            assert_eq!(kafka.topic(kafka.topic_name(topic)), Some(topic));
        }
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let s: Example = with_env(&[], |_| load()).expect("loads");
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(s.port, 0);
    }

    #[test]
    fn environment_overrides_nested_fields() {
        let env = [
            ("RILL_PORT", "8081"),
            ("RILL_KAFKA__BROKERS", "b:1"),
            ("RILL_KEY", "k"),
        ];
        let s: Example = with_env(&env, |_| load()).expect("loads");
        assert_eq!(s.port, 8081);
        assert_eq!(s.kafka.brokers, "b:1");
        assert_eq!(s.key.as_ref().map(Secret::expose), Some("k"));
    }

    #[test]
    fn variables_for_other_services_are_ignored() {
        let s = with_env(&[("RILL_SESSION__COOKIE_KEY", "x")], |_| load::<Example>());
        assert!(s.is_ok(), "{s:?}");
    }

    #[test]
    fn a_bad_value_names_the_field() {
        let err =
            with_env(&[("RILL_PORT", "eighty")], |_| load::<Example>()).expect_err("must fail");
        assert!(
            err.to_string().to_lowercase().contains("key \"port\""),
            "{err}"
        );
    }

    #[test]
    fn a_typo_inside_a_section_is_an_error() {
        let err = with_env(&[("RILL_KAFKA__BROKRES", "b:1")], |_| load::<Example>())
            .expect_err("must fail");
        assert!(err.to_string().contains("brokres"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let err = with_env(&[("RILL_KAFKA__PARTITIONS", "0")], |_| load::<Example>())
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "bad settings: kafka.partitions: must be at least 1"
        );
    }

    #[test]
    fn min_insync_replicas_cannot_exceed_the_replication_factor() {
        let env = [
            ("RILL_KAFKA__REPLICATION_FACTOR", "3"),
            ("RILL_KAFKA__MIN_INSYNC_REPLICAS", "2"),
        ];
        let s: Example = with_env(&env, |_| load()).expect("loads");
        assert_eq!(
            (s.kafka.replication_factor, s.kafka.min_insync_replicas),
            (3, 2)
        );
        let env = [
            ("RILL_KAFKA__REPLICATION_FACTOR", "2"),
            ("RILL_KAFKA__MIN_INSYNC_REPLICAS", "3"),
        ];
        let err = with_env(&env, |_| load::<Example>()).expect_err("must fail");
        assert!(
            err.to_string().contains("kafka.min_insync_replicas"),
            "{err}"
        );
    }

    #[test]
    fn file_values_sit_between_defaults_and_environment() {
        let env = [("RILL_CONFIG", "s.toml"), ("RILL_PORT", "7001")];
        let s: Example = with_env(&env, |jail| {
            jail.create_file("s.toml", "port = 7000\n[kafka]\nbrokers = \"file:1\"\n")
                .expect("write file");
            load()
        })
        .expect("loads");
        assert_eq!(s.port, 7001);
        assert_eq!(s.kafka.brokers, "file:1");
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let result = with_env(&[("RILL_CONFIG", "missing.toml")], |_| load::<Example>());
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn lists_are_read_from_a_list_or_a_comma_separated_string() {
        let s: Example = with_env(&[("RILL_HOSTS", "a:1, b:2")], |_| load()).expect("loads");
        assert_eq!(s.hosts, vec!["a:1", "b:2"]);
        let s: Example = with_env(&[("RILL_HOSTS", "[a:1,b:2]")], |_| load()).expect("loads");
        assert_eq!(s.hosts, vec!["a:1", "b:2"]);
    }

    #[test]
    fn kafka_security_is_read_from_the_environment() {
        let env = [
            ("RILL_KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
            ("RILL_KAFKA__SSL_CA_FILE", "ca.pem"),
            ("RILL_KAFKA__SASL_USERNAME", "rill"),
            ("RILL_KAFKA__SASL_PASSWORD", "hunter2"),
        ];
        let s: Example = with_env(&env, |jail| {
            jail.create_file("ca.pem", "").expect("write file");
            load()
        })
        .expect("loads");
        assert_eq!(s.kafka.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.kafka.sasl_mechanism, "SCRAM-SHA-512", "the default");
        assert_eq!(s.kafka.sasl_password.expose(), "hunter2");
        let text = format!("{:?}", s.kafka);
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn kafka_security_is_checked() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("RILL_KAFKA__SECURITY_PROTOCOL", "tls")],
                "SECURITY_PROTOCOL",
            ),
            (
                &[
                    ("RILL_KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                    ("RILL_KAFKA__SASL_USERNAME", "rill"),
                ],
                "kafka.sasl_password: must be set",
            ),
            (
                &[
                    ("RILL_KAFKA__SECURITY_PROTOCOL", "sasl_plaintext"),
                    ("RILL_KAFKA__SASL_MECHANISM", "GSSAPI"),
                ],
                "kafka.sasl_mechanism",
            ),
            (
                &[
                    ("RILL_KAFKA__SECURITY_PROTOCOL", "ssl"),
                    ("RILL_KAFKA__SSL_CA_FILE", "missing.pem"),
                ],
                "kafka.ssl_ca_file: cannot read missing.pem",
            ),
            (
                &[("RILL_KAFKA__SASL_PASSWORD", "hunter2")],
                "kafka.sasl_username: a SASL user is set",
            ),
        ];
        for (env, expected) in cases {
            let err = with_env(env, |_| load::<Example>()).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{env:?}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!("{:?}", Secret::new("hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
