//! Events: what the rules report with every change. The store appends them
//! in the same transaction as the change; ids are assigned at commit.

use crate::{
    leases::lease::LeaseId,
    names::{StreamName, TableName},
    time::Millis,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    LeaseRequested,
    LeaseGranted,
    LeaseReleased,
    LeaseExpired,
    LeaseRevoked,
    LeaseCancelled,
    TableSettingsChanged,
    StreamRegistered,
    StreamSettingsChanged,
    BatchOpened,
    BatchCommitted,
    BatchFailed,
    BookmarkRewound,
    BookmarkReset,
    /// A call on a lease or batch by a principal other than its own.
    AccessRefused,
    /// A refresh of a table's snapshot log found new or expired snapshots.
    TableSnapshotsChanged,
    HydrationCreated,
    /// A hydration moved between states (progress, lag, its lease ending).
    HydrationStateChanged,
    /// A run of the hydration job attached to it.
    HydrationAttached,
    /// The attached run detached.
    HydrationDetached,
    /// A hydration's pin could not be mirrored as a tag in its table's
    /// metadata (the catalog refused it).
    PinTagFailed,
    /// A consumer view now maps to another table (a remap or a rollback).
    ViewRemapped,
    /// A remap was refused (a missing column or table): nothing changed.
    ViewRemapRefused,
    /// A job definition was created or changed.
    JobDefined,
    /// A job definition was deleted (its finished runs stay).
    JobDeleted,
    /// A run was queued (by its schedule, by hand, for a compaction).
    RunQueued,
    /// A run moved between states (started, adopted, polled to its end,
    /// retried, dead-lettered, cancelled).
    RunStateChanged,
    CompactionRequested,
    CompactionStateChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 29] = [
        EventKind::LeaseRequested,
        EventKind::LeaseGranted,
        EventKind::LeaseReleased,
        EventKind::LeaseExpired,
        EventKind::LeaseRevoked,
        EventKind::LeaseCancelled,
        EventKind::TableSettingsChanged,
        EventKind::StreamRegistered,
        EventKind::StreamSettingsChanged,
        EventKind::BatchOpened,
        EventKind::BatchCommitted,
        EventKind::BatchFailed,
        EventKind::BookmarkRewound,
        EventKind::BookmarkReset,
        EventKind::AccessRefused,
        EventKind::TableSnapshotsChanged,
        EventKind::HydrationCreated,
        EventKind::HydrationStateChanged,
        EventKind::HydrationAttached,
        EventKind::HydrationDetached,
        EventKind::PinTagFailed,
        EventKind::ViewRemapped,
        EventKind::ViewRemapRefused,
        EventKind::JobDefined,
        EventKind::JobDeleted,
        EventKind::RunQueued,
        EventKind::RunStateChanged,
        EventKind::CompactionRequested,
        EventKind::CompactionStateChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LeaseRequested => "lease_requested",
            EventKind::LeaseGranted => "lease_granted",
            EventKind::LeaseReleased => "lease_released",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::LeaseRevoked => "lease_revoked",
            EventKind::LeaseCancelled => "lease_cancelled",
            EventKind::TableSettingsChanged => "table_settings_changed",
            EventKind::StreamRegistered => "stream_registered",
            EventKind::StreamSettingsChanged => "stream_settings_changed",
            EventKind::BatchOpened => "batch_opened",
            EventKind::BatchCommitted => "batch_committed",
            EventKind::BatchFailed => "batch_failed",
            EventKind::BookmarkRewound => "bookmark_rewound",
            EventKind::BookmarkReset => "bookmark_reset",
            EventKind::AccessRefused => "access_refused",
            EventKind::TableSnapshotsChanged => "table_snapshots_changed",
            EventKind::HydrationCreated => "hydration_created",
            EventKind::HydrationStateChanged => "hydration_state_changed",
            EventKind::HydrationAttached => "hydration_attached",
            EventKind::HydrationDetached => "hydration_detached",
            EventKind::PinTagFailed => "pin_tag_failed",
            EventKind::ViewRemapped => "view_remapped",
            EventKind::ViewRemapRefused => "view_remap_refused",
            EventKind::JobDefined => "job_defined",
            EventKind::JobDeleted => "job_deleted",
            EventKind::RunQueued => "run_queued",
            EventKind::RunStateChanged => "run_state_changed",
            EventKind::CompactionRequested => "compaction_requested",
            EventKind::CompactionStateChanged => "compaction_state_changed",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event before the store has numbered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at: Millis,
    pub kind: EventKind,
    /// The table the event is about (for a stream's events: the table it
    /// feeds); none for a job run that names no table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableName>,
    pub lease_id: Option<LeaseId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamName>,
    /// Details of the change (mode, holder, token, reason, settings...).
    pub data: serde_json::Value,
    /// The principal whose call caused the change; none for the server's
    /// own work (expiry found by the background sweeper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// A committed event, numbered in commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    #[serde(flatten)]
    pub event: NewEvent,
}
