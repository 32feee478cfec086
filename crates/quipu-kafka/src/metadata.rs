//! Metadata: the one broker (this door, at the address the client
//! reached) and the topics asked for. Asked for all topics, it names
//! `quipu.all` (categories and types are not listed; any valid name is a
//! topic, empty until events come).

use std::net::SocketAddr;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::Door;
use crate::topic::{ALL_TOPIC, Topic};

/// Node id of the one broker.
pub const NODE_ID: i32 = 0;
/// The cluster id Quipu reports.
pub const CLUSTER_ID: &str = "quipu";

/// The answer to `request`.
pub fn answer(door: &Door, local: SocketAddr, request: &MetadataRequest, version: i16) -> MetadataResponse {
    let names: Vec<String> = match &request.topics {
        None => vec![ALL_TOPIC.to_string()],
        Some(topics) => topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect(),
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(local.ip().to_string()))
        .with_port(i32::from(local.port()));
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(names.iter().map(|name| topic(door, name)).collect())
}

fn topic(door: &Door, name: &str) -> MetadataResponseTopic {
    let answer = MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.to_string()))));
    let Ok(topic) = Topic::parse(name) else {
        return answer.with_error_code(ResponseError::InvalidTopicException.code());
    };
    let partitions = (0..door.partitions(&topic))
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(NODE_ID))
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    answer.with_partitions(partitions)
}
