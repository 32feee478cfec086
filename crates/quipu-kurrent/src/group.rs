//! A KurrentDB persistent subscription as a Quipu consumer group.
//!
//! - **Name.** The subscription `group` on `stream` (or on `$all`) is the
//!   Quipu group `kurrent::<stream>::<group>`; it shows in Quipu's own
//!   group listings under that name.
//! - **Events.** A stream subscription filters on that one stream, from
//!   the revision given (inclusive); an `$all` subscription takes what its
//!   filter takes, prefixes becoming an anchored alternation. System
//!   streams are never delivered.
//! - **Settings.** Retries, message timeout and strategy become the
//!   group's; the rest (checkpoint counts, buffer sizes, subscriber limit,
//!   where it started) is kept with the group as given and returned by
//!   `GetInfo`. Retries are not delayed, as in KurrentDB.

use quipu_core::StreamName;
use quipu_proto::event_store::client::persistent_subscriptions as pb;
use serde::{Deserialize, Serialize};
use tonic::Status;

use super::wire;
use quipu_node::group::dispatcher::Strategy;
use quipu_node::group::settings::{Filter, MAX_IN_FLIGHT_LIMIT, Pattern, StartFrom, TuningRequest};
use quipu_node::{ApiError, ErrorCode};

/// The event source of an `$all` subscription, as the protocol names it.
pub const ALL: &str = "$all";

/// Longest message timeout a group takes, ms (asked for as 0: none).
const MESSAGE_TIMEOUT_MAX_MS: u64 = 3_600_000;

/// Which subscription a call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The stream, or [`ALL`].
    pub source: String,
    /// The group's name as the client gave it.
    pub group: String,
}

impl Subscription {
    /// The subscription `group` on the stream `identifier`, or on `$all`
    /// when there is none.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty group name or a stream name Quipu
    /// refuses.
    pub fn new(
        identifier: Option<&quipu_proto::event_store::client::StreamIdentifier>,
        group: &str,
    ) -> Result<Subscription, Status> {
        if group.is_empty() {
            return Err(Status::invalid_argument("a persistent subscription needs a group name"));
        }
        let source = match identifier {
            Some(identifier) => wire::stream_name(Some(identifier))?.as_str().to_string(),
            None => ALL.to_string(),
        };
        Ok(Subscription { source, group: group.to_string() })
    }

    /// The Quipu group that runs it.
    #[must_use]
    pub fn group_name(&self) -> String {
        format!("kurrent::{}::{}", self.source, self.group)
    }

    /// What a reader's confirmation carries: `<stream>::<group>`.
    #[must_use]
    pub fn confirmation_id(&self) -> String {
        format!("{}::{}", self.source, self.group)
    }

    /// NOT_FOUND as the clients map it.
    #[must_use]
    pub fn not_found(&self) -> Status {
        let message = format!("Subscription group {} on stream {} does not exist.", self.group, self.source);
        self.with_trailers(Status::not_found(message), "persistent-subscription-does-not-exist")
    }

    /// ALREADY_EXISTS as the clients map it.
    #[must_use]
    pub fn exists(&self) -> Status {
        let message = format!("Subscription group {} on stream {} exists.", self.group, self.source);
        self.with_trailers(Status::already_exists(message), "persistent-subscription-exists")
    }

    /// FAILED_PRECONDITION: the group has its most subscribers.
    #[must_use]
    pub fn full(&self) -> Status {
        let message =
            format!("Maximum subscriptions reached for subscription group {} on stream {}.", self.group, self.source);
        self.with_trailers(Status::failed_precondition(message), "maximum-subscribers-reached")
    }

    /// CANCELLED: the group went away under a reader.
    #[must_use]
    pub fn dropped(&self) -> Status {
        let message = format!("Subscription group {} on stream {} was dropped.", self.group, self.source);
        self.with_trailers(Status::cancelled(message), "persistent-subscription-dropped")
    }

    /// The status of a group operation's error: a missing group is
    /// NOT_FOUND, a taken name ALREADY_EXISTS.
    #[must_use]
    pub fn status(&self, error: &ApiError) -> Status {
        match error.code {
            ErrorCode::GroupNotFound => self.not_found(),
            ErrorCode::GroupExists => self.exists(),
            _ => wire::other_status(error),
        }
    }

    fn with_trailers(&self, mut status: Status, exception: &str) -> Status {
        wire::trailer(&mut status, "exception", exception);
        wire::trailer(&mut status, "stream-name", &self.source);
        wire::trailer(&mut status, "group-name", &self.group);
        status
    }
}

