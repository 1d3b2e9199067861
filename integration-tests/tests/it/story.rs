//! The platform's story end to end, as a platform engineer runs it: sluice
//! on PostgreSQL, moto's Glue catalog, Glue jobs and S3 (the Glue double in
//! front), real Iceberg tables, and every job script speaking to sluice
//! only through the Python client.
//!
//! 1. DMS-shaped LOAD then CDC files land in an S3 bucket;
//! 2. the ingestion job merges them into the Iceberg table batch by batch,
//!    resuming from the bookmark (killed once mid-batch);
//! 3. a hydration job copies the table into a PostgreSQL container under a
//!    read lease, goes live (sluice gives the lease up then) and applies the
//!    later snapshots; its run ends, and the copy outlives it;
//! 4. new snapshots arrive between runs: the copy shows `lagging`, by the
//!    right lag; compaction, asked for meanwhile, runs at once (no run is
//!    attached, no read lease held; sluice is killed -9 and restarted while
//!    it runs, and the Glue run is adopted, not started twice), rewrites the
//!    table under the write lease with the token in the snapshot summary,
//!    and adds no lag;
//! 5. the job's second and third runs resume the same copy: they step over
//!    the compaction, apply the appends, and the view is exact each time;
//! 6. a schema change: a second hydration fills table v2 and the consumer
//!    view is remapped to it when it is live;
//! 7. the view holds exactly the source's rows, the fences held, and the
//!    event log tells it in order.

use crate::glue_double::GlueDouble;
use crate::harness::{fresh_database, Server};
use crate::ingestion::{blocking, run, schema_hash, Dms, Job, Running, STREAM, TABLE};
use crate::lake::venv;
use crate::scheduler::define;
use crate::snapshots::{glue_catalog, py};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, Row};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTAINER: &str = "consumer";
const VIEW: &str = "orders";
const DMS_PREFIX: &str = "s3://dms/sales/orders/";

/// Publish what DMS wrote to its folder so far into the S3 bucket, as DMS
/// writes to S3 (moto's, through its REST API).
async fn publish(lake_url: &str, dms: &Dms, published: &mut Vec<String>) {
    let http = reqwest::Client::new();
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
    if published.is_empty() {
        let made = http
            .put(format!("{lake_url}/dms"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success(), "create the bucket: {made:?}");
    }
    for name in dms.loads.iter().chain(&dms.cdcs) {
        if published.contains(name) {
            continue;
        }
        let text = std::fs::read(dms.prefix().join(name)).unwrap();
        let key = DMS_PREFIX.trim_start_matches("s3://dms/");
        let put = http
            .put(format!("{lake_url}/dms/{key}{name}"))
            .header("Authorization", auth)
            .body(text)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "put {name}: {put:?}");
        published.push(name.clone());
    }
}

/// Poll `read` until `done` holds (within 120 s).
async fn until<F, Fut>(what: &str, read: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let within = Duration::from_secs(120);
    crate::harness::until(what, within, read, done, String::new).await
}

async fn get(server: &Server, path: &str) -> Value {
    server.expect(Method::GET, path, None, 200).await
}

/// The body of a 200, or null (not there yet).
async fn read(server: &Server, path: &str) -> Value {
    let answer = server.call(Method::GET, path, None).await;
    if answer.status == 200 {
        answer.body
    } else {
        Value::Null
    }
}

