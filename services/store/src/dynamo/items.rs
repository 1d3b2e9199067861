//! Items as this backend lays them out, and the reads every aggregate's
//! file uses: strongly consistent gets, batched gets and paged queries.
//!
//! One DynamoDB table holds everything. Each item has a partition key
//! `pk` naming a kind of document (and, where a kind is read per owner,
//! the owner: `batch/STREAM`), a sort key `sk` ordering it within, the
//! document itself as JSON in `doc`, and on the aggregates' roots a
//! version `v` that every write compares (`write.rs`).

use super::DynamoBackend;
use crate::error::StoreError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, WriteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

pub(crate) type Attrs = HashMap<String, AttributeValue>;

/// BatchGetItem's limit per call.
const MAX_BATCH_GET: usize = 100;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: &str, sk: &str) -> Attrs {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// A non-negative number as a sort key that sorts as the number does.
pub(crate) fn padded(value: i64) -> String {
    format!("{:020}", value.max(0))
}

/// A document as stored in `doc`.
pub(crate) fn json<T: Serialize>(doc: &T) -> String {
    serde_json::to_string(doc).expect("documents serialize")
}

/// The `doc` attribute of a document.
pub(crate) fn doc_attr<T: Serialize>(doc: &T) -> (String, AttributeValue) {
    ("doc".to_owned(), s(json(doc)))
}

pub(crate) fn doc<T: DeserializeOwned>(item: &Attrs) -> Result<T, StoreError> {
    let text = text(item, "doc")?;
    serde_json::from_str(text).map_err(|e| {
        StoreError::Internal(format!(
            "corrupt document at {}/{}: {e}",
            text_or(item, "pk"),
            text_or(item, "sk")
        ))
    })
}

pub(crate) fn text<'a>(item: &'a Attrs, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(StoreError::Internal(format!(
            "item {}/{} has no text attribute `{name}`",
            text_or(item, "pk"),
            text_or(item, "sk")
        ))),
    }
}

fn text_or<'a>(item: &'a Attrs, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(value)) => value,
        _ => "?",
    }
}

pub(crate) fn number(item: &Attrs, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// The version an item was read at (0: a document without one).
pub(crate) fn version(item: &Attrs) -> i64 {
    number(item, "v").unwrap_or(0)
}

/// Which sort keys a query reads.
#[derive(Debug, Clone)]
pub(crate) enum Range {
    All,
    /// Strictly after this key.
    After(String),
    /// Strictly before this key.
    Before(String),
    Prefix(String),
}

impl DynamoBackend {
    /// One item, read strongly consistent.
    pub(crate) async fn get(&self, pk: &str, sk: &str) -> Result<Option<Attrs>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| super::sdk_error("GetItem", e))?;
        self.count_read(usize::from(out.item.is_some()));
        Ok(out.item)
    }

    /// Many items, strongly consistent, in as few calls as BatchGetItem
    /// allows; by `(pk, sk)`.
    pub(crate) async fn get_many(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), Attrs>, StoreError> {
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::new();
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let mut pending: Vec<Attrs> = chunk.iter().map(|(p, k)| key(p, k)).collect();
            let mut attempts = 0;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| super::sdk_error("BatchGetItem", e))?;
                let items = out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default();
                self.count_read(items.len());
                for item in items {
                    let pk = text(&item, "pk")?.to_owned();
                    let sk = text(&item, "sk")?.to_owned();
                    found.insert((pk, sk), item);
                }
                if let Some(mut left) = out.unprocessed_keys {
                    if let Some(left) = left.remove(&self.table) {
                        pending = left.keys;
                    }
                }
                attempts += 1;
                if !pending.is_empty() {
                    if attempts > 8 {
                        return Err(StoreError::Unavailable(
                            "DynamoDB left keys unprocessed after 8 tries".into(),
                        ));
                    }
                    // Throttled: back off before asking for the rest.
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempts)).await;
                }
            }
        }
        Ok(found)
    }

    /// The items at these keys that exist, in the keys' order (BatchGetItem
    /// answers in none): what an index item's readers fetch.
    pub(crate) async fn get_in_order(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<Attrs>, StoreError> {
        let mut found = self.get_many(keys).await?;
        Ok(keys.iter().filter_map(|key| found.remove(key)).collect())
    }

    /// Up to `limit` items of partition `pk` in `range`, in sort-key order
    /// (`forward`) or the reverse, that `keep` accepts; strongly consistent.
    pub(crate) async fn query(
        &self,
        pk: &str,
        range: Range,
        forward: bool,
        limit: usize,
        mut keep: impl FnMut(&Attrs) -> bool,
    ) -> Result<Vec<Attrs>, StoreError> {
        let mut kept = Vec::new();
        if limit == 0 {
            return Ok(kept);
        }
        let (condition, bound) = match &range {
            Range::All => ("pk = :pk", None),
            Range::After(after) => ("pk = :pk AND sk > :b", Some(after.clone())),
            Range::Before(before) => ("pk = :pk AND sk < :b", Some(before.clone())),
            Range::Prefix(prefix) => ("pk = :pk AND begins_with(sk, :b)", Some(prefix.clone())),
        };
        let mut start: Option<Attrs> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .scan_index_forward(forward)
                // Pages a little larger than what is left: `keep` may drop some.
                .limit(i32::try_from((limit - kept.len()).clamp(16, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take());
            if let Some(bound) = &bound {
                request = request.expression_attribute_values(":b", s(bound));
            }
            let out = request
                .send()
                .await
                .map_err(|e| super::sdk_error("Query", e))?;
            let items = out.items.unwrap_or_default();
            self.count_read(items.len());
            for item in items {
                if keep(&item) {
                    kept.push(item);
                    if kept.len() >= limit {
                        return Ok(kept);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(kept),
            }
        }
    }

    /// Every item of partition `pk`.
    pub(crate) async fn query_all(&self, pk: &str) -> Result<Vec<Attrs>, StoreError> {
        self.query(pk, Range::All, true, usize::MAX, |_| true).await
    }

    /// The documents of every item of partition `pk`.
    pub(crate) async fn docs<T: DeserializeOwned>(&self, pk: &str) -> Result<Vec<T>, StoreError> {
        self.query_all(pk).await?.iter().map(doc).collect()
    }

    /// The document at `(pk, sk)`, if any.
    pub(crate) async fn get_doc<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get(pk, sk).await?.as_ref().map(doc).transpose()
    }

    /// Delete these items, 25 to a call (history the pruner removes: no
    /// conditions, each delete stands alone); how many.
    pub(crate) async fn delete_many(&self, keys: &[(String, String)]) -> Result<u64, StoreError> {
        for chunk in keys.chunks(25) {
            let mut pending: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
            for (pk, sk) in chunk {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key(pk, sk)))
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                pending.push(WriteRequest::builder().delete_request(delete).build());
            }
            let mut attempts = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| super::sdk_error("BatchWriteItem", e))?;
                if let Some(mut left) = out.unprocessed_items {
                    pending = left.remove(&self.table).unwrap_or_default();
                }
                attempts += 1;
                if !pending.is_empty() {
                    if attempts > 8 {
                        return Err(StoreError::Unavailable(
                            "DynamoDB left deletes unprocessed after 8 tries".into(),
                        ));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempts)).await;
                }
            }
        }
        Ok(keys.len() as u64)
    }
}
