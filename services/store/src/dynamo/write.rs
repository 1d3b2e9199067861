//! Writes: every change to an aggregate is a conditional write, and one
//! group commit is one `TransactWriteItems`.
//!
//! A root item carries a version `v`. A transaction puts each root it
//! changed on the condition that `v` is still the one it loaded (or that
//! the item does not exist yet), and checks each root it only read the
//! same way, so that a commit is exactly as if the batch had held every
//! lock the SQL backends take. When another replica got there first, the
//! whole write is refused and the caller loads and applies again.
//!
//! Events are numbered by a counter item written in the same transaction,
//! on the condition that it still holds the value read: ids are strictly
//! increasing in commit order across replicas, because two transactions
//! that both append cannot both commit from the same counter value. The
//! cost is one hot item that serializes appends; group commit keeps that
//! to one counter write per batch, not per command. When only the counter
//! moved, the events are renumbered and the same write sent again without
//! applying the batch anew.

use super::items::{doc_attr, json, key, n, padded, s, Attrs};
use super::DynamoBackend;
use crate::error::StoreError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};
use serde::Serialize;
use sluice_core::{Event, NewEvent};

/// DynamoDB's limit on the items of one transaction.
pub(crate) const MAX_ITEMS: usize = 100;
/// Renumbering events when only the counter moved, before giving up.
const COUNTER_RETRIES: usize = 64;

pub(crate) const EVENTS: &str = "events";
pub(crate) const COUNTER: &str = "counter";

/// What a write expects of the item it writes or checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// It must not exist (a new root: its version becomes 1).
    Absent,
    /// It must be at this version (the write makes it the next).
    Version(i64),
    /// No condition: history items that only their root's check guards.
    Any,
}

enum Action {
    Put { item: Attrs, expect: Expect },
    Delete { key: Attrs, expect: Expect },
    Check { key: Attrs, expect: Expect },
}

/// One transaction's writes, built by an aggregate's file.
#[derive(Default)]
pub(crate) struct Write {
    actions: Vec<Action>,
    events: Vec<NewEvent>,
}

/// What became of a [`Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Committed; the first event's id (0 when it appended none).
    Done { first_event: i64 },
    /// A condition failed: another writer changed what was loaded.
    Conflict,
}

