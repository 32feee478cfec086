//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.
//! Written by hand next to the routes; tests check that every route is
//! described and every schema reference resolves.

use serde_json::{Value, json};

fn read_parameters(from: &str) -> Value {
    json!([
        {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": from},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 100}, "description": "Events at most (the server's maximum is 10000 by default)."},
        {"name": "direction", "in": "query", "schema": {"type": "string", "enum": ["forwards", "backwards"], "default": "forwards"}},
        {"name": "to_revision", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "Streams only: read as the stream stood just after this revision. At most one of to_revision, to_position, as_of_us."},
        {"name": "to_position", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "Read as things stood just after this position of `$all`."},
        {"name": "as_of_us", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "Read as things stood after the last commit at or before this time (µs since the Unix epoch)."},
        {"name": "raw", "in": "query", "schema": {"type": "boolean"}, "description": "Events as written, without upcasting to their types' current versions."}
    ])
}

fn path_parameter(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn events_response() -> Value {
    json!({"description": "Events in order.", "content": {"application/json": {"schema": {"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}}}}})
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn position_read(summary: &str, parameter: Option<&str>) -> Value {
    let mut parameters =
        read_parameters("First position (inclusive); the start forwards, the end backwards when absent.");
    if let (Some(name), Some(list)) = (parameter, parameters.as_array_mut()) {
        list.insert(0, path_parameter(name));
    }
    json!({"get": {"summary": summary, "parameters": parameters, "responses": {"200": events_response(), "400": error_response("Bad parameters.")}}})
}

fn group_response() -> Value {
    json!({"description": "The group.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GroupInfo"}}}})
}

/// The consumer-group routes.
fn group_paths() -> Value {
    let name = || json!([path_parameter("name")]);
    let member = || json!([path_parameter("name"), path_parameter("member")]);
    json!({
        "/v1/groups": {
            "get": {"summary": "List consumer groups with their checkpoint, lag and members.",
                    "responses": {"200": {"description": "`{\"groups\": [GroupInfo]}`", "content": {"application/json": {"schema": {"type": "object", "properties": {"groups": {"type": "array", "items": {"$ref": "#/components/schemas/GroupInfo"}}}}}}}}},
            "post": {"summary": "Create a consumer group.",
                     "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GroupCreate"}}}},
                     "responses": {"201": group_response(), "400": error_response("A bad name or setting; `field` names it."), "409": error_response("A group of that name exists.")}}
        },
        "/v1/groups/{name}": {
            "get": {"summary": "A group's settings, state and members.", "parameters": name(),
                    "responses": {"200": group_response(), "404": error_response("No such group.")}},
            "patch": {"summary": "Change a group's retry and flow settings.", "parameters": name(),
                      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GroupTuning"}}}},
                      "responses": {"200": group_response(), "400": error_response("A bad setting."), "404": error_response("No such group.")}},
            "delete": {"summary": "Delete a group; its checkpoint and parked streams stay.", "parameters": name(),
                       "responses": {"200": {"description": "`{\"deleted\": name}`"}, "404": error_response("No such group.")}}
        },
        "/v1/groups/{name}/replay-parked": {"post": {"summary": "Deliver again every parked event not replayed yet.", "parameters": name(),
                                                     "responses": {"200": {"description": "`{\"group\", \"scheduled\"}`"}, "404": error_response("No such group.")}}},
        "/v1/groups/{name}/members/{member}": {"delete": {"summary": "Leave the group cleanly: events held go to other members without counting as failures.", "parameters": member(),
                                                          "responses": {"200": {"description": "`{\"left\": member}`"}, "404": error_response("No such member session.")}}},
        "/v1/groups/{name}/members/{member}/poll": {"post": {"summary": "Take deliveries; the first poll joins the group. A session idle longer than the group's message timeout leaves as failed.", "parameters": member(),
                                                             "requestBody": {"content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                                                                 "max": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                                                                 "wait_ms": {"type": "integer", "minimum": 0, "maximum": 30000, "default": 0}}}}}},
                                                             "responses": {"200": {"description": "`{\"events\": [{\"event\": Event, \"retries\": n}]}`"}, "400": error_response("Bad limits."), "404": error_response("No such group.")}}},
        "/v1/groups/{name}/members/{member}/ack": {"post": {"summary": "Acknowledge handled events.", "parameters": member(),
                                                            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["positions"], "properties": {"positions": {"type": "array", "items": {"type": "integer"}}}}}}},
                                                            "responses": {"200": {"description": "`{\"acked\": n}`"}, "404": error_response("No such member session.")}}},
        "/v1/groups/{name}/members/{member}/nack": {"post": {"summary": "Events that could not be handled: retry (after a backoff; parked when retries run out), park or skip.", "parameters": member(),
                                                             "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["positions", "action"], "properties": {
                                                                 "positions": {"type": "array", "items": {"type": "integer"}}, "action": {"type": "string", "enum": ["retry", "park", "skip"]}, "reason": {"type": "string"}}}}}},
                                                             "responses": {"200": {"description": "`{\"nacked\": n}`"}, "400": error_response("Bad body."), "404": error_response("No such member session.")}}}
    })
}

