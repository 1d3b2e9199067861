//! `/metrics`: parsed with a Prometheus text-format parser, outside
//! authentication, and its counters move as requests are answered and
//! refused; routes are labelled by their template, never by raw ids.

use crate::harness::Server;
use crate::lake::venv;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// A scrape, parsed by Prometheus's reference parser
/// (`integration-tests/metrics/parse.py`): its samples.
async fn scrape(server: &Server) -> Vec<Value> {
    // No token: the scrape is outside authentication.
    let answer = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = answer.text().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(venv().join("bin/python"))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/metrics/parse.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the parser");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the exposition does not parse: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_requests_and_refusals() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    let before = scrape(&server).await;
    let acquire = ("route", "/v1/tables/{table}/leases");

    assert_eq!(
        admin
            .put_table("sales.orders", json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    let lease = admin
        .send(
            Method::POST,
            "/v1/tables/sales.orders/leases",
            Some(&json!({ "mode": "read", "ttl_seconds": 60, "holder": "m" })),
        )
        .await
        .unwrap();
    assert_eq!(lease.status, 201, "{}", lease.body);
    let id = lease.body["lease_id"].as_str().unwrap().to_owned();
    let token = lease.body["token"].as_i64().unwrap();
    // A fencing refusal, twice; an unknown table; no token at all.
    for _ in 0..2 {
        let stale = admin.heartbeat(&id, Some(token + 1)).await.unwrap();
        assert_eq!(stale.status, 409, "{}", stale.body);
    }
    let missing = admin
        .send(Method::GET, "/v1/tables/sales.nope", None)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let anonymous = reqwest::get(format!("{}/v1/tables", server.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let after = scrape(&server).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        moved(
            "sluice_http_requests_total",
            &[("method", "POST"), acquire, ("status", "201")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "sluice_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/leases/{lease_id}/heartbeat"),
                ("status", "409")
            ]
        ),
        2.0
    );
    assert_eq!(
        moved("sluice_refusals_total", &[("type", "stale_token")]),
        2.0
    );
    assert_eq!(
        moved("sluice_refusals_total", &[("type", "table_not_found")]),
        1.0
    );
    assert_eq!(
        moved("sluice_refusals_total", &[("type", "missing_token")]),
        1.0
    );
    let count = &[("method", "POST"), acquire];
    assert_eq!(
        moved("sluice_http_request_duration_seconds_count", count),
        1.0
    );
    let inf = &[("method", "POST"), acquire, ("le", "+Inf")];
    assert_eq!(
        moved("sluice_http_request_duration_seconds_bucket", inf),
        1.0
    );
    assert_eq!(
        after
            .iter()
            .find(|s| s["name"] == "sluice_http_requests_total")
            .map(|s| s["type"].clone()),
        Some(json!("counter"))
    );
    // Ids never become labels.
    assert!(after.iter().all(|s| !s["labels"].to_string().contains(&id)));
}
