//! The settings of `quipu serve` and where each comes from. A setting is
//! taken from the first source that sets it: its flag, its environment
//! variable, the TOML config file named by `--config` (or `QUIPU_CONFIG`),
//! then the built-in default. Clap already puts a flag over its environment
//! variable, so the command line arrives here as one [`ConfigLayer`]; the
//! file is another; [`Config::resolve`] stacks them over the defaults.
//! `serve` reads only the resolved [`Config`].
//!
//! A config file is strict: an unreadable file, a syntax error, an unknown
//! key or a value of the wrong type is an error that names the file, and
//! the server does not start. A typo must never fall back to a default
//! silently, least of all for an address or a data directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::publishing::PublishEntry;

/// Data directory when no source sets one.
pub const DATA_DIR_DEFAULT: &str = "./quipu-data";
/// Address of the gRPC API when no source sets one.
pub const GRPC_LISTEN_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2113);
/// Address of the HTTP/JSON API when no source sets one.
pub const HTTP_LISTEN_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2114);

/// Segment size when no source sets one: the engine's default.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Seconds an HTTP request's headers may take when no source sets them.
pub const HTTP_HEADER_TIMEOUT_S_DEFAULT: u64 = 30;

/// Seconds of idleness before, and between, TCP keepalive probes on the
/// gRPC and KurrentDB ports when no source sets them.
pub const KEEPALIVE_S_DEFAULT: u64 = 10;

/// Seconds a Kafka door connection may send nothing when no source sets
/// them: Kafka's `connections.max.idle.ms` default.
pub const KAFKA_IDLE_TIMEOUT_S_DEFAULT: u64 = 600;

/// Bytes of requests (HTTP bodies, gRPC messages, Kafka frames) each
/// door buffers at once when no source sets them.
pub const MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT: u64 = 128 * 1024 * 1024;

/// Partitions of a category topic when no source sets them.
pub const KAFKA_CATEGORY_PARTITIONS_DEFAULT: i32 = 4;