/// What the door keeps with a group: the subscription and the settings
/// Quipu does not act on, returned by `GetInfo` as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The stream, or `$all`.
    pub source: String,
    /// The client's group name.
    pub group: String,
    /// Where it started, as `GetInfo` says it: a revision (`0` start, `-1`
    /// end) or `C:<commit>/P:<prepare>`.
    pub start_from: String,
    /// The strategy's name as the client gave it.
    pub consumer_strategy: String,
    /// Kept; Quipu has no links to resolve.
    pub resolve_links: bool,
    /// Kept.
    pub extra_statistics: bool,
    /// Kept; Quipu checkpoints on its own schedule.
    pub checkpoint_after_ms: i32,
    /// Kept.
    pub min_checkpoint_count: i32,
    /// Kept.
    pub max_checkpoint_count: i32,
    /// Most readers at once (0: no limit); enforced.
    pub max_subscriber_count: i32,
    /// Kept.
    pub live_buffer_size: i32,
    /// Kept.
    pub read_batch_size: i32,
    /// Kept.
    pub history_buffer_size: i32,
}

impl Kept {
    /// The kept settings of a group, if the door made it.
    #[must_use]
    pub fn of(settings: &quipu_node::group::settings::Settings) -> Option<Kept> {
        settings.client_settings.as_ref().and_then(|value| serde_json::from_value(value.get("kurrent")?.clone()).ok())
    }

    /// As the group keeps it.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({ "kurrent": self })
    }
}

/// The settings of a Create or Update in one shape (Update has no string
/// strategy).
pub struct Asked {
    /// The settings message's scalar fields.
    pub settings: pb::create_req::Settings,
    /// Field 16, when the client sent it.
    pub strategy_name: Option<String>,
}

impl Asked {
    /// What a Create asks for.
    #[must_use]
    pub fn create(settings: pb::create_req::Settings) -> Asked {
        let strategy_name = Some(settings.consumer_strategy.clone()).filter(|name| !name.is_empty());
        Asked { settings, strategy_name }
    }

    /// What an Update asks for.
    #[must_use]
    pub fn update(settings: pb::update_req::Settings) -> Asked {
        use pb::create_req::settings::{CheckpointAfter, MessageTimeout};
        use pb::update_req::settings as update;
        let message_timeout = settings.message_timeout.map(|timeout| match timeout {
            update::MessageTimeout::MessageTimeoutTicks(ticks) => MessageTimeout::MessageTimeoutTicks(ticks),
            update::MessageTimeout::MessageTimeoutMs(ms) => MessageTimeout::MessageTimeoutMs(ms),
        });
        let checkpoint_after = settings.checkpoint_after.map(|after| match after {
            update::CheckpointAfter::CheckpointAfterTicks(ticks) => CheckpointAfter::CheckpointAfterTicks(ticks),
            update::CheckpointAfter::CheckpointAfterMs(ms) => CheckpointAfter::CheckpointAfterMs(ms),
        });
        let settings = pb::create_req::Settings {
            resolve_links: settings.resolve_links,
            revision: settings.revision,
            extra_statistics: settings.extra_statistics,
            max_retry_count: settings.max_retry_count,
            min_checkpoint_count: settings.min_checkpoint_count,
            max_checkpoint_count: settings.max_checkpoint_count,
            max_subscriber_count: settings.max_subscriber_count,
            live_buffer_size: settings.live_buffer_size,
            read_batch_size: settings.read_batch_size,
            history_buffer_size: settings.history_buffer_size,
            named_consumer_strategy: settings.named_consumer_strategy,
            consumer_strategy: String::new(),
            message_timeout,
            checkpoint_after,
        };
        Asked { settings, strategy_name: None }
    }

    /// The strategy's name: field 16, else the enum's.
    fn strategy_name(&self) -> String {
        self.strategy_name.clone().unwrap_or_else(|| {
            pb::create_req::ConsumerStrategy::try_from(self.settings.named_consumer_strategy)
                .map_or_else(|_| format!("#{}", self.settings.named_consumer_strategy), |s| s.as_str_name().to_string())
        })
    }

