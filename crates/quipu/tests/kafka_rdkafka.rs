//! The Kafka door against the Rust `rdkafka` crate (librdkafka 2.12, built
//! in): what `kafka.rs` checks with kcat, from a Rust program's side.
//!
//! - Records produced to a category topic, with headers, come back from
//!   that topic and from `quipu.all` with their key, value, event id, type,
//!   stream revision and metadata, in the partition murmur2 gives their
//!   stream, at the offset the producer was told; and they are events of
//!   the store over HTTP.
//! - A stale `quipu-expected-revision` fails the record's delivery with
//!   `INVALID_RECORD`, writes nothing, and leaves the producer usable.
//! - Two members of a consumer group: the first alone holds every
//!   partition, both share them after the second joins, every event is
//!   read by exactly one member, and the first holds every partition
//!   again after the second leaves, going on from the second's commits.
//! - Offsets a group committed outlive a restart of the server: a new
//!   member reads only the events written after the commit.
//! - A consumer waiting at the end of a partition gets no error while
//!   events go to other partitions (each moves the end past a gap).
//!
//! librdkafka keeps the broker's `error_message` of a refused produce
//! only behind `rd_kafka_message_produce_errstr`, which the safe API does
//! not offer and which, in 2.12.1, points into the parsed response that
//! is freed before the delivery report is served; so the conflict's
//! message is checked by `kafka.rs` and the Python clients, not here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Server;
use quipu_kafka::topic::partition_of;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

/// The category the tests write to; a topic of [`PARTITIONS`] partitions.
const CATEGORY: &str = "account";
/// Partitions of a category topic in these tests.
const PARTITIONS: i32 = 3;
/// Bounds every wait, so a broken door fails the test instead of stalling
/// it; far above what a healthy rebalance or read takes.
const PATIENCE: Duration = Duration::from_secs(120);
/// One poll of a consumer; short, so that the members of a group polled in
/// turn from one thread all stay responsive.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn start(data_dir: &std::path::Path) -> Server {
    Server::start_with_kafka(data_dir, PARTITIONS)
}

fn broker(server: &Server) -> &str {
    server.kafka_address.as_deref().expect("the Kafka door is on")
}

/// The partition of `stream` in its category topic.
fn partition(stream: &str) -> i32 {
    partition_of(stream.as_bytes(), PARTITIONS)
}

/// `per_partition` streams of [`CATEGORY`] in each partition, so that a
/// write to each stream reaches every partition.
fn streams_on_every_partition(per_partition: usize) -> Vec<String> {
    let mut counts = [0; PARTITIONS as usize];
    let mut streams = Vec::new();
    for n in 0..1000 {
        let stream = format!("{CATEGORY}-{n}");
        let count = &mut counts[partition(&stream) as usize];
        if *count < per_partition {
            *count += 1;
            streams.push(stream);
        }
    }
    assert!(counts.iter().all(|c| *c == per_partition), "murmur2 spreads 1000 streams: {counts:?}");
    streams
}

/// Appends one event to each of `streams` over HTTP; the `(partition,
/// offset)` each event must be read at from the category topic.
fn write_round(server: &Server, streams: &[String], round: u64) -> BTreeSet<(i32, i64)> {
    let mut expected = BTreeSet::new();
    for stream in streams {
        let event = json!({"type": "Deposited", "data": {"round": round}});
        let (status, body) = server.append(stream, &json!({"expected_revision": "any", "events": [event]}));
        assert_eq!(status, 200, "{body}");
        let position = body["first_position"].as_i64().unwrap_or_else(|| panic!("no first_position in {body}"));
        expected.insert((partition(stream), position));
    }
    expected
}

/// The events of `stream` over HTTP.
fn stream_events(server: &Server, stream: &str) -> Vec<Value> {
    let (status, body) = server.request("GET", &format!("/v1/streams/{stream}"), None);
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap_or_else(|| panic!("no events in {body}")).clone()
}

/// A record as a consumer read it.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: String,
    value: Value,
    headers: BTreeMap<String, String>,
}

impl Record {
    fn read(message: &BorrowedMessage<'_>) -> Record {
        let headers = message.headers().map_or_else(BTreeMap::new, |headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                .collect()
        });
        let value = message.payload().map_or(Value::Null, |v| serde_json::from_slice(v).expect("a JSON value"));
        Record {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            value,
            headers,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no header {name} in {self:?}"))
    }
}

