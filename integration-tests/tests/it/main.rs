//! Black-box tests: the built `sluice` binary on SQLite and PostgreSQL.

mod harness;

mod auth;
mod config;
mod crash;
mod errors;
mod ingestion;
mod leases;
mod limits;
mod replicas;
mod spec;
mod streams;
mod tables;
