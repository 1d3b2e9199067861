//! The caller the black-box tests use: every answer is its status and its
//! JSON body, whatever the status, so that a test can check any refusal.
//! (`sluice_client::client` is the typed client that tools use.)

use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A status and a JSON body, whatever the status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body as a lease, when the call succeeded.
    pub fn lease(&self) -> Option<Lease> {
        if (200..300).contains(&self.status) {
            serde_json::from_value(self.body.clone()).ok()
        } else {
            None
        }
    }

    /// The error `type`, when the call failed.
    pub fn error_type(&self) -> Option<&str> {
        self.body.pointer("/error/type").and_then(Value::as_str)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Lease {
    pub lease_id: String,
    pub table: String,
    pub mode: String,
    pub state: String,
    pub holder: String,
    pub token: Option<i64>,
    pub position: Option<u32>,
    pub expires_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct Acquire {
    pub mode: &'static str,
    pub holder: String,
    pub ttl_seconds: u32,
    pub wait_seconds: u32,
    pub idempotency_key: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
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
    /// The bearer token it sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    /// The typed client on the same server, with the same token.
    pub fn typed(&self) -> sluice_client::client::Client {
        sluice_client::client::Client::new(&self.base).with_token(self.token.clone())
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<Answer> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
    }

    pub async fn put_table(&self, table: &str, settings: Value) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/tables/{table}"),
            Some(&settings),
        )
        .await
    }

    pub async fn acquire(&self, table: &str, a: &Acquire) -> reqwest::Result<Answer> {
        let mut body = json!({
            "mode": a.mode, "holder": a.holder, "ttl_seconds": a.ttl_seconds,
            "wait_seconds": a.wait_seconds,
        });
        if let Some(key) = &a.idempotency_key {
            body["idempotency_key"] = json!(key);
        }
        self.send(
            reqwest::Method::POST,
            &format!("/v1/tables/{table}/leases"),
            Some(&body),
        )
        .await
    }

    pub async fn lease(&self, lease_id: &str, wait_seconds: u32) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/leases/{lease_id}?wait_seconds={wait_seconds}"),
            None,
        )
        .await
    }

    pub async fn heartbeat(&self, lease_id: &str, token: Option<i64>) -> reqwest::Result<Answer> {
        let body = json!({ "token": token });
        self.send(
            reqwest::Method::POST,
            &format!("/v1/leases/{lease_id}/heartbeat"),
            Some(&body),
        )
        .await
    }

    pub async fn release(&self, lease_id: &str, token: Option<i64>) -> reqwest::Result<Answer> {
        let path = match token {
            Some(t) => format!("/v1/leases/{lease_id}?token={t}"),
            None => format!("/v1/leases/{lease_id}"),
        };
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    pub async fn revoke(&self, lease_id: &str, reason: &str) -> reqwest::Result<Answer> {
        let body = json!({ "reason": reason });
        self.send(
            reqwest::Method::POST,
            &format!("/v1/leases/{lease_id}/revoke"),
            Some(&body),
        )
        .await
    }

    pub async fn table_leases(&self, table: &str) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/tables/{table}/leases"),
            None,
        )
        .await
    }

    pub async fn put_stream(&self, stream: &str, settings: &Value) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/streams/{stream}"),
            Some(settings),
        )
        .await
    }

    /// Open a batch; the answer holds `batch_id`, `token` and the
    /// `bookmark` to resume from.
    pub async fn open_batch(
        &self,
        stream: &str,
        run_id: &str,
        ttl_seconds: u32,
    ) -> reqwest::Result<Answer> {
        let body = json!({ "run_id": run_id, "ttl_seconds": ttl_seconds });
        self.send(
            reqwest::Method::POST,
            &format!("/v1/streams/{stream}/batches"),
            Some(&body),
        )
        .await
    }

    /// Commit a batch; `body` holds `token`, `bookmark`, `counts`...
    pub async fn commit_batch(
        &self,
        stream: &str,
        batch_id: &str,
        body: &Value,
    ) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/streams/{stream}/batches/{batch_id}/commit"),
            Some(body),
        )
        .await
    }

    /// `action` is `heartbeat` or `fail`; `body` holds the `token`.
    pub async fn batch_action(
        &self,
        stream: &str,
        batch_id: &str,
        action: &str,
        body: &Value,
    ) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/streams/{stream}/batches/{batch_id}/{action}"),
            Some(body),
        )
        .await
    }

    pub async fn bookmark(&self, stream: &str) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/streams/{stream}/bookmark"),
            None,
        )
        .await
    }

    /// `action` is `rewind` or `reset`.
    pub async fn bookmark_action(
        &self,
        stream: &str,
        action: &str,
        body: &Value,
    ) -> reqwest::Result<Answer> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/streams/{stream}/bookmark/{action}"),
            Some(body),
        )
        .await
    }

    /// Every bookmark version, oldest first, following the pages.
    /// Every bookmark version, oldest first and whole: the pages list
    /// summaries, so each version is then read on its own.
    pub async fn history(&self, stream: &str) -> anyhow::Result<Vec<Value>> {
        let mut whole = Vec::new();
        for summary in self.history_summaries(stream).await? {
            let path = format!(
                "/v1/streams/{stream}/bookmark/history/{}",
                summary["version"]
            );
            let answer = self.send(reqwest::Method::GET, &path, None).await?;
            anyhow::ensure!(answer.status == 200, "version: {answer:?}");
            whole.push(answer.body);
        }
        Ok(whole)
    }

    /// Every page of the history, as listed.
    pub async fn history_summaries(&self, stream: &str) -> anyhow::Result<Vec<Value>> {
        let mut versions = Vec::new();
        let mut after = 0;
        loop {
            let path =
                format!("/v1/streams/{stream}/bookmark/history?after_version={after}&limit=1000");
            let answer = self.send(reqwest::Method::GET, &path, None).await?;
            anyhow::ensure!(
                answer.status == 200,
                "history: {} {}",
                answer.status,
                answer.body
            );
            versions.extend(
                answer.body["versions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            match answer.body["next_after_version"].as_i64() {
                Some(next) => after = next,
                None => return Ok(versions),
            }
        }
    }

    /// Every event after `after`, following `next_after` page by page.
    pub async fn all_events(&self, after: i64, table: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut events = Vec::new();
        let mut after = after;
        loop {
            let mut path = format!("/v1/events?after={after}&limit=1000");
            if let Some(t) = table {
                path.push_str(&format!("&table={t}"));
            }
            let answer = self.send(reqwest::Method::GET, &path, None).await?;
            anyhow::ensure!(
                answer.status == 200,
                "events: {} {}",
                answer.status,
                answer.body
            );
            let page = answer.body["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if page.is_empty() {
                return Ok(events);
            }
            after = answer.body["next_after"].as_i64().unwrap_or(after);
            events.extend(page);
        }
    }
}
