//! Tables and their leases: read and write locks with TTL, fencing tokens
//! and a waiting queue. Types, commands and the pure rules.

pub mod command;
pub mod lease;
pub mod rules;
pub mod table;

pub use command::{AcquireRequest, LeaseCommand, LeaseReply, TableCommand, TableReply, Target};
pub use lease::{Lease, LeaseId, LeaseState, Mode, Token};
pub use table::{TableSettings, TableState, DEFAULT_MAX_COMPACTION_DEFERRAL_SECONDS};
