//! Views, their history and the outbox as both dialects hold them.

use crate::error::StoreError;
use crate::rows::corrupt;
use sluice_core::containers::ContainerName;
use sluice_core::outbox::Intent;
use sluice_core::views::{Remap, View};
use sluice_core::Millis;

#[derive(sqlx::FromRow)]
pub struct ViewRow {
    pub container: String,
    pub name: String,
    pub target: String,
    pub columns: String,
    pub auto_remap: bool,
    pub hydration_id: Option<String>,
    pub updated_at: i64,
}

pub const VIEW_COLUMNS: &str =
    "container, name, target, columns, auto_remap, hydration_id, updated_at";

impl TryFrom<ViewRow> for View {
    type Error = StoreError;
    fn try_from(r: ViewRow) -> Result<View, StoreError> {
        Ok(View {
            container: ContainerName::parse(&r.container)
                .map_err(|_| corrupt("views.container", &r.container))?,
            columns: serde_json::from_str(&r.columns)
                .map_err(|_| corrupt("views.columns", &r.columns))?,
            hydration_id: r
                .hydration_id
                .map(|h| h.parse().map_err(|_| corrupt("views.hydration_id", &h)))
                .transpose()?,
            name: r.name,
            target: r.target,
            auto_remap: r.auto_remap,
            updated_at: Millis(r.updated_at),
        })
    }
}

pub fn remap_doc(r: &Remap) -> String {
    serde_json::to_string(r).expect("a remap serializes")
}

pub fn decode_remaps(docs: Vec<String>) -> Result<Vec<Remap>, StoreError> {
    docs.iter()
        .map(|d| serde_json::from_str(d).map_err(|_| corrupt("view_remaps.doc", d)))
        .collect()
}

pub fn intent_payload(i: &Intent) -> String {
    serde_json::to_string(i).expect("an intent serializes")
}

pub fn decode_intent(payload: &str) -> Result<Intent, StoreError> {
    serde_json::from_str(payload).map_err(|_| corrupt("outbox.payload", payload))
}

#[derive(sqlx::FromRow)]
pub struct IntentRow {
    pub id: i64,
    pub payload: String,
    pub attempts: i32,
}
