//! Bodies of the hydration routes.

use crate::dto::LeaseBody;
use crate::snapshot_dto::LogFreshnessBody;
use serde::{Deserialize, Serialize};
use sluice_core::hydrations::{Hydration, HydrationPhase, HydrationState, Session};
use sluice_core::outbox::{IntentState, IntentStatus};
use sluice_core::snapshots::Freshness;
use sluice_core::Millis;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHydrationBody {
    /// The Iceberg table to copy (registered with `PUT /v1/tables/{table}`).
    #[schema(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")]
    pub table: String,
    /// The container to copy it into (`PUT /v1/containers/{name}`).
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_-]+$")]
    pub container: String,
    /// The physical table it fills there: `name` or `schema.name`.
    #[schema(
        pattern = r"^(?![Pp][Gg]_[A-Za-z0-9_]*\.)(?![Ii][Nn][Ff][Oo][Rr][Mm][Aa][Tt][Ii][Oo][Nn]_[Ss][Cc][Hh][Ee][Mm][Aa]\.)[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
    )]
    pub target: String,
    /// Consumer views to point at `target` once it is live.
    #[serde(default)]
    #[schema(
        pattern = r"^(?![Pp][Gg]_[A-Za-z0-9_]*\.)(?![Ii][Nn][Ff][Oo][Rr][Mm][Aa][Tt][Ii][Oo][Nn]_[Ss][Cc][Hh][Ee][Mm][Aa]\.)[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
    )]
    pub views: Vec<String>,
    /// The columns the views will expose from `target`, when a schema
    /// change adds or drops some on purpose; absent: the ones they expose
    /// today.
    #[serde(default)]
    #[schema(min_items = 1, pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    pub columns: Option<Vec<String>>,
    /// `live` once at most this many snapshots behind (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub lag_threshold_snapshots: Option<i64>,
    /// The snapshot it starts from (default: the table's current one).
    /// Pinned by its read lease until progress moves the pin.
    #[serde(default)]
    pub pin_snapshot_id: Option<i64>,
    /// The read lease's TTL (default 600, at most 86400). The lease is
    /// held through the first hydration only: an attached run's heartbeats
    /// and reports renew it, and it expires (the hydration fails) when no
    /// run is attached for this long.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub lease_ttl_seconds: Option<i64>,
    /// The run creating it (e.g. the Glue job run id), attached in the same
    /// call: the answer's `session` carries the token its progress reports
    /// need. Absent: attach with `POST /v1/hydrations/{id}/attach`.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub run_id: Option<String>,
    /// The session's TTL (default 600, at most 86400).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub session_ttl_seconds: Option<i64>,
    /// Long-poll up to this many seconds for the lease (default 0, at most 300).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 300)]
    pub wait_seconds: Option<i64>,
    /// Who runs it, e.g. the Glue job run id (default `hydration`).
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub holder: Option<String>,
    /// A retried create with the same key answers the same hydration.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HydrationPhaseBody {
    Snapshot,
    CatchingUp,
}

