//! The schema registry (`quipu.v1.Schemas`): register JSON Schemas per
//! event type, check compatibility, read versions, set modes.

use quipu_proto::v1 as pb;

use crate::Error;
use crate::client::Client;

/// One version of an event type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The subject (event type).
    pub subject: String,
    /// Its version, from 1.
    pub version: u32,
    /// Its global id.
    pub id: u32,
    /// The schema, as canonical JSON text.
    pub schema: String,
}

/// How an event type's data goes from one version to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Upcaster {
    /// The event type.
    pub event_type: String,
    /// The version it reads; it writes the next one.
    pub from_version: u32,
    /// The steps, a JSON array: `{"rename": {"path", "to"}}`, `{"add":
    /// {"path", "value"}}`, `{"remove": {"path"}}`, `{"move": {"from",
    /// "to"}}`, `{"map": {"path", "values"}}`.
    pub steps: serde_json::Value,
}

fn upcasters(set: pb::UpcasterSet) -> (u64, Vec<Upcaster>) {
    let declared = set
        .upcasters
        .into_iter()
        .map(|u| Upcaster {
            event_type: u.event_type,
            from_version: u.from_version,
            steps: serde_json::from_str(&u.steps).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    (set.set_version, declared)
}

fn version(v: pb::SchemaVersion) -> SchemaVersion {
    SchemaVersion { subject: v.subject, version: v.version, id: v.id, schema: v.schema }
}

impl Client {
    /// Registers `schema` (JSON text) for event type `subject`; returns the
    /// version, new or existing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad schema or subject;
    /// [`Error::Server`] with `FailedPrecondition` naming every break when
    /// it is incompatible.
    pub async fn register_schema(&self, subject: &str, schema: &str) -> Result<SchemaVersion, Error> {
        let request = pb::SchemaRequest { subject: subject.to_string(), schema: schema.to_string() };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.register_schema(request).await }
            })
            .await?;
        Ok(version(response))
    }

    /// The breaks `schema` would have against `subject`'s versions (empty:
    /// it could be registered).
    ///
    /// # Errors
    /// [`Error::NotFound`] for a subject without schemas.
    pub async fn check_schema(&self, subject: &str, schema: &str) -> Result<Vec<String>, Error> {
        let request = pb::SchemaRequest { subject: subject.to_string(), schema: schema.to_string() };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.check_schema(request).await }
            })
            .await?;
        Ok(response.breaks)
    }

    /// A version of `subject`'s schema (`None`: the latest).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown subject or version.
    pub async fn schema(&self, subject: &str, version_number: Option<u32>) -> Result<SchemaVersion, Error> {
        let request = pb::GetSchemaRequest { subject: subject.to_string(), version: version_number.unwrap_or(0) };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.get_schema(request).await }
            })
            .await?;
        Ok(version(response))
    }

    /// Every version of every subject.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_schemas(&self) -> Result<Vec<SchemaVersion>, Error> {
        let response =
            self.call_with(&self.schemas, |mut grpc| async move { grpc.list_schemas(pb::Empty {}).await }).await?;
        Ok(response.versions.into_iter().map(version).collect())
    }

    /// Sets the compatibility mode of `subject` (`None`: the global one);
    /// returns it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown mode.
    pub async fn set_compatibility(&self, subject: Option<&str>, mode: &str) -> Result<String, Error> {
        let request = pb::Compatibility { subject: subject.unwrap_or_default().to_string(), mode: mode.to_string() };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.set_compatibility(request).await }
            })
            .await?;
        Ok(response.mode)
    }

    /// The compatibility mode of `subject` (`None`: the global one).
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn compatibility(&self, subject: Option<&str>) -> Result<String, Error> {
        let request = pb::Compatibility { subject: subject.unwrap_or_default().to_string(), mode: String::new() };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.get_compatibility(request).await }
            })
            .await?;
        Ok(response.mode)
    }

    /// Declares (or replaces) an upcaster; returns the set's version and
    /// every declaration.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad type, version or step, or a
    /// gap in the chain.
    pub async fn declare_upcaster(&self, upcaster: &Upcaster) -> Result<(u64, Vec<Upcaster>), Error> {
        let request = pb::Upcaster {
            event_type: upcaster.event_type.clone(),
            from_version: upcaster.from_version,
            steps: upcaster.steps.to_string(),
        };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.declare_upcaster(request).await }
            })
            .await?;
        Ok(upcasters(response))
    }

    /// The upcaster set's version and every declaration.
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn list_upcasters(&self) -> Result<(u64, Vec<Upcaster>), Error> {
        let response =
            self.call_with(&self.schemas, |mut grpc| async move { grpc.list_upcasters(pb::Empty {}).await }).await?;
        Ok(upcasters(response))
    }

    /// Turns validation of appends against their type's latest schema on
    /// or off for an event type (`category` false) or a category; returns
    /// the validated (event types, categories).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name.
    pub async fn set_validation(
        &self,
        name: &str,
        category: bool,
        enabled: bool,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        use pb::validation_scope::Scope;
        let scope = if category { Scope::Category(name.to_string()) } else { Scope::EventType(name.to_string()) };
        let request = pb::ValidationScope { scope: Some(scope), enabled };
        let response = self
            .call_with(&self.schemas, |mut grpc| {
                let request = request.clone();
                async move { grpc.set_validation(request).await }
            })
            .await?;
        Ok((response.event_types, response.categories))
    }

    /// The validated (event types, categories).
    ///
    /// # Errors
    /// [`Error::Unavailable`] after the retries.
    pub async fn validation(&self) -> Result<(Vec<String>, Vec<String>), Error> {
        let response =
            self.call_with(&self.schemas, |mut grpc| async move { grpc.list_validation(pb::Empty {}).await }).await?;
        Ok((response.event_types, response.categories))
    }
}
