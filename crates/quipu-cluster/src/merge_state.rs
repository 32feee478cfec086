//! [`MergeState`]: where a node's merge of the topic stands, saved in its
//! data directory now and then, so a restart reads the topic from there
//! instead of from its first offsets. It is saved only once everything
//! the merge gave out before it was decided by the store, so it is never
//! ahead of the store; it may be behind (records between it and the
//! store's last commit are read again and dropped, see
//! [`crate::Merger::resume`]).
//!
//! The file (`cluster-merge-state` in the data directory) is text:
//!
//! ```text
//! quipu-merge-state 1
//! topic quipu-log
//! topic-id 1b4e28ba-2fa1-11d2-883f-0016d3cca427   # when the brokers keep topic ids
//! partitions 3
//! applied 4 1 117        # epoch partition offset of the store's last commit, or "applied none"
//! lane 118 4             # per partition: first offset to read, epoch there
//! lane 96 4
//! lane 240 4
//! ```

use std::path::Path;

use quipu_core::Source;

use crate::merger::LaneStart;

/// The file's name in the data directory.
pub const FILE: &str = "cluster-merge-state";
const HEADER: &str = "quipu-merge-state 1";

/// A saved merge position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeState {
    /// The topic it is a position in.
    pub topic: String,
    /// The id the brokers gave the topic, when they keep topic ids (a
    /// topic deleted and created again gets a new one).
    pub topic_id: Option<uuid::Uuid>,
    /// Where each partition resumes; one per partition of the topic.
    pub lanes: Vec<LaneStart>,
    /// The store's last applied commit when it was saved.
    pub applied: Option<Source>,
}

/// Why a saved merge state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MergeStateError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a merge state this build writes.
    #[error("{path} is not a merge state: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl MergeState {
    /// The state saved in `dir`, if any.
    ///
    /// # Errors
    /// [`MergeStateError`] for a file that cannot be read or is malformed.
    pub fn load(dir: &Path) -> Result<Option<MergeState>, MergeStateError> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => MergeState::parse(&text)
                .map(Some)
                .map_err(|reason| MergeStateError::Malformed { path: path.display().to_string(), reason }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MergeStateError::Io { path: path.display().to_string(), source }),
        }
    }

    /// Saves this state in `dir`, replacing the last one whole.
    ///
    /// # Errors
    /// [`quipu_core::Error::Io`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<(), quipu_core::Error> {
        quipu_core::write_durably(dir, FILE, self.to_text().as_bytes())
    }

    /// The file's text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let applied = match self.applied {
            Some(source) => format!("{} {} {}", source.epoch, source.partition, source.offset),
            None => "none".into(),
        };
        let mut text = format!("{HEADER}\ntopic {}\n", self.topic);
        if let Some(id) = self.topic_id {
            text.push_str(&format!("topic-id {id}\n"));
        }
        text.push_str(&format!("partitions {}\napplied {applied}\n", self.lanes.len()));
        for lane in &self.lanes {
            text.push_str(&format!("lane {} {}\n", lane.offset, lane.epoch));
        }
        text
    }

    /// Reads the file's text.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<MergeState, String> {
        let mut lines = text.lines().peekable();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let topic = next_field(&mut lines, "topic")?.to_owned();
        let topic_id = match lines.peek().and_then(|line| line.strip_prefix("topic-id ")) {
            Some(id) => {
                let id = id.parse().map_err(|_| format!("topic-id {id:?} is not a UUID"))?;
                lines.next();
                Some(id)
            }
            None => None,
        };
        let partitions: usize = number(next_field(&mut lines, "partitions")?)?;
        let applied = match next_field(&mut lines, "applied")? {
            "none" => None,
            source => match source.split(' ').collect::<Vec<_>>()[..] {
                [epoch, partition, offset] => {
                    Some(Source { epoch: number(epoch)?, partition: number(partition)?, offset: number(offset)? })
                }
                _ => return Err(format!("applied {source:?} is not epoch, partition and offset")),
            },
        };
        let lanes = (0..partitions)
            .map(|p| match next_field(&mut lines, "lane")?.split(' ').collect::<Vec<_>>()[..] {
                [offset, epoch] => Ok(LaneStart { offset: number(offset)?, epoch: number(epoch)? }),
                _ => Err(format!("lane {p} is not an offset and an epoch")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        if partitions == 0 {
            return Err("no partitions".into());
        }
        Ok(MergeState { topic, topic_id, lanes, applied })
    }
}

/// The rest of the next line of `lines`, which must be `name` and a space.
fn next_field<'a>(lines: &mut impl Iterator<Item = &'a str>, name: &str) -> Result<&'a str, String> {
    lines
        .next()
        .and_then(|line| line.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format!("no {name} line where expected"))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> MergeState {
        MergeState {
            topic: "quipu-log".into(),
            topic_id: Some(uuid::Uuid::from_u128(0x1b4e_28ba_2fa1_11d2_883f_0016_d3cc_a427)),
            lanes: vec![LaneStart { offset: 118, epoch: 4 }, LaneStart { offset: 0, epoch: 0 }],
            applied: Some(Source { epoch: 4, partition: 0, offset: 117 }),
        }
    }

    #[test]
    fn a_saved_state_loads_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(MergeState::load(dir.path()).expect("no file is no state"), None);
        state().save(dir.path()).expect("save");
        assert_eq!(MergeState::load(dir.path()).expect("load"), Some(state()));
        let none = MergeState { applied: None, topic_id: None, ..state() };
        none.save(dir.path()).expect("save");
        assert_eq!(MergeState::load(dir.path()).expect("load"), Some(none));
        // A state saved before topic ids were kept reads without one.
        let text = state().to_text();
        let older: Vec<&str> = text.lines().filter(|line| !line.starts_with("topic-id")).collect();
        assert_eq!(MergeState::parse(&older.join("\n")), Ok(MergeState { topic_id: None, ..state() }));
    }

    #[test]
    fn a_damaged_state_is_refused_saying_what_is_wrong() {
        let text = state().to_text();
        let cases = [
            (text.replace("quipu-merge-state 1", "quipu-merge-state 9"), "first line"),
            (text.replace("partitions 2", "partitions 3"), "no lane line"),
            (text.replace("lane 118 4", "lane x 4"), "\"x\" is not a number"),
            (text.replace("applied 4 0 117", "applied 4 0"), "is not epoch, partition and offset"),
            (text.replace("partitions 2\n", ""), "no partitions line"),
            (text.replace("-0016d3cca427", "-0016d3cca4"), "is not a UUID"),
        ];
        for (damaged, expected) in cases {
            let error = MergeState::parse(&damaged).expect_err("refused");
            assert!(error.contains(expected), "{damaged:?}: {error}");
        }
    }
}