/// The consumer-group schemas.
fn group_schemas() -> Value {
    let integer = || json!({"type": "integer"});
    json!({
        "GroupTuning": {"type": "object", "additionalProperties": false, "properties": {
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 10},
            "message_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 3_600_000, "default": 30000},
            "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
            "backoff_base_ms": {"type": "integer", "default": 100},
            "backoff_max_ms": {"type": "integer", "maximum": 3_600_000, "default": 10000}}},
        "GroupFilter": {"type": "object", "additionalProperties": false, "description": "Every set field must match; `$` streams are never delivered.", "properties": {
            "category": {"type": "string"}, "event_types": {"type": "array", "items": {"type": "string"}}, "tag": {"type": "string"}, "stream_prefix": {"type": "string"}, "integration": {"type": "boolean"}}},
        "GroupCreate": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "filter": {"$ref": "#/components/schemas/GroupFilter"},
            "start": {"oneOf": [{"type": "string", "enum": ["beginning", "end"]}, {"type": "object", "properties": {"position": {"type": "integer", "minimum": 0}}}], "default": "beginning"},
            "tuning": {"$ref": "#/components/schemas/GroupTuning"}}},
        "GroupMember": {"type": "object", "properties": {
            "name": {"type": "string"}, "in_flight": integer(), "max_in_flight": integer(), "queued": integer(),
            "delivered": integer(), "acked": integer(), "failed": integer()}},
        "GroupInfo": {"type": "object", "properties": {
            "name": {"type": "string"}, "filter": {"$ref": "#/components/schemas/GroupFilter"}, "start": integer(),
            "checkpoint": {"type": "integer", "description": "Every event before this position is done."},
            "head": integer(), "lag": {"type": "integer", "description": "Positions from the checkpoint to the head: at most this many events left."},
            "in_flight": integer(), "retrying": integer(), "buffered": integer(), "parked": integer(),
            "parked_stream": {"type": "string"}, "checkpoint_stream": {"type": "string"},
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/GroupMember"}}}}
    })
}

fn projection_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProjectionInfo"}}}})
}

fn types_response() -> Value {
    json!({"description": "The marked types, sorted.", "content": {"application/json": {"schema": {"type": "object", "properties": {"types": {"type": "array", "items": {"type": "string"}}}}}}})
}

