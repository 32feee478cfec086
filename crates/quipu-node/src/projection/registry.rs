//! [`Projections`]: what the server knows of the projections that run
//! against it, and the rebuilds asked of them.
//!
//! Projections run in their own processes (see the `quipu-projection`
//! crate): the server cannot rebuild one itself. Instead a rebuild request
//! is a durable record in `$projections`; each runner reports every
//! fraction of a second ([`Projections::report`]) where it stands and gets
//! the rebuild it should run, if any; its later reports carry the
//! rebuild's progress and, at the end, its outcome, which is recorded too.
//!
//! What it promises:
//! - A projection has at most one rebuild pending or running. It is given
//!   to one runner at a time; a runner silent for longer than [`LEASE`]
//!   loses it to the next one that reports.
//! - A blocking rebuild's categories are closed to appends (see
//!   [`super::Blocks`]) from the moment its request is durable until its
//!   outcome is, across server restarts.
//! - Requests and outcomes other writers (a cluster's other nodes) record
//!   are taken in, categories closed or reopened with them, on
//!   [`Projections::refresh`] and before every change.
//! - Progress is in positions of the log: `done` is the rebuild's next
//!   position, `total` the position after the log's last event; rate and
//!   ETA follow from the reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quipu_core::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use super::block::Blocks;
use crate::record_log::RecordLog;
use crate::{ApiError, ErrorCode};
use crate::{category::check_category, clock::now_us};

/// The system stream holding rebuild requests and outcomes.
pub const PROJECTIONS_STREAM: &str = "$projections";

/// How long a runner keeps a rebuild without reporting.
pub const LEASE: Duration = Duration::from_secs(10);

/// Longest projection name (as the runner allows: PostgreSQL identifiers
/// have 63 bytes, and a rebuild adds a suffix).
const NAME_BYTES_MAX: usize = 48;

/// Longest runner name.
const RUNNER_BYTES_MAX: usize = 200;

/// Records of `$projections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    RebuildRequested { projection: String, id: u64, block_categories: Vec<String>, requested_at_us: u64 },
    RebuildFinished { projection: String, id: u64, state: RebuildState, message: String, finished_at_us: u64 },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::RebuildRequested { .. } => "RebuildRequested",
            Record::RebuildFinished { .. } => "RebuildFinished",
        }
    }
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// Asked for; no runner has taken it yet.
    Requested,
    /// A runner is building the new read model.
    Running,
    /// Swapped in.
    Done,
    /// The runner gave up; the message says why. The live model is as it
    /// was.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl RebuildState {
    /// Whether the rebuild is still to finish.
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, RebuildState::Requested | RebuildState::Running)
    }
}

/// What a runner says about the rebuild it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildReport {
    /// Still building; every event before position `done` is applied.
    Running {
        /// The rebuild's next position.
        done: u64,
    },
    /// Swapped in at position `done`.
    Done {
        /// The rebuilt model's position at the swap.
        done: u64,
    },
    /// Gave up.
    Failed {
        /// Why.
        message: String,
    },
}

/// A runner's report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Who reports (e.g. host and process id), 1 to 200 bytes.
    pub runner: String,
    /// The live model's position (its next position to read), when known.
    pub position: Option<u64>,
    /// The rebuild this runner runs: its id and state.
    pub rebuild: Option<(u64, RebuildReport)>,
}

/// A rebuild given to a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The rebuild's id.
    pub id: u64,
    /// Categories closed to appends while it runs.
    pub block_categories: Vec<String>,
}

/// A rebuild as the API shows it.
#[derive(Debug, Clone, Serialize)]
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
    /// Positions done: the rebuild's next position.
    pub done: u64,
    /// Positions to do: the position after the log's last event (or the
    /// final position, once done).
    pub total: u64,
    /// Positions per second since the runner took it.
    pub rate: f64,
    /// Seconds left at that rate, when it is moving.
    pub eta_seconds: Option<f64>,
    /// Why it failed or was cancelled.
    pub message: String,
}