/// The settings one source gives, each `None` unless that source sets it.
/// A config file holds exactly these keys, all optional:
///
/// ```toml
/// data_dir = "/var/lib/quipu"
/// grpc_listen = "127.0.0.1:2113"
/// http_listen = "127.0.0.1:2114"
/// http_header_timeout_s = 30
/// keepalive_s = 10
/// max_connections = 10000             # per door; default: see serve.rs
/// max_request_bytes_in_flight = 134217728
/// insecure = false
/// verify_on_open = false
/// segment_size_bytes = 268435456
/// kafka_listen = "127.0.0.1:9092"
/// kafka_category_partitions = 4
/// kafka_idle_timeout_s = 600
/// kurrent_listen = "127.0.0.1:2115"
/// kurrent_tls_cert = "/etc/quipu/cert.pem"   # both, or neither
/// kurrent_tls_key = "/etc/quipu/key.pem"
/// cluster_brokers = "kafka-1:9092,kafka-2:9092"   # both, or neither
/// cluster_topic = "quipu-log"
/// cluster_partition_key = "stream"    # or "category", "prefix:/"
/// cluster_node = "node-1"
/// cluster_mode = "log-order"          # or "fenced-writer"
/// cluster_group_failover_s = 5        # 0: groups move by hand only
///
/// [[publish]]    # any number of integration event publishers
/// brokers = "kafka-1:9092"
/// topic = "orders.integration"
/// ```
///
/// A `[[publish]]` table takes the keys of
/// [`crate::publishing::PublishEntry`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Data directory. In a file, a relative path is relative to the
    /// file's directory.
    pub data_dir: Option<PathBuf>,
    /// Address of the gRPC API.
    pub grpc_listen: Option<SocketAddr>,
    /// Address of the HTTP/JSON API.
    pub http_listen: Option<SocketAddr>,
    /// Seconds an HTTP request's headers may take to arrive, and an HTTP
    /// connection may sit idle between requests.
    pub http_header_timeout_s: Option<u64>,
    /// Seconds a connection to the gRPC or KurrentDB port may be idle
    /// before TCP keepalive probes it, and between probes: a peer that is
    /// gone is noticed after three and its connection closed.
    pub keepalive_s: Option<u64>,
    /// Connections each door holds open at once.
    pub max_connections: Option<u64>,
    /// Bytes of requests (HTTP bodies, gRPC messages, Kafka frames) each
    /// door buffers at once.
    pub max_request_bytes_in_flight: Option<u64>,
    /// Whether a non-loopback address may be served without authentication.
    pub insecure: Option<bool>,
    /// Whether every record is checked before serving.
    pub verify_on_open: Option<bool>,
    /// Size at which a log segment is closed (scavenges rewrite closed
    /// segments only).
    pub segment_size_bytes: Option<u64>,
    /// Address of the Kafka door (off unless set).
    pub kafka_listen: Option<SocketAddr>,
    /// Partitions of each category topic of the Kafka door.
    pub kafka_category_partitions: Option<i32>,
    /// Seconds a Kafka door connection may send no request before it is
    /// closed.
    pub kafka_idle_timeout_s: Option<u64>,
    /// Address of the KurrentDB client protocol (off unless set).
    pub kurrent_listen: Option<SocketAddr>,
    /// PEM certificate chain the KurrentDB door serves TLS with. In a
    /// file, a relative path is relative to the file's directory.
    pub kurrent_tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub kurrent_tls_key: Option<PathBuf>,
    /// Kafka bootstrap servers of the cluster this node joins (cluster
    /// mode, with `cluster_topic`; see docs/cluster.md).
    pub cluster_brokers: Option<String>,
    /// The topic the cluster's nodes share as their log.
    pub cluster_topic: Option<String>,
    /// Which part of a stream's name picks its partition: `stream`,
    /// `category` or `prefix:<character>`.
    pub cluster_partition_key: Option<String>,
    /// This node's name in the cluster (in its proposals and logs).
    pub cluster_node: Option<String>,
    /// How appends reach the topic: `log-order` or `fenced-writer`.
    pub cluster_mode: Option<String>,
    /// Seconds a consumer group's home may be seen down before another
    /// node takes it over; 0: by hand only.
    pub cluster_group_failover_s: Option<u64>,
    /// Integration event publishers the server runs (config file only).
    pub publish: Option<Vec<PublishEntry>>,
}

impl ConfigLayer {
    /// Reads the config file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, or [`ConfigLayer::parse`] refuses it; the
    /// message names the file.
    pub fn read(path: &Path) -> anyhow::Result<ConfigLayer> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
        ConfigLayer::parse(&text, path)
    }

    /// Parses `text`, the contents of the config file at `path`, and makes
    /// a relative `data_dir` relative to the file's directory.
    ///
    /// # Errors
    /// Invalid TOML, an unknown key or a value of the wrong type; the
    /// message names the file, and the line and the key at fault.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<ConfigLayer> {
        let mut layer: ConfigLayer =
            toml::from_str(text).with_context(|| format!("invalid config file {}", path.display()))?;
        // The file means the same wherever the server is started from.
        let beside = |file: PathBuf| path.parent().unwrap_or(Path::new("")).join(file);
        layer.data_dir = layer.data_dir.map(beside);
        layer.kurrent_tls_cert = layer.kurrent_tls_cert.map(beside);
        layer.kurrent_tls_key = layer.kurrent_tls_key.map(beside);
        for (n, entry) in layer.publish.iter().flatten().enumerate() {
            entry.settings().with_context(|| format!("invalid config file {}: publish #{}", path.display(), n + 1))?;
        }
        Ok(layer)
    }

    /// This layer over `lower`: each setting from `self` where it is set,
    /// otherwise from `lower`.
    #[must_use]
    pub fn over(self, lower: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            data_dir: self.data_dir.or(lower.data_dir),
            grpc_listen: self.grpc_listen.or(lower.grpc_listen),
            http_listen: self.http_listen.or(lower.http_listen),
            http_header_timeout_s: self.http_header_timeout_s.or(lower.http_header_timeout_s),
            keepalive_s: self.keepalive_s.or(lower.keepalive_s),
            max_connections: self.max_connections.or(lower.max_connections),
            max_request_bytes_in_flight: self.max_request_bytes_in_flight.or(lower.max_request_bytes_in_flight),
            insecure: self.insecure.or(lower.insecure),
            verify_on_open: self.verify_on_open.or(lower.verify_on_open),
            segment_size_bytes: self.segment_size_bytes.or(lower.segment_size_bytes),
            kafka_listen: self.kafka_listen.or(lower.kafka_listen),
            kafka_category_partitions: self.kafka_category_partitions.or(lower.kafka_category_partitions),
            kafka_idle_timeout_s: self.kafka_idle_timeout_s.or(lower.kafka_idle_timeout_s),
            kurrent_listen: self.kurrent_listen.or(lower.kurrent_listen),
            kurrent_tls_cert: self.kurrent_tls_cert.or(lower.kurrent_tls_cert),
            kurrent_tls_key: self.kurrent_tls_key.or(lower.kurrent_tls_key),
            cluster_brokers: self.cluster_brokers.or(lower.cluster_brokers),
            cluster_topic: self.cluster_topic.or(lower.cluster_topic),
            cluster_partition_key: self.cluster_partition_key.or(lower.cluster_partition_key),
            cluster_node: self.cluster_node.or(lower.cluster_node),
            cluster_mode: self.cluster_mode.or(lower.cluster_mode),
            cluster_group_failover_s: self.cluster_group_failover_s.or(lower.cluster_group_failover_s),
            publish: self.publish.or(lower.publish),
        }
    }
}

