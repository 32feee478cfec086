//! What can go wrong in a service, as one closed list: every service
//! names its failures with an [`ErrorCode`], and every door turns a code's
//! [`ErrorKind`] into its protocol's answer with one exhaustive match
//! (in `quipu-server`: HTTP statuses in `http::error`, gRPC codes in
//! `grpc::wire`, the KurrentDB door's in `kurrent::wire`, Confluent's in
//! `http::confluent`). A new
//! code must be given a kind here, and a new kind fails to compile in every
//! door that does not answer it. The codes' names are what HTTP bodies,
//! gRPC messages and the client show.

/// What kind of failure a code is, which is what protocols tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule; sending it again as it
    /// is fails again.
    Invalid,
    /// The request is well-formed but its content is refused (a schema
    /// that does not compile).
    Unprocessable,
    /// What the request names does not exist.
    NotFound,
    /// The request's method is not one the resource takes.
    MethodNotAllowed,
    /// The request conflicts with the current state (a revision, a
    /// running job).
    Conflict,
    /// What the request names is gone for good.
    Gone,
    /// The request is over a size limit.
    TooLarge,
    /// The store cannot serve now.
    Unavailable,
    /// The server failed.
    Internal,
}

/// One named failure of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `append_too_large`: An append is over the size limit.
    AppendTooLarge,
    /// `body_too_large`: A request body is over the size limit.
    BodyTooLarge,
    /// `condition_failed`: An event matching an append's condition exists after its position.
    ConditionFailed,
    /// `corrupt_record`: A record read back does not match its checksum.
    CorruptRecord,
    /// `cross_partition`: In cluster mode, an atomic append writes streams of different partitions.
    CrossPartition,
    /// `duplicate_event_id`: An append carries the same event id twice.
    DuplicateEventId,
    /// `duplicate_stream`: A multi-stream append names a stream twice.
    DuplicateStream,
    /// `empty_append`: An append has no events.
    EmptyAppend,
    /// `empty_query`: A query has no items.
    EmptyQuery,
    /// `event_id_reused`: An event id was written before by a different append.
    EventIdReused,
    /// `event_too_large`: An event is over the size limit.
    EventTooLarge,
    /// `group_elsewhere`: In cluster mode, a consumer group runs on another node (its home).
    GroupElsewhere,
    /// `group_exists`: A consumer group of that name exists.
    GroupExists,
    /// `group_not_found`: No such group.
    GroupNotFound,
    /// `headers_too_large`: An HTTP request's headers are over the size limit.
    HeadersTooLarge,
    /// `internal`: Something failed inside the server (logged).
    Internal,
    /// `invalid_as_of`: The request's as of is not valid.
    InvalidAsOf,
    /// `invalid_category`: The request's category is not valid.
    InvalidCategory,
    /// `invalid_compatibility`: The request's compatibility is not valid.
    InvalidCompatibility,
    /// `invalid_direction`: The request's direction is not valid.
    InvalidDirection,
    /// `invalid_event`: The request's event is not valid.
    InvalidEvent,
    /// `invalid_event_id`: The request's event id is not valid.
    InvalidEventId,
    /// `invalid_expected_revision`: The request's expected revision is not valid.
    InvalidExpectedRevision,
    /// `invalid_filter`: The request's filter is not valid.
    InvalidFilter,
    /// `invalid_group`: The request's group is not valid.
    InvalidGroup,
    /// `invalid_json`: The request's json is not valid.
    InvalidJson,
    /// `invalid_last_event_id`: The request's last event id is not valid.
    InvalidLastEventId,
    /// `invalid_member`: The request's member is not valid.
    InvalidMember,
    /// `invalid_metadata`: The request's metadata is not valid.
    InvalidMetadata,
    /// `invalid_name`: The request's name is not valid.
    InvalidName,
    /// `invalid_path`: A request's path is not valid: a bad percent-encoding, or bytes that are not UTF-8.
    InvalidPath,
    /// `invalid_policy`: The request's policy is not valid.
    InvalidPolicy,
    /// `invalid_poll`: The request's poll is not valid.
    InvalidPoll,
    /// `invalid_projection`: The request's projection is not valid.
    InvalidProjection,
    /// `invalid_query`: The request's query is not valid.
    InvalidQuery,
    /// `invalid_report`: The request's report is not valid.
    InvalidReport,
    /// `invalid_runner`: The request's runner is not valid.
    InvalidRunner,
    /// `invalid_schema`: The request's schema is not valid.
    InvalidSchema,
    /// `invalid_scope`: The request's scope is not valid.
    InvalidScope,
    /// `invalid_snapshot`: The request's snapshot is not valid.
    InvalidSnapshot,
    /// `invalid_start`: The request's start is not valid.
    InvalidStart,
    /// `invalid_subject`: The request's subject is not valid.
    InvalidSubject,
    /// `invalid_tags`: The request's tags is not valid.
    InvalidTags,
    /// `invalid_types`: The request's types is not valid.
    InvalidTypes,
    /// `invalid_upcaster`: The request's upcaster is not valid.
    InvalidUpcaster,
    /// `join_first`: A consumer group member acted before joining.
    JoinFirst,
    /// `limit_too_large`: A read asks for more events than one read gives.
    LimitTooLarge,
    /// `malformed_request`: An HTTP request does not parse: its request line or a header is malformed.
    MalformedRequest,
    /// `member_not_found`: No such member.
    MemberNotFound,
    /// `method_not_allowed`: The path exists but does not take the request's method.
    MethodNotAllowed,
    /// `no_rebuild`: No rebuild of that projection is running or known.
    NoRebuild,
    /// `no_scavenge`: No scavenge is known.
    NoScavenge,
    /// `policy_not_found`: No such policy.
    PolicyNotFound,
    /// `projection_not_found`: No such projection.
    ProjectionNotFound,
    /// `rebuild_in_progress`: A rebuild of that projection is running.
    RebuildInProgress,
    /// `registry_changed`: A registry changed under the request; retry it.
    RegistryChanged,
    /// `replay_in_progress`: A category is closed to appends while its projection replays.
    ReplayInProgress,
    /// `route_not_found`: No route of the API has the request's path.
    RouteNotFound,
    /// `scavenge_not_running`: No scavenge is running to cancel.
    ScavengeNotRunning,
    /// `scavenge_running`: A scavenge is running.
    ScavengeRunning,
    /// `server_busy`: A door holds its cap of connections or of request bytes in flight; retry shortly.
    ServerBusy,
    /// `schema_missing`: An event's type requires a schema and has none for its version.
    SchemaMissing,
    /// `schema_not_found`: No such schema.
    SchemaNotFound,
    /// `snapshot_too_large`: A snapshot is over the size limit.
    SnapshotTooLarge,
    /// `position_not_reached`: A read waited for a position this node does not hold yet.
    PositionNotReached,
    /// `outcome_unknown`: In cluster mode, whether the shared log took an append is unknown: send it again with the same event ids.
    OutcomeUnknown,
    /// `store_unavailable`: The store failed or is closed: appends stop until a restart.
    StoreUnavailable,
    /// `stream_deleted`: The stream is deleted or tombstoned.
    StreamDeleted,
    /// `stream_not_found`: No such stream.
    StreamNotFound,
    /// `subject_not_found`: No such subject.
    SubjectNotFound,
    /// `too_many_events`: An append has more events than the limit.
    TooManyEvents,
    /// `too_many_streams`: A multi-stream append names more streams than the limit.
    TooManyStreams,
    /// `type_not_marked`: That event type is not marked as an integration event.
    TypeNotMarked,
    /// `uri_too_long`: An HTTP request's target is over the length limit.
    UriTooLong,
    /// `version_not_found`: No such version.
    VersionNotFound,
    /// `wrong_expected_revision`: A stream is not at the revision an append expected.
    WrongExpectedRevision,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 76] = [
        ErrorCode::AppendTooLarge,
        ErrorCode::BodyTooLarge,
        ErrorCode::ConditionFailed,
        ErrorCode::CorruptRecord,
        ErrorCode::CrossPartition,
        ErrorCode::DuplicateEventId,
        ErrorCode::DuplicateStream,
        ErrorCode::EmptyAppend,
        ErrorCode::EmptyQuery,
        ErrorCode::EventIdReused,
        ErrorCode::EventTooLarge,
        ErrorCode::GroupElsewhere,
        ErrorCode::GroupExists,
        ErrorCode::GroupNotFound,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Internal,
        ErrorCode::InvalidAsOf,
        ErrorCode::InvalidCategory,
        ErrorCode::InvalidCompatibility,
        ErrorCode::InvalidDirection,
        ErrorCode::InvalidEvent,
        ErrorCode::InvalidEventId,
        ErrorCode::InvalidExpectedRevision,
        ErrorCode::InvalidFilter,
        ErrorCode::InvalidGroup,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidLastEventId,
        ErrorCode::InvalidMember,
        ErrorCode::InvalidMetadata,
        ErrorCode::InvalidName,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidPolicy,
        ErrorCode::InvalidPoll,
        ErrorCode::InvalidProjection,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidReport,
        ErrorCode::InvalidRunner,
        ErrorCode::InvalidSchema,
        ErrorCode::InvalidScope,
        ErrorCode::InvalidSnapshot,
        ErrorCode::InvalidStart,
        ErrorCode::InvalidSubject,
        ErrorCode::InvalidTags,
        ErrorCode::InvalidTypes,
        ErrorCode::InvalidUpcaster,
        ErrorCode::JoinFirst,
        ErrorCode::LimitTooLarge,
        ErrorCode::MalformedRequest,
        ErrorCode::MemberNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NoRebuild,
        ErrorCode::NoScavenge,
        ErrorCode::PolicyNotFound,
        ErrorCode::ProjectionNotFound,
        ErrorCode::RebuildInProgress,
        ErrorCode::RegistryChanged,
        ErrorCode::ReplayInProgress,
        ErrorCode::RouteNotFound,
        ErrorCode::ScavengeNotRunning,
        ErrorCode::ScavengeRunning,
        ErrorCode::ServerBusy,
        ErrorCode::SchemaMissing,
        ErrorCode::SchemaNotFound,
        ErrorCode::SnapshotTooLarge,
        ErrorCode::OutcomeUnknown,
        ErrorCode::PositionNotReached,
        ErrorCode::StoreUnavailable,
        ErrorCode::StreamDeleted,
        ErrorCode::StreamNotFound,
        ErrorCode::SubjectNotFound,
        ErrorCode::TooManyEvents,
        ErrorCode::TooManyStreams,
        ErrorCode::TypeNotMarked,
        ErrorCode::UriTooLong,
        ErrorCode::VersionNotFound,
        ErrorCode::WrongExpectedRevision,
    ];

    /// The code's name, as answers show it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AppendTooLarge => "append_too_large",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::ConditionFailed => "condition_failed",
            ErrorCode::CorruptRecord => "corrupt_record",
            ErrorCode::CrossPartition => "cross_partition",
            ErrorCode::DuplicateEventId => "duplicate_event_id",
            ErrorCode::DuplicateStream => "duplicate_stream",
            ErrorCode::EmptyAppend => "empty_append",
            ErrorCode::EmptyQuery => "empty_query",
            ErrorCode::EventIdReused => "event_id_reused",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::GroupElsewhere => "group_elsewhere",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::GroupNotFound => "group_not_found",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidAsOf => "invalid_as_of",
            ErrorCode::InvalidCategory => "invalid_category",
            ErrorCode::InvalidCompatibility => "invalid_compatibility",
            ErrorCode::InvalidDirection => "invalid_direction",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidEventId => "invalid_event_id",
            ErrorCode::InvalidExpectedRevision => "invalid_expected_revision",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::InvalidGroup => "invalid_group",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidLastEventId => "invalid_last_event_id",
            ErrorCode::InvalidMember => "invalid_member",
            ErrorCode::InvalidMetadata => "invalid_metadata",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidPolicy => "invalid_policy",
            ErrorCode::InvalidPoll => "invalid_poll",
            ErrorCode::InvalidProjection => "invalid_projection",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidReport => "invalid_report",
            ErrorCode::InvalidRunner => "invalid_runner",
            ErrorCode::InvalidSchema => "invalid_schema",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidSnapshot => "invalid_snapshot",
            ErrorCode::InvalidStart => "invalid_start",
            ErrorCode::InvalidSubject => "invalid_subject",
            ErrorCode::InvalidTags => "invalid_tags",
            ErrorCode::InvalidTypes => "invalid_types",
            ErrorCode::InvalidUpcaster => "invalid_upcaster",
            ErrorCode::JoinFirst => "join_first",
            ErrorCode::LimitTooLarge => "limit_too_large",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::MemberNotFound => "member_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NoRebuild => "no_rebuild",
            ErrorCode::NoScavenge => "no_scavenge",
            ErrorCode::PolicyNotFound => "policy_not_found",
            ErrorCode::ProjectionNotFound => "projection_not_found",
            ErrorCode::RebuildInProgress => "rebuild_in_progress",
            ErrorCode::RegistryChanged => "registry_changed",
            ErrorCode::ReplayInProgress => "replay_in_progress",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::ScavengeNotRunning => "scavenge_not_running",
            ErrorCode::ScavengeRunning => "scavenge_running",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::SchemaMissing => "schema_missing",
            ErrorCode::SchemaNotFound => "schema_not_found",
            ErrorCode::SnapshotTooLarge => "snapshot_too_large",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::PositionNotReached => "position_not_reached",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::StreamDeleted => "stream_deleted",
            ErrorCode::StreamNotFound => "stream_not_found",
            ErrorCode::SubjectNotFound => "subject_not_found",
            ErrorCode::TooManyEvents => "too_many_events",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::TypeNotMarked => "type_not_marked",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::VersionNotFound => "version_not_found",
            ErrorCode::WrongExpectedRevision => "wrong_expected_revision",
        }
    }

    /// What kind of failure it is.
    #[must_use]
    pub fn kind(self) -> ErrorKind {
        match self {
            ErrorCode::CrossPartition
            | ErrorCode::DuplicateEventId
            | ErrorCode::DuplicateStream
            | ErrorCode::EmptyAppend
            | ErrorCode::EmptyQuery
            | ErrorCode::InvalidAsOf
            | ErrorCode::InvalidCategory
            | ErrorCode::InvalidCompatibility
            | ErrorCode::InvalidDirection
            | ErrorCode::InvalidEvent
            | ErrorCode::InvalidEventId
            | ErrorCode::InvalidExpectedRevision
            | ErrorCode::InvalidFilter
            | ErrorCode::InvalidGroup
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidLastEventId
            | ErrorCode::InvalidMember
            | ErrorCode::InvalidMetadata
            | ErrorCode::InvalidName
            | ErrorCode::InvalidPath
            | ErrorCode::InvalidPolicy
            | ErrorCode::InvalidPoll
            | ErrorCode::InvalidProjection
            | ErrorCode::InvalidQuery
            | ErrorCode::InvalidReport
            | ErrorCode::InvalidRunner
            | ErrorCode::InvalidScope
            | ErrorCode::InvalidSnapshot
            | ErrorCode::InvalidStart
            | ErrorCode::InvalidSubject
            | ErrorCode::InvalidTags
            | ErrorCode::InvalidTypes
            | ErrorCode::InvalidUpcaster
            | ErrorCode::JoinFirst
            | ErrorCode::LimitTooLarge
            | ErrorCode::MalformedRequest
            | ErrorCode::SchemaMissing => ErrorKind::Invalid,
            ErrorCode::InvalidSchema => ErrorKind::Unprocessable,
            ErrorCode::GroupNotFound
            | ErrorCode::MemberNotFound
            | ErrorCode::NoRebuild
            | ErrorCode::NoScavenge
            | ErrorCode::PolicyNotFound
            | ErrorCode::ProjectionNotFound
            | ErrorCode::RouteNotFound
            | ErrorCode::SchemaNotFound
            | ErrorCode::StreamNotFound
            | ErrorCode::SubjectNotFound
            | ErrorCode::TypeNotMarked
            | ErrorCode::VersionNotFound => ErrorKind::NotFound,
            ErrorCode::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            ErrorCode::ConditionFailed
            | ErrorCode::EventIdReused
            | ErrorCode::GroupElsewhere
            | ErrorCode::GroupExists
            | ErrorCode::RebuildInProgress
            | ErrorCode::RegistryChanged
            | ErrorCode::ReplayInProgress
            | ErrorCode::ScavengeNotRunning
            | ErrorCode::ScavengeRunning
            | ErrorCode::WrongExpectedRevision => ErrorKind::Conflict,
            ErrorCode::StreamDeleted => ErrorKind::Gone,
            ErrorCode::AppendTooLarge
            | ErrorCode::BodyTooLarge
            | ErrorCode::EventTooLarge
            | ErrorCode::HeadersTooLarge
            | ErrorCode::SnapshotTooLarge
            | ErrorCode::TooManyEvents
            | ErrorCode::TooManyStreams
            | ErrorCode::UriTooLong => ErrorKind::TooLarge,
            ErrorCode::StoreUnavailable
            | ErrorCode::OutcomeUnknown
            | ErrorCode::PositionNotReached
            | ErrorCode::ServerBusy => ErrorKind::Unavailable,
            ErrorCode::CorruptRecord | ErrorCode::Internal => ErrorKind::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_has_its_own_snake_case_name() {
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "names are distinct");
        for name in names {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
    }
}