/// The projection and integration-type routes.
fn projection_paths() -> Value {
    let name = || json!([path_parameter("name")]);
    let event_type = || json!([path_parameter("event_type")]);
    json!({
        "/v1/projections": {"get": {"summary": "Projections whose runners reported since the server started, or that had a rebuild.",
            "responses": {"200": {"description": "`{\"projections\": [ProjectionInfo]}`", "content": {"application/json": {"schema": {"type": "object", "properties": {"projections": {"type": "array", "items": {"$ref": "#/components/schemas/ProjectionInfo"}}}}}}}}}},
        "/v1/projections/{name}": {"get": {"summary": "One projection, with its rebuild's progress (done/total positions, rate, ETA).", "parameters": name(),
            "responses": {"200": projection_response("The projection."), "404": error_response("The server knows no such projection.")}}},
        "/v1/projections/{name}/rebuild": {
            "post": {"summary": "Ask the projection's runners to rebuild it beside the live model and swap it in. With `block_categories`, appends to those categories are refused (409 `replay_in_progress`) until it ends.", "parameters": name(),
                     "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {"block_categories": {"type": "array", "items": {"type": "string"}}}}}}},
                     "responses": {"202": projection_response("Recorded in `$projections`."), "400": error_response("A bad name or category."), "409": error_response("A rebuild is pending or running.")}},
            "delete": {"summary": "Cancel the pending or running rebuild; the live model stays.", "parameters": name(),
                       "responses": {"200": projection_response("Cancelled."), "404": error_response("No rebuild is pending or running.")}}
        },
        "/v1/projections/{name}/report": {"post": {"summary": "A runner's report (see quipu-projection's Supervisor); answers the rebuild it should run.", "parameters": name(),
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunnerReport"}}}},
            "responses": {"200": {"description": "`{\"rebuild\": {\"id\", \"block_categories\"} | null}`"}, "400": error_response("A bad name, runner or report.")}}},
        "/v1/integration": position_read("Read the integration events: events whose type is marked when the read runs.", None),
        "/v1/integration-types": {"get": {"summary": "The event types marked as integration events.", "responses": {"200": types_response()}}},
        "/v1/integration-types/{event_type}": {
            "put": {"summary": "Mark a type as integration events (again: no change).", "parameters": event_type(),
                    "responses": {"200": types_response(), "400": error_response("An invalid type.")}},
            "delete": {"summary": "Unmark a type.", "parameters": event_type(),
                       "responses": {"200": types_response(), "404": error_response("The type is not marked.")}}
        }
    })
}

/// The snapshot routes.
fn snapshot_paths() -> Value {
    let stream = || json!([path_parameter("stream")]);
    let ok = |description: &str| json!({"description": description});
    json!({
        "/v1/streams/{stream}/snapshots": {
            "get": {"summary": "A stream's snapshots, oldest first, without data.", "parameters": stream(), "responses": {"200": ok("`{\"snapshots\": [{stream, revision, schema_version, written_at_us}]}`")}},
            "delete": {"summary": "Delete a stream's snapshots; its events stay.", "parameters": stream(), "responses": {"200": ok("`{\"deleted\": n}`")}}
        },
        "/v1/streams/{stream}/snapshots/{revision}": {"put": {"summary": "Store a stream's state after a revision.",
            "parameters": [path_parameter("stream"), {"name": "revision", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["schema_version", "data"], "properties": {"schema_version": {"type": "integer"}, "data": {}}}}}},
            "responses": {"200": ok("Stored."), "400": error_response("A revision the stream does not have, or a bad body."), "413": error_response("Too large.")}}},
        "/v1/streams/{stream}/load": {"get": {"summary": "The newest snapshot of the wanted version at or below the moment, and the events after it.",
            "parameters": [path_parameter("stream"),
                {"name": "schema_version", "in": "query", "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 1000}},
                {"name": "to_revision", "in": "query", "schema": {"type": "integer"}},
                {"name": "to_position", "in": "query", "schema": {"type": "integer"}},
                {"name": "as_of_us", "in": "query", "schema": {"type": "integer"}}],
            "responses": {"200": ok("`{snapshot, events, complete, next_revision, last_revision, snapshot_due, schema_version}`"), "404": error_response("The stream had no events then.")}}},
        "/v1/snapshot-policies": {"get": {"summary": "Per-category snapshot policies.", "responses": {"200": ok("`{\"policies\": [{category, every, schema_version}]}`")}}},
        "/v1/snapshot-policies/{category}": {
            "put": {"summary": "Set a category's policy: a snapshot is due when `every` events lie after the newest.", "parameters": [path_parameter("category")],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["every", "schema_version"], "properties": {"every": {"type": "integer", "minimum": 1}, "schema_version": {"type": "integer"}}}}}},
                    "responses": {"200": ok("The policy."), "400": error_response("A bad category or `every` 0.")}},
            "delete": {"summary": "Remove a category's policy.", "parameters": [path_parameter("category")],
                       "responses": {"200": ok("Removed."), "404": error_response("No policy.")}}
        }
    })
}

