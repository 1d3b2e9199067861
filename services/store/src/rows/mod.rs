//! Rows as both SQL dialects (SQLite and PostgreSQL) hold them: column
//! lists, row structs and their mapping to domain types, where the two
//! dialects agree. Dialect code calls down into these, never the reverse.

pub mod events;
pub mod leases;
pub mod streams;
pub mod tokens;

use crate::error::StoreError;

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::corrupt(what, value)
}

/// A JSON array of strings, as SQLite's `json_each` reads lists.
pub fn json_list<S: serde::Serialize>(items: &[S]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}