/// The `(partition, offset)` of each record, sorted.
fn places(records: &[Record]) -> Vec<(i32, i64)> {
    let mut places: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    places.sort_unstable();
    places
}

/// A consumer outside any group, reading the partitions it is assigned,
/// that reports reaching the end of a partition.
fn reader(server: &Server) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker(server))
        // librdkafka wants a group to assign partitions; this one never
        // joins nor commits.
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("create a consumer")
}

/// Assigns `partitions` of `topic` to `consumer`, each from its start.
fn assign_from_start(consumer: &BaseConsumer, topic: &str, partitions: impl IntoIterator<Item = i32>) {
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("add a partition");
    }
    consumer.assign(&assignment).expect("assign");
}

/// Every record of `topic` (of `partitions` partitions) from the start to
/// its end.
fn read_topic(server: &Server, topic: &str, partitions: i32) -> Vec<Record> {
    let consumer = reader(server);
    assign_from_start(&consumer, topic, 0..partitions);
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let mut records = Vec::new();
    let started = Instant::now();
    while !open.is_empty() {
        assert!(started.elapsed() < PATIENCE, "{topic} not read to its end; partitions {open:?} still open");
        match consumer.poll(POLL_INTERVAL) {
            None => {}
            Some(Ok(message)) => records.push(Record::read(&message)),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
        }
    }
    records
}

/// A record to produce to [`CATEGORY`]: an event of `stream`.
struct Outgoing {
    stream: String,
    data: Value,
    headers: Vec<(&'static str, String)>,
}

impl Outgoing {
    fn new(stream: &str, event_type: &str, data: Value) -> Outgoing {
        Outgoing { stream: stream.to_string(), data, headers: vec![("quipu-event-type", event_type.to_string())] }
    }

    fn with(mut self, header: &'static str, value: impl Into<String>) -> Outgoing {
        self.headers.push((header, value.into()));
        self
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// Where a record landed, `(partition, offset)`, or why it did not.
type Delivery = Result<(i32, i64), KafkaError>;

/// Keeps each record's delivery, by the index it was sent with.
#[derive(Default)]
struct Deliveries(Mutex<BTreeMap<usize, Delivery>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let delivery = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        self.0.lock().expect("deliveries lock").insert(index, delivery);
    }
}

/// A producer that places keys as Kafka's Java client does (murmur2), as
/// the door places streams; librdkafka's default hashes with CRC32.
fn producer(server: &Server) -> BaseProducer<Deliveries> {
    ClientConfig::new()
        .set("bootstrap.servers", broker(server))
        .set("partitioner", "murmur2_random")
        .create_with_context(Deliveries::default())
        .expect("create a producer")
}

/// Produces `records` to [`CATEGORY`], waits for every delivery; each
/// record's delivery, in the order of `records`.
fn produce(producer: &BaseProducer<Deliveries>, records: &[Outgoing]) -> Vec<Delivery> {
    for (index, record) in records.iter().enumerate() {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }));
        let data = record.data.to_string();
        let sent = BaseRecord::with_opaque_to(CATEGORY, index)
            .key(record.stream.as_str())
            .payload(data.as_str())
            .headers(headers);
        producer.send(sent).map_err(|(error, _)| error).expect("queue a record");
    }
    producer.flush(PATIENCE).expect("every record delivered or refused in time");
    let deliveries = std::mem::take(&mut *producer.context().0.lock().expect("deliveries lock"));
    assert_eq!(deliveries.len(), records.len(), "a delivery report per record: {deliveries:?}");
    deliveries.into_values().collect()
}

/// Produces one record; where it landed, or why not.
fn produce_one(producer: &BaseProducer<Deliveries>, record: Outgoing) -> Delivery {
    produce(producer, &[record]).pop().expect("one delivery")
}