/// The settings `quipu serve` runs with, every one resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Data directory (created when missing).
    pub data_dir: PathBuf,
    /// Address of the gRPC API (port 0 picks a free port).
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP/JSON API (port 0 picks a free port).
    pub http_listen: SocketAddr,
    /// Seconds an HTTP request's headers may take to arrive, and an HTTP
    /// connection may sit idle between requests (at least 1).
    pub http_header_timeout_s: u64,
    /// Seconds of idleness before, and between, TCP keepalive probes on
    /// the gRPC and KurrentDB ports (at least 1).
    pub keepalive_s: u64,
    /// Connections each door holds open at once (at least 1); `None`:
    /// as many as the descriptor limit leaves each door, at most 10,000
    /// (see `serve.rs`).
    pub max_connections: Option<u64>,
    /// Bytes of requests (HTTP bodies, gRPC messages, Kafka frames) each
    /// door buffers at once (at least 1 MiB).
    pub max_request_bytes_in_flight: u64,
    /// Whether a non-loopback address may be served without authentication.
    pub insecure: bool,
    /// Whether every record of the log, and the index against it, is
    /// checked before serving (a problem refuses to start).
    pub verify_on_open: bool,
    /// Size at which a log segment is closed.
    pub segment_size_bytes: u64,
    /// Address of the Kafka door; `None`: off.
    pub kafka_listen: Option<SocketAddr>,
    /// Partitions of each category topic of the Kafka door.
    pub kafka_category_partitions: i32,
    /// Seconds a Kafka door connection may send no request (at least 1).
    pub kafka_idle_timeout_s: u64,
    /// Address of the KurrentDB client protocol; `None`: off.
    pub kurrent_listen: Option<SocketAddr>,
    /// Certificate and key files the KurrentDB door serves TLS with;
    /// `None`: plain text.
    pub kurrent_tls: Option<(PathBuf, PathBuf)>,
    /// The cluster this node is a replica of; `None`: it runs alone.
    pub cluster: Option<ClusterSettings>,
    /// Integration event publishers to run, each checked by
    /// [`ConfigLayer::parse`].
    pub publish: Vec<PublishEntry>,
}

/// Seconds a consumer group's home may be seen down before another node
/// takes it over, unless set.
const GROUP_FAILOVER_S: u64 = 5;

/// Where this node's cluster is (see docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic the nodes share.
    pub topic: String,
    /// Which part of a stream's name picks its partition.
    pub partition_key: quipu_cluster::PartitionKey,
    /// This node's name; `None`: the one generated when its data directory
    /// first joined a cluster, kept there.
    pub node: Option<String>,
    /// How appends reach the topic.
    pub mode: quipu_cluster::ClusterMode,
    /// How long a consumer group's home may be seen down before a node
    /// that is up takes it over; `None`: groups move by hand only.
    pub group_failover: Option<std::time::Duration>,
}

