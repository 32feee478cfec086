//! `quipu serve`: opens the data directory and serves it over gRPC and
//! HTTP/JSON on loopback by default. Binding another address needs `--insecure` until
//! authentication exists, and logs a warning. SIGTERM or Ctrl-C stops it
//! gracefully: no new connections, in-flight requests finish, the store
//! closes, exit 0. Connections get [`quipu_server::SHUTDOWN_GRACE`] (10 s)
//! to finish; whatever they are doing then (a request never finished, a
//! subscriber that never reads), they are cut, so the process exits
//! within about 15 s of the signal.

// The settings live in src/config.rs, beside this file: `main.rs` names
// only the subcommands, and the settings are `serve`'s alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use quipu_core::{Options, Store};

use crate::config::{Config, ConfigLayer};
use crate::publishing::{PublishEntry, Publishers};

/// Arguments of `quipu serve`. Each setting is taken from its flag, else
/// its environment variable, else the `--config` file, else its default
/// (see `config.rs`), so none has a clap default.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML file setting any of data_dir, grpc_listen, http_listen,
    /// http_header_timeout_s, keepalive_s, max_connections,
    /// max_request_bytes_in_flight, insecure, verify_on_open, segment_size_bytes,
    /// kafka_listen, kafka_category_partitions, kafka_idle_timeout_s,
    /// kurrent_listen, kurrent_tls_cert, kurrent_tls_key, cluster_brokers, cluster_topic,
    /// cluster_partition_key, cluster_node, cluster_mode and
    /// cluster_group_failover_s, and [[publish]] tables (integration
    /// event publishers the server runs); flags and environment variables
    /// override it.
    #[arg(long, env = "QUIPU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, created when missing [default: ./quipu-data].
    #[arg(long, env = "QUIPU_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the gRPC API; port 0 picks a free port [default: 127.0.0.1:2113].
    #[arg(long, env = "QUIPU_GRPC_LISTEN", value_name = "ADDRESS")]
    pub grpc_listen: Option<SocketAddr>,
    /// Address of the HTTP/JSON API; port 0 picks a free port [default: 127.0.0.1:2114].
    #[arg(long, env = "QUIPU_HTTP_LISTEN", value_name = "ADDRESS")]
    pub http_listen: Option<SocketAddr>,
    /// Seconds an HTTP request's headers may take to arrive, and an HTTP
    /// connection may sit idle between requests, before it is closed; a
    /// connection to the gRPC port has as long to open [default: 30].
    #[arg(long, env = "QUIPU_HTTP_HEADER_TIMEOUT_S", value_name = "SECONDS")]
    pub http_header_timeout_s: Option<u64>,
    /// Seconds a connection to the gRPC or KurrentDB port may be idle
    /// before TCP keepalive probes it, and between probes; after three
    /// unanswered ones (a peer gone without closing) it is closed
    /// [default: 10].
    #[arg(long, env = "QUIPU_KEEPALIVE_S", value_name = "SECONDS")]
    pub keepalive_s: Option<u64>,
    /// Connections each door (HTTP, gRPC, KurrentDB, Kafka) holds open at
    /// once; one more is refused at once (HTTP: 503 server_busy)
    /// [default: 10000, or fewer when the file descriptor limit leaves
    /// each door less].
    #[arg(long, env = "QUIPU_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u64>,
    /// Bytes of requests each door buffers at once: HTTP bodies, gRPC
    /// messages, Kafka request frames. An HTTP request waits up to
    /// --http-header-timeout-s for room, then gets 503 server_busy; a gRPC
    /// message is RESOURCE_EXHAUSTED at once; a Kafka frame waits as long,
    /// then its connection closes [default: 134217728].
    #[arg(long, env = "QUIPU_MAX_REQUEST_BYTES_IN_FLIGHT", value_name = "BYTES")]
    pub max_request_bytes_in_flight: Option<u64>,
    /// Allow a non-loopback address without authentication (unsafe);
    /// --insecure=false overrides a config file.
    #[arg(
        long,
        env = "QUIPU_INSECURE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub insecure: Option<bool>,
    /// Before serving, read every record of the log and check it, and the
    /// index against it, as `quipu verify` does; refuse to start on any
    /// problem (--verify-on-open=false overrides a config file).
    #[arg(
        long,
        env = "QUIPU_VERIFY_ON_OPEN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub verify_on_open: Option<bool>,
    /// Size at which a log segment is closed and the next begun; a
    /// scavenge rewrites closed segments only [default: 268435456].
    #[arg(long, env = "QUIPU_SEGMENT_SIZE_BYTES", value_name = "BYTES")]
    pub segment_size_bytes: Option<u64>,
    /// Address of the Kafka door (the Kafka wire protocol), e.g.
    /// 127.0.0.1:9092; off unless set.
    #[arg(long, env = "QUIPU_KAFKA_LISTEN", value_name = "ADDRESS")]
    pub kafka_listen: Option<SocketAddr>,
    /// Partitions of each category topic of the Kafka door [default: 4].
    #[arg(long, env = "QUIPU_KAFKA_CATEGORY_PARTITIONS", value_name = "N")]
    pub kafka_category_partitions: Option<i32>,
    /// Seconds a Kafka door connection may send no request before it is
    /// closed, as Kafka's connections.max.idle.ms; a request begun must
    /// finish within --http-header-timeout-s [default: 600].
    #[arg(long, env = "QUIPU_KAFKA_IDLE_TIMEOUT_S", value_name = "SECONDS")]
    pub kafka_idle_timeout_s: Option<u64>,
    /// Address of the KurrentDB (EventStoreDB) client protocol, e.g.
    /// 127.0.0.1:2115; off unless set.
    #[arg(long, env = "QUIPU_KURRENT_LISTEN", value_name = "ADDRESS")]
    pub kurrent_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS on the KurrentDB door (with
    /// --kurrent-tls-key); plain text unless set.
    #[arg(long, env = "QUIPU_KURRENT_TLS_CERT", value_name = "FILE")]
    pub kurrent_tls_cert: Option<PathBuf>,
    /// PEM private key of --kurrent-tls-cert.
    #[arg(long, env = "QUIPU_KURRENT_TLS_KEY", value_name = "FILE")]
    pub kurrent_tls_key: Option<PathBuf>,
    /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT]) of the cluster this
    /// node joins, with --cluster-topic: every append is ordered by that
    /// topic and decided alike on every node (docs/cluster.md); alone
    /// unless set.
    #[arg(long, env = "QUIPU_CLUSTER_BROKERS", value_name = "HOSTS")]
    pub cluster_brokers: Option<String>,
    /// The topic the cluster's nodes share as their log; it must exist and
    /// keep every record.
    #[arg(long, env = "QUIPU_CLUSTER_TOPIC", value_name = "NAME")]
    pub cluster_topic: Option<String>,
    /// Which part of a stream's name picks its partition: stream,
    /// category or prefix:<character>; an atomic append writes streams of
    /// one partition [default: stream].
    #[arg(long, env = "QUIPU_CLUSTER_PARTITION_KEY", value_name = "KEY")]
    pub cluster_partition_key: Option<String>,
    /// This node's name in the cluster; consumer groups are at home on a
    /// named node [default: a name generated once and kept in the data
    /// directory].
    #[arg(long, env = "QUIPU_CLUSTER_NODE", value_name = "NAME")]
    pub cluster_node: Option<String>,
    /// How appends reach the topic: log-order (any node produces, every
    /// node decides) or fenced-writer (one transactional writer per
    /// partition checks before it produces); every node of a topic runs
    /// the same [default: log-order].
    #[arg(long, env = "QUIPU_CLUSTER_MODE", value_name = "MODE")]
    pub cluster_mode: Option<String>,
    /// Seconds a consumer group's home node may be seen down before a
    /// node that is up takes the group over; 0 moves groups by hand only
    /// [default: 5].
    #[arg(long, env = "QUIPU_CLUSTER_GROUP_FAILOVER_S", value_name = "SECONDS")]
    pub cluster_group_failover_s: Option<u64>,
}