/// Checks that `record` is `outgoing`, delivered at `place`, as the event
/// of revision `revision` of its stream.
fn assert_read_as_sent(record: &Record, outgoing: &Outgoing, place: (i32, i64), revision: usize) {
    let stream = outgoing.stream.as_str();
    assert_eq!(record.key, stream);
    assert_eq!(record.partition, partition(stream), "murmur2 places {stream}");
    assert_eq!((record.partition, record.offset), place, "read where the producer was told it landed");
    assert_eq!(record.value, outgoing.data);
    assert_eq!(record.header("quipu-stream-revision"), revision.to_string(), "{record:?}");
    assert_eq!(Some(record.header("quipu-event-type")), outgoing.header("quipu-event-type"));
    assert_eq!(record.header("quipu-event-id").len(), 36, "a UUID: {record:?}");
    let json = |text: &str| serde_json::from_str::<Value>(text).expect("JSON metadata");
    let metadata = record.headers.get("quipu-metadata").map(|m| json(m));
    assert_eq!(metadata, outgoing.header("quipu-metadata").map(json), "{record:?}");
}

/// Checks that `record` is `event` (as the HTTP API shows it).
fn assert_is_the_event(record: &Record, event: &Value) {
    assert_eq!(event["id"], record.header("quipu-event-id"));
    assert_eq!(event["type"], record.header("quipu-event-type"));
    assert_eq!(event["revision"].to_string(), record.header("quipu-stream-revision"));
    assert_eq!(event["data"], record.value);
    assert_eq!(event["position"], record.offset);
    assert_eq!(event["recorded_at"].as_i64().map(|us| us / 1000), record.timestamp_ms, "commit time");
    match record.headers.get("quipu-metadata") {
        None => assert_eq!(event["metadata"], Value::Null, "{event}"),
        Some(metadata) => assert_eq!(event["metadata"], serde_json::from_str::<Value>(metadata).expect("JSON")),
    }
}

#[test]
fn records_produced_with_headers_are_read_back_as_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let by = json!({"by": "rdkafka"}).to_string();
    let sent = [
        Outgoing::new("account-1", "Opened", json!({"owner": "ada"})).with("quipu-metadata", by.clone()),
        Outgoing::new("account-2", "Opened", json!({"owner": "grace"})),
        Outgoing::new("account-1", "Deposited", json!({"amount": 10})).with("quipu-metadata", by),
        Outgoing::new("account-2", "Deposited", json!({"amount": 25})),
        Outgoing::new("account-1", "Withdrawn", json!({"amount": 3})),
    ];
    let deliveries = produce(&producer(&server), &sent);
    let delivered: Vec<(i32, i64)> =
        deliveries.into_iter().map(|d| d.unwrap_or_else(|error| panic!("refused: {error}"))).collect();

    let records = read_topic(&server, CATEGORY, PARTITIONS);
    assert_eq!(records.len(), sent.len(), "{records:#?}");
    for stream in ["account-1", "account-2"] {
        // A stream is in one partition, in order: its records as sent.
        let sent_here: Vec<(&Outgoing, &(i32, i64))> =
            sent.iter().zip(&delivered).filter(|(o, _)| o.stream == stream).collect();
        let read_here: Vec<&Record> = records.iter().filter(|r| r.key == stream).collect();
        let events = stream_events(&server, stream);
        assert_eq!(read_here.len(), sent_here.len(), "{stream}: {read_here:#?}");
        assert_eq!(events.len(), sent_here.len(), "{stream}: {events:?}");
        for (revision, (((outgoing, place), record), event)) in
            sent_here.iter().zip(&read_here).zip(&events).enumerate()
        {
            assert_read_as_sent(record, outgoing, **place, revision);
            assert_is_the_event(record, event);
        }
    }

    // `quipu.all` holds the same records, at the same offsets, in its one
    // partition.
    let all = read_topic(&server, "quipu.all", 1);
    let mut by_offset = records;
    by_offset.sort_by_key(|r| r.offset);
    let same_in_partition_0: Vec<Record> = by_offset.into_iter().map(|r| Record { partition: 0, ..r }).collect();
    assert_eq!(all, same_in_partition_0);
}

#[test]
fn a_batch_for_hundreds_of_streams_is_written_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    // A linger long enough that each partition's records go as one batch:
    // about 670 streams per partition, past the 256 an append once took.
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", broker(&server))
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "500")
        .create_with_context(Deliveries::default())
        .expect("create a producer");
    let sent: Vec<Outgoing> =
        (0..2000).map(|n| Outgoing::new(&format!("account-{n}"), "Opened", json!({"n": n}))).collect();
    let deliveries = produce(&producer, &sent);
    let refused: Vec<String> = deliveries.iter().filter_map(|d| d.as_ref().err()).map(ToString::to_string).collect();
    assert!(refused.is_empty(), "{} of {} refused, first: {:?}", refused.len(), sent.len(), refused.first());
    let records = read_topic(&server, CATEGORY, PARTITIONS);
    assert_eq!(records.len(), sent.len());
}

