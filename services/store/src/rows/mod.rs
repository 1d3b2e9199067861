//! Rows as both SQL dialects (SQLite and PostgreSQL) hold them: column
//! lists, row structs and their mapping to domain types, where the two
//! dialects agree. Dialect code calls down into these, never the reverse.

pub mod containers;
pub mod events;
pub mod hydrations;
pub mod leases;
pub mod schedule;
pub mod snapshots;
pub mod streams;
pub mod tokens;
pub mod views;

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

/// The text form of the smallest UUIDv7 minted at `at`: ids (leases,
/// batches) are v7, so every id minted before `at` sorts below it, and
/// pruning walks the primary key instead of scanning the table.
pub fn v7_floor(at: sluice_core::Millis) -> String {
    let ms = at.0.max(0) as u64 & 0xFFFF_FFFF_FFFF;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xFFFF
    )
}
