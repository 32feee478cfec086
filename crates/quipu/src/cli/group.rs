//! `quipu group ...`: create, list, inspect, tune and delete consumer
//! groups, replay their parked events, and consume one from the terminal.

use quipu_client::{Client, GroupFilter, GroupInfo, GroupStart, GroupTuning, Position};
use serde_json::json;

use super::output::{Output, line};

/// Retry and flow settings shared by `create` and `update`.
#[derive(clap::Args, Debug)]
pub struct TuningArgs {
    /// Retries before an event is parked (default 10).
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// How long a delivery may stay unanswered, ms (default 30000).
    #[arg(long)]
    pub message_timeout_ms: Option<u64>,
    /// Most events one member holds at once (default 100).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Backoff before the first retry, ms (default 100).
    #[arg(long)]
    pub backoff_base_ms: Option<u64>,
    /// Longest backoff, ms (default 10000).
    #[arg(long)]
    pub backoff_max_ms: Option<u64>,
}

impl TuningArgs {
    fn tuning(&self) -> GroupTuning {
        GroupTuning {
            max_retries: self.max_retries,
            message_timeout_ms: self.message_timeout_ms,
            max_in_flight: self.max_in_flight,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

/// `quipu group create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The group's name.
    pub name: String,
    /// Only streams of this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type")]
    pub event_types: Vec<String>,
    /// Only events with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only streams whose name starts with this.
    #[arg(long)]
    pub stream_prefix: Option<String>,
    /// Only integration events (see `quipu integration`).
    #[arg(long)]
    pub integration: bool,
    /// Start at this position; the beginning when absent.
    #[arg(long, conflicts_with = "from_end")]
    pub from: Option<u64>,
    /// Only events written from now on.
    #[arg(long)]
    pub from_end: bool,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// `quipu group consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The group.
    pub name: String,
    /// This member's name.
    #[arg(long, default_value = "cli")]
    pub member: String,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A `quipu group` command.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a consumer group.
    Create(CreateArgs),
    /// List the groups with their checkpoint and lag.
    List,
    /// Show a group's settings, state and members.
    Info {
        /// The group.
        name: String,
    },
    /// Change a group's retry and flow settings.
    Update {
        /// The group.
        name: String,
        #[command(flatten)]
        tuning: TuningArgs,
    },
    /// Delete a group (its checkpoint and parked streams stay).
    Delete {
        /// The group.
        name: String,
    },
    /// Deliver again the events the group parked.
    ReplayParked {
        /// The group.
        name: String,
    },
    /// In cluster mode, make another node the group's home (it goes on from
    /// the last checkpoint; unacknowledged events are delivered again).
    Move {
        /// The group.
        name: String,
        /// The node to run it (its --cluster-node name).
        #[arg(long)]
        to: String,
    },
    /// Join a group and print (and acknowledge) what it delivers.
    Consume(ConsumeArgs),
}

/// Runs a group command.
///
/// # Errors
/// The server's refusal, or a broken connection.
pub async fn run(client: &Client, output: &Output, command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::Create(args) => {
            let filter = GroupFilter {
                category: args.category,
                event_types: args.event_types,
                tag: args.tag,
                stream_prefix: args.stream_prefix,
                integration: args.integration,
            };
            let start = match (args.from_end, args.from) {
                (true, _) => GroupStart::End,
                (false, Some(position)) => GroupStart::Position(Position(position)),
                (false, None) => GroupStart::Beginning,
            };
            let info = client.create_group(&args.name, filter, start, args.tuning.tuning()).await?;
            print_info(output, &info)
        }
        GroupCommand::List => {
            let groups = client.list_groups().await?;
            if output.is_json() {
                return groups.iter().try_for_each(|g| line(&info_json(g)));
            }
            println!(
                "{:<24} {:>12} {:>12} {:>10} {:>9} {:>8} {:>7}",
                "GROUP", "CHECKPOINT", "HEAD", "LAG", "IN FLIGHT", "PARKED", "MEMBERS"
            );
            for g in &groups {
                println!(
                    "{:<24} {:>12} {:>12} {:>10} {:>9} {:>8} {:>7}",
                    g.name,
                    g.checkpoint,
                    g.head,
                    g.lag,
                    g.in_flight,
                    g.parked,
                    g.members.len()
                );
            }
            if groups.is_empty() {
                println!("(no groups)");
            }
            Ok(())
        }
        GroupCommand::Info { name } => print_info(output, &client.group_info(&name).await?),
        GroupCommand::Update { name, tuning } => {
            print_info(output, &client.update_group(&name, tuning.tuning()).await?)
        }
        GroupCommand::Delete { name } => {
            client.delete_group(&name).await?;
            if output.is_json() {
                return line(&json!({ "deleted": name }));
            }
            println!("deleted group {name}");
            Ok(())
        }
        GroupCommand::ReplayParked { name } => {
            let scheduled = client.replay_parked(&name).await?;
            if output.is_json() {
                return line(&json!({ "group": name, "scheduled": scheduled }));
            }
            println!("{scheduled} parked events of {name} will be delivered again");
            Ok(())
        }
        GroupCommand::Move { name, to } => print_info(output, &client.move_group(&name, &to).await?),
        GroupCommand::Consume(args) => consume(client, output, args).await,
    }
}

async fn consume(client: &Client, output: &Output, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut consumer = client.consume_group(&args.name, &args.member, 0).await?;
    output.header()?;
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        let Some(delivery) = consumer.next().await else { break };
        let delivery = delivery?;
        output.event(&delivery.event)?;
        consumer.ack(delivery.event.position);
        seen += 1;
    }
    consumer.leave().await;
    Ok(())
}

