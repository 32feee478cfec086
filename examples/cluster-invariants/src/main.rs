//! The classic invariants of event sourcing on Kafka, kept by a Quipu
//! cluster: writers spread over three nodes race, every node decides each
//! append the same way from the shared log, and none of the rules breaks.
//!
//! - **Daily withdrawal limit**: twenty withdrawals of 50 race on one
//!   card's day, whose limit is 500: exactly ten go through.
//! - **Inventory never negative**: thirty reservations of one unit race
//!   for twenty in stock: exactly twenty go through, stock ends at 0.
//! - **A seat is reserved once**: three people on three nodes reserve
//!   each of ten seats at the same moment: one of each three wins.
//!
//! Each rule is an aggregate decided by `Client::execute` (load, decide,
//! append with the loaded revision; on a conflict load again and decide
//! again), or a plain append expecting no stream, exactly as an
//! application does against one node. Then every node must serve the
//! same `$all`.
//!
//! `QUIPU_NODES=http://a:2113,http://b:2113,...` runs it against a
//! cluster you started. Without it, it starts one: a local Kafka-protocol
//! broker (noida-db, `python3 -m pip install noida-db==0.2.3`), the topic
//! (`quipu cluster create-topic`'s settings) and three `quipu serve`
//! nodes (the binary beside this one, or `QUIPU_BIN`), stopped at the end:
//! `cargo build -p quipu && cargo run -p cluster-invariants`.

mod cluster;

use anyhow::Context;
use quipu_client::{Aggregate, Client, Direction, Error, Event, ExecuteError, ExpectedRevision, NewEvent, Position};

/// A sum kept by a stream's events' `amount`s, under a ceiling: the
/// day's withdrawals on a card, or the units reserved from a stock.
#[derive(Debug, Default)]
struct Budget {
    /// What the stream allows in all (its first event sets it).
    ceiling: i64,
    /// What was taken so far.
    taken: i64,
}

impl Aggregate for Budget {
    fn apply(&mut self, event: &Event) -> Result<(), Error> {
        let amount = event.json::<serde_json::Value>()?.get("amount").and_then(serde_json::Value::as_i64).unwrap_or(0);
        match event.event_type.as_str() {
            "LimitSet" | "StockReceived" => self.ceiling += amount,
            _ => self.taken += amount,
        }
        Ok(())
    }
}

/// A command refused by its rule.
#[derive(Debug)]
struct OverBudget {
    left: i64,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "only {} left", self.left)
    }
}

/// Takes `amount` from the budget of `stream` through `client` as an
/// event of `event_type`; whether the rule let it through.
async fn take(client: &Client, stream: &str, event_type: &str, amount: i64) -> anyhow::Result<bool> {
    let decide = |budget: &Budget| {
        let left = budget.ceiling - budget.taken;
        if amount > left {
            return Err(OverBudget { left });
        }
        Ok(vec![NewEvent::json(event_type, &serde_json::json!({ "amount": amount })).map_err(|_| OverBudget { left })?])
    };
    loop {
        match client.execute(stream, decide).await {
            Ok(_) => return Ok(true),
            Err(ExecuteError::Rejected(_)) => return Ok(false),
            // Many writers on one stream: decide again, as an application would.
            Err(ExecuteError::Contention { .. }) => continue,
            Err(other) => return Err(anyhow::anyhow!("{stream}: {other}")),
        }
    }
}

/// Opens `stream` with a ceiling of `amount` (on the first node), then
/// races `takers` takes of `each` over every node; how many went through.
async fn race(
    nodes: &[Client],
    stream: &str,
    opening: &str,
    amount: i64,
    takers: usize,
    each: i64,
) -> anyhow::Result<usize> {
    let first = nodes.first().context("no nodes")?;
    let open = NewEvent::json(opening, &serde_json::json!({ "amount": amount }))?;
    let opened = first.append(stream, ExpectedRevision::NoStream, vec![open]).await?;
    let mut racers = tokio::task::JoinSet::new();
    let event_type = if opening == "LimitSet" { "MoneyWithdrawn" } else { "UnitReserved" };
    for node in nodes.iter().cycle().take(takers) {
        // Read your writes: a node reads the budget once it holds the
        // opening (another node may not have applied it yet, and would
        // see no budget at all).
        let (node, stream) = (node.clone().reading_after(opened.last_position), stream.to_owned());
        racers.spawn(async move { take(&node, &stream, event_type, each).await });
    }
    let mut through = 0;
    while let Some(taken) = racers.join_next().await {
        through += usize::from(taken??);
    }
    Ok(through)
}

