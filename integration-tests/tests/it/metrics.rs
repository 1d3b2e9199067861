//! `/metrics`: parsed with a Prometheus text-format parser, outside
//! authentication, and its counters move as requests are answered and
//! refused; routes are labelled by their template, never by raw ids.

use crate::errors::{answer_of, assert_error};
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
        assert_error(
            "a heartbeat with a future token",
            &stale,
            409,
            "stale_token",
        );
    }
    let missing = admin
        .send(Method::GET, "/v1/tables/sales.nope", None)
        .await
        .unwrap();
    assert_error("an unknown table", &missing, 404, "table_not_found");
    let anonymous = server
        .client
        .send(Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    assert_error("no token", &anonymous, 401, "missing_token");

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

/// The store's counters (group commits, grants, waits, expirations,
/// revocations) and what each scrape reads from the database (leases by
/// mode and state, runs by state, the compaction queue, hydrations' lag),
/// as leases come and go on a real Iceberg table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gauges_and_lease_counters_move() {
    use crate::snapshots::{py, refresh, sql_catalog, TABLE};
    let server = Server::sqlite_with(&["--refresh-interval-seconds", "3600"]).await;
    let data = server.data_dir();
    let catalog = sql_catalog(&data);
    py(&catalog, &["create", TABLE]).await;
    py(&catalog, &["append", TABLE, "3"]).await;
    let job = json!({ "glue_job_name": "compact-orders", "kind": "compaction", "table": TABLE });
    server
        .expect(Method::PUT, "/v1/jobs/compact", job, 201)
        .await;
    let table = json!({ "compaction_job": "compact" });
    server
        .expect(Method::PUT, &format!("/v1/tables/{TABLE}"), table, 201)
        .await;
    refresh(&server).await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, "sluice_store_up", &[]), 1.0);
    assert_eq!(
        value(
            &before,
            "sluice_leases",
            &[("mode", "read"), ("state", "granted")]
        ),
        0.0
    );

    // A refusal, for the refusal counter.
    let unknown = server.call(Method::GET, "/v1/tables/no.such", None).await;
    assert_error("an unknown table", &unknown, 404, "table_not_found");
    // A reader that holds, a hydration pinned to the first snapshot (one
    // more reader), a compaction that waits behind them, a reader that
    // lets its TTL pass.
    let leases = format!("/v1/tables/{TABLE}/leases");
    let reader = json!({ "mode": "read", "ttl_seconds": 300, "holder": "export" });
    let reader = server.expect(Method::POST, &leases, reader, 201).await;
    let short = json!({ "mode": "read", "ttl_seconds": 1, "holder": "forgetful" });
    server.expect(Method::POST, &leases, short, 201).await;
    server
        .expect(
            Method::PUT,
            "/v1/containers/analytics",
            json!({ "kind": "postgres", "url": crate::harness::admin_url() }),
            201,
        )
        .await;
    let hydration = json!({ "table": TABLE, "container": "analytics", "target": "orders_m" });
    let hydration = server
        .expect(Method::POST, "/v1/hydrations", hydration, 201)
        .await;
    let ask = json!({ "requested_by": "metrics-test" });
    let compaction = server
        .expect(
            Method::POST,
            &format!("/v1/tables/{TABLE}/compactions"),
            ask,
            201,
        )
        .await;
    // The table moves on.
    py(&catalog, &["append", TABLE, "2"]).await;
    refresh(&server).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let waiting = loop {
        let now = scrape(&server).await;
        if value(&now, "sluice_compactions", &[("state", "waiting")]) == 1.0
            && value(&now, "sluice_lease_expirations_total", &[("mode", "read")]) == 1.0
        {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no waiting compaction or expiry: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let gauge = |labels: &[(&str, &str)]| value(&waiting, "sluice_leases", labels);
    assert_eq!(gauge(&[("mode", "read"), ("state", "granted")]), 2.0);
    assert_eq!(gauge(&[("mode", "write"), ("state", "waiting")]), 1.0);
    assert!(value(&waiting, "sluice_compaction_oldest_pending_seconds", &[]) >= 0.0);
    let id = hydration["id"].as_str().unwrap();
    let lag = [("hydration", id), ("table", TABLE), ("state", "pending")];
    // It has applied nothing yet: both snapshots are behind.
    assert_eq!(
        value(&waiting, "sluice_hydration_lag_snapshots", &lag),
        2.0,
        "{waiting:?}"
    );
    assert!(value(&waiting, "sluice_hydration_lag_seconds", &lag) >= 0.0);
    // Created without a run: none is attached.
    assert_eq!(value(&waiting, "sluice_hydration_run_attached", &lag), 0.0);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&waiting, name, labels) - value(&before, name, labels)
    };
    // Three read grants (export, forgetful, the hydration), each answered
    // granted at once; the compaction's write lease still waits.
    assert_eq!(moved("sluice_lease_grants_total", &[("mode", "read")]), 3.0);
    assert_eq!(
        moved("sluice_lease_grant_seconds_count", &[("mode", "read")]),
        2.0
    );
    assert_eq!(
        moved("sluice_lease_wait_seconds_count", &[("mode", "read")]),
        3.0
    );
    assert_eq!(
        moved("sluice_lease_grants_total", &[("mode", "write")]),
        0.0
    );
    assert!(moved("sluice_group_commit_size_count", &[("group", "leases")]) >= 4.0);
    assert!(moved("sluice_group_commit_seconds_sum", &[("group", "leases")]) > 0.0);

    // Revoke both readers and cancel the hydration: the compaction's
    // write lease is granted out of the queue, after a measured wait.
    let revoke = json!({ "reason": "metrics test" });
    let path = format!("/v1/leases/{}/revoke", reader["lease_id"].as_str().unwrap());
    server.expect(Method::POST, &path, revoke, 200).await;
    server
        .expect(
            Method::POST,
            &format!("/v1/hydrations/{id}/cancel"),
            json!({}),
            200,
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let now = scrape(&server).await;
        let runs: f64 = now
            .iter()
            .filter(|s| s["name"] == "sluice_runs")
            .map(|s| s["value"].as_f64().unwrap())
            .sum();
        // The scheduler starts a run for the granted compaction at its tick.
        if value(&now, "sluice_lease_grants_total", &[("mode", "write")]) == 1.0
            && value(&now, "sluice_compactions", &[("state", "waiting")]) == 0.0
            && runs >= 1.0
        {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compaction {} did not start: {now:?}",
            compaction["id"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The export reader's, and the hydration's lease its cancel revoked.
    assert_eq!(
        value(
            &after,
            "sluice_lease_revocations_total",
            &[("mode", "read")]
        ),
        2.0,
        "{after:?}"
    );
    assert_eq!(
        value(
            &after,
            "sluice_lease_wait_seconds_count",
            &[("mode", "write")]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "sluice_lease_wait_seconds_sum",
            &[("mode", "write")]
        ) > 0.0
    );
    assert_eq!(
        value(&after, "sluice_compactions", &[("state", "waiting")]),
        0.0
    );
    // Cancelled, it is no longer exported.
    assert_eq!(
        value(
            &after,
            "sluice_hydration_lag_snapshots",
            &[("hydration", id)]
        ),
        0.0
    );

    // Every series the Grafana dashboard charts is one sluice exported
    // above (a hydration's lag while it was active).
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/sluice.json"
    ))
    .unwrap();
    let charted = dashboard.split("sluice_").skip(1).filter_map(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        (!name.is_empty()).then(|| format!("sluice_{name}"))
    });
    for name in charted {
        assert!(
            waiting
                .iter()
                .chain(&after)
                .any(|s| s["name"] == name.as_str()),
            "the dashboard charts {name}, which /metrics does not export"
        );
    }
}

