//! A bank account on Quipu, from the point of view of an application.
//!
//! - The **aggregate** (`Account`) is folded from its stream's events;
//!   commands decide on that state and append with the revision they
//!   loaded. Ten withdrawals race on one account: each that loses the race
//!   is decided again on fresh state by `Client::execute`, so the account
//!   never goes below zero.
//! - The **projection** follows the `account` category (catch-up, then
//!   live) and keeps a balance per account: a read model.
//!
//! Run `quipu serve` first, then `cargo run -p bank-account` (the server
//! address comes from `QUIPU_SERVER`, default `http://127.0.0.1:2113`).

use std::collections::BTreeMap;

use anyhow::Context;
use futures_util::StreamExt;
use quipu_client::{
    Aggregate, Client, Event, ExecuteError, ExpectedRevision, Filter, NewEvent, Position, Start, SubscriptionItem,
};
use serde::Serialize;

/// The account's events, stored as JSON with the variant as event type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "AccountOpened",
            AccountEvent::Deposited { .. } => "MoneyDeposited",
            AccountEvent::Withdrawn { .. } => "MoneyWithdrawn",
        }
    }

    fn to_new_event(&self) -> Result<NewEvent, quipu_client::Error> {
        NewEvent::json(self.event_type(), self)
    }

    /// The balance change the event makes.
    fn delta(event: &Event) -> Result<i64, quipu_client::Error> {
        let amount = |event: &Event| -> Result<i64, quipu_client::Error> {
            Ok(event.json::<serde_json::Value>()?.get("amount").and_then(serde_json::Value::as_i64).unwrap_or(0))
        };
        match event.event_type.as_str() {
            "MoneyDeposited" => amount(event),
            "MoneyWithdrawn" => amount(event).map(|a| -a),
            _ => Ok(0),
        }
    }
}

/// The aggregate: what commands need to decide.
#[derive(Debug, Default)]
struct Account {
    open: bool,
    balance: i64,
}

impl Aggregate for Account {
    fn apply(&mut self, event: &Event) -> Result<(), quipu_client::Error> {
        self.open |= event.event_type == "AccountOpened";
        self.balance += AccountEvent::delta(event)?;
        Ok(())
    }
}

/// Why a command was refused.
#[derive(Debug)]
enum Refusal {
    NotOpen,
    InsufficientFunds { balance: i64 },
    Json(quipu_client::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotOpen => f.write_str("the account is not open"),
            Refusal::InsufficientFunds { balance } => write!(f, "insufficient funds (balance {balance})"),
            Refusal::Json(error) => write!(f, "event JSON: {error}"),
        }
    }
}

fn withdraw(account: &Account, amount: u64) -> Result<Vec<NewEvent>, Refusal> {
    if !account.open {
        return Err(Refusal::NotOpen);
    }
    if account.balance < i64::try_from(amount).unwrap_or(i64::MAX) {
        return Err(Refusal::InsufficientFunds { balance: account.balance });
    }
    AccountEvent::Withdrawn { amount }.to_new_event().map(|e| vec![e]).map_err(Refusal::Json)
}

/// The read model: a balance per account, built from the `account`
/// category up to the moment the subscription goes live.
async fn project_balances(client: &Client) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut balances = BTreeMap::new();
    let mut subscription =
        client.subscribe(Some(Filter::Category("account".into())), Start::Position(Position::START)).await?;
    while let Some(item) = subscription.next().await {
        match item? {
            SubscriptionItem::Event(event) => {
                *balances.entry(event.stream.clone()).or_insert(0) += AccountEvent::delta(&event)?;
            }
            // A real projection would keep going; the example stops here.
            SubscriptionItem::CaughtUp { .. } => return Ok(balances),
        }
    }
    anyhow::bail!("the server ended the subscription")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = std::env::var("QUIPU_SERVER").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    let client =
        Client::connect(server.clone()).await.with_context(|| format!("is `quipu serve` running at {server}?"))?;
    let account = format!("account-{}", uuid::Uuid::new_v4().simple());

    let opening = [AccountEvent::Opened { owner: "Ada".into() }, AccountEvent::Deposited { amount: 100 }];
    let events = opening.iter().map(AccountEvent::to_new_event).collect::<Result<_, _>>()?;
    client.append(&account, ExpectedRevision::NoStream, events).await?;
    println!("opened {account} with 100");

    // Ten withdrawals of 15 race: six fit in 100, four must be refused.
    let withdrawals: Vec<_> = (0..10)
        .map(|_| {
            let (client, account) = (client.clone(), account.clone());
            tokio::spawn(async move { client.execute(&account, |state: &Account| withdraw(state, 15)).await })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for withdrawal in withdrawals {
        match withdrawal.await? {
            Ok(executed) => {
                accepted += 1;
                println!("withdrew 15 (decided {} time(s))", executed.attempts);
            }
            Err(ExecuteError::Rejected(Refusal::InsufficientFunds { balance })) => {
                refused += 1;
                println!("refused: insufficient funds (balance {balance})");
            }
            Err(other) => anyhow::bail!("withdrawal failed: {other}"),
        }
    }
    let loaded = client.load::<Account>(&account).await?;
    println!("{accepted} withdrawals accepted, {refused} refused; balance {}", loaded.state.balance);
    anyhow::ensure!(loaded.state.balance == 10 && accepted == 6, "the account must end at 10 after 6 withdrawals");

    let balances = project_balances(&client).await?;
    let projected = balances.get(&account).copied();
    println!("projection: {} accounts; {account} has {projected:?}", balances.len());
    anyhow::ensure!(projected == Some(loaded.state.balance), "the projection agrees with the aggregate");
    Ok(())
}
