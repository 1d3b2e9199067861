//! Views, their history and the outbox as both dialects hold them.

use crate::error::StoreError;
use crate::rows::corrupt;
use sluice_core::containers::ContainerName;
use sluice_core::outbox::{Intent, IntentState, IntentStatus};
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

/// An intent with how it is going.
#[derive(sqlx::FromRow)]
pub struct IntentStatusRow {
    pub id: i64,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub finished_at: Option<i64>,
}

/// The newest intent of kind `$2` carried out for each hydration of the
/// list `$1` (each dialect's list: `IN_LIST`).
pub fn latest_intents_of(in_list: &str) -> String {
    format!(
        "SELECT id, payload, state, attempts, error, created_at, next_attempt_at, finished_at \
         FROM outbox WHERE id IN (SELECT max(id) FROM outbox WHERE hydration_id {in_list} \
         AND kind = $2 GROUP BY hydration_id)"
    )
}

/// Pending intents due at `$1` with ids above `$2`, oldest first.
pub const DUE_INTENTS: &str = "SELECT id, payload, attempts FROM outbox WHERE state = 'pending' \
     AND next_attempt_at <= $1 AND id > $2 ORDER BY id LIMIT $3";

pub const INSERT_INTENT: &str = "INSERT INTO outbox (kind, payload, hydration_id, state, \
     created_at, next_attempt_at) VALUES ($1, $2, $3, 'pending', $4, $4)";

impl TryFrom<IntentStatusRow> for IntentStatus {
    type Error = StoreError;
    fn try_from(r: IntentStatusRow) -> Result<IntentStatus, StoreError> {
        Ok(IntentStatus {
            id: r.id,
            intent: decode_intent(&r.payload)?,
            state: IntentState::parse(&r.state).ok_or_else(|| corrupt("outbox.state", &r.state))?,
            attempts: r.attempts.max(0) as u32,
            error: r.error,
            created_at: Millis(r.created_at),
            next_attempt_at: Millis(r.next_attempt_at),
            finished_at: r.finished_at.map(Millis),
        })
    }
}
