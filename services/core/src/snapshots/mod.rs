//! The table snapshot log: each registered table's Iceberg snapshots as
//! sluice last read them from the table's catalog, and the pure rules over
//! it (what a refresh changes, how far behind the current snapshot an
//! applied one is, and what expiry may remove).
//!
//! `reconcile` says which tables a catalog's listing shows moved.
//! The catalog itself is a port ([`CatalogPort`]): the shell reads table
//! metadata through the `iceberg` crate; the rules only see what it read.

mod catalog;
mod lag;
mod log;
pub mod reconcile;
mod retention;

pub use catalog::{
    CatalogError, CatalogFuture, CatalogPort, ListFuture, ListedPage, Listing, TableMetadata,
    TagError, TagFuture, TagTarget,
};
pub use lag::{carries_change, lag, Lag};
pub use log::{refresh, Refresh, Snapshot, SnapshotId};
pub use reconcile::{Cause, Freshness, Known, Listed, Verdict};
pub use retention::{readers, retention, Reader, Retention, CLOCK_SKEW_MS};
