//! Pins mirrored as Iceberg tags: a tag on a snapshot keeps it through
//! every engine's snapshot expiry (Glue's optimizer, Spark's and
//! pyiceberg's `expire_snapshots`), which never ask sluice first.
//!
//! The `iceberg` crate has no public action that sets a ref, so a tag is
//! written as a commit of its own: the table's metadata with the ref set
//! or removed (`TableMetadataBuilder`), written to the next metadata file
//! with the table's `FileIO`, and committed as the catalog commits, with
//! its optimistic check: the SQL catalog's compare-and-set of the metadata
//! location, Glue's `UpdateTable` on the `VersionId` read with it. A
//! REST catalog writes the metadata itself: it gets the ref's change with
//! its requirements (`rest_commit.rs`). A commit that lost a race with a
//! writer is made again on the new metadata, never forced.

use crate::rest_commit::Committed;
use crate::{table_ident, Catalogs};
use iceberg::spec::{FormatVersion, SnapshotReference, SnapshotRetention, TableMetadata};
use iceberg::{MetadataLocation, TableIdent};
use sluice_core::snapshots::{TagError, TagTarget};
use sluice_core::TableName;
use sqlx::Connection;
use std::str::FromStr;

/// How many times a commit that lost a race is made again.
const ATTEMPTS: usize = 5;

fn unavailable(e: impl std::fmt::Display) -> TagError {
    TagError::Unavailable(e.to_string())
}

impl Catalogs {
    /// Make tag `name` of `table` what `target` says (`None`: no tag).
    /// `true` when a commit was made, `false` when the table already was so.
    pub async fn set_tag(
        &self,
        catalog: &str,
        table: &TableName,
        name: &str,
        target: Option<TagTarget>,
    ) -> Result<bool, TagError> {
        let (Some(client), Some(config)) = (self.catalogs.get(catalog), self.configs.get(catalog))
        else {
            return Err(TagError::UnknownCatalog(catalog.to_owned()));
        };
        let ident = table_ident(table);
        let glue = self.glue.get(catalog);
        let rest = self.rest.get(catalog);
        for _ in 0..ATTEMPTS {
            // Glue: the version the commit is checked against, read before
            // the metadata it must still be current for.
            let glue_table = match glue {
                Some(glue) => Some(glue_table(glue, &ident).await?),
                None => None,
            };
            let loaded = client.load_table(&ident).await.map_err(unavailable)?;
            let old = loaded
                .metadata_location_result()
                .map_err(unavailable)?
                .to_owned();
            let Some(next) = with_tag(loaded.metadata(), &old, name, target)? else {
                return Ok(false);
            };
            if let Some(rest) = rest {
                match rest.commit(&ident, loaded.metadata(), name, target).await? {
                    Committed::Yes => return Ok(true),
                    Committed::LostRace => continue,
                }
            }
            let location = MetadataLocation::from_str(&old)
                .map_err(unavailable)?
                .with_next_version()
                .with_new_metadata(&next);
            next.write_to(loaded.file_io(), &location)
                .await
                .map_err(unavailable)?;
            let new = location.to_string();
            let committed = match (glue, glue_table) {
                (Some(glue), Some(current)) => {
                    glue_update(glue, &ident, current, &old, &new).await?
                }
                _ => {
                    let uri = config.uri.clone().unwrap_or_default();
                    compare_and_set(&uri, catalog, &ident, &old, &new).await?
                }
            };
            if committed {
                return Ok(true);
            }
            // Lost to another commit: this file is nobody's; try again on
            // the metadata that won.
            if let Err(error) = loaded.file_io().delete(&new).await {
                tracing::debug!(%error, file = new, "an unused metadata file stays");
            }
        }
        Err(TagError::Unavailable(format!(
            "table `{table}` kept changing while tag `{name}` was written"
        )))
    }
}