/// Made-up methods and paths, sent without a token, add no series: every
/// method but the usual ones is one `other` label, every path no route
/// matches one `unmatched` route. (A method became a label of its own,
/// with a whole histogram: 5,000 requests grew a scrape a hundredfold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_leave_the_series_bounded() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let http = reqwest::Client::new();
    let odd = |round: usize, i: usize| {
        let method = Method::from_bytes(format!("PROBE{round}X{i}").as_bytes()).unwrap();
        [
            (method.clone(), "/healthz".to_owned()),
            (method.clone(), format!("/no/such/{round}/{i}")),
            (method, "/v1/tables/sales.orders".to_owned()),
            (Method::GET, format!("/v1/nothing-{round}-{i}")),
            (Method::DELETE, format!("/{round}{i}.php")),
        ]
    };
    let send = |round: usize, n: usize| {
        let http = http.clone();
        let url = server.url.clone();
        async move {
            for i in 0..n {
                for (method, path) in odd(round, i) {
                    let answer = http
                        .request(method.clone(), format!("{url}{path}"))
                        .send()
                        .await
                        .unwrap();
                    let answer = answer_of(answer).await.unwrap();
                    // /healthz is public and takes only GET; the rest ask
                    // for a token before any route is looked for.
                    let (status, kind) = if path == "/healthz" {
                        (405, "method_not_allowed")
                    } else {
                        (401, "missing_token")
                    };
                    assert_error(&format!("{method} {path}"), &answer, status, kind);
                }
            }
        }
    };
    // One of each kind first, and a scrape (its own series).
    scrape(&server).await;
    send(0, 1).await;
    let warm = scrape(&server).await;
    send(1, 200).await;
    // A method as long as a request line allows.
    let long = Method::from_bytes("M".repeat(15_000).as_bytes()).unwrap();
    let answer = http
        .request(long, format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    let answer = answer_of(answer).await.unwrap();
    assert_error("a 15,000-letter method", &answer, 405, "method_not_allowed");
    let after = scrape(&server).await;

    let series = |samples: &[Value]| {
        let mut keys: Vec<String> = samples
            .iter()
            .map(|s| format!("{}{}", s["name"], s["labels"]))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(series(&after), series(&warm), "new series appeared");
    for s in &after {
        let labels = s["labels"].to_string();
        assert!(
            !labels.contains("PROBE") && !labels.contains("MMMM") && !labels.contains("/no/such"),
            "{labels}"
        );
    }
    let moved = |labels: &[(&str, &str)]| {
        value(&after, "sluice_http_requests_total", labels)
            - value(&warm, "sluice_http_requests_total", labels)
    };
    assert_eq!(
        moved(&[("method", "other"), ("route", "/healthz")]),
        201.0,
        "{after:?}"
    );
    assert_eq!(moved(&[("route", "unmatched")]), 600.0, "{after:?}");
}