/// The hydration into `target`.
async fn hydration(server: &Server, target: &str) -> Value {
    let page = get(server, &format!("/v1/hydrations?table={TABLE}&limit=100")).await;
    page["hydrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == target)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Run `run_id` of the hydration job into `target`, stopping once live
/// when `stop` exists.
fn hydrate(
    server: &Server,
    catalog: &Value,
    dsn: &str,
    (target, run_id): (&str, &str),
    stop: &Path,
) -> Running {
    let mut command = Command::new(venv().join("bin/python"));
    command
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("story/hydrate.py"))
        .args(["--url", &server.url, "--catalog", &catalog.to_string()])
        .args(["--table", TABLE, "--container", CONTAINER, "--dsn", dsn])
        .args(["--target", target, "--view", VIEW, "--run-id", run_id])
        .arg("--stop-file")
        .arg(stop)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::start(command)
}

/// The view holds exactly `expected` (count and md5), within two minutes.
async fn exact(dsn: &str, expected: &Value, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (have, want) = checksum(dsn, VIEW, expected).await;
        if have == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {have:?} != {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rows a relation of the container holds: count, and an md5 over
/// them in key order, next to the md5 of what the source should hold.
async fn checksum(dsn: &str, relation: &str, expected: &Value) -> ((i64, String), (i64, String)) {
    let mut conn = PgConnection::connect(dsn).await.unwrap();
    let text = |id: &Value, name: &Value, amount: &Value| {
        format!("{id},{},{amount}", name.as_str().unwrap())
    };
    let rows = expected.as_array().unwrap();
    let want: Vec<String> = rows.iter().map(|r| text(&r[0], &r[1], &r[2])).collect();
    let want_md5: String = sqlx::query_scalar("SELECT md5($1)")
        .bind(want.join(";"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let have = sqlx::query(&format!(
        "SELECT count(*), coalesce(md5(string_agg(id || ',' || name || ',' || amount, ';' ORDER BY id)), '') FROM {relation}"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    (
        (have.get::<i64, _>(0), have.get::<String, _>(1)),
        (rows.len() as i64, want_md5),
    )
}

/// Every event, oldest first.
async fn events(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = get(server, &format!("/v1/events?after={after}&limit=1000")).await;
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return all;
        }
        after = page["next_after"].as_i64().unwrap();
        all.extend(events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_hydration_compaction_and_a_schema_change_keep_the_consumer_view_exact() {
    // The platform: Glue (moto, the double in front) running the
    // compaction script, sluice on PostgreSQL, a PostgreSQL container.
    let double = GlueDouble::start().await;
    double.create_job("compact-orders", 1).await;
    let python = venv().join("bin/python");
    let compact = concat!(env!("CARGO_MANIFEST_DIR"), "/iceberg/compact.py");
    double
        .script(json!({ "commands": { "compact-orders": [python, compact] } }))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = double.config(dir.path());
    let database = fresh_database().await;
    let mut server = Server::on_database_with(
        &database,
        &[
            "--auth",
            "off",
            "--config",
            &config,
            "--run-poll-max-seconds",
            "1",
            "--refresh-interval-seconds",
            "1",
        ],
    )
    .await;
    let lake = &double.lake;
    let catalog = glue_catalog(lake);
    let container_dsn = fresh_database().await;

    // The table in the Glue catalog, its stream over the DMS bucket, the
    // container, and the compaction job.
    let job = Job::over(&server, DMS_PREFIX, lake).await;
    let table_path = format!("/v1/tables/{TABLE}");
    let settings = json!({ "catalog": "lake", "compaction_job": "compact" });
    server
        .expect(Method::PUT, &table_path, Some(settings), 201)
        .await;
    let hash = blocking(schema_hash).await;
    let stream = json!({ "table": TABLE, "expected_schema_hash": hash,
                         "source": { "kind": "dms", "prefix": DMS_PREFIX } });
    server
        .expect(
            Method::PUT,
            &format!("/v1/streams/{STREAM}"),
            Some(stream),
            201,
        )
        .await;
    let container = json!({ "kind": "postgres", "url": container_dsn });
    let container_path = format!("/v1/containers/{CONTAINER}");
    server
        .expect(Method::PUT, &container_path, Some(container), 201)
        .await;
    define(
        &server,
        "compact",
        json!({ "glue_job_name": "compact-orders", "kind": "compaction", "table": TABLE,
                "max_attempts": 1,
                "arguments": { "--catalog": catalog.to_string().replace('{', "{{").replace('}', "}}") } }),
    )
    .await;

    // 1. The full load, and the changes made while it ran.
    let mut dms = Dms::new();
    let mut published = Vec::new();
    for n in 1..=3 {
        let rows: Vec<(i64, String, i64)> = (0..8)
            .map(|i| {
                let id = i64::from(n) * 100 + i;
                (id, format!("load{id}"), id * 3)
            })
            .collect();
        let rows: Vec<(i64, &str, i64)> =
            rows.iter().map(|(i, s, a)| (*i, s.as_str(), *a)).collect();
        dms.load(n, &rows);
    }
    dms.cdc(
        "20240501-000100000",
        &[
            ("U", 101, "changed", 1),
            ("D", 102, "load102", 306),
            ("I", 900, "new", 9),
        ],
    );
    dms.cdc("20240501-000200000", &[("U", 900, "newer", 10)]);
    publish(&lake.url, &dms, &mut published).await;

    // 2. Ingestion, killed once right after a merge reached the table and
    // before sluice heard of it; the next run resumes from the bookmark.
    let mut killed = job.command("glue-run-1", 2);
    killed.env("CRASH_AFTER_WORK", "2");
    let killed = blocking(move || run(killed)).await;
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    let resumed = job.command("glue-run-2", 2);
    blocking(move || run(resumed)).await.assert_success();
    let bookmark = get(&server, &format!("/v1/streams/{STREAM}/bookmark")).await;
    assert_eq!(bookmark["phase"], "delta", "{bookmark}");
    let dumped = job.clone();
    assert_eq!(blocking(move || dumped.dump()).await, dms.expected());

    // 3. Hydration v1 into the container, by the job's first run; it
    // reaches live, and sluice gives its read lease up.
    let stops = tempfile::tempdir().unwrap();
    let stop_v1 = stops.path().join("v1");
    let mut v1_job = hydrate(
        &server,
        &catalog,
        &container_dsn,
        ("orders_v1", "hydrate-1"),
        &stop_v1,
    );
    let (started, v1_job) = blocking(move || (v1_job.line(), v1_job)).await;
    let started: Value = serde_json::from_str(&started).expect("the job's first line");
    assert_eq!(started["resumed"], false, "{started}");
    let v1 = until(
        "hydration v1 live",
        || hydration(&server, "orders_v1"),
        |h| h["state"] == "live",
    )
    .await;
    let v1_id = v1["id"].as_str().unwrap().to_owned();
    assert_eq!(started["hydration_id"], v1_id.as_str());
    let lease = get(&server, &format!("/v1/leases/{v1_id}")).await;
    assert_eq!(lease["state"], "released", "{lease}");
    let view_path = format!("/v1/views/{CONTAINER}/{VIEW}");
    let view = until(
        "the view mapped to v1",
        || read(&server, &view_path),
        |v| v["target"] == "orders_v1",
    )
    .await;
    assert_eq!(view["hydration_id"], v1_id.as_str());
    // More changes land; the live hydration applies them.
    dms.cdc(
        "20240501-000300000",
        &[
            ("D", 900, "newer", 10),
            ("U", 200, "later", 7),
            ("I", 901, "x", 1),
        ],
    );
    publish(&lake.url, &dms, &mut published).await;
    let more = job.command("glue-run-3", 2);
    blocking(move || run(more)).await.assert_success();
    exact(
        &container_dsn,
        &dms.expected(),
        "v1 applies the later snapshots",
    )
    .await;
    // The run ends; the copy stays live with no run attached.
    std::fs::write(&stop_v1, "").unwrap();
    blocking(move || v1_job.finish("")).await.assert_success();
    let between = hydration(&server, "orders_v1").await;
    assert_eq!(
        (&between["state"], &between["session"]),
        (&json!("live"), &Value::Null),
        "{between}"
    );

    // 4. Changes land between runs: the copy falls behind, and says by how
    // much (pyiceberg's count of the snapshots it has not applied).
    dms.cdc(
        "20240501-000350000",
        &[("U", 201, "between", 2), ("I", 902, "y", 3)],
    );
    publish(&lake.url, &dms, &mut published).await;
    let between_runs = job.command("glue-run-4", 2);
    blocking(move || run(between_runs)).await.assert_success();
    let lagging = until(
        "v1 lagging",
        || hydration(&server, "orders_v1"),
        |h| h["state"] == "lagging",
    )
    .await;
    let applied = lagging["progress"]["applied_snapshot_id"].to_string();
    let theirs: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    let (behind, _) = crate::hydrations::expected_lag(&theirs, &applied);
    assert!(behind >= 1, "{theirs}");
    assert_eq!(lagging["lag"]["snapshots"], behind, "{lagging}");

    // The scheduler asks for compaction: with no copy in its first
    // hydration nothing holds the table, and it runs at once.
    let request = json!({ "requested_by": "nightly-scheduler", "reason": "small files" });
    let compactions = format!("/v1/tables/{TABLE}/compactions");
    let asked = server
        .expect(Method::POST, &compactions, Some(request), 201)
        .await;
    assert_ne!(asked["state"], "waiting", "{asked}");
    let compaction_id = asked["id"].as_str().unwrap().to_owned();
    let compaction_path = format!("/v1/tables/{TABLE}/compactions/{compaction_id}");
    // sluice dies while it runs, and comes back on the same database: the
    // Glue run is adopted, never started twice.
    server.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let compacted = until(
        "the compaction ends",
        || get(&server, &compaction_path),
        |c| {
            matches!(
                c["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        },
    )
    .await;
    assert_eq!(compacted["state"], "succeeded", "{compacted}");
    assert_eq!(double.calls("StartJobRun:compact-orders").await, 1);
    let compaction_token = compacted["token"].as_i64().unwrap();
    let table = serde_json::from_str::<Value>(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    assert_eq!(
        table["current_snapshot_id"].as_i64(),
        compacted["result_snapshot_id"].as_i64(),
        "{table}"
    );
    // Compaction is not lag: the copy is as far behind as before.
    let after = until(
        "v1 relagged past the compaction",
        || hydration(&server, "orders_v1"),
        |h| h["lag"]["current_snapshot_id"] == compacted["result_snapshot_id"],
    )
    .await;
    assert_eq!(
        (&after["state"], &after["lag"]["snapshots"]),
        (&json!("lagging"), &json!(behind)),
        "{after}"
    );

    // 5. The job's second run resumes the copy: it steps over the
    // compaction, applies the appends, and the view is exact; a third run
    // does the same after more changes.
    for (n, cdc) in [(2, "20240501-000360000"), (3, "20240501-000370000")] {
        if n == 3 {
            dms.cdc(cdc, &[("U", 202, "third", 5)]);
            publish(&lake.url, &dms, &mut published).await;
            let more = job.command(&format!("glue-run-{}", 3 + n), 2);
            blocking(move || run(more)).await.assert_success();
        }
        let run_id = format!("hydrate-{n}");
        let resumed = hydrate(
            &server,
            &catalog,
            &container_dsn,
            ("orders_v1", &run_id),
            &stop_v1,
        );
        let finished = blocking(move || resumed.finish("")).await;
        finished.assert_success();
        let lines: Vec<Value> = finished
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(
            (&lines[0]["resumed"], &lines[0]["hydration_id"]),
            (&json!(true), &json!(v1_id)),
            "{lines:?}"
        );
        if n == 2 {
            assert!(
                lines.iter().any(|l| l["stepped_over"] == "replace"
                    && l["snapshot_id"] == compacted["result_snapshot_id"]),
                "run 2 steps over the compaction: {lines:?}"
            );
        }
        let caught_up = hydration(&server, "orders_v1").await;
        assert_eq!(
            (
                &caught_up["state"],
                &caught_up["lag"]["snapshots"],
                &caught_up["sessions"]
            ),
            (&json!("live"), &json!(0), &json!(n)),
            "{caught_up}"
        );
        exact(&container_dsn, &dms.expected(), &format!("run {n} of v1")).await;
    }

    // 6. A schema change: the table gains a column; a new hydration fills
    // table v2 with it, and the view is remapped when v2 is live.
    py(&catalog, &["add-column", TABLE, "channel"]).await;
    dms.cdc("20240501-000400000", &[("U", 301, "after-change", 4)]);
    publish(&lake.url, &dms, &mut published).await;
    let last = job.command("glue-run-7", 2);
    blocking(move || run(last)).await.assert_success();
    let stop_v2 = stops.path().join("v2");
    std::fs::write(&stop_v2, "").unwrap();
    let v2_job = hydrate(
        &server,
        &catalog,
        &container_dsn,
        ("orders_v2", "hydrate-v2"),
        &stop_v2,
    );
    let v2_done = blocking(move || v2_job.finish("")).await;
    v2_done.assert_success();
    let v2 = hydration(&server, "orders_v2").await;
    assert_eq!(v2["state"], "live", "{v2}");
    let view = until(
        "the view remapped to v2",
        || read(&server, &view_path),
        |v| v["target"] == "orders_v2",
    )
    .await;
    assert_eq!(view["hydration_id"], v2["id"]);
    assert!(
        view["columns"]
            .as_array()
            .unwrap()
            .contains(&json!("channel")),
        "{view}"
    );
    assert_eq!(
        until(
            "v1 superseded",
            || hydration(&server, "orders_v1"),
            |h| h["state"] == "superseded",
        )
        .await["reason"]
            .as_str()
            .map(|r| r.contains(v2["id"].as_str().unwrap())),
        Some(true)
    );

    // 7. The consumer view holds exactly the source's rows...
    let expected = dms.expected();
    let dumped = job.clone();
    assert_eq!(blocking(move || dumped.dump()).await, expected);
    let (have, want) = checksum(&container_dsn, VIEW, &expected).await;
    assert_eq!(have, want, "the view differs from the source");

    // ...every fence held: the compaction's snapshot carries its token,
    // the killed run's batch cannot commit any more, v1's token is dead...
    let log = get(&server, &format!("/v1/tables/{TABLE}/snapshots?limit=1000")).await;
    let rewrite = log["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"] == compacted["result_snapshot_id"])
        .cloned()
        .unwrap();
    assert_eq!(
        rewrite["summary"]["sluice.lease-token"],
        compaction_token.to_string(),
        "{rewrite}"
    );
    let all = events(&server).await;
    // The killed run's last batch: its merge reached the table (a snapshot
    // names it), sluice never heard of it, and its token is dead.
    let killed_batch = all
        .iter()
        .rfind(|e| e["kind"] == "batch_opened" && e["data"]["run_id"] == "glue-run-1")
        .cloned()
        .unwrap_or_else(|| panic!("no batch of the killed run: {all:?}"));
    let killed_id = killed_batch["data"]["batch_id"].as_str().unwrap();
    assert!(
        log["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["summary"]["sluice.batch-id"] == killed_id),
        "no snapshot of the killed batch {killed_id}: {log}"
    );
    let stale = server
        .call(
            Method::POST,
            &format!("/v1/streams/{STREAM}/batches/{}/commit", killed_id),
            Some(
                json!({ "token": killed_batch["data"]["token"], "counts": {},
                         "bookmark": { "delta": { "file": "20240501-000100000.csv",
                                                  "commit_timestamp": "20240501-000100000",
                                                  "position": null } } }),
            ),
        )
        .await;
    assert_eq!(
        (stale.status, stale.body["error"]["type"].as_str()),
        (409, Some("batch_expired")),
        "{}",
        stale.body
    );
    let late = server
        .call(
            Method::POST,
            &format!("/v1/hydrations/{v1_id}/progress"),
            Some(json!({ "token": 3, "phase": "catching_up",
                         "snapshot_id": compacted["result_snapshot_id"] })),
        )
        .await;
    assert_eq!(
        (late.status, late.body["error"]["type"].as_str()),
        (409, Some("hydration_ended")),
        "{}",
        late.body
    );

    // ...and the event log tells the story in order.
    let v2_id = v2["id"].as_str().unwrap();
    let story: Vec<String> = all
        .iter()
        .filter_map(|e| {
            let d = &e["data"];
            let kind = e["kind"].as_str().unwrap();
            let who = |id: &Value| {
                if id == v1_id.as_str() {
                    "v1"
                } else if id == v2_id {
                    "v2"
                } else {
                    "?"
                }
            };
            Some(match kind {
                "batch_committed" => "batch committed".to_owned(),
                "hydration_created" => format!("{} created", who(&d["hydration_id"])),
                "hydration_state_changed" => {
                    format!("{} {}", who(&d["hydration_id"]), d["to"].as_str().unwrap())
                }
                "compaction_requested" => "compaction requested".into(),
                "compaction_state_changed" => format!("compaction {}", d["to"].as_str().unwrap()),
                "view_remapped" => format!("view -> {}", d["to"].as_str().unwrap()),
                _ => return None,
            })
        })
        .collect();
    let wanted = [
        "batch committed",
        "v1 created",
        "v1 live",
        "view -> orders_v1",
        "batch committed",
        "v1 lagging",
        "compaction requested",
        "compaction running",
        "compaction succeeded",
        "v1 live",
        "batch committed",
        "v2 created",
        "v2 live",
        "view -> orders_v2",
        "v1 superseded",
    ];
    assert!(
        !story.iter().any(|s| s == "compaction waiting"),
        "no compaction waited for a live copy: {story:?}"
    );
    let mut at = 0;
    for step in &story {
        if at < wanted.len() && step == wanted[at] {
            at += 1;
        }
    }
    assert_eq!(
        at,
        wanted.len(),
        "the event log lacks `{}` in order: {story:?}",
        wanted.get(at).unwrap_or(&"")
    );
}