/// A projection as the API shows it.
#[derive(Debug, Clone, Serialize)]
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
    /// Milliseconds since the last report (none since the server
    /// started: absent).
    pub reported_ms_ago: Option<u64>,
    /// The current or last rebuild.
    pub rebuild: Option<RebuildInfo>,
}

/// The runner that holds a rebuild.
#[derive(Debug, Clone)]
struct Claim {
    runner: String,
    last_report: Instant,
    /// First progress reported: when, and at which position.
    first: Option<(Instant, u64)>,
    done: u64,
}

impl Claim {
    fn new(runner: &str) -> Claim {
        Claim { runner: runner.to_string(), last_report: Instant::now(), first: None, done: 0 }
    }

    fn expired(&self) -> bool {
        self.last_report.elapsed() > LEASE
    }

    fn progress(&mut self, done: u64) {
        let now = Instant::now();
        self.last_report = now;
        self.first.get_or_insert((now, done));
        self.done = done;
    }

    /// Positions per second since the first report.
    fn rate(&self) -> f64 {
        let Some((at, from)) = self.first else { return 0.0 };
        let seconds = self.last_report.duration_since(at).as_secs_f64();
        if seconds <= 0.0 { 0.0 } else { self.done.saturating_sub(from) as f64 / seconds }
    }
}

#[derive(Debug, Clone)]
struct Rebuild {
    id: u64,
    state: RebuildState,
    block_categories: Vec<String>,
    requested_at_us: u64,
    finished_at_us: Option<u64>,
    message: String,
    claim: Option<Claim>,
}

impl Rebuild {
    fn requested(id: u64, block_categories: Vec<String>, requested_at_us: u64) -> Rebuild {
        Rebuild {
            id,
            state: RebuildState::Requested,
            block_categories,
            requested_at_us,
            finished_at_us: None,
            message: String::new(),
            claim: None,
        }
    }

