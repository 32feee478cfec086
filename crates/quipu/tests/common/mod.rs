//! Shared by the end-to-end tests of `quipu serve`: the real binary on free
//! ports of loopback, a minimal HTTP/1.1 client (a few lines over a TCP
//! socket, so the tests need no HTTP library), and a load of concurrent
//! writers that records which appends were acknowledged, for the tests
//! that stop the server under load and check what survived.

#![allow(dead_code, reason = "each test file uses a different part of this module")]

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// Environment variables `quipu serve` reads; cleared so that the caller's
/// environment cannot change what a test starts.
const SERVE_ENV_VARS: &[&str] = &[
    "QUIPU_CONFIG",
    "QUIPU_DATA_DIR",
    "QUIPU_GRPC_LISTEN",
    "QUIPU_HTTP_LISTEN",
    "QUIPU_HTTP_HEADER_TIMEOUT_S",
    "QUIPU_KEEPALIVE_S",
    "QUIPU_MAX_CONNECTIONS",
    "QUIPU_MAX_REQUEST_BYTES_IN_FLIGHT",
    "QUIPU_INSECURE",
    "QUIPU_VERIFY_ON_OPEN",
    "QUIPU_SEGMENT_SIZE_BYTES",
    "QUIPU_KAFKA_LISTEN",
    "QUIPU_KAFKA_CATEGORY_PARTITIONS",
    "QUIPU_KAFKA_IDLE_TIMEOUT_S",
    "QUIPU_KURRENT_TLS_CERT",
    "QUIPU_KURRENT_TLS_KEY",
    "QUIPU_KURRENT_LISTEN",
    "QUIPU_CLUSTER_BROKERS",
    "QUIPU_CLUSTER_TOPIC",
    "QUIPU_CLUSTER_PARTITION_KEY",
    "QUIPU_CLUSTER_NODE",
];

/// Bounds a request that hangs, so a broken server fails a test instead of
/// stalling it; far above any healthy response time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Events a read asks for per page (the server allows up to 10,000).
const READ_PAGE_EVENTS: usize = 1000;

/// `quipu serve` with no arguments yet and none of its environment
/// variables, stdout piped (for the listening line), stderr discarded.
pub fn serve_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quipu"));
    command.arg("serve").stdout(Stdio::piped()).stderr(Stdio::null());
    for name in SERVE_ENV_VARS {
        command.env_remove(name);
    }
    command
}

/// `quipu serve` on `data_dir`, both APIs on free ports of loopback, with
/// `args` besides.
pub fn serve_on(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// A running server, its addresses and its data directory as it printed
/// them.
pub struct Server {
    child: Child,
    /// Held so the server's stdout stays open after the listening line.
    _stdout: BufReader<ChildStdout>,
    /// `host:port` of the HTTP/JSON API.
    pub address: String,
    /// `host:port` of the gRPC API.
    pub grpc_address: String,
    /// The data directory the server says it serves.
    pub data_dir: String,
    /// `host:port` of the Kafka door, when it is on.
    pub kafka_address: Option<String>,
    /// `host:port` of the KurrentDB door, when it is on.
    pub kurrent_address: Option<String>,
}

impl Server {
    /// Runs the `quipu` CLI against this server's gRPC address with `args`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_quipu"))
            .args(["--server", &format!("http://{}", self.grpc_address)])
            .args(args)
            .output()
            .expect("run quipu")
    }

    /// Starts a server on `data_dir`, both APIs on free ports of loopback.
    pub fn start(data_dir: &Path) -> Server {
        let mut command = serve_command();
        command.args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
        Server::spawn(command)
    }

    /// Starts a server on `data_dir` with the Kafka door on too, its
    /// category topics having `partitions` partitions.
    pub fn start_with_kafka(data_dir: &Path, partitions: i32) -> Server {
        let mut command = serve_command();
        command
            .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
            .args(["--kafka-category-partitions", &partitions.to_string(), "--data-dir"])
            .arg(data_dir);
        Server::spawn(command)
    }

    /// Starts a server on `data_dir` with every door on: gRPC, HTTP, the
    /// Kafka door and the KurrentDB door, each on a free port.
    pub fn start_with_every_door(data_dir: &Path) -> Server {
        let mut command = serve_command();
        command
            .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--kafka-listen", "127.0.0.1:0", "--kurrent-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        Server::spawn(command)
    }

    /// Runs `command` (from [`serve_command`]) and waits for its line
    /// `quipu listening grpc=ADDRESS http=ADDRESS data_dir=DIR`.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("start quipu serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the listening line");
        let field = |prefix: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {line:?}"))
                .to_string()
        };
        let (address, grpc_address) = (field("http="), field("grpc="));
        let optional =
            |prefix: &str| line.split_whitespace().find_map(|word| word.strip_prefix(prefix)).map(str::to_string);
        let (kafka_address, kurrent_address) = (optional("kafka="), optional("kurrent="));
        let data_dir = line
            .trim_end()
            .split_once(" data_dir=")
            .unwrap_or_else(|| panic!("no data directory in {line:?}"))
            .1
            .to_string();
        Server { child, _stdout: stdout, address, grpc_address, data_dir, kafka_address, kurrent_address }
    }

    /// Sends a request; returns the status and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = self.request_text(method, path, body);
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
        (status, json)
    }

    /// Sends a request; returns the status and the body as text.
    pub fn request_text(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_request_text(method, path, body).unwrap_or_else(|error| panic!("{method} {path} failed: {error}"))
    }

    /// Sends a request; returns the status and the body as text, or the
    /// error of a connection that failed or closed before a whole head.
    pub fn try_request_text(&self, method: &str, path: &str, body: Option<&str>) -> io::Result<(u16, String)> {
        self.try_request_typed(method, path, "application/json", body)
    }

    /// Sends a request whose body has `content_type`; returns the status
    /// and the body as JSON.
    pub fn request_typed(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let (status, text) = self
            .try_request_typed(method, path, content_type, Some(body))
            .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"));
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}")))
    }

    fn try_request_typed(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&str>,
    ) -> io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let incomplete = || io::Error::new(io::ErrorKind::UnexpectedEof, format!("incomplete response {text:?}"));
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(incomplete)?;
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(incomplete)?;
        Ok((status, body.to_string()))
    }

    /// Appends `body` to `stream` with `POST /v1/streams/{stream}`.
    pub fn append(&self, stream: &str, body: &Value) -> (u16, Value) {
        self.request("POST", &format!("/v1/streams/{stream}"), Some(&body.to_string()))
    }

    /// Sends `signal` (`TERM`, `KILL`) to the server; does not wait.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Waits for the server to exit; its exit code (`None` after a signal).
    pub fn wait(mut self) -> Option<i32> {
        self.child.wait().expect("wait").code()
    }

    /// Waits up to `limit` for the server to exit; its status, or `None`
    /// while it still runs (it is killed when dropped).
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let begun = std::time::Instant::now();
        while begun.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(self) -> Option<i32> {
        self.signal("TERM");
        self.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A load of concurrent writers. Each writer sends appends of one to three
/// events with `expected_revision: "any"`, one at a time, over `streams`
/// shared streams named `load-0`, `load-1`...
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Writer threads.
    pub writers: usize,
    /// Streams the writers share.
    pub streams: usize,
    /// Acknowledged appends (of this load) before the interruption.
    pub acknowledged_before_interrupt: usize,
    /// Distinguishes the event ids of this load from those of other loads
    /// on the same data directory.
    pub id_seed: u16,
}

