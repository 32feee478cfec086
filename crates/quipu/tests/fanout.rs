//! Hundreds of live subscribers on every door at once, through the real
//! binary: gRPC `Subscribe` (the Rust client), Server-Sent Events, the
//! KurrentDB door's catch-up subscriptions to `$all` and Kafka consumers
//! of `quipu.all` (librdkafka). They start at position 0 over a short
//! history while eight writers append, so each crosses from catch-up to
//! live under load; every one must get every event of `$all`, in order,
//! with the ids the store holds. Once they leave, the server lets go of
//! them: no live feed stays open and the shared tail drops its events.
//! (How fast and how much memory is measured by `quipu-bench
//! subscribers`, not asserted here.)

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Server;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use quipu_client::{Client, Direction, ExpectedRevision, NewEvent, Position, Revision, Start, SubscriptionItem};
use quipu_proto::event_store::client as kurrent_shared;
use quipu_proto::event_store::client::streams as kurrent;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Subscribers of each async kind (gRPC, SSE, KurrentDB).
const PER_KIND: usize = 200;
/// Kafka consumers: librdkafka runs a few threads per client, so fewer.
const KAFKA_CONSUMERS: usize = 40;
/// Events written before the subscribers open.
const HISTORY: u64 = 50;
/// Writers appending while the subscribers read, and their appends each.
const WRITERS: u64 = 8;
const APPENDS_PER_WRITER: u64 = 100;
/// Every event of `$all` by the end.
const TOTAL: u64 = HISTORY + WRITERS * APPENDS_PER_WRITER;
/// How long a subscriber may take to see every event.
const PATIENCE: Duration = Duration::from_secs(180);
/// How long the server may take to let go of subscribers that left (an
/// SSE subscription that sees no new event notices its client gone at its
/// next keep-alive comment, every 15 s).
const RELEASE_PATIENCE: Duration = Duration::from_secs(60);

/// What a subscriber saw: each event's position and id, in order.
type Seen = Vec<(u64, String)>;

#[test]
fn every_subscriber_of_every_door_gets_every_event_in_order_while_appends_run_and_is_let_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_every_door(dir.path());
    let address = |text: &str| -> SocketAddr { text.parse().expect("a socket address") };
    let grpc = address(&server.grpc_address);
    let http = address(&server.address);
    let kurrent = address(server.kurrent_address.as_deref().expect("the KurrentDB door is on"));
    let kafka = server.kafka_address.clone().expect("the Kafka door is on");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(write(grpc, 0, HISTORY));
    let consumers: Vec<_> = (0..KAFKA_CONSUMERS).map(|_| kafka_consumer(&kafka)).collect();
    let (subscribers, kinds) = runtime.block_on(open_all(grpc, http, kurrent));
    let kafka_readers: Vec<_> =
        consumers.into_iter().map(|consumer| std::thread::spawn(move || read_kafka(&consumer))).collect();

    runtime.block_on(async {
        let writers = (0..WRITERS).map(|w| tokio::spawn(write(grpc, 1 + w, APPENDS_PER_WRITER)));
        for writer in writers {
            writer.await.expect("a writer ran");
        }
    });
    let truth = runtime.block_on(all_events(grpc));
    assert_eq!(truth.len() as u64, TOTAL, "the store holds every append");

    let mut seen: Vec<(&str, Seen)> = Vec::new();
    for (kind, subscriber) in kinds.into_iter().zip(subscribers) {
        seen.push((kind, runtime.block_on(subscriber).expect("a subscriber ran")));
    }
    for reader in kafka_readers {
        seen.push(("Kafka", reader.join().expect("a Kafka consumer ran")));
    }
    for (n, (kind, events)) in seen.iter().enumerate() {
        if let Some(at) = events.iter().zip(&truth).position(|(got, want)| got != want) {
            panic!("{kind} subscriber {n}: event {at} is {:?}, the store has {:?}", events.get(at), truth.get(at));
        }
        assert_eq!(events.len(), truth.len(), "{kind} subscriber {n} saw every event");
    }
    // The subscribers' connections are closed by now.
    drop(runtime);
    wait_released(&server);
}