    /// The group's strategy.
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming an unknown strategy.
    pub fn strategy(&self) -> Result<Strategy, Status> {
        match self.strategy_name().as_str() {
            "DispatchToSingle" => Ok(Strategy::DispatchToSingle),
            "RoundRobin" => Ok(Strategy::RoundRobin),
            // Quipu pins by stream; the correlation id is not looked at.
            "Pinned" | "PinnedByCorrelation" => Ok(Strategy::Pinned),
            other => Err(Status::invalid_argument(format!(
                "unknown consumer strategy {other:?}: DispatchToSingle, RoundRobin, Pinned or PinnedByCorrelation"
            ))),
        }
    }

    /// The group's retry settings. Readers bound what they hold, so the
    /// group's own bound is the largest.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a negative count or timeout.
    pub fn tuning(&self) -> Result<TuningRequest, Status> {
        use pb::create_req::settings::MessageTimeout;
        let retries = u32::try_from(self.settings.max_retry_count)
            .map_err(|_| Status::invalid_argument("maxRetryCount must not be negative"))?;
        let timeout_ms = match self.settings.message_timeout {
            Some(MessageTimeout::MessageTimeoutMs(ms)) => i64::from(ms),
            Some(MessageTimeout::MessageTimeoutTicks(ticks)) => ticks / 10_000,
            None => 30_000,
        };
        let timeout_ms =
            u64::try_from(timeout_ms).map_err(|_| Status::invalid_argument("messageTimeout must not be negative"))?;
        Ok(TuningRequest {
            max_retries: Some(retries),
            message_timeout_ms: Some(if timeout_ms == 0 { MESSAGE_TIMEOUT_MAX_MS } else { timeout_ms }),
            max_in_flight: Some(MAX_IN_FLIGHT_LIMIT),
            backoff_base_ms: Some(0),
            backoff_max_ms: Some(0),
        })
    }

    /// What the door keeps for `subscription` started at `start_from`.
    #[must_use]
    pub fn kept(&self, subscription: &Subscription, start_from: String) -> Kept {
        use pb::create_req::settings::CheckpointAfter;
        let checkpoint_after_ms = match self.settings.checkpoint_after {
            Some(CheckpointAfter::CheckpointAfterMs(ms)) => ms,
            Some(CheckpointAfter::CheckpointAfterTicks(ticks)) => i32::try_from(ticks / 10_000).unwrap_or(i32::MAX),
            None => 2_000,
        };
        let s = &self.settings;
        Kept {
            source: subscription.source.clone(),
            group: subscription.group.clone(),
            start_from,
            consumer_strategy: self.strategy_name(),
            resolve_links: s.resolve_links,
            extra_statistics: s.extra_statistics,
            checkpoint_after_ms,
            min_checkpoint_count: s.min_checkpoint_count,
            max_checkpoint_count: s.max_checkpoint_count,
            max_subscriber_count: s.max_subscriber_count,
            live_buffer_size: s.live_buffer_size,
            read_batch_size: s.read_batch_size,
            history_buffer_size: s.history_buffer_size,
        }
    }
}

/// Where a stream subscription starts: the group's start, filter, and the
/// `start_from` text. `revision` is inclusive.
#[must_use]
pub fn stream_start(stream: &StreamName, revision: Option<u64>, from_end: bool) -> (StartFrom, Filter, String) {
    let filter = Filter { stream: Some(stream.as_str().to_string()), from_revision: revision, ..Filter::default() };
    match (revision, from_end) {
        (_, true) => (StartFrom::End, filter, "-1".to_string()),
        (Some(revision), false) => (StartFrom::Beginning, filter, revision.to_string()),
        (None, false) => (StartFrom::Beginning, filter, "0".to_string()),
    }
}

/// Where an `$all` subscription starts, and the `start_from` text; the
/// commit position is inclusive.
#[must_use]
pub fn all_start(commit: Option<u64>, from_end: bool) -> (StartFrom, String) {
    match (commit, from_end) {
        (_, true) => (StartFrom::End, "C:-1/P:-1".to_string()),
        (Some(commit), false) => (StartFrom::Position(wire::quipu_position(commit)), format!("C:{commit}/P:{commit}")),
        (None, false) => (StartFrom::Beginning, "C:0/P:0".to_string()),
    }
}

