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
    use serde_json::Value;
    use tower_service::Service;

    /// The methods an OpenAPI path item may describe.
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// The router over a node on a new store in `dir`.
    fn router_over(dir: &std::path::Path) -> Router {
        let store = quipu_core::Store::open(dir, quipu_core::Options::default()).expect("store");
        let node = quipu_node::Node::open(store).expect("node");
        crate::router(&node)
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
        assert_eq!(ids.len(), 61, "every operation of the HTTP API");
    }
}
