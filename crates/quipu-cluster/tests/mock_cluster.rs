//! Replicas on librdkafka's mock cluster: three brokers inside the test
//! process, whose partitions' leaders can be moved and whose responses
//! can be delayed (the faults a single-node broker cannot make). The mock
//! cannot describe a topic's configuration, so these replicas skip the
//! settings check (`check_topic_settings: false`); it is a mock, used
//! because no multi-broker Kafka can run here.
//!
//! Each writer appends to its own stream with the exact expected revision
//! and sends an append again, with the same event ids, when its outcome is
//! unknown: every stream must end with each of its events once, in order,
//! alike on both nodes, and no writer may be told "conflict" for its own
//! retry. A last test races two fenced writers, which this broker does
//! not fence.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quipu_cluster::{ClusterError, ClusterMode, PartitionKey, Replica, ReplicaConfig};
use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, Options, ProposedEvent, RecordedEvent,
    Revision, Store, StreamName,
};
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "quipu-log";
const PARTITIONS: i32 = 3;
const BROKERS: i32 = 3;
const WRITERS: usize = 6;
/// Appends each writer makes at least; it goes on while the faults last.
const APPENDS_MIN: u64 = 5;
/// How long the writers may take in all (a stuck cluster fails the test
/// instead of hanging it).
const WRITING_WITHIN: Duration = Duration::from_secs(120);
/// Accounts two fenced writers race to open.
const RACES: usize = 60;

/// A mock cluster of three brokers with the topic, three replicas per
/// partition.
fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(BROKERS).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, BROKERS).unwrap();
    cluster
}

fn config(brokers: &str, node: &str, produce_timeout: Duration) -> ReplicaConfig {
    ReplicaConfig {
        brokers: brokers.to_owned(),
        topic: TOPIC.to_owned(),
        node: node.to_owned(),
        partition_key: PartitionKey::Stream,
        produce_timeout,
        append_timeout: Duration::from_secs(30),
        mode: ClusterMode::LogOrder,
        check_topic_settings: false,
    }
}

/// A node: its data directory, its store and its replica.
type Node = (tempfile::TempDir, Arc<Store>, Arc<Replica>);

/// Two nodes in `mode`, each on a store of its own.
async fn two_nodes(brokers: &str, produce_timeout: Duration, mode: ClusterMode) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), Options::default()).unwrap());
        let config = ReplicaConfig { mode, ..config(brokers, name, produce_timeout) };
        let replica = Replica::start(Arc::clone(&store), config).await.unwrap();
        nodes.push((dir, store, Arc::new(replica)));
    }
    nodes
}

fn close(nodes: &[Node]) {
    for (_, _, replica) in nodes {
        replica.close();
    }
}

fn deposit(stream: &str, revision: u64) -> AppendRequest {
    let expected =
        if revision == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(revision - 1)) };
    let event = ProposedEvent::new(EventType::new("Deposited").unwrap(), format!("{{\"n\":{revision}}}").into_bytes());
    AppendRequest::to_stream(StreamName::new(stream).unwrap(), expected, vec![event])
}

/// Appends events to `stream` through `replica`, one after the other,
/// until `faults_over` and at least [`APPENDS_MIN`]; an append of unknown
/// outcome is sent again, same ids. Gives how many were appended and how
/// many sent again.
async fn write_stream(replica: Arc<Replica>, stream: String, faults_over: Arc<AtomicBool>) -> (u64, u64) {
    let (mut revision, mut again) = (0, 0);
    while revision < APPENDS_MIN || !faults_over.load(Ordering::Acquire) {
        let request = deposit(&stream, revision);
        loop {
            match replica.append(request.clone()).await {
                Ok(AppendOutcome::Written(_) | AppendOutcome::AlreadyWritten(_)) => break,
                Ok(AppendOutcome::Conflict(conflict)) => panic!("{stream}@{revision}: told conflict: {conflict:?}"),
                Err(ClusterError::OutcomeUnknown { .. }) => again += 1,
                Err(error) => panic!("{stream}@{revision}: {error}"),
            }
        }
        revision += 1;
    }
    (revision, again)
}

/// Runs the writers, spread over the nodes, while `faults` runs; gives how
/// many appends each writer made, and how many were sent again in all.
async fn write_all(nodes: &[Node], faults: impl std::future::Future<Output = ()>) -> (Vec<u64>, u64) {
    let faults_over = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let replica = Arc::clone(&nodes[w % nodes.len()].2);
        let faults_over = Arc::clone(&faults_over);
        writers.spawn(async move { (w, write_stream(replica, format!("account-{w}"), faults_over).await) });
    }
    let written = async {
        let (mut appends, mut again) = (vec![0; WRITERS], 0);
        while let Some(writer) = writers.join_next().await {
            let (w, (count, sent_again)) = writer.unwrap();
            appends[w] = count;
            again += sent_again;
        }
        (appends, again)
    };
    let faults = async {
        faults.await;
        faults_over.store(true, Ordering::Release);
    };
    let done = tokio::time::timeout(WRITING_WITHIN, async { tokio::join!(written, faults) }).await;
    let Ok((written, ())) = done else { panic!("the writers did not finish within {WRITING_WITHIN:?}") };
    written
}

fn all_events(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(None, Direction::Forwards, 10_000).unwrap()
}

