//! Several sluice replicas sharing one PostgreSQL database.

use crate::harness::{fresh_database, Server};
use sluice_client::history;
use sluice_client::load::{self, LoadConfig};
use sluice_client::wake;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_a_writer_long_polling_on_another() {
    let db = fresh_database().await;
    let (a, b) = (
        Server::on_database(&db).await,
        Server::on_database(&db).await,
    );
    // The reader holds and releases on A; the writer long-polls on B.
    let samples = wake::wake_latencies(&a.url, &b.url, "sales.orders", 1, None)
        .await
        .unwrap();
    eprintln!(
        "replica B answered {:?} after the release on replica A",
        samples[0]
    );
    assert!(
        samples[0] < Duration::from_secs(5),
        "answered only after {:?}: not woken by NOTIFY",
        samples[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_across_two_replicas_passes_the_checker() {
    let db = fresh_database().await;
    let (a, b) = (
        Server::on_database(&db).await,
        Server::on_database(&db).await,
    );
    let config = LoadConfig {
        urls: vec![a.url.clone(), b.url.clone()],
        clients: 16,
        tables: 8,
        duration: Duration::from_secs(3),
        hold: Duration::from_millis(2),
        ..LoadConfig::default()
    };
    load::setup(&config, &load::load_table_settings())
        .await
        .unwrap();
    let result = load::run(config).await.unwrap();
    assert_eq!(result.summary.errors, 0, "{:?}", result.summary);
    assert!(
        result.holds.len() > 50,
        "too little load: {:?}",
        result.summary
    );
    let writes = result.holds.iter().filter(|h| h.mode == "write").count();
    assert!(writes > 5, "writers must get through: {writes}");

    let events = a.client.typed().all_events(0, None).await.unwrap();
    let report = history::check(&result.holds, &events);
    assert!(report.ok(), "{:#?}", report.violations);
}

/// Runs on two replicas race for the same streams: each open is exclusive
/// across replicas (row locks), so every commit extends the bookmark it was
/// opened on and each stream's history is one line, with no gap and no fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_racing_on_two_replicas_never_fork_a_streams_history() {
    let db = fresh_database().await;
    let (a, b) = (
        Server::on_database(&db).await,
        Server::on_database(&db).await,
    );
    let streams = ["cdc.orders", "cdc.customers"];
    let answer = a
        .client
        .put_table("sales.orders", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{answer:?}");
    for stream in streams {
        let answer = a
            .client
            .put_stream(stream, &serde_json::json!({ "table": "sales.orders" }))
            .await
            .unwrap();
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let client = if i % 2 == 0 { &a.client } else { &b.client }.clone();
            let stream = streams[i % streams.len()];
            tokio::spawn(async move {
                let (mut commits, mut refused) = (0, 0);
                while std::time::Instant::now() < deadline {
                    let opened = client
                        .open_batch(stream, &format!("run-{i}"), 30)
                        .await
                        .unwrap();
                    if opened.status == 409 {
                        assert_eq!(opened.error_type(), Some("batch_open"), "{opened:?}");
                        refused += 1;
                        continue;
                    }
                    assert_eq!(opened.status, 201, "{opened:?}");
                    let batch = &opened.body;
                    let mut files: Vec<String> =
                        serde_json::from_value(batch["bookmark"]["load"]["files_done"].clone())
                            .unwrap();
                    files.push(format!("LOAD{:08X}.csv", files.len() + 1));
                    let body = serde_json::json!({
                        "token": batch["token"],
                        "bookmark": { "load": { "files_done": files } },
                    });
                    let committed = client
                        .commit_batch(stream, batch["batch_id"].as_str().unwrap(), &body)
                        .await
                        .unwrap();
                    assert_eq!(committed.status, 200, "{committed:?}");
                    commits += 1;
                }
                (commits, refused)
            })
        })
        .collect();
    let (mut commits, mut refused) = (0, 0);
    for run in runs {
        let (c, r) = run.await.unwrap();
        commits += c;
        refused += r;
    }
    assert!(
        commits > 10 && refused > 0,
        "{commits} commits, {refused} refusals"
    );
    let mut versions_seen = 0;
    for stream in streams {
        let history = b.client.history(stream).await.unwrap();
        versions_seen += history.len() - 1;
        for (i, version) in history.iter().enumerate() {
            assert_eq!(version["version"], i as i64 + 1, "a gap: {history:#?}");
            // Version n+1 holds exactly n files: each commit added one file
            // to the bookmark its batch was opened on.
            let files = version["load"]["files_done"].as_array().unwrap();
            assert_eq!(files.len(), i, "a fork or a lost commit: {version}");
        }
    }
    assert_eq!(versions_seen, commits, "every commit is one version");
}