fn info_json(info: &GroupInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "filter": {
            "category": info.filter.category,
            "event_types": info.filter.event_types,
            "tag": info.filter.tag,
            "stream_prefix": info.filter.stream_prefix,
            "integration": info.filter.integration,
        },
        "start": info.start.0,
        "max_retries": info.max_retries,
        "message_timeout_ms": info.message_timeout_ms,
        "max_in_flight": info.max_in_flight,
        "checkpoint": info.checkpoint.0,
        "head": info.head.0,
        "lag": info.lag,
        "in_flight": info.in_flight,
        "retrying": info.retrying,
        "buffered": info.buffered,
        "parked": info.parked,
        "parked_stream": info.parked_stream,
        "checkpoint_stream": info.checkpoint_stream,
        "home": info.home,
        "running_here": info.running_here,
        "members": info.members.iter().map(|m| json!({
            "name": m.name,
            "in_flight": m.in_flight,
            "max_in_flight": m.max_in_flight,
            "queued": m.queued,
            "delivered": m.delivered,
            "acked": m.acked,
            "failed": m.failed,
        })).collect::<Vec<_>>(),
    })
}

fn print_info(output: &Output, info: &GroupInfo) -> anyhow::Result<()> {
    if output.is_json() {
        return line(&info_json(info));
    }
    let f = &info.filter;
    let mut filter = Vec::new();
    if let Some(c) = &f.category {
        filter.push(format!("category={c}"));
    }
    if !f.event_types.is_empty() {
        filter.push(format!("types={}", f.event_types.join(",")));
    }
    if let Some(t) = &f.tag {
        filter.push(format!("tag={t}"));
    }
    if let Some(p) = &f.stream_prefix {
        filter.push(format!("stream_prefix={p}"));
    }
    if f.integration {
        filter.push("integration events".to_string());
    }
    let filter = if filter.is_empty() { "everything".to_string() } else { filter.join(" ") };
    println!("group        {}", info.name);
    if let Some(home) = &info.home {
        let here = if info.running_here { "runs here" } else { "runs elsewhere: connect members there" };
        println!("home         {home} ({here})");
    }
    println!("filter       {filter} (from position {})", info.start);
    println!("checkpoint   {} (head {}, lag {})", info.checkpoint, info.head, info.lag);
    println!("in flight    {} (retrying {}, buffered {})", info.in_flight, info.retrying, info.buffered);
    println!("parked       {} (stream {})", info.parked, info.parked_stream);
    println!(
        "settings     max_retries={} message_timeout_ms={} max_in_flight={}",
        info.max_retries, info.message_timeout_ms, info.max_in_flight
    );
    if info.members.is_empty() {
        println!("members      (none)");
    }
    for m in &info.members {
        println!(
            "member       {} in_flight={}/{} queued={} delivered={} acked={} failed={}",
            m.name, m.in_flight, m.max_in_flight, m.queued, m.delivered, m.acked, m.failed
        );
    }
    Ok(())
}
