//! The typed client of API v1: each call sends the API's own request type
//! and answers the API's own response type, or an [`Error`] that says
//! whether the server refused (with its error `type`) or was not reached.
//! The wire types come from `sluice_api`, so the client cannot drift from
//! the server.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_api::dto::{
    AcquireBody, EventBody, EventsPage, HeartbeatBody, LeaseBody, PutTableBody, RevokeBody,
    TableBody, TableLeasesBody, TablesPage,
};
use sluice_api::error::ErrorDetail;
use sluice_api::hydration_dto::{CancelBody, HydrationBody, HydrationsPage};
use sluice_api::job_dto::{
    CompactionBody, CompactionQueueBody, RequestCompactionBody, RunBody, RunsPage,
};
use sluice_api::stream_dto::{
    BatchBody, BatchHeartbeatBody, BookmarkBody, CommitBody, CommitResultBody, FailBatchBody,
    HistoryPage, OpenBatchBody, PutStreamBody, ResetBody, RewindBody, StreamBody, StreamsPage,
    VersionBody, VersionSummaryBody,
};
use sluice_api::view_dto::{RemapBody, RollbackBody, ViewBody, ViewsPage};
use std::time::Duration;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body.
    #[error("{status} {}: {}", .error.kind, .error.message)]
    Api { status: u16, error: ErrorDetail },
    /// No answer: the connection failed, was cut, or timed out.
    #[error("no answer: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer that is not what the API promises.
    #[error("{status}: unexpected answer: {detail}")]
    Unexpected { status: u16, detail: String },
}

impl Error {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            Error::Transport(_) => None,
        }
    }

    /// The error `type` the server gave, e.g. `stale_token`.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Api { error, .. } => Some(&error.kind),
            _ => None,
        }
    }

    /// Worth trying again unchanged: no answer, or the server said it was
    /// unavailable (503) or busy (429).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transport(_)) || matches!(self.status(), Some(503 | 429))
    }
}

