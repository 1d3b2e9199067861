//! Rows as both SQL dialects (SQLite and PostgreSQL) hold them: column
//! lists, row structs and their mapping to domain types, where the two
//! dialects agree. Dialect code calls down into these, never the reverse.

pub mod events;
pub mod leases;
pub mod streams;
pub mod tokens;

use crate::error::StoreError;

/// A stored value that does not parse: a bug or a hand-edited row.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("stored data is not valid: {what} `{value}`"))
}

/// A JSON array of strings: how SQLite's `json_each` reads lists, and how
/// both dialects store token scopes.
pub fn json_list<S: serde::Serialize>(items: &[S]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}