impl From<HydrationPhaseBody> for HydrationPhase {
    fn from(p: HydrationPhaseBody) -> HydrationPhase {
        match p {
            HydrationPhaseBody::Snapshot => HydrationPhase::Snapshot,
            HydrationPhaseBody::CatchingUp => HydrationPhase::CatchingUp,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// The run attaching (e.g. the Glue job run id). The same run again
    /// answers its session while it is attached.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200A\u200E\u200F\u2028-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub run_id: String,
    /// The session's TTL (default 600, at most 86400): heartbeat or report
    /// progress within it.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionTokenBody {
    /// The attached session's token.
    #[schema(minimum = 1)]
    pub token: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// The attached session's token.
    #[schema(minimum = 1)]
    pub token: i64,
    pub phase: HydrationPhaseBody,
    /// The last snapshot whose data is in the container (it becomes the
    /// pin: the read lease's in the first hydration, the hydration's own
    /// after it).
    pub snapshot_id: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_copied: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub rows_total: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HydrationStateBody {
    Pending,
    Snapshot,
    CatchingUp,
    Live,
    Lagging,
    Failed,
    Cancelled,
    Superseded,
    Stale,
}

impl From<HydrationState> for HydrationStateBody {
    fn from(s: HydrationState) -> HydrationStateBody {
        match s {
            HydrationState::Pending => HydrationStateBody::Pending,
            HydrationState::Snapshot => HydrationStateBody::Snapshot,
            HydrationState::CatchingUp => HydrationStateBody::CatchingUp,
            HydrationState::Live => HydrationStateBody::Live,
            HydrationState::Lagging => HydrationStateBody::Lagging,
            HydrationState::Failed => HydrationStateBody::Failed,
            HydrationState::Cancelled => HydrationStateBody::Cancelled,
            HydrationState::Superseded => HydrationStateBody::Superseded,
            HydrationState::Stale => HydrationStateBody::Stale,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    pub rows_copied: Option<u64>,
    pub rows_total: Option<u64>,
    /// `rows_copied / rows_total`, 0 to 100, when both are known.
    pub percent: Option<f64>,
    pub applied_snapshot_id: Option<i64>,
    pub reported_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LagView {
    /// Snapshots in the current snapshot's ancestry after the applied one.
    pub snapshots: u64,
    /// Now minus the commit time of the oldest unapplied snapshot (0 when
    /// caught up).
    pub seconds: i64,
    pub oldest_unapplied_at: Option<String>,
    /// The applied snapshot is not in the current snapshot's ancestry (the
    /// table was rolled back past it).
    pub diverged: bool,
    /// The table's current snapshot, as of its last refresh.
    pub current_snapshot_id: Option<i64>,
    /// How old the snapshot log this lag was computed from is (on
    /// `GET /v1/hydrations/{id}` and `GET /v1/hydrations`; absent in the
    /// answers to a hydration's own commands, and before the log was first
    /// checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogFreshnessBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HydrationBody {
    pub id: String,
    pub table: String,
    pub container: String,
    pub target: String,
    pub views: Vec<String>,
    pub columns: Option<Vec<String>>,
    pub state: HydrationStateBody,
    pub lag_threshold_snapshots: u32,
    pub progress: ProgressView,
    pub lag: LagView,
    /// Why it failed, went stale, was cancelled or superseded.
    pub reason: Option<String>,
    /// Its read lease (same id as the hydration), held through its first
    /// hydration and released by sluice when it first goes live.
    pub lease_id: String,
    /// The snapshot it keeps from expiry itself once past its first
    /// hydration (the one it applied last); retention and compactions'
    /// expiry keep it.
    pub pin_snapshot_id: Option<i64>,
    /// The run attached now (absent: none is; a live copy stays mapped and
    /// its lag keeps moving).
    pub session: Option<SessionBody>,
    /// Sessions attached over its life.
    pub sessions: u64,
    /// The read lease as this call left it (create, progress, cancel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseBody>,
    pub principal: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    /// How switching its views went, once it was live and has views:
    /// pending (attempts, last error, next try), done, or failed (why).
    #[serde(default)]
    pub remap: Option<IntentStatusBody>,
    /// How mirroring its pin as a tag in the table's metadata went, last
    /// time the pin moved (`GET /v1/hydrations/{id}` only; absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_tag: Option<IntentStatusBody>,
}

/// A run attached to a hydration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    pub run_id: String,
    /// The fencing token its heartbeats, reports and detach send.
    pub token: u64,
    pub principal: Option<String>,
    pub ttl_seconds: u32,
    pub attached_at: String,
    pub heartbeat_at: String,
    pub expires_at: String,
}

impl From<Session> for SessionBody {
    fn from(s: Session) -> SessionBody {
        SessionBody {
            run_id: s.run_id,
            token: s.token,
            principal: s.principal,
            ttl_seconds: s.ttl_seconds,
            attached_at: s.attached_at.to_rfc3339(),
            heartbeat_at: s.heartbeat_at.to_rfc3339(),
            expires_at: s.expires_at.to_rfc3339(),
        }
    }
}

/// How a side effect carried out after the change that asked for it (a
/// remap of views, a pin's tag) is going.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IntentStatusBody {
    /// The hydration it is carried out for.
    pub hydration_id: String,
    pub state: IntentStateBody,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt's error (pending: it will be retried; failed:
    /// the container or catalog refused, and nothing is retried).
    pub error: Option<String>,
    /// Pending: when the next attempt is.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntentStateBody {
    Pending,
    Done,
    Failed,
}

impl From<IntentStatus> for IntentStatusBody {
    fn from(s: IntentStatus) -> IntentStatusBody {
        let pending = s.state == IntentState::Pending;
        IntentStatusBody {
            hydration_id: s.intent.hydration_id().to_string(),
            state: match s.state {
                IntentState::Pending => IntentStateBody::Pending,
                IntentState::Done => IntentStateBody::Done,
                IntentState::Failed => IntentStateBody::Failed,
            },
            attempts: s.attempts,
            error: s.error,
            next_attempt_at: pending.then(|| s.next_attempt_at.to_rfc3339()),
            created_at: s.created_at.to_rfc3339(),
            finished_at: s.finished_at.map(Millis::to_rfc3339),
        }
    }
}

impl HydrationBody {
    pub fn with_remap(mut self, status: Option<IntentStatus>) -> HydrationBody {
        self.remap = status.map(IntentStatusBody::from);
        self
    }

    pub fn with_log(mut self, freshness: Option<Freshness>, now: Millis) -> HydrationBody {
        self.lag.log = freshness.map(|f| LogFreshnessBody::new(f, now));
        self
    }

    pub fn with_pin_tag(mut self, status: Option<IntentStatus>) -> HydrationBody {
        self.pin_tag = status.map(IntentStatusBody::from);
        self
    }

    pub fn new(h: Hydration, lease: Option<LeaseBody>, now: Millis) -> HydrationBody {
        let percent = match (h.progress.rows_copied, h.progress.rows_total) {
            (Some(c), Some(t)) if t > 0 => Some((c as f64 * 100.0 / t as f64).min(100.0)),
            (Some(_), Some(_)) => Some(100.0),
            _ => None,
        };
        let session = h.attached(now).cloned().map(SessionBody::from);
        HydrationBody {
            id: h.id.to_string(),
            lease_id: h.id.to_string(),
            pin_snapshot_id: h.pin(),
            session,
            sessions: h.sessions,
            table: h.table.to_string(),
            container: h.container.to_string(),
            target: h.target,
            views: h.views,
            columns: h.columns,
            state: h.state.into(),
            lag_threshold_snapshots: h.lag_threshold_snapshots,
            progress: ProgressView {
                rows_copied: h.progress.rows_copied,
                rows_total: h.progress.rows_total,
                percent,
                applied_snapshot_id: h.progress.applied_snapshot_id,
                reported_at: h.progress.reported_at.map(Millis::to_rfc3339),
            },
            lag: LagView {
                snapshots: h.lag.snapshots_behind,
                seconds: h.lag.seconds_behind(now),
                oldest_unapplied_at: h.lag.oldest_unapplied_at.map(Millis::to_rfc3339),
                diverged: h.lag.diverged,
                current_snapshot_id: h.lag.current_snapshot_id,
                log: None,
            },
            reason: h.reason,
            lease,
            principal: h.principal,
            created_at: h.created_at.to_rfc3339(),
            updated_at: h.updated_at.to_rfc3339(),
            ended_at: h.ended_at.map(Millis::to_rfc3339),
            remap: None,
            pin_tag: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HydrationParams {
    /// Only hydrations in this state.
    #[param(value_type = Option<crate::dto::HydrationStateName>, inline)]
    pub state: Option<String>,
    #[param(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")]
    pub table: Option<String>,
    #[param(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_-]+$")]
    pub container: Option<String>,
    /// Return hydrations after this id (the previous page's `next_after`).
    #[param(
        pattern = r"^(|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|\{[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})$"
    )]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HydrationsPage {
    pub hydrations: Vec<HydrationBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}