    fn info(&self, head: u64) -> RebuildInfo {
        let done = self.claim.as_ref().map_or(0, |c| c.done);
        let total = if self.state.is_active() { head.max(done) } else { done };
        let rate = self.claim.as_ref().map_or(0.0, Claim::rate);
        let eta_seconds = (self.state.is_active() && rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate);
        RebuildInfo {
            id: self.id,
            state: self.state,
            block_categories: self.block_categories.clone(),
            requested_at_us: self.requested_at_us,
            finished_at_us: self.finished_at_us,
            runner: self.claim.as_ref().map(|c| c.runner.clone()),
            done,
            total,
            rate,
            eta_seconds,
            message: self.message.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Seen {
    runner: String,
    position: Option<u64>,
    at: Instant,
}

#[derive(Debug, Default)]
struct Entry {
    seen: Option<Seen>,
    rebuild: Option<Rebuild>,
}

/// `$projections` and what it says, folded, beside what runners reported
/// to this node (kept in memory only).
struct Registry {
    log: RecordLog<Record>,
    entries: BTreeMap<String, Entry>,
    /// Closed to appends: the categories of the active rebuilds.
    blocks: Arc<Blocks>,
}

impl Registry {
    /// Takes `records`, the next ones of the log, into the entries, and
    /// closes the categories of the rebuilds active then (reopening the
    /// others). Open, appends and refreshes all come here.
    fn fold(&mut self, records: impl IntoIterator<Item = Record>) {
        for record in records {
            match record {
                Record::RebuildRequested { projection, id, block_categories, requested_at_us } => {
                    self.entries.entry(projection).or_default().rebuild =
                        Some(Rebuild::requested(id, block_categories, requested_at_us));
                }
                Record::RebuildFinished { projection, id, state, message, finished_at_us } => {
                    if let Some(rebuild) = self.entries.get_mut(&projection).and_then(|e| e.rebuild.as_mut())
                        && rebuild.id == id
                    {
                        rebuild.state = state;
                        rebuild.message = message;
                        rebuild.finished_at_us = Some(finished_at_us);
                    }
                }
            }
        }
        self.blocks.set(closed_categories(&self.entries));
    }

    /// Folds the records other writers appended since the log's last
    /// revision.
    fn refresh(&mut self) -> Result<(), ApiError> {
        let records = self.log.read_new()?;
        if !records.is_empty() {
            self.fold(records);
        }
        Ok(())
    }

    /// Appends `record` durably, then folds it.
    async fn append(&mut self, record: Record) -> Result<(), ApiError> {
        self.log.append(&record).await?;
        self.fold([record]);
        Ok(())
    }

    /// Records the end of rebuild `id` and reopens its categories.
    async fn finish(&mut self, name: &str, id: u64, state: RebuildState, message: String) -> Result<(), ApiError> {
        debug_assert!(!state.is_active(), "a finished rebuild is not active");
        let record =
            Record::RebuildFinished { projection: name.to_string(), id, state, message, finished_at_us: now_us() };
        self.append(record).await
    }
}

/// The server's projections and their rebuilds.
pub struct Projections {
    store: Arc<Store>,
    registry: Mutex<Registry>,
}

impl Projections {
    /// Loads the rebuilds recorded in `$projections` and closes the
    /// categories of those still active in `blocks`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>, blocks: Arc<Blocks>) -> Result<Projections, ApiError> {
        let (log, records) = RecordLog::<Record>::open(Arc::clone(&store), PROJECTIONS_STREAM)?;
        let mut registry = Registry { log, entries: BTreeMap::new(), blocks };
        registry.fold(records);
        Ok(Projections { store, registry: Mutex::new(registry) })
    }

    /// Takes in the rebuild requests and outcomes other writers recorded
    /// since, closing and reopening their categories.
    ///
    /// # Errors
    /// As [`Projections::open`]; nothing changes then.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.writer().await.map(drop)
    }

    /// The registry for one change, refreshed first, so the change is
    /// checked against the newest rebuilds and appends at the newest
    /// revision.
    async fn writer(&self) -> Result<MutexGuard<'_, Registry>, ApiError> {
        let mut registry = self.registry.lock().await;
        registry.refresh()?;
        Ok(registry)
    }

    /// Asks for a rebuild of projection `name`; appends to
    /// `block_categories` are refused until it finishes.
    ///
    /// # Errors
    /// 400 for a bad name or category, 409 `rebuild_in_progress` when one
    /// is pending or running, store errors.
    pub async fn request_rebuild(&self, name: &str, block_categories: &[String]) -> Result<ProjectionInfo, ApiError> {
        check_name(name)?;
        let block_categories = check_categories(block_categories)?;
        let mut registry = self.writer().await?;
        if let Some(rebuild) = registry.entries.get(name).and_then(|e| e.rebuild.as_ref())
            && rebuild.state.is_active()
        {
            return Err(ApiError::new(
                ErrorCode::RebuildInProgress,
                format!(
                    "projection {name:?} has rebuild {} {}; cancel it first",
                    rebuild.id,
                    state_name(rebuild.state)
                ),
            ));
        }
        let id = registry.log.next_revision();
        let record =
            Record::RebuildRequested { projection: name.to_string(), id, block_categories, requested_at_us: now_us() };
        registry.append(record).await?;
        Ok(self.info_of(name, &registry.entries))
    }

    /// Cancels the projection's pending or running rebuild; its runner
    /// drops it at its next report and the live model stays.
    ///
    /// # Errors
    /// 404 `no_rebuild` when none is pending or running, store errors.
    pub async fn cancel_rebuild(&self, name: &str) -> Result<ProjectionInfo, ApiError> {
        let mut registry = self.writer().await?;
        let active = registry.entries.get(name).and_then(|e| e.rebuild.as_ref()).filter(|r| r.state.is_active());
        let Some(id) = active.map(|r| r.id) else {
            return Err(ApiError::new(
                ErrorCode::NoRebuild,
                format!("projection {name:?} has no rebuild pending or running"),
            ));
        };
        registry.finish(name, id, RebuildState::Cancelled, "cancelled on request".into()).await?;
        Ok(self.info_of(name, &registry.entries))
    }

