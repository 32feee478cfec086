//! Answers for admin tools: CreateTopics says every Quipu topic exists
//! already (they come from the store's streams and types), or why a name
//! is not one; DescribeConfigs describes a topic's fixed settings (events
//! are kept forever, nothing is compacted) and the broker's.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::Door;
use crate::topic::Topic;

/// `resource_type` of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// `resource_type` of a broker.
const BROKER_RESOURCE: i8 = 4;
/// `config_source` of a setting nobody can change.
const DEFAULT_CONFIG: i8 = 5;

/// CreateTopics: `TOPIC_ALREADY_EXISTS` for a Quipu topic (with its
/// partition count), `INVALID_TOPIC_EXCEPTION` for a name that is not one.
pub fn create_topics(door: &Door, request: &CreateTopicsRequest) -> CreateTopicsResponse {
    let topics = request
        .topics
        .iter()
        .map(|wanted| {
            let answer = CreatableTopicResult::default().with_name(wanted.name.clone());
            match Topic::parse(&wanted.name.0) {
                Ok(topic) => {
                    let partitions = door.partitions(&topic);
                    let message = format!(
                        "{} exists: Quipu's topics come from its streams and event types ({partitions} partitions); \
                         nothing to create",
                        topic.name()
                    );
                    answer
                        .with_error_code(ResponseError::TopicAlreadyExists.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                }
                Err(error) => answer
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// DescribeConfigs: a topic's or the broker's settings, all read-only.
pub fn describe_configs(door: &Door, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let answer = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let settings = match resource.resource_type {
                TOPIC_RESOURCE => match Topic::parse(&resource.resource_name) {
                    Ok(_) => topic_settings(door),
                    Err(error) => {
                        return answer
                            .with_error_code(ResponseError::InvalidTopicException.code())
                            .with_error_message(Some(StrBytes::from_string(error.to_string())));
                    }
                },
                BROKER_RESOURCE => broker_settings(door),
                other => {
                    return answer.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(
                        StrBytes::from_string(format!(
                            "resource type {other}: only topics (2) and brokers (4) have settings here"
                        )),
                    ));
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            let configs = settings
                .into_iter()
                .filter(|(name, _)| wanted.is_none_or(|keys| keys.iter().any(|k| &**k == *name)))
                .map(|(name, value)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_read_only(true)
                        .with_config_source(DEFAULT_CONFIG)
                })
                .collect();
            answer.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_settings(door: &Door) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "delete".into()),
        ("retention.ms", "-1".into()),
        ("retention.bytes", "-1".into()),
        ("compression.type", "uncompressed".into()),
        ("max.message.bytes", door.store.options().event_bytes_max.to_string()),
        ("message.timestamp.type", "CreateTime".into()),
        ("min.insync.replicas", "1".into()),
    ]
}

fn broker_settings(door: &Door) -> Vec<(&'static str, String)> {
    vec![
        ("auto.create.topics.enable", "false".into()),
        ("num.partitions", door.config.category_partitions.to_string()),
        ("default.replication.factor", "1".into()),
        ("log.retention.ms", "-1".into()),
        ("message.max.bytes", door.store.options().append_bytes_max.to_string()),
    ]
}
