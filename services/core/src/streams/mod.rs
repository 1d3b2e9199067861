//! CDC streams: batches fenced by tokens and TTLs, and the LOAD -> DELTA
//! bookmark with its history. Types, commands and the pure rules.

pub mod command;
pub mod rules;
pub mod state;

pub use command::{
    BatchCommand, BatchReply, BookmarkCommand, BookmarkUpdate, Commit, PutStream, RewindTo,
    StreamReply,
};
pub use rules::{batch, bookmark, put_stream, StreamOutcome};
pub use state::*;
