//! Configuration: flags override environment variables (`SLUICE__SECTION__KEY`),
//! which override the TOML file (`--config`), which overrides the defaults.

use anyhow::Context;
use serde::Deserialize;
use sluice_iceberg::CatalogConfig;
use sluice_store::{DynamoConfig, Retention, StoreConfig, WriterConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_BIND: &str = "127.0.0.1:7878";
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";

/// The storage flags shared by `serve` and `migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Directory of the embedded SQLite database (used when no database URL is set).
    #[arg(long, env = "SLUICE__DATABASE__DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...) or DynamoDB table prefix
    /// (dynamodb://PREFIX?region=R&endpoint=URL&skew_margin_ms=N); absent:
    /// SQLite in the data dir.
    #[arg(long, env = "SLUICE__DATABASE__URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "SLUICE__DATABASE__MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Concurrent group-commit transactions (PostgreSQL; SQLite uses one).
    #[arg(long, env = "SLUICE__DATABASE__WRITERS")]
    pub writers: Option<usize>,
    /// Most commands in one group-commit transaction.
    #[arg(long, env = "SLUICE__DATABASE__MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Days finished leases and batches and events are kept before they are
    /// pruned (default 30; bookmark versions are always kept).
    #[arg(long, env = "SLUICE__DATABASE__HISTORY_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub history_retention_days: Option<u32>,
    /// The event log's most recent events, kept whatever their age
    /// (default 100000).
    #[arg(long, env = "SLUICE__DATABASE__HISTORY_KEEP_EVENTS")]
    pub history_keep_events: Option<u32>,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub iceberg: IcebergSection,
    /// Iceberg catalogs by name (`[catalogs.NAME]`).
    #[serde(default)]
    pub catalogs: std::collections::BTreeMap<String, CatalogConfig>,
    #[serde(default)]
    pub aws: AwsSection,
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// The AWS events queue (`[events]`).
    #[serde(default)]
    pub events: EventsSection,
    #[serde(default)]
    pub aws_auth: AwsAuthSection,
}

/// IAM authentication (`[aws_auth]`); flags override each key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAuthSection {
    /// This deployment's name, which callers sign; set: IAM login is on.
    pub server_id: Option<String>,
    /// Where signed requests are forwarded.
    pub sts_endpoint: Option<String>,
    /// How long a token from a login lives (default 3600, 60 to 43200).
    pub token_ttl_seconds: Option<u64>,
}

/// How long a token from an IAM login lives unless configured.
pub const DEFAULT_AWS_TOKEN_TTL_SECONDS: u64 = 3600;

/// IAM authentication's settings, or `None` when no server id is set.
pub fn aws_auth(
    file: &FileConfig,
    server_id: Option<String>,
    sts_endpoint: Option<String>,
    token_ttl_seconds: Option<u64>,
) -> anyhow::Result<Option<sluice_api::routes::aws_auth::AwsAuthConfig>> {
    let Some(server_id) = server_id.or_else(|| file.aws_auth.server_id.clone()) else {
        return Ok(None);
    };
    anyhow::ensure!(
        !server_id.trim().is_empty() && server_id.len() <= 256,
        "[aws_auth] server_id must be 1 to 256 characters"
    );
    let ttl = token_ttl_seconds
        .or(file.aws_auth.token_ttl_seconds)
        .unwrap_or(DEFAULT_AWS_TOKEN_TTL_SECONDS);
    anyhow::ensure!(
        (60..=43_200).contains(&ttl),
        "[aws_auth] token_ttl_seconds must be 60 to 43200"
    );
    let sts_endpoint = sts_endpoint
        .or_else(|| file.aws_auth.sts_endpoint.clone())
        .unwrap_or_else(|| match &file.aws.region {
            Some(region) => format!("https://sts.{region}.amazonaws.com/"),
            None => "https://sts.amazonaws.com/".to_owned(),
        });
    anyhow::ensure!(
        sts_endpoint.starts_with("https://") || sts_endpoint.starts_with("http://"),
        "[aws_auth] sts_endpoint `{sts_endpoint}` is not an http(s) URL"
    );
    Ok(Some(sluice_api::routes::aws_auth::AwsAuthConfig {
        server_id,
        sts_endpoint,
        token_ttl: Duration::from_secs(ttl),
    }))
}

