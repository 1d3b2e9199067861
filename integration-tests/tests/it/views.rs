//! Consumer views on a real PostgreSQL container: two views remapped from
//! table v1 to table v2 in one transaction when v2's hydration is live,
//! while readers query both in a loop; rollback; a refused remap; and a
//! kill -9 between "live" and the remap.

use crate::harness::{fresh_database, Backend, Server};
use crate::snapshots::{py, refresh, sql_catalog, TABLE};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The container: tables v1 (with a `legacy` column) and v2 (which drops
/// it and adds `email`), and v3, which lacks `name`.
async fn container_database() -> String {
    let url = fresh_database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE orders_v1 (id int, name text, legacy text, src text)",
        "INSERT INTO orders_v1 SELECT g, 'n' || g, 'old', 'v1' FROM generate_series(1, 100) g",
        "CREATE TABLE orders_v2 (id int, name text, email text, src text)",
        "INSERT INTO orders_v2 SELECT g, 'n' || g, 'e@x', 'v2' FROM generate_series(1, 100) g",
        "CREATE TABLE orders_v3 (id int, src text)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    url
}

/// A sluice whose table `TABLE` is a real Iceberg table with one snapshot
/// in a SQL catalog on a local folder (the embedded one on SQLite, the
/// same kind configured on PostgreSQL and DynamoDB); and the container
/// registered.
async fn setup_on(backend: Backend, extra: &[&str], container_url: &str) -> (Server, String) {
    let mut args = vec!["--refresh-interval-seconds", "3600"];
    args.extend_from_slice(extra);
    let lake_dir = tempfile::tempdir().unwrap().keep();
    let server = if backend.is_sqlite() {
        backend.server_with(&args).await
    } else {
        let config = lake_dir.join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                "[catalogs.local]\nkind = \"sql\"\nuri = \"sqlite://{d}/catalog.db?mode=rwc\"\nwarehouse = \"file://{d}/warehouse\"\n",
                d = lake_dir.display()
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        let mut args = args.clone();
        args.extend_from_slice(&["--config", &config]);
        backend.server_with(&args).await
    };
    let data = if backend.is_sqlite() {
        server.data_dir()
    } else {
        lake_dir
    };
    let catalog = sql_catalog(&data);
    py(&catalog, &["create", TABLE]).await;
    let snapshot = py(&catalog, &["append", TABLE, "3"]).await;
    assert_eq!(
        server
            .client
            .put_table(TABLE, json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    refresh(&server).await;
    let put = send(
        &server,
        Method::PUT,
        "/v1/containers/analytics",
        Some(json!({ "kind": "postgres", "url": container_url })),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);
    (server, snapshot)
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

/// Create a hydration of `target` for both views and report it caught up.
async fn hydrate_live(
    server: &Server,
    snapshot: &str,
    target: &str,
    columns: Option<&[&str]>,
) -> String {
    hydrate_live_in(server, snapshot, "analytics", target, columns).await
}

async fn hydrate_live_in(
    server: &Server,
    snapshot: &str,
    container: &str,
    target: &str,
    columns: Option<&[&str]>,
) -> String {
    let mut body = json!({
        "table": TABLE, "container": container, "target": target,
        "views": ["orders", "orders_eu"], "run_id": "run-1",
    });
    if let Some(columns) = columns {
        body["columns"] = json!(columns);
    }
    let created = send(server, Method::POST, "/v1/hydrations", Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let live = send(
        server,
        Method::POST,
        &format!("/v1/hydrations/{id}/progress"),
        Some(
            json!({ "token": created.body["session"]["token"], "phase": "catching_up",
                     "snapshot_id": snapshot.parse::<i64>().unwrap() }),
        ),
    )
    .await;
    assert_eq!(live.body["state"], "live", "{}", live.body);
    id
}

/// A remap by hand of `view` (`container/view`), sent now and answered
/// later: its status, body and how long it took (at most 30 s).
fn remap_in_background(
    server: &Server,
    view: &str,
    body: Value,
) -> tokio::task::JoinHandle<(u16, Value, Duration)> {
    let url = format!("{}/v1/views/{view}/remap", server.url);
    tokio::spawn(async move {
        let started = Instant::now();
        let answer = reqwest::Client::new()
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("answered within 30 s");
        let status = answer.status().as_u16();
        (
            status,
            answer.json::<Value>().await.unwrap(),
            started.elapsed(),
        )
    })
}

/// What both views read, in one statement.
async fn both(conn: &mut PgConnection) -> Result<(String, String), sqlx::Error> {
    sqlx::query_as("SELECT (SELECT max(src) FROM orders), (SELECT max(src) FROM orders_eu)")
        .fetch_one(conn)
        .await
}

async fn columns(conn: &mut PgConnection, view: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(view)
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn wait_for(conn: &mut PgConnection, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((a, b)) = both(conn).await {
            if a == want && b == want {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the views never read {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The view's history once it holds `n` remaps: sluice records a remap
/// just after the container commits it.
async fn history_of(server: &Server, view: &str, n: usize) -> Vec<Value> {
    history_in(server, "analytics", view, n).await
}

async fn history_in(server: &Server, container: &str, view: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = send(
            server,
            Method::GET,
            &format!("/v1/views/{container}/{view}"),
            None,
        )
        .await;
        if let Some(h) = got.body["history"].as_array() {
            if h.len() >= n {
                return h.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{view} never had {n} remaps: {}",
            got.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn history(server: &Server, view: &str) -> Vec<Value> {
    let got = send(
        server,
        Method::GET,
        &format!("/v1/views/analytics/{view}"),
        None,
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body["history"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_move_to_v2_at_once_while_readers_read_and_roll_back_sqlite() {
    two_views_move_to_v2_at_once_while_readers_read_and_roll_back(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_move_to_v2_at_once_while_readers_read_and_roll_back_postgres() {
    two_views_move_to_v2_at_once_while_readers_read_and_roll_back(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_move_to_v2_at_once_while_readers_read_and_roll_back_dynamodb() {
    two_views_move_to_v2_at_once_while_readers_read_and_roll_back(Backend::Dynamodb).await
}

async fn two_views_move_to_v2_at_once_while_readers_read_and_roll_back(backend: Backend) {
    let url = container_database().await;
    let (server, snapshot) = setup_on(backend, &[], &url).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();

    // v1's hydration is live: both views are created on v1.
    let v1 = hydrate_live(&server, &snapshot, "orders_v1", None).await;
    wait_for(&mut conn, "v1").await;
    history_of(&server, "orders", 1).await;
    history_of(&server, "orders_eu", 1).await;
    assert_eq!(
        columns(&mut conn, "orders").await,
        ["id", "name", "legacy", "src"]
    );

    // Readers query both views in one statement, in a loop, while v2 goes live.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                let (mut reads, mut saw_v2) = (0u64, false);
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = both(&mut conn)
                        .await
                        .expect("a reader never sees an error or a missing view");
                    assert_eq!(a, b, "one view switched without the other");
                    saw_v2 |= a == "v2";
                    reads += 1;
                }
                (reads, saw_v2)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // v2 drops `legacy` and adds `email`, and says so.
    let v2 = hydrate_live(
        &server,
        &snapshot,
        "orders_v2",
        Some(&["id", "name", "email", "src"]),
    )
    .await;
    wait_for(&mut conn, "v2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let (reads, saw_v2) = reader.await.unwrap();
        assert!(reads > 10 && saw_v2, "{reads} reads");
    }
    assert_eq!(
        columns(&mut conn, "orders_eu").await,
        ["id", "name", "email", "src"]
    );
    history_of(&server, "orders_eu", 2).await;
    let h = history_of(&server, "orders", 2).await;
    assert_eq!(
        (h.len(), h[0]["from"].as_str(), h[0]["to"].as_str()),
        (2, Some("orders_v1"), Some("orders_v2")),
        "{h:?}"
    );
    assert_eq!(h[0]["hydration_id"], v2.as_str());
    // v1's hydration was superseded (just after the remap is recorded);
    // its read lease had ended when it first went live.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let old = send(&server, Method::GET, &format!("/v1/hydrations/{v1}"), None).await;
        if old.body["state"] == "superseded" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", old.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = send(&server, Method::GET, &format!("/v1/leases/{v1}"), None).await;
    assert_eq!(lease.body["state"], "released", "{}", lease.body);
    // v1 is no view's target any more.
    let orphans = send(
        &server,
        Method::GET,
        "/v1/containers/analytics/orphans",
        None,
    )
    .await;
    assert_eq!(
        orphans.body["orphans"][0]["target"], "orders_v1",
        "{}",
        orphans.body
    );

    // A remap to a table without `name` is refused and changes nothing.
    let refused = send(
        &server,
        Method::POST,
        "/v1/views/analytics/orders/remap",
        Some(json!({ "target": "orders_v3", "reason": "try v3" })),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error_type()),
        (409, Some("remap_refused")),
        "{}",
        refused.body
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`name`"),
        "{}",
        refused.body
    );
    assert_eq!(both(&mut conn).await.unwrap(), ("v2".into(), "v2".into()));
    assert_eq!(history(&server, "orders").await.len(), 2);
    let missing = send(
        &server,
        Method::POST,
        "/v1/views/analytics/orders/remap",
        Some(json!({ "target": "orders_v9", "reason": "typo" })),
    )
    .await;
    assert_eq!(missing.status, 409, "{}", missing.body);

    // Rollback brings v1 back, with the columns it had.
    for view in ["orders", "orders_eu"] {
        let back = send(
            &server,
            Method::POST,
            &format!("/v1/views/analytics/{view}/rollback"),
            Some(json!({ "reason": "v2 has a bug" })),
        )
        .await;
        assert_eq!(back.status, 200, "{}", back.body);
        assert_eq!(back.body["target"], "orders_v1");
        assert_eq!(back.body["history"][0]["kind"], "rollback");
    }
    assert_eq!(both(&mut conn).await.unwrap(), ("v1".into(), "v1".into()));
    assert_eq!(
        columns(&mut conn, "orders").await,
        ["id", "name", "legacy", "src"]
    );

    // Automatic remaps can be turned off per view.
    let off = send(
        &server,
        Method::PUT,
        "/v1/views/analytics/orders",
        Some(json!({ "auto_remap": false })),
    )
    .await;
    assert_eq!(off.body["auto_remap"], false, "{}", off.body);
    let unknown = send(&server, Method::GET, "/v1/views/analytics/nope", None).await;
    assert_eq!(
        (unknown.status, unknown.error_type()),
        (404, Some("view_not_found"))
    );
    let listed = send(&server, Method::GET, "/v1/views?container=analytics", None).await;
    assert_eq!(
        listed.body["views"].as_array().unwrap().len(),
        2,
        "{}",
        listed.body
    );
}

/// Killed with -9 after the hydration is live and before the outbox ran:
/// after restart the views are switched, and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_live_and_the_remap_switches_after_restart_once() {
    a_crash_between_live_and_the_remap_switches_after_restart_once_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_live_and_the_remap_switches_after_restart_once_dynamodb() {
    a_crash_between_live_and_the_remap_switches_after_restart_once_on(Backend::Dynamodb).await
}

async fn a_crash_between_live_and_the_remap_switches_after_restart_once_on(backend: Backend) {
    let url = container_database().await;
    let (mut server, snapshot) =
        setup_on(backend, &["--outbox-interval-seconds", "3600"], &url).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    hydrate_live(&server, &snapshot, "orders_v1", None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        both(&mut conn).await.is_err(),
        "no view before the outbox runs"
    );
    server.kill9();
    server.restart().await;
    wait_for(&mut conn, "v1").await;
    for view in ["orders", "orders_eu"] {
        assert_eq!(history_of(&server, view, 1).await.len(), 1, "{view}");
    }
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(history(&server, "orders").await.len(), 1);
    let events = send(&server, Method::GET, "/v1/events?kind=view_remapped", None).await;
    assert_eq!(
        events.body["events"].as_array().unwrap().len(),
        2,
        "{}",
        events.body
    );
}

/// Glue's view of an Athena view (null when Glue has none).
async fn glue_view(catalog: &Value, name: &str) -> Value {
    serde_json::from_str(&py(catalog, &["glue-table", name]).await).unwrap()
}

/// A Glue container in moto: a live hydration's view is created as an
/// Athena view (a `VIRTUAL_VIEW` table with its Presto document), moved to
/// the next hydration's table, rolled back; a missing column is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_views_in_a_glue_container_follow_remaps() {
    athena_views_in_a_glue_container_follow_remaps_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_views_in_a_glue_container_follow_remaps_dynamodb() {
    athena_views_in_a_glue_container_follow_remaps_on(Backend::Dynamodb).await
}

async fn athena_views_in_a_glue_container_follow_remaps_on(backend: Backend) {
    let lake = crate::lake::Lake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::snapshots::glue_config(dir.path(), &lake);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n{text}",
        lake.url
    );
    std::fs::write(&config, text).unwrap();
    std::env::set_var("LAKE_KEY_ID", "testing");
    std::env::set_var("LAKE_SECRET", "testing");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let config = config.display().to_string();
    let server = backend
        .server_with(&["--config", &config, "--refresh-interval-seconds", "3600"])
        .await;
    let catalog = crate::snapshots::glue_catalog(&lake);
    py(&catalog, &["create", TABLE]).await;
    let snapshot = py(&catalog, &["append", TABLE, "2"]).await;
    py(&catalog, &["create", "analytics.orders_v1"]).await;
    py(&catalog, &["create", "analytics.orders_v2"]).await;
    let put = server
        .client
        .put_table(TABLE, json!({ "catalog": "lake" }))
        .await
        .unwrap();
    assert_eq!(put.status, 201, "{}", put.body);
    refresh(&server).await;
    let put = send(
        &server,
        Method::PUT,
        "/v1/containers/athena",
        Some(json!({ "kind": "glue", "database": "analytics" })),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);

    let hydrate = |target: &'static str| {
        let (server, snapshot) = (&server, snapshot.clone());
        async move {
            let created = send(
                server,
                Method::POST,
                "/v1/hydrations",
                Some(json!({ "table": TABLE, "container": "athena", "target": target, "views": ["orders"], "run_id": "run-1" })),
            )
            .await;
            assert_eq!(created.status, 201, "{}", created.body);
            let id = created.body["id"].as_str().unwrap().to_owned();
            let live = send(
                server,
                Method::POST,
                &format!("/v1/hydrations/{id}/progress"),
                Some(
                    json!({ "token": created.body["session"]["token"], "phase": "catching_up",
                             "snapshot_id": snapshot.parse::<i64>().unwrap() }),
                ),
            )
            .await;
            assert_eq!(live.body["state"], "live", "{}", live.body);
        }
    };
    let reads = |want: &'static str| {
        let catalog = catalog.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let view = glue_view(&catalog, "analytics.orders").await;
                if view["Parameters"]["sluice.target"] == want {
                    return view;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Glue view never read {want}: {view}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    hydrate("orders_v1").await;
    let view = reads("orders_v1").await;
    history_in(&server, "athena", "orders", 1).await;
    assert_eq!(view["TableType"], "VIRTUAL_VIEW", "{view}");
    let sql = view["PrestoView"]["originalSql"].as_str().unwrap();
    assert!(sql.contains("\"analytics\".\"orders_v1\""), "{sql}");
    let columns: Vec<&str> = view["StorageDescriptor"]["Columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "name"]);

    hydrate("orders_v2").await;
    let view = reads("orders_v2").await;
    history_in(&server, "athena", "orders", 2).await;
    assert!(view["PrestoView"]["originalSql"]
        .as_str()
        .unwrap()
        .contains("orders_v2"));

    let refused = send(
        &server,
        Method::POST,
        "/v1/views/athena/orders/remap",
        Some(json!({ "target": "orders_v1", "columns": ["id", "nope"], "reason": "typo" })),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error_type()),
        (409, Some("remap_refused")),
        "{}",
        refused.body
    );
    assert_eq!(
        glue_view(&catalog, "analytics.orders").await["Parameters"]["sluice.target"],
        "orders_v2"
    );

    let back = send(
        &server,
        Method::POST,
        "/v1/views/athena/orders/rollback",
        Some(json!({ "reason": "v2 is wrong" })),
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.body);
    reads("orders_v1").await;
}

/// A remap by hand, answered within `within` (a test fails rather than
/// hangs), and how long it took.
async fn remap_within(
    server: &Server,
    container: &str,
    view: &str,
    body: Value,
    within: Duration,
) -> (crate::raw::Answer, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(
        within,
        send(
            server,
            Method::POST,
            &format!("/v1/views/{container}/{view}/remap"),
            Some(body),
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("the remap of {container}/{view} was not answered within {within:?}")
    });
    (answer, started.elapsed())
}

/// A PostgreSQL "server" that accepts connections and never answers.
async fn silent_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// A container whose server accepts connections and never answers: its
/// remaps fail within seconds (503, retried by the outbox later) and
/// hold back no other container's, automatic or by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_never_answers_holds_back_no_other() {
    let url = container_database().await;
    let (server, snapshot) = setup_on(Backend::Sqlite, &[], &url).await;
    let port = silent_server().await;
    let secret = "hush-s3cret";
    let put = send(
        &server,
        Method::PUT,
        "/v1/containers/silent",
        Some(json!({ "kind": "postgres", "url": format!("postgres://u:{secret}@127.0.0.1:{port}/db") })),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);
    // Its live hydration's remap is under way (and failing) in the outbox
    // while the healthy container's hydration goes live.
    hydrate_live_in(&server, &snapshot, "silent", "orders_v1", None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    hydrate_live(&server, &snapshot, "orders_v1", None).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    wait_for(&mut conn, "v1").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the healthy container's views switched only after {:?}",
        started.elapsed()
    );

    // By hand: the silent container answers 503 within seconds, and a
    // remap in the healthy one meanwhile is not delayed.
    let silent = remap_in_background(
        &server,
        "silent/orders",
        json!({ "target": "orders_v2", "reason": "try" }),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (healthy, took) = remap_within(
        &server,
        "analytics",
        "orders_eu",
        json!({ "target": "orders_v2", "columns": ["id", "name", "email", "src"], "reason": "v2" }),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert!(
        took < Duration::from_secs(3),
        "the healthy remap took {took:?}"
    );
    let (status, body, took) = silent.await.unwrap();
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("container_unavailable")),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the silent remap took {took:?}"
    );
    // Neither the answer, the events nor the log show its password; the
    // outbox says it will retry.
    assert!(!body.to_string().contains(secret), "{body}");
    let events = send(&server, Method::GET, "/v1/events", None).await;
    assert!(!events.body.to_string().contains(secret));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log_text().contains("will retry") {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!server.log_text().contains(secret));
}

/// A consumer's transaction that read a view holds its lock: a remap of
/// it gives up within seconds (503, worth retrying) instead of waiting,
/// so new readers of the view queue behind it only that long; once the
/// consumer is done, the remap goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_holding_a_view_makes_its_remap_fail_fast_not_stall_readers() {
    let url = container_database().await;
    let (server, snapshot) = setup_on(Backend::Sqlite, &[], &url).await;
    hydrate_live(&server, &snapshot, "orders_v1", None).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    wait_for(&mut conn, "v1").await;
    history_of(&server, "orders", 1).await;

    let mut consumer = PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut consumer).await.unwrap();
    sqlx::query("SELECT count(*) FROM orders")
        .execute(&mut consumer)
        .await
        .unwrap();
    let to_v2 =
        json!({ "target": "orders_v2", "columns": ["id", "name", "email", "src"], "reason": "v2" });
    let remap = remap_in_background(&server, "analytics/orders", to_v2.clone());
    // A new reader arrives while the remap waits for the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut reader = PgConnection::connect(&url).await.unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders").fetch_one(&mut reader),
    )
    .await
    .expect("the reader is not held for long")
    .unwrap();
    assert_eq!(read, 100);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the reader waited {:?}",
        started.elapsed()
    );
    let (status, body, took) = remap.await.unwrap();
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (503, Some("container_unavailable")),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "the remap took {took:?}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("lock"),
        "{body}"
    );
    assert_eq!(history(&server, "orders").await.len(), 1);

    // The consumer is done: the remap goes through.
    sqlx::query("COMMIT").execute(&mut consumer).await.unwrap();
    let (done, _) = remap_within(
        &server,
        "analytics",
        "orders",
        to_v2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let src: String = sqlx::query_scalar("SELECT max(src) FROM orders")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(src, "v2");
}

/// What PostgreSQL refuses for the change itself answers 409
/// `remap_refused` (not 503, which clients retry) and changes nothing: a
/// column whose type would change, a "view" that is a table, a view in a
/// schema that does not exist; so do a view remapped onto itself and a
/// target in a system schema. A live hydration's remap PostgreSQL refuses
/// ends with a `view_remap_refused` event naming why, and the container's
/// password is in no answer and no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaps_the_container_refuses_answer_409_and_change_nothing() {
    let url = container_database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE orders_text AS SELECT id::text AS id, name, legacy, 'text' AS src FROM orders_v1",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // The server trusts local connections: the password is never checked,
    // but is in the URL sluice holds.
    let secret = "pw-s3cret-9";
    let with_password = url.replacen("postgres@", &format!("postgres:{secret}@"), 1);
    assert_ne!(with_password, url, "{url}");
    let (server, snapshot) = setup_on(Backend::Sqlite, &[], &with_password).await;
    hydrate_live(&server, &snapshot, "orders_v1", None).await;
    wait_for(&mut conn, "v1").await;
    history_of(&server, "orders", 1).await;
    history_of(&server, "orders_eu", 1).await;

    let refused = |view: &'static str, body: Value, why: &'static str| {
        let server = &server;
        async move {
            let (answer, _) =
                remap_within(server, "analytics", view, body, Duration::from_secs(30)).await;
            assert_eq!(
                (answer.status, answer.error_type()),
                (409, Some("remap_refused")),
                "{why}: {}",
                answer.body
            );
            assert!(!answer.body.to_string().contains(secret), "{}", answer.body);
            answer.body["error"]["message"].as_str().unwrap().to_owned()
        }
    };
    let m = refused(
        "orders",
        json!({ "target": "orders_text", "reason": "id as text" }),
        "a column type change",
    )
    .await;
    assert!(m.contains("cannot change data type"), "{m}");
    let m = refused(
        "orders_v2",
        json!({ "target": "orders_v1", "columns": ["id", "name", "src"], "reason": "a table" }),
        "a view that is a table",
    )
    .await;
    assert!(m.contains("not a view"), "{m}");
    let m = refused(
        "nowhere.orders",
        json!({ "target": "orders_v1", "reason": "no schema" }),
        "a missing schema",
    )
    .await;
    assert!(m.contains("nowhere"), "{m}");
    for target in ["orders", "public.orders"] {
        let m = refused(
            "orders",
            json!({ "target": target, "reason": "itself" }),
            "a view onto itself",
        )
        .await;
        assert!(m.contains("its own target"), "{m}");
    }
    let (system, _) = remap_within(
        &server,
        "analytics",
        "orders",
        json!({ "target": "pg_catalog.pg_authid", "columns": ["rolname", "rolpassword"], "reason": "hashes" }),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        (400..500).contains(&system.status) && system.error_type().is_some(),
        "{}",
        system.body
    );
    // Nothing changed.
    assert_eq!(both(&mut conn).await.unwrap(), ("v1".into(), "v1".into()));
    assert_eq!(
        columns(&mut conn, "orders").await,
        ["id", "name", "legacy", "src"]
    );
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public.orders_v2') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(exists);
    assert_eq!(history(&server, "orders").await.len(), 1);

    // Automatically: refused once, with an event that says why.
    let id = hydrate_live(&server, &snapshot, "orders_text", None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let events = send(
            &server,
            Method::GET,
            "/v1/events?kind=view_remap_refused",
            None,
        )
        .await;
        let found = events.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["lease_id"] == id.as_str())
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal event: {}",
            events.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error = event["data"]["error"].as_str().unwrap();
    assert!(error.contains("cannot change data type"), "{event}");
    assert_eq!(both(&mut conn).await.unwrap(), ("v1".into(), "v1".into()));
    // The refusal shows on the hydration and on its views, not only in
    // the event log.
    let h = send(&server, Method::GET, &format!("/v1/hydrations/{id}"), None).await;
    assert_eq!(h.body["remap"]["state"], "failed", "{}", h.body);
    let why = h.body["remap"]["error"].as_str().unwrap();
    assert!(why.contains("cannot change data type"), "{}", h.body);
    assert!(h.body["remap"]["next_attempt_at"].is_null(), "{}", h.body);
    let view = send(&server, Method::GET, "/v1/views/analytics/orders", None).await;
    assert_eq!(
        view.body["pending_remap"]["state"], "failed",
        "{}",
        view.body
    );
    assert_eq!(view.body["pending_remap"]["hydration_id"], id.as_str());
    let events = send(&server, Method::GET, "/v1/events", None).await;
    assert!(!events.body.to_string().contains(secret));
    assert!(!server.log_text().contains(secret));
}

/// A container confines its targets and views to the schemas it lists:
/// a hydration naming another is refused at creation (422
/// `schema_not_allowed`), and one created before the list narrowed has its
/// remap refused, which shows on the hydration and the view. A remap the
/// container cannot make now (its server unreachable) shows as pending,
/// with its attempts, last error and next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go() {
    a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_postgres() {
    a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_on(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_dynamodb() {
    a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_on(Backend::Dynamodb).await
}

async fn a_container_keeps_views_in_its_schemas_and_shows_how_remaps_go_on(backend: Backend) {
    let url = container_database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let (server, snapshot) = setup_on(backend, &[], &url).await;
    let put = |schemas: Value, url: &str| {
        send(
            &server,
            Method::PUT,
            "/v1/containers/analytics",
            Some(json!({ "kind": "postgres", "url": url, "schemas": schemas })),
        )
    };
    for bad in [
        json!(["pg_catalog"]),
        json!(["a b"]),
        json!(["x", "x"]),
        json!([""]),
    ] {
        let answer = put(bad.clone(), &url).await;
        crate::errors::assert_error(&format!("schemas {bad}"), &answer, 422, "invalid_request");
    }
    let answer = put(json!(["analytics"]), &url).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["schemas"], json!(["analytics"]));
    let create = |target: &str, views: Value| {
        send(
            &server,
            Method::POST,
            "/v1/hydrations",
            Some(json!({ "table": TABLE, "container": "analytics",
                         "target": target, "views": views, "run_id": "run-1" })),
        )
    };
    for (target, views) in [
        ("orders_v1", json!(["analytics.orders"])),
        ("analytics.orders_v1", json!(["orders"])),
        ("analytics.orders_v1", json!(["finance.orders"])),
    ] {
        let answer = create(target, views.clone()).await;
        crate::errors::assert_error(
            &format!("{target} {views}"),
            &answer,
            422,
            "schema_not_allowed",
        );
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`analytics`"), "{message}");
    }

    // Allowed when created; the list narrows before it goes live.
    let answer = put(json!(["public"]), &url).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let created = create("public.orders_v1", json!(["public.orders"])).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(put(json!(["analytics"]), &url).await.status, 200);
    let live = send(
        &server,
        Method::POST,
        &format!("/v1/hydrations/{id}/progress"),
        Some(
            json!({ "token": created.body["session"]["token"], "phase": "catching_up",
                     "snapshot_id": snapshot.parse::<i64>().unwrap() }),
        ),
    )
    .await;
    assert_eq!(live.body["state"], "live", "{}", live.body);
    let refused = crate::harness::until(
        "the remap refused",
        Duration::from_secs(30),
        || async {
            send(&server, Method::GET, &format!("/v1/hydrations/{id}"), None)
                .await
                .body
        },
        |h| h["remap"]["state"] == "failed",
        || server.log_text(),
    )
    .await;
    let why = refused["remap"]["error"].as_str().unwrap();
    assert!(why.contains("does not allow"), "{refused}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public.orders') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        !exists,
        "a view was made in a schema the container no longer allows"
    );

    // Its server unreachable: pending, retried, and saying why.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("postgres://postgres@127.0.0.1:{closed}/nowhere");
    assert_eq!(put(json!([]), &unreachable).await.status, 200);
    let id = hydrate_live(&server, &snapshot, "orders_v1", None).await;
    let pending = crate::harness::until(
        "the remap retried",
        Duration::from_secs(30),
        || async {
            send(&server, Method::GET, &format!("/v1/hydrations/{id}"), None)
                .await
                .body
        },
        |h| h["remap"]["attempts"].as_u64().unwrap_or(0) >= 1,
        || server.log_text(),
    )
    .await;
    assert_eq!(pending["remap"]["state"], "pending", "{pending}");
    assert!(
        pending["remap"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{pending}"
    );
    assert!(pending["remap"]["next_attempt_at"].is_string(), "{pending}");
    let listed = send(&server, Method::GET, "/v1/hydrations?state=live", None).await;
    let shown = listed.body["hydrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(shown["remap"]["state"], "pending", "{shown}");
}
