//! The table snapshot log from real Iceberg metadata: tables created and
//! appended to by pyiceberg in moto's Glue catalog and S3, read by sluice
//! through the `iceberg` crate's Glue catalog; and the embedded SQL
//! catalog that the SQLite default gets with no configuration.

use crate::errors::assert_error;
use crate::harness::{Backend, Server};
use crate::lake::{venv, Lake};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const TABLE: &str = "sales.orders";

/// pyiceberg's configuration of the SQL catalog in `dir`: a SQLite file
/// and a warehouse folder (sluice's embedded catalog on SQLite is the one
/// in its data directory).
pub(crate) fn sql_catalog(dir: &std::path::Path) -> Value {
    json!({
        "name": "local", "type": "sql",
        "uri": format!("sqlite:///{}", dir.join("catalog.db").display()),
        "warehouse": format!("file://{}", dir.join("warehouse").display()),
    })
}

/// pyiceberg on the given catalog (`integration-tests/iceberg/lake.py`).
fn lake_py(catalog: &Value, args: &[&str]) -> String {
    let output = Command::new(venv().join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("iceberg/lake.py"))
        .arg(catalog.to_string())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run lake.py");
    assert!(
        output.status.success(),
        "lake.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

pub(crate) async fn py(catalog: &Value, args: &[&str]) -> String {
    let (catalog, args) = (
        catalog.clone(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lake_py(&catalog, &args)
    })
    .await
    .expect("lake.py task")
}

/// pyiceberg's properties for moto's Glue catalog and S3.
pub(crate) fn glue_catalog(lake: &Lake) -> Value {
    json!({
        "name": "lake", "type": "glue",
        "glue.endpoint": lake.url, "glue.region": "us-east-1",
        "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
        "s3.endpoint": lake.url, "s3.region": "us-east-1",
        "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
        "warehouse": "s3://lake/",
    })
}

/// sluice's configuration of the same catalog (secrets from the
/// environment, as production would keep them). Without pin tags: moto
/// ignores Glue's `VersionId`, so a tag committed beside a writer could
/// overwrite the writer's commit (`pin_tags::` tests them through the Glue
/// double, which checks it as Glue does).
pub(crate) fn glue_config(dir: &Path, lake: &Lake) -> PathBuf {
    glue_config_at(dir, &lake.url, &lake.url, false)
}

/// A Glue catalog whose Glue calls go to `glue_url`, its S3 to `s3_url`.
pub(crate) fn glue_config_at(dir: &Path, glue_url: &str, s3_url: &str, pin_tags: bool) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"[catalogs.lake]
kind = "glue"
uri = "{glue_url}"
warehouse = "s3://lake/"
region = "us-east-1"
pin_tags = {pin_tags}
[catalogs.lake.properties]
aws_access_key_id = "env:LAKE_KEY_ID"
aws_secret_access_key = "env:LAKE_SECRET"
"s3.endpoint" = "{s3_url}"
"s3.path-style-access" = "true"
"#
        ),
    )
    .expect("write config");
    path
}

pub(crate) async fn on_lake(backend: Backend, extra: &[&str]) -> (Server, Lake, tempfile::TempDir) {
    let lake = Lake::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = glue_config(dir.path(), &lake).display().to_string();
    std::env::set_var("LAKE_KEY_ID", "testing");
    std::env::set_var("LAKE_SECRET", "testing");
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(extra);
    let server = backend.server_with(&args).await;
    (server, lake, dir)
}

/// A server on a fresh lake whose table `TABLE` exists in the lake and is
/// registered in sluice.
pub(crate) async fn lake_table(
    backend: Backend,
    refresh_interval: &str,
) -> (Server, Lake, tempfile::TempDir) {
    let (server, lake, dir) =
        on_lake(backend, &["--refresh-interval-seconds", refresh_interval]).await;
    py(&glue_catalog(&lake), &["create", TABLE]).await;
    let registered = server
        .client
        .put_table(TABLE, json!({ "catalog": "lake" }))
        .await
        .unwrap();
    assert_eq!(registered.status, 201, "{}", registered.body);
    (server, lake, dir)
}

