//! The catalog port: what sluice needs from an Iceberg catalog, which is
//! one thing — a table's current metadata.

use super::log::{Snapshot, SnapshotId};
use crate::names::TableName;
use std::future::Future;
use std::pin::Pin;

/// A table's metadata as the catalog has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMetadata {
    /// Where the metadata file lives (changes with every commit).
    pub metadata_location: Option<String>,
    /// `None` for a table without snapshots yet.
    pub current_snapshot_id: Option<SnapshotId>,
    /// Every snapshot the metadata still lists, in any order.
    pub snapshots: Vec<Snapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The table names a catalog the configuration does not define.
    #[error("no catalog named `{0}` is configured")]
    UnknownCatalog(String),
    /// The table names no catalog, and there is no default one.
    #[error("the table names no catalog and no default catalog is configured")]
    NoDefaultCatalog,
    /// The catalog has no such table (or namespace).
    #[error("catalog `{catalog}` has no table `{table}`")]
    NoSuchTable { catalog: String, table: String },
    /// The catalog or its storage could not be reached or answered an
    /// error: worth retrying later.
    #[error("catalog `{catalog}` is unavailable: {message}")]
    Unavailable { catalog: String, message: String },
}

pub type CatalogFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TableMetadata, CatalogError>> + Send + 'a>>;

/// Reads table metadata from the named catalogs.
pub trait CatalogPort: Send + Sync + 'static {
    /// The catalog used for a table that names none, if there is one.
    fn default_catalog(&self) -> Option<&str>;
    /// The current metadata of `table` in `catalog`.
    fn table_metadata<'a>(&'a self, catalog: &'a str, table: &'a TableName) -> CatalogFuture<'a>;
}
