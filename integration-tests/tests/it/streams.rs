//! CDC streams through the HTTP API alone: batches that exclude each other,
//! a bookmark that only moves forward one version at a time (LOAD, then
//! DELTA), rewinds and resets by operators, and every error a caller can
//! cause answered as a 4xx that changes nothing.

use crate::errors::{assert_error, send, with};
use crate::harness::Server;
use crate::raw::{Answer, Client};
use crate::{on_every_backend, on_every_backend_with_auth};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

const STREAM: &str = "sales.orders_cdc";
const TABLE: &str = "sales.orders";
/// Long enough that no batch expires by accident on a slow machine.
const TTL: u32 = 600;
/// Where CDC resumes once the full load is done.
const CDC_START: &str = "20240501-000000000";
const UNKNOWN_BATCH: &str = "0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11";

on_every_backend!(
    racing_runs_commit_one_batch_at_a_time_and_never_fork_the_history,
    runs_opening_or_committing_at_the_same_instant_get_one_batch_between_them,
    a_completed_load_moves_to_delta_and_the_bookmark_never_goes_back,
    unknown_streams_and_batches_and_bad_names_or_ids_are_refused,
    fenced_expired_ended_and_mismatched_batches_are_refused_with_409,
    if_match_guards_open_commit_rewind_and_reset,
    bodies_of_the_wrong_shape_are_refused_and_change_nothing,
    retried_opens_commits_and_fails_answer_what_the_first_one_did,
    a_second_commit_with_a_different_body_is_refused_and_changes_nothing,
    absent_counts_are_zero_and_a_rewind_into_the_future_is_refused,
    a_stream_needs_its_table_registered,
    a_heartbeat_keeps_a_batch_alive_past_its_ttl,
    a_full_load_of_20000_files_fits_in_one_bookmark,
    a_history_page_of_large_loads_counts_their_files_and_stays_small,
    kill_9_keeps_the_bookmark_its_history_and_the_open_batch,
);

on_every_backend_with_auth!(
    operators_rewind_and_reset_and_jobs_resume_from_there,
    streams_are_listed_a_page_at_a_time_and_a_scoped_token_sees_only_its_own,
);

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// A request the typed client cannot make: an `If-Match` header, or a raw
/// body (malformed JSON). Authentication is off where this is used.
async fn raw(
    s: &Server,
    method: Method,
    path: &str,
    if_match: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", s.url))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(version) = if_match {
        request = request.header(reqwest::header::IF_MATCH, version);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer { status, body }
}

/// A JSON request with an `If-Match` header.
async fn if_match(s: &Server, method: Method, path: &str, version: &str, body: &Value) -> Answer {
    raw(s, method, path, Some(version), body.to_string()).await
}

fn load_file(n: usize) -> String {
    format!("LOAD{n:08X}.csv")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array: {value}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn batch_id(batch: &Value) -> String {
    batch["batch_id"].as_str().expect("a batch_id").to_owned()
}

fn token(batch: &Value) -> i64 {
    batch["token"].as_i64().expect("a token")
}

fn stream_path(stream: &str) -> String {
    format!("/v1/streams/{stream}")
}

fn batches_path(stream: &str) -> String {
    format!("/v1/streams/{stream}/batches")
}

fn batch_path(stream: &str, batch: &str) -> String {
    format!("/v1/streams/{stream}/batches/{batch}")
}

/// Register `table` (if it is not yet) and `stream` feeding it, with
/// `extra` settings.
async fn register(c: &Client, stream: &str, table: &str, extra: Value) {
    let answer = c.put_table(table, json!({})).await.unwrap();
    assert!(answer.status < 300, "register {table}: {answer:?}");
    let mut body = json!({ "table": table });
    for (key, value) in extra.as_object().expect("an object") {
        body[key] = value.clone();
    }
    let answer = c.put_stream(stream, &body).await.unwrap();
    assert_eq!(answer.status, 201, "register {stream}: {answer:?}");
}

/// Open a batch that must be granted; the batch.
async fn open(c: &Client, stream: &str, run_id: &str) -> Value {
    let answer = c.open_batch(stream, run_id, TTL).await.unwrap();
    assert_eq!(answer.status, 201, "open for {run_id}: {answer:?}");
    answer.body
}

/// A commit of the load phase with these files done.
fn load_commit(token: i64, files: &[String]) -> Value {
    json!({
        "token": token,
        "bookmark": { "load": { "files_done": files } },
        "counts": { "inserted": 3, "updated": 1, "deleted": 0 },
    })
}

/// A commit of the delta phase at this CDC file.
fn delta_commit(token: i64, file: &str) -> Value {
    let stamp = file.trim_end_matches(".csv");
    json!({
        "token": token,
        "bookmark": { "delta": { "file": file, "commit_timestamp": stamp } },
        "counts": { "inserted": 1, "updated": 1, "deleted": 1 },
    })
}

/// Commit that must succeed; `{batch, bookmark}`.
async fn commit(c: &Client, stream: &str, batch: &Value, body: &Value) -> Value {
    let answer = c
        .commit_batch(stream, &batch_id(batch), body)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "commit {body}: {answer:?}");
    answer.body
}

/// One whole run of a load batch: open, add the next LOAD file to what the
/// bookmark says is done, commit. The commit's answer.
async fn commit_next_load_file(c: &Client, stream: &str, run_id: &str) -> Value {
    let batch = open(c, stream, run_id).await;
    let mut done = strings(&batch["bookmark"]["load"]["files_done"]);
    done.push(load_file(done.len() + 1));
    commit(c, stream, &batch, &load_commit(token(&batch), &done)).await
}

async fn bookmark(c: &Client, stream: &str) -> Value {
    let answer = c.bookmark(stream).await.unwrap();
    assert_eq!(answer.status, 200, "bookmark of {stream}: {answer:?}");
    answer.body
}

async fn get_stream(c: &Client, stream: &str) -> Value {
    let answer = send(c, Method::GET, &stream_path(stream), None).await;
    assert_eq!(answer.status, 200, "GET {stream}: {answer:?}");
    answer.body
}

async fn get_batch(c: &Client, stream: &str, batch: &str) -> Value {
    let answer = send(c, Method::GET, &batch_path(stream, batch), None).await;
    assert_eq!(answer.status, 200, "GET batch {batch}: {answer:?}");
    answer.body
}

/// What a refused request must leave as it was: the bookmark, the open
/// batch, every version of the history.
async fn state_of(c: &Client, stream: &str) -> Value {
    let view = get_stream(c, stream).await;
    json!({
        "bookmark": view["bookmark"],
        "open_batch": view["open_batch"],
        "history": c.history(stream).await.unwrap(),
    })
}

#[track_caller]
fn assert_unchanged(what: &str, before: &Value, after: &Value) {
    assert!(
        before == after,
        "{what} changed the stream:\nbefore: {before:#}\nafter: {after:#}"
    );
}

/// The position a bookmark or history version holds, without its version
/// and time.
fn position(bookmark: &Value) -> Value {
    json!({
        "phase": bookmark["phase"],
        "load": bookmark["load"],
        "delta": bookmark["delta"],
    })
}

/// The history of a stream only ever fed LOAD files one at a time by
/// `commit_next_load_file`: versions 1..=n with no gap, each batch version
/// built on the one before it with exactly one new file, every batch once.
#[track_caller]
fn assert_one_file_per_version(versions: &[Value]) {
    let story = serde_json::to_string_pretty(versions).unwrap();
    assert_eq!(versions[0]["cause"], "created", "{story}");
    assert_eq!(
        versions[0]["load"]["files_done"],
        json!([]),
        "a new stream starts empty: {story}"
    );
    let mut batches = HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(v["version"], json!(i + 1), "no gap: {story}");
        if i == 0 {
            continue;
        }
        assert_eq!(v["cause"], "batch", "version {}: {story}", i + 1);
        let mut expected = strings(&versions[i - 1]["load"]["files_done"]);
        expected.push(load_file(i));
        assert_eq!(
            strings(&v["load"]["files_done"]),
            expected,
            "version {} adds one file to version {}: {story}",
            i + 1,
            i
        );
        let id = v["batch_id"]
            .as_str()
            .expect("a batch version names its batch");
        assert!(batches.insert(id.to_owned()), "batch {id} twice: {story}");
    }
}

// ---------------------------------------------------------------------
// 1. Racing runs
// ---------------------------------------------------------------------

const RUNS: usize = 8;
const COMMITS_PER_RUN: usize = 5;

/// What one racing run did.
#[derive(Debug, Default)]
struct RunLog {
    /// `(batch_id, base_version, committed_version)` of each commit.
    commits: Vec<(String, i64, i64)>,
    /// Opens refused with `batch_open` because another run's batch was open.
    refused: usize,
}

