//! Configuration: the example file in deploy/ is valid, and a bad file is
//! refused with a clear message.

use crate::harness::Server;
use std::time::Duration;

#[tokio::test]
async fn the_example_configuration_file_starts_sluice() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sluice.toml");
    // Flags override the file's bind address and data dir.
    let s = Server::sqlite_with(&["--config", file]).await;
    let ready = s
        .client
        .send(reqwest::Method::GET, "/readyz", None)
        .await
        .unwrap();
    assert_eq!(
        (ready.status, ready.body["storage"].as_str()),
        (200, Some("sqlite"))
    );
}

#[test]
fn an_unknown_key_in_the_configuration_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "[database]\nurl_typo = \"postgres://x\"\n").unwrap();
    let data = dir.path().join("data");
    let (status, output) = Server::try_serve(
        &[
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    )
    .expect("sluice must stop by itself");
    assert!(!status.success());
    assert!(output.contains("url_typo"), "{output}");
}

#[tokio::test]
async fn migrate_creates_the_schema_on_sqlite_and_postgresql() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let status = std::process::Command::new(crate::harness::binary())
        .args(["migrate", "--data-dir", data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(data.join("sluice.db").exists());

    let url = crate::harness::fresh_database().await;
    let status = std::process::Command::new(crate::harness::binary())
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(status.success());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice_tables")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, 0);
}
