//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.
//! utoipa generates it: each handler's `#[utoipa::path]` annotation gives
//! its operation (summary, parameters, bodies, answers and their
//! statuses), and the JSON shapes' `ToSchema` derives give the schemas.
//! The router registers each route through an `OpenApiRouter` together
//! with its annotation, so [`crate::router`] serves exactly the routes the
//! document describes; tests check that against the routes it serves.

use std::sync::Arc;

use axum::Json;
use axum::extract::Extension;
use utoipa::OpenApi;

use crate::error::ErrorBody;

/// The document's frame: what it says beside the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Quipu",
        version = env!("CARGO_PKG_VERSION"),
        description = "Event store: appends with optimistic concurrency, reads, subscriptions."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "service", description = "Liveness, metrics and this document."),
        (name = "streams", description = "Appends, reads, subscriptions, stream metadata and deletes."),
        (name = "groups", description = "Consumer groups and their members."),
        (name = "projections", description = "Projections, their runners and rebuilds."),
        (name = "integration", description = "Integration event types and their events."),
        (name = "snapshots", description = "Snapshots of streams and per-category snapshot policies."),
        (name = "schema validation", description = "Which appends are validated against their type's schema."),
        (name = "upcasting", description = "How events' data goes from one version of their type to the next."),
        (name = "scavenge", description = "Online removal of the events stream metadata hides."),
        (name = "schema registry", description = "The subset of the Confluent Schema Registry REST API that Kafka tooling uses; errors in Confluent's shape.")
    )
)]
struct Frame;

/// The document before any route is registered: its title, version,
/// description, tags and the `Error` schema every door's error answers
/// share.
#[must_use]
pub fn base() -> utoipa::openapi::OpenApi {
    Frame::openapi()
}

/// The document of the router's routes, as `/openapi.json` serves it.
#[derive(Clone)]
pub struct Document(Arc<utoipa::openapi::OpenApi>);

