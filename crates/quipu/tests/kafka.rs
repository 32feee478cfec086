//! The Kafka door against a real Kafka client: Debian's kcat (librdkafka
//! 2.0.2), installed by `scripts/test`. It reads `$all`, a category (over
//! its partitions) and an event type as topics, with headers; waits for
//! new events (long polling); produces with optimistic concurrency; and
//! takes batches compressed with each codec; gets clear errors for bad
//! topics and records; shares a topic in a
//! consumer group of two members, with committed offsets kept across a
//! restart. `tests/clients/kafka_clients.py` does the same through
//! confluent-kafka and kafka-python (an idempotent producer).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use common::Server;
use quipu_kafka::topic::partition_of;
use serde_json::{Value, json};

/// Partitions of a category topic in these tests.
const PARTITIONS: usize = 3;

fn start(data_dir: &std::path::Path) -> Server {
    Server::start_with_kafka(data_dir, PARTITIONS as i32)
}

/// Debian's kcat with its own librdkafka (2.0.2): cargo puts the
/// directory of the `rdkafka` crate's librdkafka 2.12 on
/// `LD_LIBRARY_PATH` for tests, and kcat would load that one instead.
fn kcat_command() -> Command {
    let mut command = Command::new("kcat");
    command.env_remove("LD_LIBRARY_PATH");
    command
}

fn kcat(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let broker = server.kafka_address.as_deref().expect("the Kafka door is on");
    let mut command = kcat_command();
    command.args(["-b", broker]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if args.contains(&"-P") {
        // The door keeps each stream in partition murmur2(key), as Java
        // clients place it; librdkafka's default hash differs.
        command.args(["-X", "partitioner=murmur2_random"]);
    }
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("kcat is installed (scripts/test installs it)");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to kcat");
    }
    child.wait_with_output().expect("kcat ran")
}

/// Every message of `topic` from the beginning, as kcat's JSON.
fn consume(server: &Server, topic: &str) -> Vec<Value> {
    let output = kcat(server, &["-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"], None);
    assert!(output.status.success(), "kcat -C {topic}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("kcat JSON")).collect()
}

/// A message's headers as a map.
fn headers(message: &Value) -> BTreeMap<String, String> {
    let list = message["headers"].as_array().cloned().unwrap_or_default();
    list.chunks(2).map(|kv| (kv[0].as_str().unwrap().to_string(), kv[1].as_str().unwrap().to_string())).collect()
}

/// Every event of `$all` over HTTP.
fn all_events(server: &Server) -> Vec<Value> {
    let (status, body) = server.request("GET", "/v1/all?limit=1000", None);
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().expect("events").clone()
}

fn append(server: &Server, stream: &str, events: Value) {
    let (status, body) = server.append(stream, &json!({"expected_revision": "any", "events": events}));
    assert_eq!(status, 200, "{body}");
}

fn write_some(server: &Server) {
    for n in 0..6 {
        let stream = format!("order-{n}");
        append(
            server,
            &stream,
            json!([
                {"type": "OrderPlaced", "data": {"n": n}, "metadata": {"by": "test"}},
                {"type": "OrderPaid", "data": {"n": n, "paid": true}},
            ]),
        );
        append(server, &format!("user-{n}"), json!([{"type": "UserJoined", "data": {"n": n}}]));
    }
}

#[test]
fn kcat_reads_all_a_category_and_a_type_as_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    write_some(&server);
    let events = all_events(&server);

    let all = consume(&server, "quipu.all");
    assert_eq!(all.len(), events.len());
    for (message, event) in all.iter().zip(&events) {
        assert_eq!(message["offset"], event["position"], "offset = position");
        assert_eq!(message["key"], event["stream"]);
        assert_eq!(serde_json::from_str::<Value>(message["payload"].as_str().unwrap()).unwrap(), event["data"]);
        let headers = headers(message);
        assert_eq!(headers["quipu-event-id"], event["id"].as_str().unwrap());
        assert_eq!(headers["quipu-event-type"], event["type"].as_str().unwrap());
        assert_eq!(headers["quipu-stream-revision"], event["revision"].to_string());
        match &event["metadata"] {
            Value::Null => assert!(!headers.contains_key("quipu-metadata")),
            metadata => assert_eq!(serde_json::from_str::<Value>(&headers["quipu-metadata"]).unwrap(), *metadata),
        }
        assert_eq!(message["ts"].as_u64().unwrap(), event["recorded_at"].as_u64().unwrap() / 1000);
    }

    // The category over its partitions: each stream in one partition, in
    // order; together, every event of the category.
    let order = consume(&server, "order");
    let mut partition_of: BTreeMap<String, u64> = BTreeMap::new();
    for message in &order {
        let stream = message["key"].as_str().unwrap().to_string();
        let partition = message["partition"].as_u64().unwrap();
        assert_eq!(
            *partition_of.entry(stream.clone()).or_insert(partition),
            partition,
            "{stream} stays in one partition"
        );
    }
    let used: std::collections::BTreeSet<_> = partition_of.values().collect();
    assert!(used.len() > 1, "six streams spread over the partitions: {partition_of:?}");
    let mut offsets: Vec<u64> = order.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    offsets.sort_unstable();
    let expected: Vec<u64> = events
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("order-"))
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, expected, "the category topic holds exactly the category's events");
    for stream in partition_of.keys() {
        let revisions: Vec<String> =
            order.iter().filter(|m| m["key"] == *stream).map(|m| headers(m)["quipu-stream-revision"].clone()).collect();
        assert_eq!(revisions, ["0", "1"], "{stream} in order");
    }

    let paid = consume(&server, "quipu.type.OrderPaid");
    assert_eq!(paid.len(), 6);
    assert!(paid.iter().all(|m| headers(m)["quipu-event-type"] == "OrderPaid"));
}

