//! The event log: every change, in commit order; paged, or followed live
//! as Server-Sent Events.

use crate::auth::{Authenticator, Caller};
use crate::dto::{self, EventBody, EventParams, EventsPage};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::routes::leases::long_poll_permit;
use crate::routes::streams::authorized;
use crate::{parse_table, AppState};
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use sluice_core::{EventKind, Permission};
use sluice_store::{EventQuery, Store};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(stream_events))
}

/// How often an idle feed looks at the log. Events are committed by any
/// replica, so the log itself is the one source every replica shares.
const POLL: Duration = Duration::from_millis(200);

/// How often an open feed checks its token again: with the token cache's
/// 5 s, a revoked or expired token's feed ends within 7 s, as its plain
/// requests are refused within 5 s.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// The longest a feed stays open, as the longest long-poll: every request
/// ends within the request timeout (330 s), so nothing, a client that no
/// longer reads included, holds a connection and a long-poll permit for
/// ever. The client resumes with `Last-Event-ID`.
pub const MAX_FEED_LIFE: Duration = Duration::from_secs(dto::MAX_WAIT_SECONDS as u64);

/// Page through the event log in commit order (ids strictly increase).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventParams),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "Malformed query or table name", body = ErrorBody),
        (status = 422, description = "Unknown kind or limit out of range", body = ErrorBody),
    ))]
async fn list_events(
    State(app): State<AppState>,
    caller: Caller,
    Query(params): Query<EventParams>,
) -> Result<axum::Json<EventsPage>, ApiError> {
    let query = event_query(&app, &caller, &params).await?;
    let events = app.store.events(&query).await?;
    let next_after = events.last().map_or(query.after, |e| e.id);
    Ok(axum::Json(EventsPage {
        events: events.into_iter().map(EventBody::from).collect(),
        next_after,
    }))
}

/// What a listing or a feed reads: the filters, checked against the
/// caller's permissions and scopes.
async fn event_query(
    app: &AppState,
    caller: &Caller,
    params: &EventParams,
) -> Result<EventQuery, ApiError> {
    caller.require(Permission::ReadEvents)?;
    let after = match (params.after, params.tail) {
        (Some(after), _) if after < 0 => {
            return Err(ApiError::invalid("after must not be negative"))
        }
        (Some(after), _) => after,
        (None, Some(tail)) if !(0..=100_000).contains(&tail) => {
            return Err(ApiError::invalid("tail must be 0 to 100000"))
        }
        (None, Some(tail)) => (app.store.newest_event_id().await? - tail).max(0),
        (None, None) => 0,
    };
    let kind = match params.kind.as_deref() {
        None => None,
        Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::invalid(format!("unknown kind `{k}`; one of {}", known.join(", ")))
        })?),
    };
    let table = params.table.as_deref().map(parse_table).transpose()?;
    if let Some(table) = &table {
        caller.require_table(table)?;
    }
    let stream = match params.stream.as_deref() {
        Some(raw) => Some(authorized(app, caller, Permission::ReadEvents, raw).await?),
        None => None,
    };
    Ok(EventQuery {
        after,
        table,
        stream,
        kind,
        limit: dto::limit(params.limit)?,
        // A scoped token sees only the events of its tables and streams.
        scopes: caller.scopes().to_vec(),
    })
}