/// The schema registry's routes: the Confluent Schema Registry REST subset.
fn schema_paths() -> Value {
    let subject = || path_parameter("subject");
    let version = || json!({"name": "version", "in": "path", "required": true, "schema": {"type": "string"}, "description": "A version number or `latest`."});
    let schema_body = || json!({"required": true, "content": {"application/vnd.schemaregistry.v1+json": {"schema": {"type": "object", "required": ["schema"], "properties": {"schema": {"type": "string", "description": "A JSON Schema, as JSON text."}, "schemaType": {"type": "string", "enum": ["JSON"]}}}}}});
    let ok = |description: &str| json!({"description": description});
    let confluent_error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"type": "object", "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}}}}}});
    let config = || json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["compatibility"], "properties": {"compatibility": {"type": "string", "enum": ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]}}}}}});
    json!({
        "/subjects": {"get": {"summary": "Subjects (event types) with schemas.", "responses": {"200": ok("`[subject]`")}}},
        "/subjects/{subject}": {"post": {"summary": "The version a schema is registered as.", "parameters": [subject()], "requestBody": schema_body(),
            "responses": {"200": ok("`{subject, version, id, schemaType, schema}`"), "404": confluent_error("40401 subject, 40403 schema not found.")}}},
        "/subjects/{subject}/versions": {
            "get": {"summary": "A subject's versions.", "parameters": [subject()], "responses": {"200": ok("`[1, 2, ...]`"), "404": confluent_error("40401.")}},
            "post": {"summary": "Register a JSON Schema, checked under the subject's compatibility mode.", "parameters": [subject()], "requestBody": schema_body(),
                     "responses": {"200": ok("`{\"id\": n}`"), "409": confluent_error("Incompatible: every break named."), "422": confluent_error("42201 invalid schema.")}}
        },
        "/subjects/{subject}/versions/{version}": {"get": {"summary": "One version.", "parameters": [subject(), version()],
            "responses": {"200": ok("`{subject, version, id, schemaType, schema}`"), "404": confluent_error("40401, 40402."), "422": confluent_error("42202 bad version.")}}},
        "/schemas/ids/{id}": {"get": {"summary": "A schema by global id.", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "responses": {"200": ok("`{schema, schemaType}`"), "404": confluent_error("40403.")}}},
        "/compatibility/subjects/{subject}/versions/{version}": {"post": {"summary": "Whether a schema is compatible (with `?verbose=true`, the breaks).",
            "parameters": [subject(), version(), {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}], "requestBody": schema_body(),
            "responses": {"200": ok("`{is_compatible, messages}`"), "404": confluent_error("40401, 40402.")}}},
        "/config": {"get": {"summary": "The global compatibility mode (BACKWARD by default).", "responses": {"200": ok("`{compatibilityLevel}`")}},
                    "put": {"summary": "Set the global mode.", "requestBody": config(), "responses": {"200": ok("`{compatibility}`"), "422": confluent_error("42203.")}}},
        "/v1/schema-validation": {"get": {"summary": "Event types and categories whose appends are validated against their type's latest schema.", "responses": {"200": ok("`{event_types, categories}`")}}},
        "/v1/schema-validation/types/{event_type}": {
            "put": {"summary": "Validate appended events of this type.", "parameters": [path_parameter("event_type")], "responses": {"200": ok("`{event_types, categories}`"), "400": error_response("A bad type.")}},
            "delete": {"summary": "Stop validating this type.", "parameters": [path_parameter("event_type")], "responses": {"200": ok("`{event_types, categories}`")}}
        },
        "/v1/schema-validation/categories/{category}": {
            "put": {"summary": "Validate every appended event of this category's streams.", "parameters": [path_parameter("category")], "responses": {"200": ok("`{event_types, categories}`"), "400": error_response("A bad category.")}},
            "delete": {"summary": "Stop validating this category.", "parameters": [path_parameter("category")], "responses": {"200": ok("`{event_types, categories}`")}}
        },
        "/v1/streams/{stream}/metadata": {
            "get": {"summary": "A stream's metadata.", "parameters": [path_parameter("stream")], "responses": {"200": ok("`{max_count, max_age_s, truncate_before, custom, tombstoned}`")}},
            "put": {"summary": "Replace a stream's metadata; reads of the stream return only visible events.", "parameters": [path_parameter("stream")],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {"max_count": {"type": "integer", "minimum": 1}, "max_age_s": {"type": "integer"}, "truncate_before": {"type": "integer"}, "custom": {}}}}}},
                    "responses": {"200": ok("The metadata."), "400": error_response("A bad value."), "410": error_response("The stream is tombstoned.")}}
        },
        "/v1/scavenge": {
            "post": {"summary": "Start an online scavenge: remove from closed log segments every event stream metadata hides, while appends and reads go on.",
                     "responses": {"202": ok("The status: `{started_at_us, finished_at_us, state, streams, segments_total, segments_done, segments_rewritten, bytes_total, bytes_scanned, bytes_reclaimed, events_removed, bytes_per_second, message}`"), "409": error_response("`scavenge_running`: one runs.")}},
            "get": {"summary": "The running or last scavenge (state `running`, `done`, `stopped` or `failed`).", "responses": {"200": ok("The status."), "404": error_response("`no_scavenge`: none ran since the server started.")}},
            "delete": {"summary": "Stop the running scavenge after the segment in hand; what is done stays done.", "responses": {"200": ok("The status."), "404": error_response("`no_scavenge`."), "409": error_response("`scavenge_not_running`.")}}
        },
        "/v1/upcasters": {
            "get": {"summary": "The upcaster set's version and every declaration.", "responses": {"200": ok("`{set_version, upcasters: [{event_type, from_version, steps}]}`")}},
            "post": {"summary": "Declare how an event type's data goes from `from_version` to the next (steps: rename, add, remove, move, map).",
                     "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["event_type", "from_version", "steps"], "properties": {"event_type": {"type": "string"}, "from_version": {"type": "integer", "minimum": 1}, "steps": {"type": "array"}}}}}},
                     "responses": {"200": ok("`{set_version}`"), "400": error_response("A bad type, version or step, or a gap in the chain.")}}
        },
        "/config/{subject}": {"get": {"summary": "A subject's mode.", "parameters": [subject()], "responses": {"200": ok("`{compatibilityLevel}`")}},
                              "put": {"summary": "Set a subject's mode.", "parameters": [subject()], "requestBody": config(), "responses": {"200": ok("`{compatibility}`"), "422": confluent_error("42203.")}}}
    })
}

