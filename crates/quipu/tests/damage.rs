//! Damaged data directories, through the real binary: a store that lost or
//! changed acknowledged bytes refuses to open naming file and offset, and
//! says nothing is wrong only when nothing is; `quipu verify` finds what
//! opening does not look at; a torn write is still cut.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, serve_on};
use serde_json::json;

/// Smallest segment size: a few dozen small events fill one.
const SEGMENT_BYTES: &str = "4096";

fn serve(data_dir: &Path) -> Server {
    Server::spawn(serve_on(data_dir, &["--segment-size-bytes", SEGMENT_BYTES]))
}

/// `quipu serve` on `data_dir` must exit non-zero without serving; its
/// stderr.
fn refused(data_dir: &Path) -> String {
    refused_with(data_dir, &[])
}

/// As [`refused`], with more arguments to `quipu serve`.
fn refused_with(data_dir: &Path, args: &[&str]) -> String {
    let mut command = serve_on(data_dir, &[&["--segment-size-bytes", SEGMENT_BYTES], args].concat());
    command.stderr(Stdio::piped());
    let mut child = command.spawn().expect("start quipu serve");
    let begun = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if begun.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the server opened a damaged store and served it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(!status.success(), "the server exited 0 on a damaged store: {stderr}");
    stderr
}

/// Runs `quipu verify --data-dir D`: exit success and stdout.
fn verify(data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quipu"))
        .args(["verify", "--data-dir"])
        .arg(data_dir)
        .stderr(Stdio::null())
        .output()
        .expect("run quipu verify");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Appends `count` one-event appends to streams `s-0`, `s-1`, ... and
/// stops the server with SIGTERM.
fn fill(data_dir: &Path, count: u32) {
    let server = serve(data_dir);
    for n in 0..count {
        let body = json!({"expected_revision": "no_stream", "events": [{"type": "Filled", "data": {"n": n}}]});
        let (status, answer) = server.append(&format!("s-{n}"), &body);
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(server.terminate(), Some(0));
}

fn segment(data_dir: &Path, number: u32) -> PathBuf {
    data_dir.join("log").join(format!("{number:010}.qlog"))
}

fn last_segment(data_dir: &Path) -> (u32, PathBuf) {
    let mut numbers: Vec<u32> = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".qlog")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let last = *numbers.last().expect("a segment");
    (last, segment(data_dir, last))
}

/// Offset of the last byte other than zero in the file (its records end
/// a few bytes after; zeros written ahead may follow).
fn last_data_byte(path: &Path) -> usize {
    std::fs::read(path).unwrap().iter().rposition(|&b| b != 0).expect("records")
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn events_in_all(server: &Server) -> usize {
    let (status, body) = server.request("GET", "/v1/all?limit=10000", None);
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().len()
}

#[test]
fn a_damaged_last_record_is_refused_not_cut_as_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 3);
    // Without the index, the last record is read again on open.
    std::fs::remove_dir_all(data_dir.join("index")).unwrap();
    let (_, path) = last_segment(&data_dir);
    let at = last_data_byte(&path) - 20;
    flip_byte(&path, at);
    let before = std::fs::read(&path).unwrap();
    let stderr = refused(&data_dir);
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("not a torn write"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the damaged segment was changed");

    // Put back, it opens with all three events.
    flip_byte(&path, at);
    let server = serve(&data_dir);
    assert_eq!(events_in_all(&server), 3);
}

#[test]
fn a_torn_write_after_the_acknowledged_records_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 3);
    std::fs::remove_dir_all(data_dir.join("index")).unwrap();
    let (_, path) = last_segment(&data_dir);
    // Half a record: a length, a checksum that cannot hold, a few bytes,
    // right after the last record, which ends with its event count, 1 as
    // a u32 (little-endian): three zeros after its last byte other than 0.
    let end = last_data_byte(&path) + 4;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.resize(bytes.len().max(end + 64), 0);
    bytes[end..end + 12].copy_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9]);
    std::fs::write(&path, bytes).unwrap();
    let server = serve(&data_dir);
    assert_eq!(events_in_all(&server), 3);
    let (status, body) =
        server.append("after", &json!({"expected_revision": "no_stream", "events": [{"type": "A", "data": {}}]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(events_in_all(&server), 4);
}

#[test]
fn a_last_segment_cut_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 3);
    std::fs::remove_dir_all(data_dir.join("index")).unwrap();
    let (_, path) = last_segment(&data_dir);
    // Cut in the middle of the records: a whole record and a half of one
    // are gone, well within the reach of a torn write.
    let end = last_data_byte(&path) + 1;
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((end / 2) as u64).unwrap();
    let stderr = refused(&data_dir);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn a_closed_segment_cut_short_is_refused_while_the_index_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 150);
    let (last, _) = last_segment(&data_dir);
    assert!(last >= 2, "the appends filled several segments");
    let path = segment(&data_dir, 0);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 50).unwrap();
    let stderr = refused(&data_dir);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn verify_reads_every_record_and_names_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 150);
    let (ok, report) = verify(&data_dir);
    assert!(ok, "{report}");
    assert!(report.contains("150 records, 150 events") && report.contains("no problems found"), "{report}");

    // A flipped bit in the middle of a closed segment: opening does not
    // read it, verify does.
    let path = segment(&data_dir, 0);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip_byte(&path, len / 2);
    let server = serve(&data_dir);
    assert_eq!(server.terminate(), Some(0));
    let (ok, report) = verify(&data_dir);
    assert!(!ok, "{report}");
    assert!(report.contains(&format!("problem: {}", path.display())), "{report}");
    // Asked to, the server checks every record before serving.
    let stderr = refused_with(&data_dir, &["--verify-on-open"]);
    assert!(stderr.contains("--verify-on-open found") && stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn verify_on_open_serves_a_sound_store() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 60);
    let server = Server::spawn(serve_on(&data_dir, &["--verify-on-open"]));
    assert_eq!(events_in_all(&server), 60);
}

#[test]
fn verify_names_a_damaged_record_of_the_segment_appends_go_to() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fill(&data_dir, 10);
    // Behind the index's checkpoint (saved at close): opening does not
    // read it, verify does.
    let (_, path) = last_segment(&data_dir);
    flip_byte(&path, last_data_byte(&path) / 2);
    let (ok, report) = verify(&data_dir);
    assert!(!ok, "{report}");
    assert!(report.contains(&format!("problem: {}", path.display())), "{report}");
}
