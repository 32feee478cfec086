//! A request's path, checked before any route sees it: every `%` must
//! begin a percent-encoding (`%` and two hex digits), and the decoded
//! path must be UTF-8. Otherwise a name such as `a%ZZ` would reach a
//! handler as a stream of that name, and a path decoding to bytes that
//! are not text would get axum's plain-text rejection; both are answered
//! `400 invalid_path`, naming what is wrong, as JSON like every error.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quipu_node::{ApiError, ErrorCode};

use crate::error::HttpError;

/// Answers `400 invalid_path` to a request whose path is not valid (see
/// the module's documentation), else runs `next`.
pub async fn check(request: Request, next: Next) -> Response {
    match problem(request.uri().path()) {
        Some(problem) => HttpError(ApiError::new(ErrorCode::InvalidPath, problem)).into_response(),
        None => next.run(request).await,
    }
}

/// What is wrong with `path`, or `None` when it is valid.
fn problem(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            decoded.push(byte);
            at += 1;
            continue;
        }
        let digits = bytes.get(at + 1..at + 3);
        let value = digits.and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 16).ok());
        let Some(value) = value else {
            let shown: String = path.get(at..).unwrap_or_default().chars().take(3).collect();
            return Some(format!(
                "`{shown}` at byte {at} of the path is not a percent-encoding (`%` and two hex digits; `%25` is a `%`)"
            ));
        };
        decoded.push(value);
        at += 3;
    }
    match std::str::from_utf8(&decoded) {
        Ok(_) => None,
        Err(error) => Some(format!(
            "the path decodes to bytes that are not UTF-8 (at byte {} of the decoded path); names are text",
            error.valid_up_to()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodings_that_decode_to_text_are_valid() {
        for path in ["/v1/streams/order-42", "/v1/streams/a%20b", "/v1/streams/%C3%A9t%C3%A9", "/v1/streams/100%25"] {
            assert_eq!(problem(path), None, "{path}");
        }
    }

    #[test]
    fn a_bad_percent_encoding_is_named() {
        let named = problem("/v1/streams/a%ZZ").expect("refused");
        assert!(named.contains("`%ZZ` at byte 13"), "{named}");
        assert!(problem("/v1/streams/a%2").is_some(), "a cut encoding");
        assert!(problem("/v1/streams/a%").is_some(), "a bare %");
    }

    #[test]
    fn a_path_decoding_to_bytes_that_are_not_utf8_is_refused() {
        let named = problem("/v1/streams/a%FF%FE").expect("refused");
        assert!(named.contains("not UTF-8"), "{named}");
    }
}
