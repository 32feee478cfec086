//! Confluent's own Python client (`confluent-kafka`, installed by
//! `scripts/test`) against the schema registry of the real `quipu serve`:
//! registration, reads by subject, version and id, compatibility checks
//! and modes, the 409 and 404 errors, and a message serialized and
//! deserialized with Confluent's JSON Schema serializer.

mod common;

use std::process::Command;

use common::Server;

#[test]
fn confluents_python_client_registers_checks_and_serializes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/schema_registry.py");
    let output = Command::new("python3")
        .args([script, &format!("http://{}", server.address)])
        .output()
        .expect("run python3 (scripts/test installs confluent-kafka)");
    assert!(
        output.status.success(),
        "the Confluent client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("talked to the registry: ok"));
}