impl ServeArgs {
    /// The settings to run with: these arguments over the config file
    /// over the defaults.
    ///
    /// # Errors
    /// A config file that cannot be read or is invalid.
    pub fn config(&self) -> anyhow::Result<Config> {
        let command_line = ConfigLayer {
            data_dir: self.data_dir.clone(),
            grpc_listen: self.grpc_listen,
            http_listen: self.http_listen,
            http_header_timeout_s: self.http_header_timeout_s,
            keepalive_s: self.keepalive_s,
            max_connections: self.max_connections,
            max_request_bytes_in_flight: self.max_request_bytes_in_flight,
            insecure: self.insecure,
            verify_on_open: self.verify_on_open,
            segment_size_bytes: self.segment_size_bytes,
            kafka_listen: self.kafka_listen,
            kafka_category_partitions: self.kafka_category_partitions,
            kafka_idle_timeout_s: self.kafka_idle_timeout_s,
            kurrent_listen: self.kurrent_listen,
            kurrent_tls_cert: self.kurrent_tls_cert.clone(),
            kurrent_tls_key: self.kurrent_tls_key.clone(),
            cluster_brokers: self.cluster_brokers.clone(),
            cluster_topic: self.cluster_topic.clone(),
            cluster_partition_key: self.cluster_partition_key.clone(),
            cluster_node: self.cluster_node.clone(),
            cluster_mode: self.cluster_mode.clone(),
            cluster_group_failover_s: self.cluster_group_failover_s,
            publish: None,
        };
        Config::resolve(command_line, self.config.as_deref())
    }
}

