//! Connection settings shared by the Kafka source, the sink and the admin helpers.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

/// The brokers to talk to and the librdkafka settings to pass through.
///
/// Settings are librdkafka's own names (`security.protocol`, `sasl.username`, ...); a leading
/// `kafka.` (Spark's spelling) is stripped, so `kafka.client.id` and `client.id` are the same.
///
/// ```
/// use weir_connectors::kafka::KafkaOptions;
/// let options = KafkaOptions::new("127.0.0.1:9092").set("kafka.client.id", "weir-doc");
/// assert_eq!(options.get("client.id"), Some("weir-doc"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka settings, applied after Weir's own defaults (so they win).
    pub settings: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// Options for the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaOptions { bootstrap_servers: bootstrap_servers.into(), settings: BTreeMap::new() }
    }

    /// Adds a librdkafka setting (a leading `kafka.` is stripped).
    pub fn set(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        let key = key.as_ref();
        let key = key.strip_prefix("kafka.").unwrap_or(key);
        self.settings.insert(key.to_string(), value.into());
        self
    }

    /// Adds every `(key, value)` setting (see [`KafkaOptions::set`]).
    pub fn set_all<K: AsRef<str>, V: Into<String>>(mut self, settings: impl IntoIterator<Item = (K, V)>) -> Self {
        for (key, value) in settings {
            self = self.set(key, value);
        }
        self
    }

    /// The value of a pass-through setting, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// A librdkafka configuration: `defaults` first, then the bootstrap servers, then the
    /// user's settings, which override both.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }
}