    /// Takes a runner's report; returns the rebuild it should run, if any
    /// (the one it reports, or a new one to start; none: stop any).
    ///
    /// # Errors
    /// 400 for a bad name or runner, store errors.
    pub async fn report(&self, name: &str, report: Report) -> Result<Option<Assignment>, ApiError> {
        check_name(name)?;
        if report.runner.is_empty() || report.runner.len() > RUNNER_BYTES_MAX {
            return Err(ApiError::new(ErrorCode::InvalidRunner, "a runner name has 1 to 200 bytes"));
        }
        let mut registry = self.writer().await?;
        let entry = registry.entries.entry(name.to_string()).or_default();
        entry.seen = Some(Seen { runner: report.runner.clone(), position: report.position, at: Instant::now() });
        let finished = report.rebuild.and_then(|(id, outcome)| progress(entry, &report.runner, id, outcome));
        if let Some((id, state, message)) = finished {
            registry.finish(name, id, state, message).await?;
        }
        Ok(assign(registry.entries.get_mut(name), &report.runner))
    }

    /// One projection.
    ///
    /// # Errors
    /// 404 `projection_not_found` when no runner of it reported since the
    /// server started and it never had a rebuild.
    pub async fn info(&self, name: &str) -> Result<ProjectionInfo, ApiError> {
        let registry = self.registry.lock().await;
        if !registry.entries.contains_key(name) {
            return Err(ApiError::new(
                ErrorCode::ProjectionNotFound,
                format!(
                    "no runner of projection {name:?} has reported since the server started, and it has no rebuild"
                ),
            ));
        }
        Ok(self.info_of(name, &registry.entries))
    }

    /// Every known projection, by name.
    pub async fn list(&self) -> Vec<ProjectionInfo> {
        let registry = self.registry.lock().await;
        registry.entries.keys().map(|name| self.info_of(name, &registry.entries)).collect()
    }