/// A job run that keeps trying to open a batch until it has committed
/// `COMMITS_PER_RUN` of them, each adding one LOAD file to the bookmark it
/// was handed.
async fn racing_run(c: Client, run: usize) -> RunLog {
    let run_id = format!("run-{run}");
    let mut log = RunLog::default();
    while log.commits.len() < COMMITS_PER_RUN {
        let opened = c.open_batch(STREAM, &run_id, TTL).await.unwrap();
        if opened.status == 409 {
            assert_error(&format!("{run_id} open"), &opened, 409, "batch_open");
            log.refused += 1;
            // Spread the retries so that the runs do not move in lockstep.
            let pause = 2 + (run as u64 * 7 + log.refused as u64 * 3) % 13;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            continue;
        }
        assert_eq!(opened.status, 201, "{run_id} open: {opened:?}");
        let batch = opened.body;
        let base = batch["base_version"].as_i64().unwrap();
        assert_eq!(
            batch["bookmark"]["version"], base,
            "the batch resumes from the version it is based on: {batch}"
        );
        let mut done = strings(&batch["bookmark"]["load"]["files_done"]);
        done.push(load_file(done.len() + 1));
        let answer = c
            .commit_batch(
                STREAM,
                &batch_id(&batch),
                &load_commit(token(&batch), &done),
            )
            .await
            .unwrap();
        assert_eq!(
            answer.status, 200,
            "{run_id}: a batch opened exclusively always commits: {answer:?}"
        );
        let committed = answer.body["bookmark"]["version"].as_i64().unwrap();
        assert_eq!(committed, base + 1, "{answer:?}");
        assert_eq!(answer.body["batch"]["committed_version"], committed);
        assert_eq!(answer.body["bookmark"]["load"]["files_done"], json!(done));
        log.commits.push((batch_id(&batch), base, committed));
    }
    log
}

async fn racing_runs_commit_one_batch_at_a_time_and_never_fork_the_history(s: Server) {
    // Arrange
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;

    // Act
    let runs: Vec<_> = (0..RUNS)
        .map(|run| tokio::spawn(racing_run(c.clone(), run)))
        .collect();
    let mut logs = Vec::new();
    for run in runs {
        let log = tokio::time::timeout(Duration::from_secs(300), run)
            .await
            .expect("the runs finish")
            .expect("a run panicked");
        logs.push(log);
    }

    // Assert
    let k = RUNS * COMMITS_PER_RUN;
    let refused: usize = logs.iter().map(|l| l.refused).sum();
    assert!(
        refused > 0,
        "runs racing for one stream were turned away: {logs:?}"
    );
    let mut committed: Vec<i64> = logs
        .iter()
        .flat_map(|l| l.commits.iter().map(|c| c.2))
        .collect();
    committed.sort_unstable();
    let expected: Vec<i64> = (2..=k as i64 + 1).collect();
    assert_eq!(
        committed, expected,
        "exactly one commit produced each version"
    );

    let versions = c.history(STREAM).await.unwrap();
    assert_eq!(versions.len(), k + 1);
    assert_one_file_per_version(&versions);
    let by_batch: BTreeMap<&str, (String, i64)> = logs
        .iter()
        .enumerate()
        .flat_map(|(run, l)| {
            l.commits
                .iter()
                .map(move |(id, _, v)| (id.as_str(), (format!("run-{run}"), *v)))
        })
        .collect();
    assert_eq!(by_batch.len(), k, "every batch id is unique");
    for v in &versions[1..] {
        let (run_id, version) = &by_batch[v["batch_id"].as_str().unwrap()];
        assert_eq!(
            (&v["run_id"], &v["version"]),
            (&json!(run_id), &json!(version)),
            "the history names the run whose commit made the version"
        );
    }
    let view = get_stream(c, STREAM).await;
    assert_eq!(view["bookmark"]["version"], json!(k + 1));
    assert_eq!(view["open_batch"], Value::Null);
}

async fn runs_opening_or_committing_at_the_same_instant_get_one_batch_between_them(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;

    // Two runs open at the same instant: one gets the batch, the other is
    // told who has it.
    for round in 0..10 {
        let (a, b) = (format!("a-{round}"), format!("b-{round}"));
        let (first, second) =
            tokio::join!(c.open_batch(STREAM, &a, TTL), c.open_batch(STREAM, &b, TTL));
        let (first, second) = (first.unwrap(), second.unwrap());
        let (winner, loser) = match (first.status, second.status) {
            (201, 409) => (first, second),
            (409, 201) => (second, first),
            other => panic!("one 201 and one 409, not {other:?}: {first:?} {second:?}"),
        };
        assert_error("the losing open", &loser, 409, "batch_open");
        let message = loser.body["error"]["message"].as_str().unwrap();
        let run = winner.body["run_id"].as_str().unwrap();
        assert!(
            message.contains(&batch_id(&winner.body)) && message.contains(run),
            "the refusal names the open batch and its run: {message}"
        );
        let mut done = strings(&winner.body["bookmark"]["load"]["files_done"]);
        done.push(load_file(done.len() + 1));
        commit(
            c,
            STREAM,
            &winner.body,
            &load_commit(token(&winner.body), &done),
        )
        .await;
    }

    // A run commits while another opens: the commit always lands; the open
    // is either refused or starts from the committed version, never from
    // the one before it.
    let mut opened_after = 0;
    for round in 0..10 {
        let batch = open(c, STREAM, &format!("committer-{round}")).await;
        let mut done = strings(&batch["bookmark"]["load"]["files_done"]);
        done.push(load_file(done.len() + 1));
        let body = load_commit(token(&batch), &done);
        let (id, opener) = (batch_id(&batch), format!("opener-{round}"));
        let (committed, opened) = tokio::join!(
            c.commit_batch(STREAM, &id, &body),
            c.open_batch(STREAM, &opener, TTL)
        );
        let (committed, opened) = (committed.unwrap(), opened.unwrap());
        assert_eq!(committed.status, 200, "{committed:?}");
        let version = &committed.body["bookmark"]["version"];
        match opened.status {
            409 => assert_error("open during a commit", &opened, 409, "batch_open"),
            201 => {
                opened_after += 1;
                assert_eq!(
                    (
                        &opened.body["base_version"],
                        &opened.body["bookmark"]["version"]
                    ),
                    (version, version),
                    "an open after the commit resumes from it: {opened:?}"
                );
                let failed = c
                    .batch_action(
                        STREAM,
                        &batch_id(&opened.body),
                        "fail",
                        &json!({ "token": token(&opened.body) }),
                    )
                    .await
                    .unwrap();
                assert_eq!(failed.status, 200, "{failed:?}");
            }
            _ => panic!("open during a commit: {opened:?}"),
        }
    }
    eprintln!("{opened_after} of 10 opens landed just after the racing commit");

    let versions = c.history(STREAM).await.unwrap();
    assert_eq!(versions.len(), 21, "one version per commit");
    assert_one_file_per_version(&versions);
}

// ---------------------------------------------------------------------
// 2. Rewind and reset
// ---------------------------------------------------------------------

