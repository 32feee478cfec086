//! Upcasting: declarative changes, per event type, from version n of its
//! data to n+1, applied when events are read, so readers see every event
//! of a type at its current version while the log keeps what was written.
//!
//! What it promises:
//! - An event's version is its metadata's `schema_version` (a JSON
//!   number), 1 when absent. A type's current version is one past its
//!   highest declared step; an older event is taken through each step in
//!   turn (v1 -> v2 -> v3), and comes out with `schema_version` set to the
//!   current version in its metadata.
//! - A raw read (`raw=true`) returns events as written.
//! - Declarations are kept in `$upcasters`; the set has a version (the
//!   number of declarations so far), listed with the declarations. A
//!   step from n to n+1 needs the one from n-1 first. Declarations other
//!   writers record apply from [`Upcasters::refresh`] on.
//! - Data that is not a JSON object, or metadata that is not a JSON
//!   object, is left as written.
//!
//! Modules: `step` ([`Step`]). The doors serve the declarations (HTTP at
//! `/v1/upcasters`).

pub mod step;

use std::collections::BTreeMap;
use std::sync::Arc;

use quipu_core::{EventType, RecordedEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use step::Step;

use crate::folded_log::{Fold, FoldedLog};
use crate::{ApiError, ErrorCode};

/// The system stream holding the declarations.
pub const UPCASTERS_STREAM: &str = "$upcasters";

/// The metadata key holding an event's version.
pub const VERSION_KEY: &str = "schema_version";

/// One declaration: how `event_type` goes from `from_version` to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upcaster {
    /// The event type.
    pub event_type: String,
    /// The version it reads; it writes `from_version + 1`.
    pub from_version: u32,
    /// The changes, in order.
    pub steps: Vec<Step>,
}

/// Records of `$upcasters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Declared(Upcaster),
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        "UpcasterDeclared"
    }
}

#[derive(Debug, Default)]
struct State {
    /// Event type -> from version -> steps.
    chains: BTreeMap<String, BTreeMap<u32, Vec<Step>>>,
    /// Declarations so far.
    set_version: u64,
}

impl Fold<Record> for State {
    fn fold(&mut self, Record::Declared(upcaster): Record) {
        self.chains.entry(upcaster.event_type).or_default().insert(upcaster.from_version, upcaster.steps);
        self.set_version += 1;
    }
}

/// The declared upcasters.
pub struct Upcasters {
    folded: FoldedLog<Record, State>,
}

impl Upcasters {
    /// Loads the declarations from `$upcasters`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>) -> Result<Upcasters, ApiError> {
        Ok(Upcasters { folded: FoldedLog::open(store, UPCASTERS_STREAM)? })
    }

    /// Takes in the declarations other writers recorded since: reads
    /// upcast by them from then on.
    ///
    /// # Errors
    /// As [`Upcasters::open`]; the declarations are then unchanged.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.folded.refresh().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.folded.state()
    }

    /// Declares (or replaces) how `event_type` goes from `from_version` to
    /// the next; returns the set's new version.
    ///
    /// # Errors
    /// 400 `invalid_upcaster` for a bad type, version, step, or a gap in
    /// the chain; store errors.
    pub async fn declare(&self, upcaster: Upcaster) -> Result<u64, ApiError> {
        let invalid = |message: String| ApiError::new(ErrorCode::InvalidUpcaster, message);
        EventType::new(upcaster.event_type.clone()).map_err(|e| invalid(e.to_string()))?;
        if upcaster.from_version == 0 {
            return Err(invalid("versions count from 1".into()));
        }
        if upcaster.steps.is_empty() {
            return Err(invalid("an upcaster has at least one step".into()));
        }
        for step in &upcaster.steps {
            step.check().map_err(invalid)?;
        }
        let mut writer = self.folded.writer().await?;
        let chained = upcaster.from_version == 1
            || writer
                .state()
                .chains
                .get(&upcaster.event_type)
                .is_some_and(|c| c.contains_key(&(upcaster.from_version - 1)));
        if !chained {
            return Err(invalid(format!(
                "{} has no upcaster from version {} to {}: declare it first",
                upcaster.event_type,
                upcaster.from_version - 1,
                upcaster.from_version
            )));
        }
        writer.append(Record::Declared(upcaster)).await?;
        Ok(writer.state().set_version)
    }

    /// The set's version and every declaration, by type and version.
    #[must_use]
    pub fn list(&self) -> (u64, Vec<Upcaster>) {
        let state = self.read();
        let upcasters = state
            .chains
            .iter()
            .flat_map(|(event_type, chain)| {
                chain.iter().map(|(from, steps)| Upcaster {
                    event_type: event_type.clone(),
                    from_version: *from,
                    steps: steps.clone(),
                })
            })
            .collect();
        (state.set_version, upcasters)
    }

    /// Brings `events` to their types' current versions.
    pub fn apply(&self, events: &mut [RecordedEvent]) {
        let state = self.read();
        if state.chains.is_empty() {
            return;
        }
        for event in events {
            if let Some(chain) = state.chains.get(event.event_type.as_str()) {
                upcast(event, chain);
            }
        }
    }
}

