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
