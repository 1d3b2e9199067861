//! Hydrations: copies of a table into consumer data containers, their
//! progress and their lag behind the table's snapshot log.

mod hydration;
pub mod rules;

pub use hydration::{
    Hydration, HydrationId, HydrationPhase, HydrationState, Progress, Session, StoredLag,
    LEASE_PURPOSE,
};
pub use rules::{Attach, LogView, NewHydration, ProgressReport};