/// Runs the server until a stop signal.
///
/// # Errors
/// An invalid config file, a refused address, a store that does not open,
/// or a listener failure.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let publishers = config
        .publish
        .iter()
        .map(PublishEntry::settings)
        .collect::<Result<Vec<_>, _>>()
        .context("a publisher of the config file")?;
    for address in
        [config.grpc_listen, config.http_listen].into_iter().chain(config.kafka_listen).chain(config.kurrent_listen)
    {
        if !address.ip().is_loopback() {
            anyhow::ensure!(
                config.insecure,
                "refusing to serve on {address} without authentication; bind a loopback address or pass --insecure",
            );
            tracing::warn!(%address, "serving without authentication on a non-loopback address (--insecure)");
        }
    }
    let kurrent_tls = config.kurrent_tls.as_ref().map(|(cert, key)| kurrent_tls(cert, key)).transpose()?;
    let options = Options { segment_size_bytes: config.segment_size_bytes, ..Options::default() };
    let store = Store::open(&config.data_dir, options)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    if config.verify_on_open {
        verify_on_open(&store)?;
    }
    let connections_max = crate::descriptors::connections_max(config.max_connections, doors(&config));
    let request_bytes_in_flight_max = usize::try_from(config.max_request_bytes_in_flight).unwrap_or(usize::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = runtime.block_on(async {
        let store = std::sync::Arc::new(store);
        let cluster_node = match &config.cluster {
            Some(cluster) => Some(join_cluster(&store, cluster).await?),
            None => None,
        };
        let node =
            quipu_server::Node::open_shared_as(store, cluster_node.clone()).context("opening the node's services")?;
        // Left when the server stops: the others see this node go at once.
        let _membership = match (&config.cluster, &cluster_node) {
            (Some(cluster), Some(name)) => fail_over_groups(&node, cluster, name)?,
            _ => None,
        };
        let mut others = Vec::new();
        let mut kafka_address = String::new();
        if let Some(address) = config.kafka_listen {
            let listener = bind(address).await?;
            let address = listener.local_addr().context("reading the bound Kafka address")?;
            kafka_address = format!(" kafka={address}");
            let door = quipu_kafka::DoorConfig {
                category_partitions: config.kafka_category_partitions,
                idle_timeout: std::time::Duration::from_secs(config.kafka_idle_timeout_s),
                request_timeout: std::time::Duration::from_secs(config.http_header_timeout_s),
                connections_max,
                request_bytes_in_flight_max,
            };
            others.push(kafka_door(&node, listener, door)?);
        }
        let kurrent = match config.kurrent_listen {
            Some(address) => Some(quipu_server::KurrentListener { listener: bind(address).await?, tls: kurrent_tls }),
            None => None,
        };
        let kurrent_address = match &kurrent {
            Some(kurrent) => {
                let address = kurrent.listener.local_addr().context("reading the bound KurrentDB address")?;
                format!(" kurrent={address}")
            }
            None => String::new(),
        };
        let listeners = quipu_server::Listeners {
            grpc: bind(config.grpc_listen).await?,
            http: bind(config.http_listen).await?,
            kurrent,
        };
        let grpc = listeners.grpc.local_addr().context("reading the bound gRPC address")?;
        let http = listeners.http.local_addr().context("reading the bound HTTP address")?;
        let stop = stop_signal()?;
        // One line on stdout that scripts and tests can wait for.
        println!(
            "quipu listening grpc={grpc} http={http}{kafka_address}{kurrent_address} data_dir={}",
            config.data_dir.display()
        );
        tracing::info!(%grpc, %http, data_dir = %config.data_dir.display(), "serving");
        let publishers = Publishers::start(publishers, grpc);
        // The publishers are clients of this server: they stop first.
        let stop = async move {
            stop.await;
            publishers.stop().await;
        };
        let limits = quipu_server::ConnectionLimits {
            http_header_timeout: std::time::Duration::from_secs(config.http_header_timeout_s),
            keepalive: std::time::Duration::from_secs(config.keepalive_s),
            connections_max,
            request_bytes_in_flight_max,
        };
        quipu_server::serve_node(node, listeners, stop, limits, others).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    // Connections cut at the end of the grace period end with the
    // runtime; a read still running on the blocking pool gets a moment.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    served
}

/// Checks every record of `store` before it is served (see
/// `crate::verify`), logging what was checked.
///
/// # Errors
/// Problems found, each named with file and offset, or an I/O error.
fn verify_on_open(store: &Store) -> anyhow::Result<()> {
    tracing::info!("verifying every record of the log before serving (--verify-on-open)");
    let found = crate::verify::check(store)?;
    for problem in &found.problems {
        tracing::error!(%problem, "verification found damage");
    }
    anyhow::ensure!(
        found.problems.is_empty(),
        "--verify-on-open found {} problems, the first: {}",
        found.problems.len(),
        found.problems.first().map(ToString::to_string).unwrap_or_default()
    );
    tracing::info!(segments = found.segments, records = found.records, events = found.events, "verified");
    Ok(())
}

/// The doors `config` opens: gRPC and HTTP, and the Kafka and KurrentDB
/// doors when they are on.
fn doors(config: &Config) -> usize {
    2 + usize::from(config.kafka_listen.is_some()) + usize::from(config.kurrent_listen.is_some())
}

/// Joins the cluster's membership as `name` and has `node` take over the
/// consumer groups of nodes seen down (docs/cluster.md), unless the
/// failover is off.
fn fail_over_groups(
    node: &quipu_server::Node,
    cluster: &crate::config::ClusterSettings,
    name: &str,
) -> anyhow::Result<Option<quipu_cluster::Membership>> {
    let Some(after) = cluster.group_failover else {
        return Ok(None);
    };
    let membership = quipu_cluster::Membership::join(&cluster.brokers, &cluster.topic, name)
        .context("joining the cluster's membership")?;
    node.fail_over_groups(membership.nodes(), after);
    Ok(Some(membership))
}

/// Makes `store` a replica of `cluster` and waits until it has applied
/// what the cluster's topic holds now, so the services open on the
/// cluster's state. Answers this node's name in the cluster (see
/// [`node_name`]).
async fn join_cluster(
    store: &std::sync::Arc<Store>,
    cluster: &crate::config::ClusterSettings,
) -> anyhow::Result<String> {
    let node = node_name(store.dir(), cluster.node.as_deref())?;
    let config = quipu_cluster::ReplicaConfig {
        brokers: cluster.brokers.clone(),
        topic: cluster.topic.clone(),
        node: node.clone(),
        partition_key: cluster.partition_key.clone(),
        produce_timeout: CLUSTER_PRODUCE_TIMEOUT,
        append_timeout: CLUSTER_APPEND_TIMEOUT,
        mode: cluster.mode,
        check_topic_settings: true,
    };
    let replica = quipu_cluster::Replica::start(std::sync::Arc::clone(store), config)
        .await
        .with_context(|| format!("joining the cluster of topic {} on {}", cluster.topic, cluster.brokers))?;
    tracing::info!(
        node,
        topic = %cluster.topic,
        partitions = replica.partitions(),
        mode = %cluster.mode,
        "catching up with the cluster"
    );
    replica.caught_up().await.context("catching up with the cluster's topic")?;
    tracing::info!(position = ?store.last_position(), "caught up with the cluster");
    Ok(node)
}

/// The file in the data directory that keeps a node's generated name.
const NODE_NAME_FILE: &str = "cluster-node-name";

/// This node's name in its cluster: `given` (`--cluster-node`), else the
/// name generated the first time this data directory joined a cluster
/// (the host name and a random suffix, kept in the data directory), so a
/// restarted node keeps its name and the groups whose home it is.
///
/// # Errors
/// The name file cannot be read or written.
fn node_name(data_dir: &Path, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = given {
        return Ok(name.to_owned());
    }
    let path = data_dir.join(NODE_NAME_FILE);
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "quipu".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("{host}-{:08x}", nanos ^ std::process::id().rotate_left(16));
    quipu_core::write_durably(data_dir, NODE_NAME_FILE, name.as_bytes())
        .with_context(|| format!("keeping this node's name in {}", path.display()))?;
    Ok(name)
}

/// How long one produce to the cluster's topic may take before its
/// outcome is looked up in the topic.
const CLUSTER_PRODUCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long an append in cluster mode may take before it is answered
/// `outcome_unknown`.
const CLUSTER_APPEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long the runtime waits for blocking work once the server stopped.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(3);

/// The door's TLS from the files at `cert` and `key`, checked.
fn kurrent_tls(cert: &Path, key: &Path) -> anyhow::Result<quipu_server::KurrentTls> {
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    quipu_server::KurrentTls::from_pem(&read(cert)?, &read(key)?).map_err(|reason| {
        anyhow::anyhow!("TLS for the KurrentDB door from {} and {}: {reason}", cert.display(), key.display())
    })
}

async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))
}