async fn operators_rewind_and_reset_and_jobs_resume_from_there(s: Server) {
    // Arrange
    let admin = s.client_with(&s.create_token("root", "admin", &[], &[]));
    let job = s.client_with(&s.create_token("ingest-job", "job", &[], &[]));
    let oncall = s.client_with(&s.create_token("oncall", "operator", &[], &[]));
    register(&admin, STREAM, TABLE, json!({})).await;
    for n in 1..=3 {
        let batch = open(&job, STREAM, &format!("glue-{n}")).await;
        let files: Vec<String> = (1..=n).map(load_file).collect();
        let mut body = load_commit(token(&batch), &files);
        body["bookmark"]["load"]["cdc_start"] = json!({ "commit_timestamp": CDC_START });
        body["bookmark"]["load"]["high_water"] = json!(load_file(n));
        let done = commit(&job, STREAM, &batch, &body).await;
        assert_eq!(done["bookmark"]["version"], n + 1);
        // Versions written in distinct milliseconds, so that a rewind by
        // time below has exactly one version to pick.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = job.history(STREAM).await.unwrap();
    assert_eq!(before.len(), 4);
    let v2 = position(&before[1]);
    let v3 = position(&before[2]);

    // Act + Assert: who may do what.
    let rewind_to_2 = json!({ "to_version": 2, "reason": "restore after incident" });
    let by_job = job
        .bookmark_action(STREAM, "rewind", &rewind_to_2)
        .await
        .unwrap();
    assert_error("a job rewinding", &by_job, 403, "forbidden");
    let reset_by_job = job
        .bookmark_action(STREAM, "reset", &json!({ "reason": "oops" }))
        .await
        .unwrap();
    assert_error("a job resetting", &reset_by_job, 403, "forbidden");
    let by_operator = oncall.open_batch(STREAM, "oncall-run", TTL).await.unwrap();
    assert_error(
        "an operator opening a batch",
        &by_operator,
        403,
        "forbidden",
    );
    assert_eq!(bookmark(&job, STREAM).await["version"], 4, "nothing moved");

    // Rewind to version 2: a new version 5 at version 2's position.
    let rewound = oncall
        .bookmark_action(STREAM, "rewind", &rewind_to_2)
        .await
        .unwrap();
    assert_eq!(rewound.status, 200, "{rewound:?}");
    assert_eq!(rewound.body["version"], 5, "{rewound:?}");
    assert_eq!(position(&rewound.body), v2);
    assert_eq!(position(&bookmark(&job, STREAM).await), v2);

    // The next batch resumes from version 5, i.e. version 2's files, and
    // its commit builds version 6 on them.
    let batch = open(&job, STREAM, "glue-after-rewind").await;
    assert_eq!(batch["bookmark"]["version"], 5, "{batch}");
    assert_eq!(batch["base_version"], 5, "{batch}");
    assert_eq!(
        batch["bookmark"]["load"]["files_done"],
        json!([load_file(1)]),
        "{batch}"
    );
    let redo = vec![load_file(1), load_file(2)];
    let mut body = load_commit(token(&batch), &redo);
    body["bookmark"]["load"]["high_water"] = json!(load_file(2));
    let done = commit(&job, STREAM, &batch, &body).await;
    assert_eq!(done["bookmark"]["version"], 6);
    assert_eq!(done["bookmark"]["load"]["files_done"], json!(redo));
    assert_eq!(
        done["bookmark"]["load"]["cdc_start"],
        json!({ "file": null, "commit_timestamp": CDC_START, "position": null }),
        "the CDC start of the restored version is kept"
    );

    // Neither rewind nor reset runs under an open batch.
    let open_now = open(&job, STREAM, "glue-busy").await;
    let refused_rewind = oncall
        .bookmark_action(STREAM, "rewind", &rewind_to_2)
        .await
        .unwrap();
    assert_error(
        "rewind under an open batch",
        &refused_rewind,
        409,
        "batch_open",
    );
    let refused_reset = oncall
        .bookmark_action(STREAM, "reset", &json!({ "reason": "start over" }))
        .await
        .unwrap();
    assert_error(
        "reset under an open batch",
        &refused_reset,
        409,
        "batch_open",
    );
    assert_eq!(bookmark(&job, STREAM).await["version"], 6, "nothing moved");
    let failed = job
        .batch_action(
            STREAM,
            &batch_id(&open_now),
            "fail",
            &json!({ "token": token(&open_now), "reason": "operator wants to rewind" }),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, 200, "{failed:?}");

    // Rewind by time: the version written at version 3's instant.
    let at = before[2]["updated_at"].as_str().unwrap();
    let by_time = oncall
        .bookmark_action(
            STREAM,
            "rewind",
            &json!({ "to_time": at, "reason": "back to the 2nd file" }),
        )
        .await
        .unwrap();
    assert_eq!(by_time.status, 200, "{by_time:?}");
    assert_eq!(by_time.body["version"], 7);
    assert_eq!(position(&by_time.body), v3);

    // Reset: an empty full load.
    let reset = oncall
        .bookmark_action(STREAM, "reset", &json!({ "reason": "table recreated" }))
        .await
        .unwrap();
    assert_eq!(reset.status, 200, "{reset:?}");
    assert_eq!(reset.body["version"], 8);
    assert_eq!(
        position(&reset.body),
        json!({
            "phase": "load",
            "load": { "files_done": [], "high_water": null, "cdc_start": null },
            "delta": null,
        })
    );
    let fresh = open(&job, STREAM, "glue-after-reset").await;
    assert_eq!(fresh["bookmark"]["load"]["files_done"], json!([]));

    // The history tells who did what and why.
    let versions = job.history(STREAM).await.unwrap();
    let story: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!([
                v["version"],
                v["cause"],
                v["rewound_to"],
                v["actor"],
                v["reason"],
                v["run_id"]
            ])
        })
        .collect();
    assert_eq!(
        story,
        [
            json!([1, "created", null, "root", null, null]),
            json!([2, "batch", null, "ingest-job", null, "glue-1"]),
            json!([3, "batch", null, "ingest-job", null, "glue-2"]),
            json!([4, "batch", null, "ingest-job", null, "glue-3"]),
            json!([5, "rewind", 2, "oncall", "restore after incident", null]),
            json!([6, "batch", null, "ingest-job", null, "glue-after-rewind"]),
            json!([7, "rewind", 3, "oncall", "back to the 2nd file", null]),
            json!([8, "reset", null, "oncall", "table recreated", null]),
        ]
    );
    assert_eq!(position(&versions[4]), v2);
    assert_eq!(position(&versions[6]), v3);

    // So does the event log.
    let events = send(
        &admin,
        Method::GET,
        &format!("/v1/events?stream={STREAM}&limit=1000"),
        None,
    )
    .await;
    assert_eq!(events.status, 200, "{events:?}");
    let changes: Vec<Value> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "bookmark_rewound" || e["kind"] == "bookmark_reset")
        .map(|e| json!([e["kind"], e["actor"], e["stream"], e["data"]["reason"]]))
        .collect();
    assert_eq!(
        changes,
        [
            json!([
                "bookmark_rewound",
                "oncall",
                STREAM,
                "restore after incident"
            ]),
            json!(["bookmark_rewound", "oncall", STREAM, "back to the 2nd file"]),
            json!(["bookmark_reset", "oncall", STREAM, "table recreated"]),
        ]
    );
}

// ---------------------------------------------------------------------
// 3. Load, then delta
// ---------------------------------------------------------------------

async fn a_completed_load_moves_to_delta_and_the_bookmark_never_goes_back(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let cdc_start = json!({ "file": null, "commit_timestamp": CDC_START, "position": "lsn-1" });

    // LOAD1, with the CDC start captured when the load began.
    let batch = open(c, STREAM, "glue-1").await;
    let mut body = load_commit(token(&batch), &[load_file(1)]);
    body["bookmark"]["load"]["cdc_start"] = cdc_start.clone();
    let v2 = commit(c, STREAM, &batch, &body).await;
    assert_eq!(v2["bookmark"]["phase"], "load");
    assert_eq!(v2["bookmark"]["delta"], Value::Null);

    // Dropping LOAD1 would redo it: refused, and the batch stays usable.
    let batch = open(c, STREAM, "glue-2").await;
    let before = state_of(c, STREAM).await;
    let dropped = c
        .commit_batch(
            STREAM,
            &batch_id(&batch),
            &load_commit(token(&batch), &[load_file(2)]),
        )
        .await
        .unwrap();
    assert_error(
        "a load commit dropping LOAD1",
        &dropped,
        409,
        "bookmark_regression",
    );
    assert_unchanged("the regression", &before, &state_of(c, STREAM).await);

    // LOAD2 completes the load: phase delta at the load's CDC start, in
    // the same version.
    let mut body = load_commit(token(&batch), &[load_file(1), load_file(2)]);
    body["load_complete"] = json!(true);
    let v3 = commit(c, STREAM, &batch, &body).await["bookmark"].clone();
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["phase"], "delta");
    assert_eq!(v3["delta"], cdc_start);
    assert_eq!(
        v3["load"]["files_done"],
        json!([load_file(1), load_file(2)])
    );
    assert_eq!(bookmark(c, STREAM).await, v3);

    // In delta phase a load section, or load_complete, is the wrong phase.
    let batch = open(c, STREAM, "glue-3").await;
    assert_eq!(batch["bookmark"], v3, "the next run resumes in delta");
    let before = state_of(c, STREAM).await;
    let as_load = c
        .commit_batch(
            STREAM,
            &batch_id(&batch),
            &load_commit(token(&batch), &[load_file(1), load_file(2), load_file(3)]),
        )
        .await
        .unwrap();
    assert_error("a load commit in delta", &as_load, 409, "phase_mismatch");
    let mut completing = delta_commit(token(&batch), "20240501-000100000.csv");
    completing["load_complete"] = json!(true);
    let completed_again = c
        .commit_batch(STREAM, &batch_id(&batch), &completing)
        .await
        .unwrap();
    assert_error(
        "load_complete in delta",
        &completed_again,
        409,
        "phase_mismatch",
    );
    assert_unchanged("the phase mismatches", &before, &state_of(c, STREAM).await);

    // The first CDC file.
    let v4 = commit(
        c,
        STREAM,
        &batch,
        &delta_commit(token(&batch), "20240501-000100000.csv"),
    )
    .await;
    assert_eq!(v4["bookmark"]["version"], 4);
    assert_eq!(v4["bookmark"]["phase"], "delta");
    assert_eq!(v4["bookmark"]["delta"]["file"], "20240501-000100000.csv");

    // A CDC file before it would replay changes: refused.
    let batch = open(c, STREAM, "glue-4").await;
    let before = state_of(c, STREAM).await;
    let backwards = c
        .commit_batch(
            STREAM,
            &batch_id(&batch),
            &delta_commit(token(&batch), "20240501-000050000.csv"),
        )
        .await
        .unwrap();
    assert_error("a delta going back", &backwards, 409, "bookmark_regression");
    assert_unchanged("the regression", &before, &state_of(c, STREAM).await);
    let v5 = commit(
        c,
        STREAM,
        &batch,
        &delta_commit(token(&batch), "20240501-000200000.csv"),
    )
    .await;
    assert_eq!(v5["bookmark"]["version"], 5);

    // A load completed without a CDC start begins delta from nowhere.
    register(c, "sales.refunds_cdc", "sales.refunds", json!({})).await;
    let batch = open(c, "sales.refunds_cdc", "glue-1").await;
    let mut body = load_commit(token(&batch), &[load_file(1)]);
    body["load_complete"] = json!(true);
    let done = commit(c, "sales.refunds_cdc", &batch, &body).await;
    assert_eq!(done["bookmark"]["phase"], "delta");
    assert_eq!(
        done["bookmark"]["delta"],
        json!({ "file": null, "commit_timestamp": null, "position": null })
    );
}

