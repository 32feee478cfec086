//! The shapes of JSON the HTTP door answers with, or takes, but does not
//! build from a type of its own: quipu-node's types (serialised as they
//! are; the services crate knows no HTTP) and `json!` values (kept so the
//! answers stay byte for byte what they were). Each type here mirrors
//! that JSON field for field for the OpenAPI document, under the schema
//! name the document uses, and is never built. Their docs are the
//! schemas' descriptions, so they speak to the API's clients.
//!
//! | mirror | JSON of |
//! | --- | --- |
//! | [`GroupFilter`], [`GroupStart`], [`GroupStrategy`], [`GroupTuning`] | `quipu_node::group`'s `Filter`, `StartFrom`, `Strategy`, `TuningRequest` |
//! | [`GroupInfo`], [`GroupMember`], [`GroupList`] | `group::info_json` and the list of groups |
//! | [`Events`], [`Delivery`], [`Deliveries`] | the reads' and polls' `json!` answers |
//! | [`ProjectionInfo`], [`RebuildInfo`], [`RebuildState`], [`ProjectionList`] | `quipu_node::projection`'s types |
//! | [`SnapshotInfo`], [`SnapshotList`], [`Loaded`] | the snapshot routes' `json!` answers |
//! | [`Policy`], [`PolicyList`] | `quipu_node::snapshot::Policy` |
//! | [`Upcaster`], [`UpcastStep`], [`UpcasterList`] | `quipu_node::upcast`'s `Upcaster` and `Step` |
//! | [`StreamMetadata`] | `quipu_node::lifecycle::Metadata` |
//! | [`ScavengeStatus`], [`ScavengeState`] | `quipu_node::lifecycle::scavenger`'s types |
//! | [`ReadDirection`] | a read's `direction` |

use serde_json::Value;
use utoipa::ToSchema;

use crate::wire::EventJson;

/// Events in order: `{"events": [...]}`.
#[derive(Debug, ToSchema)]
#[schema(as = Events)]
pub struct Events {
    /// The events.
    pub events: Vec<EventJson>,
}

/// Which events a group takes: every set field must match; `$` streams
/// are never delivered.
#[derive(Debug, ToSchema)]
#[schema(as = GroupFilter)]
pub struct GroupFilter {
    /// Streams of this category.
    pub category: Option<String>,
    /// Events of one of these types.
    pub event_types: Option<Vec<String>>,
    /// Events carrying this tag.
    pub tag: Option<String>,
    /// Streams whose name starts with this.
    pub stream_prefix: Option<String>,
    /// Only integration events (of the types marked when they are read).
    pub integration: Option<bool>,
    /// Events of this one stream.
    pub stream: Option<String>,
    /// With `stream`: only its events at this revision or later.
    pub from_revision: Option<u64>,
    /// Streams whose name matches this regular expression (unanchored).
    pub stream_regex: Option<String>,
    /// Events whose type matches this regular expression (unanchored).
    pub type_regex: Option<String>,
}

/// Where a new group starts: `"beginning"`, `"end"` (after the last event
/// written when it is created) or `{"position": n}` (inclusive).
#[derive(Debug, ToSchema)]
#[schema(as = GroupStart, rename_all = "snake_case")]
pub enum GroupStart {
    /// The first event of the log.
    Beginning,
    /// After the last event written when the group is created.
    End,
    /// This position (inclusive).
    Position(u64),
}

/// How a group shares its events among its members.
#[derive(Debug, ToSchema)]
#[schema(as = GroupStrategy, rename_all = "snake_case")]
pub enum GroupStrategy {
    /// One event of a stream out at a time, streams pinned to members:
    /// each stream's events are handled in order (the default).
    PerStream,
    /// No order: each event goes to the member with the most room.
    RoundRobin,
    /// No order: each event goes to the longest-standing member with room.
    DispatchToSingle,
    /// No order, but each stream's events all go to one member, many at
    /// once.
    Pinned,
}

