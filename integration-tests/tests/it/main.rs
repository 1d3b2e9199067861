//! Black-box tests: the built `sluice` binary on SQLite, PostgreSQL and
//! DynamoDB (moto's).

mod harness;
mod hydrations;
mod own_postgres;
mod raw;

mod auth;
mod aws_events;
mod cli;
mod compactions;
mod config;
mod containers;
mod crash;
mod dashboard;
mod dynamodb;
mod errors;
mod event_feed;
mod glue_double;
mod ingestion;
mod lake;
mod leases;
mod limits;
mod metrics;
mod nemeses;
mod pg_restart;
mod pin_tags;
mod reconcile;
mod replicas;
mod scheduler;
mod scopes;
mod snapshots;
mod spec;
mod story;
mod streams;
mod tables;
mod typed_client;
mod views;
