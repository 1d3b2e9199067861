//! sluice's functional core, one module per aggregate (`leases`, `streams`),
//! each with its types, commands and pure rules; beside them what they
//! share (names, time, events, errors, roles).
//!
//! Nothing here performs I/O or reads a clock: `now` is always an argument,
//! so every rule can be property-tested.
#![forbid(unsafe_code)]

pub mod auth;
pub mod aws_events;
pub mod aws_identity;
pub mod containers;
pub mod error;
pub mod event;
pub mod hydrations;
pub mod leases;
pub mod names;
pub mod outbox;
pub mod rate;
pub mod scheduling;
pub mod snapshots;
pub mod streams;
pub mod time;
pub mod views;

pub use auth::{Permission, Principal, Role};
pub use error::RuleError;
pub use event::{Event, EventKind, NewEvent};
pub use leases::{Lease, LeaseId, LeaseState, Mode, Token};
pub use leases::{LeaseCommand, LeaseReply, TableCommand, TableReply};
pub use leases::{TableSettings, TableState};
pub use names::{NameError, StreamName, TableName};
pub use streams::{Batch, BatchId, BatchState, Bookmark, BookmarkVersion, Phase, StreamState};
pub use streams::{BatchCommand, BatchReply, BookmarkCommand, PutStream, StreamReply};
pub use time::Millis;
