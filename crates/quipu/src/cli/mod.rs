//! The client commands of the `quipu` binary: `append`, `read`,
//! `subscribe`, `info`, `group` and `projection`, spoken over gRPC through `quipu-client` to a
//! running `quipu serve`. Output is a table for people by default and one
//! JSON object per line with `--json`, for scripts.

mod group;
mod output;
mod projection;
mod publish;
mod scavenge;
mod schema;
mod snapshot;
mod stream;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use futures_util::StreamExt;
use quipu_client::{
    AsOf, Client, Direction, ExpectedRevision, Filter, NewEvent, Position, Revision, Start, SubscriptionItem,
};

use output::Output;

/// Where the server is, shared by every client command.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// gRPC address of the server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:2113", env = "QUIPU_SERVER")]
    pub server: String,
    /// Print one JSON object per line instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `quipu append`: appends events to one stream.
#[derive(clap::Args, Debug)]
pub struct AppendArgs {
    /// Target stream.
    pub stream: String,
    /// Event type (for a single event given by flags).
    #[arg(long = "type", required_unless_present = "events", conflicts_with = "events")]
    pub event_type: Option<String>,
    /// Event data as JSON.
    #[arg(long, default_value = "{}", conflicts_with = "events")]
    pub data: String,
    /// Event metadata as JSON.
    #[arg(long, conflicts_with = "events")]
    pub metadata: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", conflicts_with = "events")]
    pub tags: Vec<String>,
    /// Event id (UUID); a fresh one when absent. Repeating an append with
    /// the same id writes it once.
    #[arg(long, conflicts_with = "events")]
    pub id: Option<String>,
    /// A file (or `-` for stdin) with a JSON array of events
    /// `[{"id", "type", "data", "metadata", "tags"}]`.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// `any`, `no_stream`, `exists` or the revision of the stream's last
    /// event.
    #[arg(long, default_value = "any")]
    pub expected: ExpectedRevision,
}

/// `quipu read`: a stream, `$all`, a category, an event type, a tag or the
/// integration events.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["stream", "all", "category", "event_type", "tag", "integration"])))]
pub struct ReadArgs {
    /// The stream to read.
    pub stream: Option<String>,
    /// Read `$all` instead of a stream.
    #[arg(long)]
    pub all: bool,
    /// Read a category.
    #[arg(long)]
    pub category: Option<String>,
    /// Read an event type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Read a tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Read the integration events (see `quipu integration`).
    #[arg(long)]
    pub integration: bool,
    /// Events as written, without upcasting to their types' current
    /// versions.
    #[arg(long)]
    pub raw: bool,
    /// First revision (stream) or position (others) to read, inclusive.
    #[arg(long)]
    pub from: Option<u64>,
    /// Events to read at most.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Read from the end towards the start.
    #[arg(long)]
    pub backwards: bool,
    /// Read as things stood at this time: RFC 3339 (`2026-11-23T16:00:00Z`)
    /// or microseconds since the Unix epoch.
    #[arg(long, value_parser = parse_time_us, conflicts_with_all = ["to_revision", "to_position"])]
    pub as_of: Option<u64>,
    /// Read a stream as it stood just after this revision.
    #[arg(long, requires = "stream", conflicts_with = "to_position")]
    pub to_revision: Option<u64>,
    /// Read as things stood just after this position of `$all`.
    #[arg(long)]
    pub to_position: Option<u64>,
}