async fn snapshots_page(server: &Server, query: &str) -> Value {
    let answer = server
        .client
        .send(
            Method::GET,
            &format!("/v1/tables/{TABLE}/snapshots{query}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Every snapshot in the log, all pages.
async fn all_snapshots(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = snapshots_page(server, &query).await;
        all.extend(page["snapshots"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => return all,
        }
    }
}

pub(crate) async fn refresh(server: &Server) -> Value {
    let answer = server
        .client
        .send(Method::POST, &format!("/v1/tables/{TABLE}/refresh"), None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// The log, compared field by field with pyiceberg's own view of the table.
fn assert_log_matches(log: &[Value], pyiceberg: &Value) {
    let live: Vec<&Value> = log.iter().filter(|s| s["expired_at"].is_null()).collect();
    let theirs = pyiceberg["snapshots"].as_array().unwrap();
    assert_eq!(
        live.len(),
        theirs.len(),
        "log {log:?}\npyiceberg {pyiceberg}"
    );
    for (ours, theirs) in live.iter().zip(theirs) {
        assert_eq!(
            ours["snapshot_id"], theirs["snapshot_id"],
            "{ours} vs {theirs}"
        );
        // pyiceberg forgets the parent of a snapshot whose parent expired;
        // the log keeps it (lag walks the chain through expired snapshots).
        let parent_expired = theirs["parent_id"].is_null()
            && log
                .iter()
                .any(|s| s["snapshot_id"] == ours["parent_id"] && s["expired_at"].is_string());
        if !parent_expired {
            assert_eq!(ours["parent_id"], theirs["parent_id"], "{ours} vs {theirs}");
        }
        assert_eq!(
            ours["sequence_number"], theirs["sequence_number"],
            "{ours} vs {theirs}"
        );
        assert_eq!(ours["operation"], theirs["operation"], "{ours} vs {theirs}");
        let ms = theirs["timestamp_ms"].as_i64().unwrap();
        assert_eq!(
            sluice_core::Millis::parse_rfc3339(ours["committed_at"].as_str().unwrap()),
            Some(sluice_core::Millis(ms))
        );
    }
}

async fn the_log_follows_appends_and_expiry_on_glue(backend: Backend) {
    let (server, lake, _dir) = on_lake(backend, &["--refresh-interval-seconds", "3600"]).await;
    let catalog = glue_catalog(&lake);
    let c = &server.client;
    assert_eq!(
        c.put_table(TABLE, json!({ "catalog": "lake" }))
            .await
            .unwrap()
            .status,
        201
    );

    // Registered in sluice, not yet in the catalog.
    let missing = c
        .send(Method::POST, &format!("/v1/tables/{TABLE}/refresh"), None)
        .await
        .unwrap();
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.error_type(), Some("iceberg_table_not_found"));
    let page = snapshots_page(&server, "").await;
    assert!(
        page["catalog_state"]["refresh_error"].as_str().is_some(),
        "{page}"
    );

    py(&catalog, &["create", TABLE]).await;
    let empty = refresh(&server).await;
    assert_eq!(empty["current_snapshot_id"], Value::Null);
    assert_eq!(empty["added"], json!([]));

    let mut ids = Vec::new();
    for rows in [3, 1, 4] {
        ids.push(py(&catalog, &["append", TABLE, &rows.to_string()]).await);
    }
    let first = refresh(&server).await;
    let added: Vec<String> = first["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(added, ids, "{first}");
    assert_eq!(first["current_snapshot_id"].to_string(), ids[2]);
    let theirs: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    assert_log_matches(&all_snapshots(&server).await, &theirs);

    // A refresh with nothing new changes nothing.
    let again = refresh(&server).await;
    assert_eq!(
        (again["added"].clone(), again["expired"].clone()),
        (json!([]), json!([]))
    );

    // Two more appends, then the oldest snapshot expires.
    ids.push(py(&catalog, &["append", TABLE, "2"]).await);
    ids.push(py(&catalog, &["append", TABLE, "5"]).await);
    py(&catalog, &["expire", TABLE, &ids[0]]).await;
    let second = refresh(&server).await;
    let added: Vec<String> = second["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(added, ids[3..]);
    assert_eq!(second["expired"].to_string(), format!("[{}]", ids[0]));
    let log = all_snapshots(&server).await;
    assert_eq!(
        log.len(),
        5,
        "the expired snapshot stays in the log, marked"
    );
    assert!(log[0]["expired_at"].is_string(), "{:?}", log[0]);
    let theirs: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    assert_log_matches(&log, &theirs);
    let state = &snapshots_page(&server, "").await["catalog_state"];
    assert_eq!(state["current_snapshot_id"].to_string(), ids[4]);
    assert_eq!(state["refresh_error"], Value::Null);
    assert!(state["metadata_location"]
        .as_str()
        .unwrap()
        .starts_with("s3://lake/"));

    // Each refresh that changed the log is an event.
    let events = c
        .send(Method::GET, "/v1/events?kind=table_snapshots_changed", None)
        .await
        .unwrap();
    let events = events.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["data"]["added"], 2);
    assert_eq!(
        events[1]["data"]["expired_ids"].to_string(),
        format!("[{}]", ids[0])
    );
    // The catalog's secrets are in none of it.
    assert!(!server.log_text().contains("LAKE_SECRET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_follows_appends_and_expiry_on_glue_sqlite() {
    the_log_follows_appends_and_expiry_on_glue(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_follows_appends_and_expiry_on_glue_postgres() {
    the_log_follows_appends_and_expiry_on_glue(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_follows_appends_and_expiry_on_glue_dynamodb() {
    the_log_follows_appends_and_expiry_on_glue(Backend::Dynamodb).await
}

/// Retention names the oldest snapshot a reader needs, and expiring at the
/// timestamp it answers keeps that snapshot (and removes what is older).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_at_the_retention_point_keeps_what_readers_pinned() {
    expiry_at_the_retention_point_keeps_what_readers_pinned_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_at_the_retention_point_keeps_what_readers_pinned_dynamodb() {
    expiry_at_the_retention_point_keeps_what_readers_pinned_on(Backend::Dynamodb).await
}

async fn expiry_at_the_retention_point_keeps_what_readers_pinned_on(backend: Backend) {
    let (server, lake, _dir) = lake_table(backend, "3600").await;
    let catalog = glue_catalog(&lake);
    let c = &server.client;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(py(&catalog, &["append", TABLE, "1"]).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The reader pins the second snapshot before sluice has seen any:
    // retention reads the catalog itself rather than guess.
    let pinned = c
        .send(
            Method::POST,
            &format!("/v1/tables/{TABLE}/leases"),
            Some(
                &json!({ "mode": "read", "holder": "hydrate-1", "ttl_seconds": 300,
                          "pin_snapshot_id": ids[1].parse::<i64>().unwrap() }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(pinned.status, 201, "{}", pinned.body);
    let retention = |server: &Server| {
        let c = server.client.clone();
        async move {
            let answer = c
                .send(Method::GET, &format!("/v1/tables/{TABLE}/retention"), None)
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body
        }
    };
    let held = retention(&server).await;
    assert_eq!(
        held["oldest_needed_snapshot_id"].to_string(),
        ids[1],
        "{held}"
    );
    assert_eq!(held["pinned"].to_string(), format!("[{}]", ids[1]));
    assert_eq!(held["readers"], 1);
    let log = all_snapshots(&server).await;
    assert_eq!(held["safe_older_than"], log[1]["committed_at"], "{held}");

    py(
        &catalog,
        &[
            "expire-older-than",
            TABLE,
            held["safe_older_than"].as_str().unwrap(),
        ],
    )
    .await;
    let theirs: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    let left: Vec<String> = theirs["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].to_string())
        .collect();
    assert_eq!(
        left,
        ids[1..],
        "expiry kept the pinned snapshot and what follows, no more"
    );

    // Released: nothing holds snapshots back any more.
    let lease = pinned.body["lease_id"].as_str().unwrap();
    let token = pinned.body["token"].as_i64().unwrap();
    let released = c
        .send(
            Method::DELETE,
            &format!("/v1/leases/{lease}?token={token}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(released.status, 200, "{}", released.body);
    let free = retention(&server).await;
    assert_eq!(free["oldest_needed_snapshot_id"], Value::Null, "{free}");
    assert_eq!(free["readers"], 0);
    assert!(free["safe_older_than"].is_string());
}

/// The watcher refreshes every table by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_refreshes_the_log_by_itself() {
    the_watcher_refreshes_the_log_by_itself_on(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_refreshes_the_log_by_itself_dynamodb() {
    the_watcher_refreshes_the_log_by_itself_on(Backend::Dynamodb).await
}

async fn the_watcher_refreshes_the_log_by_itself_on(backend: Backend) {
    let (server, lake, _dir) = lake_table(backend, "1").await;
    let catalog = glue_catalog(&lake);
    let id = py(&catalog, &["append", TABLE, "1"]).await;
    assert!(
        wait_for_snapshot(&server, &id, Duration::from_secs(20)).await,
        "the watcher never recorded {id}"
    );
}

/// A committed batch that names a snapshot the log does not hold gets its
/// table refreshed at once, long before the watcher's next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_naming_a_new_snapshot_refreshes_its_table() {
    a_batch_naming_a_new_snapshot_refreshes_its_table_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_naming_a_new_snapshot_refreshes_its_table_dynamodb() {
    a_batch_naming_a_new_snapshot_refreshes_its_table_on(Backend::Dynamodb).await
}

async fn a_batch_naming_a_new_snapshot_refreshes_its_table_on(backend: Backend) {
    let (server, lake, _dir) = lake_table(backend, "86400").await;
    let catalog = glue_catalog(&lake);
    let c = &server.client;
    let stream = "sales.orders_cdc";
    assert_eq!(
        c.put_stream(stream, &json!({ "table": TABLE }))
            .await
            .unwrap()
            .status,
        201
    );
    let id = py(&catalog, &["append", TABLE, "1"]).await;
    let opened = c.open_batch(stream, "run-1", 60).await.unwrap();
    assert_eq!(opened.status, 201, "{}", opened.body);
    let batch = opened.body["batch_id"].as_str().unwrap().to_owned();
    let body = json!({
        "token": opened.body["token"],
        "bookmark": { "load": { "files_done": ["LOAD00000001.csv"] } },
        "snapshot_id": id.parse::<i64>().unwrap(),
    });
    let committed = c.commit_batch(stream, &batch, &body).await.unwrap();
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert!(
        wait_for_snapshot(&server, &id, Duration::from_secs(20)).await,
        "the batch's snapshot {id} was never recorded"
    );
}

async fn wait_for_snapshot(server: &Server, id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let page = snapshots_page(server, "?limit=1000").await;
        if page["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["snapshot_id"].as_i64().map(|n| n.to_string()).as_deref() == Some(id))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// With no configuration, the SQLite default reads the embedded catalog: a
/// SQLite file and a warehouse folder in its data directory, where
/// pyiceberg's SQL catalog creates the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_catalog_needs_no_configuration() {
    let server = Server::sqlite_with(&["--refresh-interval-seconds", "3600"]).await;
    let data = server.data_dir();
    let catalog = sql_catalog(&data);
    py(&catalog, &["create", TABLE]).await;
    let id = py(&catalog, &["append", TABLE, "3"]).await;
    assert_eq!(
        server
            .client
            .put_table(TABLE, json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    let refreshed = refresh(&server).await;
    assert_eq!(refreshed["catalog"], "local");
    assert_eq!(refreshed["added"].to_string(), format!("[{id}]"));
    let theirs: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    assert_log_matches(&all_snapshots(&server).await, &theirs);
}

/// What a caller can get wrong: each a 4xx with the JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_page_refusals() {
    let server = Server::sqlite_with(&["--refresh-interval-seconds", "3600"]).await;
    let c = &server.client;
    let unknown = c
        .send(Method::POST, "/v1/tables/no.such/refresh", None)
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_type()),
        (404, Some("table_not_found"))
    );
    let unknown = c
        .send(Method::GET, "/v1/tables/no.such/snapshots", None)
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_type()),
        (404, Some("table_not_found"))
    );
    assert_eq!(
        c.put_table("a.elsewhere", json!({ "catalog": "nope" }))
            .await
            .unwrap()
            .status,
        201
    );
    let unconfigured = c
        .send(Method::POST, "/v1/tables/a.elsewhere/refresh", None)
        .await
        .unwrap();
    assert_eq!(
        (unconfigured.status, unconfigured.error_type()),
        (409, Some("catalog_not_configured")),
        "{}",
        unconfigured.body
    );
    assert_eq!(
        c.put_table("a.missing", json!({})).await.unwrap().status,
        201
    );
    let missing = c
        .send(Method::POST, "/v1/tables/a.missing/refresh", None)
        .await
        .unwrap();
    assert_eq!(
        (missing.status, missing.error_type()),
        (404, Some("iceberg_table_not_found"))
    );
    for query in ["?after=nonsense", "?after=1:x", "?limit=0", "?limit=1001"] {
        let bad = c
            .send(
                Method::GET,
                &format!("/v1/tables/a.missing/snapshots{query}"),
                None,
            )
            .await
            .unwrap();
        assert_error(query, &bad, 422, "invalid_request");
        let message = bad.body["error"]["message"].as_str().unwrap();
        let field = if query.contains("after") {
            "after"
        } else {
            "limit"
        };
        assert!(message.contains(field), "{query}: {message}");
    }
    let bad_name = c
        .send(Method::POST, "/v1/tables/no-dot/refresh", None)
        .await
        .unwrap();
    assert_error("table `no-dot`", &bad_name, 400, "invalid_table_name");
}

/// Refreshing is open to every role on its own tables, never outside its scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_follows_roles_and_scopes() {
    let server = Server::sqlite_with(&["--auth", "on", "--refresh-interval-seconds", "3600"]).await;
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    assert_eq!(
        admin.put_table("sales.t", json!({})).await.unwrap().status,
        201
    );
    assert_eq!(
        admin.put_table("hr.t", json!({})).await.unwrap().status,
        201
    );
    let job = server.client_with(&server.create_token("job", "job", &["sales."], &[]));
    let own = job
        .send(Method::POST, "/v1/tables/sales.t/refresh", None)
        .await
        .unwrap();
    assert_eq!(
        own.error_type(),
        Some("iceberg_table_not_found"),
        "{}",
        own.body
    );
    let other = job
        .send(Method::POST, "/v1/tables/hr.t/refresh", None)
        .await
        .unwrap();
    assert_error("hr.t with a sales. token", &other, 403, "out_of_scope");
    let anonymous = server
        .client
        .send(Method::POST, "/v1/tables/sales.t/refresh", None)
        .await
        .unwrap();
    assert_error("no token", &anonymous, 401, "missing_token");
}