/// A group's retry and flow settings; an absent field keeps the current
/// (or default) value.
#[derive(Debug, ToSchema)]
#[schema(as = GroupTuning)]
pub struct GroupTuning {
    /// Retries before an event is parked.
    #[schema(minimum = 0, maximum = 1000, default = 10)]
    pub max_retries: Option<u32>,
    /// How long a delivered event may stay unacknowledged, ms.
    #[schema(minimum = 100, maximum = 3_600_000, default = 30_000)]
    pub message_timeout_ms: Option<u64>,
    /// Most events one member holds at once.
    #[schema(minimum = 1, maximum = 10_000, default = 100)]
    pub max_in_flight: Option<u32>,
    /// First retry's backoff, ms; doubles per retry.
    #[schema(default = 100)]
    pub backoff_base_ms: Option<u64>,
    /// Longest backoff, ms.
    #[schema(maximum = 3_600_000, default = 10_000)]
    pub backoff_max_ms: Option<u64>,
}

/// One member of a group and its counts.
#[derive(Debug, ToSchema)]
#[schema(as = GroupMember)]
pub struct GroupMember {
    /// Its name.
    pub name: String,
    /// Events it holds now.
    pub in_flight: u64,
    /// Most it may hold.
    pub max_in_flight: u64,
    /// Events waiting in the queues of the streams given to it.
    pub queued: u64,
    /// Deliveries so far.
    pub delivered: u64,
    /// Acknowledgements so far.
    pub acked: u64,
    /// Negative acknowledgements and timeouts so far.
    pub failed: u64,
}

/// A group: its settings, state and members.
#[derive(Debug, ToSchema)]
#[schema(as = GroupInfo)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Which events it takes.
    pub filter: GroupFilter,
    /// First position it delivers.
    pub start: u64,
    /// Retries before an event is parked.
    pub max_retries: u32,
    /// How long a delivered event may stay unacknowledged, ms.
    pub message_timeout_ms: u64,
    /// Most events one member holds at once.
    pub max_in_flight: u32,
    /// First retry's backoff, ms.
    pub backoff_base_ms: u64,
    /// Longest backoff, ms.
    pub backoff_max_ms: u64,
    /// How it shares events among its members.
    pub strategy: GroupStrategy,
    /// Every event before this position is done.
    pub checkpoint: u64,
    /// The position after the log's last event.
    pub head: u64,
    /// Positions from the checkpoint to the head: at most this many events
    /// left.
    pub lag: u64,
    /// Events out to members.
    pub in_flight: u64,
    /// Events given up on whose park record is being written.
    pub parking: u64,
    /// Events waiting for a retry.
    pub retrying: u64,
    /// Events read and not finished.
    pub buffered: u64,
    /// Parked events no replay has asked for yet.
    pub parked: u64,
    /// The stream its parked events are recorded in.
    pub parked_stream: String,
    /// The stream its checkpoints are recorded in.
    pub checkpoint_stream: String,
    /// Its members.
    pub members: Vec<GroupMember>,
    /// Whether it runs on the node that answers. In cluster mode a group
    /// runs on its home only; elsewhere it shows its settings and its
    /// home's last checkpoint, with no members and nothing in flight.
    pub running_here: bool,
    /// In cluster mode, the node it runs on (absent for a node alone).
    pub home: Option<String>,
}

/// The consumer groups: `{"groups": [...]}`.
#[derive(Debug, ToSchema)]
#[schema(as = GroupList)]
pub struct GroupList {
    /// Every group.
    pub groups: Vec<GroupInfo>,
}

/// One delivery to a member.
#[derive(Debug, ToSchema)]
#[schema(as = Delivery)]
pub struct Delivery {
    /// The event.
    pub event: EventJson,
    /// Earlier deliveries of it that failed.
    pub retries: u32,
}

/// A member's deliveries: `{"events": [{"event", "retries"}]}`.
#[derive(Debug, ToSchema)]
#[schema(as = Deliveries)]
pub struct Deliveries {
    /// The deliveries, in order.
    pub events: Vec<Delivery>,
}