impl Upcasters {
    /// `event` at its type's current version, when that differs from what
    /// was written.
    #[must_use]
    pub fn upcast_one(&self, event: &RecordedEvent) -> Option<RecordedEvent> {
        let state = self.read();
        let chain = state.chains.get(event.event_type.as_str())?;
        let mut upcast = event.clone();
        self::upcast(&mut upcast, chain);
        (upcast != *event).then_some(upcast)
    }
}

/// Takes `event` through `chain` from its version to the last.
fn upcast(event: &mut RecordedEvent, chain: &BTreeMap<u32, Vec<Step>>) {
    let Ok(Value::Object(mut metadata)) = metadata_of(&event.metadata) else { return };
    let mut version =
        metadata.get(VERSION_KEY).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).unwrap_or(1);
    let Some(steps) = chain.get(&version) else { return };
    let Ok(mut data) = serde_json::from_slice::<Value>(&event.data) else { return };
    if !data.is_object() {
        return;
    }
    let mut next = Some(steps);
    while let Some(steps) = next {
        for step in steps {
            step.apply(&mut data);
        }
        version += 1;
        next = chain.get(&version);
    }
    metadata.insert(VERSION_KEY.into(), Value::from(version));
    event.data = data.to_string().into_bytes();
    event.metadata = Value::Object(metadata).to_string().into_bytes();
}

/// Metadata as JSON: empty metadata is an empty object.
fn metadata_of(metadata: &[u8]) -> Result<Value, serde_json::Error> {
    if metadata.is_empty() { Ok(Value::Object(serde_json::Map::new())) } else { serde_json::from_slice(metadata) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(data: Value, metadata: &str) -> RecordedEvent {
        RecordedEvent {
            id: quipu_core::EventId::random(),
            stream: quipu_core::StreamName::new("customer-1").expect("valid"),
            revision: quipu_core::Revision(0),
            position: quipu_core::Position(0),
            event_type: EventType::new("CustomerRegistered").expect("valid"),
            data: data.to_string().into_bytes(),
            metadata: metadata.as_bytes().to_vec(),
            tags: Vec::new(),
            recorded_at_us: 0,
        }
    }

    fn chain() -> BTreeMap<u32, Vec<Step>> {
        let steps = |value: Value| -> Vec<Step> { serde_json::from_value(value).expect("steps") };
        BTreeMap::from([
            (1, steps(json!([{"rename": {"path": "name", "to": "full_name"}}]))),
            (
                2,
                steps(
                    json!([{"add": {"path": "tier", "value": "basic"}}, {"move": {"from": "town", "to": "address.city"}}]),
                ),
            ),
        ])
    }

    #[test]
    fn chains_take_each_version_to_the_current_one() {
        let v3 = json!({"full_name": "Ada", "tier": "basic", "address": {"city": "London"}});
        for (data, metadata) in [
            (json!({"name": "Ada", "town": "London"}), ""),
            (json!({"name": "Ada", "town": "London"}), r#"{"schema_version": 1, "by": "import"}"#),
            (json!({"full_name": "Ada", "town": "London"}), r#"{"schema_version": 2}"#),
        ] {
            let mut e = event(data, metadata);
            upcast(&mut e, &chain());
            assert_eq!(serde_json::from_slice::<Value>(&e.data).expect("JSON"), v3);
            let metadata: Value = serde_json::from_slice(&e.metadata).expect("JSON");
            assert_eq!(metadata.get("schema_version"), Some(&json!(3)));
        }
        let mut current = event(v3.clone(), r#"{"schema_version": 3}"#);
        let before = current.clone();
        upcast(&mut current, &chain());
        assert_eq!(current, before, "the current version is left alone");
        let mut opaque = event(json!([1]), "");
        let before = opaque.clone();
        upcast(&mut opaque, &chain());
        assert_eq!(opaque, before, "data that is not an object is left alone");
    }

    fn upcaster(event_type: &str, from_version: u32) -> Upcaster {
        let steps = json!([{"add": {"path": format!("v{}", from_version + 1), "value": true}}]);
        Upcaster { event_type: event_type.into(), from_version, steps: serde_json::from_value(steps).expect("steps") }
    }

    /// Two registries over one store (two nodes of a cluster): each takes
    /// in the other's declarations on refresh, and a declaration through
    /// either refreshes first, so it chains onto the other's and counts
    /// them in the set's version.
    #[tokio::test]
    async fn declarations_another_writer_records_are_taken_in_on_refresh_and_changes_follow_them() {
        let (_dir, _store, one, two) = crate::record_log::two_over_one_store(Upcasters::open);
        assert_eq!(one.declare(upcaster("Placed", 1)).await.expect("declare"), 1);
        assert_eq!(two.list(), (0, Vec::new()), "not before a refresh");
        two.refresh().await.expect("refresh");
        assert_eq!(two.list(), (1, vec![upcaster("Placed", 1)]));

        assert_eq!(one.declare(upcaster("Shipped", 1)).await.expect("declare"), 2);
        let version = two.declare(upcaster("Shipped", 2)).await.expect("chains onto one's Shipped v1");
        assert_eq!(version, 3);

        assert_eq!(one.list().0, 2, "not before a refresh");
        one.refresh().await.expect("refresh");
        assert_eq!(one.list(), two.list());
        assert_eq!(one.list().1.len(), 3);
    }
}
