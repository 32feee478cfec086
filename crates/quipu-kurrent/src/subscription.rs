//! Catch-up subscriptions (`Streams.Read` with `subscription`) over
//! Quipu's feeds: a confirmation first, then the history, a `caught_up`
//! at the switch, then live events until the client leaves or the server
//! stops. They start after the revision or position given, as the
//! clients expect. A filtered `$all` subscription also sends checkpoints
//! while it passes over events the filter drops.

use std::sync::Arc;

use futures_util::StreamExt;
use quipu_core::{Position, Revision};
use quipu_proto::event_store::client::streams as pb;
use tonic::Status;

use super::filter::Filter;
use super::wire;
use quipu_node::feed::{Feed, Item, Start};

/// Events scanned per window when the filter names no window.
const WINDOW_DEFAULT: u64 = 32;

/// How a subscription answers.
pub struct Plan {
    /// The filter of a `$all` subscription.
    pub filter: Option<Arc<Filter>>,
    /// Scanned events between checkpoints (filtered `$all` only).
    pub checkpoint_every: Option<u64>,
    /// Ids as structured halves.
    pub structured: bool,
}

/// Where a subscription of `stream` starts: after `revision`, at the
/// start, or at the end.
#[must_use]
pub fn stream_start(revision: Option<u64>, from_end: bool) -> Start {
    match (revision, from_end) {
        (_, true) => Start::End,
        (Some(revision), false) => Start::Revision(Revision(revision.saturating_add(1))),
        (None, false) => Start::Revision(Revision(0)),
    }
}

/// Where a `$all` subscription starts: after commit position `commit`
/// (Quipu position `commit - 1`), at the start, or at the end.
#[must_use]
pub fn all_start(commit: Option<u64>, from_end: bool) -> Start {
    match (commit, from_end) {
        (_, true) => Start::End,
        (Some(commit), false) => Start::Position(Position(commit)),
        (None, false) => Start::Position(Position(0)),
    }
}

/// Scanned events between checkpoints: the window times the multiplier.
///
/// # Errors
/// INVALID_ARGUMENT for a multiplier of 0.
pub fn checkpoint_every(options: &pb::read_req::options::FilterOptions) -> Result<u64, Status> {
    use pb::read_req::options::filter_options::Window;
    let window = match options.window {
        Some(Window::Max(max)) if max > 0 => u64::from(max),
        _ => WINDOW_DEFAULT,
    };
    if options.checkpoint_interval_multiplier == 0 {
        return Err(Status::invalid_argument("checkpointIntervalMultiplier must be at least 1"));
    }
    Ok(window.saturating_mul(u64::from(options.checkpoint_interval_multiplier)))
}

/// A subscription's state between items.
struct Following {
    feed: Feed,
    filter: Option<Arc<Filter>>,
    checkpoint_every: Option<u64>,
    structured: bool,
    scanned: u64,
}

/// The answers of a subscription following `feed` as `plan` says.
pub fn answers(feed: Feed, plan: Plan) -> super::streams::ReadStream {
    let confirmation = pb::ReadResp {
        content: Some(pb::read_resp::Content::Confirmation(pb::read_resp::SubscriptionConfirmation {
            subscription_id: quipu_core::EventId::random().to_string(),
        })),
    };
    let following = Following {
        feed,
        filter: plan.filter,
        checkpoint_every: plan.checkpoint_every,
        structured: plan.structured,
        scanned: 0,
    };
    let rest = futures_util::stream::unfold(following, |mut following| async move {
        let item = following.feed.next_item().await?;
        let answers = following.answer(item);
        Some((futures_util::stream::iter(answers), following))
    })
    .flatten();
    Box::pin(futures_util::stream::once(async { Ok(confirmation) }).chain(rest))
}

impl Following {
    /// What the client gets for `item`: the event (if the filter takes
    /// it), a checkpoint when one is due, the switch to live.
    fn answer(&mut self, item: Item) -> Vec<Result<pb::ReadResp, Status>> {
        match item {
            Item::Event(event) => {
                self.scanned += 1;
                let commit = wire::commit_position(event.position.0);
                if self.filter.as_ref().is_none_or(|f| f.accepts(&event)) {
                    return vec![Ok(wire::read_event(*event, self.structured))];
                }
                match self.checkpoint_every {
                    Some(every) if self.scanned.is_multiple_of(every) => vec![Ok(checkpoint(commit))],
                    _ => Vec::new(),
                }
            }
            Item::CaughtUp(_) => {
                let caught_up = pb::read_resp::CaughtUp { timestamp: None, stream_revision: None, position: None };
                vec![Ok(pb::ReadResp { content: Some(pb::read_resp::Content::CaughtUp(caught_up)) })]
            }
        }
    }
}

fn checkpoint(commit: u64) -> pb::ReadResp {
    let checkpoint = pb::read_resp::Checkpoint { commit_position: commit, prepare_position: commit, timestamp: None };
    pb::ReadResp { content: Some(pb::read_resp::Content::Checkpoint(checkpoint)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_start_after_what_the_client_names() {
        assert!(matches!(stream_start(Some(4), false), Start::Revision(Revision(5))));
        assert!(matches!(stream_start(None, false), Start::Revision(Revision(0))));
        assert!(matches!(stream_start(None, true), Start::End));
        // Commit position 3 is Quipu position 2: the next is 3.
        assert!(matches!(all_start(Some(3), false), Start::Position(Position(3))));
        assert!(matches!(all_start(Some(0), false), Start::Position(Position(0))));
        assert!(matches!(all_start(None, true), Start::End));
    }

    #[test]
    fn checkpoints_come_every_window_times_multiplier_scanned_events() {
        use pb::read_req::options::FilterOptions;
        use pb::read_req::options::filter_options::Window;
        let options = |window, multiplier| FilterOptions {
            filter: None,
            window: Some(window),
            checkpoint_interval_multiplier: multiplier,
        };
        assert_eq!(checkpoint_every(&options(Window::Max(30), 5)).expect("valid"), 150);
        assert_eq!(checkpoint_every(&options(Window::Count(Default::default()), 2)).expect("valid"), 64);
        assert!(checkpoint_every(&options(Window::Max(30), 0)).is_err());
    }
}