/// Starts listening for SIGTERM and Ctrl-C (SIGINT) now; the future
/// resolves on the first of them. Must run inside the runtime.
///
/// Listening starts before the future is first polled because until then
/// the default action of SIGTERM kills the process: a signal sent right
/// after the listening line would otherwise skip the graceful stop.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("stop signal received; finishing in-flight requests");
    })
}

/// The Kafka door over `node`'s services on `listener`, to serve beside
/// the others until the node stops.
///
/// # Errors
/// Settings the door refuses; committed offsets that do not read.
pub fn kafka_door(
    node: &quipu_server::Node,
    listener: tokio::net::TcpListener,
    config: quipu_kafka::DoorConfig,
) -> anyhow::Result<quipu_server::OtherDoor> {
    let door = std::sync::Arc::new(quipu_kafka::Door::new(node, config).context("starting the Kafka door")?);
    Ok(quipu_server::OtherDoor {
        name: "Kafka",
        serving: Box::pin(quipu_kafka::serve(door, listener, node.stopping())),
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).expect("valid arguments").serve
    }

    /// Whether the environment of this test sets any `QUIPU_*` variable.
    fn environment_is_clean() -> bool {
        std::env::vars_os().all(|(name, _)| !name.to_string_lossy().starts_with("QUIPU_"))
    }

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_absent_flag_leaves_its_setting_to_the_config_file() {
        if !environment_is_clean() {
            return;
        }
        let args = parse(&[]);
        assert_eq!(
            (args.config, args.data_dir, args.grpc_listen, args.http_listen, args.insecure),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn a_node_keeps_the_name_it_was_given_first_unless_one_is_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = node_name(dir.path(), None).expect("a generated name");
        assert!(!first.is_empty());
        assert_eq!(node_name(dir.path(), None).expect("the kept name"), first, "a restart keeps it");
        assert_eq!(node_name(dir.path(), Some("node-7")).expect("given"), "node-7");
        assert_eq!(node_name(dir.path(), None).expect("the kept name"), first, "a given name is not kept");
    }

    #[test]
    fn insecure_is_true_bare_and_takes_an_explicit_value() {
        assert_eq!(parse(&["--insecure"]).insecure, Some(true));
        assert_eq!(parse(&["--insecure=true"]).insecure, Some(true));
        assert_eq!(parse(&["--insecure=false"]).insecure, Some(false), "false overrides a file's insecure = true");
        assert!(Cli::try_parse_from(["serve", "--insecure", "yes"]).is_err(), "a value needs the = sign");
    }
}
