//! Integration tests of the pure lease and stream rules, in one test binary.
//!
//! - `lease_properties`: random command sequences against one table, with
//!   every invariant of DESIGN.md checked after every step.
//! - `lease_races`: targeted scenarios (lost responses, stale tokens, queue
//!   policy boundaries), each named as the sentence it proves.
//! - `stream_properties`: random command sequences from several ingestion
//!   runs and an operator against one stream, loaded and written back as the
//!   store does, with the bookmark and batch invariants checked after every
//!   command.
//! - `cron_rules`, `compaction_rules`: schedules across DST and catch-up;
//!   checking a compaction against the snapshot log.
//! - `stream_races`: targeted stream scenarios (killed runs, retried
//!   commits, rewinds racing batches, load completion).

mod any_command;
mod compaction_rules;
mod cron_rules;
mod hydration_rules;
mod lease_properties;
mod lease_races;
mod ownership;
mod snapshot_rules;
mod stream_properties;
mod stream_races;
mod support;