#[test]
fn a_stale_expected_revision_fails_the_delivery_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let stream = "account-7";
    let opened = json!([{"type": "Opened", "data": {"owner": "ada"}}, {"type": "Deposited", "data": {"amount": 5}}]);
    let (status, body) = server.append(stream, &json!({"expected_revision": "no_stream", "events": opened}));
    assert_eq!(status, 200, "{body}");
    let producer = producer(&server);
    let deposit = |amount: u64, expected: &str| {
        Outgoing::new(stream, "Deposited", json!({"amount": amount})).with("quipu-expected-revision", expected)
    };

    let exact = produce_one(&producer, deposit(1, "1")).expect("the stream is at revision 1");
    let stale = produce_one(&producer, deposit(666, "1"));
    match &stale {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)) => {}
        other => panic!("a stale expected revision must be refused with INVALID_RECORD, not {other:?}"),
    }
    // The refusal leaves the producer usable.
    let next = produce_one(&producer, deposit(2, "2")).expect("the stream is at revision 2");

    let events = stream_events(&server, stream);
    let amounts: Vec<&Value> = events.iter().map(|e| &e["data"]["amount"]).collect();
    assert_eq!(amounts, [&Value::Null, &json!(5), &json!(1), &json!(2)], "the refused record wrote nothing");
    assert_eq!(events[2]["position"], exact.1);
    assert_eq!(events[3]["position"], next.1);
    assert_eq!(events[3]["revision"], 3);
}

/// Events written elsewhere while a consumer waits at the end of its
/// partition, one at a time: each moves the high watermark of every
/// partition (offsets are positions in `$all`), and the door answers the
/// waiting fetch with a batch without records spanning the gap. Were it an
/// ordinary batch, librdkafka would take it for a truncated one and double
/// the partition's fetch size, from 1 MiB up to 1 GiB (ten times); past
/// that, it raises `MSG_SIZE_TOO_LARGE` on each one. A control batch is
/// stepped over.
const GAPS_CROSSED: usize = 15;

/// Polls `consumer` until it reports the end of `partition` (of a topic
/// it reads alone); a record or an error fails the test with `context`.
fn wait_for_end(consumer: &BaseConsumer, partition: i32, context: &str) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < PATIENCE, "{context}: the end of partition {partition} was not reported");
        match consumer.poll(POLL_INTERVAL) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return,
            Some(Ok(message)) => panic!("{context}: an unexpected record {:?}", Record::read(&message)),
            Some(Err(error)) => panic!("{context}: {error}"),
        }
    }
}

#[test]
fn a_consumer_at_the_end_of_a_partition_gets_no_error_while_others_grow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let streams = streams_on_every_partition(1);
    let (waiting, others) = streams.split_first().expect("a stream per partition");
    let consumer = reader(&server);
    assign_from_start(&consumer, CATEGORY, [partition(waiting)]);
    wait_for_end(&consumer, partition(waiting), "before any event");

    for crossed in 0..GAPS_CROSSED {
        write_round(&server, std::slice::from_ref(&others[crossed % others.len()]), crossed as u64);
        let context = format!("after {crossed} gaps crossed, the consumer waiting at the end of {waiting}");
        wait_for_end(&consumer, partition(waiting), &context);
    }
    let written = write_round(&server, std::slice::from_ref(waiting), 0);
    let started = Instant::now();
    let record = loop {
        assert!(started.elapsed() < PATIENCE, "the event of {waiting} was not read");
        match consumer.poll(POLL_INTERVAL) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Ok(message)) => break Record::read(&message),
            Some(Err(error)) => panic!("waiting for the event of {waiting}: {error}"),
        }
    };
    assert_eq!(Vec::from_iter(written), [(record.partition, record.offset)]);
    assert_eq!(record.key, *waiting);
}

/// A member of a consumer group, subscribed to [`CATEGORY`], and what it
/// read.
struct Member {
    name: &'static str,
    consumer: BaseConsumer,
    received: Vec<Record>,
}

