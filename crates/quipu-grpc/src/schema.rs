//! The gRPC service `quipu.v1.Schemas` (see `proto/quipu/v1/schemas.proto`)
//! over the server's [`Schemas`].

use std::sync::Arc;

use quipu_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::wire::status;
use quipu_node::schema::compatibility::Mode;
use quipu_node::schema::registry::{SchemaError, SchemaVersion, Schemas, Scope};
use quipu_node::upcast::{Upcaster, Upcasters};
use quipu_node::{ApiError, ErrorCode};

/// The service over the registry.
pub struct SchemasService {
    schemas: Arc<Schemas>,
    upcasters: Arc<Upcasters>,
}

impl SchemasService {
    /// The service.
    #[must_use]
    pub fn new(schemas: Arc<Schemas>, upcasters: Arc<Upcasters>) -> SchemasService {
        SchemasService { schemas, upcasters }
    }

    fn validation_scopes(&self) -> pb::ValidationScopes {
        let mut scopes = pb::ValidationScopes::default();
        for scope in self.schemas.validated() {
            match scope {
                Scope::EventType(event_type) => scopes.event_types.push(event_type),
                Scope::Category(category) => scopes.categories.push(category),
            }
        }
        scopes
    }

    fn upcaster_set(&self) -> pb::UpcasterSet {
        let (set_version, declared) = self.upcasters.list();
        let upcasters = declared
            .into_iter()
            .map(|u| pb::Upcaster {
                event_type: u.event_type,
                from_version: u.from_version,
                steps: serde_json::to_string(&u.steps).unwrap_or_default(),
            })
            .collect();
        pb::UpcasterSet { set_version, upcasters }
    }
}

fn version_message(version: SchemaVersion) -> pb::SchemaVersion {
    pb::SchemaVersion { subject: version.subject, version: version.version, id: version.id, schema: version.schema }
}

fn schema_status(error: SchemaError) -> Status {
    match error {
        SchemaError::Api(error) => status(error),
        SchemaError::Incompatible(breaks) => {
            Status::failed_precondition(format!("incompatible: {}", breaks.join("; ")))
        }
    }
}

fn subject(subject: &str) -> Option<&str> {
    (!subject.is_empty()).then_some(subject)
}

#[tonic::async_trait]
impl pb::schemas_server::Schemas for SchemasService {
    async fn register_schema(
        &self,
        request: Request<pb::SchemaRequest>,
    ) -> Result<Response<pb::SchemaVersion>, Status> {
        let r = request.into_inner();
        let version = self.schemas.register(&r.subject, &r.schema).await.map_err(schema_status)?;
        Ok(Response::new(version_message(version)))
    }

    async fn check_schema(
        &self,
        request: Request<pb::SchemaRequest>,
    ) -> Result<Response<pb::CheckSchemaResponse>, Status> {
        let r = request.into_inner();
        let breaks = self.schemas.check(&r.subject, None, &r.schema).map_err(status)?;
        Ok(Response::new(pb::CheckSchemaResponse { compatible: breaks.is_empty(), breaks }))
    }

    async fn get_schema(&self, request: Request<pb::GetSchemaRequest>) -> Result<Response<pb::SchemaVersion>, Status> {
        let r = request.into_inner();
        let version = (r.version > 0).then_some(r.version);
        Ok(Response::new(version_message(self.schemas.version(&r.subject, version).map_err(status)?)))
    }

    async fn list_schemas(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ListSchemasResponse>, Status> {
        let mut versions = Vec::new();
        for subject in self.schemas.subjects() {
            versions.extend(self.schemas.versions(&subject).map_err(status)?.into_iter().map(version_message));
        }
        Ok(Response::new(pb::ListSchemasResponse { versions }))
    }

    async fn set_compatibility(
        &self,
        request: Request<pb::Compatibility>,
    ) -> Result<Response<pb::Compatibility>, Status> {
        let r = request.into_inner();
        let mode = Mode::parse(&r.mode).map_err(|m| status(ApiError::new(ErrorCode::InvalidCompatibility, m)))?;
        let set = self.schemas.set_mode(subject(&r.subject), mode).await.map_err(status)?;
        Ok(Response::new(pb::Compatibility { subject: r.subject, mode: set.name() }))
    }

    async fn declare_upcaster(&self, request: Request<pb::Upcaster>) -> Result<Response<pb::UpcasterSet>, Status> {
        let r = request.into_inner();
        let steps = serde_json::from_str(&r.steps).map_err(|e| {
            status(ApiError::new(ErrorCode::InvalidUpcaster, format!("steps are not a JSON array of steps: {e}")))
        })?;
        let upcaster = Upcaster { event_type: r.event_type, from_version: r.from_version, steps };
        self.upcasters.declare(upcaster).await.map_err(status)?;
        Ok(Response::new(self.upcaster_set()))
    }

    async fn set_validation(
        &self,
        request: Request<pb::ValidationScope>,
    ) -> Result<Response<pb::ValidationScopes>, Status> {
        use pb::validation_scope::Scope as S;
        let r = request.into_inner();
        let scope = match r.scope {
            Some(S::EventType(event_type)) => Scope::EventType(event_type),
            Some(S::Category(category)) => Scope::Category(category),
            None => return Err(status(ApiError::new(ErrorCode::InvalidScope, "name an event type or a category"))),
        };
        self.schemas.set_validation(scope, r.enabled).await.map_err(status)?;
        Ok(Response::new(self.validation_scopes()))
    }

    async fn list_validation(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ValidationScopes>, Status> {
        Ok(Response::new(self.validation_scopes()))
    }

    async fn list_upcasters(&self, _request: Request<pb::Empty>) -> Result<Response<pb::UpcasterSet>, Status> {
        Ok(Response::new(self.upcaster_set()))
    }

    async fn get_compatibility(
        &self,
        request: Request<pb::Compatibility>,
    ) -> Result<Response<pb::Compatibility>, Status> {
        let r = request.into_inner();
        let mode = self.schemas.mode(subject(&r.subject));
        Ok(Response::new(pb::Compatibility { subject: r.subject, mode: mode.name() }))
    }
}