/// Three contenders, one per node, reserve each of `seats` seats at once
/// by appending to the seat's stream expecting it not to exist; the
/// winners per seat.
async fn reserve_seats(nodes: &[Client], run: &str, seats: usize) -> anyhow::Result<Vec<usize>> {
    let mut contenders = tokio::task::JoinSet::new();
    for seat in 0..seats {
        for (person, node) in nodes.iter().enumerate() {
            let (node, stream) = (node.clone(), format!("seat-{run}x{seat}"));
            contenders.spawn(async move {
                let reserved = NewEvent::json("SeatReserved", &serde_json::json!({ "by": person }))?;
                match node.append(&stream, ExpectedRevision::NoStream, vec![reserved]).await {
                    Ok(_) => anyhow::Ok((seat, true)),
                    Err(Error::Conflict { .. }) => Ok((seat, false)),
                    Err(other) => Err(anyhow::anyhow!("{stream}: {other}")),
                }
            });
        }
    }
    let mut winners = vec![0; seats];
    while let Some(contended) = contenders.join_next().await {
        let (seat, won) = contended??;
        if let Some(count) = winners.get_mut(seat) {
            *count += usize::from(won);
        }
    }
    Ok(winners)
}

/// What each node holds of `stream`, caught up with the cluster: its
/// events' count and ids, for a failure to show.
async fn held(nodes: &[Client], stream: &str) -> anyhow::Result<String> {
    let mut told = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let events = node.clone().reading_caught_up().read_stream(stream, None, Direction::Forwards, 1000).await?;
        let ids: Vec<String> = events.iter().map(|e| format!("{}@{}", e.event_type, e.revision.0)).collect();
        told.push(format!("node {n} holds {} events of {stream}: {}", events.len(), ids.join(" ")));
    }
    Ok(told.join("; "))
}

/// Every event of `$all` on `node` once it holds `position`, as (position,
/// stream, revision, id).
async fn all(node: &Client, position: Position) -> anyhow::Result<Vec<(u64, String, u64, String)>> {
    let reader = node.clone().reading_after(position);
    let mut events = Vec::new();
    loop {
        let from = events.last().map(|(p, ..): &(u64, String, u64, String)| Position(p + 1));
        let page = reader.read_all(from.or(Some(Position::START)), Direction::Forwards, 1000).await?;
        let full = page.len() == 1000;
        events.extend(page.into_iter().map(|e| (e.position.0, e.stream, e.revision.0, e.id.to_string())));
        if !full {
            return Ok(events);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = match std::env::var("QUIPU_NODES") {
        Ok(_) => None,
        Err(_) => Some(cluster::Local::start().await?),
    };
    let addresses: Vec<String> = match &started {
        Some(local) => local.addresses.clone(),
        None => std::env::var("QUIPU_NODES")?.split(',').map(str::to_owned).collect(),
    };
    let mut nodes = Vec::new();
    for address in &addresses {
        nodes.push(Client::connect(address.clone()).await.with_context(|| format!("connecting to {address}"))?);
    }
    println!("{} nodes: {}", nodes.len(), addresses.join(", "));
    let run = uuid::Uuid::new_v4().simple().to_string();

    let card = format!("card-{run}x2026x12x07");
    let withdrawn = race(&nodes, &card, "LimitSet", 500, 20, 50).await?;
    println!("daily limit 500: {withdrawn} of 20 withdrawals of 50 went through");
    if withdrawn != 10 {
        anyhow::bail!("the daily limit must let exactly 10 withdrawals of 50 through; {}", held(&nodes, &card).await?);
    }

    let stock = format!("stock-{run}");
    let reserved = race(&nodes, &stock, "StockReceived", 20, 30, 1).await?;
    println!("inventory of 20: {reserved} of 30 reservations went through");
    if reserved != 20 {
        anyhow::bail!("the stock must let exactly 20 reservations through; {}", held(&nodes, &stock).await?);
    }

    let winners = reserve_seats(&nodes, &run, 10).await?;
    println!("10 seats, 3 contenders each on 3 nodes: winners per seat {winners:?}");
    anyhow::ensure!(winners.iter().all(|w| *w == 1), "each seat must be reserved exactly once");

    let head = nodes.first().context("no nodes")?.read_all(None, Direction::Backwards, 1).await?;
    let head = head.first().map(|e| e.position).context("$all is empty")?;
    let reference = all(nodes.first().context("no nodes")?, head).await?;
    for (node, address) in nodes.iter().zip(&addresses).skip(1) {
        anyhow::ensure!(all(node, head).await? == reference, "{address} serves another $all");
    }
    println!("every node serves the same $all: {} events up to position {}", reference.len(), head.0);
    // A cluster started here stops (and its data goes) as `started` drops.
    drop(started);
    Ok(())
}
