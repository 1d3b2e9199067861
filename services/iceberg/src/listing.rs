//! Catalog listings: each table's metadata location without loading the
//! table, so that a reconcile pass reads metadata only for tables that
//! moved. Glue lists a database by pages of `GetTables` (each table's
//! parameters carry `metadata_location`); the embedded SQL catalog answers
//! one query for all its tables. A REST catalog has no such listing
//! (its list endpoint gives names only): its tables are loaded one by one.

use sluice_core::snapshots::{CatalogError, ListedPage};

/// Glue returns at most this many tables a page.
pub const GLUE_PAGE: usize = 100;

/// One page of Glue database `database`'s tables. A database Glue does
/// not have lists no table (its tables are missing, not unavailable).
pub async fn glue_page(
    glue: &aws_sdk_glue::Client,
    catalog_id: Option<&str>,
    catalog: &str,
    database: &str,
    next: Option<&str>,
) -> Result<ListedPage, CatalogError> {
    let answer = glue
        .get_tables()
        .set_catalog_id(catalog_id.map(str::to_owned))
        .database_name(database)
        .max_results(GLUE_PAGE as i32)
        .set_next_token(next.map(str::to_owned))
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_entity_not_found_exception()) =>
        {
            return Ok(ListedPage::default())
        }
        Err(e) => {
            return Err(CatalogError::Unavailable {
                catalog: catalog.to_owned(),
                message: aws_sdk_glue::error::DisplayErrorContext(e).to_string(),
            })
        }
    };
    let tables = out
        .table_list()
        .iter()
        .map(|t| {
            let parameters = t.parameters();
            let iceberg = parameters
                .and_then(|p| p.get("table_type"))
                .is_some_and(|kind| kind.eq_ignore_ascii_case("iceberg"));
            let location = parameters
                .and_then(|p| p.get("metadata_location"))
                .filter(|_| iceberg)
                .cloned();
            (format!("{database}.{}", t.name()).to_lowercase(), location)
        })
        .collect();
    Ok(ListedPage {
        tables,
        next: out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    })
}

/// Every table of SQL catalog `catalog` in one query of the catalog's own
/// table (the layout the `iceberg-catalog-sql` crate creates).
pub async fn sql_all(pool: &sqlx::SqlitePool, catalog: &str) -> Result<ListedPage, CatalogError> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
         WHERE catalog_name = $1 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
    )
    .bind(catalog)
    .fetch_all(pool)
    .await
    .map_err(|e| CatalogError::Unavailable {
        catalog: catalog.to_owned(),
        message: e.to_string(),
    })?;
    Ok(ListedPage {
        tables: rows
            .into_iter()
            .map(|(ns, table, at)| (format!("{ns}.{table}").to_lowercase(), at))
            .collect(),
        next: None,
    })
}

/// A pool for an SQL catalog's listing: SQLite only (another database is
/// listed table by table).
pub async fn sql_pool(uri: Option<&str>) -> Option<sqlx::SqlitePool> {
    let uri = uri.filter(|u| u.starts_with("sqlite:"))?;
    let options: sqlx::sqlite::SqliteConnectOptions = uri.parse().ok()?;
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options.read_only(true))
        .into()
}
