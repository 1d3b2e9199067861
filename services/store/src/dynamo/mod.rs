//! The AWS-native backend: every aggregate in one DynamoDB table, through
//! aws-sdk-dynamodb. No database to run; many replicas may share it.
//!
//! DynamoDB has no transactions that hold locks and no clock, so this
//! backend differs from the SQL ones in three ways, each kept in one place:
//! - writes are optimistic (`write.rs`): a batch loads its roots with
//!   strongly consistent reads, applies the same pure rules, and commits
//!   one `TransactWriteItems` conditioned on every root's version; a lost
//!   race loads and applies again;
//! - time is sluice's own clock, and expiry is judged `skew_margin` late
//!   (`TableState::skew_margin`), so replicas whose clocks disagree by less
//!   than that never end a lease before its holder's TTL has run;
//! - replicas hear each other's commits by reading the event counter at a
//!   short interval (`wake.rs`).
//!
//! This file owns the client, the configuration, the table's creation and
//! checks; the aggregates' files beside it (`leases.rs`, `streams.rs`, ...)
//! lay out their items (`items.rs`) and write through `write.rs`.

mod containers;
mod events;
mod hydrations;
mod items;
mod leases;
mod schedule;
mod snapshots;
mod streams;
mod tokens;
mod views;
mod wake;
mod write;

use crate::error::StoreError;
use crate::ports::Backend;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{LeaseId, Millis, TableName};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How far apart the replicas' clocks may be, unless configured.
pub const DEFAULT_SKEW_MARGIN: Duration = Duration::from_secs(1);
/// How often each replica reads the event counter to hear the others.
pub const WAKE_INTERVAL: Duration = Duration::from_millis(100);
/// Loading and applying a batch again after losing a race, before giving up.
const TRANSACT_RETRIES: usize = 64;

/// `dynamodb://TABLE_PREFIX?region=R&endpoint=URL&skew_margin_ms=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// The table is named `{prefix}-state` (or `{prefix}state` when the
    /// prefix ends in `-`, `_` or `.`).
    pub table_prefix: String,
    /// Else the SDK's: `AWS_REGION`, the profile, the instance's.
    pub region: Option<String>,
    /// Another endpoint than AWS's: an emulator, a VPC endpoint.
    pub endpoint: Option<String>,
    pub skew_margin: Duration,
}

impl DynamoConfig {
    pub fn is_url(url: &str) -> bool {
        url.starts_with("dynamodb://")
    }