/// One append a writer sent: its stream, its event ids and its body.
#[derive(Debug, Clone)]
pub struct Append {
    pub stream: String,
    pub ids: Vec<String>,
    pub body: Value,
}

impl Append {
    /// The `sequence`-th append of `writer` in `load`.
    fn new(load: &Load, writer: usize, sequence: usize) -> Append {
        let stream = format!("load-{}", (writer + sequence) % load.streams);
        let ids: Vec<String> = (0..1 + sequence % 3)
            .map(|event| format!("6f1c9b7e-{:04x}-4{writer:03x}-8{event:03x}-{sequence:012x}", load.id_seed))
            .collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "type": "Loaded", "data": {"writer": writer, "sequence": sequence}}))
            .collect();
        let body = json!({"expected_revision": "any", "events": events});
        Append { stream, ids, body }
    }
}

/// What the writers of a load know about their appends.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Appends answered `200`: they must survive anything.
    pub acknowledged: Vec<Append>,
    /// Appends that got no answer: each must be wholly present or wholly
    /// absent, and a retry must make it present exactly once.
    pub unknown: Vec<Append>,
}

impl Ledger {
    /// Adds the appends of `other`.
    pub fn extend(&mut self, other: Ledger) {
        self.acknowledged.extend(other.acknowledged);
        self.unknown.extend(other.unknown);
    }

    /// Re-sends every append of unknown fate, as a client would after a
    /// lost answer; each must be answered `200` (written now, or already
    /// written before), and becomes acknowledged.
    pub fn retry_unknown(&mut self, server: &Server) {
        for append in self.unknown.drain(..) {
            let (status, body) = server.append(&append.stream, &append.body);
            assert_eq!(status, 200, "retry of {:?} in {}: {body}", append.ids, append.stream);
            self.acknowledged.push(append);
        }
    }
}

