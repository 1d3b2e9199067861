//! Several sluice replicas sharing one PostgreSQL database.

use crate::harness::{fresh_database, Server};
use sluice_client::history::{self, Report};
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
    load::setup(&config, load::load_table_settings())
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

    let events = a.client.all_events(0, None).await.unwrap();
    let mut report = Report::default();
    history::check_holds(&result.holds, &mut report);
    history::check_events(&result.holds, &events, &mut report);
    assert!(report.ok(), "{:#?}", report.violations);
}