fn projection_schemas() -> Value {
    let integer = || json!({"type": "integer", "minimum": 0});
    json!({
        "RebuildInfo": {"type": "object", "properties": {
            "id": integer(), "state": {"type": "string", "enum": ["requested", "running", "done", "failed", "cancelled"]},
            "block_categories": {"type": "array", "items": {"type": "string"}}, "requested_at_us": integer(), "finished_at_us": integer(),
            "runner": {"type": "string"}, "done": {"type": "integer", "description": "The rebuild's next position."},
            "total": {"type": "integer", "description": "The position after the log's last event (the final position once done)."},
            "rate": {"type": "number", "description": "Positions per second."}, "eta_seconds": {"type": "number"}, "message": {"type": "string"}}},
        "ProjectionInfo": {"type": "object", "properties": {
            "name": {"type": "string"}, "runner": {"type": "string"}, "position": integer(), "head": integer(), "lag": integer(),
            "reported_ms_ago": integer(), "rebuild": {"$ref": "#/components/schemas/RebuildInfo"}}},
        "RunnerReport": {"type": "object", "required": ["runner"], "additionalProperties": false, "properties": {
            "runner": {"type": "string"}, "position": integer(),
            "rebuild": {"type": "object", "required": ["id"], "description": "Exactly one of running_done, done and failed.", "properties": {
                "id": integer(), "running_done": integer(), "done": integer(), "failed": {"type": "string"}}}}}
    })
}

