//! Confluent's own Python client (`confluent-kafka`, installed by
//! `scripts/test`) against the schema registry of the real `quipu serve`:
//! registration, reads by subject, version and id, compatibility checks
//! and modes, the 409 and 404 errors, and a message serialized and
//! deserialized with Confluent's JSON Schema serializer.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use common::Server;

#[test]
fn confluents_python_client_registers_checks_and_serializes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let stdout = common::run_client_script("schema_registry.py", &[&format!("http://{}", server.address)]);
    assert!(stdout.contains("talked to the registry: ok"), "{stdout}");
}
