//! Change detection: the snapshot watcher finds what moved from the
//! catalog's listing (Glue `GetTables` pages; the embedded SQL catalog's
//! one query) and reads metadata only for that, on the leader only. Calls
//! are counted at a proxy in front of moto (`scripts/count-calls.py`).

use crate::harness::{fresh_database, Backend, Server};
use crate::lake::{venv, Lake};
use crate::snapshots::{glue_catalog, glue_config_at, py, sql_catalog};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A counting proxy in front of moto.
struct Counted {
    url: String,
    child: Child,
}

impl Counted {
    async fn start(upstream: &str) -> Counted {
        let port = crate::harness::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/count-calls.py");
        let child = Command::new(venv().join("bin/python"))
            .args([script, &port.to_string(), upstream])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the counting proxy");
        let counted = Counted {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while counted.counts_now().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "the counting proxy did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        counted
    }

    async fn counts_now(&self) -> Option<Value> {
        let answer = reqwest::get(format!("{}/counts", self.url)).await.ok()?;
        answer.json().await.ok()
    }

    /// Calls of `key` so far (`GetTables`, `GetTable`, `GET:metadata`).
    async fn count(&self, key: &str) -> i64 {
        self.counts_now().await.expect("the proxy answers")[key]
            .as_i64()
            .unwrap_or(0)
    }

    /// Every catalog call: Glue's and S3's.
    async fn total(&self) -> i64 {
        let counts = self.counts_now().await.expect("the proxy answers");
        counts
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_i64)
            .sum()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Register `names`, 32 at a time.
async fn register(server: &Server, names: &[String]) {
    use futures::StreamExt;
    futures::stream::iter(names)
        .for_each_concurrent(32, |name| async move {
            let path = format!("/v1/tables/{name}");
            let answer = server.call(Method::PUT, &path, Some(json!({}))).await;
            assert_eq!(answer.status, 201, "PUT {path}: {}", answer.body);
        })
        .await;
}

/// Wait until `server` finished `passes` more reconcile passes than it had.
async fn passes_after(server: &Server, passes: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = server
            .metric("sluice_snapshot_reconcile_passes_total")
            .await;
        if now > passes {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no reconcile pass after {passes}: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,000 Iceberg tables in moto's Glue, registered in sluice; 10 commit.
/// A pass then lists the database in 10 `GetTables` pages and reads the
/// metadata of exactly the 10 that moved, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_pass_over_a_thousand_glue_tables_reads_only_the_ten_that_moved() {
    let lake = Lake::start().await;
    let proxy = Counted::start(&lake.url).await;
    let catalog = glue_catalog(&lake);
    py(&catalog, &["wide", "wide.t", "1000"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = glue_config_at(dir.path(), &proxy.url, &proxy.url, false);
    std::env::set_var("LAKE_KEY_ID", "testing");
    std::env::set_var("LAKE_SECRET", "testing");
    let server = Backend::Sqlite
        .server_with(&[
            "--config",
            &config.display().to_string(),
            "--refresh-interval-seconds",
            "3",
            "--catalog-calls-per-second",
            "400",
        ])
        .await;
    let names: Vec<String> = (0..1000).map(|i| format!("wide.t{i:04}")).collect();
    register(&server, &names).await;
    // Every table is read once (new to the log), then passes read nothing.
    let deadline = Instant::now() + Duration::from_secs(120);
    while server
        .metric("sluice_catalog_calls_total{kind=\"read\"}")
        .await
        < 1000
    {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let passes = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    // Two more passes: the second is a quiet one (listing only, well
    // within the interval), so the counts below are read between passes.
    let passes = passes_after(&server, passes + 1, Duration::from_secs(60)).await;
    let quiet = (
        proxy.count("GetTables").await,
        proxy.count("GetTable").await,
        proxy.count("GET:metadata").await,
    );
    let passes_quiet = passes_after(&server, passes, Duration::from_secs(30)).await;
    // At most 10 pages of 100 a pass (moto answers them all in one).
    let pages = proxy.count("GetTables").await - quiet.0;
    let passes_seen = (passes_quiet - passes) as i64;
    assert!(
        (passes_seen..=10 * passes_seen).contains(&pages),
        "{pages} GetTables pages over {passes_seen} passes: {}",
        server.log_text()
    );
    assert_eq!(proxy.count("GetTable").await, quiet.1, "nothing moved");
    assert_eq!(proxy.count("GET:metadata").await, quiet.2, "nothing moved");

    // Ten commits, straight to moto (not through the proxy); passes go on
    // meanwhile and read each moved table once.
    let before = (
        proxy.count("GetTables").await,
        proxy.count("GetTable").await,
        proxy.count("GET:metadata").await,
    );
    let from = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    let moved: Vec<String> = (0..10)
        .map(|i| format!("wide.t{:04}", 37 + i * 97))
        .collect();
    let mut ids = Vec::new();
    for table in &moved {
        ids.push(py(&catalog, &["append", table, "1"]).await);
    }
    // A pass that began after the last commit, and one more to see it quiet.
    let last = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    let to = passes_after(&server, last + 1, Duration::from_secs(30)).await;
    assert_eq!(
        proxy.count("GetTable").await - before.1,
        10,
        "exactly the ten that moved"
    );
    assert_eq!(proxy.count("GET:metadata").await - before.2, 10);
    let pages = proxy.count("GetTables").await - before.0;
    assert!(
        pages <= 10 * (to - from) as i64 + 10,
        "{pages} pages over {} passes",
        to - from
    );
    for (table, id) in moved.iter().zip(&ids) {
        let page = server
            .expect(
                Method::GET,
                &format!("/v1/tables/{table}/snapshots"),
                None,
                200,
            )
            .await;
        assert_eq!(
            page["catalog_state"]["current_snapshot_id"].to_string(),
            *id,
            "{table}: {page}"
        );
    }
    // A table that leaves the catalog is seen gone without a call for it.
    lake_delete(&lake, "wide", "t0999").await;
    let before = proxy.count("GetTable").await;
    let from = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    passes_after(&server, from, Duration::from_secs(30)).await;
    let page = server
        .expect(Method::GET, "/v1/tables/wide.t0999/snapshots", None, 200)
        .await;
    assert!(
        page["catalog_state"]["refresh_error"]
            .as_str()
            .is_some_and(|e| e.contains("has no table")),
        "{page}"
    );
    assert_eq!(proxy.count("GetTable").await, before);
}

async fn lake_delete(lake: &Lake, database: &str, table: &str) {
    let answer = reqwest::Client::new()
        .post(&lake.url)
        .header("X-Amz-Target", "AWSGlue.DeleteTable")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(json!({"DatabaseName": database, "Name": table}).to_string())
        .send()
        .await
        .expect("DeleteTable");
    assert!(answer.status().is_success());
}

/// The embedded SQL catalog is listed in one query: a commit to one of
/// three tables costs one metadata read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_catalog_is_listed_in_one_query() {
    let server = Server::sqlite_with(&["--refresh-interval-seconds", "1"]).await;
    let catalog = sql_catalog(&server.data_dir());
    let names: Vec<String> = (0..3).map(|i| format!("emb.t{i}")).collect();
    for name in &names {
        py(&catalog, &["create", name]).await;
    }
    register(&server, &names).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .metric("sluice_catalog_calls_total{kind=\"read\"}")
        .await
        < 3
    {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let passes = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    let passes = passes_after(&server, passes, Duration::from_secs(10)).await;
    let reads = server
        .metric("sluice_catalog_calls_total{kind=\"read\"}")
        .await;
    let listings = server
        .metric("sluice_catalog_calls_total{kind=\"listing\"}")
        .await;
    let id = py(&catalog, &["append", "emb.t1", "2"]).await;
    let last = server
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    let after = passes_after(&server, last + 1, Duration::from_secs(10)).await;
    assert_eq!(
        server
            .metric("sluice_catalog_calls_total{kind=\"read\"}")
            .await,
        reads + 1
    );
    let listed = server
        .metric("sluice_catalog_calls_total{kind=\"listing\"}")
        .await
        - listings;
    assert!(listed <= after - passes + 1, "one query a pass: {listed}");
    let page = server
        .expect(Method::GET, "/v1/tables/emb.t1/snapshots", None, 200)
        .await;
    assert_eq!(page["catalog_state"]["current_snapshot_id"].to_string(), id);
}

/// Two replicas, each reaching moto through its own counting proxy: only
/// the leader lists and reads; the follower makes no catalog call. Killed,
/// the leader is replaced within its lease's TTL, and the other replica
/// takes the reconcile over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_calls_the_catalog_and_a_follower_takes_over() {
    let lake = Lake::start().await;
    let catalog = glue_catalog(&lake);
    py(&catalog, &["wide", "two.t", "30"]).await;
    let db = fresh_database().await;
    let mut replicas = Vec::new();
    let mut proxies = Vec::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    std::env::set_var("LAKE_KEY_ID", "testing");
    std::env::set_var("LAKE_SECRET", "testing");
    for dir in &dirs {
        let proxy = Counted::start(&lake.url).await;
        let config = glue_config_at(dir.path(), &proxy.url, &proxy.url, false);
        let server = Server::on_database_with(
            &db,
            &[
                "--auth",
                "off",
                "--config",
                &config.display().to_string(),
                "--refresh-interval-seconds",
                "1",
                "--leader-ttl-seconds",
                "3",
            ],
        )
        .await;
        proxies.push(proxy);
        replicas.push(server);
    }
    let names: Vec<String> = (0..30).map(|i| format!("two.t{i:04}")).collect();
    register(&replicas[0], &names).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = "sluice_catalog_calls_total{kind=\"read\"}";
    let leader = loop {
        let mut reads = Vec::new();
        for r in &replicas {
            reads.push(r.metric(read).await);
        }
        if let Some(i) = reads.iter().position(|n| *n >= 30) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no replica read the tables: {reads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower = 1 - leader;
    assert!(proxies[leader].count("GetTables").await >= 1);
    assert!(proxies[leader].count("GetTable").await >= 30);
    // The follower waits a few of the leader's passes, and calls nothing.
    let passes = replicas[leader]
        .metric("sluice_snapshot_reconcile_passes_total")
        .await;
    passes_after(&replicas[leader], passes + 2, Duration::from_secs(20)).await;
    assert_eq!(
        proxies[follower].total().await,
        0,
        "the follower called the catalog"
    );
    assert_eq!(
        replicas[follower]
            .metric("sluice_snapshot_reconcile_passes_total")
            .await,
        0
    );

    // The leader dies; the follower leads within the TTL and reconciles.
    replicas[leader].kill9();
    let killed = Instant::now();
    passes_after(&replicas[follower], 0, Duration::from_secs(20)).await;
    let took = killed.elapsed();
    assert!(proxies[follower].count("GetTables").await >= 1);
    eprintln!("the follower reconciled {took:?} after the leader died");
    // Its first pass read what the log already had: nothing moved.
    assert_eq!(proxies[follower].count("GetTable").await, 0);
    let id = py(&catalog, &["append", "two.t0003", "1"]).await;
    let page = crate::harness::until(
        "the new leader's log",
        Duration::from_secs(20),
        || async {
            replicas[follower]
                .expect(Method::GET, "/v1/tables/two.t0003/snapshots", None, 200)
                .await
        },
        |page| page["catalog_state"]["current_snapshot_id"].as_i64() == id.parse::<i64>().ok(),
        || replicas[follower].log_text(),
    )
    .await;
    assert!(page["catalog_state"]["refresh_error"].is_null());
}
