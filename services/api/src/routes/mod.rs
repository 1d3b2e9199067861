//! One module per resource; each exposes `router()`.

pub mod aws_auth;
pub mod compactions;
pub mod containers;
pub mod events;
pub mod health;
pub mod hydrations;
pub mod jobs;
pub mod leases;
pub mod snapshots;
pub mod streams;
pub mod tables;
pub mod views;