// ---------------------------------------------------------------------
// 4. Errors: a 4xx JSON body, and nothing changed
// ---------------------------------------------------------------------

/// Every route of `stream` (and of its batch `batch`) with a valid body.
fn stream_routes(stream: &str, batch: &str, token: i64) -> Vec<(Method, String, Option<Value>)> {
    let s = stream_path(stream);
    let b = batch_path(stream, batch);
    let fenced = json!({ "token": token });
    vec![
        (Method::PUT, s.clone(), Some(json!({ "table": TABLE }))),
        (Method::GET, s.clone(), None),
        (Method::GET, format!("{s}/bookmark"), None),
        (Method::GET, format!("{s}/bookmark/history"), None),
        (
            Method::POST,
            format!("{s}/bookmark/rewind"),
            Some(json!({ "to_version": 1, "reason": "r" })),
        ),
        (
            Method::POST,
            format!("{s}/bookmark/reset"),
            Some(json!({ "reason": "r" })),
        ),
        (
            Method::POST,
            batches_path(stream),
            Some(json!({ "run_id": "r", "ttl_seconds": 60 })),
        ),
        (Method::GET, b.clone(), None),
        (Method::POST, format!("{b}/heartbeat"), Some(fenced.clone())),
        (
            Method::POST,
            format!("{b}/commit"),
            Some(load_commit(token, &[load_file(1)])),
        ),
        (Method::POST, format!("{b}/fail"), Some(fenced)),
    ]
}

async fn unknown_streams_and_batches_and_bad_names_or_ids_are_refused(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    register(c, "sales.refunds_cdc", "sales.refunds", json!({})).await;
    let other_batch = open(c, "sales.refunds_cdc", "other-run").await;
    let batch = open(c, STREAM, "glue-1").await;
    let before = state_of(c, STREAM).await;

    // Unknown stream: everything but PUT (which registers it) and reading
    // a batch (which is simply not found).
    let unknown = "sales.nope_cdc";
    let missing_batch = batch_path(unknown, UNKNOWN_BATCH);
    for (method, path, body) in stream_routes(unknown, UNKNOWN_BATCH, 1) {
        if method == Method::PUT || (method == Method::GET && path == missing_batch) {
            continue;
        }
        let answer = send(c, method.clone(), &path, body).await;
        let what = format!("{method} {path}");
        assert_error(&what, &answer, 404, "stream_not_found");
    }

    // Bad stream names.
    let long = format!("sales.{}", "x".repeat(300));
    let names = [
        "a..b",
        ".orders",
        "sales.",
        "a%20b",
        "a%2Fb",
        "sales.or$ders",
        &long,
    ];
    for name in names {
        let mut routes = stream_routes(name, UNKNOWN_BATCH, 1);
        routes.push((Method::GET, format!("/v1/events?stream={name}"), None));
        for (method, path, body) in routes {
            let answer = send(c, method.clone(), &path, body).await;
            let what = format!("{method} {path}");
            assert_error(&what, &answer, 400, "invalid_stream_name");
        }
    }

    // Bad batch ids.
    for id in ["not-a-uuid", "12345", &UNKNOWN_BATCH[1..]] {
        let routes = stream_routes(STREAM, id, token(&batch));
        let prefix = batch_path(STREAM, id);
        for (method, path, body) in routes.into_iter().filter(|r| r.1.starts_with(&prefix)) {
            let answer = send(c, method.clone(), &path, body).await;
            let what = format!("{method} {path}");
            assert_error(&what, &answer, 400, "invalid_batch_id");
        }
    }

    // Unknown batches: never seen, or another stream's (with its token).
    for id in [UNKNOWN_BATCH.to_owned(), batch_id(&other_batch)] {
        let routes = stream_routes(STREAM, &id, token(&other_batch));
        let prefix = batch_path(STREAM, &id);
        for (method, path, body) in routes.into_iter().filter(|r| r.1.starts_with(&prefix)) {
            let answer = send(c, method.clone(), &path, body).await;
            let what = format!("{method} {path}");
            assert_error(&what, &answer, 404, "batch_not_found");
        }
    }

    assert_unchanged("the refused requests", &before, &state_of(c, STREAM).await);
    assert_eq!(
        get_batch(c, "sales.refunds_cdc", &batch_id(&other_batch)).await["state"],
        "open",
        "the other stream's batch is untouched"
    );
    assert_eq!(
        get_batch(c, STREAM, &batch_id(&batch)).await["state"],
        "open"
    );
    let listed = send(c, Method::GET, "/v1/streams", None).await;
    let names: Vec<&str> = listed.body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales.orders_cdc", "sales.refunds_cdc"]);
}

