//! kill -9 during load: nothing acknowledged is lost.

use crate::harness::Server;
use crate::on_every_backend;
use sluice_client::history;
use sluice_client::load::{self, LoadConfig};
use std::time::Duration;

on_every_backend!(kill_9_during_load_loses_no_acknowledged_grant_or_release);

async fn kill_9_during_load_loses_no_acknowledged_grant_or_release(mut s: Server) {
    let config = LoadConfig {
        urls: vec![s.url.clone()],
        clients: 16,
        tables: 10,
        duration: Duration::from_secs(4),
        // Leases whose grant answer died with the process expire soon.
        ttl_seconds: 2,
        wait_seconds: 5,
        retry_for: Duration::from_secs(30),
        ..LoadConfig::default()
    };
    load::setup(&config, &load::load_table_settings())
        .await
        .unwrap();
    let running = tokio::spawn(load::run(config));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.restart().await;
    let result = running.await.unwrap().unwrap();
    assert!(
        result.summary.retries > 0,
        "the crash happened under load: {:?}",
        result.summary
    );
    assert!(result.holds.len() > 20, "{:?}", result.summary);

    let events = s.client.typed().all_events(0, None).await.unwrap();
    let report = history::check(&result.holds, &events);
    assert!(report.ok(), "{:#?}", report.violations);
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_refuses_to_start() {
    let first = Server::sqlite().await;
    let data_dir = first.data_dir().display().to_string();
    let (status, output) = Server::try_serve(&["--data-dir", &data_dir], Duration::from_secs(10))
        .expect("the second process must stop by itself");
    assert!(!status.success());
    assert!(output.contains("another sluice process"), "{output}");
    assert_eq!(
        first
            .client
            .send(reqwest::Method::GET, "/readyz", None)
            .await
            .unwrap()
            .status,
        200
    );
}
