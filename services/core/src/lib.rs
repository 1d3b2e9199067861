//! sluice's functional core: domain types, the pure lease and stream rules and the
//! ports (traits) that the imperative shell implements.
//!
//! Nothing here performs I/O or reads a clock: `now` is always an argument,
//! so every rule can be property-tested.
#![forbid(unsafe_code)]

pub mod auth;
pub mod command;
pub mod error;
pub mod event;
pub mod lease;
pub mod names;
pub mod rules;
pub mod stream;
pub mod stream_rules;
pub mod table;
pub mod time;

pub use auth::{Permission, Principal, Role};
pub use command::{Command, Reply};
pub use error::RuleError;
pub use event::{Event, EventKind, NewEvent};
pub use lease::{Lease, LeaseId, LeaseState, Mode, Token};
pub use names::{NameError, StreamName, TableName};
pub use stream::{Batch, BatchId, BatchState, Bookmark, BookmarkVersion, Phase, StreamState};
pub use stream_rules::{StreamCommand, StreamReply};
pub use table::{TableSettings, TableState};
pub use time::Millis;