async fn fenced_expired_ended_and_mismatched_batches_are_refused_with_409(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;

    // Stale tokens: an earlier batch's token on the open batch.
    let first = open(c, STREAM, "glue-1").await;
    commit(
        c,
        STREAM,
        &first,
        &load_commit(token(&first), &[load_file(1)]),
    )
    .await;
    let batch = open(c, STREAM, "glue-2").await;
    assert!(token(&batch) > token(&first), "tokens grow: {batch}");
    let stale = token(&first);
    let before = state_of(c, STREAM).await;
    let id = batch_id(&batch);
    for (action, body) in [
        ("heartbeat", json!({ "token": stale })),
        ("commit", load_commit(stale, &[load_file(1), load_file(2)])),
        ("fail", json!({ "token": stale })),
        ("heartbeat", json!({ "token": token(&batch) + 1 })),
    ] {
        let answer = c.batch_action(STREAM, &id, action, &body).await.unwrap();
        assert_error(
            &format!("{action} with {body}"),
            &answer,
            409,
            "stale_token",
        );
    }
    assert_unchanged("the stale tokens", &before, &state_of(c, STREAM).await);

    // A failed batch can no longer commit or heartbeat.
    let failed = c
        .batch_action(
            STREAM,
            &id,
            "fail",
            &json!({ "token": token(&batch), "reason": "source unreachable" }),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, 200, "{failed:?}");
    assert_eq!(failed.body["state"], "failed");
    assert_eq!(failed.body["end_reason"], "source unreachable");
    let before = state_of(c, STREAM).await;
    let late = c
        .commit_batch(
            STREAM,
            &id,
            &load_commit(token(&batch), &[load_file(1), load_file(2)]),
        )
        .await
        .unwrap();
    assert_error("commit after fail", &late, 409, "batch_finished");
    let hb = c
        .batch_action(STREAM, &id, "heartbeat", &json!({ "token": token(&batch) }))
        .await
        .unwrap();
    assert_error("heartbeat after fail", &hb, 409, "batch_finished");
    assert_unchanged("the finished batch", &before, &state_of(c, STREAM).await);

    // A batch whose run stopped heartbeating expires: its commit and its
    // heartbeat are refused, and the next run gets the stream.
    let dying = c.open_batch(STREAM, "glue-dies", 1).await.unwrap();
    assert_eq!(dying.status, 201, "{dying:?}");
    let dying = dying.body;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = c
        .commit_batch(
            STREAM,
            &batch_id(&dying),
            &load_commit(token(&dying), &[load_file(1), load_file(2)]),
        )
        .await
        .unwrap();
    assert_error("commit after the TTL", &late, 409, "batch_expired");
    let hb = c
        .batch_action(
            STREAM,
            &batch_id(&dying),
            "heartbeat",
            &json!({ "token": token(&dying) }),
        )
        .await
        .unwrap();
    assert_error("heartbeat after the TTL", &hb, 409, "batch_expired");
    assert_eq!(bookmark(c, STREAM).await["version"], 2, "nothing committed");
    let next = open(c, STREAM, "glue-next").await;
    assert_eq!(next["bookmark"]["version"], 2);
    let expired = get_batch(c, STREAM, &batch_id(&dying)).await;
    assert_eq!(
        (&expired["state"], &expired["end_reason"]),
        (&json!("failed"), &json!("expired")),
        "{expired}"
    );
    commit(
        c,
        STREAM,
        &next,
        &load_commit(token(&next), &[load_file(1), load_file(2)]),
    )
    .await;

    // A dead run's batch does not block an operator either: the rewind
    // fails it and goes ahead.
    let dead = c.open_batch(STREAM, "glue-dies-again", 1).await.unwrap();
    assert_eq!(dead.status, 201, "{dead:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rewound = c
        .bookmark_action(
            STREAM,
            "rewind",
            &json!({ "to_version": 2, "reason": "redo LOAD2" }),
        )
        .await
        .unwrap();
    assert_eq!(rewound.status, 200, "{rewound:?}");
    assert_eq!(rewound.body["version"], 4);
    let dead = get_batch(c, STREAM, &batch_id(&dead.body)).await;
    assert_eq!(
        (&dead["state"], &dead["end_reason"]),
        (&json!("failed"), &json!("expired")),
        "{dead}"
    );

    // A schema the stream does not expect is refused.
    register(
        c,
        "sales.refunds_cdc",
        "sales.refunds",
        json!({ "expected_schema_hash": "sha256:abc" }),
    )
    .await;
    let batch = open(c, "sales.refunds_cdc", "glue-1").await;
    let before = state_of(c, "sales.refunds_cdc").await;
    for hash in [json!("sha256:def"), Value::Null] {
        let mut body = load_commit(token(&batch), &[load_file(1)]);
        if !hash.is_null() {
            body["schema_hash"] = hash.clone();
        }
        let answer = c
            .commit_batch("sales.refunds_cdc", &batch_id(&batch), &body)
            .await
            .unwrap();
        assert_error(
            &format!("commit with schema hash {hash}"),
            &answer,
            409,
            "schema_mismatch",
        );
    }
    assert_unchanged(
        "the schema mismatches",
        &before,
        &state_of(c, "sales.refunds_cdc").await,
    );
    let mut body = load_commit(token(&batch), &[load_file(1)]);
    body["schema_hash"] = json!("sha256:abc");
    let done = commit(c, "sales.refunds_cdc", &batch, &body).await;
    assert_eq!(done["batch"]["schema_hash"], "sha256:abc");

    // A stream never changes table; its other settings may change.
    let before = state_of(c, STREAM).await;
    let moved = c
        .put_stream(STREAM, &json!({ "table": "sales.refunds" }))
        .await
        .unwrap();
    assert_error("a change of table", &moved, 409, "stream_table_change");
    assert_unchanged("the table change", &before, &state_of(c, STREAM).await);
    assert_eq!(get_stream(c, STREAM).await["table"], TABLE);
    let changed = c
        .put_stream(
            STREAM,
            &json!({ "table": TABLE, "source": { "kind": "dms" } }),
        )
        .await
        .unwrap();
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["source"], json!({ "kind": "dms" }));
    assert_eq!(changed.body["bookmark"], before["bookmark"]);
}

async fn if_match_guards_open_commit_rewind_and_reset(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let bm = c.bookmark(STREAM).await.unwrap();
    assert_eq!(bm.body["version"], 1);
    let batches = batches_path(STREAM);
    let open_body = json!({ "run_id": "glue-1", "ttl_seconds": TTL });

    // Open.
    let before = state_of(c, STREAM).await;
    let wrong = if_match(&s, Method::POST, &batches, "\"7\"", &open_body).await;
    assert_error("open If-Match 7", &wrong, 412, "version_mismatch");
    for garbage in ["seven", "\"7", "1.5", "\"\""] {
        let answer = if_match(&s, Method::POST, &batches, garbage, &open_body).await;
        assert_error(
            &format!("open If-Match {garbage}"),
            &answer,
            400,
            "invalid_if_match",
        );
    }
    assert_unchanged("the refused opens", &before, &state_of(c, STREAM).await);
    let batch = if_match(&s, Method::POST, &batches, "\"1\"", &open_body).await;
    assert_eq!(batch.status, 201, "{batch:?}");
    let batch = batch.body;

    // Commit.
    let path = format!("{}/commit", batch_path(STREAM, &batch_id(&batch)));
    let body = load_commit(token(&batch), &[load_file(1)]);
    let before = state_of(c, STREAM).await;
    let wrong = if_match(&s, Method::POST, &path, "\"2\"", &body).await;
    assert_error("commit If-Match 2", &wrong, 412, "version_mismatch");
    let garbage = if_match(&s, Method::POST, &path, "latest", &body).await;
    assert_error("commit If-Match latest", &garbage, 400, "invalid_if_match");
    assert_unchanged("the refused commits", &before, &state_of(c, STREAM).await);
    let done = if_match(&s, Method::POST, &path, "\"1\"", &body).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["bookmark"]["version"], 2);

    // `*` matches any version.
    let open_any = json!({ "run_id": "glue-2", "ttl_seconds": TTL });
    let batch = if_match(&s, Method::POST, &batches, "*", &open_any).await;
    assert_eq!(batch.status, 201, "{batch:?}");
    let batch = batch.body;
    let path = format!("{}/commit", batch_path(STREAM, &batch_id(&batch)));
    let body = load_commit(token(&batch), &[load_file(1), load_file(2)]);
    let done = if_match(&s, Method::POST, &path, "*", &body).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["bookmark"]["version"], 3);

    // Rewind and reset.
    let rewind_path = format!("{}/bookmark/rewind", stream_path(STREAM));
    let reset_path = format!("{}/bookmark/reset", stream_path(STREAM));
    let rewind = json!({ "to_version": 2, "reason": "redo LOAD2" });
    let reset = json!({ "reason": "start over" });
    let before = state_of(c, STREAM).await;
    for (path, body) in [(&rewind_path, &rewind), (&reset_path, &reset)] {
        let wrong = if_match(&s, Method::POST, path, "\"2\"", body).await;
        assert_error(
            &format!("{path} If-Match 2"),
            &wrong,
            412,
            "version_mismatch",
        );
        let garbage = if_match(&s, Method::POST, path, "v3", body).await;
        assert_error(
            &format!("{path} If-Match v3"),
            &garbage,
            400,
            "invalid_if_match",
        );
    }
    assert_unchanged("the refused rewinds", &before, &state_of(c, STREAM).await);
    let rewound = if_match(&s, Method::POST, &rewind_path, "\"3\"", &rewind).await;
    assert_eq!(rewound.status, 200, "{rewound:?}");
    assert_eq!(rewound.body["version"], 4);
    let reset_done = if_match(&s, Method::POST, &reset_path, "*", &reset).await;
    assert_eq!(reset_done.status, 200, "{reset_done:?}");
    assert_eq!(reset_done.body["version"], 5);

    // The ETag is the version to send back.
    let bm = c.bookmark(STREAM).await.unwrap();
    assert_eq!(bm.body["version"], 5);
    let etag = reqwest::get(format!("{}/v1/streams/{STREAM}/bookmark", s.url))
        .await
        .unwrap()
        .headers()
        .get(reqwest::header::ETAG)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(etag.as_deref(), Some("\"5\""));
}