/// Opens every async subscriber from position 0; each runs on the
/// runtime until it has seen [`TOTAL`] events.
async fn open_all(
    grpc: SocketAddr,
    http: SocketAddr,
    kurrent: SocketAddr,
) -> (Vec<tokio::task::JoinHandle<Seen>>, Vec<&'static str>) {
    let (mut tasks, mut kinds) = (Vec::new(), Vec::new());
    for _ in 0..PER_KIND {
        let subscription = Client::connect(format!("http://{grpc}"))
            .await
            .expect("connect over gRPC")
            .subscribe(None, Start::Position(Position::START))
            .await
            .expect("subscribe over gRPC");
        tasks.push(tokio::spawn(read_grpc(subscription)));
        tasks.push(tokio::spawn(read_sse(open_sse(http).await)));
        tasks.push(tokio::spawn(read_kurrent(open_kurrent(kurrent).await)));
        kinds.extend(["gRPC", "SSE", "KurrentDB"]);
    }
    (tasks, kinds)
}

/// Appends `count` single events to stream `fan-<writer>`, each with its
/// exact expected revision.
async fn write(grpc: SocketAddr, writer: u64, count: u64) {
    let client = Client::connect(format!("http://{grpc}")).await.expect("connect a writer");
    for n in 0..count {
        let expected = if n == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(n - 1)) };
        let event = NewEvent::new("Noted", format!("{{\"writer\":{writer},\"n\":{n}}}").into_bytes());
        client.append(format!("fan-{writer}"), expected, vec![event]).await.expect("an append");
    }
}

/// Every event of `$all`, position and id, read back page by page.
async fn all_events(grpc: SocketAddr) -> Seen {
    let client = Client::connect(format!("http://{grpc}")).await.expect("connect");
    let mut events = Seen::new();
    loop {
        let from = events.last().map_or(0, |(position, _)| position + 1);
        let page = client.read_all(Some(Position(from)), Direction::Forwards, 500).await.expect("read $all");
        if page.is_empty() {
            return events;
        }
        events.extend(page.into_iter().map(|event| (event.position.0, event.id.to_string())));
    }
}

/// Panics when `begun` is more than [`PATIENCE`] ago, saying how far the
/// subscriber got.
fn check_patience(kind: &str, begun: Instant, seen: &Seen) {
    assert!(begun.elapsed() < PATIENCE, "a {kind} subscriber saw {} of {TOTAL} events in {PATIENCE:?}", seen.len());
}

async fn read_grpc(mut subscription: quipu_client::Subscription) -> Seen {
    let (begun, mut seen) = (Instant::now(), Seen::new());
    while (seen.len() as u64) < TOTAL {
        check_patience("gRPC", begun, &seen);
        let item = tokio::time::timeout(PATIENCE, subscription.next()).await.expect("a gRPC item in time");
        match item.expect("the gRPC subscription goes on").expect("a gRPC item") {
            SubscriptionItem::Event(event) => seen.push((event.position.0, event.id.to_string())),
            SubscriptionItem::CaughtUp { .. } => {}
        }
    }
    seen
}

/// The body of an SSE subscription to `$all` from position 0.
async fn open_sse(http: SocketAddr) -> hyper::body::Incoming {
    let stream = tokio::net::TcpStream::connect(http).await.expect("connect over HTTP");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get("/v1/subscribe?from=0")
        .header(hyper::header::HOST, http.to_string())
        .body(Empty::<Bytes>::new())
        .expect("an SSE request");
    let response = sender.send_request(request).await.expect("subscribe over SSE");
    assert!(response.status().is_success(), "SSE subscription answered {}", response.status());
    response.into_body()
}

async fn read_sse(mut body: hyper::body::Incoming) -> Seen {
    let (begun, mut seen) = (Instant::now(), Seen::new());
    let mut pending = Vec::new();
    while (seen.len() as u64) < TOTAL {
        check_patience("SSE", begun, &seen);
        let frame = tokio::time::timeout(PATIENCE, body.frame()).await.expect("SSE bytes in time");
        let Ok(data) = frame.expect("the SSE body goes on").expect("SSE bytes").into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.windows(2).position(|pair| pair == b"\n\n") {
            let message: Vec<u8> = pending.drain(..end + 2).collect();
            for line in message.split(|&byte| byte == b'\n') {
                if let Some(json) = line.strip_prefix(b"data:") {
                    let event: serde_json::Value = serde_json::from_slice(json).expect("an SSE event is JSON");
                    let position = event["position"].as_u64().expect("a position");
                    seen.push((position, event["id"].as_str().expect("an id").to_string()));
                }
            }
        }
    }
    seen
}

