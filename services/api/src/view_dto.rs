//! Bodies of the view routes.

use crate::hydration_dto::IntentStatusBody;
use serde::{Deserialize, Serialize};
use sluice_core::views::{Remap, RemapKind, View};
use sluice_core::Millis;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemapBody {
    /// The physical table the view is to read (`name` or `schema.name`).
    #[schema(
        pattern = r"^(?![Pp][Gg]_[A-Za-z0-9_]*\.)(?![Ii][Nn][Ff][Oo][Rr][Mm][Aa][Tt][Ii][Oo][Nn]_[Ss][Cc][Hh][Ee][Mm][Aa]\.)[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
    )]
    pub target: String,
    /// The columns it is to expose, when they change on purpose; absent:
    /// the ones it exposes today.
    #[serde(default)]
    #[schema(
        pattern = r"^(?![Pp][Gg]_[A-Za-z0-9_]*\.)(?![Ii][Nn][Ff][Oo][Rr][Mm][Aa][Tt][Ii][Oo][Nn]_[Ss][Cc][Hh][Ee][Mm][Aa]\.)[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
    )]
    pub columns: Option<Vec<String>>,
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutViewBody {
    /// Whether a live hydration remaps this view by itself.
    pub auto_remap: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemapKindBody {
    Remap,
    Rollback,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemapEntry {
    pub kind: RemapKindBody,
    pub from: Option<String>,
    pub to: String,
    pub columns: Vec<String>,
    pub hydration_id: Option<String>,
    pub actor: Option<String>,
    pub reason: String,
    pub at: String,
}

impl From<Remap> for RemapEntry {
    fn from(r: Remap) -> RemapEntry {
        RemapEntry {
            kind: match r.kind {
                RemapKind::Remap => RemapKindBody::Remap,
                RemapKind::Rollback => RemapKindBody::Rollback,
            },
            from: r.from_target,
            to: r.to_target,
            columns: r.columns,
            hydration_id: r.hydration_id.map(|h| h.to_string()),
            actor: r.actor,
            reason: r.reason,
            at: r.at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewBody {
    pub container: String,
    pub view: String,
    pub target: String,
    pub columns: Vec<String>,
    pub auto_remap: bool,
    pub hydration_id: Option<String>,
    pub updated_at: String,
    /// Its remaps, newest first (on a single view's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RemapEntry>>,
    /// On a single view's answer: a switch a live hydration asked for and
    /// that has not happened, still pending (attempts, last error, next
    /// try) or failed (why); absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_remap: Option<IntentStatusBody>,
}

impl ViewBody {
    pub fn new(v: View, history: Option<Vec<Remap>>) -> ViewBody {
        ViewBody {
            container: v.container.to_string(),
            view: v.name,
            target: v.target,
            columns: v.columns,
            auto_remap: v.auto_remap,
            hydration_id: v.hydration_id.map(|h| h.to_string()),
            updated_at: v.updated_at.to_rfc3339(),
            history: history.map(|h| h.into_iter().map(RemapEntry::from).collect()),
            pending_remap: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewParams {
    #[param(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_-]+$")]
    pub container: Option<String>,
    /// `container/view` of the previous page's last view.
    #[param(pattern = r"^(|[\s\S]*/[\s\S]*)$")]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewsPage {
    pub views: Vec<ViewBody>,
    pub next_after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Orphan {
    pub target: String,
    /// When the last view left it.
    pub last_mapped_at: String,
}

impl Orphan {
    pub fn new(target: String, at: Millis) -> Orphan {
        Orphan {
            target,
            last_mapped_at: at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrphansBody {
    pub container: String,
    pub orphans: Vec<Orphan>,
}
