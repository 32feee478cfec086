//! The KurrentDB door against the official Python client of KurrentDB
//! (`kurrentdbclient` 1.3.5 from PyPI), an application built on the
//! Python `eventsourcing` library with its KurrentDB module
//! (`eventsourcing-kurrentdb` 1.2.2), and the official Node.js client
//! (`@kurrent/kurrentdb-client` 1.3.1 from npm, pinned in
//! `tests/clients/kurrent_node/package-lock.json`), all installed by
//! `scripts/test`. Each script in `tests/clients/` checks what it sees and
//! exits non-zero naming what differed.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, serve_command};

/// `quipu serve` with the door on, over `data_dir`.
fn door_command(data_dir: &Path) -> Command {
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kurrent-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// [`door_command`] over `dir/data` serving TLS with `certificate` and
/// `key`, written to `dir`; the command and the certificate's path.
fn tls_door_command(dir: &Path, certificate: &str, key: &str) -> (Command, PathBuf) {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certificate).expect("write the certificate");
    std::fs::write(&key_path, key).expect("write the key");
    let mut command = door_command(&dir.join("data"));
    command.arg("--kurrent-tls-cert").arg(&cert_path).arg("--kurrent-tls-key").arg(&key_path);
    (command, cert_path)
}

/// A fresh server in `dir` with the door on.
fn start_door(dir: &Path) -> Server {
    Server::spawn(door_command(dir))
}

/// Runs `tests/clients/<script>` against a fresh server with the door on.
fn run_against_the_door(script: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_door(dir.path());
    common::run_client_script(script, &[server.kurrent_address.as_deref().expect("the KurrentDB door is on")]);
}

#[test]
fn the_python_kurrentdb_client_appends_reads_subscribes_and_deletes() {
    run_against_the_door("kurrent_client.py");
}

#[test]
fn the_python_kurrentdb_client_runs_persistent_subscriptions() {
    run_against_the_door("kurrent_persistent.py");
}

#[test]
fn the_node_kurrentdb_client_appends_reads_subscribes_deletes_and_runs_persistent_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_door(dir.path());
    let mut node = Command::new("node");
    node.arg(format!("{}/tests/clients/kurrent_node/scenarios.mjs", env!("CARGO_MANIFEST_DIR")))
        .arg(server.kurrent_address.as_deref().expect("the KurrentDB door is on"));
    common::run_to_completion(node, "kurrent_node/scenarios.mjs");
}

#[test]
fn an_eventsourcing_application_saves_reloads_and_follows_its_notification_log() {
    run_against_the_door("eventsourcing_app.py");
}

#[test]
fn the_python_client_connects_over_tls_with_the_certificate_given() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a self-signed certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let (command, cert) = tls_door_command(dir.path(), &certified.cert.pem(), &certified.signing_key.serialize_pem());
    let server = Server::spawn(command);
    let address = server.kurrent_address.as_deref().expect("the KurrentDB door is on");
    let port = address.rsplit(':').next().expect("a port");
    common::run_client_script("kurrent_tls.py", &[&format!("localhost:{port}"), &cert.display().to_string()]);
}

#[test]
fn a_certificate_that_is_not_one_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut command, _) = tls_door_command(dir.path(), "not a certificate", "not a key");
    let output = command.stderr(std::process::Stdio::piped()).output().expect("run quipu serve");
    assert!(!output.status.success(), "the server started with a bad certificate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS for the KurrentDB door") && stderr.contains("no PEM certificate"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