    pub fn parse(url: &str) -> Result<DynamoConfig, String> {
        let rest = url
            .strip_prefix("dynamodb://")
            .ok_or_else(|| format!("`{url}` is not a dynamodb:// URL"))?;
        let (prefix, query) = rest.split_once('?').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if prefix.is_empty() || prefix.len() > 200 || !prefix.chars().all(valid) {
            return Err(format!(
                "the table prefix in `{url}` must be 1 to 200 letters, digits, `-`, `_` or `.`"
            ));
        }
        let mut config = DynamoConfig {
            table_prefix: prefix.to_owned(),
            region: None,
            endpoint: None,
            skew_margin: DEFAULT_SKEW_MARGIN,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match name {
                "region" => config.region = Some(value),
                "endpoint" => config.endpoint = Some(value),
                "skew_margin_ms" => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| format!("skew_margin_ms `{value}` is not a number"))?;
                    config.skew_margin = Duration::from_millis(ms);
                }
                other => {
                    return Err(format!(
                        "unknown parameter `{other}` in `{url}` (known: region, endpoint, skew_margin_ms)"
                    ))
                }
            }
        }
        Ok(config)
    }

    pub fn table(&self) -> String {
        if self.table_prefix.ends_with(['-', '_', '.']) {
            format!("{}state", self.table_prefix)
        } else {
            format!("{}-state", self.table_prefix)
        }
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct DynamoBackend {
    client: aws_sdk_dynamodb::Client,
    table: String,
    skew_margin: Millis,
    /// The newest event id this replica knows committed: the next append
    /// tries from it, and learns better if another replica appended since.
    newest_event: Mutex<Option<i64>>,
    /// Which table each lease is on: it never changes, so it is kept once
    /// read (up to a bound) and a batch on a known lease reads its root only.
    lease_tables: Mutex<HashMap<LeaseId, TableName>>,
    /// Event ids this replica appended lately, which its own long-polls
    /// were woken for already (`wake.rs` skips them).
    own_events: Mutex<VecDeque<(i64, i64)>>,
    /// Items read since start (what DynamoDB charges read units for).
    items_read: AtomicU64,
}

/// The most leases whose table is remembered.
const LEASE_TABLES_KEPT: usize = 100_000;

impl DynamoBackend {
    /// The client, and the table checked: it must exist with this
    /// backend's key schema, and be readable.
    pub async fn open(config: &DynamoConfig) -> Result<DynamoBackend, StoreError> {
        let backend = DynamoBackend::connect(config).await?;
        backend.check_table().await?;
        if backend.get(META, INDEXED).await?.is_none() {
            return Err(StoreError::Unavailable(format!(
                "the DynamoDB table {} was written by an older sluice, without the index items \
                 this one reads: run `sluice migrate` with the same --database-url first",
                backend.table
            )));
        }
        Ok(backend)
    }

    /// The index items the hot path reads instead of whole partitions
    /// (`run-open`, `job-fire`, `intent-pending`, `table-live`), for what
    /// an older sluice stored without them; once, then a marker says so.
    async fn build_indexes(&self) -> Result<(), StoreError> {
        if self.get(META, INDEXED).await?.is_some() {
            return Ok(());
        }
        let mut writes = schedule::build_indexes(self).await?;
        writes.extend(views::build_indexes(self).await?);
        writes.extend(leases::build_indexes(self).await?);
        let items: usize = writes.iter().map(write::Write::len).sum();
        for w in &writes {
            self.commit_once(w, "an index item").await?;
        }
        let mut marker = write::Write::default();
        marker.put_attrs(META, INDEXED, write::Expect::Any, []);
        self.commit_once(&marker, "the index marker").await?;
        if items > 0 {
            tracing::info!(items, "built the index items of an older sluice's table");
        }
        Ok(())
    }

    /// Create the table (on-demand capacity) if it is missing, then check it.
    pub async fn migrate(config: &DynamoConfig) -> Result<(), StoreError> {
        let backend = DynamoBackend::connect(config).await?;
        match backend.describe().await? {
            Some(_) => {}
            None => {
                backend.create_table().await?;
                tracing::info!(table = %backend.table, "created the DynamoDB table");
            }
        }
        backend.check_table().await?;
        backend.build_indexes().await?;
        let upgraded = hydrations::upgrade_completed(&backend).await?;
        if upgraded > 0 {
            tracing::info!(upgraded, "completed hydrations are live copies now");
        }
        Ok(())
    }

    async fn connect(config: &DynamoConfig) -> Result<DynamoBackend, StoreError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(StoreError::Unavailable(
                "no AWS region for DynamoDB: add ?region=... to the database URL or set AWS_REGION"
                    .into(),
            ));
        }
        Ok(DynamoBackend {
            client: aws_sdk_dynamodb::Client::new(&sdk),
            table: config.table(),
            skew_margin: Millis(i64::try_from(config.skew_margin.as_millis()).unwrap_or(i64::MAX)),
            newest_event: Mutex::new(None),
            lease_tables: Mutex::new(HashMap::new()),
            own_events: Mutex::new(VecDeque::new()),
            items_read: AtomicU64::new(0),
        })
    }

    /// The table's status, `None` when it does not exist.
    async fn describe(
        &self,
    ) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => Ok(out.table),
            Err(error) => match error.as_service_error() {
                Some(e) if e.is_resource_not_found_exception() => Ok(None),
                _ => Err(start_error(&self.table, "DescribeTable", error)),
            },
        }
    }

    async fn create_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another replica's migrate created it first.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(error) => return Err(start_error(&self.table, "CreateTable", error)),
        }
        for _ in 0..120 {
            if let Some(table) = self.describe().await? {
                if table.table_status() == Some(&TableStatus::Active) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "the DynamoDB table {} did not become ACTIVE within a minute",
            self.table
        )))
    }

    /// The table exists, is keyed as this backend lays items out, and can
    /// be read: else a start-up error that says what to do.
    async fn check_table(&self) -> Result<(), StoreError> {
        let Some(table) = self.describe().await? else {
            return Err(StoreError::Unavailable(format!(
                "the DynamoDB table {} does not exist: run `sluice migrate` with the same --database-url to create it",
                self.table
            )));
        };
        let keys: Vec<(String, String)> = table
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect();
        let expected = vec![
            ("pk".to_owned(), "HASH".to_owned()),
            ("sk".to_owned(), "RANGE".to_owned()),
        ];
        if keys != expected {
            return Err(StoreError::Unavailable(format!(
                "the DynamoDB table {} is keyed {keys:?}, not by pk (HASH) and sk (RANGE): it is not sluice's; pick another table prefix",
                self.table
            )));
        }
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(items::key(write::COUNTER, write::EVENTS)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| start_error(&self.table, "GetItem", e))?;
        Ok(())
    }

    /// The lease's table, if this replica has seen it.
    fn known_table(&self, id: LeaseId) -> Option<TableName> {
        self.lease_tables
            .lock()
            .expect("lease tables")
            .get(&id)
            .cloned()
    }

    fn remember_tables(&self, pairs: impl IntoIterator<Item = (LeaseId, TableName)>) {
        let mut known = self.lease_tables.lock().expect("lease tables");
        if known.len() > LEASE_TABLES_KEPT {
            known.clear();
        }
        known.extend(pairs);
    }

    fn count_read(&self, items: usize) {
        self.items_read.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// This process's clock: DynamoDB has none.
    fn now(&self) -> Millis {
        crate::system_now()
    }
}