impl Member {
    /// Joins `group`; nothing happens before it is polled.
    fn join(server: &Server, group: &str, name: &'static str) -> Member {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker(server))
            .set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member hears of a rebalance from its heartbeats.
            .set("heartbeat.interval.ms", "250")
            .set("session.timeout.ms", "10000")
            .create()
            .expect("create a group member");
        consumer.subscribe(&[CATEGORY]).expect("subscribe");
        Member { name, consumer, received: Vec::new() }
    }

    /// Serves the member's events (the group protocol, rebalances) for at
    /// most one [`POLL_INTERVAL`], keeping a record if one comes.
    fn poll(&mut self) {
        match self.consumer.poll(POLL_INTERVAL) {
            None => {}
            Some(Ok(message)) => self.received.push(Record::read(&message)),
            Some(Err(error)) => panic!("{}: {error}", self.name),
        }
    }

    /// The partitions of [`CATEGORY`] assigned to this member now.
    fn assignment(&self) -> BTreeSet<i32> {
        let assignment = self.consumer.assignment().expect("the assignment");
        assignment.elements().iter().map(|e| e.partition()).collect()
    }

    /// Commits the position of every assigned partition, and waits for the
    /// answer.
    fn commit(&self) {
        self.consumer.commit_consumer_state(CommitMode::Sync).unwrap_or_else(|e| panic!("{}: commit: {e}", self.name));
    }

    /// The offsets the group committed for [`CATEGORY`], by partition
    /// (asked of the group, whatever this member holds).
    fn committed(&self) -> BTreeMap<i32, Offset> {
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions.add_partition(CATEGORY, partition);
        }
        let committed = self.consumer.committed_offsets(partitions, PATIENCE).expect("the committed offsets");
        committed.elements().iter().map(|e| (e.partition(), e.offset())).collect()
    }

    /// Leaves the group. Dropping a consumer blocks until librdkafka says
    /// it closed, with no limit; a thread bounds the wait.
    fn leave(self) {
        let (closed, wait) = std::sync::mpsc::channel();
        let Member { name, consumer, .. } = self;
        std::thread::spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
        wait.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("{name} did not leave the group in time"));
    }
}

/// Polls `members` in turn until `done`; fails after [`PATIENCE`].
fn poll_until(members: &mut [Member], what: &str, mut done: impl FnMut(&[Member]) -> bool) {
    let started = Instant::now();
    while !done(members) {
        let state: Vec<String> =
            members.iter().map(|m| format!("{} has {:?}, read {}", m.name, m.assignment(), m.received.len())).collect();
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}: {}", state.join("; "));
        for member in members.iter_mut() {
            member.poll();
        }
    }
}

/// The places of what `member` read from index `from` on.
fn read_since(member: &Member, from: usize) -> Vec<(i32, i64)> {
    places(&member.received[from..])
}

#[test]
fn two_group_members_share_the_partitions_through_rebalances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let streams = streams_on_every_partition(2);
    let every_partition: BTreeSet<i32> = (0..PARTITIONS).collect();

    let round_0 = write_round(&server, &streams, 0);
    let mut members = vec![Member::join(&server, "billing", "first")];
    poll_until(&mut members, "the first member to hold every partition and read round 0", |m| {
        m[0].assignment() == every_partition && m[0].received.len() >= round_0.len()
    });
    assert_eq!(read_since(&members[0], 0), Vec::from_iter(round_0), "the first member read round 0 once");
    members[0].commit();

    members.push(Member::join(&server, "billing", "second"));
    poll_until(&mut members, "a rebalance sharing the partitions", |m| {
        let (first, second) = (m[0].assignment(), m[1].assignment());
        !first.is_empty() && !second.is_empty() && first.is_disjoint(&second) && &first | &second == every_partition
    });
    let (first_assigned, second_assigned) = (members[0].assignment(), members[1].assignment());

    let round_1 = write_round(&server, &streams, 1);
    let before = [members[0].received.len(), members[1].received.len()];
    poll_until(&mut members, "round 1 to be read", |m| {
        m[0].received.len() - before[0] + m[1].received.len() - before[1] >= round_1.len()
    });
    let (first_read, second_read) = (read_since(&members[0], before[0]), read_since(&members[1], before[1]));
    assert_eq!(before[1], 0, "the second member re-read nothing the first committed");
    assert!(!first_read.is_empty() && !second_read.is_empty(), "both read: {first_read:?} and {second_read:?}");
    assert!(first_read.iter().all(|(p, _)| first_assigned.contains(p)), "{first_read:?} in {first_assigned:?}");
    assert!(second_read.iter().all(|(p, _)| second_assigned.contains(p)), "{second_read:?} in {second_assigned:?}");
    let mut both_read = [first_read, second_read].concat();
    both_read.sort_unstable();
    assert_eq!(both_read, Vec::from_iter(round_1), "every event of round 1 read by exactly one member");
    members[0].commit();
    members[1].commit();

    members.pop().expect("the second member").leave();
    poll_until(&mut members, "the first member to hold every partition again", |m| {
        m[0].assignment() == every_partition
    });
    let round_2 = write_round(&server, &streams, 2);
    let before = members[0].received.len();
    poll_until(&mut members, "round 2 to be read", |m| m[0].received.len() - before >= round_2.len());
    assert_eq!(
        read_since(&members[0], before),
        Vec::from_iter(round_2),
        "the first member goes on from the second's commits: round 2 only"
    );
    members.pop().expect("the first member").leave();
}

