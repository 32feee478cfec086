//! [`Filter`]: which events of `$all` a filtered read returns, by stream
//! name or by event type, as a regular expression or as prefixes.
//!
//! The clients write .NET regular expressions; the Python client's default
//! filter uses a negative lookahead, so expressions run on `fancy-regex`.

use quipu_core::RecordedEvent;
use quipu_proto::event_store::client::streams::read_req::options::FilterOptions;
use quipu_proto::event_store::client::streams::read_req::options::filter_options::{Expression, Filter as On};
use tonic::Status;

/// A filter of `$all`.
pub struct Filter {
    on_type: bool,
    test: Test,
}

enum Test {
    Regex(Box<fancy_regex::Regex>),
    Prefixes(Vec<String>),
}

impl Filter {
    /// The filter a read asks for.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a filter without an expression, or a regular
    /// expression that does not compile.
    pub fn new(options: &FilterOptions) -> Result<Filter, Status> {
        let (on_type, expression): (bool, &Expression) = match &options.filter {
            Some(On::StreamIdentifier(expression)) => (false, expression),
            Some(On::EventType(expression)) => (true, expression),
            None => return Err(Status::invalid_argument("a filter is on the stream name or on the event type")),
        };
        let test = if expression.regex.is_empty() {
            Test::Prefixes(expression.prefix.clone())
        } else {
            let regex = fancy_regex::Regex::new(&expression.regex).map_err(|e| {
                Status::invalid_argument(format!("filter regex {:?} does not compile: {e}", expression.regex))
            })?;
            Test::Regex(Box::new(regex))
        };
        Ok(Filter { on_type, test })
    }

    /// Whether `event` passes.
    #[must_use]
    pub fn accepts(&self, event: &RecordedEvent) -> bool {
        let text = if self.on_type { event.event_type.as_str() } else { event.stream.as_str() };
        match &self.test {
            // An expression too costly to decide rejects the event.
            Test::Regex(regex) => regex.is_match(text).unwrap_or(false),
            Test::Prefixes(prefixes) => prefixes.iter().any(|p| text.starts_with(p.as_str())),
        }
    }
}