impl ClusterSettings {
    /// The cluster settings of `layer`, or `None` when it sets neither
    /// brokers nor topic.
    ///
    /// # Errors
    /// Brokers without a topic or a topic without brokers; a partition key
    /// node name or mode given while cluster mode is off; an unknown
    /// partition key or mode; an empty node name.
    fn of(layer: &ConfigLayer) -> anyhow::Result<Option<ClusterSettings>> {
        let (brokers, topic) = match (&layer.cluster_brokers, &layer.cluster_topic) {
            (Some(brokers), Some(topic)) => (brokers.clone(), topic.clone()),
            (None, None) => {
                anyhow::ensure!(
                    layer.cluster_partition_key.is_none()
                        && layer.cluster_node.is_none()
                        && layer.cluster_mode.is_none()
                        && layer.cluster_group_failover_s.is_none(),
                    "cluster_partition_key, cluster_node, cluster_mode and cluster_group_failover_s need cluster mode: \
                     set cluster_brokers and cluster_topic"
                );
                return Ok(None);
            }
            (Some(_), None) => anyhow::bail!("cluster_brokers is set without cluster_topic; cluster mode needs both"),
            (None, Some(_)) => anyhow::bail!("cluster_topic is set without cluster_brokers; cluster mode needs both"),
        };
        anyhow::ensure!(!brokers.trim().is_empty(), "cluster_brokers is empty");
        anyhow::ensure!(!topic.trim().is_empty(), "cluster_topic is empty");
        let partition_key = match &layer.cluster_partition_key {
            Some(text) => text.parse().context("cluster_partition_key")?,
            None => quipu_cluster::PartitionKey::default(),
        };
        if let Some(node) = &layer.cluster_node {
            anyhow::ensure!(!node.trim().is_empty(), "cluster_node is empty");
        }
        let mode = match &layer.cluster_mode {
            Some(text) => text.parse().context("cluster_mode")?,
            None => quipu_cluster::ClusterMode::default(),
        };
        let group_failover = match layer.cluster_group_failover_s.unwrap_or(GROUP_FAILOVER_S) {
            0 => None,
            seconds => Some(std::time::Duration::from_secs(seconds)),
        };
        let node = layer.cluster_node.clone();
        Ok(Some(ClusterSettings { brokers, topic, partition_key, node, mode, group_failover }))
    }
}

impl Config {
    /// Resolves every setting: `command_line` (flags over their
    /// environment variables), then the config file at `file` when one is
    /// named, then the defaults.
    ///
    /// # Errors
    /// As [`ConfigLayer::read`] when a file is named.
    pub fn resolve(command_line: ConfigLayer, file: Option<&Path>) -> anyhow::Result<Config> {
        let file = match file {
            Some(path) => ConfigLayer::read(path)?,
            None => ConfigLayer::default(),
        };
        Config::with_defaults(command_line.over(file))
    }

