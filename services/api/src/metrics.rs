//! `/metrics` in the Prometheus text format. Counted by this process as
//! responses leave: HTTP requests and their latency by route and status,
//! every refusal by its error type (the fencing refusals `stale_token`,
//! `lease_expired`, ... among them), and how long granted acquires took.
//! Counted by the store's writers: group commits, lease grants, waits,
//! expirations and revocations. Read from the database at each scrape (the
//! same on every replica): leases held and waiting, runs by state, the
//! compaction queue, each active hydration's lag. Outside authentication,
//! like the health checks: it names routes, error types and hydrations'
//! tables, never tokens.

use crate::error::ErrorKind;
use crate::hydration_dto::HydrationBody;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_core::hydrations::HydrationState;
use sluice_store::stats::Histogram;
use sluice_store::HydrationQuery;
use sluice_store::StoreError;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Upper bounds of the latency buckets, in seconds (long-polls reach 60).
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0,
];

/// One method of one route.
struct MethodStats {
    method: &'static str,
    latency: Histogram,
    /// (status, requests), in first-seen order: a handful per route.
    statuses: Vec<(u16, u64)>,
}

#[derive(Default)]
struct Counts {
    /// By route template; looked up by `&str`, so a request allocates
    /// nothing once its route has been seen.
    routes: BTreeMap<String, Vec<MethodStats>>,
    /// Error type -> refusals.
    refusals: BTreeMap<&'static str, u64>,
    /// Acquires answered granted, by mode: request to answer.
    grants: BTreeMap<&'static str, Histogram>,
}

/// The process's counters; cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Counts>>);

