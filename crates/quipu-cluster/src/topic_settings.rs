//! What a node requires of the cluster topic before it runs on it.
//!
//! The topic is the only durable copy every node shares, so a setting that
//! lets Kafka drop or rewrite records would lose events for good: time or
//! size retention, compaction, an unclean leader election that cuts
//! acknowledged records. A node reads the topic's configuration and refuses
//! to start, naming each setting that is wrong and the value it needs.

use std::collections::BTreeMap;

/// One setting of the topic that cluster mode cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The topic configuration's name (`retention.ms`, ...).
    pub name: &'static str,
    /// Its value, as the broker reported it (`None`: not reported).
    pub found: Option<String>,
    /// What cluster mode needs, and why.
    pub wanted: String,
}

/// The topic cannot hold a cluster's log as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic {topic} cannot hold a Quipu cluster's log: {}", describe(.problems))]
pub struct TopicSettingsError {
    /// The topic.
    pub topic: String,
    /// Every setting that is wrong, in a fixed order.
    pub problems: Vec<SettingProblem>,
}

fn describe(problems: &[SettingProblem]) -> String {
    problems
        .iter()
        .map(|p| match &p.found {
            Some(found) => format!("{} is {found}, needs {}", p.name, p.wanted),
            None => format!("{} was not reported by the broker, needs {}", p.name, p.wanted),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the broker says of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// The topic's name.
    pub topic: String,
    /// Its configuration (`DescribeConfigs`), name to value.
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition.
    pub replication_factor: u32,
}

impl TopicSettings {
    /// The configuration of a new topic that [`TopicSettings::check`]
    /// passes, for `replication_factor` replicas and proposals of up to
    /// `record_bytes_max` bytes.
    #[must_use]
    pub fn for_new_topic(replication_factor: u32, record_bytes_max: u64) -> Vec<(&'static str, String)> {
        let mut configs = vec![
            ("retention.ms", "-1".to_owned()),
            ("retention.bytes", "-1".to_owned()),
            ("cleanup.policy", "delete".to_owned()),
            ("unclean.leader.election.enable", "false".to_owned()),
            ("max.message.bytes", record_bytes_max.to_string()),
        ];
        if replication_factor >= 3 {
            configs.push(("min.insync.replicas", "2".to_owned()));
        }
        configs
    }

    /// Checks the settings against what a cluster's log needs:
    /// `retention.ms=-1`, `retention.bytes=-1`, `cleanup.policy=delete`,
    /// `unclean.leader.election.enable=false`, `min.insync.replicas>=2`
    /// when the topic has 3 replicas or more, and `max.message.bytes` at
    /// least `record_bytes_max` (the largest proposal the append limits
    /// allow).
    ///
    /// # Errors
    /// [`TopicSettingsError`] listing every setting that is wrong.
    pub fn check(&self, record_bytes_max: u64) -> Result<(), TopicSettingsError> {
        let mut problems = Vec::new();
        let mut want = |name: &'static str, ok: &dyn Fn(&str) -> bool, wanted: String| {
            let found = self.configs.get(name);
            if !found.is_some_and(|value| ok(value.trim())) {
                problems.push(SettingProblem { name, found: found.cloned(), wanted });
            }
        };
        want("retention.ms", &|v| v == "-1", "-1: events are kept forever".into());
        want("retention.bytes", &|v| v == "-1", "-1: events are kept forever".into());
        want("cleanup.policy", &|v| v == "delete", "delete, without compact: compaction drops records".into());
        want(
            "unclean.leader.election.enable",
            &|v| v == "false",
            "false: an unclean election can drop acknowledged records".into(),
        );
        if self.replication_factor >= 3 {
            want(
                "min.insync.replicas",
                &|v| v.parse::<u32>().is_ok_and(|n| n >= 2),
                format!("at least 2 with {} replicas, so an acknowledged record is on two", self.replication_factor),
            );
        }
        want(
            "max.message.bytes",
            &|v| v.parse::<u64>().is_ok_and(|n| n >= record_bytes_max),
            format!("at least {record_bytes_max}, the largest append the limits allow"),
        );
        if problems.is_empty() { Ok(()) } else { Err(TopicSettingsError { topic: self.topic.clone(), problems }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)], replication_factor: u32) -> TopicSettings {
        TopicSettings {
            topic: "quipu-log".into(),
            configs: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            replication_factor,
        }
    }

    const GOOD: [(&str, &str); 6] = [
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("cleanup.policy", "delete"),
        ("unclean.leader.election.enable", "false"),
        ("min.insync.replicas", "2"),
        ("max.message.bytes", "16777216"),
    ];

    #[test]
    fn a_new_topic_is_made_with_settings_the_check_passes() {
        for replicas in [1, 3] {
            let configs = TopicSettings::for_new_topic(replicas, 8 << 20);
            let pairs: Vec<(&str, &str)> = configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(settings(&pairs, replicas).check(8 << 20), Ok(()), "{replicas} replicas");
        }
    }

    #[test]
    fn a_topic_that_keeps_everything_passes() {
        assert_eq!(settings(&GOOD, 3).check(8 << 20), Ok(()));
        assert_eq!(settings(&GOOD, 1).check(16 << 20), Ok(()));
    }

    #[test]
    fn each_wrong_setting_is_named_with_what_it_needs() {
        let cases: [(&str, &str, u32); 7] = [
            ("retention.ms", "604800000", 1),
            ("retention.bytes", "1073741824", 1),
            ("cleanup.policy", "compact", 1),
            ("cleanup.policy", "delete,compact", 1),
            ("unclean.leader.election.enable", "true", 1),
            ("min.insync.replicas", "1", 3),
            ("max.message.bytes", "1048588", 1),
        ];
        for (name, value, replicas) in cases {
            let mut pairs = GOOD.to_vec();
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, value));
            let error = settings(&pairs, replicas).check(8 << 20).expect_err(name);
            assert_eq!(error.problems.len(), 1, "{error}");
            assert!(error.to_string().contains(&format!("{name} is {value}, needs")), "{error}");
        }
        assert_eq!(settings(&[("min.insync.replicas", "1")], 1).check(1).map_err(|e| e.problems.len()), Err(5));
        let missing = settings(&[], 3).check(1).expect_err("nothing reported");
        assert_eq!(missing.problems.len(), 6);
        assert!(missing.to_string().contains("retention.ms was not reported by the broker"), "{missing}");
    }
}