/// The group filter of an `$all` subscription's filter options.
///
/// # Errors
/// INVALID_ARGUMENT for a filter without an expression, or one that does
/// not compile.
pub fn all_filter(options: Option<&pb::create_req::all_options::FilterOptions>) -> Result<Filter, Status> {
    use pb::create_req::all_options::filter_options::Filter as On;
    let Some(options) = options else { return Ok(Filter::default()) };
    let (on_type, expression) = match &options.filter {
        Some(On::StreamIdentifier(expression)) => (false, expression),
        Some(On::EventType(expression)) => (true, expression),
        None => return Err(Status::invalid_argument("a filter is on the stream name or on the event type")),
    };
    let text = if expression.regex.is_empty() {
        if expression.prefix.is_empty() {
            return Err(Status::invalid_argument("a filter needs a regular expression or prefixes"));
        }
        let prefixes: Vec<String> = expression.prefix.iter().map(|p| fancy_regex::escape(p).into_owned()).collect();
        format!("^(?:{})", prefixes.join("|"))
    } else {
        expression.regex.clone()
    };
    let pattern = Pattern::new(&text).map_err(|error| Status::invalid_argument(error.message))?;
    Ok(if on_type {
        Filter { type_regex: Some(pattern), ..Filter::default() }
    } else {
        Filter { stream_regex: Some(pattern), ..Filter::default() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_confirmations_and_errors() {
        let on_stream = Subscription::new(Some(&wire::identifier("order-1")), "billing").expect("valid");
        assert_eq!(on_stream.group_name(), "kurrent::order-1::billing");
        assert_eq!(on_stream.confirmation_id(), "order-1::billing");
        let on_all = Subscription::new(None, "audit").expect("valid");
        assert_eq!(on_all.source, ALL);
        assert_eq!(on_all.confirmation_id(), "$all::audit");
        assert!(Subscription::new(None, "").is_err());
        let missing = on_stream.not_found();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        assert_eq!(missing.message(), "Subscription group billing on stream order-1 does not exist.");
        assert_eq!(
            missing.metadata().get("exception").map(|v| v.to_str().ok()),
            Some(Some("persistent-subscription-does-not-exist"))
        );
    }

    #[test]
    fn strategies_timeouts_and_starts() {
        let mut asked = Asked::create(pb::create_req::Settings {
            max_retry_count: 3,
            consumer_strategy: "RoundRobin".into(),
            message_timeout: Some(pb::create_req::settings::MessageTimeout::MessageTimeoutMs(0)),
            ..pb::create_req::Settings::default()
        });
        assert_eq!(asked.strategy().expect("known"), Strategy::RoundRobin);
        let tuning = asked.tuning().expect("valid");
        assert_eq!((tuning.max_retries, tuning.message_timeout_ms), (Some(3), Some(MESSAGE_TIMEOUT_MAX_MS)));
        asked.strategy_name = Some("Fastest".into());
        assert!(asked.strategy().expect_err("unknown").message().contains("Fastest"));
        let update = Asked::update(pb::update_req::Settings {
            named_consumer_strategy: pb::update_req::ConsumerStrategy::Pinned as i32,
            max_retry_count: -1,
            ..pb::update_req::Settings::default()
        });
        assert_eq!(update.strategy().expect("known"), Strategy::Pinned);
        assert!(update.tuning().is_err(), "negative retries");
        let stream = StreamName::new("order-1").expect("valid");
        let (start, filter, text) = stream_start(&stream, Some(4), false);
        assert_eq!((start, filter.from_revision, text.as_str()), (StartFrom::Beginning, Some(4), "4"));
        assert_eq!(all_start(Some(11), false), (StartFrom::Position(10), "C:11/P:11".to_string()));
        assert_eq!(all_start(None, true).1, "C:-1/P:-1");
    }

    #[test]
    fn prefixes_become_an_anchored_alternation() {
        use pb::create_req::all_options::FilterOptions;
        use pb::create_req::all_options::filter_options::{Expression, Filter as On};
        let options = FilterOptions {
            filter: Some(On::StreamIdentifier(Expression {
                regex: String::new(),
                prefix: vec!["order-".into(), "a.b".into()],
            })),
            ..FilterOptions::default()
        };
        let filter = all_filter(Some(&options)).expect("valid");
        let pattern = filter.stream_regex.expect("on streams");
        assert!(pattern.is_match("order-1") && pattern.is_match("a.b-2"));
        assert!(!pattern.is_match("axb-2") && !pattern.is_match("my-order-1"));
        let bad = FilterOptions {
            filter: Some(On::EventType(Expression { regex: "(".into(), prefix: Vec::new() })),
            ..FilterOptions::default()
        };
        assert_eq!(all_filter(Some(&bad)).expect_err("does not compile").code(), tonic::Code::InvalidArgument);
    }
}
