//! Compatibility of JSON Schemas: whether a reader schema accepts every
//! document a writer schema accepts, and the modes built on it.
//!
//! What it promises: [`check`] returns no breaks only when, for the subset
//! of JSON Schema it understands (`type`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `const`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `minItems`, `maxItems`), every
//! document valid under the writer is valid under the reader. Each break
//! names the JSON path, what changed, and the rule it breaks. Keywords
//! outside that subset are compared for equality, so a change to one is a
//! break rather than a silent pass.
//!
//! The modes, as in the Confluent Schema Registry: BACKWARD (the new
//! schema reads what the previous one wrote), FORWARD (the previous one
//! reads what the new one writes), FULL (both); the TRANSITIVE variants
//! check against every earlier version, not only the latest; NONE checks
//! nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A compatibility mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Nothing is checked.
    None,
    /// The new schema reads data written with the latest one.
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with the new one.
    Forward,
    /// Every earlier schema does.
    ForwardTransitive,
    /// Backward and forward with the latest.
    Full,
    /// Backward and forward with every earlier one.
    FullTransitive,
}

impl Mode {
    /// Parses `BACKWARD`, `full_transitive`, ...
    ///
    /// # Errors
    /// The text, when it names no mode.
    pub fn parse(text: &str) -> Result<Mode, String> {
        serde_json::from_value(Value::String(text.to_ascii_uppercase())).map_err(|_| {
            format!(
                "unknown compatibility {text:?}; use NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE"
            )
        })
    }

    /// The name, e.g. `BACKWARD_TRANSITIVE`.
    #[must_use]
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    fn transitive(self) -> bool {
        matches!(self, Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive)
    }

    fn backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::BackwardTransitive | Mode::Full | Mode::FullTransitive)
    }

    fn forward(self) -> bool {
        matches!(self, Mode::Forward | Mode::ForwardTransitive | Mode::Full | Mode::FullTransitive)
    }
}

/// Checks `new` against the earlier versions (oldest first) under `mode`;
/// returns every break, each saying which version, where, and which rule.
#[must_use]
pub fn check_against(mode: Mode, new: &Value, earlier: &[(u32, Value)]) -> Vec<String> {
    let against: Vec<&(u32, Value)> =
        if mode.transitive() { earlier.iter().collect() } else { earlier.last().into_iter().collect() };
    let mut breaks = Vec::new();
    for (version, old) in against {
        if mode.backward() {
            for reason in check(new, old) {
                breaks.push(format!(
                    "BACKWARD with version {version}: the new schema cannot read what it wrote: {reason}"
                ));
            }
        }
        if mode.forward() {
            for reason in check(old, new) {
                breaks.push(format!(
                    "FORWARD with version {version}: it cannot read what the new schema writes: {reason}"
                ));
            }
        }
    }
    breaks
}

/// Why `reader` may refuse a document `writer` accepts (empty: it never
/// does, as far as the understood subset goes).
#[must_use]
pub fn check(reader: &Value, writer: &Value) -> Vec<String> {
    let mut breaks = Vec::new();
    compare(reader, writer, "$", &mut breaks);
    breaks
}

/// Keywords whose meaning `compare` knows.
const UNDERSTOOD: [&str; 19] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    // Annotations: no effect on which documents are valid.
    "title",
    "description",
    "$schema",
    "$id",
    "default",
    "examples",
];

fn compare(reader: &Value, writer: &Value, path: &str, breaks: &mut Vec<String>) {
    // `true` accepts everything (as `{}` does), `false` nothing.
    let any = Map::new();
    let r = match reader {
        Value::Object(r) => r,
        Value::Bool(false) if writer != &Value::Bool(false) => {
            breaks.push(format!("{path}: the reader accepts nothing there"));
            return;
        }
        _ => return,
    };
    let w = match writer {
        Value::Object(w) => w,
        Value::Bool(false) => return,
        _ => &any,
    };
    compare_types(r, w, path, breaks);
    compare_values(r, w, path, breaks);
    compare_bounds(r, w, path, breaks);
    compare_object(r, w, path, breaks);
    if let Some(items) = r.get("items") {
        let writer_items = w.get("items").unwrap_or(&Value::Bool(true));
        compare(items, writer_items, &format!("{path}[]"), breaks);
    }
    for (key, value) in r {
        if !UNDERSTOOD.contains(&key.as_str()) && w.get(key) != Some(value) {
            breaks.push(format!("{path}: keyword {key:?} differs and is not understood, so it counts as a break"));
        }
    }
}

