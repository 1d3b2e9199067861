//! Several sluice replicas sharing one PostgreSQL database.

use crate::harness::{fresh_database, Server};
use crate::leases::{read, table, wait_for_waiters, write};
use serde_json::json;
use sluice_client::client::Acquire;
use sluice_client::history::{self, Report};
use sluice_client::load::{self, LoadConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_a_writer_long_polling_on_another() {
    let db = fresh_database().await;
    let (a, b) = (
        Server::on_database(&db).await,
        Server::on_database(&db).await,
    );
    table(&a.client, "sales.orders", json!({})).await;
    let r = a
        .client
        .acquire("sales.orders", &read("hydrate"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let writer = {
        let c = b.client.clone();
        tokio::spawn(async move {
            let answer = c
                .acquire(
                    "sales.orders",
                    &Acquire {
                        wait_seconds: 30,
                        ..write("compact")
                    },
                )
                .await
                .unwrap();
            (answer, Instant::now())
        })
    };
    wait_for_waiters(&a.client, "sales.orders", 1).await;
    let released_at = Instant::now();
    assert_eq!(
        a.client.release(&r.lease_id, r.token).await.unwrap().status,
        200
    );
    let (answer, answered_at) = writer.await.unwrap();
    assert_eq!(answer.status, 201, "{answer:?}");
    let delay = answered_at.duration_since(released_at);
    eprintln!("replica B answered {delay:?} after the release on replica A");
    assert!(
        delay < Duration::from_secs(5),
        "answered only after {delay:?}: not woken by NOTIFY"
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
