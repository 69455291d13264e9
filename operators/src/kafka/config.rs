//! Client configuration shared by the Kafka source, sink and `floe tail`: the bootstrap
//! servers plus any librdkafka property, passed through as given (TLS, SASL, client ids,
//! compression), with secrets kept out of logs.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::config::ClientConfig;

/// Bootstrap servers and librdkafka properties.
///
/// ```
/// use floe_operators::kafka::KafkaConfig;
/// let config = KafkaConfig::new("127.0.0.1:9092")
///     .set("security.protocol", "SASL_PLAINTEXT")
///     .set("sasl.password", "hunter2");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// Other librdkafka properties, passed through unchanged.
    pub properties: BTreeMap<String, String>,
}

/// Whether a property's value must not appear in logs.
pub fn is_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "key.pem",
        "keystore",
        "sasl.jaas",
        "credentials",
    ]
    .iter()
    .any(|s| p.contains(s))
}

impl KafkaConfig {
    /// A configuration for the brokers `brokers` (`host:port`, comma-separated).
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Sets a librdkafka property (overrides Floe's own setting of the same name).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Parses `key=value` properties (e.g. from repeated `--kafka-property` flags).
    pub fn with_properties<'a>(mut self, pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("Kafka property `{pair}` is not of the form key=value"))?;
            if k.trim().is_empty() {
                return Err(format!("Kafka property `{pair}` has an empty key"));
            }
            self.properties.insert(k.trim().to_string(), v.to_string());
        }
        Ok(self)
    }

    /// The librdkafka configuration: `defaults` first, then the bootstrap servers, then the
    /// user's properties (which win).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

impl fmt::Debug for KafkaConfig {
    /// Shows every property, with the values of secret ones redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("properties", &shown)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_win_and_bad_pairs_are_refused() {
        let c = KafkaConfig::new("b:1")
            .with_properties(["acks=1", "client.id=x=y"])
            .unwrap();
        let cc = c.client_config(&[("acks", "all")]);
        assert_eq!(cc.get("acks"), Some("1"));
        assert_eq!(cc.get("client.id"), Some("x=y"));
        assert_eq!(cc.get("bootstrap.servers"), Some("b:1"));
        assert!(KafkaConfig::new("b").with_properties(["nokey"]).is_err());
        assert!(KafkaConfig::new("b").with_properties(["=v"]).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let c = KafkaConfig::new("b:1")
            .set("ssl.key.password", "s3cret")
            .set("sasl.password", "hunter2")
            .set("sasl.username", "alice");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"));
        assert!(shown.contains("alice"));
    }
}