/// The SQS queue EventBridge rules feed with Glue's table and job state
/// changes (`[events]`): read by the leader to refresh a changed table
/// and read an ended run at once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    pub queue_url: Option<String>,
}

/// The scheduler's loop (`[scheduler]`); flags override each key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Total GetJobRun/GetJobRuns calls per second (default 10).
    pub glue_calls_per_second: Option<f64>,
    /// StartJobRun calls per second at most (default 50).
    pub glue_starts_per_second: Option<f64>,
    /// Longest wait between two polls of one run (default 30).
    pub run_poll_max_seconds: Option<u64>,
    /// TTL of the leader's lease: a dead leader is replaced after about
    /// this long (default 6).
    pub leader_ttl_seconds: Option<u32>,
    /// TTL of a compaction's write lease, heartbeated while it runs
    /// (default 120).
    pub compaction_lease_ttl_seconds: Option<u32>,
    /// The URL Glue jobs reach sluice at, passed to the runs it starts as
    /// `--sluice-url`.
    pub advertise_url: Option<String>,
}

/// How sluice reaches AWS for its own calls (Glue containers' views);
/// credentials come from the default chain. Catalogs configure their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub region: Option<String>,
    /// An emulator's endpoint (moto, LocalStack); absent: AWS itself.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergSection {
    /// The catalog of tables that name none.
    pub default_catalog: Option<String>,
    pub refresh_interval_seconds: Option<u64>,
    /// Catalog calls a second for the snapshot watcher (all tables).
    pub catalog_calls_per_second: Option<f64>,
}

/// The name of the embedded catalog.
pub const EMBEDDED_CATALOG: &str = "local";
pub const DEFAULT_REFRESH_INTERVAL_SECONDS: u64 = 30;
/// Within Glue's default quotas for `GetTables`/`GetTable` with room to
/// spare for the jobs' own calls.
pub const DEFAULT_CATALOG_CALLS_PER_SECOND: f64 = 50.0;

