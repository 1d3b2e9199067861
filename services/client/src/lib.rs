//! A typed client of the sluice API, the load generator that drives it, and
//! the checker that proves a recorded history safe.
#![forbid(unsafe_code)]

pub mod client;
pub mod etcd_load;
pub mod feed;
pub mod history;
pub mod load;
pub mod stream_load;
pub mod wake;