impl Metrics {
    fn record(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        seconds: f64,
        refusal: Option<&'static str>,
    ) {
        let mut c = self.0.lock().expect("metrics lock");
        if let Some(kind) = refusal {
            *c.refusals.entry(kind).or_default() += 1;
        }
        if !c.routes.contains_key(route) {
            c.routes.insert(route.to_owned(), Vec::new());
        }
        let methods = c.routes.get_mut(route).expect("inserted above");
        let i = match methods.iter().position(|m| m.method == method) {
            Some(i) => i,
            None => {
                methods.push(MethodStats {
                    method,
                    latency: Histogram::new(&BUCKETS),
                    statuses: Vec::new(),
                });
                methods.len() - 1
            }
        };
        let m = &mut methods[i];
        match m.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => m.statuses.push((status, 1)),
        }
        m.latency.observe(seconds);
    }

    /// An acquire answered granted after `seconds` (a long-poll's wait
    /// included).
    pub fn granted(&self, mode: &'static str, seconds: f64) {
        let mut c = self.0.lock().expect("metrics lock");
        c.grants
            .entry(mode)
            .or_insert_with(|| Histogram::new(&BUCKETS))
            .observe(seconds);
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let c = self.0.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP sluice_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE sluice_http_requests_total counter\n");
        for (route, methods) in &c.routes {
            for m in methods {
                for (status, n) in &m.statuses {
                    let _ = writeln!(
                        out,
                        "sluice_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                        m.method,
                        escape(route)
                    );
                }
            }
        }
        out.push_str("# HELP sluice_http_request_duration_seconds Time to answer, by method and route (long-polls included).\n");
        out.push_str("# TYPE sluice_http_request_duration_seconds histogram\n");
        for (route, methods) in &c.routes {
            for m in methods {
                let labels = format!("method=\"{}\",route=\"{}\"", m.method, escape(route));
                m.latency
                    .write(&mut out, "sluice_http_request_duration_seconds", &labels);
            }
        }
        out.push_str("# HELP sluice_refusals_total Requests refused, by error type (stale_token, lease_expired, ...).\n");
        out.push_str("# TYPE sluice_refusals_total counter\n");
        for (kind, n) in &c.refusals {
            let _ = writeln!(out, "sluice_refusals_total{{type=\"{kind}\"}} {n}");
        }
        out.push_str("# HELP sluice_lease_grant_seconds Acquires answered granted, by mode: from request to answer.\n");
        out.push_str("# TYPE sluice_lease_grant_seconds histogram\n");
        for (mode, h) in &c.grants {
            h.write(
                &mut out,
                "sluice_lease_grant_seconds",
                &format!("mode=\"{mode}\""),
            );
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The route label of a request no route matched: one series for every
/// unknown path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label: the methods the API and browsers use, and `other` for
/// any other (a method is any token a client makes up, so each one must
/// not make a series of its own).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Count every request as its response leaves: its route's template
/// (never the raw path, so ids do not make new series), status, latency,
/// and the error type of a refusal. Labels come from fixed sets only (the
/// routes' templates, a few methods, status codes, error types), so what
/// unauthenticated callers send cannot grow the exposition.
pub async fn count(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // A clone of the matched path is one reference count, not a copy.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let refusal = response.extensions().get::<ErrorKind>().map(|k| k.0);
    metrics.record(
        method,
        route.as_ref().map_or(UNMATCHED_ROUTE, |p| p.as_str()),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        refusal,
    );
    response
}

/// `GET /metrics`.
pub async fn serve(State(app): State<AppState>) -> Response {
    let mut out = app.metrics.render();
    app.store.stats().render(&mut out);
    if let Some(items) = app.store.items_read() {
        out.push_str("# HELP sluice_dynamodb_items_read_total Items this replica read from DynamoDB (what read units are charged for).\n");
        out.push_str("# TYPE sluice_dynamodb_items_read_total counter\n");
        let _ = writeln!(out, "sluice_dynamodb_items_read_total {items}");
    }
    // A database that does not answer still leaves the process's own
    // counters readable, and says so.
    let up = gauges(&app, &mut out).await.is_ok();
    out.push_str("# HELP sluice_store_up Whether the database answered this scrape's queries.\n");
    out.push_str("# TYPE sluice_store_up gauge\n");
    let _ = writeln!(out, "sluice_store_up {}", u8::from(up));
    let mut response = out.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// What the database holds now: the same answer on every replica.
async fn gauges(app: &AppState, out: &mut String) -> Result<(), StoreError> {
    let leases = app.store.lease_counts().await?;
    out.push_str("# HELP sluice_leases Live leases on users' tables, by mode and state (granted, waiting).\n");
    out.push_str("# TYPE sluice_leases gauge\n");
    for mode in ["read", "write"] {
        for state in ["granted", "waiting"] {
            let n = leases
                .iter()
                .find(|(m, s, _)| m == mode && s == state)
                .map_or(0, |l| l.2);
            let _ = writeln!(
                out,
                "sluice_leases{{mode=\"{mode}\",state=\"{state}\"}} {n}"
            );
        }
    }
    let runs = app.store.run_counts().await?;
    out.push_str("# HELP sluice_runs Job runs kept, by state.\n");
    out.push_str("# TYPE sluice_runs gauge\n");
    for (state, n) in &runs {
        let _ = writeln!(out, "sluice_runs{{state=\"{}\"}} {n}", escape(state));
    }
    let now = sluice_store::system_now();
    let pending = app
        .store
        .active_compactions(crate::routes::compactions::QUEUE_LIMIT)
        .await?;
    out.push_str(
        "# HELP sluice_compactions Pending compactions, by state (queued, waiting, running).\n",
    );
    out.push_str("# TYPE sluice_compactions gauge\n");
    for state in ["queued", "waiting", "running"] {
        let n = pending
            .iter()
            .filter(|c| c.value.state.as_str() == state)
            .count();
        let _ = writeln!(out, "sluice_compactions{{state=\"{state}\"}} {n}");
    }
    let oldest = pending
        .iter()
        .filter(|c| c.value.state.as_str() != "running")
        .map(|c| c.value.created_at.0)
        .min();
    out.push_str("# HELP sluice_compaction_oldest_pending_seconds Age of the oldest compaction request not yet running (0: none).\n");
    out.push_str("# TYPE sluice_compaction_oldest_pending_seconds gauge\n");
    let age = oldest.map_or(0.0, |t| (now.0 - t).max(0) as f64 / 1000.0);
    let _ = writeln!(out, "sluice_compaction_oldest_pending_seconds {age}");
    out.push_str("# HELP sluice_hydration_lag_snapshots Snapshots an active hydration has not applied yet.\n");
    out.push_str("# TYPE sluice_hydration_lag_snapshots gauge\n");
    let mut seconds = String::new();
    let mut attached = String::new();
    for state in ACTIVE {
        let query = HydrationQuery {
            after: None,
            state: Some(state),
            table: None,
            container: None,
            limit: 1000,
            scopes: Vec::new(),
        };
        for h in app.store.hydrations(&query).await? {
            let body = HydrationBody::new(h, None, now);
            let labels = format!(
                "hydration=\"{}\",table=\"{}\",container=\"{}\",target=\"{}\",state=\"{}\"",
                body.id,
                escape(&body.table),
                escape(&body.container),
                escape(&body.target),
                state.as_str()
            );
            let _ = writeln!(
                out,
                "sluice_hydration_lag_snapshots{{{labels}}} {}",
                body.lag.snapshots
            );
            let _ = writeln!(
                seconds,
                "sluice_hydration_lag_seconds{{{labels}}} {}",
                body.lag.seconds
            );
            let _ = writeln!(
                attached,
                "sluice_hydration_run_attached{{{labels}}} {}",
                u8::from(body.session.is_some())
            );
        }
    }
    out.push_str("# HELP sluice_hydration_lag_seconds Age of the oldest snapshot an active hydration has not applied (0: caught up).\n");
    out.push_str("# TYPE sluice_hydration_lag_seconds gauge\n");
    out.push_str(&seconds);
    out.push_str("# HELP sluice_hydration_run_attached 1 while a run of the hydration's job is attached (a copy with none stays live, or falls lagging).\n");
    out.push_str("# TYPE sluice_hydration_run_attached gauge\n");
    out.push_str(&attached);
    Ok(())
}

/// The hydrations whose lag is exported (at most 1000 in each state).
const ACTIVE: [HydrationState; 5] = [
    HydrationState::Pending,
    HydrationState::Snapshot,
    HydrationState::CatchingUp,
    HydrationState::Live,
    HydrationState::Lagging,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let metrics = Metrics::default();
        for i in 0..100 {
            let method = Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
            metrics.record(method_label(&method), UNMATCHED_ROUTE, 405, 0.001, None);
        }
        metrics.record(
            method_label(&Method::GET),
            UNMATCHED_ROUTE,
            404,
            0.001,
            None,
        );
        let text = metrics.render();
        assert!(!text.contains("PROBE"), "{text}");
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sluice_http_requests_total{"))
            .collect();
        assert_eq!(
            requests,
            [
                "sluice_http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 100",
                "sluice_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            ]
        );
    }
}
