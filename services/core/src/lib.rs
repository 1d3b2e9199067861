//! sluice's functional core: domain types, the pure lease rules and the
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
pub mod table;
pub mod time;

pub use auth::{Permission, Principal, Role};
pub use command::{Command, Reply};
pub use error::RuleError;
pub use event::{Event, EventKind, NewEvent};
pub use lease::{Lease, LeaseId, LeaseState, Mode, Token};
pub use names::{NameError, TableName};
pub use table::{TableSettings, TableState};
pub use time::Millis;