impl Write {
    /// Put a whole item: `doc` as JSON plus `extra` attributes.
    pub fn put<T: Serialize>(
        &mut self,
        pk: &str,
        sk: &str,
        expect: Expect,
        document: &T,
        extra: impl IntoIterator<Item = (&'static str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) {
        self.put_raw(pk, sk, expect, json(document), extra);
    }

    /// Put a whole item whose `doc` is already encoded.
    pub fn put_raw(
        &mut self,
        pk: &str,
        sk: &str,
        expect: Expect,
        document: String,
        extra: impl IntoIterator<Item = (&'static str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) {
        let doc = std::iter::once(("doc", s(document)));
        self.put_attrs(pk, sk, expect, doc.chain(extra));
    }

    /// Put an item of attributes only, with no document: one that points
    /// at another (a lease's table, a name's id), whose readers tell it
    /// from a document by the missing `doc`.
    pub fn put_attrs(
        &mut self,
        pk: &str,
        sk: &str,
        expect: Expect,
        attrs: impl IntoIterator<Item = (&'static str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) {
        let mut item = key(pk, sk);
        for (name, value) in attrs {
            item.insert(name.to_owned(), value);
        }
        match expect {
            Expect::Absent => {
                item.insert("v".into(), n(1));
            }
            Expect::Version(v) => {
                item.insert("v".into(), n(v + 1));
            }
            Expect::Any => {}
        }
        self.actions.push(Action::Put { item, expect });
    }

    pub fn delete(&mut self, pk: &str, sk: &str, expect: Expect) {
        self.actions.push(Action::Delete {
            key: key(pk, sk),
            expect,
        });
    }

    /// Commit only if this item (read, not written) is as expected.
    pub fn check(&mut self, pk: &str, sk: &str, expect: Expect) {
        self.actions.push(Action::Check {
            key: key(pk, sk),
            expect,
        });
    }

    pub fn events(&mut self, events: &[NewEvent]) {
        self.events.extend_from_slice(events);
    }

    /// Whether there is anything to write (checks alone are not).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self
                .actions
                .iter()
                .all(|a| matches!(a, Action::Check { .. }))
    }

    /// The items the transaction will hold.
    pub fn len(&self) -> usize {
        self.actions.len()
            + if self.events.is_empty() {
                0
            } else {
                self.events.len() + 1
            }
    }
}

/// Writes that need not commit together (what `sluice migrate` adds),
/// each within a transaction's limit.
#[derive(Default)]
pub(crate) struct Writes(pub Vec<Write>);

impl Writes {
    /// The write to add the next item or two to.
    pub fn next(&mut self) -> &mut Write {
        if self.0.last().is_none_or(|w| w.len() + 2 > MAX_ITEMS) {
            self.0.push(Write::default());
        }
        self.0.last_mut().expect("one was just pushed")
    }
}

/// A condition expression and its values for `expect`.
fn condition(expect: Expect) -> Option<(&'static str, Option<i64>)> {
    match expect {
        Expect::Absent => Some(("attribute_not_exists(pk)", None)),
        Expect::Version(v) => Some(("v = :v", Some(v))),
        Expect::Any => None,
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("building a DynamoDB request: {e}"))
}

fn transact_item(table: &str, action: &Action) -> Result<TransactWriteItem, StoreError> {
    let item = match action {
        Action::Put { item, expect } => {
            let mut put = Put::builder()
                .table_name(table)
                .set_item(Some(item.clone()));
            if let Some((expr, v)) = condition(*expect) {
                put = put.condition_expression(expr);
                if let Some(v) = v {
                    put = put.expression_attribute_values(":v", n(v));
                }
            }
            TransactWriteItem::builder()
                .put(put.build().map_err(build_err)?)
                .build()
        }
        Action::Delete { key, expect } => {
            let mut delete = Delete::builder()
                .table_name(table)
                .set_key(Some(key.clone()));
            if let Some((expr, v)) = condition(*expect) {
                delete = delete.condition_expression(expr);
                if let Some(v) = v {
                    delete = delete.expression_attribute_values(":v", n(v));
                }
            }
            TransactWriteItem::builder()
                .delete(delete.build().map_err(build_err)?)
                .build()
        }
        Action::Check { key, expect } => {
            let (expr, v) = condition(*expect).unwrap_or(("attribute_exists(pk)", None));
            let mut check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key.clone()))
                .condition_expression(expr);
            if let Some(v) = v {
                check = check.expression_attribute_values(":v", n(v));
            }
            TransactWriteItem::builder()
                .condition_check(check.build().map_err(build_err)?)
                .build()
        }
    };
    Ok(item)
}

impl DynamoBackend {
    /// The newest event id, read strongly consistent (0: none yet).
    pub(crate) async fn read_counter(&self) -> Result<i64, StoreError> {
        let item = self.get(COUNTER, EVENTS).await?;
        Ok(item
            .as_ref()
            .and_then(|i| super::items::number(i, "n"))
            .unwrap_or(0))
    }

