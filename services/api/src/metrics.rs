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

#[derive(Default)]
struct Counts {
    /// (method, route template, status) -> requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route template) -> latency.
    latency: BTreeMap<(String, String), Latency>,
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
        let key = (method.as_str().to_owned(), route.to_owned());
        *c.requests
            .entry((key.0.clone(), key.1.clone(), status))
            .or_default() += 1;
        let l = c.latency.entry(key).or_default();
        l.count += 1;
        l.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            l.buckets[i] += 1;
        }
        if let Some(kind) = refusal {
            *c.refusals.entry(kind).or_default() += 1;
        }
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let c = self.0.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP sluice_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE sluice_http_requests_total counter\n");
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "sluice_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP sluice_http_request_duration_seconds Time to answer, by method and route (long-polls included).\n");
        out.push_str("# TYPE sluice_http_request_duration_seconds histogram\n");
        for ((method, route), l) in &c.latency {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
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
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let refusal = response.extensions().get::<ErrorKind>().map(|k| k.0);
    metrics.record(
        &method,
        &route,
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