/// The catalogs to connect and the default one. With none configured, the
/// embedded SQLite store gets the embedded catalog (`local`, a SQLite file
/// and a warehouse folder in its data directory), so that sluice works
/// offline; a PostgreSQL deployment gets none (its replicas share no disk).
pub fn catalogs(
    file: &FileConfig,
    store: &StoreConfig,
    default_flag: Option<String>,
) -> (Vec<CatalogConfig>, Option<String>) {
    let mut configs: Vec<CatalogConfig> = file
        .catalogs
        .iter()
        .map(|(name, c)| CatalogConfig {
            name: name.clone(),
            ..c.clone()
        })
        .collect();
    if configs.is_empty() {
        if let StoreConfig::Sqlite { data_dir } = store {
            configs.push(CatalogConfig::embedded(EMBEDDED_CATALOG, data_dir));
        }
    }
    let default = default_flag
        .or_else(|| file.iceberg.default_catalog.clone())
        .or_else(|| (configs.len() == 1).then(|| configs[0].name.clone()));
    (configs, default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub bind: Option<String>,
    /// auto, on or off (see `sluice serve --help`).
    pub auth: Option<String>,
    pub max_waiters_per_table: Option<u32>,
    pub max_long_polls: Option<usize>,
    pub header_read_timeout_seconds: Option<u64>,
    pub write_stall_timeout_seconds: Option<u64>,
    pub max_open_connections: Option<u64>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub event_feed_drop_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    /// `dynamodb` (with the fields below) instead of a `url`.
    pub kind: Option<String>,
    /// DynamoDB: the table is `{table_prefix}-state`.
    pub table_prefix: Option<String>,
    pub region: Option<String>,
    /// DynamoDB: another endpoint (an emulator, a VPC endpoint).
    pub endpoint: Option<String>,
    /// DynamoDB: how far apart the replicas' clocks may be (default 1000).
    pub skew_margin_ms: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub max_connections: Option<u32>,
    pub writers: Option<usize>,
    pub max_batch: Option<usize>,
    pub history_retention_days: Option<u32>,
    pub history_keep_events: Option<u32>,
}

impl FileConfig {
    /// The file at `path`, or the `inline` text, or nothing (the defaults).
    pub fn load(path: Option<&Path>, inline: Option<&str>) -> anyhow::Result<FileConfig> {
        if let Some(text) = inline {
            return toml::from_str(text).context("parsing SLUICE_CONFIG_TOML");
        }
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl StorageArgs {
    pub fn resolve(&self, file: &DatabaseSection) -> anyhow::Result<(StoreConfig, WriterConfig)> {
        let url = match (self.database_url.clone(), file.kind.as_deref()) {
            (Some(url), _) => Some(url),
            (None, Some("dynamodb")) => Some(dynamodb_url(file)?),
            (None, Some(other)) => {
                anyhow::bail!("[database] kind `{other}` is not known (known: dynamodb; PostgreSQL takes a url)")
            }
            (None, None) => file.url.clone(),
        };
        let store = match url {
            Some(url) if DynamoConfig::is_url(&url) => {
                StoreConfig::Dynamo(DynamoConfig::parse(&url).map_err(anyhow::Error::msg)?)
            }
            Some(url) => StoreConfig::Postgres {
                url,
                max_connections: self.max_connections.or(file.max_connections).unwrap_or(16),
            },
            None => StoreConfig::Sqlite {
                data_dir: self
                    .data_dir
                    .clone()
                    .or_else(|| file.data_dir.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            },
        };
        let defaults = WriterConfig::default();
        let writer = WriterConfig {
            max_batch: self
                .max_batch
                .or(file.max_batch)
                .unwrap_or(defaults.max_batch),
            writers: self.writers.or(file.writers).unwrap_or(defaults.writers),
            retention: Retention {
                keep_for: self
                    .history_retention_days
                    .or(file.history_retention_days)
                    .map_or(defaults.retention.keep_for, |days| {
                        Duration::from_secs(u64::from(days) * 86_400)
                    }),
                keep_events: self
                    .history_keep_events
                    .or(file.history_keep_events)
                    .map_or(defaults.retention.keep_events, i64::from),
            },
        };
        Ok((store, writer))
    }
}

/// The `[database] kind = "dynamodb"` section as a URL, so that both
/// spellings go through one parser.
fn dynamodb_url(file: &DatabaseSection) -> anyhow::Result<String> {
    let prefix = file
        .table_prefix
        .as_deref()
        .context("[database] kind = \"dynamodb\" needs table_prefix")?;
    let mut params = Vec::new();
    if let Some(region) = &file.region {
        params.push(format!("region={region}"));
    }
    if let Some(endpoint) = &file.endpoint {
        params.push(format!(
            "endpoint={}",
            endpoint.replace('%', "%25").replace('&', "%26")
        ));
    }
    if let Some(ms) = file.skew_margin_ms {
        params.push(format!("skew_margin_ms={ms}"));
    }
    Ok(if params.is_empty() {
        format!("dynamodb://{prefix}")
    } else {
        format!("dynamodb://{prefix}?{}", params.join("&"))
    })
}

/// Where the state lives, for the start-up line (never the password).
pub fn describe(store: &StoreConfig) -> String {
    match store {
        StoreConfig::Sqlite { data_dir } => format!("sqlite in {}", data_dir.display()),
        StoreConfig::Postgres { url, .. } => {
            let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
            format!("postgres at {host}")
        }
        StoreConfig::Dynamo(c) => format!(
            "dynamodb table {}{}",
            c.table(),
            c.endpoint
                .as_deref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        ),
    }
}