/// Adds the entries of `more` to the object `doc[key]`.
fn extend(doc: &mut Value, key: &str, more: Value) {
    if let (Some(Value::Object(target)), Value::Object(more)) = (doc.get_mut(key), more) {
        target.extend(more);
    }
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let append_responses = json!({
        "200": {"description": "Written (durable) or, for a retry with the same ids, already written."},
        "400": error_response("Malformed input: JSON, names, ids, expected revision."),
        "409": error_response("A condition failed (`expected`, `actual`, `streams`, `condition_position`), or ids were reused by another append. Nothing was written."),
        "413": error_response("An event or the append is too large.")
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Quipu", "version": env!("CARGO_PKG_VERSION"), "description": "Event store: appends with optimistic concurrency, reads, subscriptions."},
        "paths": {
            "/health": {"get": {"summary": "Liveness.", "responses": {"200": {"description": "`{\"status\": \"ok\"}`"}}}},
            "/metrics": {"get": {"summary": "Prometheus text metrics.", "responses": {"200": {"description": "text/plain"}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/v1/streams/{stream}": {
                "post": {"summary": "Append events to one stream.", "parameters": [path_parameter("stream")],
                         "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StreamAppend"}}}},
                         "responses": append_responses.clone()},
                "get": {"summary": "Read a stream (its visible events, see its metadata).", "parameters": read_parameters("First revision (inclusive)."),
                        "responses": {"200": events_response(), "400": error_response("Bad parameters."), "404": error_response("No such stream, or nothing visible."), "410": error_response("Tombstoned.")}},
                "delete": {"summary": "Soft delete (reads as not found until new events come), or with `tombstone=true` delete for good.",
                           "parameters": [path_parameter("stream"), {"name": "tombstone", "in": "query", "schema": {"type": "boolean"}}],
                           "responses": {"200": {"description": "The stream's metadata."}, "404": error_response("No such stream."), "410": error_response("Already tombstoned.")}}
            },
            "/v1/append": {"post": {"summary": "Append atomically to several streams, with an optional DCB condition.",
                                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MultiAppend"}}}},
                                    "responses": append_responses}},
            "/v1/all": position_read("Read `$all`.", None),
            "/v1/categories/{category}": position_read("Read the events of a category (stream name before the first `-`).", Some("category")),
            "/v1/types/{event_type}": position_read("Read the events of one type.", Some("event_type")),
            "/v1/tags/{tag}": position_read("Read the events carrying a tag.", Some("tag")),
            "/v1/subscribe": {"get": {"summary": "Server-Sent Events: catch-up from `from` (or `Last-Event-ID` + 1), then live; `$all`, or at most one of `stream`, `category`, `type`, `tag`, `integration=true`. Each message: `event: event`, `id: <position>` (`<revision>` with `stream`), data: an Event.",
                                      "parameters": [
                                          {"name": "from", "in": "query", "description": "A revision with `stream`, else a position.", "schema": {"type": "integer", "minimum": 0}},
                                          {"name": "stream", "in": "query", "schema": {"type": "string"}},
                                          {"name": "category", "in": "query", "schema": {"type": "string"}},
                                          {"name": "type", "in": "query", "schema": {"type": "string"}},
                                          {"name": "tag", "in": "query", "schema": {"type": "string"}},
                                          {"name": "integration", "in": "query", "schema": {"type": "boolean"}}],
                                      "responses": {"200": {"description": "text/event-stream"}, "400": error_response("Bad parameters.")}}}
        },
        "components": {"schemas": {
            "ExpectedRevision": {"oneOf": [{"type": "string", "enum": ["any", "no_stream", "exists"]}, {"type": "integer", "minimum": 0}], "default": "any"},
            "ProposedEvent": {"type": "object", "required": ["type"], "additionalProperties": false, "properties": {
                "id": {"type": "string", "format": "uuid", "description": "Reuse it on retries: the append is then idempotent."},
                "type": {"type": "string"}, "data": {}, "metadata": {}, "tags": {"type": "array", "items": {"type": "string"}}}},
            "StreamAppend": {"type": "object", "required": ["events"], "additionalProperties": false, "properties": {
                "expected_revision": {"$ref": "#/components/schemas/ExpectedRevision"},
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/ProposedEvent"}}}},
            "MultiAppend": {"type": "object", "required": ["writes"], "additionalProperties": false, "properties": {
                "writes": {"type": "array", "items": {"type": "object", "required": ["stream", "events"], "properties": {
                    "stream": {"type": "string"}, "expected_revision": {"$ref": "#/components/schemas/ExpectedRevision"},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/ProposedEvent"}}}}},
                "condition": {"type": "object", "required": ["query"], "properties": {
                    "query": {"type": "array", "items": {"type": "object", "properties": {
                        "types": {"type": "array", "items": {"type": "string"}}, "tags": {"type": "array", "items": {"type": "string"}}}}},
                    "after": {"type": "integer", "minimum": 0}}}}},
            "Event": {"type": "object", "properties": {
                "id": {"type": "string"}, "stream": {"type": "string"}, "type": {"type": "string"}, "data": {}, "metadata": {},
                "tags": {"type": "array", "items": {"type": "string"}}, "revision": {"type": "integer"}, "position": {"type": "integer"},
                "recorded_at": {"type": "integer", "description": "Microseconds since the Unix epoch."}}},
            "Error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
        }}
    });
    extend(&mut doc, "paths", group_paths());
    extend(&mut doc, "paths", projection_paths());
    extend(&mut doc, "paths", snapshot_paths());
    extend(&mut doc, "paths", schema_paths());
    if let Some(components) = doc.get_mut("components") {
        extend(components, "schemas", group_schemas());
        extend(components, "schemas", projection_schemas());
    }
    doc
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Paths the document describes, as the router spells them.
    const PATHS: [&str; 43] = [
        "/health",
        "/metrics",
        "/openapi.json",
        "/v1/streams/{stream}",
        "/v1/append",
        "/v1/all",
        "/v1/categories/{category}",
        "/v1/types/{event_type}",
        "/v1/tags/{tag}",
        "/v1/subscribe",
        "/v1/groups",
        "/v1/groups/{name}",
        "/v1/groups/{name}/replay-parked",
        "/v1/groups/{name}/members/{member}",
        "/v1/groups/{name}/members/{member}/poll",
        "/v1/groups/{name}/members/{member}/ack",
        "/v1/groups/{name}/members/{member}/nack",
        "/v1/projections",
        "/v1/projections/{name}",
        "/v1/projections/{name}/rebuild",
        "/v1/projections/{name}/report",
        "/v1/integration",
        "/v1/integration-types",
        "/v1/integration-types/{event_type}",
        "/v1/streams/{stream}/snapshots",
        "/v1/streams/{stream}/snapshots/{revision}",
        "/v1/streams/{stream}/load",
        "/v1/snapshot-policies",
        "/v1/snapshot-policies/{category}",
        "/subjects",
        "/subjects/{subject}",
        "/subjects/{subject}/versions",
        "/subjects/{subject}/versions/{version}",
        "/schemas/ids/{id}",
        "/compatibility/subjects/{subject}/versions/{version}",
        "/config",
        "/config/{subject}",
        "/v1/upcasters",
        "/v1/schema-validation",
        "/v1/schema-validation/types/{event_type}",
        "/v1/schema-validation/categories/{category}",
        "/v1/streams/{stream}/metadata",
        "/v1/scavenge",
    ];

    #[test]
    fn every_route_is_described_and_every_reference_resolves() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), PATHS.len());
        for path in PATHS {
            assert!(paths.contains_key(path), "{path} is not described");
        }
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().expect("a name");
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling reference {name}");
        }
    }
}
