//! Hydrations on DynamoDB: loaded and written by the lease group's batches
//! (`leases.rs`, whose table roots guard them: every batch that changes a
//! hydration holds its table), read here.
//!
//! Items:
//! - `hydration` / ID: the document (the SQL backends' `doc`), with `table`,
//!   `container` and `state` beside it for the listings' filters;
//! - `open-hydration/TABLE` / ID: one per unfinished hydration, so that a
//!   relag reads its table's open hydrations, not every one ever made.

use super::items::{text, Attrs, Range};
use super::write::{text_attr, Expect, Write};
use super::{in_scopes, DynamoBackend};
use crate::error::StoreError;
use crate::leases::{Loaded, Targets};
use crate::ports::{HydrationPort, HydrationQuery};
use crate::rows::hydrations::{decode, encode, state};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::hydrations::{Hydration, HydrationId};
use sluice_core::TableName;

const HYDRATIONS: &str = "hydration";

fn open_pk(table: &str) -> String {
    format!("open-hydration/{table}")
}

fn decode_item(item: &Attrs) -> Result<Hydration, StoreError> {
    decode(text(item, "doc")?)
}

/// Load the hydrations a batch needs (see [`Loaded::hydrations_to_load`]).
pub(super) async fn load(
    backend: &DynamoBackend,
    targets: &Targets,
    loaded: &mut Loaded,
) -> Result<(), StoreError> {
    let (mut ids, tables) = loaded.hydrations_to_load(targets);
    if ids.is_empty() && tables.is_empty() {
        return Ok(());
    }
    for table in &tables {
        for item in backend.query_all(&open_pk(table)).await? {
            ids.push(text(&item, "sk")?.to_owned());
        }
    }
    let keys: Vec<(String, String)> = ids
        .into_iter()
        .map(|id| (HYDRATIONS.to_owned(), id))
        .collect();
    for item in backend.get_many(&keys).await?.values() {
        let h = decode_item(item)?;
        loaded.hydrations.insert(h.id, h);
    }
    Ok(())
}

/// The items of changed hydrations. The document is stored as the SQL
/// backends store it (`rows::hydrations`), not through `Write::put`'s JSON,
/// so that both read it the same way.
pub(super) fn write(write: &mut Write, hydrations: &[Hydration]) {
    for h in hydrations {
        let id = h.id.to_string();
        write.put_raw(
            HYDRATIONS,
            &id,
            Expect::Any,
            encode(h),
            [
                text_attr("table", h.table.as_str()),
                text_attr("container", h.container.as_str()),
                text_attr("state", state(h)),
            ],
        );
        if h.state.is_final() {
            write.delete(&open_pk(h.table.as_str()), &id, Expect::Any);
        } else {
            write.put_attrs(&open_pk(h.table.as_str()), &id, Expect::Any, []);
        }
    }
}

/// `sluice migrate`: hydrations left `completed` before hydrations outlived
/// their runs become live copies with no session (as the SQL backends'
/// migration 0013 says), their open item put back so that refreshes relag
/// them. Run before serving; a second run finds nothing to do.
pub(super) async fn upgrade_completed(backend: &DynamoBackend) -> Result<u32, StoreError> {
    let items = backend
        .query(HYDRATIONS, Range::All, true, usize::MAX, |item| {
            text(item, "state").is_ok_and(|s| s == "completed")
        })
        .await?;
    let mut upgraded = 0;
    for chunk in items.chunks(super::write::MAX_ITEMS / 2) {
        let mut hydrations = Vec::with_capacity(chunk.len());
        for item in chunk {
            // The document's `completed` already reads as live.
            let mut h = decode_item(item)?;
            h.ended_at = None;
            h.reason = None;
            hydrations.push(h);
        }
        let mut w = Write::default();
        write(&mut w, &hydrations);
        backend
            .commit_once(&w, "upgrade completed hydrations")
            .await?;
        upgraded += hydrations.len() as u32;
    }
    Ok(upgraded)
}

impl HydrationPort for DynamoBackend {
    fn hydration(&self, id: HydrationId) -> BoxFuture<'_, Result<Option<Hydration>, StoreError>> {
        async move {
            self.get(HYDRATIONS, &id.to_string())
                .await?
                .as_ref()
                .map(decode_item)
                .transpose()
        }
        .boxed()
    }

    fn hydrations<'a>(
        &'a self,
        q: &'a HydrationQuery,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>> {
        async move {
            let range = match q.after {
                Some(after) => Range::After(after.to_string()),
                None => Range::All,
            };
            // Filtered as read: the partition is walked from `after` on
            // until a page is full.
            let items = self
                .query(HYDRATIONS, range, true, q.limit as usize, |item| {
                    let is = |name: &str, want: Option<&str>| {
                        want.is_none_or(|w| text(item, name).is_ok_and(|v| v == w))
                    };
                    is("state", q.state.map(|s| s.as_str()))
                        && is("table", q.table.as_ref().map(|t| t.as_str()))
                        && is("container", q.container.as_ref().map(|c| c.as_str()))
                        && text(item, "table").is_ok_and(|t| in_scopes(t, &q.scopes))
                })
                .await?;
            items.iter().map(decode_item).collect()
        }
        .boxed()
    }

    fn open_hydrations<'a>(
        &'a self,
        table: &'a TableName,
    ) -> BoxFuture<'a, Result<Vec<Hydration>, StoreError>> {
        async move {
            let keys: Vec<(String, String)> = self
                .query_all(&open_pk(table.as_str()))
                .await?
                .iter()
                .map(|item| Ok((HYDRATIONS.to_owned(), text(item, "sk")?.to_owned())))
                .collect::<Result<_, StoreError>>()?;
            self.get_many(&keys)
                .await?
                .values()
                .map(decode_item)
                .collect()
        }
        .boxed()
    }
}
