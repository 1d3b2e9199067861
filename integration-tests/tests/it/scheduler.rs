//! The scheduler against moto's Glue through sluice's real aws-sdk-glue
//! client, with the Glue double scripting what moto cannot: retries and
//! dead letters, timeouts, lost answers adopted, concurrent-runs refusals,
//! operator actions, an every-minute schedule on the real clock, and every
//! input error a caller can make.

use crate::errors::assert_error;
use crate::glue_double::GlueDouble;
use crate::harness::{Backend, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A sluice on SQLite whose AWS calls go through the double, polling runs
/// at least every second.
pub(crate) async fn scheduled(
    double: &GlueDouble,
    dir: &std::path::Path,
    extra: &[&str],
) -> Server {
    scheduled_on(Backend::Sqlite, double, dir, extra).await
}

/// [`scheduled`] on `backend`.
pub(crate) async fn scheduled_on(
    backend: Backend,
    double: &GlueDouble,
    dir: &std::path::Path,
    extra: &[&str],
) -> Server {
    let config = double.config(dir);
    let mut args = vec!["--config", config.as_str(), "--run-poll-max-seconds", "1"];
    args.extend_from_slice(extra);
    backend.server_with(&args).await
}

pub(crate) async fn define(server: &Server, name: &str, body: Value) -> Value {
    let answer = server
        .call(Method::PUT, &format!("/v1/jobs/{name}"), Some(body))
        .await;
    assert!(matches!(answer.status, 200 | 201), "{}", answer.body);
    answer.body
}

pub(crate) async fn start(server: &Server, job: &str) -> String {
    let answer = server
        .call(
            Method::POST,
            &format!("/v1/jobs/{job}/runs"),
            Some(json!({})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn run(server: &Server, id: &str) -> Value {
    let answer = server
        .call(Method::GET, &format!("/v1/runs/{id}"), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Poll the run until `done` holds (or fail after `within`).
pub(crate) async fn until(
    server: &Server,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let read = || run(server, id);
    crate::harness::until("run", within, read, done, || server.log_text()).await
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["state"] == state
}

/// The run's transitions in the event log, as `from->to`.
pub(crate) async fn transitions(server: &Server, id: &str) -> Vec<String> {
    let answer = server
        .call(Method::GET, "/v1/events?limit=1000", None)
        .await;
    answer.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["run_id"] == id)
        .map(|e| {
            format!(
                "{}->{}",
                e["data"]["from"].as_str().unwrap_or("new"),
                e["data"]["to"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_with_back_off_dead_lettered_and_an_operator_retry_succeeds() {
    a_failing_run_is_retried_with_back_off_dead_lettered_and_an_operator_retry_succeeds_on(
        Backend::Sqlite,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_with_back_off_dead_lettered_and_an_operator_retry_succeeds_dynamodb(
) {
    a_failing_run_is_retried_with_back_off_dead_lettered_and_an_operator_retry_succeeds_on(
        Backend::Dynamodb,
    )
    .await
}

async fn a_failing_run_is_retried_with_back_off_dead_lettered_and_an_operator_retry_succeeds_on(
    backend: Backend,
) {
    let double = GlueDouble::start().await;
    double.create_job("flaky-glue", 1).await;
    double
        .script(
            json!({ "outcomes": { "flaky-glue": ["FAILED", "ERROR", "TIMEOUT", "SUCCEEDED"] } }),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    define(
        &server,
        "flaky",
        json!({ "glue_job_name": "flaky-glue", "kind": "ingestion", "max_attempts": 3,
                "backoff_seconds": 2, "max_backoff_seconds": 4,
                "arguments": { "--source": "s3://landing/{job}" } }),
    )
    .await;
    let id = start(&server, "flaky").await;
    let dead = until(
        &server,
        &id,
        Duration::from_secs(60),
        state_is("dead_letter"),
    )
    .await;
    assert_eq!(dead["attempt"], 3, "{dead}");
    assert_eq!(dead["failures"], 3);
    assert_eq!(dead["error"], "scripted timeout", "{dead}");
    assert_eq!(dead["arguments"]["--source"], "s3://landing/flaky");
    assert_eq!(double.calls("StartJobRun:flaky-glue").await, 3);
    // Each Glue run carried the run's stamp and its attempt.
    let mut stamps: Vec<String> = double
        .runs("flaky-glue")
        .await
        .iter()
        .map(|r| {
            r["Arguments"]["--sluice-run-id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    stamps.sort();
    assert_eq!(
        stamps,
        (1..=3).map(|n| format!("{id}/{n}")).collect::<Vec<_>>()
    );
    let events = transitions(&server, &id).await;
    assert_eq!(
        events,
        [
            "new->queued",
            "queued->starting",
            "starting->running",
            "running->retrying",
            "retrying->queued",
            "queued->starting",
            "starting->running",
            "running->retrying",
            "retrying->queued",
            "queued->starting",
            "starting->running",
            "running->dead_letter",
        ],
        "{events:?}"
    );
    // The back-off: at least half of 2 s, then of 4 s, between attempts.
    let answer = server
        .call(Method::GET, "/v1/events?limit=1000", None)
        .await;
    let at = |from: &str, to: &str| -> Vec<i64> {
        answer.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["data"]["run_id"] == id.as_str()
                    && e["data"]["from"] == from
                    && e["data"]["to"] == to
            })
            .map(|e| {
                sluice_core::Millis::parse_rfc3339(e["at"].as_str().unwrap())
                    .unwrap()
                    .0
            })
            .collect()
    };
    let (failed, requeued) = (at("running", "retrying"), at("retrying", "queued"));
    assert!(requeued[0] - failed[0] >= 1_000, "{failed:?} {requeued:?}");
    assert!(requeued[1] - failed[1] >= 2_000, "{failed:?} {requeued:?}");

    // Only a dead letter can be retried or discarded; this one can.
    let retried = server
        .call(Method::POST, &format!("/v1/runs/{id}/retry"), None)
        .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["state"], "queued");
    let done = until(&server, &id, Duration::from_secs(30), state_is("succeeded")).await;
    assert_eq!(done["attempt"], 4);
    assert_eq!(done["failures"], 0);
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(double.calls("StartJobRun:flaky-glue").await, 4);
    let again = server
        .call(Method::POST, &format!("/v1/runs/{id}/retry"), None)
        .await;
    assert_error("retry of a succeeded run", &again, 409, "run_state");
    let listed = server
        .call(Method::GET, "/v1/runs?job=flaky&state=succeeded", None)
        .await;
    assert_eq!(
        listed.body["runs"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_stopped_and_counts_as_failed_and_a_discard_ends_it() {
    a_run_past_its_timeout_is_stopped_and_counts_as_failed_and_a_discard_ends_it_on(Backend::Sqlite)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_stopped_and_counts_as_failed_and_a_discard_ends_it_dynamodb() {
    a_run_past_its_timeout_is_stopped_and_counts_as_failed_and_a_discard_ends_it_on(
        Backend::Dynamodb,
    )
    .await
}

async fn a_run_past_its_timeout_is_stopped_and_counts_as_failed_and_a_discard_ends_it_on(
    backend: Backend,
) {
    let double = GlueDouble::start().await;
    double.create_job("slow-glue", 1).await;
    double
        .script(json!({ "outcomes": { "slow-glue": ["RUNNING"] } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    define(
        &server,
        "slow",
        json!({ "glue_job_name": "slow-glue", "kind": "export", "max_attempts": 1, "timeout_seconds": 2 }),
    )
    .await;
    let id = start(&server, "slow").await;
    let running = until(&server, &id, Duration::from_secs(20), |r| {
        r["glue_state"] == "RUNNING"
    })
    .await;
    assert_eq!(running["state"], "running");
    let dead = until(
        &server,
        &id,
        Duration::from_secs(20),
        state_is("dead_letter"),
    )
    .await;
    assert!(
        dead["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 2 s"),
        "{dead}"
    );
    assert_eq!(double.calls("BatchStopJobRun").await, 1);
    let discarded = server
        .call(Method::POST, &format!("/v1/runs/{id}/discard"), None)
        .await;
    assert_eq!(discarded.status, 200, "{}", discarded.body);
    assert_eq!(discarded.body["state"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_answer_is_lost_is_adopted_not_repeated() {
    a_start_whose_answer_is_lost_is_adopted_not_repeated_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_answer_is_lost_is_adopted_not_repeated_dynamodb() {
    a_start_whose_answer_is_lost_is_adopted_not_repeated_on(Backend::Dynamodb).await
}

async fn a_start_whose_answer_is_lost_is_adopted_not_repeated_on(backend: Backend) {
    let double = GlueDouble::start().await;
    double.create_job("lossy-glue", 1).await;
    double
        .script(json!({ "drop_start_answers": { "lossy-glue": 1 } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    define(
        &server,
        "lossy",
        json!({ "glue_job_name": "lossy-glue", "kind": "ingestion" }),
    )
    .await;
    let id = start(&server, "lossy").await;
    let done = until(&server, &id, Duration::from_secs(30), state_is("succeeded")).await;
    // Glue holds one run, the one the lost call started: it was found by
    // its stamp and adopted.
    let runs = double.runs("lossy-glue").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(done["glue_run_id"], runs[0]["Id"]);
    assert_eq!(runs[0]["Arguments"]["--sluice-run-id"], format!("{id}/1"));
    assert_eq!(double.calls("StartJobRun:lossy-glue").await, 1);
    assert!(double.calls("GetJobRuns").await >= 1);
    assert_eq!(done["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_exceeded_keeps_the_run_queued_without_spending_an_attempt() {
    concurrent_runs_exceeded_keeps_the_run_queued_without_spending_an_attempt_on(Backend::Sqlite)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_exceeded_keeps_the_run_queued_without_spending_an_attempt_dynamodb() {
    concurrent_runs_exceeded_keeps_the_run_queued_without_spending_an_attempt_on(Backend::Dynamodb)
        .await
}

async fn concurrent_runs_exceeded_keeps_the_run_queued_without_spending_an_attempt_on(
    backend: Backend,
) {
    let double = GlueDouble::start().await;
    double.create_job("busy-glue", 1).await;
    double
        .script(json!({ "concurrent_exceeded": { "busy-glue": 2 } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    define(
        &server,
        "busy",
        json!({ "glue_job_name": "busy-glue", "kind": "ingestion", "max_attempts": 1 }),
    )
    .await;
    let id = start(&server, "busy").await;
    let done = until(&server, &id, Duration::from_secs(30), state_is("succeeded")).await;
    assert_eq!(done["attempt"], 1, "{done}");
    assert_eq!(double.calls("StartJobRun:busy-glue").await, 3);
    assert_eq!(double.runs("busy-glue").await.len(), 1);
    let events = transitions(&server, &id).await;
    assert_eq!(
        events,
        [
            "new->queued",
            "queued->starting",
            "starting->queued",
            "queued->starting",
            "starting->queued",
            "queued->starting",
            "starting->running",
            "running->succeeded",
        ],
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancel_stops_the_glue_run() {
    an_operator_cancel_stops_the_glue_run_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancel_stops_the_glue_run_dynamodb() {
    an_operator_cancel_stops_the_glue_run_on(Backend::Dynamodb).await
}

async fn an_operator_cancel_stops_the_glue_run_on(backend: Backend) {
    let double = GlueDouble::start().await;
    double.create_job("long-glue", 1).await;
    double
        .script(json!({ "outcomes": { "long-glue": ["RUNNING"] } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    define(
        &server,
        "long",
        json!({ "glue_job_name": "long-glue", "kind": "other" }),
    )
    .await;
    let queued = start(&server, "long").await;
    let _ = until(
        &server,
        &queued,
        Duration::from_secs(20),
        state_is("running"),
    )
    .await;
    let asked = server
        .call(Method::POST, &format!("/v1/runs/{queued}/cancel"), None)
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.body["cancel_requested"], true);
    let cancelled = until(
        &server,
        &queued,
        Duration::from_secs(20),
        state_is("cancelled"),
    )
    .await;
    assert!(cancelled["ended_at"].is_string());
    assert_eq!(double.calls("BatchStopJobRun").await, 1);
    let again = server
        .call(Method::POST, &format!("/v1/runs/{queued}/cancel"), None)
        .await;
    assert_error("cancel of a cancelled run", &again, 409, "run_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_schedule_starts_its_glue_run_within_2_s_of_the_minute() {
    an_every_minute_schedule_starts_its_glue_run_within_2_s_of_the_minute_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_schedule_starts_its_glue_run_within_2_s_of_the_minute_dynamodb() {
    an_every_minute_schedule_starts_its_glue_run_within_2_s_of_the_minute_on(Backend::Dynamodb)
        .await
}

async fn an_every_minute_schedule_starts_its_glue_run_within_2_s_of_the_minute_on(
    backend: Backend,
) {
    let double = GlueDouble::start().await;
    double.create_job("minutely-glue", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled_on(backend, &double, dir.path(), &[]).await;
    let job = define(
        &server,
        "minutely",
        json!({ "glue_job_name": "minutely-glue", "kind": "ingestion",
                "schedule": "* * * * *", "timezone": "Europe/Paris" }),
    )
    .await;
    let next = sluice_core::Millis::parse_rfc3339(job["next_fire_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.0 % 60_000, 0, "{job}");
    let deadline = Instant::now() + Duration::from_secs(75);
    let runs = loop {
        let runs = double.runs("minutely-glue").await;
        if !runs.is_empty() {
            break runs;
        }
        assert!(Instant::now() < deadline, "no run: {}", server.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Glue's own record of when the run started (moto stamps StartedOn at
    // StartJobRun), on the real clock.
    let started = runs[0]["StartedOn"].as_f64().unwrap();
    let ms = (started * 1000.0) as i64;
    assert_eq!(ms / 60_000 * 60_000, next.0, "the planned minute");
    assert!(
        ms - next.0 < 2_000,
        "started {} ms after the minute",
        ms - next.0
    );
    let listed = server
        .call(Method::GET, "/v1/runs?job=minutely", None)
        .await;
    let first = &listed.body["runs"][0];
    assert_eq!(first["trigger"]["kind"], "schedule", "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_error_is_a_4xx_with_the_json_error_body() {
    every_input_error_is_a_4xx_with_the_json_error_body_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_error_is_a_4xx_with_the_json_error_body_dynamodb() {
    every_input_error_is_a_4xx_with_the_json_error_body_on(Backend::Dynamodb).await
}

async fn every_input_error_is_a_4xx_with_the_json_error_body_on(backend: Backend) {
    let server = backend.server_with(&[]).await;
    let good = json!({ "glue_job_name": "g", "kind": "ingestion" });
    let put = |name: &str, patch: Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (server, path) = (&server, format!("/v1/jobs/{name}"));
        async move { server.call(Method::PUT, &path, Some(body)).await }
    };
    for (patch, says) in [
        (json!({ "schedule": "61 * * * *" }), "minute"),
        (json!({ "schedule": "* * *" }), "five fields"),
        (json!({ "schedule": "0 0 30 2 *" }), "never fires"),
        (
            json!({ "schedule": "@daily", "timezone": "Mars/Olympus" }),
            "IANA",
        ),
        (json!({ "timezone": "Nowhere/Else" }), "IANA"),
        (json!({ "max_attempts": -1 }), "max_attempts"),
        (json!({ "max_attempts": 0 }), "max_attempts"),
        (json!({ "backoff_seconds": -5 }), "backoff_seconds"),
        (json!({ "max_concurrent_runs": 0 }), "max_concurrent_runs"),
        (json!({ "timeout_seconds": 0 }), "timeout_seconds"),
        (json!({ "kind": "batch" }), "kind"),
        (json!({ "catch_up": "all" }), "catch_up"),
        (json!({ "glue_job_name": "" }), "glue_job_name"),
        (json!({ "arguments": { "--x": "{nope}" } }), "placeholder"),
        (json!({ "arguments": { "--x": "{table}" } }), "table"),
        (json!({ "arguments": { "--x": "{token}" } }), "compaction"),
        (
            json!({ "arguments": { "--sluice-run-id": "1" } }),
            "--sluice-",
        ),
        (json!({ "arguments": { "x": "1" } }), "--"),
        (json!({ "table": "nodot" }), "namespace"),
        (json!({ "table": "sluice_system.scheduler" }), "reserved"),
        (json!({ "timezone": "localtime" }), "IANA"),
        (json!({ "timezone": "../etc/passwd" }), "IANA"),
    ] {
        let answer = put("j", patch.clone()).await;
        assert_error(&patch.to_string(), &answer, 422, "invalid_request");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{patch}: {message}");
    }
    let bad_name = put("a b", json!({})).await;
    assert_error("job name `a b`", &bad_name, 422, "invalid_request");
    let message = bad_name.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("job name `a b`"), "{message}");
    let bad_json = reqwest::Client::new()
        .put(format!("{}/v1/jobs/j", server.url))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let bad_json = crate::errors::answer_of(bad_json).await.unwrap();
    assert_error("a truncated body", &bad_json, 400, "malformed_json");
    let unknown_field = put("j", json!({ "retries": 3 })).await;
    assert_error("an unknown field", &unknown_field, 422, "invalid_request");
    let message = unknown_field.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field `retries`"), "{message}");

    for (method, path, status, kind) in [
        (Method::GET, "/v1/jobs/missing", 404, "job_not_found"),
        (Method::POST, "/v1/jobs/missing/runs", 404, "job_not_found"),
        (
            Method::GET,
            "/v1/runs/0190b6a0-0000-7000-8000-000000000000",
            404,
            "run_not_found",
        ),
        (
            Method::POST,
            "/v1/runs/0190b6a0-0000-7000-8000-000000000000/retry",
            404,
            "run_not_found",
        ),
        (Method::GET, "/v1/runs/nope", 400, "invalid_run_id"),
        (
            Method::GET,
            "/v1/runs?state=sleeping",
            422,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/runs?since=yesterday",
            422,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/tables/sales.none/compactions/nope",
            400,
            "invalid_compaction_id",
        ),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let answer = server.call(method.clone(), path, body).await;
        assert_error(&format!("{method} {path}"), &answer, status, kind);
    }

    // Compactions: an unknown table, a table naming no job, a job not
    // defined, a reserved table, a bad instant.
    let compact = |table: &str, body: Value| {
        let (server, path) = (&server, format!("/v1/tables/{table}/compactions"));
        async move { server.call(Method::POST, &path, Some(body)).await }
    };
    let who = json!({ "requested_by": "cron" });
    let answer = compact("sales.none", who.clone()).await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (404, json!("table_not_found"))
    );
    let put_table = server
        .call(Method::PUT, "/v1/tables/sales.orders", Some(json!({})))
        .await;
    assert_eq!(put_table.status, 201, "{}", put_table.body);
    let answer = compact("sales.orders", who.clone()).await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (409, json!("no_compaction_job"))
    );
    server
        .call(
            Method::PUT,
            "/v1/tables/sales.orders",
            Some(json!({ "compaction_job": "ghost" })),
        )
        .await;
    let answer = compact("sales.orders", who.clone()).await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (409, json!("no_compaction_job"))
    );
    assert!(answer.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ghost"));
    let answer = compact("sluice_system.scheduler", who.clone()).await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (403, json!("reserved_table"))
    );
    let answer = compact(
        "sales.orders",
        json!({ "requested_by": "cron", "not_before": "soon" }),
    )
    .await;
    assert_error("not_before `soon`", &answer, 422, "invalid_request");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not_before"), "{message}");
    let answer = compact("sales.orders", json!({ "requested_by": "" })).await;
    assert_error("an empty requested_by", &answer, 422, "invalid_request");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("requested_by"), "{message}");
    // A compaction job is not started by hand.
    define(
        &server,
        "compact",
        json!({ "glue_job_name": "g", "kind": "compaction" }),
    )
    .await;
    let answer = server
        .call(Method::POST, "/v1/jobs/compact/runs", Some(json!({})))
        .await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (409, json!("compaction_job"))
    );
    // Nobody takes the scheduler's lease.
    let answer = server
        .call(
            Method::POST,
            "/v1/tables/sluice_system.scheduler/leases",
            Some(json!({ "mode": "write", "ttl_seconds": 30, "holder": "me" })),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body["error"]["type"].clone()),
        (403, json!("reserved_table"))
    );
}

/// The pid in the scheduler leader lease's holder (`scheduler@host:pid`).
async fn leader_pid(server: &Server) -> Option<u32> {
    let answer = server
        .call(
            Method::GET,
            "/v1/tables/sluice_system.scheduler/leases",
            None,
        )
        .await;
    let holder = answer.body["holders"].get(0)?["holder"]
        .as_str()?
        .to_owned();
    holder.rsplit(':').next()?.parse().ok()
}

/// Two replicas on PostgreSQL, the leader killed with -9 while a run is in
/// Glue: the other takes over within 10 s and follows the run to its end,
/// once (one Glue run, one transition to `succeeded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_run_is_replaced_and_the_run_is_followed_to_its_end_once() {
    let database = crate::harness::fresh_database().await;
    the_leader_killed_mid_run_is_replaced(async |flags: &[&str]| {
        Server::on_database_with(&database, flags).await
    })
    .await
}

/// The same with two replicas on one DynamoDB table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_run_is_replaced_and_the_run_is_followed_to_its_end_once_dynamodb() {
    let table = crate::harness::DynamoDb::start().await;
    the_leader_killed_mid_run_is_replaced(async |flags: &[&str]| table.replica_with(flags).await)
        .await
}

/// The scenario, on replicas `replica` starts (with these `serve` flags)
/// on one shared store.
async fn the_leader_killed_mid_run_is_replaced(replica: impl AsyncFn(&[&str]) -> Server) {
    let double = GlueDouble::start().await;
    double.create_job("steady-glue", 1).await;
    let python = crate::lake::venv().join("bin/python");
    double
        .script(
            json!({ "commands": { "steady-glue": [python, "-c", "import time; time.sleep(8)"] } }),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = double.config(dir.path());
    let flags = [
        "--auth",
        "off",
        "--config",
        config.as_str(),
        "--run-poll-max-seconds",
        "1",
        "--leader-ttl-seconds",
        "3",
    ];
    let mut a = replica(&flags).await;
    let mut b = replica(&flags).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(pid) = leader_pid(&a).await {
            break pid;
        }
        assert!(Instant::now() < deadline, "no leader: {}", a.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    define(
        &a,
        "steady",
        json!({ "glue_job_name": "steady-glue", "kind": "ingestion" }),
    )
    .await;
    let id = start(&b, "steady").await;
    let _ = until(&a, &id, Duration::from_secs(20), |r| {
        r["state"] == "running"
    })
    .await;
    let (dead, alive) = if a.pid() == Some(first) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    assert_eq!(dead.pid(), Some(first));
    dead.kill9();
    let killed = Instant::now();
    let second = loop {
        match leader_pid(alive).await {
            Some(pid) if pid != first => break pid,
            _ => {}
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no takeover: {}",
            alive.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alive.pid(), Some(second));
    let done = until(alive, &id, Duration::from_secs(30), state_is("succeeded")).await;
    assert_eq!(done["attempt"], 1, "{done}");
    assert_eq!(double.calls("StartJobRun:steady-glue").await, 1);
    assert_eq!(double.runs("steady-glue").await.len(), 1);
    let ends: Vec<String> = transitions(alive, &id)
        .await
        .into_iter()
        .filter(|t| t.ends_with("->succeeded"))
        .collect();
    assert_eq!(ends, ["running->succeeded"]);
}

#[tokio::test]
async fn runs_list_newest_first_page_by_page_on_every_backend() {
    for server in [
        Server::sqlite().await,
        Server::postgres().await,
        Server::dynamodb().await,
    ] {
        let job = json!({ "glue_job_name": "g", "kind": "ingestion" });
        server
            .expect(Method::PUT, "/v1/jobs/nightly", job, 201)
            .await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let run = server
                .expect(Method::POST, "/v1/jobs/nightly/runs", json!({}), 201)
                .await;
            ids.push(run["id"].as_str().unwrap().to_owned());
        }
        let page = |after: Option<&str>| {
            let path = match after {
                Some(a) => format!("/v1/runs?job=nightly&order=newest&limit=2&after={a}"),
                None => "/v1/runs?job=nightly&order=newest&limit=2".to_owned(),
            };
            let server = &server;
            async move { server.expect(Method::GET, &path, None, 200).await }
        };
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let body = page(after.as_deref()).await;
            seen.extend(
                body["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned()),
            );
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        ids.reverse();
        assert_eq!(seen, ids, "newest first, every run once");
        // `sluice runs ls` shows the newest first too.
        let (ok, text) = crate::harness::outcome(
            std::process::Command::new(crate::harness::binary())
                .args(["runs", "ls", "--job", "nightly", "--limit", "2", "--json"])
                .args(["--url", &server.url]),
        );
        let listed: Value = serde_json::from_str(&text).unwrap_or_default();
        assert!(ok, "{text}");
        assert_eq!(listed["runs"][0]["id"], ids[0].as_str(), "{text}");
        // The default stays oldest first; an unknown order is refused.
        let oldest = server
            .expect(Method::GET, "/v1/runs?job=nightly&limit=1", None, 200)
            .await;
        assert_eq!(oldest["runs"][0]["id"], ids[4].as_str());
        let bad = server
            .call(Method::GET, "/v1/runs?order=sideways", None)
            .await;
        assert_error("order=sideways", &bad, 400, "invalid_query");
        let message = bad.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("sideways"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_glue_cannot_reach_says_why_backs_off_and_can_be_given_up() {
    // Glue's endpoint refuses every connection (a laptop without AWS).
    let dir = tempfile::tempdir().unwrap();
    let closed = crate::harness::free_port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!("[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:{closed}\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Backend::Sqlite
        .server_with(&["--config", &config, "--run-poll-max-seconds", "1"])
        .await;
    define(
        &server,
        "nightly",
        json!({ "glue_job_name": "g", "kind": "ingestion" }),
    )
    .await;
    let stuck = start(&server, "nightly").await;
    let seen = until(&server, &stuck, Duration::from_secs(20), |r| {
        r["state"] == "starting" && r["error"].as_str().is_some_and(|e| e.contains("Glue"))
    })
    .await;
    assert!(
        seen["error"].as_str().unwrap().len() < 700,
        "a reason, not a dump: {seen}"
    );
    // The reason is an event too, once while it does not change.
    let events = server
        .call(Method::GET, "/v1/events?kind=run_state_changed", None)
        .await;
    let reasons = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["run_id"] == stuck || e["data"]["id"] == stuck)
        .filter(|e| e.to_string().contains("Glue unreachable"))
        .count();
    assert!(reasons >= 1, "{}", events.body);
    // Backing off: over 8 s, a few looks, not one every 250 ms.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let warnings = server.log_text().matches("Glue unreachable").count();
    assert!(warnings <= 3, "{warnings} warnings:\n{}", server.log_text());

    // Cancel asks for the last look; while Glue cannot answer it stays
    // starting with its reason, and discard gives up on it for good.
    let cancel = server
        .call(Method::POST, &format!("/v1/runs/{stuck}/cancel"), None)
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert_eq!(cancel.body["cancel_requested"], true, "{}", cancel.body);
    // The job cannot be deleted under a run not finished.
    let busy = server.call(Method::DELETE, "/v1/jobs/nightly", None).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(busy.body["error"]["type"], "job_busy", "{}", busy.body);
    let discarded = server
        .call(Method::POST, &format!("/v1/runs/{stuck}/discard"), None)
        .await;
    assert_eq!(discarded.status, 200, "{}", discarded.body);
    assert_eq!(discarded.body["state"], "failed", "{}", discarded.body);
    assert!(
        discarded.body["error"]
            .as_str()
            .unwrap()
            .contains("discarded while starting"),
        "{}",
        discarded.body
    );
    // A run that is going nowhere else cannot be discarded.
    let queued = server
        .call(Method::POST, &format!("/v1/runs/{stuck}/discard"), None)
        .await;
    assert_eq!(queued.status, 409, "{}", queued.body);
    assert_eq!(queued.body["error"]["type"], "run_state", "{}", queued.body);
    // Now it can go; its run stays, as history.
    let deleted = server.call(Method::DELETE, "/v1/jobs/nightly", None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let gone = server.call(Method::GET, "/v1/jobs/nightly", None).await;
    assert_error("the deleted job", &gone, 404, "job_not_found");
    assert_eq!(run(&server, &stuck).await["state"], "failed");
    let again = server.call(Method::DELETE, "/v1/jobs/nightly", None).await;
    assert_eq!(
        again.body["error"]["type"], "job_not_found",
        "{}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_starting_is_looked_for_adopted_and_stopped_never_started_twice() {
    let double = GlueDouble::start().await;
    double.create_job("g", 5).await;
    // StartJobRun's answer is lost (Glue started it): the run stays
    // starting until it is looked for by its stamp.
    double
        .script(json!({ "drop_start_answers": { "g": 1 }, "outcomes": { "g": ["RUNNING"] } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled(&double, dir.path(), &[]).await;
    define(
        &server,
        "nightly",
        json!({ "glue_job_name": "g", "kind": "ingestion" }),
    )
    .await;
    let id = start(&server, "nightly").await;
    until(&server, &id, Duration::from_secs(20), state_is("starting")).await;
    let cancel = server
        .call(Method::POST, &format!("/v1/runs/{id}/cancel"), None)
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let ended = until(&server, &id, Duration::from_secs(60), |r| {
        matches!(
            r["state"].as_str(),
            Some("cancelled" | "succeeded" | "failed" | "dead_letter")
        )
    })
    .await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert_eq!(
        double.runs("g").await.len(),
        1,
        "one Glue run, never a second"
    );
}
