//! The KurrentDB door against the official Python client of KurrentDB
//! (`kurrentdbclient` 1.3.5 from PyPI, installed by `scripts/test`):
//! `tests/clients/kurrent_client.py` appends, conflicts, reads and deletes
//! through it.

mod common;

use std::process::Command;

use common::{Server, serve_command};

#[test]
fn the_python_kurrentdb_client_appends_reads_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = serve_command();
    command
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kurrent-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path());
    let server = Server::spawn(command);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/kurrent_client.py");
    let output = Command::new("python3")
        .args([script, server.kurrent_address.as_deref().expect("the KurrentDB door is on")])
        .output()
        .expect("run python3 (scripts/test installs kurrentdbclient)");
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
