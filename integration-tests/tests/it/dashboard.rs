//! The dashboard in a real headless Chromium (Debian's, through its
//! chromedriver): signing in, 10,000 tables paged and filtered, a lease and
//! a queued compaction showing up live, a hydration's progress bar moving,
//! the event feed, the API reference. `integration-tests/dashboard/drive.py`
//! drives the browser; the screenshots it takes of every view are kept in
//! `target/dashboard-screenshots/`.

use crate::harness::{fresh_database, Server};
use crate::lake::venv;
use crate::snapshots::{py, refresh, sql_catalog, TABLE};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const TABLES: usize = 10_000;

/// `TABLES` tables besides `TABLE`, registered 32 at a time.
async fn many_tables(server: &Server) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let client = server.client.clone();
        tasks.spawn(async move {
            for i in (worker..TABLES).step_by(32) {
                let answer = client
                    .put_table(&format!("lake.t{i:05}"), json!({}))
                    .await
                    .unwrap();
                assert_eq!(answer.status, 201, "{}", answer.body);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn dashboard_in_a_browser() {
    let mut server =
        Server::sqlite_with(&["--auth", "on", "--refresh-interval-seconds", "3600"]).await;
    let admin = server.create_token("admin", "admin", &[], &[]);
    let operator = server.create_token("operator", "operator", &[], &[]);
    let job = server.create_token("ingest", "job", &[], &[]);
    server.client = server.client_with(&admin);

    // A real Iceberg table with a snapshot, in the embedded catalog.
    let data = server.data_dir();
    let catalog = sql_catalog(&data);
    py(&catalog, &["create", TABLE]).await;
    let snapshot = py(&catalog, &["append", TABLE, "3"]).await;
    server
        .expect(
            Method::PUT,
            "/v1/jobs/compact-orders",
            json!({ "glue_job_name": "compact-orders", "kind": "compaction", "table": TABLE }),
            201,
        )
        .await;
    let put =
        json!({ "compaction_job": "compact-orders", "max_compaction_deferral_seconds": 3600 });
    server
        .expect(Method::PUT, &format!("/v1/tables/{TABLE}"), put, 201)
        .await;
    refresh(&server).await;
    // A container (a database of its own) whose view `orders` was
    // remapped twice.
    let container_url = fresh_database().await;
    let pool = sqlx::PgPool::connect(&container_url).await.unwrap();
    for target in ["orders_v1", "orders_v2"] {
        sqlx::query(&format!("CREATE TABLE {target} (id bigint, amount bigint)"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let container = json!({ "kind": "postgres", "url": container_url });
    server
        .expect(Method::PUT, "/v1/containers/analytics", container, 201)
        .await;
    for (target, reason) in [("orders_v1", "first copy"), ("orders_v2", "new schema")] {
        let remap = json!({ "target": target, "reason": reason });
        server
            .expect(Method::POST, "/v1/views/analytics/orders/remap", remap, 200)
            .await;
    }
    // A run of a job, whatever becomes of it without Glue.
    let export = json!({ "glue_job_name": "export-orders", "kind": "export", "max_attempts": 1 });
    server
        .expect(Method::PUT, "/v1/jobs/export", export, 201)
        .await;
    let run = server
        .expect(Method::POST, "/v1/jobs/export/runs", json!({}), 201)
        .await;
    let hydration = json!({ "table": TABLE, "container": "analytics", "target": "orders_v1",
                            "views": ["orders"], "lease_ttl_seconds": 600, "run_id": "run-1" });
    let hydration = server
        .expect(Method::POST, "/v1/hydrations", hydration, 201)
        .await;
    many_tables(&server).await;

    let screenshots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    let output = Command::new(venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/drive.py"))
        .args(["--url", &server.url])
        .args(["--operator-token", &operator])
        .args(["--admin-token", &admin])
        .args(["--job-token", &job])
        .args(["--table", TABLE])
        .args(["--run", run["id"].as_str().unwrap()])
        .args(["--hydration", hydration["id"].as_str().unwrap()])
        .args([
            "--hydration-token",
            &hydration["session"]["token"].to_string(),
        ])
        .args(["--snapshot-id", snapshot.trim()])
        .arg("--screenshots")
        .arg(&screenshots)
        .output()
        .expect("run drive.py");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "drive.py failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).expect("drive.py's JSON line");
    println!("dashboard: {seen}");

    // Signing in: an unknown token and a job's token are both turned away.
    assert!(
        seen["unknown_token"]
            .as_str()
            .unwrap()
            .contains("not accepted"),
        "{seen}"
    );
    assert!(
        seen["job_token"]
            .as_str()
            .unwrap()
            .contains("operator or admin"),
        "{seen}"
    );
    // The first of 10,000 tables' pages renders: 50 rows, in name order,
    // within the 3 s a request may take (how fast is not checked here:
    // scripts/latency-bench.sh measures the page's request); the next page
    // goes on from there.
    assert_eq!(seen["first_page_rows"], 50, "{seen}");
    assert!(seen["first_page_ms"].as_f64().unwrap() < 3000.0, "{seen}");
    assert_eq!(seen["second_page_first"], "lake.t00050", "{seen}");
    // Live: the lease within a second of its grant, without a reload.
    assert!(seen["lease_visible_ms"].as_u64().unwrap() < 1000, "{seen}");
    let tables = seen["tables_view"].as_str().unwrap();
    assert!(tables.contains("read by nightly-export"), "{tables}");
    assert!(tables.contains("write by"), "{tables}");
    assert!(tables.contains("#1 in queue"), "{tables}");
    // The progress bar moved, once per report.
    assert_eq!(seen["percents"], json!(["0.0", "25.0", "70.0"]), "{seen}");
    assert!(
        seen["compactions_view"].as_str().unwrap().contains(TABLE),
        "{seen}"
    );
    let kinds = seen["event_kinds"].as_array().unwrap();
    // The feed starts 100 events back: after the 10,000 tables' creation.
    for kind in ["lease_granted", "lease_released", "compaction_requested"] {
        assert!(kinds.contains(&json!(kind)), "{kind} not in {seen}");
    }
    let paths = seen["reference_paths"].as_array().unwrap();
    assert!(paths.contains(&json!("/v1/events/stream")), "{seen}");
    let history = seen["view_history"].as_str().unwrap();
    assert!(
        history.contains("new schema") && history.contains("first copy"),
        "{history}"
    );
    assert!(
        seen["runs_view"].as_str().unwrap().contains("export"),
        "{seen}"
    );
    assert_eq!(seen["after_logout_login_shown"], true, "{seen}");
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    for view in [
        "sign-in",
        "tables",
        "hydrations",
        "compactions",
        "views",
        "runs",
        "events",
        "api-reference",
    ] {
        assert!(
            screenshots.join(format!("{view}.png")).exists(),
            "no screenshot of {view}"
        );
    }
}

/// The pages are public (they hold no data) and run only their own
/// scripts; the data behind them is not.
#[tokio::test]
async fn pages_are_public_and_locked_down() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/api", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/reference.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let answer = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let headers = answer.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}: {headers:?}"
        );
        if kind == "text/html" {
            let policy = headers["content-security-policy"].to_str().unwrap();
            assert!(policy.contains("script-src 'self'"), "{policy}");
        }
    }
    let data = server
        .client
        .send(Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    assert_eq!(
        (data.status, data.error_type()),
        (401, Some("missing_token"))
    );
    let unknown = server
        .client
        .send(Method::GET, "/ui/nothing.js", None)
        .await
        .unwrap();
    crate::errors::assert_error("/ui/nothing.js", &unknown, 404, "not_found");
}
