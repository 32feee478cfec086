//! The Kafka door's hooks into the services: its appends are admitted as
//! every door's are, and its reads run on the node's reader pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use quipu_core::{AppendRequest, Store};
use quipu_node::metrics::Metrics;
use quipu_node::submission::{Admission, submit};

/// Appends of the Kafka door, admitted as every door's are.
pub struct KafkaAppends {
    /// The store.
    pub store: Arc<Store>,
    /// Append counters.
    pub metrics: Arc<Metrics>,
    /// What appends must pass.
    pub admission: Arc<Admission>,
}

impl quipu_kafka::Appends for KafkaAppends {
    fn submit(&self, request: AppendRequest) -> quipu_kafka::Submitted {
        let outcome = submit(&self.store, &self.metrics, &self.admission, request);
        Box::pin(async move {
            outcome.await.map_err(|error| quipu_kafka::Refusal { code: error.code.as_str(), message: error.message })
        })
    }
}

/// Store reads of the Kafka door's fetches, on the reader pool (see
/// [`quipu_node::blocking::follow`]).
pub struct KafkaReads;

impl quipu_kafka::Reads for KafkaReads {
    fn run(&self, work: quipu_kafka::Read) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if let Err(error) = quipu_node::blocking::follow(work).await {
                tracing::error!(%error, "a Kafka door read failed");
            }
        })
    }
}
