//! `/metrics` in the Prometheus text format: HTTP requests and their
//! latency by route and status, and every refusal by its error type (the
//! fencing refusals `stale_token`, `lease_expired`, ... among them),
//! counted as the responses leave. Outside authentication, like the
//! health checks: it names routes and error types, never tables or tokens.

use crate::error::ErrorKind;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Upper bounds of the latency buckets, in seconds (long-polls reach 60).
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0,
];

#[derive(Default)]
struct Latency {
    /// Per bucket, not cumulative; summed when written.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One method of one route.
struct MethodStats {
    method: Method,
    latency: Latency,
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
}

/// The process's counters; cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Counts>>);

impl Metrics {
    fn record(
        &self,
        method: &Method,
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
        let i = match methods.iter().position(|m| m.method == *method) {
            Some(i) => i,
            None => {
                methods.push(MethodStats {
                    method: method.clone(),
                    latency: Latency::default(),
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
        let l = &mut m.latency;
        l.count += 1;
        l.sum += seconds;
        if let Some(b) = BUCKETS.iter().position(|b| seconds <= *b) {
            l.buckets[b] += 1;
        }
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
                let (labels, l) = (
                    format!("method=\"{}\",route=\"{}\"", m.method, escape(route)),
                    &m.latency,
                );
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(l.buckets) {
                    cumulative += n;
                    let _ = writeln!(
                        out,
                        "sluice_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "sluice_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    l.count
                );
                let _ = writeln!(
                    out,
                    "sluice_http_request_duration_seconds_sum{{{labels}}} {}",
                    l.sum
                );
                let _ = writeln!(
                    out,
                    "sluice_http_request_duration_seconds_count{{{labels}}} {}",
                    l.count
                );
            }
        }
        out.push_str("# HELP sluice_refusals_total Requests refused, by error type (stale_token, lease_expired, ...).\n");
        out.push_str("# TYPE sluice_refusals_total counter\n");
        for (kind, n) in &c.refusals {
            let _ = writeln!(out, "sluice_refusals_total{{type=\"{kind}\"}} {n}");
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

/// Count every request as its response leaves: its route's template
/// (never the raw path, so ids do not make new series), status, latency,
/// and the error type of a refusal.
pub async fn count(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // A clone of the matched path is one reference count, not a copy.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let refusal = response.extensions().get::<ErrorKind>().map(|k| k.0);
    metrics.record(
        &method,
        route.as_ref().map_or("unmatched", |p| p.as_str()),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        refusal,
    );
    response
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