    fn info_of(&self, name: &str, entries: &BTreeMap<String, Entry>) -> ProjectionInfo {
        let head = self.store.last_position().map_or(0, |p| p.0 + 1);
        let entry = entries.get(name);
        let seen = entry.and_then(|e| e.seen.as_ref());
        let position = seen.and_then(|s| s.position);
        ProjectionInfo {
            name: name.to_string(),
            runner: seen.map(|s| s.runner.clone()),
            position,
            head,
            lag: position.map(|p| head.saturating_sub(p)),
            reported_ms_ago: seen.map(|s| u64::try_from(s.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            rebuild: entry.and_then(|e| e.rebuild.as_ref()).map(|r| r.info(head)),
        }
    }
}

/// Notes `runner`'s report on rebuild `id` when the runner may hold it;
/// returns the outcome to record when the report ends it.
fn progress(entry: &mut Entry, runner: &str, id: u64, report: RebuildReport) -> Option<(u64, RebuildState, String)> {
    let rebuild = entry
        .rebuild
        .as_mut()
        .filter(|r| r.id == id && r.state.is_active())
        .filter(|r| r.claim.as_ref().is_none_or(|c| c.runner == runner || c.expired()))?;
    rebuild.state = RebuildState::Running;
    let claim = rebuild.claim.get_or_insert_with(|| Claim::new(runner));
    if claim.runner != runner {
        *claim = Claim::new(runner);
    }
    match report {
        RebuildReport::Running { done } => {
            claim.progress(done);
            None
        }
        RebuildReport::Done { done } => {
            claim.progress(done);
            Some((id, RebuildState::Done, String::new()))
        }
        RebuildReport::Failed { message } => Some((id, RebuildState::Failed, message)),
    }
}

/// The active rebuild of `entry` for `runner`: the one it holds, or one
/// nobody holds (which it then takes).
fn assign(entry: Option<&mut Entry>, runner: &str) -> Option<Assignment> {
    let rebuild = entry?.rebuild.as_mut().filter(|r| r.state.is_active())?;
    match &rebuild.claim {
        Some(claim) if claim.runner == runner => {}
        Some(claim) if !claim.expired() => return None,
        _ => {
            rebuild.claim = Some(Claim::new(runner));
            rebuild.state = RebuildState::Running;
        }
    }
    Some(Assignment { id: rebuild.id, block_categories: rebuild.block_categories.clone() })
}

/// Category to projection, for every active blocking rebuild.
fn closed_categories(entries: &BTreeMap<String, Entry>) -> BTreeMap<String, String> {
    let mut closed = BTreeMap::new();
    for (name, entry) in entries {
        let Some(rebuild) = entry.rebuild.as_ref().filter(|r| r.state.is_active()) else { continue };
        for category in &rebuild.block_categories {
            closed.entry(category.clone()).or_insert_with(|| name.clone());
        }
    }
    closed
}

fn state_name(state: RebuildState) -> &'static str {
    match state {
        RebuildState::Requested => "pending",
        RebuildState::Running => "running",
        RebuildState::Done => "done",
        RebuildState::Failed => "failed",
        RebuildState::Cancelled => "cancelled",
    }
}

/// Checks a projection name: lowercase ASCII letters, digits and `_`,
/// starting with a letter, at most 48 bytes (the runner's rule).
fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidProjection,
        format!(
            "projection name {name:?} must have 1 to 48 bytes of lowercase letters, digits and '_', starting with a letter"
        ),
    ))
}