/// A KurrentDB catch-up subscription to `$all` from its start, confirmed.
async fn open_kurrent(address: SocketAddr) -> tonic::Streaming<kurrent::ReadResp> {
    use kurrent::read_req::options::{
        AllOptions, CountOption, FilterOption, ReadDirection, StreamOption, SubscriptionOptions, UuidOption,
        all_options::AllOption, uuid_option,
    };
    let mut client =
        kurrent::streams_client::StreamsClient::connect(format!("http://{address}")).await.expect("connect KurrentDB");
    let options = kurrent::read_req::Options {
        stream_option: Some(StreamOption::All(AllOptions {
            all_option: Some(AllOption::Start(kurrent_shared::Empty {})),
        })),
        read_direction: ReadDirection::Forwards as i32,
        resolve_links: false,
        count_option: Some(CountOption::Subscription(SubscriptionOptions {})),
        filter_option: Some(FilterOption::NoFilter(kurrent_shared::Empty {})),
        uuid_option: Some(UuidOption { content: Some(uuid_option::Content::String(kurrent_shared::Empty {})) }),
        control_option: None,
    };
    let mut reads = client.read(kurrent::ReadReq { options: Some(options) }).await.expect("subscribe").into_inner();
    let first = reads.message().await.expect("a first answer").and_then(|answer| answer.content);
    assert!(matches!(first, Some(kurrent::read_resp::Content::Confirmation(_))), "confirmed first: {first:?}");
    reads
}

async fn read_kurrent(mut reads: tonic::Streaming<kurrent::ReadResp>) -> Seen {
    use kurrent::read_resp::Content;
    let (begun, mut seen) = (Instant::now(), Seen::new());
    while (seen.len() as u64) < TOTAL {
        check_patience("KurrentDB", begun, &seen);
        let answer = tokio::time::timeout(PATIENCE, reads.message()).await.expect("a KurrentDB answer in time");
        let answer = answer.expect("a KurrentDB answer").expect("the KurrentDB subscription goes on");
        if let Some(Content::Event(read)) = answer.content {
            let event = read.event.expect("a read with its event");
            let id = match event.id.and_then(|id| id.value) {
                Some(kurrent_shared::uuid::Value::String(id)) => id,
                other => panic!("an id as text was asked for, not {other:?}"),
            };
            // KurrentDB commit positions start at 1 where Quipu's start at 0.
            seen.push((event.commit_position - 1, id));
        }
    }
    seen
}

/// A librdkafka consumer of `quipu.all` from offset 0, outside any group.
fn kafka_consumer(broker: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        // librdkafka wants a group to assign partitions; this one never
        // joins nor commits.
        .set("group.id", "fanout")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("quipu.all", 0, Offset::Beginning).expect("a partition");
    consumer.assign(&assignment).expect("assign quipu.all");
    consumer
}

fn read_kafka(consumer: &BaseConsumer) -> Seen {
    let (begun, mut seen) = (Instant::now(), Seen::new());
    while (seen.len() as u64) < TOTAL {
        check_patience("Kafka", begun, &seen);
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.expect("a Kafka record");
        let id = message
            .headers()
            .and_then(|headers| headers.iter().find(|header| header.key == "quipu-event-id"))
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .expect("a record with its event id");
        seen.push((u64::try_from(message.offset()).expect("an offset"), id));
    }
    seen
}

/// Waits until the server holds no live feed and no tail events.
fn wait_released(server: &Server) {
    let begun = Instant::now();
    loop {
        let (status, metrics) = server.request_text("GET", "/metrics", None);
        assert_eq!(status, 200, "{metrics}");
        let gauge = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
                .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        };
        let (feeds, tail) = (gauge("quipu_live_feeds "), gauge("quipu_tail_bytes "));
        if feeds == 0 && tail == 0 {
            return;
        }
        assert!(
            begun.elapsed() < RELEASE_PATIENCE,
            "{feeds} live feeds and {tail} tail bytes {RELEASE_PATIENCE:?} after every subscriber left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