async fn bodies_of_the_wrong_shape_are_refused_and_change_nothing(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let first = open(c, STREAM, "glue-1").await;
    commit(
        c,
        STREAM,
        &first,
        &load_commit(token(&first), &[load_file(1)]),
    )
    .await;
    let rewind_path = format!("{}/bookmark/rewind", stream_path(STREAM));
    let reset_path = format!("{}/bookmark/reset", stream_path(STREAM));

    // Rewinds to nowhere (no batch is open, so only the target is wrong).
    let before = state_of(c, STREAM).await;
    for body in [
        json!({ "to_version": 3, "reason": "r" }),
        json!({ "to_version": 1000, "reason": "r" }),
        json!({ "to_time": "1970-01-01T00:00:00Z", "reason": "r" }),
    ] {
        let answer = send(c, Method::POST, &rewind_path, Some(body.clone())).await;
        assert_error(&format!("rewind {body}"), &answer, 404, "version_not_found");
    }
    assert_unchanged(
        "the rewinds to nowhere",
        &before,
        &state_of(c, STREAM).await,
    );

    let batch = open(c, STREAM, "glue-2").await;
    let t = token(&batch);
    let before = state_of(c, STREAM).await;
    let batch_p = batch_path(STREAM, &batch_id(&batch));
    let open_ok = json!({ "run_id": "glue-3", "ttl_seconds": 60 });
    let commit_ok = load_commit(t, &[load_file(1), load_file(2)]);
    let rewind_ok = json!({ "to_version": 1, "reason": "r" });
    let l2 = [load_file(1), load_file(2)];
    let counts = |i: i64, u: i64, d: i64| json!({ "inserted": i, "updated": u, "deleted": d });
    let open_cases = [
        ("ttl 0", with(&open_ok, json!({ "ttl_seconds": 0 }))),
        ("ttl -1", with(&open_ok, json!({ "ttl_seconds": -1 }))),
        (
            "ttl 86401",
            with(&open_ok, json!({ "ttl_seconds": 86_401 })),
        ),
        (
            "ttl as text",
            with(&open_ok, json!({ "ttl_seconds": "60" })),
        ),
        ("empty run_id", with(&open_ok, json!({ "run_id": "" }))),
        ("blank run_id", with(&open_ok, json!({ "run_id": "  " }))),
        (
            "long run_id",
            with(&open_ok, json!({ "run_id": "r".repeat(300) })),
        ),
        ("no run_id", with(&open_ok, json!({ "run_id": null }))),
        ("unknown field", with(&open_ok, json!({ "priority": 1 }))),
        ("an array", json!([])),
    ];
    let heartbeat_cases = [
        ("ttl 0", json!({ "token": t, "ttl_seconds": 0 })),
        ("ttl 86401", json!({ "token": t, "ttl_seconds": 86_401 })),
        ("no token", json!({})),
        ("unknown field", json!({ "token": t, "lease": 1 })),
    ];
    let commit_cases = [
        (
            "both sections",
            with(
                &commit_ok,
                json!({ "bookmark": { "load": { "files_done": l2 }, "delta": {} } }),
            ),
        ),
        ("no section", with(&commit_ok, json!({ "bookmark": {} }))),
        ("no bookmark", with(&commit_ok, json!({ "bookmark": null }))),
        ("no token", with(&commit_ok, json!({ "token": null }))),
        (
            "inserted < 0",
            with(&commit_ok, json!({ "counts": counts(-1, 0, 0) })),
        ),
        (
            "updated < 0",
            with(&commit_ok, json!({ "counts": counts(0, -5, 0) })),
        ),
        (
            "deleted < 0",
            with(&commit_ok, json!({ "counts": counts(0, 0, -1) })),
        ),
        ("unknown field", with(&commit_ok, json!({ "rows": 5 }))),
        (
            "unknown section",
            with(&commit_ok, json!({ "bookmark": { "cdc": {} } })),
        ),
        (
            "unknown load field",
            with(
                &commit_ok,
                json!({ "bookmark": { "load": { "files": l2 } } }),
            ),
        ),
        (
            "an empty file name",
            with(
                &commit_ok,
                json!({ "bookmark": { "load": { "files_done": [load_file(1), ""] } } }),
            ),
        ),
        (
            "load_complete as text",
            with(&commit_ok, json!({ "load_complete": "yes" })),
        ),
    ];
    let fail_cases = [
        ("no token", json!({ "reason": "r" })),
        ("unknown field", json!({ "token": t, "why": "r" })),
    ];
    let rewind_cases = [
        (
            "both targets",
            with(&rewind_ok, json!({ "to_time": "2024-05-01T00:00:00Z" })),
        ),
        ("no target", json!({ "reason": "r" })),
        (
            "to_time not RFC 3339",
            json!({ "to_time": "yesterday", "reason": "r" }),
        ),
        (
            "to_time without a zone",
            json!({ "to_time": "2024-05-01 00:00:00", "reason": "r" }),
        ),
        ("to_version 0", json!({ "to_version": 0, "reason": "r" })),
        ("to_version -1", json!({ "to_version": -1, "reason": "r" })),
        ("no reason", with(&rewind_ok, json!({ "reason": null }))),
        ("empty reason", with(&rewind_ok, json!({ "reason": "" }))),
        ("unknown field", with(&rewind_ok, json!({ "force": true }))),
    ];
    let reset_cases = [
        ("no reason", json!({})),
        ("blank reason", json!({ "reason": " " })),
        ("unknown field", json!({ "reason": "r", "force": true })),
    ];
    let put_cases = [
        ("no table", json!({})),
        ("bad table", json!({ "table": "orders" })),
        (
            "source not an object",
            json!({ "table": TABLE, "source": "dms" }),
        ),
        (
            "empty schema hash",
            json!({ "table": TABLE, "expected_schema_hash": "" }),
        ),
        ("unknown field", json!({ "table": TABLE, "phase": "delta" })),
    ];
    let routes = [
        ("open", Method::POST, batches_path(STREAM), &open_cases[..]),
        (
            "heartbeat",
            Method::POST,
            format!("{batch_p}/heartbeat"),
            &heartbeat_cases[..],
        ),
        (
            "commit",
            Method::POST,
            format!("{batch_p}/commit"),
            &commit_cases[..],
        ),
        (
            "fail",
            Method::POST,
            format!("{batch_p}/fail"),
            &fail_cases[..],
        ),
        ("rewind", Method::POST, rewind_path, &rewind_cases[..]),
        ("reset", Method::POST, reset_path, &reset_cases[..]),
        ("put", Method::PUT, stream_path(STREAM), &put_cases[..]),
    ];
    for (action, method, path, cases) in &routes {
        for (what, body) in *cases {
            let answer = send(c, method.clone(), path, Some(body.clone())).await;
            assert_error(
                &format!("{action}: {what}"),
                &answer,
                422,
                "invalid_request",
            );
        }
    }
    assert_unchanged("the invalid bodies", &before, &state_of(c, STREAM).await);

    // Not JSON at all.
    for (action, method, path, _) in &routes {
        for text in [r#"{"token":"#, "", "token=1", r#"{"reason":"r"} x"#] {
            let answer = raw(&s, method.clone(), path, None, text).await;
            let what = format!("{action} `{text}`");
            assert_error(&what, &answer, 400, "malformed_json");
        }
    }
    assert_unchanged("the malformed bodies", &before, &state_of(c, STREAM).await);

    // Queries out of range.
    let history = format!("{}/bookmark/history", stream_path(STREAM));
    for (query, status, kind) in [
        (format!("{history}?limit=0"), 422, "invalid_request"),
        (format!("{history}?limit=1001"), 422, "invalid_request"),
        (
            format!("{history}?after_version=-1"),
            422,
            "invalid_request",
        ),
        (format!("{history}?limit=ten"), 400, "invalid_query"),
        ("/v1/streams?limit=0".to_owned(), 422, "invalid_request"),
        ("/v1/streams?limit=many".to_owned(), 400, "invalid_query"),
    ] {
        let answer = send(c, Method::GET, &query, None).await;
        assert_error(&query, &answer, status, kind);
    }

    // The batch survived all of it and still commits.
    let done = commit(c, STREAM, &batch, &commit_ok).await;
    assert_eq!(done["bookmark"]["version"], 3);
}

// ---------------------------------------------------------------------
// 5. Retries
// ---------------------------------------------------------------------

async fn retried_opens_commits_and_fails_answer_what_the_first_one_did(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;

    // The same run opening again (its answer was lost) gets its batch back;
    // another run is refused.
    let batch = open(c, STREAM, "glue-1").await;
    let again = c.open_batch(STREAM, "glue-1", TTL).await.unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        (
            batch_id(&again.body),
            token(&again.body),
            &again.body["state"]
        ),
        (batch_id(&batch), token(&batch), &json!("open"))
    );
    assert_eq!(again.body["bookmark"], batch["bookmark"]);
    let other = c.open_batch(STREAM, "glue-2", TTL).await.unwrap();
    assert_error("another run", &other, 409, "batch_open");

    // A repeated commit answers the first commit's result, and makes no
    // second version.
    let body = load_commit(token(&batch), &[load_file(1)]);
    let first = commit(c, STREAM, &batch, &body).await;
    let repeated = commit(c, STREAM, &batch, &body).await;
    assert_eq!(first["batch"]["committed_version"], 2);
    assert_eq!(
        repeated["batch"]["committed_version"],
        first["batch"]["committed_version"]
    );
    assert_eq!(repeated["bookmark"], first["bookmark"]);
    assert_eq!(bookmark(c, STREAM).await["version"], 2);
    assert_eq!(c.history(STREAM).await.unwrap().len(), 2);
    let fail_committed = c
        .batch_action(
            STREAM,
            &batch_id(&batch),
            "fail",
            &json!({ "token": token(&batch) }),
        )
        .await
        .unwrap();
    assert_error(
        "failing a committed batch",
        &fail_committed,
        409,
        "batch_finished",
    );

    // Once the batch is committed, the same run opens a new one.
    let next = c.open_batch(STREAM, "glue-1", TTL).await.unwrap();
    assert_eq!(next.status, 201, "{next:?}");
    let next = next.body;
    assert_ne!(batch_id(&next), batch_id(&batch));
    assert!(token(&next) > token(&batch));
    assert_eq!(next["bookmark"]["version"], 2);

    // Failing twice is fine; the first reason stays.
    let fail = json!({ "token": token(&next), "reason": "out of memory" });
    let failed = c
        .batch_action(STREAM, &batch_id(&next), "fail", &fail)
        .await
        .unwrap();
    assert_eq!(failed.status, 200, "{failed:?}");
    let retried = c
        .batch_action(
            STREAM,
            &batch_id(&next),
            "fail",
            &json!({ "token": token(&next), "reason": "retried" }),
        )
        .await
        .unwrap();
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(
        (&retried.body["state"], &retried.body["end_reason"]),
        (&json!("failed"), &json!("out of memory"))
    );
    assert_eq!(retried.body["ended_at"], failed.body["ended_at"]);
    assert_eq!(
        bookmark(c, STREAM).await["version"],
        2,
        "a failure moves nothing"
    );
    assert_eq!(c.history(STREAM).await.unwrap().len(), 2);
    assert_eq!(get_stream(c, STREAM).await["open_batch"], Value::Null);
}