impl Document {
    /// The document `api`, as the routes registered it.
    #[must_use]
    pub fn new(api: utoipa::openapi::OpenApi) -> Document {
        Document(Arc::new(api))
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)))]
pub(crate) async fn serve(Extension(document): Extension<Document>) -> Json<utoipa::openapi::OpenApi> {
    Json(utoipa::openapi::OpenApi::clone(&document.0))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, header};
    use serde_json::{Value, json};
    use tower_service::Service;

    /// The methods an OpenAPI path item may describe.
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// The router over a node on a new store in `dir`.
    fn router_over(dir: &std::path::Path) -> Router {
        let store = quipu_core::Store::open(dir, quipu_core::Options::default()).expect("store");
        let node = quipu_node::Node::open(store).expect("node");
        let budget = quipu_node::byte_budget::ByteBudget::new(64 * 1024 * 1024);
        crate::router(&node, budget, std::time::Duration::from_secs(1))
    }

    async fn send(router: &Router, method: Method, path: &str) -> axum::response::Response {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
        router.clone().call(request).await.expect("routers do not fail")
    }

    /// The document `/openapi.json` serves.
    async fn served_document(router: &Router) -> Value {
        let response = send(router, Method::GET, "/openapi.json").await;
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        serde_json::from_slice(&body).expect("the document is JSON")
    }

    /// The paths the router routes. axum tells them only in its `Debug`
    /// output (`path_router: ... RouteId(n): "/path" ... fallback_router`);
    /// the checks fail if that output ever changes.
    fn routed_paths(router: &Router) -> BTreeSet<String> {
        let text = format!("{router:?}");
        let routes = text
            .split_once("path_router:")
            .and_then(|(_, rest)| rest.split_once("fallback_router:"))
            .map(|(routes, _)| routes)
            .unwrap_or_else(|| panic!("axum's Debug output changed: {text}"));
        let paths: BTreeSet<String> = routes
            .split("): \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|path| path.starts_with('/'))
            .map(str::to_string)
            .collect();
        assert!(paths.contains("/health"), "axum's Debug output changed: {text}");
        paths
    }

    /// The methods the router serves on `path`: those a request of a
    /// method no route takes (TRACE) is told in `Allow`, less the HEAD
    /// axum adds to each GET.
    async fn routed_methods(router: &Router, path: &str) -> BTreeSet<String> {
        let concrete: String =
            path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/");
        let response = send(router, Method::TRACE, &concrete).await;
        assert_eq!(response.status(), 405, "{path}: TRACE is routed");
        let allow = response.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
        allow.split(',').map(|m| m.trim().to_ascii_lowercase()).filter(|m| !m.is_empty() && m != "head").collect()
    }

    /// Each documented path and its methods.
    fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .map(|(path, item)| {
                let methods = METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_string()).collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// Every operation of the document, with its path.
    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = Vec::new();
        for (path, item) in paths {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    operations.push((format!("{} {path}", method.to_uppercase()), operation));
                }
            }
        }
        operations
    }

    /// Every `$ref` in `value`.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => found.push(target.clone()),
                        _ => references(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn the_document_describes_exactly_the_routes_the_router_serves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let router = router_over(dir.path());
        let doc = served_document(&router).await;
        let documented = documented(&doc);
        let routed = routed_paths(&router);
        let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
        assert_eq!(
            routed.difference(&documented_paths).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "routed but not described"
        );
        assert_eq!(
            documented_paths.difference(&routed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "described but not routed"
        );
        for (path, methods) in &documented {
            assert_eq!(&routed_methods(&router, path).await, methods, "{path}: routed methods against described ones");
        }
    }

    #[tokio::test]
    async fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let doc = served_document(&router_over(dir.path())).await;
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Quipu");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut found = Vec::new();
        references(&doc, &mut found);
        assert!(found.len() > 50, "only {} references", found.len());
        for reference in found {
            let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{reference}"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling reference {reference}");
        }
        assert!(doc["components"]["schemas"]["Error"]["required"] == serde_json::json!(["code", "message"]));
    }

    #[tokio::test]
    async fn every_operation_is_summarised_answers_and_declares_its_path_parameters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let doc = served_document(&router_over(dir.path())).await;
        let mut ids = BTreeSet::new();
        for (operation, described) in operations(&doc) {
            let id = described["operationId"].as_str().unwrap_or_else(|| panic!("{operation}: no operationId"));
            assert!(ids.insert(id.to_string()), "{operation}: operationId {id} is taken");
            assert!(described["summary"].as_str().is_some_and(|s| !s.is_empty()), "{operation}: no summary");
            let responses = described["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|status| status.starts_with('2')), "{operation}: no success answer");
            let declared: BTreeSet<&str> = described["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect()
                })
                .unwrap_or_default();
            let path = operation.split_once(' ').map(|(_, path)| path).unwrap_or_default();
            let templated: BTreeSet<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            assert_eq!(declared, templated, "{operation}: path parameters");
        }
        assert_eq!(ids.len(), 62, "every operation of the HTTP API");
    }

    /// `value` fits `schema` of `doc` as far as a client relies on it:
    /// each key of an object is a described property, each required one
    /// is there, and each value has a described type.
    fn conforms(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
        if let Some(target) = schema["$ref"].as_str() {
            let name = target.trim_start_matches("#/components/schemas/");
            return conforms(doc, &doc["components"]["schemas"][name], value).map_err(|e| format!("{name}: {e}"));
        }
        if let Some(alternatives) = schema["oneOf"].as_array() {
            let failures: Vec<String> = alternatives.iter().filter_map(|a| conforms(doc, a, value).err()).collect();
            return if failures.len() < alternatives.len() { Ok(()) } else { Err(failures.join(" | ")) };
        }
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = allowed.is_empty() || allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number"));
        if !fits {
            return Err(format!("{value} is not {allowed:?}"));
        }
        match value {
            Value::Object(object) => {
                if let Some(properties) = schema["properties"].as_object() {
                    for (key, item) in object {
                        let described = properties.get(key).ok_or_else(|| format!("undescribed key {key:?}"))?;
                        conforms(doc, described, item).map_err(|e| format!("{key}: {e}"))?;
                    }
                }
                let required = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str);
                match required.into_iter().find(|key| !object.contains_key(*key)) {
                    Some(missing) => Err(format!("missing {missing:?}")),
                    None => Ok(()),
                }
            }
            Value::Array(items) => items.iter().try_for_each(|item| conforms(doc, &schema["items"], item)),
            _ => Ok(()),
        }
    }

    /// One request of a scenario: method, the path as the document spells
    /// it, the path sent, the JSON body, and the status it must get.
    struct Step(&'static str, &'static str, String, Option<Value>, u16);

    fn step(method: &'static str, template: &'static str, path: &str, body: Option<Value>, status: u16) -> Step {
        Step(method, template, path.to_string(), body, status)
    }

    /// A GET of `template` at `path` that must answer 200.
    fn get(template: &'static str, path: &str) -> Step {
        step("GET", template, path, None, 200)
    }

    /// Sends the step's request and checks the answer against the
    /// document: its status is the step's, described for the operation,
    /// and a JSON body fits the described schema. Answers the body.
    async fn exchange(router: &Router, doc: &Value, Step(method, template, path, body, status): Step) -> Value {
        let mut request = Request::builder().method(method).uri(&path);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).expect("request");
        let response = router.clone().call(request).await.expect("routers do not fail");
        let answered = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(answered, status, "{method} {path}: {text}");
        let described = &doc["paths"][template][method.to_ascii_lowercase()]["responses"][status.to_string()];
        assert!(described.is_object(), "{method} {template}: answer {status} is not described");
        let Some(schema) = described["content"].get("application/json").map(|c| &c["schema"]) else {
            return Value::Null;
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
        if let Err(error) = conforms(doc, schema, &value) {
            panic!("{method} {path}: the answer does not fit its schema: {error}\n{value}");
        }
        value
    }

    /// Plays `steps` against a router over a new store whose stream
    /// `order-1` has two events; answers each step's body.
    async fn play(steps: Vec<Step>) -> Vec<Value> {
        let dir = tempfile::tempdir().expect("temp dir");
        let router = router_over(dir.path());
        let doc = served_document(&router).await;
        let events = json!({"events": [
            {"type": "Placed", "data": {"total": 5}, "metadata": {"by": "me"}, "tags": ["vip"]},
            {"type": "Paid"}]});
        exchange(&router, &doc, step("POST", "/v1/streams/{stream}", "/v1/streams/order-1", Some(events), 200)).await;
        let mut answers = Vec::new();
        for step in steps {
            answers.push(exchange(&router, &doc, step).await);
        }
        answers
    }

    #[tokio::test]
    async fn the_stream_routes_answer_as_described() {
        let stream = "/v1/streams/{stream}";
        let conflict = json!({"expected_revision": 7, "events": [{"type": "Placed"}]});
        let multi = json!({"writes": [{"stream": "order-2", "events": [{"type": "Placed"}]}],
                           "condition": {"query": [{"types": ["Shipped"]}], "after": 0}});
        let metadata = json!({"max_count": 5, "max_age_s": 3600, "truncate_before": 0, "custom": {"owner": "me"}});
        let answers = play(vec![
            get("/health", "/health"),
            step("POST", stream, "/v1/streams/order-1", Some(conflict), 409),
            step("POST", stream, "/v1/streams/order-1", Some(json!({"events": [{"type": ""}]})), 400),
            step("POST", "/v1/append", "/v1/append", Some(multi), 200),
            get(stream, "/v1/streams/order-1?limit=5&direction=backwards"),
            get("/v1/all", "/v1/all"),
            get("/v1/categories/{category}", "/v1/categories/order"),
            get("/v1/types/{event_type}", "/v1/types/Placed"),
            get("/v1/tags/{tag}", "/v1/tags/vip"),
            get("/v1/integration", "/v1/integration"),
            step("GET", stream, "/v1/streams/nothing", None, 404),
            step("GET", "/v1/all", "/v1/all?direction=sideways", None, 400),
            step("PUT", "/v1/streams/{stream}/metadata", "/v1/streams/order-1/metadata", Some(metadata), 200),
            get("/v1/streams/{stream}/metadata", "/v1/streams/order-1/metadata"),
            step("DELETE", stream, "/v1/streams/order-2?tombstone=true", None, 200),
            step("DELETE", stream, "/v1/streams/order-2", None, 410),
        ])
        .await;
        assert_eq!(answers[4]["events"].as_array().map(Vec::len), Some(2), "{}", answers[4]);
    }

    #[tokio::test]
    async fn the_group_routes_answer_as_described() {
        let group = json!({"name": "billing", "filter": {"category": "order"}, "start": "beginning",
                           "tuning": {"max_retries": 2}, "strategy": "round_robin"});
        let member = |tail: &str| format!("/v1/groups/billing/members/m1{tail}");
        let answers = play(vec![
            step("POST", "/v1/groups", "/v1/groups", Some(group.clone()), 201),
            step("POST", "/v1/groups", "/v1/groups", Some(group), 409),
            get("/v1/groups", "/v1/groups"),
            get("/v1/groups/{name}", "/v1/groups/billing"),
            step("GET", "/v1/groups/{name}", "/v1/groups/nobody", None, 404),
            step("PATCH", "/v1/groups/{name}", "/v1/groups/billing", Some(json!({"max_retries": 3})), 200),
            step(
                "POST",
                "/v1/groups/{name}/members/{member}/poll",
                &member("/poll"),
                Some(json!({"wait_ms": 500})),
                200,
            ),
            step(
                "POST",
                "/v1/groups/{name}/members/{member}/ack",
                &member("/ack"),
                Some(json!({"positions": [0]})),
                200,
            ),
            step(
                "POST",
                "/v1/groups/{name}/members/{member}/nack",
                &member("/nack"),
                Some(json!({"positions": [1], "action": "park", "reason": "no"})),
                200,
            ),
            step("POST", "/v1/groups/{name}/replay-parked", "/v1/groups/billing/replay-parked", None, 200),
            step("DELETE", "/v1/groups/{name}/members/{member}", &member(""), None, 200),
            step("DELETE", "/v1/groups/{name}", "/v1/groups/billing", None, 200),
        ])
        .await;
        assert_eq!(answers[6]["events"].as_array().map(Vec::len), Some(2), "{}", answers[6]);
    }

    #[tokio::test]
    async fn the_snapshot_and_integration_routes_answer_as_described() {
        let marked = "/v1/integration-types/{event_type}";
        let snapshots = "/v1/streams/{stream}/snapshots";
        let policy = "/v1/snapshot-policies/{category}";
        let answers = play(vec![
            step("PUT", marked, "/v1/integration-types/Placed", None, 200),
            get("/v1/integration-types", "/v1/integration-types"),
            step("DELETE", marked, "/v1/integration-types/Placed", None, 200),
            step("DELETE", marked, "/v1/integration-types/Placed", None, 404),
            step(
                "PUT",
                "/v1/streams/{stream}/snapshots/{revision}",
                "/v1/streams/order-1/snapshots/0",
                Some(json!({"schema_version": 1, "data": {"total": 5}})),
                200,
            ),
            get(snapshots, "/v1/streams/order-1/snapshots"),
            get("/v1/streams/{stream}/load", "/v1/streams/order-1/load?schema_version=1"),
            step("DELETE", snapshots, "/v1/streams/order-1/snapshots", None, 200),
            step("PUT", policy, "/v1/snapshot-policies/order", Some(json!({"every": 10, "schema_version": 1})), 200),
            get("/v1/snapshot-policies", "/v1/snapshot-policies"),
            step("DELETE", policy, "/v1/snapshot-policies/order", None, 200),
            step("DELETE", policy, "/v1/snapshot-policies/order", None, 404),
        ])
        .await;
        assert!(answers[6]["snapshot"]["data"].is_object(), "{}", answers[6]);
    }

    #[tokio::test]
    async fn the_registry_routes_answer_as_described() {
        let upcaster = json!({"event_type": "Placed", "from_version": 1,
                              "steps": [{"rename": {"path": "total", "to": "amount"}}, {"add": {"path": "currency", "value": "EUR"}}]});
        let schema = json!({"schema": json!({"type": "object"}).to_string(), "schemaType": "JSON"});
        let compatibility = "/compatibility/subjects/{subject}/versions/{version}";
        let by_type = "/v1/schema-validation/types/{event_type}";
        let by_category = "/v1/schema-validation/categories/{category}";
        play(vec![
            step("POST", "/v1/upcasters", "/v1/upcasters", Some(upcaster), 200),
            get("/v1/upcasters", "/v1/upcasters"),
            step("POST", "/subjects/{subject}/versions", "/subjects/Placed/versions", Some(schema.clone()), 200),
            step("POST", "/subjects/{subject}", "/subjects/Placed", Some(schema.clone()), 200),
            get("/subjects", "/subjects"),
            get("/subjects/{subject}/versions", "/subjects/Placed/versions"),
            step("GET", "/subjects/{subject}/versions", "/subjects/Nothing/versions", None, 404),
            get("/subjects/{subject}/versions/{version}", "/subjects/Placed/versions/latest"),
            get("/schemas/ids/{id}", "/schemas/ids/1"),
            step(
                "POST",
                compatibility,
                "/compatibility/subjects/Placed/versions/latest?verbose=true",
                Some(schema),
                200,
            ),
            get("/config", "/config"),
            step("PUT", "/config", "/config", Some(json!({"compatibility": "FULL"})), 200),
            step("PUT", "/config", "/config", Some(json!({"compatibility": "SOME"})), 422),
            get("/config/{subject}", "/config/Placed"),
            step("PUT", "/config/{subject}", "/config/Placed", Some(json!({"compatibility": "NONE"})), 200),
            step("PUT", by_type, "/v1/schema-validation/types/Placed", None, 200),
            step("PUT", by_category, "/v1/schema-validation/categories/order", None, 200),
            get("/v1/schema-validation", "/v1/schema-validation"),
            step("DELETE", by_type, "/v1/schema-validation/types/Placed", None, 200),
            step("DELETE", by_category, "/v1/schema-validation/categories/order", None, 200),
        ])
        .await;
    }

    #[tokio::test]
    async fn the_projection_and_scavenge_routes_answer_as_described() {
        let report = "/v1/projections/{name}/report";
        let rebuild = "/v1/projections/{name}/rebuild";
        let progress = json!({"runner": "host-1", "position": 1, "rebuild": {"id": 0, "running_done": 1}});
        play(vec![
            step(
                "POST",
                report,
                "/v1/projections/totals/report",
                Some(json!({"runner": "host-1", "position": 0})),
                200,
            ),
            get("/v1/projections", "/v1/projections"),
            get("/v1/projections/{name}", "/v1/projections/totals"),
            step("POST", rebuild, "/v1/projections/totals/rebuild", None, 202),
            step("POST", report, "/v1/projections/totals/report", Some(progress), 200),
            step("DELETE", rebuild, "/v1/projections/totals/rebuild", None, 200),
            get("/v1/projections/{name}", "/v1/projections/totals"),
            step("GET", "/v1/scavenge", "/v1/scavenge", None, 404),
            step("POST", "/v1/scavenge", "/v1/scavenge", None, 202),
            get("/v1/scavenge", "/v1/scavenge"),
        ])
        .await;
    }
}
