//! What only the DynamoDB backend has: replicas on one table hearing each
//! other by the event counter, optimistic commits racing across replicas,
//! group commits split at the 100-item transaction limit, clocks skewed
//! within and past `skew_margin_ms`, and the table created by `sluice
//! migrate`. (Every scenario of the black-box suite runs
//! on it too, through `on_every_backend!`.)

use crate::harness::{binary, DynamoDb, Server, AWS_ENV};
use crate::lake::Lake;
use aws_sdk_dynamodb::types::AttributeValue;
use sluice_client::history;
use sluice_client::load::{self, LoadConfig};
use sluice_client::wake;
use std::process::Command;
use std::time::Duration;

/// A client of the DynamoDB a `dynamodb://` URL names.
async fn client(url: &str) -> aws_sdk_dynamodb::Client {
    let endpoint = url
        .split("endpoint=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the URL names an endpoint");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

fn key(pk: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ]
    .into()
}

/// Make a token's expiry pass in the table (the CLI only makes tokens that
/// expire a day or more from now).
pub async fn expire_token(url: &str, name: &str) -> u64 {
    let db = client(url).await;
    let table = "it-state";
    let named = db
        .get_item()
        .table_name(table)
        .set_key(Some(key("token-name", name)))
        .send()
        .await
        .unwrap();
    let Some(named) = named.item else { return 0 };
    let Some(AttributeValue::S(id)) = named.get("id") else {
        panic!("token-name item without an id: {named:?}")
    };
    let mut item = db
        .get_item()
        .table_name(table)
        .set_key(Some(key("token", id)))
        .send()
        .await
        .unwrap()
        .item
        .expect("the token item");
    let Some(AttributeValue::S(doc)) = item.get("doc") else {
        panic!("token without a doc")
    };
    let mut doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    doc["expires_at"] = serde_json::json!(1);
    item.insert("doc".into(), AttributeValue::S(doc.to_string()));
    db.put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    1
}

/// The bytes the table holds for bookmark versions: the `doc` and `load`
/// attributes of every version item and of the parts of long loads (their
/// partitions start with `version`).
pub async fn stored_version_bytes(url: &str) -> i64 {
    let db = client(url).await;
    let mut total = 0;
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name("it-state")
            .filter_expression("begins_with(pk, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S("version".into()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in page.items() {
            for name in ["doc", "load"] {
                if let Some(AttributeValue::S(text)) = item.get(name) {
                    total += text.len() as i64;
                }
            }
        }
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return total,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_a_writer_long_polling_on_another() {
    let table = DynamoDb::start().await;
    let (a, b) = (table.replica().await, table.replica().await);
    let samples = wake::wake_latencies(&a.url, &b.url, "sales.orders", 3, None)
        .await
        .unwrap();
    eprintln!("replica B answered {samples:?} after each release on replica A");
    for sample in samples {
        assert!(
            sample < Duration::from_secs(5),
            "answered only after {sample:?}: not woken by the counter watch"
        );
    }
}

/// A lease taken through one replica is read, heartbeated and released
/// through another that never saw it: the other finds its table from the
/// lease's item, live or finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_on_one_replica_is_read_heartbeated_and_released_on_another() {
    let table = DynamoDb::start().await;
    let (a, b) = (table.replica().await, table.replica().await);
    crate::leases::table(&a.client, "sales.orders", serde_json::json!({})).await;
    let lease = a
        .client
        .acquire("sales.orders", &crate::leases::read("job"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let read = b.client.lease(&lease.lease_id, 0).await.unwrap();
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["state"], "granted", "{read:?}");
    let beat = b
        .client
        .heartbeat(&lease.lease_id, lease.token)
        .await
        .unwrap();
    assert_eq!(beat.status, 200, "{beat:?}");
    let released = b
        .client
        .release(&lease.lease_id, lease.token)
        .await
        .unwrap();
    assert_eq!(released.status, 200, "{released:?}");
    let c = table.replica().await;
    let finished = c.client.lease(&lease.lease_id, 0).await.unwrap();
    assert_eq!(finished.status, 200, "{finished:?}");
    assert_eq!(finished.body["state"], "released", "{finished:?}");
}

/// Two replicas take turns on the same tables while one of them is killed
/// and restarted: their optimistic commits race on every root, and the
/// checker finds no double grant, no lost acknowledged change and tokens
/// increasing per table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_killed_under_load_grant_nothing_twice_and_lose_nothing_acknowledged() {
    let table = DynamoDb::start().await;
    let (mut a, b) = (table.replica().await, table.replica().await);
    let config = LoadConfig {
        urls: vec![a.url.clone(), b.url.clone()],
        clients: 12,
        tables: 6,
        duration: Duration::from_secs(5),
        hold: Duration::from_millis(2),
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
    tokio::time::sleep(Duration::from_millis(2000)).await;
    a.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.restart().await;
    let result = running.await.unwrap().unwrap();
    assert!(
        result.summary.retries > 0,
        "the crash happened under load: {:?}",
        result.summary
    );
    assert!(result.holds.len() > 20, "{:?}", result.summary);
    let writes = result.holds.iter().filter(|h| h.mode == "write").count();
    assert!(writes > 2, "writers must get through: {writes}");

    let events = b.client.typed().all_events(0, None).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "event ids strictly increase in commit order across replicas"
    );
    let report = history::check(&result.holds, &events);
    assert!(report.ok(), "{:#?}", report.violations);
}

