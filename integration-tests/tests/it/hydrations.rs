//! Hydrations on real Iceberg metadata: a table in moto's Glue catalog and
//! S3, appended to and expired by pyiceberg while a hydration reports
//! progress; sluice's lag is checked against pyiceberg's own view of the
//! table at each step.

use crate::harness::{Backend, Server};
use crate::snapshots::{glue_catalog, lake_table, py, refresh, TABLE};
use reqwest::Method;
use serde_json::{json, Value};

/// What pyiceberg says the lag of `applied` is: snapshots in the current
/// snapshot's ancestry after it, and the commit time (ms) of the oldest;
/// compactions (`replace`: the same rows in other files) left out.
pub(crate) fn expected_lag(pyiceberg: &Value, applied: &str) -> (u64, Option<i64>) {
    let snapshots = pyiceberg["snapshots"].as_array().unwrap();
    let by_id = |id: &Value| snapshots.iter().find(|s| &s["snapshot_id"] == id);
    let mut at = by_id(&pyiceberg["current_snapshot_id"]);
    let (mut behind, mut oldest) = (0, None);
    while let Some(s) = at {
        if s["snapshot_id"].as_i64().map(|n| n.to_string()).as_deref() == Some(applied) {
            break;
        }
        if s["operation"] != "replace" {
            behind += 1;
            oldest = s["timestamp_ms"].as_i64();
        }
        at = by_id(&s["parent_id"]);
    }
    (behind, oldest)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn send(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> crate::raw::Answer {
    server
        .client
        .send(method, path, body.as_ref())
        .await
        .unwrap()
}

async fn hydration(server: &Server, id: &str) -> Value {
    let answer = send(server, Method::GET, &format!("/v1/hydrations/{id}"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn report(server: &Server, id: &str, body: Value) -> crate::raw::Answer {
    send(
        server,
        Method::POST,
        &format!("/v1/hydrations/{id}/progress"),
        Some(body),
    )
    .await
}

/// The lag sluice reports is pyiceberg's, seconds within the time the
/// calls took.
async fn assert_lag(server: &Server, catalog: &Value, id: &str, applied: &str) -> Value {
    let theirs: Value = serde_json::from_str(&py(catalog, &["snapshots", TABLE]).await).unwrap();
    let (behind, oldest) = expected_lag(&theirs, applied);
    let before = now_ms();
    let h = hydration(server, id).await;
    let after = now_ms();
    assert_eq!(h["lag"]["snapshots"], behind, "{h}\npyiceberg {theirs}");
    let seconds = h["lag"]["seconds"].as_i64().unwrap();
    match oldest {
        None => assert_eq!(seconds, 0, "{h}"),
        Some(t) => assert!(
            (before - t) / 1000 - 1 <= seconds && seconds <= (after - t) / 1000 + 1,
            "{seconds} s behind, oldest unapplied committed at {t}: {h}"
        ),
    }
    h
}

async fn progress_lag_and_staleness_follow_the_table(backend: Backend) {
    let (server, lake, _dir) = lake_table(backend, "3600").await;
    let catalog = glue_catalog(&lake);
    let c = &server.client;
    let put = c
        .send(
            Method::PUT,
            "/v1/containers/analytics",
            Some(&json!({ "kind": "postgres", "url": "env:ANALYTICS_URL" })),
        )
        .await
        .unwrap();
    assert_eq!(put.status, 201, "{}", put.body);
    let s1 = py(&catalog, &["append", TABLE, "3"]).await;
    let s2 = py(&catalog, &["append", TABLE, "2"]).await;

    // Created: its read lease granted and pinned at the current snapshot
    // (read from the catalog on the way: the log was never refreshed).
    let created = send(
        &server,
        Method::POST,
        "/v1/hydrations",
        Some(json!({
            "table": TABLE, "container": "analytics", "target": "public.orders_v1",
            "views": ["orders"], "lease_ttl_seconds": 120, "holder": "glue-run-1",
            "run_id": "glue-run-1",
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let h = created.body;
    let id = h["id"].as_str().unwrap().to_owned();
    assert_eq!(h["state"], "pending");
    assert_eq!(h["lease_id"], h["id"]);
    assert_eq!(h["lease"]["state"], "granted");
    assert_eq!(h["lease"]["mode"], "read");
    assert_eq!(h["lease"]["pin_snapshot_id"].to_string(), s2);
    assert_eq!(h["session"]["run_id"], "glue-run-1", "{h}");
    let token = h["session"]["token"].as_i64().unwrap();
    assert_eq!(h["lag"]["snapshots"], 2, "{h}");
    let _ = s1;
    // A pin the table does not have is refused, as progress refuses it.
    let unpinnable = send(
        &server,
        Method::POST,
        "/v1/hydrations",
        Some(
            json!({ "table": TABLE, "container": "analytics", "target": "public.orders_x",
                     "pin_snapshot_id": 999 }),
        ),
    )
    .await;
    assert_eq!(
        (unpinnable.status, unpinnable.error_type()),
        (422, Some("snapshot_not_found")),
        "{}",
        unpinnable.body
    );

    // The snapshot phase copied s2.
    let copied = report(
        &server,
        &id,
        json!({ "token": token, "phase": "snapshot", "snapshot_id": s2.parse::<i64>().unwrap(),
                "rows_copied": 5, "rows_total": 5 }),
    )
    .await;
    assert_eq!(copied.status, 200, "{}", copied.body);
    assert_eq!(copied.body["state"], "snapshot");
    assert_eq!(copied.body["progress"]["percent"], 100.0);
    assert_lag(&server, &catalog, &id, &s2).await;

    // Two appends while it runs: two behind, counted from the first.
    let s3 = py(&catalog, &["append", TABLE, "1"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let s4 = py(&catalog, &["append", TABLE, "4"]).await;
    refresh(&server).await;
    let behind = assert_lag(&server, &catalog, &id, &s2).await;
    assert_eq!(behind["lag"]["snapshots"], 2);
    assert!(behind["lag"]["seconds"].as_i64().unwrap() >= 1, "{behind}");
    // The lag says how old the log it was computed from is, and why.
    let log = &behind["lag"]["log"];
    assert_eq!(log["checked_by"], "on_demand", "{behind}");
    assert!(log["age_seconds"].as_i64().unwrap() <= 10, "{behind}");

    // Catching up one snapshot at a time.
    let one = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": s3.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["state"], "catching_up");
    assert_eq!(one.body["lease"]["pin_snapshot_id"].to_string(), s3);
    let lease = send(&server, Method::GET, &format!("/v1/leases/{id}"), None).await;
    assert_eq!(
        lease.body["pin_snapshot_id"].to_string(),
        s3,
        "{}",
        lease.body
    );
    assert_lag(&server, &catalog, &id, &s3).await;

    // Compaction is not lag: a `replace` snapshot committed now leaves the
    // lag as it was (s4 still to apply, from the same time), and applying
    // it needs no copy, so a follower may report it as applied.
    let compacted = py(&catalog, &["compact", TABLE]).await;
    refresh(&server).await;
    let after = assert_lag(&server, &catalog, &id, &s3).await;
    assert_eq!(after["lag"]["snapshots"], 1, "{after}");
    assert_eq!(after["lag"]["current_snapshot_id"].to_string(), compacted);
    let stepped = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": compacted.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(stepped.status, 200, "{}", stepped.body);
    assert_lag(&server, &catalog, &id, &compacted).await;

    // A snapshot sluice has not seen yet: it reads the catalog itself.
    let s5 = py(&catalog, &["append", TABLE, "2"]).await;
    let caught_up = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": s5.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(
        caught_up.status,
        200,
        "{}\n{}",
        caught_up.body,
        server.log_text()
    );
    assert_eq!(caught_up.body["state"], "live", "{}", caught_up.body);
    // Live: sluice gave the read lease up in the same transaction, and the
    // copy keeps a pin of its own at what it applied.
    assert_eq!(
        caught_up.body["lease"]["state"], "released",
        "{}",
        caught_up.body
    );
    assert_eq!(caught_up.body["pin_snapshot_id"].to_string(), s5);
    assert_lag(&server, &catalog, &id, &s5).await;
    let _ = s4;

    // Refusals: a token no attached session has, a phase going back, a
    // snapshot the table never had, an older snapshot.
    let stale = report(
        &server,
        &id,
        json!({ "token": token + 1, "phase": "catching_up", "snapshot_id": s5.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(
        (stale.status, stale.error_type()),
        (409, Some("session_stale")),
        "{}",
        stale.body
    );
    let back = report(
        &server,
        &id,
        json!({ "token": token, "phase": "snapshot", "snapshot_id": s5.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(back.status, 422, "{}", back.body);
    let unknown = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": 12345 }),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.error_type()),
        (422, Some("snapshot_not_found")),
        "{}",
        unknown.body
    );
    let older = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": s3.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(older.status, 422, "{}", older.body);
    assert_eq!(hydration(&server, &id).await["state"], "live");

    // The snapshot it applied is expired from the table: stale, and it
    // says so; progress is refused from then on.
    let s6 = py(&catalog, &["append", TABLE, "1"]).await;
    py(&catalog, &["expire", TABLE, &s5]).await;
    refresh(&server).await;
    let gone = hydration(&server, &id).await;
    assert_eq!(gone["state"], "stale", "{gone}");
    assert!(gone["reason"].as_str().unwrap().contains(&s5), "{gone}");
    assert!(gone["ended_at"].is_string());
    let refused = report(
        &server,
        &id,
        json!({ "token": token, "phase": "catching_up", "snapshot_id": s6.parse::<i64>().unwrap() }),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error_type()),
        (409, Some("hydration_stale")),
        "{}",
        refused.body
    );
    // Its read lease ended at its first live, and a stale copy pins
    // nothing: it holds no writer off.
    let lease = send(&server, Method::GET, &format!("/v1/leases/{id}"), None).await;
    assert_eq!(lease.body["state"], "released", "{}", lease.body);
    assert!(gone["pin_snapshot_id"].is_null(), "{gone}");
    let retention = send(
        &server,
        Method::GET,
        &format!("/v1/tables/{TABLE}/retention"),
        None,
    )
    .await;
    assert_eq!(
        (
            &retention.body["readers"],
            &retention.body["oldest_needed_snapshot_id"]
        ),
        (&json!(0), &Value::Null),
        "an expired snapshot is still held: {}",
        retention.body
    );
    let writer = send(
        &server,
        Method::POST,
        &format!("/v1/tables/{TABLE}/leases"),
        Some(json!({ "mode": "write", "holder": "compactor", "ttl_seconds": 30 })),
    )
    .await;
    assert_eq!(writer.body["state"], "granted", "{}", writer.body);

    // Listed with its state and lag; filters by state, table, container.
    let page = send(&server, Method::GET, "/v1/hydrations?state=stale", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["hydrations"][0]["id"], id.as_str());
    for query in ["state=live", "table=sales.other", "container=elsewhere"] {
        let none = send(
            &server,
            Method::GET,
            &format!("/v1/hydrations?{query}"),
            None,
        )
        .await;
        assert_eq!(none.body["hydrations"], json!([]), "{query}: {}", none.body);
    }
    let events = send(
        &server,
        Method::GET,
        "/v1/events?kind=hydration_state_changed",
        None,
    )
    .await;
    let moves: Vec<String> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        moves,
        // Live once it stepped over the compaction (nothing else to
        // apply); lagging when the refresh for s5 found s5 unapplied, live
        // again with its report.
        [
            "snapshot",
            "catching_up",
            "live",
            "lagging",
            "live",
            "stale"
        ],
        "{}",
        events.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lag_and_staleness_follow_the_table_sqlite() {
    progress_lag_and_staleness_follow_the_table(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lag_and_staleness_follow_the_table_postgres() {
    progress_lag_and_staleness_follow_the_table(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lag_and_staleness_follow_the_table_dynamodb() {
    progress_lag_and_staleness_follow_the_table(Backend::Dynamodb).await
}

async fn create(client: &crate::raw::Client, body: Value) -> crate::raw::Answer {
    client
        .send(Method::POST, "/v1/hydrations", Some(&body))
        .await
        .unwrap()
}

/// The lease decides a hydration's life: it waits behind a writer, fails
/// when its lease is revoked, and cancelling ends its lease. Who may do
/// what follows roles and owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_lease_carries_the_hydration() {
    the_read_lease_carries_the_hydration_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_lease_carries_the_hydration_dynamodb() {
    the_read_lease_carries_the_hydration_on(Backend::Dynamodb).await
}

async fn the_read_lease_carries_the_hydration_on(backend: Backend) {
    let server = backend
        .server_with(&["--auth", "on", "--refresh-interval-seconds", "3600"])
        .await;
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    assert_eq!(
        admin.put_table("sales.t", json!({})).await.unwrap().status,
        201
    );
    assert_eq!(
        admin.put_table("hr.t", json!({})).await.unwrap().status,
        201
    );
    let put = admin
        .send(
            Method::PUT,
            "/v1/containers/analytics",
            Some(&json!({ "kind": "glue", "database": "analytics" })),
        )
        .await
        .unwrap();
    assert_eq!(put.status, 201, "{}", put.body);
    let job = server.client_with(&server.create_token("job", "job", &["sales."], &[]));
    let other_job = server.client_with(&server.create_token("job2", "job", &["sales."], &[]));
    let operator = server.client_with(&server.create_token("ops", "operator", &[], &[]));
    let body = |target: &str| json!({ "table": "sales.t", "container": "analytics", "target": target, "views": ["t"] });

    // A writer holds the table: the hydration is created, its lease waits,
    // and it is granted when the writer leaves.
    let writer = job
        .send(
            Method::POST,
            "/v1/tables/sales.t/leases",
            Some(&json!({ "mode": "write", "holder": "compaction", "ttl_seconds": 60 })),
        )
        .await
        .unwrap();
    assert_eq!(writer.status, 201, "{}", writer.body);
    let waiting = create(&job, body("t_v1")).await;
    assert_eq!(waiting.status, 201, "{}", waiting.body);
    assert_eq!(waiting.body["lease"]["state"], "waiting");
    assert_eq!(waiting.body["state"], "pending");
    let id = waiting.body["id"].as_str().unwrap().to_owned();
    let release = job
        .send(
            Method::DELETE,
            &format!(
                "/v1/leases/{}?token={}",
                writer.body["lease_id"].as_str().unwrap(),
                writer.body["token"]
            ),
            None,
        )
        .await
        .unwrap();
    assert!(release.status < 300, "{}", release.body);
    let lease = job
        .send(Method::GET, &format!("/v1/leases/{id}"), None)
        .await
        .unwrap();
    assert_eq!(lease.body["state"], "granted", "{}", lease.body);

    // Revoked by an operator: the hydration failed with it, and says why.
    let revoke = operator
        .send(
            Method::POST,
            &format!("/v1/leases/{id}/revoke"),
            Some(&json!({ "reason": "maintenance" })),
        )
        .await
        .unwrap();
    assert!(revoke.status < 300, "{}", revoke.body);
    let failed = job
        .send(Method::GET, &format!("/v1/hydrations/{id}"), None)
        .await
        .unwrap();
    assert_eq!(failed.body["state"], "failed", "{}", failed.body);
    assert!(failed.body["reason"]
        .as_str()
        .unwrap()
        .contains("maintenance"));

    // Cancel: by its creator, not by another job; an operator cancels any.
    let second = create(&job, body("t_v2")).await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    let by_other = other_job
        .send(
            Method::POST,
            &format!("/v1/hydrations/{second_id}/cancel"),
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(by_other.status, 403, "{}", by_other.body);
    let cancelled = job
        .send(
            Method::POST,
            &format!("/v1/hydrations/{second_id}/cancel"),
            Some(&json!({ "reason": "wrong target" })),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["state"], "cancelled");
    assert_eq!(cancelled.body["lease"]["state"], "revoked");
    let again = job
        .send(
            Method::POST,
            &format!("/v1/hydrations/{second_id}/cancel"),
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.error_type()),
        (409, Some("hydration_ended"))
    );
    let third = create(&job, body("t_v3")).await;
    let third_id = third.body["id"].as_str().unwrap();
    let by_operator = operator
        .send(
            Method::POST,
            &format!("/v1/hydrations/{third_id}/cancel"),
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(
        by_operator.body["state"], "cancelled",
        "{}",
        by_operator.body
    );

    // The same idempotency key answers the same hydration.
    let keyed = json!({ "table": "sales.t", "container": "analytics", "target": "t_v4",
                        "idempotency_key": "run-7" });
    let first = create(&job, keyed.clone()).await;
    let retry = create(&job, keyed).await;
    assert_eq!((first.status, retry.status), (201, 200), "{}", retry.body);
    assert_eq!(first.body["id"], retry.body["id"]);

    // Refusals, each a 4xx with the JSON body.
    let refusals = [
        (
            json!({ "table": "sales.t", "container": "nowhere", "target": "x" }),
            404,
            "container_not_found",
        ),
        (
            json!({ "table": "sales.missing", "container": "analytics", "target": "x" }),
            404,
            "table_not_found",
        ),
        (
            json!({ "table": "sales.t", "container": "analytics", "target": "bad name" }),
            422,
            "invalid_request",
        ),
        (
            json!({ "table": "sales.t", "container": "analytics", "target": "x", "views": ["v", "v"] }),
            422,
            "invalid_request",
        ),
        (
            json!({ "table": "sales.t", "container": "analytics", "target": "x", "lease_ttl_seconds": 0 }),
            422,
            "invalid_request",
        ),
        (
            json!({ "table": "sales.t", "container": "analytics" }),
            422,
            "invalid_request",
        ),
        (
            json!({ "table": "hr.t", "container": "analytics", "target": "x" }),
            403,
            "out_of_scope",
        ),
    ];
    for (body, status, kind) in refusals {
        let answer = create(&job, body.clone()).await;
        assert_eq!(
            (answer.status, answer.error_type()),
            (status, Some(kind)),
            "{body}: {}",
            answer.body
        );
    }
    let unknown = job
        .send(
            Method::GET,
            "/v1/hydrations/0190a0a0-0000-7000-8000-000000000000",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_type()),
        (404, Some("hydration_not_found"))
    );
    let malformed = job
        .send(Method::GET, "/v1/hydrations/nope", None)
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);
    let bad_state = job
        .send(Method::GET, "/v1/hydrations?state=done", None)
        .await
        .unwrap();
    assert_eq!(bad_state.status, 422);
    let scheduler = server.client_with(&server.create_token("sched", "scheduler", &[], &[]));
    let not_allowed = create(&scheduler, body("t_v5")).await;
    assert_eq!(not_allowed.status, 403, "{}", not_allowed.body);
    let listed = scheduler
        .send(Method::GET, "/v1/hydrations?limit=2", None)
        .await
        .unwrap();
    assert_eq!(
        listed.body["hydrations"].as_array().unwrap().len(),
        2,
        "{}",
        listed.body
    );
    assert!(listed.body["next_after"].is_string());
}

/// `call` on `client`, expecting `status`; the body.
async fn expect(
    client: &crate::raw::Client,
    method: Method,
    path: &str,
    body: Value,
    status: u16,
) -> Value {
    let answer = client.send(method, path, Some(&body)).await.unwrap();
    assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
    answer.body
}

/// A refusal: `status`, the JSON error body with `kind`.
async fn refused(client: &crate::raw::Client, path: &str, body: Value, status: u16, kind: &str) {
    let answer = client.send(Method::POST, path, Some(&body)).await.unwrap();
    assert_eq!(
        (answer.status, answer.error_type()),
        (status, Some(kind)),
        "{path} {body}: {}",
        answer.body
    );
}

/// A copy outlives the runs of its job: each run attaches as a session
/// (one at a time, fenced by its token, held by its principal); between
/// runs the copy stays live, falls `lagging` as the table moves on, and
/// holds no lease, so a compaction runs at once and adds no lag; a second
/// copy in its first hydration is the only one a compaction waits for.
async fn a_copy_outlives_its_runs_and_never_blocks_compaction(backend: Backend) {
    let (server, lake, _dir) = crate::snapshots::on_lake(
        backend,
        &["--refresh-interval-seconds", "3600", "--auth", "on"],
    )
    .await;
    let catalog = glue_catalog(&lake);
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    let job = server.client_with(&server.create_token("job", "job", &[], &[]));
    let other = server.client_with(&server.create_token("job2", "job", &[], &[]));
    py(&catalog, &["create", TABLE]).await;
    let registered = admin
        .put_table(TABLE, json!({ "catalog": "lake" }))
        .await
        .unwrap();
    assert_eq!(registered.status, 201, "{}", registered.body);
    let container = json!({ "kind": "glue", "database": "analytics" });
    expect(
        &admin,
        Method::PUT,
        "/v1/containers/analytics",
        container,
        201,
    )
    .await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let refresh = format!("/v1/tables/{TABLE}/refresh");

    // Run 1 creates the copy and is attached in the same call.
    let created = expect(
        &job,
        Method::POST,
        "/v1/hydrations",
        json!({ "table": TABLE, "container": "analytics", "target": "orders_a",
                "run_id": "run-1", "session_ttl_seconds": 60 }),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let at = |what: &str| format!("/v1/hydrations/{id}/{what}");
    assert_eq!(created["session"]["run_id"], "run-1", "{created}");
    assert_eq!(created["lease"]["state"], "granted", "{created}");
    let t1 = created["session"]["token"].as_i64().unwrap();

    // One run at a time: another is refused, naming the one attached; the
    // same run attaching again (a retried call) gets its session back.
    let held = job
        .send(
            Method::POST,
            &at("attach"),
            Some(&json!({ "run_id": "run-2" })),
        )
        .await
        .unwrap();
    assert_eq!(
        (held.status, held.error_type()),
        (409, Some("session_held")),
        "{}",
        held.body
    );
    assert!(
        held.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("run-1"),
        "{}",
        held.body
    );
    let again = expect(
        &job,
        Method::POST,
        &at("attach"),
        json!({ "run_id": "run-1" }),
        200,
    )
    .await;
    assert_eq!(again["session"]["token"], t1, "{again}");

    // Reports are fenced by the session's token and held by its principal;
    // every user error is a 4xx with the JSON body.
    let report = |token: i64, phase: &str, snapshot: i64| json!({ "token": token, "phase": phase, "snapshot_id": snapshot });
    refused(
        &other,
        &at("progress"),
        report(t1, "snapshot", s1),
        403,
        "not_owner",
    )
    .await;
    refused(
        &job,
        &at("progress"),
        report(t1 + 7, "snapshot", s1),
        409,
        "session_stale",
    )
    .await;
    refused(
        &job,
        &at("heartbeat"),
        json!({ "token": t1 + 7 }),
        409,
        "session_stale",
    )
    .await;
    refused(
        &job,
        &at("detach"),
        json!({ "token": t1 + 7 }),
        409,
        "session_stale",
    )
    .await;
    refused(
        &job,
        &at("heartbeat"),
        json!({ "token": 0 }),
        422,
        "invalid_request",
    )
    .await;
    refused(
        &job,
        &at("attach"),
        json!({ "run_id": "" }),
        422,
        "invalid_request",
    )
    .await;
    refused(
        &job,
        &at("attach"),
        json!({ "run_id": "r", "ttl_seconds": 0 }),
        422,
        "invalid_request",
    )
    .await;
    let missing = "/v1/hydrations/0190a0a0-0000-7000-8000-000000000000/attach";
    refused(
        &job,
        missing,
        json!({ "run_id": "r" }),
        404,
        "hydration_not_found",
    )
    .await;
    expect(
        &job,
        Method::POST,
        &at("heartbeat"),
        json!({ "token": t1 }),
        200,
    )
    .await;

    // Run 1 copies s1 and goes live: sluice gives the read lease up in the
    // same transaction, and the copy keeps a pin that retention keeps.
    expect(
        &job,
        Method::POST,
        &at("progress"),
        report(t1, "snapshot", s1),
        200,
    )
    .await;
    let live = expect(
        &job,
        Method::POST,
        &at("progress"),
        report(t1, "catching_up", s1),
        200,
    )
    .await;
    assert_eq!(live["state"], "live", "{live}");
    assert_eq!(live["lease"]["state"], "released", "{live}");
    assert_eq!(live["pin_snapshot_id"], s1, "{live}");
    let retention = expect(
        &admin,
        Method::GET,
        &format!("/v1/tables/{TABLE}/retention"),
        json!(null),
        200,
    )
    .await;
    assert_eq!(retention["pinned"], json!([s1]), "{retention}");

    // Run 1 detaches (twice: a retry answers the same); the copy stays
    // live with no session.
    expect(
        &job,
        Method::POST,
        &at("detach"),
        json!({ "token": t1 }),
        200,
    )
    .await;
    let detached = expect(
        &job,
        Method::POST,
        &at("detach"),
        json!({ "token": t1 }),
        200,
    )
    .await;
    assert!(detached["session"].is_null(), "{detached}");
    assert_eq!(detached["state"], "live", "{detached}");

    // Between runs the table moves on: the copy falls behind, and says so.
    py(&catalog, &["append", TABLE, "2"]).await;
    py(&catalog, &["append", TABLE, "1"]).await;
    expect(&admin, Method::POST, &refresh, json!(null), 200).await;
    let behind = expect(
        &admin,
        Method::GET,
        &format!("/v1/hydrations/{id}"),
        json!(null),
        200,
    )
    .await;
    assert_eq!(
        (&behind["state"], &behind["lag"]["snapshots"]),
        (&json!("lagging"), &json!(2)),
        "{behind}"
    );

    // A compaction now runs at once (no run attached, no read lease), and
    // its `replace` snapshot adds no lag.
    let lease = |holder: &str| json!({ "mode": "write", "holder": holder, "ttl_seconds": 60 });
    let leases = format!("/v1/tables/{TABLE}/leases");
    let compaction = expect(&admin, Method::POST, &leases, lease("compaction-1"), 201).await;
    assert_eq!(compaction["state"], "granted", "{compaction}");
    let compacted: i64 = py(&catalog, &["compact", TABLE]).await.parse().unwrap();
    expect(&admin, Method::POST, &refresh, json!(null), 200).await;
    assert_eq!(
        expect(
            &admin,
            Method::GET,
            &format!("/v1/hydrations/{id}"),
            json!(null),
            200
        )
        .await["lag"]["snapshots"],
        2
    );
    let done = format!(
        "/v1/leases/{}?token={}",
        compaction["lease_id"].as_str().unwrap(),
        compaction["token"]
    );
    let released = admin.send(Method::DELETE, &done, None).await.unwrap();
    assert!(released.status < 300, "{}", released.body);

    // A second copy in its first hydration: a compaction waits for it, and
    // only for it, and runs as soon as it is live.
    let second = expect(
        &job,
        Method::POST,
        "/v1/hydrations",
        json!({ "table": TABLE, "container": "analytics", "target": "orders_b", "run_id": "run-b" }),
        201,
    )
    .await;
    let second_id = second["id"].as_str().unwrap();
    let tb = second["session"]["token"].as_i64().unwrap();
    let waiting = expect(&admin, Method::POST, &leases, lease("compaction-2"), 202).await;
    assert_eq!(waiting["state"], "waiting", "{waiting}");
    let progress_b = format!("/v1/hydrations/{second_id}/progress");
    expect(
        &job,
        Method::POST,
        &progress_b,
        report(tb, "snapshot", compacted),
        200,
    )
    .await;
    let waited = format!("/v1/leases/{}", waiting["lease_id"].as_str().unwrap());
    let still = admin.send(Method::GET, &waited, None).await.unwrap();
    assert_eq!(still.body["state"], "waiting", "{}", still.body);
    let b_live = expect(
        &job,
        Method::POST,
        &progress_b,
        report(tb, "catching_up", compacted),
        200,
    )
    .await;
    assert_eq!(b_live["state"], "live", "{b_live}");
    let granted = admin.send(Method::GET, &waited, None).await.unwrap();
    assert_eq!(granted.body["state"], "granted", "{}", granted.body);

    // Run 2 attaches at once (run 1 detached), steps over the compaction,
    // and the copy is live again; its session runs out if it stops, and
    // the next run is let in with a higher token.
    let run2 = expect(
        &job,
        Method::POST,
        &at("attach"),
        json!({ "run_id": "run-2", "ttl_seconds": 3 }),
        200,
    )
    .await;
    let t2 = run2["session"]["token"].as_i64().unwrap();
    assert!(t2 > t1, "{run2}");
    let caught_up = expect(
        &job,
        Method::POST,
        &at("progress"),
        report(t2, "catching_up", compacted),
        200,
    )
    .await;
    assert_eq!(
        (&caught_up["state"], &caught_up["lag"]["snapshots"]),
        (&json!("live"), &json!(0)),
        "{caught_up}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(4_000)).await;
    refused(
        &job,
        &at("progress"),
        report(t2, "catching_up", compacted),
        409,
        "session_stale",
    )
    .await;
    let run3 = expect(
        &job,
        Method::POST,
        &at("attach"),
        json!({ "run_id": "run-3" }),
        200,
    )
    .await;
    assert_eq!(
        (run3["sessions"].as_i64(), run3["session"]["token"].as_i64()),
        (Some(3), Some(t2 + 1)),
        "{run3}"
    );

    // Cancelled, the copy keeps nothing.
    let cancelled = expect(&job, Method::POST, &at("cancel"), json!({}), 200).await;
    assert!(cancelled["pin_snapshot_id"].is_null(), "{cancelled}");
    let retention = expect(
        &admin,
        Method::GET,
        &format!("/v1/tables/{TABLE}/retention"),
        json!(null),
        200,
    )
    .await;
    assert_eq!(
        retention["pinned"],
        json!([compacted]),
        "only the second copy's pin: {retention}"
    );
    let events = admin
        .send(Method::GET, "/v1/events?kind=hydration_attached", None)
        .await
        .unwrap();
    assert_eq!(
        events.body["events"].as_array().unwrap().len(),
        4,
        "{}",
        events.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_outlives_its_runs_and_never_blocks_compaction_sqlite() {
    a_copy_outlives_its_runs_and_never_blocks_compaction(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_outlives_its_runs_and_never_blocks_compaction_postgres() {
    a_copy_outlives_its_runs_and_never_blocks_compaction(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_outlives_its_runs_and_never_blocks_compaction_dynamodb() {
    a_copy_outlives_its_runs_and_never_blocks_compaction(Backend::Dynamodb).await
}