/// Follow the event log live, as Server-Sent Events: each event is sent
/// with `id:` its event id, `event:` its kind and `data:` the event as
/// `GET /v1/events` gives it. Filters are those of `GET /v1/events`
/// (`limit` is the page read at a time). A reconnecting client sends
/// `Last-Event-ID` (it wins over `after`) and misses nothing, sees nothing
/// twice. Without either, the feed starts at the oldest event kept.
/// A consumer that stays a page or more behind for 60 s (the server's
/// `--event-feed-drop-after-seconds`) gets a last `dropped` event and the
/// stream ends; so does the feed when the store
/// fails (`error`). Both carry `{"reason","last_event_id"}`: reconnect
/// from there. The feed also ends with a last `end` event,
/// `{"reason","message","last_event_id"}`, when its token is revoked
/// (`token_revoked`, within 7 s) or expires (`token_expired`), and after
/// 300 s (`max_duration`: reconnect with `Last-Event-ID`). An open feed
/// counts against the server's long-poll limit (`--max-long-polls`).
#[utoipa::path(get, path = "/v1/events/stream", tag = "events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<i64>, Header,
         description = "Resume after this event id (what the client saw last)"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`",
         content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed query, table name or Last-Event-ID", body = ErrorBody),
        (status = 422, description = "Unknown kind or limit out of range", body = ErrorBody),
        (status = 429, description = "Too many long-polls and feeds are open", body = ErrorBody),
    ))]
async fn stream_events(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut query = event_query(&app, &caller, &params).await?;
    if let Some(raw) = headers.get("last-event-id") {
        query.after = raw
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_last_event_id",
                    "Last-Event-ID must be an event id (a non-negative integer)",
                )
            })?;
    }
    // An open feed is a long-poll: it holds a place among them while open.
    let permit = long_poll_permit(&app, 1)?;
    // What authenticated this request, to check again while the feed is
    // open (the middleware has made sure it is one valid header).
    let credential = app
        .auth
        .required()
        .then(|| headers.get(AUTHORIZATION)?.to_str().ok().map(str::to_owned))
        .flatten();
    let now = Instant::now();
    let feed = Feed {
        store: app.store.clone(),
        query,
        pending: VecDeque::new(),
        behind_since: None,
        drop_after: app.event_feed_drop_after,
        ended: false,
        life: Life::new(now, MAX_FEED_LIFE),
        auth: app.auth.clone(),
        credential,
        _permit: permit,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// One client's position in the log, and at most one page read ahead.
struct Feed {
    store: Store,
    query: EventQuery,
    pending: VecDeque<sluice_core::Event>,
    /// Since when every page read was full (the consumer is behind).
    behind_since: Option<Instant>,
    /// A consumer that stays a whole page or more behind the log for this
    /// long is dropped (it resumes with `Last-Event-ID`): it cannot hold a
    /// connection and the store's reads forever while it falls behind.
    drop_after: Duration,
    ended: bool,
    life: Life,
    auth: Arc<Authenticator>,
    /// The `Authorization` header that opened the feed; `None` when the
    /// server takes no tokens.
    credential: Option<String>,
    /// Its place among the long-polls, given back when the feed is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

/// When a feed must end, or check its token again.
#[derive(Debug)]
struct Life {
    ends_at: Instant,
    next_check: Instant,
}

/// What a feed must do before it sends anything more.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    CheckToken,
    End,
}

impl Life {
    fn new(now: Instant, max: Duration) -> Life {
        Life {
            ends_at: now + max,
            next_check: now + RECHECK_EVERY,
        }
    }

    /// What is due at `now`; a token check, once answered, is next due
    /// `RECHECK_EVERY` later.
    fn due(&mut self, now: Instant) -> Due {
        if now >= self.ends_at {
            Due::End
        } else if now >= self.next_check {
            self.next_check = now + RECHECK_EVERY;
            Due::CheckToken
        } else {
            Due::Nothing
        }
    }
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.ended {
                if let Some(last) = self.limits().await {
                    // Nothing more, not even what was read ahead.
                    self.ended = true;
                    self.pending.clear();
                    return Some(last);
                }
            }
            if let Some(e) = self.pending.pop_front() {
                self.query.after = e.id;
                let (id, kind) = (e.id, e.event.kind.as_str());
                let body = serde_json::to_string(&EventBody::from(e)).expect("an event serializes");
                return Some(Event::default().id(id.to_string()).event(kind).data(body));
            }
            if self.ended {
                return None;
            }
            let page = match self.store.events(&self.query).await {
                Ok(page) => page,
                Err(error) => {
                    self.ended = true;
                    return Some(self.last("error", &format!("the store failed: {error}")));
                }
            };
            if page.len() < self.query.limit as usize {
                self.behind_since = None;
            } else {
                let since = *self.behind_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.drop_after {
                    self.ended = true;
                    return Some(self.last(
                        "dropped",
                        &format!(
                            "the consumer stayed a page or more behind the log for {} s",
                            self.drop_after.as_secs()
                        ),
                    ));
                }
            }
            if page.is_empty() {
                tokio::time::sleep(POLL).await;
            }
            self.pending.extend(page);
        }
    }

    /// The feed's last event: why it ends and where to resume.
    fn last(&self, kind: &str, reason: &str) -> Event {
        let data = serde_json::json!({ "reason": reason, "last_event_id": self.query.after });
        Event::default().event(kind).data(data.to_string())
    }

    /// The last `end` event, when the feed's life is over or its token no
    /// longer valid.
    async fn limits(&mut self) -> Option<Event> {
        let (reason, message) = match self.life.due(Instant::now()) {
            Due::Nothing => return None,
            Due::End => (
                "max_duration",
                format!(
                    "a feed stays open at most {} s: reconnect with Last-Event-ID",
                    MAX_FEED_LIFE.as_secs()
                ),
            ),
            Due::CheckToken => {
                let credential = self.credential.as_deref()?;
                match self.auth.recheck(Some(credential)).await {
                    // A store that does not answer is not a refusal: the
                    // feed's own reads end it if the store stays down.
                    Err(e) if e.status == StatusCode::UNAUTHORIZED => (e.kind, e.message),
                    _ => return None,
                }
            }
        };
        let data = serde_json::json!({
            "reason": reason,
            "message": message,
            "last_event_id": self.query.after,
        });
        Some(Event::default().event("end").data(data.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_checks_its_token_every_few_seconds_and_ends_at_its_cap() {
        let start = Instant::now();
        let mut life = Life::new(start, Duration::from_secs(10));
        assert_eq!(life.due(start), Due::Nothing);
        let first = start + RECHECK_EVERY;
        assert_eq!(life.due(first), Due::CheckToken);
        // Checked: not again until RECHECK_EVERY later.
        assert_eq!(life.due(first + Duration::from_millis(10)), Due::Nothing);
        assert_eq!(life.due(first + RECHECK_EVERY), Due::CheckToken);
        // At the cap the feed ends, whatever else is due.
        assert_eq!(life.due(start + Duration::from_secs(10)), Due::End);
        assert_eq!(life.due(start + Duration::from_secs(99)), Due::End);
        assert!(RECHECK_EVERY <= Duration::from_secs(5));
        // Within the request timeout that ends every other request.
        assert!(MAX_FEED_LIFE < crate::ApiConfig::default().request_timeout);
    }
}