/// A non-2xx answer: the API's error body, or what came instead.
fn refusal(status: u16, bytes: &[u8]) -> Error {
    match serde_json::from_slice::<sluice_api::error::ErrorBody>(bytes) {
        Ok(body) => Error::Api {
            status,
            error: body.error,
        },
        Err(_) => Error::Unexpected {
            status,
            detail: String::from_utf8_lossy(bytes).chars().take(200).collect(),
        },
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Query parameters; reqwest encodes them. (Path segments are names the
/// API validates, `namespace.table` or UUIDs, which never need escaping.)
type Params<'a> = &'a [(&'a str, String)];

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            // Longer than the longest long-poll the API allows.
            .timeout(Duration::from_secs(400))
            .pool_max_idle_per_host(1024)
            .build()
            .expect("build the HTTP client");
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        params: Params<'_>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .query(params);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| Error::Unexpected {
                status,
                detail: e.to_string(),
            });
        }
        Err(refusal(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, params: Params<'_>) -> Result<T> {
        self.call(reqwest::Method::GET, path, params, None::<&()>)
            .await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(reqwest::Method::POST, path, &[], Some(body))
            .await
    }

    async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(reqwest::Method::PUT, path, &[], Some(body)).await
    }

    /// A page: `limit`, and `after` when given.
    fn page(after: Option<&str>, limit: u32) -> Vec<(&'static str, String)> {
        let mut params = vec![("limit", limit.to_string())];
        params.extend(after.map(|a| ("after", a.to_owned())));
        params
    }

    // Tables

    /// Register a table, or change its settings.
    pub async fn put_table(&self, table: &str, settings: &PutTableBody) -> Result<TableBody> {
        self.put(&format!("/v1/tables/{table}"), settings).await
    }

    pub async fn table(&self, table: &str) -> Result<TableBody> {
        self.get(&format!("/v1/tables/{table}"), &[]).await
    }

    /// One page of tables, by name, after `after`.
    pub async fn tables(&self, after: Option<&str>, limit: u32) -> Result<TablesPage> {
        self.get("/v1/tables", &Self::page(after, limit)).await
    }

    /// Who holds the table and who waits, in queue order.
    pub async fn table_leases(&self, table: &str) -> Result<TableLeasesBody> {
        self.get(&format!("/v1/tables/{table}/leases"), &[]).await
    }

    // Leases

    /// Ask for a lease; granted or waiting is in the answer's `state`.
    pub async fn acquire(&self, table: &str, ask: &AcquireBody) -> Result<LeaseBody> {
        self.post(&format!("/v1/tables/{table}/leases"), ask).await
    }

    /// A lease; while it waits, long-poll up to `wait_seconds` for a change.
    pub async fn lease(&self, lease_id: &str, wait_seconds: u32) -> Result<LeaseBody> {
        let wait = [("wait_seconds", wait_seconds.to_string())];
        self.get(&format!("/v1/leases/{lease_id}"), &wait).await
    }

    pub async fn heartbeat(&self, lease_id: &str, body: &HeartbeatBody) -> Result<LeaseBody> {
        self.post(&format!("/v1/leases/{lease_id}/heartbeat"), body)
            .await
    }

    /// Release a granted lease (with its token) or cancel a waiting one.
    pub async fn release(&self, lease_id: &str, token: Option<i64>) -> Result<LeaseBody> {
        let token: Vec<_> = token
            .map(|t| ("token", t.to_string()))
            .into_iter()
            .collect();
        let path = format!("/v1/leases/{lease_id}");
        self.call(reqwest::Method::DELETE, &path, &token, None::<&()>)
            .await
    }

    pub async fn revoke(&self, lease_id: &str, reason: &str) -> Result<LeaseBody> {
        let body = RevokeBody {
            reason: reason.to_owned(),
        };
        self.post(&format!("/v1/leases/{lease_id}/revoke"), &body)
            .await
    }

    // Streams

    /// Register a stream, or change its settings.
    pub async fn put_stream(&self, stream: &str, settings: &PutStreamBody) -> Result<StreamBody> {
        self.put(&format!("/v1/streams/{stream}"), settings).await
    }

    pub async fn stream(&self, stream: &str) -> Result<StreamBody> {
        self.get(&format!("/v1/streams/{stream}"), &[]).await
    }

    /// One page of streams, by name, after `after`.
    pub async fn streams(&self, after: Option<&str>, limit: u32) -> Result<StreamsPage> {
        self.get("/v1/streams", &Self::page(after, limit)).await
    }

    /// Open a batch: its token, and the bookmark to resume from.
    pub async fn open_batch(&self, stream: &str, body: &OpenBatchBody) -> Result<BatchBody> {
        self.post(&format!("/v1/streams/{stream}/batches"), body)
            .await
    }

    pub async fn heartbeat_batch(
        &self,
        stream: &str,
        batch_id: &str,
        body: &BatchHeartbeatBody,
    ) -> Result<BatchBody> {
        self.post(
            &format!("/v1/streams/{stream}/batches/{batch_id}/heartbeat"),
            body,
        )
        .await
    }

    pub async fn commit_batch(
        &self,
        stream: &str,
        batch_id: &str,
        body: &CommitBody,
    ) -> Result<CommitResultBody> {
        self.post(
            &format!("/v1/streams/{stream}/batches/{batch_id}/commit"),
            body,
        )
        .await
    }

    pub async fn fail_batch(
        &self,
        stream: &str,
        batch_id: &str,
        body: &FailBatchBody,
    ) -> Result<BatchBody> {
        self.post(
            &format!("/v1/streams/{stream}/batches/{batch_id}/fail"),
            body,
        )
        .await
    }

    pub async fn bookmark(&self, stream: &str) -> Result<BookmarkBody> {
        self.get(&format!("/v1/streams/{stream}/bookmark"), &[])
            .await
    }

    pub async fn rewind(&self, stream: &str, body: &RewindBody) -> Result<BookmarkBody> {
        self.post(&format!("/v1/streams/{stream}/bookmark/rewind"), body)
            .await
    }

    pub async fn reset(&self, stream: &str, body: &ResetBody) -> Result<BookmarkBody> {
        self.post(&format!("/v1/streams/{stream}/bookmark/reset"), body)
            .await
    }

    /// Every bookmark version, oldest first, following the pages; each
    /// counts its files done (`version` lists them).
    pub async fn history(&self, stream: &str) -> Result<Vec<VersionSummaryBody>> {
        let mut versions = Vec::new();
        let mut after = 0;
        loop {
            let params = [
                ("after_version", after.to_string()),
                ("limit", "1000".to_owned()),
            ];
            let page: HistoryPage = self
                .get(&format!("/v1/streams/{stream}/bookmark/history"), &params)
                .await?;
            versions.extend(page.versions);
            match page.next_after_version {
                Some(next) => after = next,
                None => return Ok(versions),
            }
        }
    }

    /// One bookmark version, whole.
    pub async fn version(&self, stream: &str, version: i64) -> Result<VersionBody> {
        self.get(
            &format!("/v1/streams/{stream}/bookmark/history/{version}"),
            &[],
        )
        .await
    }

    /// One page of tables whose names start with `prefix`.
    pub async fn tables_matching(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<TablesPage> {
        let mut params = Self::page(after, limit);
        params.push(("prefix", prefix.to_owned()));
        self.get("/v1/tables", &params).await
    }

    // Hydrations

    /// One page of hydrations, optionally in one state or of one table.
    pub async fn hydrations(
        &self,
        state: Option<&str>,
        table: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<HydrationsPage> {
        let mut params = Self::page(after, limit);
        params.extend(state.map(|s| ("state", s.to_owned())));
        params.extend(table.map(|t| ("table", t.to_owned())));
        self.get("/v1/hydrations", &params).await
    }

    pub async fn hydration(&self, id: &str) -> Result<HydrationBody> {
        self.get(&format!("/v1/hydrations/{id}"), &[]).await
    }

    pub async fn cancel_hydration(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<HydrationBody> {
        self.post(
            &format!("/v1/hydrations/{id}/cancel"),
            &CancelBody { reason },
        )
        .await
    }

    // Compactions

    /// Ask for the table to be compacted (the pending one, if any).
    pub async fn request_compaction(
        &self,
        table: &str,
        body: &RequestCompactionBody,
    ) -> Result<CompactionBody> {
        self.post(&format!("/v1/tables/{table}/compactions"), body)
            .await
    }

    pub async fn compaction(&self, table: &str, id: &str) -> Result<CompactionBody> {
        self.get(&format!("/v1/tables/{table}/compactions/{id}"), &[])
            .await
    }

    /// Every pending compaction, oldest first.
    pub async fn compaction_queue(&self) -> Result<CompactionQueueBody> {
        self.get("/v1/compactions", &[]).await
    }

    // Views

    pub async fn views(
        &self,
        container: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ViewsPage> {
        let mut params = Self::page(after, limit);
        params.extend(container.map(|c| ("container", c.to_owned())));
        self.get("/v1/views", &params).await
    }

    /// A view with its remap history.
    pub async fn view(&self, container: &str, view: &str) -> Result<ViewBody> {
        self.get(&format!("/v1/views/{container}/{view}"), &[])
            .await
    }

    pub async fn remap(&self, container: &str, view: &str, body: &RemapBody) -> Result<ViewBody> {
        self.post(&format!("/v1/views/{container}/{view}/remap"), body)
            .await
    }

    pub async fn rollback(
        &self,
        container: &str,
        view: &str,
        body: &RollbackBody,
    ) -> Result<ViewBody> {
        self.post(&format!("/v1/views/{container}/{view}/rollback"), body)
            .await
    }

    // Runs

    /// One page of runs in creation order, optionally of one job or state.
    /// A page of runs, oldest first, or newest first (`after` then goes on
    /// to older ones).
    pub async fn runs(
        &self,
        job: Option<&str>,
        state: Option<&str>,
        after: Option<&str>,
        limit: u32,
        newest_first: bool,
    ) -> Result<RunsPage> {
        let mut params = Self::page(after, limit);
        params.extend(job.map(|j| ("job", j.to_owned())));
        params.extend(state.map(|s| ("state", s.to_owned())));
        if newest_first {
            params.push(("order", "newest".to_owned()));
        }
        self.get("/v1/runs", &params).await
    }

    pub async fn run(&self, id: &str) -> Result<RunBody> {
        self.get(&format!("/v1/runs/{id}"), &[]).await
    }

    /// `retry`, `discard` or `cancel` a run.
    pub async fn run_action(&self, id: &str, action: &str) -> Result<RunBody> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/runs/{id}/{action}"),
            &[],
            None::<&()>,
        )
        .await
    }

    // Events

    /// Follow the event log live (Server-Sent Events), after `after`, or
    /// starting `tail` ids before the newest when `after` is `None`.
    pub async fn follow_events(
        &self,
        after: Option<i64>,
        tail: Option<i64>,
        table: Option<&str>,
    ) -> Result<crate::feed::Feed> {
        let mut params: Vec<(&str, String)> = Vec::new();
        params.extend(
            tail.filter(|_| after.is_none())
                .map(|t| ("tail", t.to_string())),
        );
        params.extend(table.map(|t| ("table", t.to_owned())));
        let mut request = self
            .http
            .get(format!("{}/v1/events/stream", self.base))
            .query(&params)
            // The feed is endless: no overall deadline, only the server's keep-alives.
            .timeout(Duration::from_secs(365 * 86_400));
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refusal(status, &response.bytes().await?));
        }
        Ok(crate::feed::Feed::new(response))
    }

    /// One page of events after `after`, optionally of one table.
    pub async fn events(&self, after: i64, table: Option<&str>, limit: u32) -> Result<EventsPage> {
        let mut params = vec![("after", after.to_string()), ("limit", limit.to_string())];
        params.extend(table.map(|t| ("table", t.to_owned())));
        self.get("/v1/events", &params).await
    }

    /// One page of the latest events: from `tail` ids before the newest.
    pub async fn recent_events(
        &self,
        tail: i64,
        table: Option<&str>,
        limit: u32,
    ) -> Result<EventsPage> {
        let mut params = vec![("tail", tail.to_string()), ("limit", limit.to_string())];
        params.extend(table.map(|t| ("table", t.to_owned())));
        self.get("/v1/events", &params).await
    }

    /// Every event after `after`, following the pages to the end.
    pub async fn all_events(&self, after: i64, table: Option<&str>) -> Result<Vec<EventBody>> {
        let mut events = Vec::new();
        let mut after = after;
        loop {
            let page = self.events(after, table, 1000).await?;
            if page.events.is_empty() {
                return Ok(events);
            }
            after = page.next_after;
            events.extend(page.events);
        }
    }
}