#[test]
fn committed_offsets_outlive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let streams = streams_on_every_partition(2);

    let round_0 = write_round(&server, &streams, 0);
    let mut members = vec![Member::join(&server, "ledger", "before")];
    poll_until(&mut members, "round 0 to be read", |m| m[0].received.len() >= round_0.len());
    assert_eq!(read_since(&members[0], 0), Vec::from_iter(round_0));
    members[0].commit();
    let committed = members[0].committed();
    let mut next_to_read: BTreeMap<i32, Offset> = BTreeMap::new();
    for (partition, offset) in read_since(&members[0], 0) {
        next_to_read.insert(partition, Offset::Offset(offset + 1));
    }
    assert_eq!(committed, next_to_read, "the group committed, per partition, the offset after the last read");
    members.pop().expect("the member").leave();
    assert_eq!(server.terminate(), Some(0));

    let server = start(dir.path());
    // Written before the group's new member starts: it must skip round 0
    // and read these, whichever offset it would start from.
    let round_1 = write_round(&server, &streams, 1);
    let mut members = vec![Member::join(&server, "ledger", "after")];
    assert_eq!(members[0].committed(), committed, "the group's offsets after the restart");
    poll_until(&mut members, "round 1 to be read", |m| m[0].received.len() >= round_1.len());
    assert_eq!(
        read_since(&members[0], 0),
        Vec::from_iter(round_1),
        "the group goes on after its committed offsets: round 1 only"
    );
    members.pop().expect("the member").leave();
}

/// Kafka consumers read through the same path as every other door: an
/// event written at an old version of its type comes out at the current
/// one, with the version in its metadata header, as HTTP and gRPC reads
/// give it.
#[test]
fn consumers_read_events_at_their_types_current_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let stream = format!("{CATEGORY}-upcast");
    let event = json!({"type": "Opened", "data": {"name": "Ada"}, "metadata": {"schema_version": 1}});
    let (status, body) = server.append(&stream, &json!({"expected_revision": "no_stream", "events": [event]}));
    assert_eq!(status, 200, "{body}");
    let declaration =
        json!({"event_type": "Opened", "from_version": 1, "steps": [{"rename": {"path": "name", "to": "owner"}}]});
    let (status, body) = server.request("POST", "/v1/upcasters", Some(&declaration.to_string()));
    assert_eq!(status, 200, "{body}");

    let over_http = stream_events(&server, &stream);
    assert_eq!(over_http[0]["data"], json!({"owner": "Ada"}), "HTTP reads upcast: {over_http:?}");
    let records = read_topic(&server, "quipu.all", 1);
    let record = records.iter().find(|r| r.key == stream).unwrap_or_else(|| panic!("no record of {stream}"));
    assert_eq!(record.value, json!({"owner": "Ada"}), "the record's value is the current version");
    let metadata: Value = serde_json::from_str(record.header("quipu-metadata")).expect("JSON metadata");
    assert_eq!(metadata["schema_version"], 2, "the metadata names the current version: {metadata}");
}