async fn a_heartbeat_keeps_a_batch_alive_past_its_ttl(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let opened = c.open_batch(STREAM, "glue-1", 3).await.unwrap();
    assert_eq!(opened.status, 201, "{opened:?}");
    let batch = opened.body;
    let id = batch_id(&batch);

    let beat = c
        .batch_action(
            STREAM,
            &id,
            "heartbeat",
            &json!({ "token": token(&batch), "ttl_seconds": TTL }),
        )
        .await
        .unwrap();
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(beat.body["ttl_seconds"], TTL);
    assert_eq!(beat.body["state"], "open");
    // RFC 3339 instants in UTC with milliseconds sort as text.
    let expires = |b: &Value| b["expires_at"].as_str().unwrap().to_owned();
    assert!(expires(&beat.body) > expires(&batch), "{beat:?}");
    let again = c
        .batch_action(STREAM, &id, "heartbeat", &json!({ "token": token(&batch) }))
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["ttl_seconds"], TTL, "the new TTL sticks");

    // Past the 3 s it was opened with (with slack for a slow machine).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let other = c.open_batch(STREAM, "glue-2", TTL).await.unwrap();
    assert_error("another run", &other, 409, "batch_open");
    let done = commit(
        c,
        STREAM,
        &batch,
        &load_commit(token(&batch), &[load_file(1)]),
    )
    .await;
    assert_eq!(done["bookmark"]["version"], 2);
}

async fn a_full_load_of_20000_files_fits_in_one_bookmark(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let files: Vec<String> = (1..=20_000).map(load_file).collect();
    let batch = open(c, STREAM, "glue-1").await;
    let before = state_of(c, STREAM).await;
    let too_many: Vec<String> = (1..=20_001).map(load_file).collect();
    let refused = c
        .commit_batch(
            STREAM,
            &batch_id(&batch),
            &load_commit(token(&batch), &too_many),
        )
        .await
        .unwrap();
    assert_error("20,001 files", &refused, 422, "invalid_request");
    assert_unchanged("the refused commit", &before, &state_of(c, STREAM).await);

    let done = commit(c, STREAM, &batch, &load_commit(token(&batch), &files)).await;
    assert_eq!(done["bookmark"]["version"], 2);
    let next = open(c, STREAM, "glue-2").await;
    assert_eq!(strings(&next["bookmark"]["load"]["files_done"]), files);
    let mut body = load_commit(token(&next), &files);
    body["load_complete"] = json!(true);
    let done = commit(c, STREAM, &next, &body).await;
    assert_eq!(done["bookmark"]["phase"], "delta");
}