/// Where a rebuild is.
#[derive(Debug, ToSchema)]
#[schema(as = RebuildState, rename_all = "snake_case")]
pub enum RebuildState {
    /// Asked for; no runner has taken it yet.
    Requested,
    /// A runner is building the new read model.
    Running,
    /// Swapped in.
    Done,
    /// The runner gave up; the message says why.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

/// A projection's rebuild.
#[derive(Debug, ToSchema)]
#[schema(as = RebuildInfo)]
pub struct RebuildInfo {
    /// Its id (the revision of its request in `$projections`).
    pub id: u64,
    /// Where it is.
    pub state: RebuildState,
    /// Categories closed to appends while it runs (empty: none).
    pub block_categories: Vec<String>,
    /// When it was asked for, µs since the Unix epoch.
    pub requested_at_us: u64,
    /// When it finished.
    pub finished_at_us: Option<u64>,
    /// The runner building it.
    pub runner: Option<String>,
    /// The rebuild's next position.
    pub done: u64,
    /// The position after the log's last event (the final position once
    /// done).
    pub total: u64,
    /// Positions per second.
    pub rate: f64,
    /// Seconds left at that rate, when it is moving.
    pub eta_seconds: Option<f64>,
    /// Why it failed or was cancelled.
    pub message: String,
}

/// A projection.
#[derive(Debug, ToSchema)]
#[schema(as = ProjectionInfo)]
pub struct ProjectionInfo {
    /// Its name.
    pub name: String,
    /// The runner that reported last.
    pub runner: Option<String>,
    /// The live model's position as last reported.
    pub position: Option<u64>,
    /// The position after the log's last event.
    pub head: u64,
    /// Positions between the live model and the head.
    pub lag: Option<u64>,
    /// Milliseconds since the last report.
    pub reported_ms_ago: Option<u64>,
    /// The current or last rebuild.
    pub rebuild: Option<RebuildInfo>,
}

/// The projections: `{"projections": [...]}`.
#[derive(Debug, ToSchema)]
#[schema(as = ProjectionList)]
pub struct ProjectionList {
    /// Every projection the server knows.
    pub projections: Vec<ProjectionInfo>,
}

/// A stored snapshot; `data` only in a load.
#[derive(Debug, ToSchema)]
#[schema(as = SnapshotInfo)]
pub struct SnapshotInfo {
    /// The stream.
    pub stream: String,
    /// The revision whose state it holds.
    pub revision: u64,
    /// The version of its data's shape.
    pub schema_version: u32,
    /// When it was written, µs since the Unix epoch.
    pub written_at_us: u64,
    /// The state (any JSON); only in a load.
    #[schema(value_type = Option<Value>)]
    pub data: Option<Value>,
}

/// A stream's snapshots: `{"snapshots": [...]}`, oldest first.
#[derive(Debug, ToSchema)]
#[schema(as = SnapshotList)]
pub struct SnapshotList {
    /// The snapshots, without data.
    pub snapshots: Vec<SnapshotInfo>,
}

/// The newest fitting snapshot and the events after it.
#[derive(Debug, ToSchema)]
#[schema(as = Loaded)]
pub struct Loaded {
    /// The snapshot used, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// The events after it, up to the moment (at most the limit).
    pub events: Vec<EventJson>,
    /// Whether the events reach the moment.
    pub complete: bool,
    /// The revision after the last event returned (or the snapshot).
    pub next_revision: u64,
    /// The stream's last revision as of the moment.
    pub last_revision: u64,
    /// The category's policy asks for a new snapshot.
    pub snapshot_due: bool,
    /// The version a new snapshot should have.
    pub schema_version: Option<u32>,
}

/// A category's snapshot policy.
#[derive(Debug, ToSchema)]
#[schema(as = Policy)]
pub struct Policy {
    /// The category.
    pub category: String,
    /// A snapshot is due when this many events lie after the newest one.
    pub every: u64,
    /// The version new snapshots have, and the one loads use.
    pub schema_version: u32,
}

/// The snapshot policies: `{"policies": [...]}`.
#[derive(Debug, ToSchema)]
#[schema(as = PolicyList)]
pub struct PolicyList {
    /// Every policy.
    pub policies: Vec<Policy>,
}

/// One change of an event's data from one version to the next; paths are
/// dot-separated keys.
#[derive(Debug, ToSchema)]
#[schema(as = UpcastStep, rename_all = "snake_case")]
pub enum UpcastStep {
    /// Renames a field within its object.
    Rename {
        /// The field.
        path: String,
        /// Its new name.
        to: String,
    },
    /// Adds a field with a default when absent.
    Add {
        /// The field.
        path: String,
        /// Its default.
        value: Value,
    },
    /// Removes a field.
    Remove {
        /// The field.
        path: String,
    },
    /// Moves a field to another path.
    Move {
        /// Where it is.
        from: String,
        /// Where it goes.
        to: String,
    },
    /// Maps values of a field.
    Map {
        /// The field.
        path: String,
        /// Old value (as JSON text, e.g. `"\"open\""` or `"1"`) to new.
        values: std::collections::BTreeMap<String, Value>,
    },
}

/// How an event type's data goes from `from_version` to the next.
#[derive(Debug, ToSchema)]
#[schema(as = Upcaster)]
pub struct Upcaster {
    /// The event type.
    pub event_type: String,
    /// The version it reads; it writes `from_version + 1`.
    #[schema(minimum = 1)]
    pub from_version: u32,
    /// The changes, in order.
    pub steps: Vec<UpcastStep>,
}

/// The upcasters: `{"set_version", "upcasters": [...]}`.
#[derive(Debug, ToSchema)]
#[schema(as = UpcasterList)]
pub struct UpcasterList {
    /// Declarations so far.
    pub set_version: u64,
    /// Every declaration.
    pub upcasters: Vec<Upcaster>,
}

/// A stream's metadata; every field is optional.
#[derive(Debug, ToSchema)]
#[schema(as = StreamMetadata)]
pub struct StreamMetadata {
    /// Only the last this many events are visible.
    #[schema(minimum = 1)]
    pub max_count: Option<u64>,
    /// Only events committed within this many seconds are visible.
    pub max_age_s: Option<u64>,
    /// Events before this revision are not visible.
    pub truncate_before: Option<u64>,
    /// Anything the application keeps with the stream.
    #[schema(value_type = Option<Value>)]
    pub custom: Option<Value>,
    /// Deleted for good (only in answers).
    pub tombstoned: Option<bool>,
}

/// Where a scavenge is.
#[derive(Debug, ToSchema)]
#[schema(as = ScavengeState, rename_all = "snake_case")]
pub enum ScavengeState {
    /// Going through the segments.
    Running,
    /// Went through every closed segment.
    Done,
    /// Stopped on request after a segment; what is done stays done.
    Stopped,
    /// Ended with an error (see the message); what is done stays done.
    Failed,
}

/// A scavenge's state and progress.
#[derive(Debug, ToSchema)]
#[schema(as = ScavengeStatus)]
pub struct ScavengeStatus {
    /// When it started, µs since the Unix epoch; names the scavenge.
    pub started_at_us: u64,
    /// When it ended; `null` while it runs.
    pub finished_at_us: Option<u64>,
    /// Where it is.
    pub state: ScavengeState,
    /// Streams whose events it may remove.
    pub streams: u64,
    /// Closed segments to go through.
    pub segments_total: u64,
    /// Segments gone through.
    pub segments_done: u64,
    /// Segments written anew without the removed events.
    pub segments_rewritten: u64,
    /// Bytes of the closed segments.
    pub bytes_total: u64,
    /// Bytes read so far.
    pub bytes_scanned: u64,
    /// Bytes freed so far.
    pub bytes_reclaimed: u64,
    /// Events removed so far.
    pub events_removed: u64,
    /// Bytes read per second since the start.
    pub bytes_per_second: f64,
    /// Why it failed; empty otherwise.
    pub message: String,
}

/// The order of a read.
#[derive(Debug, ToSchema)]
#[schema(as = ReadDirection, rename_all = "snake_case")]
pub enum ReadDirection {
    /// Oldest first.
    Forwards,
    /// Newest first.
    Backwards,
}