/// A time as µs since the Unix epoch, from RFC 3339 or a number.
fn parse_time_us(text: &str) -> Result<u64, String> {
    if let Ok(us) = text.parse::<u64>() {
        return Ok(us);
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{text:?} is neither RFC 3339 (2026-11-23T16:00:00Z) nor microseconds: {e}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    u64::try_from(since.as_micros()).map_err(|_| format!("{text:?} is too far in the future"))
}

/// `quipu subscribe`: follow events as they are written.
#[derive(clap::Args, Debug)]
pub struct SubscribeArgs {
    /// Follow one stream.
    #[arg(long, conflicts_with_all = ["category", "event_type", "tag", "integration"])]
    pub stream: Option<String>,
    /// Follow a category.
    #[arg(long, conflicts_with_all = ["event_type", "tag", "integration"])]
    pub category: Option<String>,
    /// Follow an event type.
    #[arg(long = "type", conflicts_with_all = ["tag", "integration"])]
    pub event_type: Option<String>,
    /// Follow a tag.
    #[arg(long, conflicts_with = "integration")]
    pub tag: Option<String>,
    /// Follow the integration events (see `quipu integration`).
    #[arg(long)]
    pub integration: bool,
    /// Events as written, without upcasting.
    #[arg(long)]
    pub raw: bool,
    /// Start at this position (a revision with `--stream`); the beginning
    /// when absent.
    #[arg(long, conflicts_with = "from_end")]
    pub from: Option<u64>,
    /// Only events written from now on.
    #[arg(long)]
    pub from_end: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// `quipu info`: whether a stream exists and its last revision.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// The stream.
    pub stream: String,
}

/// A client command.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Append events to a stream (with an expected revision).
    Append(AppendArgs),
    /// Read a stream, `$all`, a category, an event type or a tag.
    Read(ReadArgs),
    /// Follow events as they are written: catch up, then live.
    Subscribe(SubscribeArgs),
    /// Show whether a stream exists and its last revision.
    Info(InfoArgs),
    /// Manage and consume consumer groups.
    Group {
        /// What to do.
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Projections: where they stand, rebuilds with progress.
    Projection {
        /// What to do.
        #[command(subcommand)]
        command: projection::ProjectionCommand,
    },
    /// A stream's metadata (max count, max age, truncate before) and
    /// deletes.
    Stream {
        /// What to do.
        #[command(subcommand)]
        command: stream::StreamCommand,
    },
    /// The schema registry: JSON Schemas per event type.
    Schema {
        /// What to do.
        #[command(subcommand)]
        command: schema::SchemaCommand,
    },
    /// Upcasters: how old versions of an event type's data are read as the
    /// current one.
    Upcaster {
        /// What to do.
        #[command(subcommand)]
        command: schema::UpcasterCommand,
    },
    /// Snapshots of streams, and when they are due.
    Snapshot {
        /// What to do.
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Remove from the log every event stream metadata hides (deleted,
    /// tombstoned, truncated, expired), online, with a progress bar.
    Scavenge(scavenge::ScavengeArgs),
    /// Publish integration events to an external broker (Kafka), exactly
    /// once, from a checkpoint kept in Quipu.
    Publish {
        /// Where to.
        #[command(subcommand)]
        command: publish::PublishCommand,
    },
    /// Mark event types as integration events (those other systems may
    /// see), unmark them, list them.
    Integration {
        /// What to do.
        #[command(subcommand)]
        command: IntegrationCommand,
    },
}

/// A `quipu integration` command.
#[derive(clap::Subcommand, Debug)]
pub enum IntegrationCommand {
    /// The marked types.
    List,
    /// Mark event types as integration events.
    Mark {
        /// The event types.
        #[arg(required = true)]
        types: Vec<String>,
    },
    /// Unmark event types.
    Unmark {
        /// The event types.
        #[arg(required = true)]
        types: Vec<String>,
    },
}

/// Runs a client command against the server in `connection`.
///
/// # Errors
/// A server that cannot be reached, a refused request (with the server's
/// message) or bad arguments.
pub fn run(connection: &Connection, command: ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = Client::connect(connection.server.clone()).await?;
        let output = Output::new(connection.json);
        match command {
            ClientCommand::Append(args) => append(&client, &output, args).await,
            ClientCommand::Read(args) => {
                let client = client.raw_reads(args.raw);
                read(&client, &output, args).await
            }
            ClientCommand::Subscribe(args) => {
                let client = client.raw_reads(args.raw);
                subscribe(&client, &output, args).await
            }
            ClientCommand::Info(args) => {
                let info = client.stream_info(&args.stream).await?;
                output.info(&info)
            }
            ClientCommand::Group { command } => group::run(&client, &output, command).await,
            ClientCommand::Projection { command } => projection::run(&client, &output, command).await,
            ClientCommand::Integration { command } => integration(&client, &output, command).await,
            ClientCommand::Snapshot { command } => snapshot::run(&client, &output, command).await,
            ClientCommand::Schema { command } => schema::run(&client, &output, command).await,
            ClientCommand::Stream { command } => stream::run(&client, &output, command).await,
            ClientCommand::Upcaster { command } => schema::run_upcaster(&client, &output, command).await,
            ClientCommand::Scavenge(args) => scavenge::run(&client, &output, args).await,
            ClientCommand::Publish { command } => publish::run(&client, &output, command).await,
        }
    })
}

async fn append(client: &Client, output: &Output, args: AppendArgs) -> anyhow::Result<()> {
    let events = match (&args.events, args.event_type) {
        (Some(path), _) => events_from_file(path)?,
        (None, Some(event_type)) => {
            let data: serde_json::Value = serde_json::from_str(&args.data).context("--data is not JSON")?;
            let mut event = NewEvent::json(event_type, &data)?.with_tags(args.tags);
            if let Some(metadata) = &args.metadata {
                let metadata: serde_json::Value = serde_json::from_str(metadata).context("--metadata is not JSON")?;
                event = event.with_metadata(serde_json::to_vec(&metadata)?);
            }
            if let Some(id) = &args.id {
                event.id = id.parse().with_context(|| format!("--id {id:?} is not a UUID"))?;
            }
            vec![event]
        }
        (None, None) => anyhow::bail!("give --type (and --data) or --events"),
    };
    let result = client.append(args.stream.clone(), args.expected, events).await?;
    output.appended(&args.stream, &result)
}

/// One event of an `--events` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFileEntry {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    tags: Vec<String>,
}

