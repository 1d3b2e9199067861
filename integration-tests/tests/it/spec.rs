//! The committed OpenAPI document is the one the code serves.

use crate::harness::{binary, Server};

fn committed() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi/openapi.json is committed");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn the_committed_openapi_spec_matches_the_code() {
    let output = std::process::Command::new(binary())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        generated == committed(),
        "openapi/openapi.json is stale: run `cargo run --bin sluice -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one() {
    let s = Server::sqlite().await;
    let served = s
        .client
        .send(reqwest::Method::GET, "/openapi.json", None)
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    assert!(served.body == committed());
}
