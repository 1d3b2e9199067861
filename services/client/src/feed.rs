//! A Server-Sent Events reader of `GET /v1/events/stream`: messages as
//! they arrive, split on the blank line that ends each one.

use crate::client::{Error, Result};
use sluice_api::dto::EventBody;

/// What the feed sends.
#[derive(Debug)]
pub enum FeedItem {
    Event(EventBody),
    /// The server ended the feed (`dropped`, `error`, `end`): why, and the id to
    /// resume after.
    Ended {
        kind: String,
        reason: String,
        last_event_id: i64,
    },
}

pub struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    pub(crate) fn new(response: reqwest::Response) -> Feed {
        Feed {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the connection closed.
    pub async fn next(&mut self) -> Result<Option<FeedItem>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                if let Some(item) = parse(&message)? {
                    return Ok(Some(item));
                }
                continue;
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }
}

/// One message; `None` for a keep-alive comment.
fn parse(message: &str) -> Result<Option<FeedItem>> {
    let (mut kind, mut data) = ("message", String::new());
    for line in message.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    let unexpected = |e: serde_json::Error| Error::Unexpected {
        status: 200,
        detail: format!("a feed message that is not JSON: {e}"),
    };
    if matches!(kind, "dropped" | "error" | "end") {
        let end: serde_json::Value = serde_json::from_str(&data).map_err(unexpected)?;
        return Ok(Some(FeedItem::Ended {
            kind: kind.to_owned(),
            reason: end["reason"].as_str().unwrap_or_default().to_owned(),
            last_event_id: end["last_event_id"].as_i64().unwrap_or_default(),
        }));
    }
    Ok(Some(FeedItem::Event(
        serde_json::from_str(&data).map_err(unexpected)?,
    )))
}