async fn a_history_page_of_large_loads_counts_their_files_and_stays_small(s: Server) {
    // Arrange: twelve versions that each hold a 20,000-file load (each of
    // them was a page entry of ~400 KB, and a page of 1000 of them 400 MB).
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let files: Vec<String> = (1..=20_000).map(load_file).collect();
    for run in 0..12 {
        let batch = open(c, STREAM, &format!("glue-{run}")).await;
        commit(c, STREAM, &batch, &load_commit(token(&batch), &files)).await;
    }

    // Act
    let path = format!("{}/bookmark/history?limit=1000", stream_path(STREAM));
    let response = reqwest::get(format!("{}{path}", s.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let page: Value = serde_json::from_slice(&bytes).unwrap();
    let whole = send(
        c,
        Method::GET,
        &format!("{}/bookmark/history/13", stream_path(STREAM)),
        None,
    )
    .await;

    // Assert: the page counts, the version lists.
    assert!(
        bytes.len() < 64 * 1024,
        "a page of 13 versions took {} bytes",
        bytes.len()
    );
    let versions = page["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 13);
    assert_eq!(versions[12]["load"]["files_done_count"], 20_000);
    assert!(
        versions[12]["load"].get("files_done").is_none(),
        "{}",
        versions[12]
    );
    assert_eq!(page["next_after_version"], Value::Null);
    assert_eq!(whole.status, 200, "{whole:?}");
    assert_eq!(strings(&whole.body["load"]["files_done"]), files);
    assert_eq!(whole.body["cause"], "batch");
    let missing = send(
        c,
        Method::GET,
        &format!("{}/bookmark/history/14", stream_path(STREAM)),
        None,
    )
    .await;
    assert_error(
        "a version not yet written",
        &missing,
        404,
        "version_not_found",
    );

    // Stored, the list is not copied into every version either: the twelve
    // hold it about once (one list is ~360 KB), not twelve times.
    let one_list = serde_json::to_string(&files).unwrap().len() as i64;
    let stored = match s.database_url() {
        Some(url) if url.starts_with("dynamodb://") => {
            crate::dynamodb::stored_version_bytes(url).await
        }
        _ => {
            s.sql_i64("SELECT CAST(SUM(LENGTH(load)) AS BIGINT) FROM bookmark_versions")
                .await
        }
    };
    assert!(
        stored < 2 * one_list,
        "versions store {stored} bytes of loads; one list is {one_list}"
    );
}

// ---------------------------------------------------------------------
// 6. Listing and scopes
// ---------------------------------------------------------------------

/// Every stream `c` may see, following `next_after` pages of `limit`.
async fn all_streams(c: &Client, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut after = String::new();
    loop {
        let page = send(
            c,
            Method::GET,
            &format!("/v1/streams?limit={limit}&after={after}"),
            None,
        )
        .await;
        assert_eq!(page.status, 200, "{page:?}");
        let streams = page.body["streams"].as_array().unwrap();
        assert!(streams.len() <= limit, "{page:?}");
        names.extend(
            streams
                .iter()
                .map(|s| s["stream"].as_str().unwrap().to_owned()),
        );
        match page.body["next_after"].as_str() {
            Some(next) => {
                assert!(next > after.as_str(), "pages move forward: {page:?}");
                after = next.to_owned();
            }
            None => return names,
        }
    }
}

async fn streams_are_listed_a_page_at_a_time_and_a_scoped_token_sees_only_its_own(s: Server) {
    let admin = s.client_with(&s.create_token("root", "admin", &[], &[]));
    let registered = [
        ("hr.payroll_cdc", "hr.payroll"),
        ("hr.people_cdc", "hr.people"),
        ("sales.orders_cdc", "sales.orders"),
        ("sales.refunds_cdc", "sales.refunds"),
        ("salesforce.leads_cdc", "salesforce.leads"),
    ];
    for (stream, table) in registered {
        register(&admin, stream, table, json!({})).await;
    }
    let all: Vec<String> = registered.iter().map(|(s, _)| s.to_string()).collect();
    for limit in [1, 2, 5, 100] {
        assert_eq!(all_streams(&admin, limit).await, all, "limit {limit}");
    }

    let sales = s.client_with(&s.create_token("sales-job", "job", &["sales."], &[]));
    for limit in [1, 2, 100] {
        assert_eq!(
            all_streams(&sales, limit).await,
            ["sales.orders_cdc", "sales.refunds_cdc"],
            "limit {limit}"
        );
    }
    assert_eq!(
        get_stream(&sales, "sales.orders_cdc").await["table"],
        "sales.orders"
    );
    open(&sales, "sales.orders_cdc", "sales-run").await;
    for other in ["hr.people_cdc", "salesforce.leads_cdc"] {
        // Every route a job may use, on a stream outside its scope.
        let routes = stream_routes(other, UNKNOWN_BATCH, 1)
            .into_iter()
            .filter(|(m, p, _)| {
                *m != Method::PUT && !p.ends_with("/rewind") && !p.ends_with("/reset")
            });
        for (method, path, body) in routes {
            let answer = send(&sales, method.clone(), &path, body).await;
            assert_error(&format!("{method} {path}"), &answer, 403, "out_of_scope");
        }
        assert_eq!(
            get_stream(&admin, other).await["open_batch"],
            Value::Null,
            "nothing opened on {other}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_needs_both_the_stream_and_its_table_in_scope() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = s.client_with(&s.create_token("root", "admin", &[], &[]));
    register(&admin, "hr.people_cdc", "hr.people", json!({})).await;
    register(&admin, "sales.orders_cdc", "sales.orders", json!({})).await;
    let sales = s.client_with(&s.create_token("sales-ops", "operator", &["sales."], &[]));

    let by_table = send(&sales, Method::GET, "/v1/events?table=hr.people", None).await;
    let by_stream = send(&sales, Method::GET, "/v1/events?stream=hr.people_cdc", None).await;
    assert_error("events of another table", &by_table, 403, "out_of_scope");
    assert_error("events of another stream", &by_stream, 403, "out_of_scope");

    // A stream named in scope, feeding a table out of scope, opens no door
    // to that table: not its batches, its bookmark, its events or itself.
    register(&admin, "sales.hrfeed", "hr.payroll", json!({})).await;
    let job = s.client_with(&s.create_token("sales-job", "job", &["sales."], &[]));
    let opened = job.open_batch("sales.hrfeed", "glue-1", TTL).await.unwrap();
    assert_error("opening a batch", &opened, 403, "out_of_scope");
    let message = opened.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("hr.payroll"), "names the table: {message}");
    let batch = open(&admin, "sales.hrfeed", "glue-admin").await;
    let commit = job
        .commit_batch(
            "sales.hrfeed",
            &batch_id(&batch),
            &load_commit(token(&batch), &[load_file(1)]),
        )
        .await
        .unwrap();
    assert_error("committing its batch", &commit, 403, "out_of_scope");
    let fail = job
        .batch_action(
            "sales.hrfeed",
            &batch_id(&batch),
            "fail",
            &json!({ "token": token(&batch) }),
        )
        .await
        .unwrap();
    assert_error("failing its batch", &fail, 403, "out_of_scope");
    let reset = sales
        .bookmark_action("sales.hrfeed", "reset", &json!({ "reason": "mine now" }))
        .await
        .unwrap();
    assert_error("resetting its bookmark", &reset, 403, "out_of_scope");
    for path in [
        "/v1/streams/sales.hrfeed",
        "/v1/streams/sales.hrfeed/bookmark",
        "/v1/streams/sales.hrfeed/bookmark/history",
        "/v1/events?stream=sales.hrfeed",
    ] {
        let answer = send(&sales, Method::GET, path, None).await;
        assert_error(path, &answer, 403, "out_of_scope");
    }
    assert_eq!(
        get_stream(&admin, "sales.hrfeed").await["open_batch"]["batch_id"],
        json!(batch_id(&batch)),
        "the batch is still open, untouched"
    );

    // Lists: only what is in scope on both counts.
    let events = send(&sales, Method::GET, "/v1/events", None).await;
    assert_eq!(events.status, 200, "{events:?}");
    let seen: HashSet<(&str, &str)> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["table"].as_str().unwrap(),
                e["stream"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert!(
        seen.iter().all(|(table, _)| table.starts_with("sales.")),
        "no event of another table: {seen:?}"
    );
    assert!(
        seen.contains(&("sales.orders", "sales.orders_cdc")),
        "{seen:?}"
    );
    let listed = send(&sales, Method::GET, "/v1/streams", None).await;
    let names: Vec<&str> = listed.body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales.orders_cdc"], "{listed:?}");
}

// ---------------------------------------------------------------------
// 7. Crash durability
// ---------------------------------------------------------------------

async fn kill_9_keeps_the_bookmark_its_history_and_the_open_batch(mut s: Server) {
    // Arrange
    let c = s.client.clone();
    register(&c, STREAM, TABLE, json!({})).await;
    for n in 1..=3 {
        commit_next_load_file(&c, STREAM, &format!("glue-{n}")).await;
    }
    let batch = open(&c, STREAM, "glue-4").await;
    let before = state_of(&c, STREAM).await;

    // Act
    s.kill9();
    s.restart().await;

    // Assert
    let after = state_of(&c, STREAM).await;
    assert_unchanged("kill -9", &before, &after);
    assert_eq!(after["bookmark"]["version"], 4);
    assert_eq!(
        after["bookmark"]["load"]["files_done"],
        json!([load_file(1), load_file(2), load_file(3)])
    );
    assert_eq!(batch_id(&after["open_batch"]), batch_id(&batch));
    assert_eq!(token(&after["open_batch"]), token(&batch));
    assert_one_file_per_version(after["history"].as_array().unwrap());

    // The run that held the batch carries on with it; nobody else gets in.
    let other = c.open_batch(STREAM, "glue-5", TTL).await.unwrap();
    assert_error("another run after the restart", &other, 409, "batch_open");
    let again = c.open_batch(STREAM, "glue-4", TTL).await.unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        (batch_id(&again.body), token(&again.body)),
        (batch_id(&batch), token(&batch))
    );
    let files: Vec<String> = (1..=4).map(load_file).collect();
    let done = commit(&c, STREAM, &batch, &load_commit(token(&batch), &files)).await;
    assert_eq!(done["bookmark"]["version"], 5);
    let next = open(&c, STREAM, "glue-5").await;
    assert!(
        token(&next) > token(&batch),
        "tokens keep growing across the restart"
    );
    assert_one_file_per_version(&c.history(STREAM).await.unwrap());
}

async fn a_second_commit_with_a_different_body_is_refused_and_changes_nothing(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let batch = open(c, STREAM, "glue-1").await;
    let first = load_commit(token(&batch), &[load_file(1)]);
    commit(c, STREAM, &batch, &first).await;
    let before = state_of(c, STREAM).await;

    // More files and a completed load, under the committed batch's token:
    // answering 200 would drop LOAD2 and the completion silently.
    let mut different = load_commit(token(&batch), &[load_file(1), load_file(2)]);
    different["load_complete"] = json!(true);
    let refused = c
        .commit_batch(STREAM, &batch_id(&batch), &different)
        .await
        .unwrap();
    assert_error("a different commit", &refused, 409, "batch_committed");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("version 2"),
        "names the version: {message}"
    );
    let other_counts = with(&first, json!({ "counts": { "inserted": 99 } }));
    let refused = c
        .commit_batch(STREAM, &batch_id(&batch), &other_counts)
        .await
        .unwrap();
    assert_error("other counts", &refused, 409, "batch_committed");
    assert_unchanged("a different commit", &before, &state_of(c, STREAM).await);

    // The same commit again is a retry: answered as the first one was.
    let again = commit(c, STREAM, &batch, &first).await;
    assert_eq!(again["bookmark"]["version"], 2);
    assert_unchanged("an identical retry", &before, &state_of(c, STREAM).await);
}

async fn absent_counts_are_zero_and_a_rewind_into_the_future_is_refused(s: Server) {
    let c = &s.client;
    register(c, STREAM, TABLE, json!({})).await;
    let batch = open(c, STREAM, "glue-1").await;
    let partial = json!({
        "token": token(&batch),
        "bookmark": { "load": { "files_done": [load_file(1)] } },
        "counts": { "inserted": 10 },
    });
    let done = commit(c, STREAM, &batch, &partial).await;
    assert_eq!(
        done["batch"]["counts"],
        json!({ "inserted": 10, "updated": 0, "deleted": 0 })
    );

    let before = state_of(c, STREAM).await;
    let future = c
        .bookmark_action(
            STREAM,
            "rewind",
            &json!({ "to_time": "2099-01-01T00:00:00Z", "reason": "typo" }),
        )
        .await
        .unwrap();
    assert_error("a rewind into the future", &future, 422, "invalid_request");
    assert_unchanged(
        "a rewind into the future",
        &before,
        &state_of(c, STREAM).await,
    );
}

async fn a_stream_needs_its_table_registered(s: Server) {
    let c = &s.client;
    let answer = c
        .put_stream(STREAM, &json!({ "table": "sales.unregistered" }))
        .await
        .unwrap();
    assert_error("an unregistered table", &answer, 404, "table_not_found");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sales.unregistered"),
        "names it: {message}"
    );
    let missing = c
        .send(Method::GET, &stream_path(STREAM), None)
        .await
        .unwrap();
    assert_error("the stream", &missing, 404, "stream_not_found");
}
