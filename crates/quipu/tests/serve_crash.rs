//! Crash test through the real server: SIGKILL of `quipu serve` under
//! load loses no acknowledged append.
//!
//! Each round starts the binary on the same data directory, runs eight
//! writers appending one to three events at a time over HTTP to four
//! shared streams, and SIGKILLs the server once some appends (a different
//! number each round) were answered `200`; writers whose request was cut
//! off remember it as of unknown fate. After the restart, before anything
//! else is written:
//!
//! - every acknowledged append, of this round and all earlier ones, is
//!   readable in its stream;
//! - each stream's revisions are dense from 0 and no event appears twice;
//! - an append of unknown fate is wholly present or wholly absent, and
//!   re-sending it (as a client would) is answered `200` without writing
//!   it twice.
//!
//! The core crate's `crash.rs` kills the engine itself far more often;
//! this test pins that the server acknowledges only what the engine made
//! durable. `QUIPU_SERVE_CRASH_ROUNDS` sets the number of kills (default 3).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]
#![cfg(unix)]

mod common;

use common::{Ledger, Load, Server, append_until_interrupted, check_streams};

/// Kills when `QUIPU_SERVE_CRASH_ROUNDS` is not set.
const ROUNDS_DEFAULT: u16 = 3;

fn rounds() -> u16 {
    match std::env::var("QUIPU_SERVE_CRASH_ROUNDS") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("QUIPU_SERVE_CRASH_ROUNDS={text:?} is not a number")),
        Err(_) => ROUNDS_DEFAULT,
    }
}

#[test]
fn acknowledged_appends_survive_sigkill_of_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ledger = Ledger::default();
    for round in 0..rounds() {
        let server = Server::start(dir.path());
        let unknown_present = check_streams(&server, &ledger);
        if round > 0 {
            eprintln!(
                "after kill {round}: {} appends acknowledged in all, {} cut off of which {unknown_present} were written",
                ledger.acknowledged.len(),
                ledger.unknown.len()
            );
        }
        ledger.retry_unknown(&server);
        // Vary the moment of the kill from round to round.
        let acknowledged_before_interrupt = 50 + usize::from(round) * 397 % 1000;
        let load = Load { writers: 8, streams: 4, acknowledged_before_interrupt, id_seed: round };
        let round_ledger = append_until_interrupted(&server, &load, |server| server.signal("KILL"));
        assert_eq!(server.wait(), None, "round {round}: the server died of SIGKILL");
        assert!(round_ledger.acknowledged.len() >= acknowledged_before_interrupt, "round {round}: the load ran");
        ledger.extend(round_ledger);
    }
    let server = Server::start(dir.path());
    let unknown_present = check_streams(&server, &ledger);
    eprintln!(
        "after the last kill: {} appends acknowledged in all, {} cut off of which {unknown_present} were written",
        ledger.acknowledged.len(),
        ledger.unknown.len()
    );
    ledger.retry_unknown(&server);
    check_streams(&server, &ledger);
}
