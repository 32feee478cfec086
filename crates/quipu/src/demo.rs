//! `quipu demo`: a guided tour of the engine on a real data directory.
//! Opens (or reopens) the store, places an order with optimistic
//! concurrency, shows a conflict and an idempotent retry, reads the stream,
//! the category and `$all`, and closes. Run it twice: the second run
//! continues the same streams, because everything acknowledged is durable.

use std::path::Path;

use anyhow::Context;
use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, Options, ProposedEvent, Store, StreamName,
    Tag,
};

fn event(event_type: &str, data: serde_json::Value, tags: &[&str]) -> anyhow::Result<ProposedEvent> {
    let mut event = ProposedEvent::new(EventType::new(event_type)?, data.to_string());
    event.tags = tags.iter().map(|t| Tag::new(*t)).collect::<Result<_, _>>()?;
    Ok(event)
}

/// Runs the demo in `data_dir`.
pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let store = Store::open(data_dir, Options::default())
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let order = StreamName::new("order-42")?;
    let info = store.stream_info(&order)?;
    println!("opened {} (last position: {:?})", data_dir.display(), store.last_position().map(|p| p.0));
    let expected = info.last_revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
    println!(
        "{order}: last revision {:?}, appending with expected revision {expected}",
        info.last_revision.map(|r| r.0)
    );

    let line = event("ItemAdded", serde_json::json!({"sku": "tea", "qty": 2}), &["customer:7"])?;
    let request = AppendRequest::to_stream(order.clone(), expected, vec![line]);
    let written = store.append(request.clone())?;
    print_outcome("append", &written);

    let retried = store.append(request.clone())?;
    print_outcome("same append again (a client retry)", &retried);

    let stale = AppendRequest::to_stream(
        order.clone(),
        expected,
        vec![event("ItemAdded", serde_json::json!({"sku": "cake"}), &[])?],
    );
    print_outcome("append with the now stale expected revision", &store.append(stale)?);

    println!("\nstream {order}, forwards:");
    for e in store.read_stream(&order, None, Direction::Forwards, 100)? {
        println!(
            "  rev {:>3}  pos {:>6}  {:<10} {}",
            e.revision.0,
            e.position.0,
            e.event_type,
            String::from_utf8_lossy(&e.data)
        );
    }
    let category = store.read_category("order", None, Direction::Backwards, 3)?;
    println!(
        "category order, newest 3: {:?}",
        category.iter().map(|e| (e.stream.as_str(), e.revision.0)).collect::<Vec<_>>()
    );
    let tagged = store.read_tag(&Tag::new("customer:7")?, None, Direction::Forwards, 100)?;
    println!("events tagged customer:7: {}", tagged.len());
    store.close()?;
    println!("closed; run again to see the stream continue where it left off");
    Ok(())
}

fn print_outcome(what: &str, outcome: &AppendOutcome) {
    match outcome {
        AppendOutcome::Written(r) => println!(
            "{what}: written at position {} (revision {})",
            r.first_position.0,
            r.streams.first().map_or(0, |s| s.last_revision.0)
        ),
        AppendOutcome::AlreadyWritten(r) => {
            println!("{what}: already written at position {}, nothing new written", r.first_position.0)
        }
        AppendOutcome::Conflict(c) => {
            for s in &c.streams {
                println!(
                    "{what}: conflict on {}: expected {}, actual {:?}",
                    s.stream,
                    s.expected,
                    s.actual.map(|r| r.0)
                );
            }
        }
    }
}
