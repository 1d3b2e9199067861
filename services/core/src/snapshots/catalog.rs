//! The catalog port: what sluice needs from an Iceberg catalog — a table's
//! current metadata, and a tag set or removed (pins every engine honours).

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

/// What a tag should be: on `snapshot_id`, kept at most `max_ref_age_ms`
/// after that snapshot was committed (Iceberg ages a ref from its
/// snapshot's time, so a forgotten tag does not pin for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagTarget {
    pub snapshot_id: SnapshotId,
    pub max_ref_age_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("catalog `{0}` is not configured")]
    UnknownCatalog(String),
    /// The table cannot hold this tag: retrying changes nothing.
    #[error("{0}")]
    Refused(String),
    /// The catalog or its storage failed, or every attempt lost a race.
    #[error("{0}")]
    Unavailable(String),
}

/// `true` when a commit was made, `false` when the table already was so.
pub type TagFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, TagError>> + Send + 'a>>;

/// How a catalog lists its tables' metadata locations, cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// One call lists every table of the catalog (an SQL catalog's query).
    Catalog,
    /// Pages per namespace (Glue's `GetTables`), of at most this many.
    Namespace { page: usize },
    /// No cheap listing: each table's metadata is loaded.
    None,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedPage {
    /// Each table as `namespace.table`, in lower case (catalogs such as
    /// Glue fold case), with its metadata location (`None`: the entry is
    /// not an Iceberg table).
    pub tables: Vec<(String, Option<String>)>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

pub type ListFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ListedPage, CatalogError>> + Send + 'a>>;

/// Reads table metadata from the named catalogs, and writes tags to them.
pub trait CatalogPort: Send + Sync + 'static {
    /// The catalog used for a table that names none, if there is one.
    fn default_catalog(&self) -> Option<&str>;
    /// The current metadata of `table` in `catalog`.
    fn table_metadata<'a>(&'a self, catalog: &'a str, table: &'a TableName) -> CatalogFuture<'a>;
    /// How `catalog` lists its tables (what a reconcile pass costs).
    fn listing(&self, catalog: &str) -> Listing;
    /// A page of `catalog`'s listing: of `namespace` (for a listing by
    /// namespace; a missing namespace lists no table), from `next`.
    fn list_page<'a>(
        &'a self,
        catalog: &'a str,
        namespace: Option<&'a str>,
        next: Option<&'a str>,
    ) -> ListFuture<'a>;
    /// Whether hydrations' pins are mirrored as tags in `catalog`'s tables.
    fn pin_tags(&self, catalog: &str) -> bool;
    /// Make tag `name` of `table` what `target` says (`None`: no tag).
    fn set_tag<'a>(
        &'a self,
        catalog: &'a str,
        table: &'a TableName,
        name: &'a str,
        target: Option<TagTarget>,
    ) -> TagFuture<'a>;
}
