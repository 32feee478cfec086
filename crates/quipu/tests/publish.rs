//! End-to-end tests of the integration event publisher: the real `quipu
//! serve` and `quipu publish kafka` binaries, and a Kafka-protocol broker.
//!
//! The broker is librdkafka's mock cluster (three brokers, in this test's
//! process, reached over TCP like any broker): no Kafka broker with
//! transactions can be installed here (no JVM distribution is reachable,
//! and tansu 0.6 does not offer EndTxn). The mock keeps records of an
//! aborted transaction visible; the publisher's tail reading sees what a
//! consumer sees either way, so that does not weaken what is checked:
//! every selected event exactly once in what a consumer reads.
//!
//! Each delivery mode is run through two crashes while writers append: a
//! SIGKILL at a random point, and a checkpoint refused after a batch was
//! acknowledged (another writer moved the checkpoint stream), which leaves
//! records in the topic past the checkpoint for the next run to find.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quipu_client::{Client, Direction, ExpectedRevision, NewEvent, Position};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

use common::Server;

const TOPIC: &str = "integration";
const PARTITIONS: i32 = 4;
const SELECTED: [&str; 2] = ["OrderShipped", "InvoiceSent"];

/// Bounds every wait, so a broken publisher fails the test instead of
/// stalling it.
const PATIENCE: Duration = Duration::from_secs(120);

/// A record of the topic as a consumer reads it.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    key: String,
    headers: BTreeMap<String, String>,
}

impl Record {
    fn header(&self, key: &str) -> &str {
        self.headers.get(key).map_or("", String::as_str)
    }
}

/// A broker with the destination topic.
fn broker() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(3).expect("start the mock cluster");
    mock.create_topic(TOPIC, PARTITIONS, 1).expect("create the topic");
    mock
}

/// Every record of the topic, per partition in offset order, read with
/// `read_committed` as the publisher's consumers would.
fn records(brokers: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "publish-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("create the consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let (mut open, mut read): (std::collections::HashSet<i32>, _) = ((0..PARTITIONS).collect(), Vec::new());
    let started = Instant::now();
    while !open.is_empty() {
        assert!(started.elapsed() < PATIENCE, "the topic was not read to its end");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => panic!("consuming: {error}"),
            Some(Ok(message)) => {
                let headers = message.headers().map_or_else(BTreeMap::new, |headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                });
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                read.push(Record { partition: message.partition(), key, headers });
            }
        }
    }
    read
}

