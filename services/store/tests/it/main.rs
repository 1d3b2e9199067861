//! The store's own tests: each aggregate's load, write-back and reads on
//! SQLite and on PostgreSQL, through the store's handle, without HTTP. A
//! dialect bug shows here, named, rather than as a black-box failure.

mod events;
mod hydrations;
mod leases;
mod migrations;
mod reconcile;
mod retention;
mod schedule;
mod streams;
mod support;
mod tokens;
