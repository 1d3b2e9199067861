//! Integration tests of the pure lease rules, in one test binary.
//!
//! - `lease_properties`: random command sequences against one table, with
//!   every invariant of DESIGN.md checked after every step.
//! - `lease_races`: targeted scenarios (lost responses, stale tokens, queue
//!   policy boundaries), each named as the sentence it proves.

mod lease_properties;
mod lease_races;
mod support;