    /// Send `write` as one transaction. Fails with
    /// [`StoreError::TooLarge`] when it holds more than DynamoDB takes in
    /// one: the writer then commits the batch in smaller parts.
    pub(crate) async fn commit(&self, write: &Write) -> Result<Committed, StoreError> {
        if write.len() > MAX_ITEMS {
            return Err(StoreError::TooLarge(format!(
                "{} items in one transaction; DynamoDB takes {MAX_ITEMS}",
                write.len()
            )));
        }
        if write.is_empty() {
            return Ok(Committed::Done { first_event: 0 });
        }
        let mut base: Option<i64> = *self.newest_event.lock().expect("counter lock");
        for _ in 0..COUNTER_RETRIES {
            let mut items = write
                .actions
                .iter()
                .map(|a| transact_item(&self.table, a))
                .collect::<Result<Vec<_>, _>>()?;
            let first = if write.events.is_empty() {
                0
            } else {
                let from = match base {
                    Some(b) => b,
                    None => self.read_counter().await?,
                };
                for (i, event) in write.events.iter().enumerate() {
                    let id = from + 1 + i as i64;
                    let whole = Event {
                        id,
                        event: event.clone(),
                    };
                    let mut item = key(EVENTS, &padded(id));
                    let (name, value) = doc_attr(&whole);
                    item.insert(name, value);
                    items.push(transact_item(
                        &self.table,
                        &Action::Put {
                            item,
                            expect: Expect::Any,
                        },
                    )?);
                }
                let mut counter = key(COUNTER, EVENTS);
                counter.insert("n".into(), n(from + write.events.len() as i64));
                let mut put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(counter));
                put = if from == 0 {
                    put.condition_expression("attribute_not_exists(pk)")
                } else {
                    put.condition_expression("n = :n")
                        .expression_attribute_values(":n", n(from))
                };
                items.push(
                    TransactWriteItem::builder()
                        .put(put.build().map_err(build_err)?)
                        .build(),
                );
                base = Some(from);
                from + 1
            };
            // A token per attempt at this exact write: when the SDK sends it
            // again after a timeout, DynamoDB answers from the first commit
            // instead of failing its conditions against itself.
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .send()
                .await;
            let error = match sent {
                Ok(_) => {
                    if !write.events.is_empty() {
                        let newest = first + write.events.len() as i64 - 1;
                        *self.newest_event.lock().expect("counter lock") = Some(newest);
                    }
                    return Ok(Committed::Done { first_event: first });
                }
                Err(error) => error,
            };
            let reasons: Vec<String> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_owned())
                    .collect(),
                _ => return Err(super::sdk_error("TransactWriteItems", error)),
            };
            let failed =
                |code: &str| code == "ConditionalCheckFailed" || code == "TransactionConflict";
            let (counter_failed, others_failed) = if write.events.is_empty() {
                (false, reasons.iter().any(|c| failed(c)))
            } else {
                let (rest, last) = reasons.split_at(reasons.len().saturating_sub(1));
                (
                    last.iter().any(|c| failed(c)),
                    rest.iter().any(|c| failed(c)),
                )
            };
            if counter_failed {
                *self.newest_event.lock().expect("counter lock") = None;
                base = None;
            }
            if others_failed {
                return Ok(Committed::Conflict);
            }
            if !counter_failed {
                // Cancelled for another reason (an item too large, a
                // throughput limit): say which.
                let why: Vec<&String> = reasons.iter().filter(|c| *c != "None").collect();
                return Err(match why.first().map(|c| c.as_str()) {
                    Some("ThrottlingError" | "ProvisionedThroughputExceeded") => {
                        StoreError::Unavailable(format!(
                            "DynamoDB throttled a transaction: {why:?}"
                        ))
                    }
                    _ => StoreError::Internal(format!(
                        "DynamoDB cancelled a transaction: {why:?} ({})",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                    )),
                });
            }
        }
        Err(StoreError::Unavailable(
            "the event counter is too contended: every renumbered append lost".into(),
        ))
    }

    /// Send `write`, mapping a lost race to [`StoreError::Conflict`]: for
    /// the plain statements (tokens, containers), where the caller does
    /// not retry.
    pub(crate) async fn commit_once(&self, write: &Write, what: &str) -> Result<(), StoreError> {
        match self.commit(write).await? {
            Committed::Done { .. } => Ok(()),
            Committed::Conflict => Err(StoreError::Conflict(format!(
                "{what} changed while it was written"
            ))),
        }
    }
}

/// A text attribute, for `extra`.
pub(crate) fn text_attr(
    name: &'static str,
    value: impl Into<String>,
) -> (&'static str, aws_sdk_dynamodb::types::AttributeValue) {
    (name, s(value))
}

/// A number attribute, for `extra`.
pub(crate) fn number_attr(
    name: &'static str,
    value: i64,
) -> (&'static str, aws_sdk_dynamodb::types::AttributeValue) {
    (name, n(value))
}