/// Both nodes hold every writer's stream whole (`appends` per writer):
/// each event once, in order, the same events at the same positions.
fn assert_whole_and_alike(nodes: &[Node], appends: &[u64]) {
    let expected = usize::try_from(appends.iter().sum::<u64>()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.iter().any(|(_, store, _)| all_events(store).len() < expected) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (first, second) = (all_events(&nodes[0].1), all_events(&nodes[1].1));
    assert_eq!(first.len(), expected, "every append once");
    assert_eq!(first, second, "both nodes hold the same events at the same positions");
    for (w, count) in appends.iter().enumerate() {
        let stream = format!("account-{w}");
        let data: Vec<String> = first
            .iter()
            .filter(|e| e.stream.as_str() == stream)
            .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
            .collect();
        let want: Vec<String> = (0..*count).map(|n| format!("{{\"n\":{n}}}")).collect();
        assert_eq!(data, want, "{stream}: each deposit once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_move_under_load_and_every_append_is_written_once() {
    let cluster = mock_cluster();
    let nodes = two_nodes(&cluster.bootstrap_servers(), Duration::from_secs(10), ClusterMode::LogOrder).await;
    let moves = async {
        for round in 0..8 {
            for partition in 0..PARTITIONS {
                let leader = (round + partition) % BROKERS + 1;
                cluster.partition_leader(TOPIC, partition, Some(leader)).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let (appends, again) = write_all(&nodes, moves).await;
    assert_whole_and_alike(&nodes, &appends);
    eprintln!("{appends:?} appends while leaders moved, {again} sent again after an unknown outcome");
    close(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_slower_than_the_produce_timeout_are_looked_up_and_applied_once() {
    let cluster = mock_cluster();
    // Produces time out after 150 ms; for a while every broker answers
    // after 400 ms, having appended what it was sent.
    let nodes = two_nodes(&cluster.bootstrap_servers(), Duration::from_millis(150), ClusterMode::LogOrder).await;
    let slow = async {
        for broker in 1..=BROKERS {
            cluster.broker_round_trip_time(broker, Duration::from_millis(400)).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        for broker in 1..=BROKERS {
            cluster.broker_round_trip_time(broker, Duration::ZERO).unwrap();
        }
    };
    let (appends, again) = write_all(&nodes, slow).await;
    assert_whole_and_alike(&nodes, &appends);
    let looked_up: u64 = nodes.iter().map(|(_, _, replica)| replica.looked_up()).sum();
    eprintln!("{looked_up} produces looked up, {again} appends sent again");
    assert!(looked_up > 0, "some produce timed out while the brokers were slow");
    close(&nodes);
}

/// librdkafka's mock cluster does not fence: a second producer with a
/// transactional id gets a producer id of its own, so both nodes stay the
/// writers of the partitions they race for (each claims each once, no
/// transaction fails). Both check an opening against their store, both may
/// produce it; the apply, alike on both nodes, still decides exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writers_the_broker_does_not_fence_still_decide_each_opening_once() {
    let cluster = mock_cluster();
    let nodes = two_nodes(&cluster.bootstrap_servers(), Duration::from_secs(10), ClusterMode::FencedWriter).await;
    let mut rounds = tokio::task::JoinSet::new();
    for round in 0..RACES {
        let (a, b) = (Arc::clone(&nodes[0].2), Arc::clone(&nodes[1].2));
        rounds.spawn(async move {
            let stream = format!("account-{round}");
            let (from_a, from_b) = tokio::join!(a.append(deposit(&stream, 0)), b.append(deposit(&stream, 0)));
            let written = [from_a.unwrap(), from_b.unwrap()]
                .iter()
                .filter(|outcome| match outcome {
                    AppendOutcome::Written(_) => true,
                    AppendOutcome::Conflict(_) => false,
                    other => panic!("{stream}: {other:?}"),
                })
                .count();
            assert_eq!(written, 1, "{stream}: exactly one opening wins");
        });
    }
    while let Some(round) = rounds.join_next().await {
        round.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.iter().any(|(_, store, _)| all_events(store).len() < RACES) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (first, second) = (all_events(&nodes[0].1), all_events(&nodes[1].1));
    assert_eq!((first.len(), &first), (RACES, &second));
    let claims: u64 = nodes.iter().map(|(_, _, r)| r.claims()).sum();
    let failed: u64 = nodes.iter().map(|(_, _, r)| r.failed_transactions()).sum();
    eprintln!("{claims} claims, {failed} failed transactions");
    close(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_records_the_topic_id_and_refuses_the_topic_created_again() {
    let first = mock_cluster();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Options::default()).unwrap());
    let replica = Replica::start(Arc::clone(&store), config(&first.bootstrap_servers(), "a", Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(matches!(replica.append(deposit("account-0", 0)).await.unwrap(), AppendOutcome::Written(_)));
    replica.close();
    drop(replica);
    let id = quipu_cluster::topic_id(&first.bootstrap_servers(), TOPIC).await.unwrap();
    assert!(id.is_some(), "the mock cluster keeps topic ids");
    let saved = quipu_cluster::MergeState::load(dir.path()).unwrap().unwrap();
    assert_eq!(saved.topic_id, id, "the node recorded the topic's id");

    // The "same" topic on other brokers: created anew, with more records in
    // every partition than the node read, so its offsets look fine.
    let second = mock_cluster();
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", second.bootstrap_servers()).create().unwrap();
    for partition in 0..PARTITIONS {
        for _ in 0..3 {
            let record = rdkafka::producer::FutureRecord::<str, [u8]>::to(TOPIC).partition(partition).payload(b"x");
            producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
        }
    }
    let refused =
        Replica::start(Arc::clone(&store), config(&second.bootstrap_servers(), "a", Duration::from_secs(10))).await;
    let Err(error) = refused else { panic!("a node followed a topic created again") };
    assert!(error.to_string().contains("deleted and created again"), "{error}");
    assert_eq!(all_events(&store).len(), 1, "nothing applied");
}
