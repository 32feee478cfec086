//! Category names: what a stream name holds before its first `-`.

use crate::{ApiError, ErrorCode};

/// Checks a category name: no `-`, and a valid stream name (not a system
/// name).
///
/// # Errors
/// `invalid_category` saying what is wrong.
pub fn check_category(category: &str) -> Result<(), ApiError> {
    if category.contains('-') {
        return Err(ApiError::new(
            ErrorCode::InvalidCategory,
            format!("category {category:?} contains '-': a category is the part of a stream name before its first '-'"),
        ));
    }
    quipu_core::StreamName::new(category)
        .map_err(|e| ApiError::new(ErrorCode::InvalidCategory, format!("category {category:?}: {e}")))?;
    Ok(())
}