    /// The settings of `layer`, each one it leaves unset at its default.
    ///
    /// # Errors
    /// A TLS certificate without its key, or a key without its
    /// certificate; a timeout of 0.
    pub fn with_defaults(layer: ConfigLayer) -> anyhow::Result<Config> {
        let http_header_timeout_s = layer.http_header_timeout_s.unwrap_or(HTTP_HEADER_TIMEOUT_S_DEFAULT);
        anyhow::ensure!(http_header_timeout_s > 0, "http_header_timeout_s must be at least 1 second");
        let keepalive_s = layer.keepalive_s.unwrap_or(KEEPALIVE_S_DEFAULT);
        anyhow::ensure!(keepalive_s > 0, "keepalive_s must be at least 1 second");
        anyhow::ensure!(layer.max_connections != Some(0), "max_connections must be at least 1");
        let max_request_bytes_in_flight =
            layer.max_request_bytes_in_flight.unwrap_or(MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT);
        anyhow::ensure!(
            max_request_bytes_in_flight >= 1024 * 1024,
            "max_request_bytes_in_flight must be at least 1048576 (1 MiB)"
        );
        let kafka_idle_timeout_s = layer.kafka_idle_timeout_s.unwrap_or(KAFKA_IDLE_TIMEOUT_S_DEFAULT);
        anyhow::ensure!(kafka_idle_timeout_s > 0, "kafka_idle_timeout_s must be at least 1 second");
        let cluster = ClusterSettings::of(&layer)?;
        let kurrent_tls = match (layer.kurrent_tls_cert, layer.kurrent_tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("kurrent_tls_cert is set without kurrent_tls_key; TLS needs both"),
            (None, Some(_)) => anyhow::bail!("kurrent_tls_key is set without kurrent_tls_cert; TLS needs both"),
        };
        Ok(Config {
            cluster,
            data_dir: layer.data_dir.unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            grpc_listen: layer.grpc_listen.unwrap_or(GRPC_LISTEN_DEFAULT),
            http_listen: layer.http_listen.unwrap_or(HTTP_LISTEN_DEFAULT),
            http_header_timeout_s,
            keepalive_s,
            max_connections: layer.max_connections,
            max_request_bytes_in_flight,
            insecure: layer.insecure.unwrap_or(false),
            verify_on_open: layer.verify_on_open.unwrap_or(false),
            segment_size_bytes: layer.segment_size_bytes.unwrap_or(SEGMENT_SIZE_BYTES_DEFAULT),
            kafka_listen: layer.kafka_listen,
            kafka_category_partitions: layer.kafka_category_partitions.unwrap_or(KAFKA_CATEGORY_PARTITIONS_DEFAULT),
            kafka_idle_timeout_s,
            kurrent_listen: layer.kurrent_listen,
            kurrent_tls,
            publish: layer.publish.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    /// Writes `text` to a config file in a fresh directory.
    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("quipu.toml");
        std::fs::write(&path, text).expect("write the config file");
        (dir, path)
    }

    /// The error of resolving with the file at `path`, with its causes.
    fn resolve_error(path: &Path) -> String {
        let error = Config::resolve(ConfigLayer::default(), Some(path)).expect_err("the file is refused");
        format!("{error:#}")
    }

    #[test]
    fn defaults_apply_when_no_source_sets_a_setting() {
        let config = Config::resolve(ConfigLayer::default(), None).expect("no file, no error");
        assert_eq!(
            config,
            Config {
                data_dir: PathBuf::from("./quipu-data"),
                grpc_listen: address("127.0.0.1:2113"),
                http_listen: address("127.0.0.1:2114"),
                http_header_timeout_s: HTTP_HEADER_TIMEOUT_S_DEFAULT,
                keepalive_s: KEEPALIVE_S_DEFAULT,
                max_connections: None,
                max_request_bytes_in_flight: MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT,
                insecure: false,
                verify_on_open: false,
                segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
                kafka_listen: None,
                kafka_category_partitions: KAFKA_CATEGORY_PARTITIONS_DEFAULT,
                kafka_idle_timeout_s: KAFKA_IDLE_TIMEOUT_S_DEFAULT,
                kurrent_listen: None,
                kurrent_tls: None,
                cluster: None,
                publish: vec![],
            }
        );
    }

    #[test]
    fn the_file_sets_every_key_the_command_line_leaves_unset() {
        let (_dir, path) = config_file(
            "data_dir = \"/srv/quipu\"\ngrpc_listen = \"127.0.0.1:7113\"\nhttp_listen = \"[::1]:7114\"\ninsecure = true\n\
             http_header_timeout_s = 5\nkeepalive_s = 7\nkafka_idle_timeout_s = 60\n\
             max_connections = 300\nmax_request_bytes_in_flight = 2097152\n\
             segment_size_bytes = 1048576\nkafka_listen = \"127.0.0.1:9092\"\nkafka_category_partitions = 8\n\
             [[publish]]\nbrokers = \"kafka:9092\"\ntopic = \"orders\"\ntypes = [\"OrderShipped\"]\n",
        );
        let config = Config::resolve(ConfigLayer::default(), Some(&path)).expect("a valid file");
        assert_eq!(
            config,
            Config {
                data_dir: PathBuf::from("/srv/quipu"),
                grpc_listen: address("127.0.0.1:7113"),
                http_listen: address("[::1]:7114"),
                http_header_timeout_s: 5,
                keepalive_s: 7,
                max_connections: Some(300),
                max_request_bytes_in_flight: 2_097_152,
                insecure: true,
                verify_on_open: false,
                segment_size_bytes: 1_048_576,
                kafka_listen: Some(address("127.0.0.1:9092")),
                kafka_category_partitions: 8,
                kafka_idle_timeout_s: 60,
                kurrent_listen: None,
                kurrent_tls: None,
                cluster: None,
                publish: vec![PublishEntry {
                    brokers: "kafka:9092".into(),
                    topic: "orders".into(),
                    types: vec!["OrderShipped".into()],
                    name: None,
                    delivery: None,
                    batch_max: None,
                    properties: std::collections::BTreeMap::new(),
                }],
            }
        );
    }

    #[test]
    fn the_command_line_overrides_the_file_key_by_key() {
        let (_dir, path) =
            config_file("data_dir = \"/srv/quipu\"\nhttp_listen = \"127.0.0.1:7114\"\ninsecure = true\n");
        let command_line = ConfigLayer {
            data_dir: Some(PathBuf::from("/tmp/flag")),
            grpc_listen: None,
            http_listen: None,
            http_header_timeout_s: None,
            keepalive_s: None,
            max_connections: Some(50),
            max_request_bytes_in_flight: None,
            insecure: Some(false),
            verify_on_open: None,
            segment_size_bytes: None,
            kafka_listen: None,
            kafka_category_partitions: None,
            kafka_idle_timeout_s: None,
            kurrent_listen: None,
            kurrent_tls_cert: None,
            kurrent_tls_key: None,
            cluster_brokers: None,
            cluster_topic: None,
            cluster_partition_key: None,
            cluster_node: None,
            cluster_mode: None,
            cluster_group_failover_s: None,
            publish: None,
        };
        let config = Config::resolve(command_line, Some(&path)).expect("a valid file");
        assert_eq!(
            config,
            Config {
                data_dir: PathBuf::from("/tmp/flag"),
                grpc_listen: GRPC_LISTEN_DEFAULT,
                http_listen: address("127.0.0.1:7114"),
                http_header_timeout_s: HTTP_HEADER_TIMEOUT_S_DEFAULT,
                keepalive_s: KEEPALIVE_S_DEFAULT,
                max_connections: Some(50),
                max_request_bytes_in_flight: MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT,
                insecure: false,
                verify_on_open: false,
                segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
                kafka_listen: None,
                kafka_category_partitions: KAFKA_CATEGORY_PARTITIONS_DEFAULT,
                kafka_idle_timeout_s: KAFKA_IDLE_TIMEOUT_S_DEFAULT,
                kurrent_listen: None,
                kurrent_tls: None,
                cluster: None,
                publish: vec![],
            },
            "flag over file, file over default, and an explicit false is not unset"
        );
    }

    #[test]
    fn cluster_mode_takes_brokers_and_topic_together_and_refuses_half_a_setting() {
        let (_dir, path) = config_file(
            "cluster_brokers = \"k1:9092,k2:9092\"\ncluster_topic = \"quipu-log\"\ncluster_partition_key = \"prefix:/\"\n\
             cluster_mode = \"fenced-writer\"\n",
        );
        let config = Config::resolve(ConfigLayer::default(), Some(&path)).expect("a valid file");
        assert_eq!(
            config.cluster,
            Some(ClusterSettings {
                brokers: "k1:9092,k2:9092".into(),
                topic: "quipu-log".into(),
                partition_key: quipu_cluster::PartitionKey::Prefix('/'),
                node: None,
                mode: quipu_cluster::ClusterMode::FencedWriter,
                group_failover: Some(std::time::Duration::from_secs(GROUP_FAILOVER_S)),
            })
        );
        let (_dir, path) =
            config_file("cluster_brokers = \"k\"\ncluster_topic = \"t\"\ncluster_group_failover_s = 0\n");
        let by_hand = Config::resolve(ConfigLayer::default(), Some(&path)).expect("a valid file");
        assert_eq!(by_hand.cluster.expect("cluster mode").group_failover, None, "0: groups move by hand only");
        let cases = [
            ("cluster_brokers = \"k1:9092\"\n", "cluster_brokers is set without cluster_topic"),
            ("cluster_topic = \"t\"\n", "cluster_topic is set without cluster_brokers"),
            ("cluster_node = \"n1\"\n", "need cluster mode"),
            (
                "cluster_brokers = \"k\"\ncluster_topic = \"t\"\ncluster_partition_key = \"tenant\"\n",
                "unknown partition key",
            ),
            ("cluster_brokers = \"k\"\ncluster_topic = \"t\"\ncluster_mode = \"leader\"\n", "unknown cluster mode"),
            ("cluster_mode = \"fenced-writer\"\n", "need cluster mode"),
            ("cluster_group_failover_s = 3\n", "need cluster mode"),
        ];
        for (text, expected) in cases {
            let (_dir, path) = config_file(text);
            let error = resolve_error(&path);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn a_bad_publisher_names_the_file_the_table_and_the_setting() {
        let (_dir, path) =
            config_file("[[publish]]\nbrokers = \"kafka:9092\"\ntopic = \"orders\"\ndelivery = \"twice\"\n");
        let error = resolve_error(&path);
        assert!(error.contains("quipu.toml: publish #1"), "{error}");
        assert!(error.contains("\"twice\" is not one of"), "{error}");
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let (_dir, path) = config_file("# all defaults\n");
        assert_eq!(ConfigLayer::read(&path).expect("a valid file"), ConfigLayer::default());
    }

    #[test]
    fn a_relative_data_dir_in_a_file_is_relative_to_the_file() {
        let (dir, path) = config_file("data_dir = \"data\"\n");
        let layer = ConfigLayer::read(&path).expect("a valid file");
        assert_eq!(layer.data_dir, Some(dir.path().join("data")));
        let layer = ConfigLayer::parse("data_dir = \"data\"\n", Path::new("quipu.toml")).expect("a valid file");
        assert_eq!(layer.data_dir, Some(PathBuf::from("data")));
    }

    #[test]
    fn tls_files_in_a_file_are_relative_to_it_and_come_in_pairs() {
        let (dir, path) = config_file("kurrent_tls_cert = \"cert.pem\"\nkurrent_tls_key = \"key.pem\"\n");
        let config = Config::resolve(ConfigLayer::default(), Some(&path)).expect("a valid file");
        assert_eq!(config.kurrent_tls, Some((dir.path().join("cert.pem"), dir.path().join("key.pem"))));
        let (_dir, path) = config_file("kurrent_tls_cert = \"cert.pem\"\n");
        assert!(resolve_error(&path).contains("without kurrent_tls_key"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
        let (_dir, path) = config_file("data_dri = \"/srv/quipu\"\n");
        let message = resolve_error(&path);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("unknown field `data_dri`"), "{message}");
        assert!(message.contains("data_dir"), "the valid keys are listed: {message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_file() {
        for text in ["http_listen = 2114\n", "grpc_listen = \"localhost\"\n", "insecure = \"yes\"\n", "data_dir = 3\n"]
        {
            let (_dir, path) = config_file(text);
            let message = resolve_error(&path);
            assert!(message.contains(&path.display().to_string()), "{text:?}: {message}");
            assert!(message.contains("line 1"), "{text:?}: {message}");
        }
    }

    #[test]
    fn invalid_toml_is_an_error_naming_the_file() {
        let (_dir, path) = config_file("data_dir = \"/srv/quipu\n");
        let message = resolve_error(&path);
        assert!(message.starts_with(&format!("invalid config file {}", path.display())), "{message}");
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.toml");
        let message = resolve_error(&path);
        assert!(message.starts_with(&format!("cannot read the config file {}", path.display())), "{message}");
    }
}