fn events_from_file(path: &std::path::Path) -> anyhow::Result<Vec<NewEvent>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading events from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let entries: Vec<EventFileEntry> =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON array of events", path.display()))?;
    entries
        .into_iter()
        .map(|entry| {
            let mut event = NewEvent::json(entry.event_type, &entry.data)?.with_tags(entry.tags);
            if let Some(metadata) = entry.metadata {
                event = event.with_metadata(serde_json::to_vec(&metadata)?);
            }
            if let Some(id) = entry.id {
                event.id = id.parse().with_context(|| format!("event id {id:?} is not a UUID"))?;
            }
            Ok(event)
        })
        .collect()
}

async fn integration(client: &Client, output: &Output, command: IntegrationCommand) -> anyhow::Result<()> {
    let types = match command {
        IntegrationCommand::List => client.list_integration_types().await?,
        IntegrationCommand::Mark { types } => client.mark_integration_types(&types).await?,
        IntegrationCommand::Unmark { types } => client.unmark_integration_types(&types).await?,
    };
    if output.is_json() {
        return output::line(&serde_json::json!({ "types": types }));
    }
    if types.is_empty() {
        println!("(no integration event types)");
    }
    for event_type in types {
        println!("{event_type}");
    }
    Ok(())
}

async fn read(client: &Client, output: &Output, args: ReadArgs) -> anyhow::Result<()> {
    let direction = if args.backwards { Direction::Backwards } else { Direction::Forwards };
    let (from, limit) = (args.from, args.limit);
    let as_of = match (args.to_revision, args.to_position, args.as_of) {
        (Some(revision), ..) => Some(AsOf::Revision(Revision(revision))),
        (_, Some(position), _) => Some(AsOf::Position(Position(position))),
        (.., Some(time_us)) => Some(AsOf::Time(time_us)),
        _ => None,
    };
    let filter = match (args.category, args.event_type, args.tag) {
        (Some(category), ..) => Some(Filter::Category(category)),
        (_, Some(event_type), _) => Some(Filter::EventType(event_type)),
        (.., Some(tag)) => Some(Filter::Tag(tag)),
        _ if args.integration => Some(Filter::Integration),
        _ => None,
    };
    let events = match (args.stream, filter) {
        (Some(stream), _) => client.read_stream_as_of(&stream, from.map(Revision), direction, limit, as_of).await?,
        (None, Some(filter)) => client.read_filtered_as_of(filter, from.map(Position), direction, limit, as_of).await?,
        (None, None) => client.read_all_as_of(from.map(Position), direction, limit, as_of).await?,
    };
    output.events(&events)
}

async fn subscribe(client: &Client, output: &Output, args: SubscribeArgs) -> anyhow::Result<()> {
    let by_revision = args.stream.is_some();
    let filter = match (args.stream, args.category, args.event_type, args.tag) {
        (Some(stream), ..) => Some(Filter::Stream(stream)),
        (_, Some(category), ..) => Some(Filter::Category(category)),
        (_, _, Some(event_type), _) => Some(Filter::EventType(event_type)),
        (.., Some(tag)) => Some(Filter::Tag(tag)),
        _ if args.integration => Some(Filter::Integration),
        _ => None,
    };
    let start = match (args.from_end, args.from) {
        (true, _) => Start::End,
        (false, Some(from)) if by_revision => Start::Revision(Revision(from)),
        (false, Some(from)) => Start::Position(Position(from)),
        (false, None) if by_revision => Start::Revision(Revision(0)),
        (false, None) => Start::Position(Position::START),
    };
    let mut subscription = client.subscribe(filter, start).await?;
    let mut seen = 0;
    output.header()?;
    while args.count.is_none_or(|count| seen < count) {
        match subscription.next().await {
            None => anyhow::bail!("the server ended the subscription (it is shutting down)"),
            Some(item) => match item? {
                SubscriptionItem::Event(event) => {
                    output.event(&event)?;
                    seen += 1;
                }
                SubscriptionItem::CaughtUp { .. } => output.caught_up()?,
            },
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