/// `meta` / `indexes`: present once `sluice migrate` built the index items.
const META: &str = "meta";
const INDEXED: &str = "indexes";

/// sluice's own tables (the scheduler's leader lease): never listed.
const SYSTEM_PREFIX: &str = "sluice_system.";

/// `name` starts with one of the prefixes in `scopes`, or there are none:
/// the SQL backends' scope filter, applied as items are read.
fn in_scopes(name: &str, scopes: &[String]) -> bool {
    scopes.is_empty() || scopes.iter().any(|s| name.starts_with(s.as_str()))
}

/// An error at start-up or migration, saying what to fix.
fn start_error<E, R>(table: &str, op: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("");
    if matches!(
        code,
        "AccessDeniedException" | "UnrecognizedClientException" | "InvalidSignatureException"
    ) {
        return StoreError::Unavailable(format!(
            "DynamoDB refused {op} on table {table} ({code}): the credentials sluice runs with need \
             dynamodb:DescribeTable, GetItem, BatchGetItem, Query, PutItem, DeleteItem, \
             BatchWriteItem, TransactWriteItems (and CreateTable for `sluice migrate`) on it: {}",
            DisplayErrorContext(&error)
        ));
    }
    sdk_error(op, error)
}

/// What a failed call means to the caller: retry later, or a bug.
pub(crate) fn sdk_error<E, R>(op: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&error).to_string();
    match error.as_service_error() {
        Some(e) => match e.code().unwrap_or("") {
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionInProgressException"
            | "TransactionConflictException" => {
                StoreError::Unavailable(format!("DynamoDB {op}: {detail}"))
            }
            "ResourceNotFoundException" => StoreError::Unavailable(format!(
                "DynamoDB {op}: the table is missing (run `sluice migrate`): {detail}"
            )),
            "ConditionalCheckFailedException" => {
                StoreError::Conflict(format!("DynamoDB {op}: {detail}"))
            }
            _ => StoreError::Internal(format!("DynamoDB {op}: {detail}")),
        },
        // Timeouts, connection failures, an unreadable response.
        None => StoreError::Unavailable(format!("DynamoDB {op}: {detail}")),
    }
}

impl Backend for DynamoBackend {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.read_counter().await.map(|_| ()) }.boxed()
    }

    fn max_writers(&self) -> usize {
        // Writers of one replica race each other as the replicas do; more
        // than a few only lose more races.
        4
    }

    fn items_read(&self) -> Option<u64> {
        Some(self.items_read.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = DynamoConfig::parse(
            "dynamodb://prod-sluice?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A5000&skew_margin_ms=250",
        )
        .expect("valid");
        assert_eq!(c.table(), "prod-sluice-state");
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.skew_margin, Duration::from_millis(250));
        let plain = DynamoConfig::parse("dynamodb://team_").expect("valid");
        assert_eq!(plain.table(), "team_state");
        assert_eq!(plain.skew_margin, DEFAULT_SKEW_MARGIN);
        assert!(DynamoConfig::parse("dynamodb://").is_err());
        assert!(DynamoConfig::parse("dynamodb://a b").is_err());
        assert!(DynamoConfig::parse("dynamodb://x?colour=red").is_err());
        assert!(DynamoConfig::parse("dynamodb://x?skew_margin_ms=soon").is_err());
    }
}
