//! [`Selection`]: which events a publisher sends.

use std::collections::BTreeSet;

use quipu_client::Filter;

use crate::Error;

/// The events a publisher sends to its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Events of the types marked as integration types in Quipu
    /// (`quipu integration mark`), as marked when the subscription runs.
    Integration,
    /// Events of these types.
    Types(BTreeSet<String>),
}

impl Selection {
    /// A selection of `types`; the marked integration types when empty.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty type name.
    pub fn of_types<T: AsRef<str>>(types: &[T]) -> Result<Selection, Error> {
        if types.is_empty() {
            return Ok(Selection::Integration);
        }
        let mut set = BTreeSet::new();
        for name in types {
            let name = name.as_ref().trim();
            if name.is_empty() {
                return Err(Error::Invalid("an event type to publish is empty".into()));
            }
            set.insert(name.to_string());
        }
        Ok(Selection::Types(set))
    }

    /// The subscription filter that reads these events: the server
    /// filters one type or the marked types; several types are picked
    /// from `$all` here.
    #[must_use]
    pub fn filter(&self) -> Option<Filter> {
        match self {
            Selection::Integration => Some(Filter::Integration),
            Selection::Types(types) if types.len() == 1 => types.first().cloned().map(Filter::EventType),
            Selection::Types(_) => None,
        }
    }

    /// Whether an event of `event_type` is sent.
    #[must_use]
    pub fn contains(&self, event_type: &str) -> bool {
        match self {
            Selection::Integration => true,
            Selection::Types(types) => types.contains(event_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_types_means_the_marked_integration_types() {
        let selection = Selection::of_types::<&str>(&[]).expect("valid");
        assert_eq!(selection, Selection::Integration);
        assert_eq!(selection.filter(), Some(Filter::Integration));
    }

    #[test]
    fn one_type_is_filtered_by_the_server_and_several_here() {
        let one = Selection::of_types(&["OrderShipped"]).expect("valid");
        assert_eq!(one.filter(), Some(Filter::EventType("OrderShipped".into())));
        let two = Selection::of_types(&["OrderShipped", " InvoiceSent"]).expect("valid");
        assert_eq!(two.filter(), None);
        assert!(two.contains("InvoiceSent") && two.contains("OrderShipped"));
        assert!(!two.contains("OrderPlaced"));
    }

    #[test]
    fn an_empty_type_is_refused() {
        let refused = Selection::of_types(&["OrderShipped", " "]).expect_err("empty");
        assert!(refused.to_string().contains("empty"), "{refused}");
    }
}