/// Checks and sorts categories to close: stream-name characters, no `-`
/// (a category is what comes before a stream name's first `-`), no `$`.
fn check_categories(categories: &[String]) -> Result<Vec<String>, ApiError> {
    let mut checked = BTreeSet::new();
    for category in categories {
        check_category(category)?;
        checked.insert(category.clone());
    }
    Ok(checked.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_with(state: RebuildState, claim: Option<Claim>) -> Entry {
        Entry { seen: None, rebuild: Some(Rebuild { state, claim, ..Rebuild::requested(3, vec!["order".into()], 0) }) }
    }

    fn order_append() -> quipu_core::AppendRequest {
        let event =
            quipu_core::ProposedEvent::new(quipu_core::EventType::new("Placed").expect("valid"), b"{}".to_vec());
        let stream = quipu_core::StreamName::new("order-1").expect("valid");
        quipu_core::AppendRequest::to_stream(stream, quipu_core::ExpectedRevision::Any, vec![event])
    }

    async fn rebuild_state(projections: &Projections) -> Option<RebuildState> {
        projections.info("totals").await.ok().and_then(|info| info.rebuild).map(|rebuild| rebuild.state)
    }

    /// Two registries over one store (two nodes of a cluster), each with
    /// its own blocks: each takes in the other's rebuild requests and
    /// outcomes on refresh, closing and reopening their categories, and a
    /// change through either refreshes first.
    #[tokio::test]
    async fn rebuilds_another_writer_records_are_taken_in_on_refresh_with_their_blocks() {
        let open = |store| {
            let blocks = Arc::new(Blocks::default());
            Projections::open(store, Arc::clone(&blocks)).map(|projections| (projections, blocks))
        };
        let (_dir, _store, (one, blocks_one), (two, blocks_two)) = crate::record_log::two_over_one_store(open);
        let requested = one.request_rebuild("totals", &["order".into()]).await.expect("request");
        assert_eq!(requested.rebuild.map(|r| (r.id, r.state)), Some((0, RebuildState::Requested)));
        assert_eq!(rebuild_state(&two).await, None, "not before a refresh");
        assert!(blocks_two.check(&order_append()).is_ok(), "not before a refresh");
        two.refresh().await.expect("refresh");
        assert_eq!(rebuild_state(&two).await, Some(RebuildState::Requested));
        assert_eq!(blocks_two.check(&order_append()).expect_err("closed").code, ErrorCode::ReplayInProgress);

        two.cancel_rebuild("totals").await.expect("one's rebuild, cancelled after it");
        assert!(blocks_two.check(&order_append()).is_ok(), "reopened");
        assert!(blocks_one.check(&order_append()).is_err(), "not before a refresh");
        one.refresh().await.expect("refresh");
        assert!(blocks_one.check(&order_append()).is_ok(), "reopened");
        assert_eq!(rebuild_state(&one).await, Some(RebuildState::Cancelled));

        one.request_rebuild("totals", &[]).await.expect("request");
        let refused = two.request_rebuild("totals", &[]).await.expect_err("one's is pending");
        assert_eq!(refused.code, ErrorCode::RebuildInProgress, "checked against one's request, not a stale 409");
    }

    #[test]
    fn a_rebuild_goes_to_one_runner_until_its_lease_runs_out() {
        let mut entry = entry_with(RebuildState::Requested, None);
        assert_eq!(assign(Some(&mut entry), "a").map(|a| a.id), Some(3));
        assert_eq!(assign(Some(&mut entry), "b"), None, "a holds it");
        assert_eq!(assign(Some(&mut entry), "a").map(|a| a.id), Some(3), "a keeps it");
        let stale = Claim { last_report: Instant::now().checked_sub(LEASE * 2).expect("uptime"), ..Claim::new("a") };
        let mut entry = entry_with(RebuildState::Running, Some(stale));
        assert_eq!(assign(Some(&mut entry), "b").map(|a| a.id), Some(3), "a went silent");
        assert_eq!(assign(Some(&mut entry_with(RebuildState::Done, None)), "a"), None);
        assert_eq!(assign(None, "a"), None);
    }

    #[test]
    fn only_active_rebuilds_close_categories() {
        let entries = BTreeMap::from([
            ("a".to_string(), entry_with(RebuildState::Running, None)),
            ("b".to_string(), entry_with(RebuildState::Cancelled, None)),
        ]);
        assert_eq!(closed_categories(&entries), BTreeMap::from([("order".to_string(), "a".to_string())]));
    }

    #[test]
    fn progress_gives_rate_and_eta() {
        let mut claim = Claim::new("a");
        claim.progress(1000);
        let earlier = Instant::now().checked_sub(Duration::from_secs(2)).expect("uptime");
        claim.first = Some((earlier, 1000));
        claim.progress(5000);
        let rate = claim.rate();
        assert!(rate > 1000.0 && rate <= 2000.0, "{rate}");
        let rebuild = entry_with(RebuildState::Running, Some(claim)).rebuild.expect("set");
        let info = rebuild.info(9000);
        assert_eq!((info.done, info.total), (5000, 9000));
        let eta = info.eta_seconds.expect("moving");
        assert!((eta - 4000.0 / rate).abs() < 1e-6, "{eta}");
    }

    #[test]
    fn bad_names_and_categories_are_refused() {
        assert!(check_name("order_totals").is_ok());
        for bad in ["", "Orders", "1a", "a-b", &"x".repeat(49)] {
            assert_eq!(check_name(bad).expect_err(bad).code, ErrorCode::InvalidProjection);
        }
        assert_eq!(check_categories(&["b".into(), "a".into(), "b".into()]).expect("valid"), vec!["a", "b"]);
        assert_eq!(check_categories(&["order-1".into()]).expect_err("dash").code, ErrorCode::InvalidCategory);
        assert_eq!(check_categories(&["$all".into()]).expect_err("system").code, ErrorCode::InvalidCategory);
        assert_eq!(check_categories(&[String::new()]).expect_err("empty").code, ErrorCode::InvalidCategory);
    }
}