/// The types a schema allows; `None` for any.
fn types(schema: &Map<String, Value>) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()),
        _ => None,
    }
}

fn compare_types(r: &Map<String, Value>, w: &Map<String, Value>, path: &str, breaks: &mut Vec<String>) {
    let Some(reader) = types(r) else { return };
    let allowed = |t: &str| reader.iter().any(|a| a == t || (a == "number" && t == "integer"));
    match types(w) {
        None => breaks.push(format!("{path}: the type was narrowed to {reader:?} from any type")),
        Some(writer) => {
            for t in writer.iter().filter(|t| !allowed(t)) {
                breaks.push(format!("{path}: type {t:?} is no longer allowed (now {reader:?})"));
            }
        }
    }
}

fn compare_values(r: &Map<String, Value>, w: &Map<String, Value>, path: &str, breaks: &mut Vec<String>) {
    let allowed = |schema: &Map<String, Value>| -> Option<Vec<Value>> {
        match (schema.get("enum"), schema.get("const")) {
            (Some(Value::Array(values)), _) => Some(values.clone()),
            (_, Some(value)) => Some(vec![value.clone()]),
            _ => None,
        }
    };
    let Some(reader) = allowed(r) else { return };
    match allowed(w) {
        None => breaks.push(format!("{path}: values were restricted to {}", Value::Array(reader))),
        Some(writer) => {
            for value in writer.iter().filter(|v| !reader.contains(v)) {
                breaks.push(format!("{path}: value {value} is no longer allowed"));
            }
        }
    }
}

fn compare_bounds(r: &Map<String, Value>, w: &Map<String, Value>, path: &str, breaks: &mut Vec<String>) {
    for (keyword, lower) in [
        ("minimum", true),
        ("maximum", false),
        ("minLength", true),
        ("maxLength", false),
        ("minItems", true),
        ("maxItems", false),
    ] {
        let Some(bound) = r.get(keyword).and_then(Value::as_f64) else { continue };
        let holds = match w.get(keyword).and_then(Value::as_f64) {
            None => false,
            Some(writer) if lower => writer >= bound,
            Some(writer) => writer <= bound,
        };
        if !holds {
            breaks.push(format!("{path}: {keyword} {bound} is tighter than before"));
        }
    }
}

