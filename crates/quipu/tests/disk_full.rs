//! A full disk under `quipu serve` (a small tmpfs as its data directory):
//! whatever fills first (the log, a new segment, the index), every append
//! answered `200` is in the store after a restart, and every one answered
//! 503 `store_unavailable` ("not written") is not. An `outcome_unknown`
//! answer may go either way, as it says. Meanwhile `/health` says the
//! store takes no appends, and why.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN); where the mount is
//! refused the test says so on stderr and checks nothing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, serve_command};
use serde_json::json;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` of memory at `at`; `None` where mounting is refused.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "quipu-disk-full"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status();
        status.is_ok_and(|s| s.success()).then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn serve(data_dir: &Path) -> Server {
    let mut command = serve_command();
    command.args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]).arg("--data-dir").arg(data_dir);
    Server::spawn(command)
}

/// Copies the directory tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes a file at `path` until the disk it is on is full.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// The streams `$all` holds on `server`, read page by page.
fn streams_served(server: &Server) -> BTreeSet<String> {
    let mut streams = BTreeSet::new();
    let mut from = 0;
    loop {
        let (status, body) = server.request("GET", &format!("/v1/all?from={from}&limit=10000"), None);
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap();
        let Some(last) = events.last() else { return streams };
        streams.extend(events.iter().map(|e| e["stream"].as_str().unwrap().to_owned()));
        from = last["position"].as_u64().unwrap() + 1;
    }
}

#[test]
fn on_a_full_disk_every_answer_holds_after_a_restart() {
    // Large events, small ones (the index takes a larger share of the
    // disk), and a disk filled by another file while the log still has
    // room written ahead.
    for (size, padding, ballast) in [("6m", 4000, false), ("3m", 40, false), ("8m", 40, true)] {
        let mount_point = tempfile::tempdir().unwrap();
        let Some(disk) = Tmpfs::mount(mount_point.path(), size) else {
            eprintln!("skipped: a tmpfs cannot be mounted here (mounting needs root)");
            return;
        };
        fill_and_restart(&disk, padding, ballast);
    }
}

/// Fills `disk` with appends of events of `padding` bytes (and, after the
/// first hundred, with a `ballast` file up to its last byte) until five
/// are refused, then restarts the store elsewhere and checks every answer.
fn fill_and_restart(disk: &Tmpfs, padding: usize, ballast: bool) {
    let data_dir = disk.0.join("data");
    let server = serve(&data_dir);
    let (mut written, mut not_written, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    let mut first_refusal = None;
    for n in 0..200_000u32 {
        let append = json!({"expected_revision": "no_stream", "events": [{
            "id": format!("00000000-0000-4000-8000-{n:012}"),
            "type": "Filled",
            "data": {"padding": "x".repeat(padding)},
        }]});
        let (status, body) = server.append(&format!("fill-{n}"), &append);
        match (status, body["code"].as_str()) {
            (200, _) => written.push(n),
            (503, Some("store_unavailable")) => {
                first_refusal.get_or_insert(body);
                not_written.push(n);
            }
            (503, Some("outcome_unknown")) => unknown.push(n),
            _ => panic!("append {n}: {status} {body}"),
        }
        if not_written.len() >= 5 {
            break;
        }
        if ballast && n == 100 {
            fill_up(&disk.0.join("ballast"));
        }
    }
    eprintln!("written {}, not written {}, unknown {}", written.len(), not_written.len(), unknown.len());
    eprintln!("the first refusal: {first_refusal:?}");
    assert!(!written.is_empty() && !not_written.is_empty(), "the disk filled up: {written:?} {not_written:?}");
    let (status, health) = server.request("GET", "/health", None);
    assert_eq!((status, &health["writable"], &health["readable"]), (503, &json!(false), &json!(true)), "{health}");
    assert!(health["reason"].as_str().unwrap().contains("No space left on device"), "{health}");
    server.signal("TERM");
    let mut server = server;
    let stopped = server.wait_for(Duration::from_secs(30));
    if stopped.is_none() {
        server.signal("KILL");
    }
    assert_eq!(stopped.and_then(|s| s.code()), Some(0), "SIGTERM stops a server on a full disk cleanly");
    drop(server);

    // Restarted where there is room.
    let roomy = tempfile::tempdir().unwrap();
    copy_tree(&data_dir, &roomy.path().join("data"));
    let server = serve(&roomy.path().join("data"));
    let served = streams_served(&server);
    for n in &written {
        assert!(served.contains(&format!("fill-{n}")), "append {n} was answered 200 and is gone");
    }
    for n in &not_written {
        assert!(!served.contains(&format!("fill-{n}")), "append {n} was answered \"not written\" and is there");
    }
    let known = written.len() + unknown.len();
    assert!(served.len() <= known, "{} streams served, {known} appends answered 200 or unknown", served.len());
    assert_eq!(server.terminate(), Some(0));
}
