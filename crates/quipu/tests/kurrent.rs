//! The KurrentDB door against the official Python client of KurrentDB
//! (`kurrentdbclient` 1.3.5 from PyPI) and an application built on the
//! Python `eventsourcing` library with its KurrentDB module
//! (`eventsourcing-kurrentdb` 1.2.2), both installed by `scripts/test`.
//! Each script in `tests/clients/` checks what it sees and exits non-zero
//! naming what differed.

mod common;

use common::{Server, serve_command};

/// Runs `tests/clients/<script>` against a fresh server with the door on.
fn run_against_the_door(script: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kurrent-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path());
    let server = Server::spawn(command);
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
fn an_eventsourcing_application_saves_reloads_and_follows_its_notification_log() {
    run_against_the_door("eventsourcing_app.py");
}