fn compare_object(r: &Map<String, Value>, w: &Map<String, Value>, path: &str, breaks: &mut Vec<String>) {
    let empty = Map::new();
    let reader_properties = r.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let writer_properties = w.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let writer_required: Vec<&str> = w
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let writer_closed = w.get("additionalProperties") == Some(&Value::Bool(false));
    if let Some(required) = r.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str).filter(|n| !writer_required.contains(n)) {
            breaks.push(format!("{path}: property {name:?} became required; documents written before may lack it"));
        }
    }
    let reader_additional = r.get("additionalProperties").unwrap_or(&Value::Bool(true));
    for (name, writer_schema) in writer_properties {
        let at = format!("{path}.{name}");
        match reader_properties.get(name) {
            Some(reader_schema) => compare(reader_schema, writer_schema, &at, breaks),
            None if reader_additional == &Value::Bool(false) => {
                breaks.push(format!("{at}: property was removed while additionalProperties is false"));
            }
            None => compare(reader_additional, writer_schema, &at, breaks),
        }
    }
    if !writer_closed {
        for (name, reader_schema) in reader_properties.iter().filter(|(n, _)| !writer_properties.contains_key(*n)) {
            let writer_additional = w.get("additionalProperties").unwrap_or(&Value::Bool(true));
            compare(reader_schema, writer_additional, &format!("{path}.{name}"), breaks);
        }
        if reader_additional == &Value::Bool(false) {
            breaks.push(format!(
                "{path}: additionalProperties became false; documents with other properties were allowed"
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order(extra: Value) -> Value {
        let mut schema = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "total": {"type": "integer"}},
            "required": ["id"]
        });
        if let (Some(schema), Some(extra)) = (schema.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                schema.insert(key.clone(), value.clone());
            }
        }
        schema
    }

    /// (change, old, new, backward?, forward?). Backward: the new schema
    /// accepts every document the old one does. In an open content model
    /// (no `additionalProperties: false`) an old document may hold any
    /// property, so adding one is a backward break and removing one a
    /// forward break; closed models are the other way round.
    fn matrix() -> Vec<(&'static str, Value, Value, bool, bool)> {
        let base = order(json!({}));
        let closed = order(json!({"additionalProperties": false}));
        let three = json!({"id": {"type": "string"}, "total": {"type": "integer"}, "note": {"type": "string"}});
        vec![
            ("nothing", base.clone(), base.clone(), true, true),
            ("add an optional field (open)", base.clone(), order(json!({"properties": three})), false, true),
            (
                "add an optional field (closed)",
                closed.clone(),
                order(json!({"properties": three, "additionalProperties": false})),
                true,
                false,
            ),
            (
                "add a required field",
                base.clone(),
                order(json!({"properties": three, "required": ["id", "note"]})),
                false,
                true,
            ),
            (
                "remove an optional field (open)",
                base.clone(),
                order(json!({"properties": {"id": {"type": "string"}}})),
                true,
                false,
            ),
            (
                "remove an optional field (closed)",
                closed.clone(),
                order(json!({"properties": {"id": {"type": "string"}}, "additionalProperties": false})),
                false,
                true,
            ),
            ("make a field required", base.clone(), order(json!({"required": ["id", "total"]})), false, true),
            ("make a field optional", order(json!({"required": ["id", "total"]})), base.clone(), true, false),
            (
                "change a field's type",
                base.clone(),
                order(json!({"properties": {"id": {"type": "string"}, "total": {"type": "string"}}})),
                false,
                false,
            ),
            (
                "widen integer to number",
                base.clone(),
                order(json!({"properties": {"id": {"type": "string"}, "total": {"type": "number"}}})),
                true,
                false,
            ),
            (
                "add an enum value",
                json!({"type": "string", "enum": ["a", "b"]}),
                json!({"type": "string", "enum": ["a", "b", "c"]}),
                true,
                false,
            ),
            (
                "tighten a maximum",
                json!({"type": "integer", "maximum": 10}),
                json!({"type": "integer", "maximum": 5}),
                false,
                true,
            ),
            ("close the schema", base.clone(), closed, false, true),
            (
                "change an unknown keyword",
                json!({"type": "string", "format": "uuid"}),
                json!({"type": "string", "format": "date"}),
                false,
                false,
            ),
        ]
    }

    #[test]
    fn the_compatibility_matrix() {
        for (change, old, new, backward, forward) in matrix() {
            let earlier = [(1, old)];
            let verdict = |mode| check_against(mode, &new, &earlier).is_empty();
            assert_eq!(
                verdict(Mode::Backward),
                backward,
                "BACKWARD: {change}: {:?}",
                check_against(Mode::Backward, &new, &earlier)
            );
            assert_eq!(
                verdict(Mode::Forward),
                forward,
                "FORWARD: {change}: {:?}",
                check_against(Mode::Forward, &new, &earlier)
            );
            assert_eq!(verdict(Mode::Full), backward && forward, "FULL: {change}");
            assert!(verdict(Mode::None), "NONE: {change}");
        }
    }

    #[test]
    fn transitive_modes_check_every_earlier_version() {
        // Version 2 changed the type while the subject's mode was NONE.
        let total = |t: &str| order(json!({"properties": {"id": {"type": "string"}, "total": {"type": t}}}));
        let earlier = [(1, total("integer")), (2, total("string"))];
        let new = total("string");
        assert!(check_against(Mode::Backward, &new, &earlier).is_empty(), "the latest reads it");
        let breaks = check_against(Mode::BackwardTransitive, &new, &earlier);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert!(breaks[0].contains("version 1") && breaks[0].contains("$.total"), "{}", breaks[0]);
    }

    #[test]
    fn breaks_name_the_path_and_the_rule() {
        let breaks = check_against(
            Mode::Backward,
            &order(json!({"properties": {"id": {"type": "string"}, "total": {"type": "string"}}})),
            &[(4, order(json!({})))],
        );
        assert_eq!(
            breaks,
            [
                "BACKWARD with version 4: the new schema cannot read what it wrote: $.total: type \"integer\" is no longer allowed (now [\"string\"])"
            ]
        );
        assert_eq!(Mode::parse("full_transitive"), Ok(Mode::FullTransitive));
        assert_eq!(Mode::FullTransitive.name(), "FULL_TRANSITIVE");
        assert!(Mode::parse("SIDEWAYS").is_err());
    }
}