/// Runs `load` against `server` and calls `interrupt` (which should stop
/// the server) once `load.acknowledged_before_interrupt` appends were
/// acknowledged; returns when every writer has lost the server. A writer
/// stops at its first failed request; an answer other than `200` fails the
/// test.
pub fn append_until_interrupted(server: &Server, load: &Load, interrupt: impl FnOnce(&Server)) -> Ledger {
    let (acknowledged, abandon) = (&AtomicUsize::new(0), &AtomicBool::new(false));
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..load.writers)
            .map(|writer| scope.spawn(move || write_until_failure(server, load, writer, acknowledged, abandon)))
            .collect();
        while acknowledged.load(Ordering::Relaxed) < load.acknowledged_before_interrupt
            && !writers.iter().all(|writer| writer.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let interrupted = std::panic::catch_unwind(AssertUnwindSafe(|| interrupt(server)));
        if let Err(panic) = interrupted {
            // The server may still be up: stop the writers, or the scope
            // would wait for them forever.
            abandon.store(true, Ordering::Relaxed);
            std::panic::resume_unwind(panic);
        }
        let mut ledger = Ledger::default();
        for writer in writers {
            ledger.extend(writer.join().expect("a writer panicked"));
        }
        ledger
    })
}

/// One writer: appends until a request fails (or the load is abandoned).
fn write_until_failure(
    server: &Server,
    load: &Load,
    writer: usize,
    acknowledged: &AtomicUsize,
    abandon: &AtomicBool,
) -> Ledger {
    let mut ledger = Ledger::default();
    for sequence in 0.. {
        if abandon.load(Ordering::Relaxed) {
            break;
        }
        let append = Append::new(load, writer, sequence);
        let body = append.body.to_string();
        match server.try_request_text("POST", &format!("/v1/streams/{}", append.stream), Some(&body)) {
            Ok((200, _)) => {
                ledger.acknowledged.push(append);
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, answer)) => panic!("writer {writer}: append {:?} got {status}: {answer}", append.ids),
            Err(_) => {
                ledger.unknown.push(append);
                break;
            }
        }
    }
    ledger
}

/// Reads every stream `ledger` wrote to and checks it: revisions dense
/// from 0, no event twice, every acknowledged append wholly present, every
/// other append wholly present or wholly absent. Returns how many appends
/// of unknown fate are present.
pub fn check_streams(server: &Server, ledger: &Ledger) -> usize {
    let mut unknown_present = 0;
    let mut by_stream: BTreeMap<&str, (Vec<&Append>, Vec<&Append>)> = BTreeMap::new();
    for append in &ledger.acknowledged {
        by_stream.entry(&append.stream).or_default().0.push(append);
    }
    for append in &ledger.unknown {
        by_stream.entry(&append.stream).or_default().1.push(append);
    }
    for (stream, (acknowledged, unknown)) in by_stream {
        let ids = read_stream_ids(server, stream);
        let present: HashSet<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(present.len(), ids.len(), "an event appears twice in {stream}");
        for append in acknowledged {
            let missing: Vec<&String> = append.ids.iter().filter(|id| !present.contains(id.as_str())).collect();
            assert!(missing.is_empty(), "acknowledged events {missing:?} lost from {stream}");
        }
        for append in unknown {
            let found = append.ids.iter().filter(|id| present.contains(id.as_str())).count();
            assert!(
                found == 0 || found == append.ids.len(),
                "append {:?} is partly in {stream} ({found} events)",
                append.ids
            );
            unknown_present += usize::from(found > 0);
        }
    }
    unknown_present
}

/// The event ids of `stream` in revision order, checking that revisions
/// are dense from 0; empty when the stream does not exist.
pub fn read_stream_ids(server: &Server, stream: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let path = format!("/v1/streams/{stream}?from={}&limit={READ_PAGE_EVENTS}", ids.len());
        let (status, body) = server.request("GET", &path, None);
        if status == 404 && ids.is_empty() {
            return ids;
        }
        assert_eq!(status, 200, "{path}: {body}");
        let events = body["events"].as_array().unwrap_or_else(|| panic!("no events in {body}"));
        for event in events {
            let revision = event["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {event}"));
            assert_eq!(revision, ids.len() as u64, "revisions of {stream} are not dense: {event}");
            ids.push(event["id"].as_str().unwrap_or_else(|| panic!("no id in {event}")).to_string());
        }
        if events.len() < READ_PAGE_EVENTS {
            return ids;
        }
    }
}

/// Longest a client script may run before the test fails (a client that
/// hangs must fail the test, not stall the suite).
const CLIENT_SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Runs the Python script `tests/clients/<script>` with `args` (the
/// packages it imports are installed by `scripts/test`) and fails the
/// test with its output unless it exits 0 within
/// [`CLIENT_SCRIPT_LIMIT`]; returns its stdout.
pub fn run_client_script(script: &str, args: &[&str]) -> String {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("python3");
    command.arg(&path).args(args);
    run_to_completion(command, script)
}

/// Runs `command` to its end, killing it after [`CLIENT_SCRIPT_LIMIT`];
/// fails the test with its output unless it exits 0, and returns its
/// stdout.
pub fn run_to_completion(mut command: Command, name: &str) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {name} (scripts/test installs what it needs): {error}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + CLIENT_SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => assert!(status.success(), "{name} failed ({status}):\n{stdout}\n{stderr}"),
        None => panic!("{name} did not finish within {CLIENT_SCRIPT_LIMIT:?}:\n{stdout}\n{stderr}"),
    }
    stdout
}