/// The metadata with tag `name` set to `target` (or removed), or `None`
/// when it already is so.
fn with_tag(
    metadata: &TableMetadata,
    location: &str,
    name: &str,
    target: Option<TagTarget>,
) -> Result<Option<TableMetadata>, TagError> {
    // Version 1 metadata keeps no refs but `main`: the tag would be lost.
    if metadata.format_version() == FormatVersion::V1 {
        return Err(TagError::Refused(
            "the table's metadata is format version 1, which keeps no tags".into(),
        ));
    }
    let refs = serde_json::to_value(metadata).map_err(unavailable)?;
    if refs["refs"][name]["type"] == "branch" {
        return Err(TagError::Refused(format!(
            "`{name}` is a branch of the table, not sluice's tag"
        )));
    }
    let builder = metadata.clone().into_builder(Some(location.to_owned()));
    let built = match target {
        Some(t) => {
            if metadata.snapshot_by_id(t.snapshot_id).is_none() {
                return Err(TagError::Refused(format!(
                    "the table has no snapshot {}",
                    t.snapshot_id
                )));
            }
            let tag = SnapshotReference::new(
                t.snapshot_id,
                SnapshotRetention::Tag {
                    max_ref_age_ms: Some(t.max_ref_age_ms.max(1)),
                },
            );
            builder.set_ref(name, tag).map_err(unavailable)?.build()
        }
        None => builder.remove_ref(name).build(),
    }
    .map_err(unavailable)?;
    Ok((!built.changes.is_empty()).then_some(built.metadata))
}

/// The Glue table as Glue has it now (its `VersionId` with it).
async fn glue_table(
    glue: &aws_sdk_glue::Client,
    ident: &TableIdent,
) -> Result<aws_sdk_glue::types::Table, TagError> {
    let out = glue
        .get_table()
        .database_name(ident.namespace().join("."))
        .name(ident.name())
        .send()
        .await
        .map_err(|e| unavailable(aws_sdk_glue::error::DisplayErrorContext(e)))?;
    out.table
        .ok_or_else(|| TagError::Unavailable(format!("Glue has no table {ident}")))
}

/// Glue's commit: the table's parameters point at `new` (and at `old` as
/// the previous metadata), on the condition that the table is still at the
/// version read with `old`. `false`: another commit came first.
async fn glue_update(
    glue: &aws_sdk_glue::Client,
    ident: &TableIdent,
    current: aws_sdk_glue::types::Table,
    old: &str,
    new: &str,
) -> Result<bool, TagError> {
    let mut parameters = current.parameters.clone().unwrap_or_default();
    if parameters.get("metadata_location").map(String::as_str) != Some(old) {
        // A writer committed between the version read and the metadata
        // loaded: this attempt is on stale ground.
        return Ok(false);
    }
    parameters.insert("metadata_location".into(), new.to_owned());
    parameters.insert("previous_metadata_location".into(), old.to_owned());
    // Everything else as it is: only the pointer moves.
    let input = aws_sdk_glue::types::TableInput::builder()
        .name(current.name.clone())
        .set_description(current.description.clone())
        .set_owner(current.owner.clone())
        .retention(current.retention)
        .set_storage_descriptor(current.storage_descriptor.clone())
        .set_partition_keys(current.partition_keys.clone())
        .set_table_type(current.table_type.clone())
        .set_parameters(Some(parameters))
        .build()
        .map_err(unavailable)?;
    let mut update = glue
        .update_table()
        .database_name(ident.namespace().join("."))
        .table_input(input)
        // A tag move is no new version of the table worth archiving.
        .skip_archive(true);
    if let Some(version) = current.version_id {
        update = update.version_id(version);
    }
    match update.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_concurrent_modification_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(unavailable(aws_sdk_glue::error::DisplayErrorContext(e))),
    }
}

/// The SQL catalog's commit: the metadata location moves from `old` to
/// `new` only if it still is `old`. `false`: another commit came first.
async fn compare_and_set(
    uri: &str,
    catalog: &str,
    ident: &TableIdent,
    old: &str,
    new: &str,
) -> Result<bool, TagError> {
    // As the catalog crate writes it: namespace parts joined with `.`.
    const CAS: &str = "UPDATE iceberg_tables SET metadata_location = $1, \
         previous_metadata_location = $2 WHERE catalog_name = $3 AND table_name = $4 \
         AND table_namespace = $5 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
         AND metadata_location = $2";
    let namespace = ident.namespace().join(".");
    // One statement, bound the same way, on either kind of connection.
    macro_rules! run {
        ($connection:ty) => {{
            let mut conn = <$connection>::connect(uri).await.map_err(unavailable)?;
            sqlx::query(CAS)
                .bind(new)
                .bind(old)
                .bind(catalog)
                .bind(ident.name())
                .bind(&namespace)
                .execute(&mut conn)
                .await
                .map_err(unavailable)?
                .rows_affected()
        }};
    }
    let rows = if uri.starts_with("sqlite:") {
        run!(sqlx::SqliteConnection)
    } else {
        run!(sqlx::PgConnection)
    };
    Ok(rows == 1)
}