/// 150 tables registered at once: a group commit of that many commands
/// passes DynamoDB's 100 items a transaction, so the writer commits it in
/// parts, each answered after its own commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_past_the_transaction_limit_is_committed_in_parts() {
    let s = Server::dynamodb().await;
    let calls: Vec<_> = (0..150)
        .map(|i| {
            let client = s.client.clone();
            tokio::spawn(async move {
                client
                    .put_table(&format!("bulk.t{i:03}"), serde_json::json!({}))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let listed = s
        .expect(reqwest::Method::GET, "/v1/tables?limit=500", None, 200)
        .await;
    assert_eq!(
        listed["tables"].as_array().map(Vec::len),
        Some(150),
        "{listed}"
    );
    let events = s.client.typed().all_events(0, None).await.unwrap();
    let created = events
        .iter()
        .filter(|e| e.kind == "table_settings_changed")
        .count();
    assert_eq!(created, 150);
    // And parts there were: the writer counted its splits.
    let splits = s.metric("sluice_group_commit_splits_total{").await;
    assert!(splits > 0, "no group commit was split");
}

#[tokio::test]
async fn serve_before_migrate_says_to_run_it_and_migrate_twice_is_fine() {
    let moto = Lake::start_serial().await;
    let url = format!("dynamodb://fresh?region=us-east-1&endpoint={}", moto.url);
    let (status, output) =
        Server::try_serve_with_env(&["--database-url", &url], &AWS_ENV, Duration::from_secs(20))
            .expect("serve stops by itself");
    assert!(!status.success());
    assert!(
        output.contains("fresh-state does not exist") && output.contains("sluice migrate"),
        "{output}"
    );
    for _ in 0..2 {
        let migrated = Command::new(binary())
            .args(["migrate", "--database-url", &url])
            .envs(AWS_ENV)
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
    }
    let bad = Command::new(binary())
        .args(["migrate", "--database-url", "dynamodb://x?colour=red"])
        .envs(AWS_ENV)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown parameter `colour`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// What `skew_margin_ms` promises (200 ms in these tests): a replica whose
/// clock runs ahead by less never takes a lease from its holder before the
/// holder's `expires_at`; one ahead by more does, early by the difference.
/// Replica A (the machine's clock) grants a 3 s write lease; replica B,
/// skewed, is asked for the next write lease at once and answers when it
/// judges the first expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_within_the_margin_is_safe_and_past_it_takes_leases_early() {
    let table = DynamoDb::start().await;
    let a = table.replica().await;
    assert_eq!(
        a.client
            .put_table("skew.t", serde_json::json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    for (offset, within_margin) in [("+0.1", true), ("+2.5", false)] {
        let b = table.replica_skewed(offset).await;
        let held = a
            .expect(
                reqwest::Method::POST,
                "/v1/tables/skew.t/leases",
                serde_json::json!({ "mode": "write", "holder": "first", "ttl_seconds": 3 }),
                201,
            )
            .await;
        let expires_ms = sluice_core::Millis::parse_rfc3339(held["expires_at"].as_str().unwrap())
            .unwrap()
            .0;
        let next = b
            .expect(
                reqwest::Method::POST,
                "/v1/tables/skew.t/leases",
                serde_json::json!({ "mode": "write", "holder": "next", "ttl_seconds": 60,
                                    "wait_seconds": 20 }),
                201,
            )
            .await;
        let granted_ms = load::wall_ms();
        let early = expires_ms - granted_ms;
        eprintln!("clock {offset} s: the next writer granted {early} ms before the first's expiry");
        if within_margin {
            assert!(
                early <= 0,
                "{offset} s is within the margin, yet the lease went {early} ms early: {next}"
            );
        } else {
            // Past the margin, by 2.3 s: the holder loses its lease while it
            // still believes it holds it (what the margin is for).
            assert!(
                early > 1000,
                "{offset} s past the margin: {early} ms: {next}"
            );
        }
        let release = format!(
            "/v1/leases/{}?token={}",
            next["lease_id"].as_str().unwrap(),
            next["token"]
        );
        b.expect(reqwest::Method::DELETE, &release, None, 200).await;
    }
}
