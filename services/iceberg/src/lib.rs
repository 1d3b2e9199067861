//! Iceberg table metadata, read through the `iceberg` crate's catalogs:
//! AWS Glue for production, the REST catalog (Lakekeeper, Polaris, S3
//! Tables), and an embedded SQL catalog on SQLite with a local-folder
//! warehouse, so that sluice works offline. Catalogs are named in the
//! configuration; a table names its catalog (or gets the default one).
#![forbid(unsafe_code)]

mod config;
mod listing;
mod rest_commit;
mod tags;

pub use config::{CatalogConfig, CatalogKind};
pub use sluice_core::snapshots::{TagError, TagTarget};

use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableIdent};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sluice_core::snapshots::{
    CatalogError, CatalogFuture, CatalogPort, ListFuture, Listing, Snapshot, TableMetadata,
    TagFuture,
};
use sluice_core::{Millis, TableName};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Every configured catalog, connected.
pub struct Catalogs {
    default: Option<String>,
    catalogs: HashMap<String, Arc<dyn Catalog>>,
    /// How each was configured: tags are committed the way its kind commits.
    configs: HashMap<String, CatalogConfig>,
    /// A Glue catalog's own client, for the tag writer's `UpdateTable`.
    glue: HashMap<String, aws_sdk_glue::Client>,
    /// A REST catalog's commit endpoint, for the tag writer.
    rest: HashMap<String, rest_commit::RestCommits>,
    /// An SQL catalog's database, for its one-query listing.
    sql: HashMap<String, sqlx::SqlitePool>,
}

impl Catalogs {
    /// Connect each catalog. A catalog that cannot be built (bad
    /// properties, an unreachable SQL catalog database) is a start-up error.
    pub async fn connect(
        configs: &[CatalogConfig],
        default: Option<&str>,
    ) -> anyhow::Result<Catalogs> {
        let mut catalogs: HashMap<String, Arc<dyn Catalog>> = HashMap::new();
        let mut glue = HashMap::new();
        let mut rest = HashMap::new();
        let mut sql = HashMap::new();
        for config in configs {
            config.check()?;
            match config.kind {
                CatalogKind::Glue => {
                    glue.insert(config.name.clone(), glue_client(config).await);
                }
                CatalogKind::Rest => {
                    let commits = rest_commit::RestCommits::new(config)
                        .map_err(|e| anyhow::anyhow!("catalog `{}`: {e}", config.name))?;
                    rest.insert(config.name.clone(), commits);
                }
                CatalogKind::Sql => {
                    if let Some(pool) = listing::sql_pool(config.uri.as_deref()).await {
                        sql.insert(config.name.clone(), pool);
                    }
                }
            }
            let catalog = connect(config)
                .await
                .map_err(|e| anyhow::anyhow!("catalog `{}`: {e}", config.name))?;
            catalogs.insert(config.name.clone(), catalog);
        }
        let configs = configs
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        if let Some(default) = default {
            anyhow::ensure!(
                catalogs.contains_key(default),
                "the default catalog `{default}` is not configured"
            );
        }
        Ok(Catalogs {
            default: default.map(str::to_owned),
            catalogs,
            configs,
            glue,
            rest,
            sql,
        })
    }

    /// A catalog by name, to create tables through in tests and tools.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Catalog>> {
        self.catalogs.get(name).cloned()
    }
}

/// A Glue client as the catalog crate makes its own: the configured
/// endpoint, region and keys (else the default chain), with timeouts.
async fn glue_client(config: &CatalogConfig) -> aws_sdk_glue::Client {
    let props = config.properties();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(std::time::Duration::from_secs(10))
            .operation_timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(3))
            .build(),
    );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(uri) = &config.uri {
        loader = loader.endpoint_url(uri);
    }
    if let (Some(key), Some(secret)) = (
        props.get("aws_access_key_id"),
        props.get("aws_secret_access_key"),
    ) {
        loader = loader.credentials_provider(aws_sdk_glue::config::Credentials::new(
            key,
            secret,
            props.get("aws_session_token").cloned(),
            None,
            "sluice-catalog-config",
        ));
    }
    aws_sdk_glue::Client::new(&loader.load().await)
}

