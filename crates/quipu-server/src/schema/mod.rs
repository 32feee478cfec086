//! The schema registry: versioned JSON Schemas per event type, checked
//! for compatibility when registered.

pub mod compatibility;