/// Waits until the topic holds at least `count` records; returns how many.
fn wait_for_records(brokers: &str, count: usize) -> usize {
    let started = Instant::now();
    loop {
        let now = records(brokers).len();
        if now >= count {
            return now;
        }
        assert!(started.elapsed() < PATIENCE, "the topic has {now} records, not {count}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `quipu publish kafka`, its stdout lines collected.
struct Publisher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Publisher {
    /// Starts it and waits for its first line ("publishing to ...").
    fn start(server: &Server, brokers: &str, delivery: &str, extra: &[&str]) -> Publisher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quipu"))
            .args(["--server", &format!("http://{}", server.grpc_address), "publish", "kafka"])
            .args(["--brokers", brokers, "--topic", TOPIC, "--delivery", delivery, "--batch-max", "25"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start quipu publish");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                collected.lock().expect("lines").push(line);
            }
        });
        let mut publisher = Publisher { child, lines };
        let started = Instant::now();
        while publisher.lines().is_empty() {
            if let Ok(Some(status)) = publisher.child.try_wait() {
                let (_, stderr) = publisher.exit();
                panic!("the publisher stopped ({status}) before it started:\n{stderr}");
            }
            if started.elapsed() > PATIENCE {
                let _ = publisher.child.kill();
                let (_, stderr) = publisher.exit();
                panic!("the publisher printed nothing in {PATIENCE:?}; its stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(publisher.lines()[0].starts_with("publishing to integration"), "{:?}", publisher.lines());
        publisher
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the publisher");
        self.child.wait().expect("wait");
    }

    /// Waits for it to exit by itself: exit code and stderr.
    fn exit(mut self) -> (Option<i32>, String) {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
        }
        (self.child.wait().expect("wait").code(), stderr)
    }
}

/// Appends `appends` times, spread over streams and types; one append in
/// five writes two events to its stream at once.
async fn write(client: Client, appends: std::ops::Range<u64>) {
    let types = ["OrderShipped", "OrderNoted", "InvoiceSent"];
    for n in appends {
        let stream = format!("order-{}", n % 23);
        let mut events = vec![NewEvent::json(types[(n % 3) as usize], &json!({ "n": n })).expect("JSON")];
        if n % 5 == 0 {
            events.push(NewEvent::json("OrderShipped", &json!({ "n": n, "second": true })).expect("JSON"));
        }
        client.append(&stream, ExpectedRevision::Any, events).await.expect("append");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Appends a copy of the publisher's last checkpoint, as a second
/// publisher of the same name would: the running one is refused at its
/// next checkpoint.
async fn move_checkpoint(client: &Client) {
    let stream = format!("publisher-{TOPIC}");
    loop {
        let last = client.read_stream(&stream, None, Direction::Backwards, 1).await.expect("read the checkpoint");
        let last = last.first().expect("a checkpoint");
        let copy = NewEvent::new(last.event_type.clone(), last.data.clone());
        match client.append(&stream, ExpectedRevision::Exact(last.revision), vec![copy]).await {
            Ok(_) => return,
            // The publisher checkpointed in between: read again.
            Err(quipu_client::Error::Conflict { .. }) => {}
            Err(other) => panic!("moving the checkpoint: {other}"),
        }
    }
}

/// The selected events of `$all`, by id.
async fn selected_events(client: &Client) -> HashMap<String, quipu_client::Event> {
    let mut expected = HashMap::new();
    let mut from = Position::START;
    loop {
        let page = client.read_all(Some(from), Direction::Forwards, 1000).await.expect("read $all");
        for event in &page {
            if SELECTED.contains(&event.event_type.as_str()) {
                expected.insert(event.id.to_string(), event.clone());
            }
        }
        match page.last() {
            Some(last) => from = last.position.next(),
            None => return expected,
        }
    }
}

/// Checks that the topic holds every selected event of `$all` once, sent
/// by `publisher`, with its stream as key, in its stream's partition, in
/// revision order.
async fn check_topic(client: &Client, brokers: &str, publisher: &str) {
    let expected = selected_events(client).await;
    let records = tokio::task::spawn_blocking({
        let brokers = brokers.to_string();
        move || records(&brokers)
    })
    .await
    .expect("read the topic");
    let mut seen = HashMap::new();
    let mut last_revision: HashMap<(i32, String), u64> = HashMap::new();
    for record in &records {
        let id = record.header("quipu-event-id").to_string();
        *seen.entry(id.clone()).or_insert(0) += 1;
        let event = expected.get(&id).unwrap_or_else(|| panic!("{record:?} is not a selected event"));
        assert_eq!(record.key, event.stream, "key");
        assert_eq!(record.partition, quipu_kafka::topic::partition_of(event.stream.as_bytes(), PARTITIONS));
        assert_eq!(record.header("quipu-event-type"), event.event_type);
        assert_eq!(record.header("quipu-position"), event.position.to_string());
        assert_eq!(record.header("quipu-publisher"), publisher);
        let revision: u64 = record.header("quipu-stream-revision").parse().expect("a revision");
        assert_eq!(revision, event.revision.0);
        let previous = last_revision.insert((record.partition, record.key.clone()), revision);
        assert!(previous.is_none_or(|p| p < revision), "{} out of order: {previous:?} then {revision}", record.key);
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "{} events published twice: {repeated:?}", repeated.len());
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, _)| !seen.contains_key(*id))
        .map(|(_, e)| (e.position, e.stream.clone(), e.revision, e.event_type.clone()))
        .collect();
    assert!(missing.is_empty(), "{} of {} events never published: {missing:?}", missing.len(), expected.len());
}

/// The "already in the topic" count of a publisher's last line.
fn already_there(line: &str) -> u64 {
    let (_, after) = line.split_once('(').unwrap_or_else(|| panic!("no count in {line:?}"));
    after.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count in {line:?}"))
}

async fn survives_a_kill_and_a_refused_checkpoint(delivery: &str) {
    let mock = broker();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    client.mark_integration_types(&SELECTED.map(String::from)).await.expect("mark the integration types");
    let writer = tokio::spawn(write(client.clone(), 0..1_500));

    // A run killed at some point of its work.
    let first = Publisher::start(&server, &brokers, delivery, &[]);
    let (b, w) = (brokers.clone(), 100);
    let seen = tokio::task::spawn_blocking(move || wait_for_records(&b, w)).await.expect("wait");
    first.kill();

    // A run whose checkpoint is refused after its batch was acknowledged.
    let second = Publisher::start(&server, &brokers, delivery, &[]);
    let b = brokers.clone();
    tokio::task::spawn_blocking(move || wait_for_records(&b, seen + 100)).await.expect("wait");
    move_checkpoint(&client).await;
    write(client.clone(), 10_000..10_003).await;
    let (code, stderr) = tokio::task::spawn_blocking(move || second.exit()).await.expect("wait");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("was moved by another publisher of the same name"), "{stderr}");

    // A run to the end finds that batch in the topic and does not send it again.
    writer.await.expect("writer");
    let last = Publisher::start(&server, &brokers, delivery, &["--until-caught-up"]);
    let lines = last.lines.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || last.exit()).await.expect("wait");
    assert_eq!(code, Some(0), "{stderr}");
    let lines = lines.lock().expect("lines").clone();
    let summary = lines.last().expect("a last line");
    assert!(summary.starts_with("stopped: published"), "{lines:?}");
    assert!(already_there(summary) > 0, "the refused batch should be found in the topic: {summary}");
    check_topic(&client, &brokers, TOPIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_a_kill_and_a_refused_checkpoint() {
    survives_a_kill_and_a_refused_checkpoint("exactly-once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_survives_a_kill_and_a_refused_checkpoint() {
    survives_a_kill_and_a_refused_checkpoint("idempotent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_survives_a_kill_and_a_refused_checkpoint() {
    survives_a_kill_and_a_refused_checkpoint("at-least-once").await;
}

/// Waits until the topic holds every selected event written so far.
async fn wait_until_published(client: &Client, brokers: &str) {
    let count = selected_events(client).await.len();
    let brokers = brokers.to_string();
    tokio::task::spawn_blocking(move || wait_for_records(&brokers, count)).await.expect("wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_the_publishers_of_its_config_file_across_a_restart() {
    let mock = broker();
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("quipu.toml");
    std::fs::write(
        &config,
        format!(
            "[[publish]]\nbrokers = \"{brokers}\"\ntopic = \"{TOPIC}\"\nname = \"from-config\"\n\
             types = [\"OrderShipped\", \"InvoiceSent\"]\ndelivery = \"idempotent\"\n"
        ),
    )
    .expect("write the config file");
    let serve = || {
        let mut command = common::serve_command();
        command.args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--config"]).arg(&config);
        command.arg("--data-dir").arg(dir.path().join("data"));
        Server::spawn(command)
    };

    let server = serve();
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    write(client.clone(), 0..200).await;
    wait_until_published(&client, &brokers).await;
    assert_eq!(server.terminate(), Some(0), "the server and its publisher stop cleanly");

    let server = serve();
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    write(client.clone(), 200..400).await;
    wait_until_published(&client, &brokers).await;
    check_topic(&client, &brokers, "from-config").await;
    let checkpoints = client.read_stream("publisher-from-config", None, Direction::Forwards, 100).await;
    assert!(!checkpoints.expect("the checkpoint stream").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_what_was_wrong_and_change_nothing() {
    let mock = broker();
    mock.create_topic("elsewhere", 1, 1).expect("create a second topic");
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let client = Client::connect(format!("http://{}", server.grpc_address)).await.expect("connect");
    write(client.clone(), 0..30).await;
    let publish = |extra: &[&str]| {
        let mut args = vec!["publish", "kafka", "--brokers", brokers.as_str(), "--types", "OrderShipped"];
        args.extend_from_slice(extra);
        args.push("--until-caught-up");
        server.cli(&args)
    };
    let refused = |extra: &[&str], needle: &str| {
        let output = publish(extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr:?} should say {needle:?}");
    };
    refused(&["--topic", "nowhere"], "topic \"nowhere\" does not exist");
    refused(&["--topic", TOPIC, "--delivery", "twice"], "delivery \"twice\" is not one of");
    refused(&["--topic", TOPIC, "--property", "acks"], "--property \"acks\" is not KEY=VALUE");
    refused(&["--topic", TOPIC, "--name", "a/b"], "publisher name \"a/b\"");
    refused(&["--topic", "bad topic"], "\' \' is not allowed in Kafka topic names");
    refused(&["--topic", TOPIC, "--batch-max", "0"], "batch size must be at least 1");
    let none = client.read_stream("publisher-nowhere", None, Direction::Forwards, 10).await;
    assert!(matches!(none, Err(quipu_client::Error::NotFound(_))), "a refused run writes no checkpoint: {none:?}");

    // A name stays with its topic.
    let output = publish(&["--topic", TOPIC, "--name", "orders"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let before = client.read_stream("publisher-orders", None, Direction::Forwards, 100).await.expect("checkpoints");
    refused(&["--topic", "elsewhere", "--name", "orders"], "publishes to topic \"integration\", not \"elsewhere\"");
    let after = client.read_stream("publisher-orders", None, Direction::Forwards, 100).await.expect("checkpoints");
    assert_eq!(before, after, "the refused run left the checkpoint alone");
    let elsewhere = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("create the consumer");
        consumer.fetch_watermarks("elsewhere", 0, Duration::from_secs(10)).expect("watermarks")
    })
    .await
    .expect("read the watermarks");
    assert_eq!(elsewhere.1, 0, "nothing was published to the other topic");
}