async fn connect(config: &CatalogConfig) -> iceberg::Result<Arc<dyn Catalog>> {
    let props = config.properties();
    let resolving = Arc::new(OpenDalResolvingStorageFactory::new());
    Ok(match config.kind {
        // The Glue catalog picks S3 storage by itself.
        CatalogKind::Glue => Arc::new(
            iceberg_catalog_glue::GlueCatalogBuilder::default()
                .load(&config.name, props)
                .await?,
        ),
        CatalogKind::Rest => Arc::new(
            iceberg_catalog_rest::RestCatalogBuilder::default()
                .with_storage_factory(resolving)
                .load(&config.name, props)
                .await?,
        ),
        CatalogKind::Sql => Arc::new(
            iceberg_catalog_sql::SqlCatalogBuilder::default()
                .with_storage_factory(resolving)
                .load(&config.name, props)
                .await?,
        ),
    })
}

/// `a.b.table` is table `table` in namespace `a.b` (Glue allows one level).
pub fn table_ident(table: &TableName) -> TableIdent {
    let name = table.as_str();
    let (namespace, table) = name.rsplit_once('.').unwrap_or(("default", name));
    TableIdent::new(
        NamespaceIdent::from_vec(namespace.split('.').map(str::to_owned).collect())
            .unwrap_or_else(|_| NamespaceIdent::new(namespace.to_owned())),
        table.to_owned(),
    )
}

impl CatalogPort for Catalogs {
    fn default_catalog(&self) -> Option<&str> {
        self.default.as_deref()
    }

    fn listing(&self, catalog: &str) -> Listing {
        if self.glue.contains_key(catalog) {
            Listing::Namespace {
                page: listing::GLUE_PAGE,
            }
        } else if self.sql.contains_key(catalog) {
            Listing::Catalog
        } else {
            Listing::None
        }
    }

    fn list_page<'a>(
        &'a self,
        catalog: &'a str,
        namespace: Option<&'a str>,
        next: Option<&'a str>,
    ) -> ListFuture<'a> {
        Box::pin(async move {
            if let (Some(glue), Some(namespace)) = (self.glue.get(catalog), namespace) {
                let id = self
                    .configs
                    .get(catalog)
                    .and_then(|c| c.properties().remove("catalog_id"));
                return listing::glue_page(glue, id.as_deref(), catalog, namespace, next).await;
            }
            match self.sql.get(catalog) {
                Some(pool) => listing::sql_all(pool, catalog).await,
                None => Err(CatalogError::UnknownCatalog(catalog.to_owned())),
            }
        })
    }

    fn pin_tags(&self, catalog: &str) -> bool {
        self.configs
            .get(catalog)
            .is_some_and(CatalogConfig::pin_tags)
    }

    fn set_tag<'a>(
        &'a self,
        catalog: &'a str,
        table: &'a TableName,
        name: &'a str,
        target: Option<TagTarget>,
    ) -> TagFuture<'a> {
        Box::pin(Catalogs::set_tag(self, catalog, table, name, target))
    }

    fn table_metadata<'a>(&'a self, catalog: &'a str, table: &'a TableName) -> CatalogFuture<'a> {
        Box::pin(async move {
            let Some(client) = self.catalogs.get(catalog) else {
                return Err(CatalogError::UnknownCatalog(catalog.to_owned()));
            };
            let ident = table_ident(table);
            let loaded = match client.load_table(&ident).await {
                Ok(loaded) => loaded,
                Err(e) => return Err(classify(client.as_ref(), catalog, &ident, e).await),
            };
            let metadata = loaded.metadata();
            let snapshots = metadata
                .snapshots()
                .map(|s| Snapshot {
                    id: s.snapshot_id(),
                    parent_id: s.parent_snapshot_id(),
                    sequence_number: s.sequence_number(),
                    timestamp: Millis(s.timestamp_ms()),
                    operation: s.summary().operation.as_str().to_owned(),
                    summary: s
                        .summary()
                        .additional_properties
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>(),
                    expired_at: None,
                })
                .collect();
            Ok(TableMetadata {
                metadata_location: loaded.metadata_location().map(str::to_owned),
                current_snapshot_id: metadata.current_snapshot_id(),
                snapshots,
            })
        })
    }
}

/// Tell a missing table from a catalog that failed: not every catalog says
/// `TableNotFound` (Glue's client reports an SDK error), so ask once more.
async fn classify(
    client: &dyn Catalog,
    catalog: &str,
    ident: &TableIdent,
    error: iceberg::Error,
) -> CatalogError {
    let missing = match error.kind() {
        ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound => true,
        _ => matches!(client.table_exists(ident).await, Ok(false)),
    };
    if missing {
        CatalogError::NoSuchTable {
            catalog: catalog.to_owned(),
            table: ident.to_string(),
        }
    } else {
        tracing::warn!(catalog, table = %ident, error = %error, "catalog read failed");
        CatalogError::Unavailable {
            catalog: catalog.to_owned(),
            message: error.message().to_owned(),
        }
    }
}