#[test]
fn a_consumer_at_the_end_gets_new_events_as_they_come() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    write_some(&server);
    let broker = server.kafka_address.clone().expect("kafka");
    let waiting = std::thread::spawn(move || {
        kcat_command()
            .args(["-b", &broker, "-C", "-t", "quipu.type.Late", "-o", "end", "-c", "1", "-J", "-q"])
            .output()
            .expect("kcat ran")
    });
    // kcat polls with Fetch (long polling); the event comes while it waits.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    append(&server, "order-9", json!([{"type": "Late", "data": {"late": true}}]));
    let output = waiting.join().expect("kcat thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let message: Value = serde_json::from_slice(&output.stdout).expect("one JSON message");
    assert_eq!(message["key"], "order-9");
    assert_eq!(message["payload"], r#"{"late":true}"#);
}

#[test]
fn kcat_produces_with_optimistic_concurrency_and_gets_clear_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let produce = |stream: &str, headers: &[&str], value: &str| {
        let mut args = vec!["-P", "-t", "order", "-k", stream];
        for header in headers {
            args.extend(["-H", header]);
        }
        kcat(&server, &args, Some(value))
    };
    let id = "0d2b1b1e-6f1f-4c59-9a59-0c1d2e3f4a5b";
    let first = produce(
        "order-1",
        &["quipu-event-type=OrderPlaced", "quipu-expected-revision=no_stream", &format!("quipu-event-id={id}")],
        r#"{"total":12}"#,
    );
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // The same id again is a retry: nothing new is written.
    let again =
        produce("order-1", &["quipu-event-type=OrderPlaced", &format!("quipu-event-id={id}")], r#"{"total":12}"#);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let exact = produce("order-1", &["quipu-event-type=OrderPaid", "quipu-expected-revision=0"], r#"{"paid":true}"#);
    assert!(exact.status.success(), "{}", String::from_utf8_lossy(&exact.stderr));
    let conflict = produce("order-1", &["quipu-event-type=OrderPaid", "quipu-expected-revision=0"], r#"{"again":1}"#);
    assert!(!conflict.status.success(), "a stale expected revision must fail");
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("validate record"), "{conflict:?}");

    let (status, body) = server.request("GET", "/v1/streams/order-1", None);
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "one placed, one paid: {body}");
    assert_eq!(events[0]["id"], id);
    assert_eq!(events[0]["type"], "OrderPlaced");
    assert_eq!(events[0]["data"], json!({"total": 12}));
    assert_eq!(events[1]["type"], "OrderPaid");

    // Refusals, each writing nothing.
    for (stream, headers) in [
        ("order-2", vec![]),                                                     // no type
        ("user-2", vec!["quipu-event-type=UserJoined"]),                         // wrong category
        ("order-2", vec!["quipu-event-type=T", "quipu-expected-revision=soon"]), // bad revision
        ("order-2", vec!["quipu-event-type=T", "quipu-event-id=not-a-uuid"]),    // bad id
    ] {
        let output = produce(stream, &headers, "{}");
        assert!(!output.status.success(), "{stream} {headers:?} must be refused");
    }
    let (status, _) = server.request("GET", "/v1/streams/order-2", None);
    assert_eq!(status, 404, "nothing was written");
    let read_only = kcat(&server, &["-P", "-t", "quipu.all", "-k", "order-3", "-H", "quipu-event-type=T"], Some("{}"));
    assert!(!read_only.status.success(), "quipu.all is read-only");

    // A stream lives in partition murmur2(key); a record sent to another
    // partition is refused, not reported where no consumer finds it.
    let stream =
        (0..).map(|n| format!("order-{n}")).find(|s| partition_of(s.as_bytes(), PARTITIONS as i32) != 0).unwrap();
    let elsewhere =
        kcat(&server, &["-P", "-t", "order", "-p", "0", "-k", &stream, "-H", "quipu-event-type=T"], Some("{}"));
    assert!(!elsewhere.status.success(), "a record sent to the wrong partition must fail");
    let (status, _) = server.request("GET", &format!("/v1/streams/{stream}"), None);
    assert_eq!(status, 404, "nothing was written");

    let listed = kcat(&server, &["-L", "-t", "no.such"], None);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Broker: Invalid topic"), "{listed:?}");
}

