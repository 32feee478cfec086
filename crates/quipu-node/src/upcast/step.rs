//! [`Step`]: one declarative change of an event's JSON data, from one
//! version of its type to the next.
//!
//! Paths are dot-separated object keys (`address.city`). What each step
//! promises, applied to an object:
//! - `rename {path, to}`: the field at `path` gets the name `to` in the
//!   same object (nothing when absent);
//! - `add {path, value}`: the field is set to `value` when absent (missing
//!   parent objects are created);
//! - `remove {path}`: the field is gone;
//! - `move {from, to}`: the field moves to another path (nothing when
//!   absent);
//! - `map {path, values}`: a value found in `values` (compared as JSON
//!   text of the value) is replaced by its mapping; others stay.
//!
//! Data that is not a JSON object is left as it is.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
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
        values: Map<String, Value>,
    },
}

impl Step {
    /// Checks the paths: non-empty keys, and `rename` to a plain name.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), String> {
        let path_ok = |p: &str| !p.is_empty() && p.split('.').all(|k| !k.is_empty());
        let paths: Vec<&str> = match self {
            Step::Rename { path, to } => {
                if to.is_empty() || to.contains('.') {
                    return Err(format!(
                        "rename to {to:?}: a new name is one key without '.'; use move for another path"
                    ));
                }
                vec![path]
            }
            Step::Add { path, .. } | Step::Remove { path } | Step::Map { path, .. } => vec![path],
            Step::Move { from, to } => vec![from, to],
        };
        match paths.into_iter().find(|p| !path_ok(p)) {
            Some(bad) => Err(format!("path {bad:?} must be dot-separated non-empty keys")),
            None => Ok(()),
        }
    }

    /// Applies the step to `data`.
    pub fn apply(&self, data: &mut Value) {
        match self {
            Step::Rename { path, to } => {
                let (parent, key) = split(path);
                if let Some(object) = object_at(data, parent)
                    && let Some(value) = object.remove(key)
                {
                    object.insert(to.clone(), value);
                }
            }
            Step::Add { path, value } => {
                let (parent, key) = split(path);
                if let Some(object) = object_at_creating(data, parent) {
                    object.entry(key.to_string()).or_insert_with(|| value.clone());
                }
            }
            Step::Remove { path } => {
                let (parent, key) = split(path);
                if let Some(object) = object_at(data, parent) {
                    object.remove(key);
                }
            }
            Step::Move { from, to } => {
                let (parent, key) = split(from);
                let taken = object_at(data, parent).and_then(|o| o.remove(key));
                let (to_parent, to_key) = split(to);
                if let Some(value) = taken
                    && let Some(object) = object_at_creating(data, to_parent)
                {
                    object.insert(to_key.to_string(), value);
                }
            }
            Step::Map { path, values } => {
                let (parent, key) = split(path);
                if let Some(object) = object_at(data, parent)
                    && let Some(value) = object.get_mut(key)
                    && let Some(mapped) = values.get(&value.to_string())
                {
                    *value = mapped.clone();
                }
            }
        }
    }
}

/// `a.b.c` as (`a.b`, `c`); a top-level key has an empty parent.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('.').unwrap_or(("", path))
}

fn object_at<'a>(data: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut here = data;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        here = here.as_object_mut()?.get_mut(key)?;
    }
    here.as_object_mut()
}

fn object_at_creating<'a>(data: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut here = data;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        here = here.as_object_mut()?.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    here.as_object_mut()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(value: Value) -> Step {
        serde_json::from_value(value).expect("a step")
    }

    #[test]
    fn each_step_changes_what_it_says_and_nothing_else() {
        let mut data = json!({"name": "Ada", "address": {"town": "London"}, "status": "open", "n": 1});
        step(json!({"rename": {"path": "address.town", "to": "city"}})).apply(&mut data);
        step(json!({"add": {"path": "address.country", "value": "UK"}})).apply(&mut data);
        step(json!({"add": {"path": "name", "value": "ignored"}})).apply(&mut data);
        step(json!({"move": {"from": "name", "to": "person.name"}})).apply(&mut data);
        step(json!({"remove": {"path": "n"}})).apply(&mut data);
        step(json!({"map": {"path": "status", "values": {"\"open\"": "active"}}})).apply(&mut data);
        step(json!({"rename": {"path": "missing", "to": "x"}})).apply(&mut data);
        assert_eq!(
            data,
            json!({"address": {"city": "London", "country": "UK"}, "person": {"name": "Ada"}, "status": "active"})
        );
        let mut not_an_object = json!([1, 2]);
        step(json!({"add": {"path": "x", "value": 1}})).apply(&mut not_an_object);
        assert_eq!(not_an_object, json!([1, 2]));
    }

    #[test]
    fn bad_steps_are_refused() {
        assert!(step(json!({"rename": {"path": "a", "to": "b.c"}})).check().is_err());
        assert!(step(json!({"remove": {"path": "a..b"}})).check().is_err());
        assert!(step(json!({"move": {"from": "a", "to": ""}})).check().is_err());
        assert!(serde_json::from_value::<Step>(json!({"explode": {"path": "a"}})).is_err());
        assert!(step(json!({"map": {"path": "a.b", "values": {}}})).check().is_ok());
    }
}
