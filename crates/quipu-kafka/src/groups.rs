//! The group APIs: FindCoordinator (this broker coordinates every group),
//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup (see
//! [`crate::coordinator`]), OffsetCommit and OffsetFetch (see
//! [`crate::offset_store`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::Door;
use crate::coordinator::JoinRequest;
use crate::metadata::NODE_ID;
use crate::offset_store::Committed;

/// FindCoordinator: this broker, for every key (in `coordinators` from
/// version 4, in the top-level fields before).
pub fn find_coordinator(local: SocketAddr, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(local.ip().to_string());
    let port = i32::from(local.port());
    let coordinators = request
        .coordinator_keys
        .iter()
        .map(|key| {
            CoordinatorEntry::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(NODE_ID))
                .with_host(host.clone())
                .with_port(port)
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default().with_node_id(BrokerId(NODE_ID)).with_host(host).with_port(port)
}

/// JoinGroup: resolves when the rebalance completes.
pub async fn join(door: &Door, client_id: &str, request: &JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let millis = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let rebalance_timeout =
        if request.rebalance_timeout_ms > 0 { request.rebalance_timeout_ms } else { request.session_timeout_ms };
    let joined = door
        .coordinator
        .join(JoinRequest {
            group: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            client_id: if client_id.is_empty() { "kafka".to_string() } else { client_id.to_string() },
            session_timeout: millis(request.session_timeout_ms),
            rebalance_timeout: millis(rebalance_timeout),
            protocol_type: request.protocol_type.to_string(),
            protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        })
        .await;
    let members = joined
        .members
        .into_iter()
        .map(|(id, metadata)| JoinGroupResponseMember::default().with_member_id(text(id)).with_metadata(metadata))
        .collect();
    let protocol_type = (version >= 7).then(|| text(joined.protocol_type));
    JoinGroupResponse::default()
        .with_error_code(joined.error)
        .with_generation_id(joined.generation)
        .with_protocol_type(protocol_type)
        .with_protocol_name(Some(text(joined.protocol.unwrap_or_default())))
        .with_leader(text(joined.leader))
        .with_member_id(text(joined.member_id))
        .with_members(members)
}

/// SyncGroup: resolves with this member's assignment.
pub async fn sync(door: &Door, request: &SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments: Vec<(String, Bytes)> =
        request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let synced =
        door.coordinator.sync(&request.group_id.0, &request.member_id, request.generation_id, assignments).await;
    let (protocol_type, protocol_name) =
        if version >= 5 { (Some(text(synced.protocol_type)), synced.protocol.map(text)) } else { (None, None) };
    SyncGroupResponse::default()
        .with_error_code(synced.error)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(synced.assignment)
}

/// Heartbeat.
pub async fn heartbeat(door: &Door, request: &HeartbeatRequest) -> HeartbeatResponse {
    let error = door.coordinator.heartbeat(&request.group_id.0, &request.member_id, request.generation_id).await;
    HeartbeatResponse::default().with_error_code(code(error))
}

/// LeaveGroup: one member (up to v2) or several (v3 on).
pub async fn leave(door: &Door, request: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let ids: Vec<String> = if request.members.is_empty() {
        vec![request.member_id.to_string()]
    } else {
        request.members.iter().map(|m| m.member_id.to_string()).collect()
    };
    let errors = door.coordinator.leave(&request.group_id.0, &ids).await;
    let first = errors.first().copied().flatten();
    let members = ids
        .into_iter()
        .zip(errors)
        .map(|(id, error)| MemberResponse::default().with_member_id(text(id)).with_error_code(code(error)))
        .collect();
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(code(first));
    }
    LeaveGroupResponse::default().with_members(members)
}

/// OffsetCommit: durable before the answer.
pub async fn commit(door: &Door, request: &OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let allowed = door.coordinator.may_commit(&group, &request.member_id, request.generation_id_or_member_epoch).await;
    let offsets: Vec<Committed> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Committed {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                metadata: p.committed_metadata.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let error = if allowed.is_some() {
        allowed
    } else if group.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        match door.offsets.commit(&group, offsets).await {
            Ok(()) => None,
            Err(error) => {
                tracing::error!(%error, "committing Kafka offsets");
                Some(ResponseError::KafkaStorageError)
            }
        }
    };
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code(error))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch (up to v7: one group): the committed offsets asked for, or
/// every one of the group's when no topics are named; -1 where none.
pub fn fetch_offsets(door: &Door, request: &OffsetFetchRequest) -> OffsetFetchResponse {
    let group = request.group_id.0.to_string();
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        Some(topics) => topics.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = std::collections::BTreeMap::new();
            for committed in door.offsets.of_group(&group) {
                by_topic.entry(committed.topic).or_default().push(committed.partition);
            }
            by_topic.into_iter().collect()
        }
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|partition| {
                    let committed = door.offsets.get(&group, &topic, partition);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(committed.as_ref().map_or(-1, |c| c.offset))
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(text(committed.and_then(|c| c.metadata).unwrap_or_default())))
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(TopicName(text(topic))).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// The Kafka error code of `error` (0: none).
fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}