#[test]
fn kcat_produces_compressed_batches_with_every_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let codecs = ["gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        // Several records in one batch, so the codec has something to do.
        let lines: String = (0..20).map(|n| format!("{{\"codec\":\"{codec}\",\"n\":{n}}}\n")).collect();
        let compression = format!("compression.type={codec}");
        let args = ["-P", "-t", "order", "-k", "order-7", "-X", &compression, "-H", "quipu-event-type=OrderNoted"];
        let output = kcat(&server, &args, Some(&lines));
        assert!(output.status.success(), "{codec}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let (status, body) = server.request("GET", "/v1/streams/order-7", None);
    assert_eq!(status, 200, "{body}");
    let data: Vec<Value> = body["events"].as_array().unwrap().iter().map(|e| e["data"].clone()).collect();
    let expected: Vec<Value> =
        codecs.iter().flat_map(|codec| (0..20).map(move |n| json!({"codec": codec, "n": n}))).collect();
    assert_eq!(data, expected, "every record of every codec, in order");
}

/// A kcat member of a consumer group, writing to files until killed.
struct Member {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Member {
    fn start(server: &Server, dir: &std::path::Path, name: &str, group: &str, extra: &[&str]) -> Member {
        let (stdout, stderr) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
        let child = kcat_command()
            .args(["-b", server.kafka_address.as_deref().expect("kafka"), "-u", "-G", group, "-J"])
            .args(["-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=100"])
            .args(["-X", "heartbeat.interval.ms=200", "-X", "session.timeout.ms=6000"])
            .args(extra)
            .arg("order")
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("kcat is installed");
        Member { child, stdout, stderr }
    }

    fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the member the way Ctrl-C does: it commits and leaves.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().expect("kill");
        self.child.wait().expect("kcat exits");
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn offsets_of(messages: &[Value]) -> Vec<u64> {
    let mut offsets: Vec<u64> = messages.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    offsets.sort_unstable();
    offsets
}

#[test]
fn two_kcat_members_share_partitions_and_committed_offsets_outlive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("logs");
    let server = start(dir.path());
    let place = |server: &Server, round: u64| {
        for n in 0..8 {
            append(server, &format!("order-{n}"), json!([{"type": "Placed", "data": {"round": round}}]));
        }
    };
    place(&server, 0);
    let first = Member::start(&server, logs.path(), "first", "billing", &[]);
    wait_until("the first member to read 8 events", || first.messages().len() == 8);
    let second = Member::start(&server, logs.path(), "second", "billing", &[]);
    wait_until("the group to rebalance over both", || {
        second.log().contains("assigned:") && first.log().matches("assigned:").count() >= 2
    });
    place(&server, 1);
    wait_until("16 deliveries", || first.messages().len() + second.messages().len() >= 16);
    let (a, b) = (first.messages(), second.messages());
    let partitions = |messages: &[Value]| -> std::collections::BTreeSet<u64> {
        messages.iter().map(|m| m["partition"].as_u64().unwrap()).collect()
    };
    let later_a: Vec<Value> = a[8..].to_vec();
    assert!(!later_a.is_empty() && !b.is_empty(), "both members got events: {} and {}", later_a.len(), b.len());
    assert!(partitions(&later_a).is_disjoint(&partitions(&b)), "a partition has one member");
    let mut delivered = offsets_of(&a);
    delivered.extend(offsets_of(&b));
    delivered.sort_unstable();
    let expected: Vec<u64> = all_events(&server)
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("order-"))
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(delivered, expected, "every event once");
    first.stop();
    second.stop();
    assert_eq!(server.terminate(), Some(0));

    let server = start(dir.path());
    let (status, shipped) =
        server.append("order-3", &json!({"expected_revision": "any", "events": [{"type": "Shipped", "data": {}}]}));
    assert_eq!(status, 200, "{shipped}");
    let third = Member::start(&server, logs.path(), "third", "billing", &["-c", "1"]);
    wait_until("the third member to read", || !third.messages().is_empty());
    let message = &third.messages()[0];
    assert_eq!(
        message["offset"], shipped["first_position"],
        "the group goes on after its committed offsets, not from the start"
    );
    assert_eq!(headers(message)["quipu-event-type"], "Shipped");
    third.stop();
}

#[test]
fn confluent_kafka_and_kafka_python_produce_and_consume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    common::run_client_script("kafka_clients.py", &[server.kafka_address.as_deref().expect("kafka"), &server.address]);
}
