//! Hardening limits: queue length, open long-polls, header size.

use crate::harness::Server;
use crate::leases::{read, table, write};
use crate::raw::Acquire;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_table_with_a_full_queue_refuses_another_waiter_with_429() {
    let s = Server::sqlite_with(&["--max-waiters-per-table", "1"]).await;
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let w = c.acquire("sales.orders", &write("compact")).await.unwrap();
    assert_eq!(w.status, 201);
    assert_eq!(
        c.acquire("sales.orders", &read("hydrate-1"))
            .await
            .unwrap()
            .status,
        202
    );
    let refused = c.acquire("sales.orders", &read("hydrate-2")).await.unwrap();
    assert_eq!(
        (refused.status, refused.error_type()),
        (429, Some("queue_full")),
        "{refused:?}"
    );
    let view = c.table_leases("sales.orders").await.unwrap();
    assert_eq!(
        view.body["waiters"].as_array().unwrap().len(),
        1,
        "the refused one never queued"
    );
}

#[tokio::test]
async fn more_long_polls_than_allowed_are_refused_with_429() {
    let s = Server::sqlite_with(&["--max-long-polls", "1"]).await;
    let c = s.client.clone();
    table(&c, "sales.orders", json!({})).await;
    c.acquire("sales.orders", &write("compact")).await.unwrap();
    let waiting = c
        .acquire("sales.orders", &read("hydrate"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let open = {
        let (c, id) = (c.clone(), waiting.lease_id.clone());
        tokio::spawn(async move { c.lease(&id, 6).await.unwrap() })
    };
    // Time for the first long-poll to take the only place.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = c.lease(&waiting.lease_id, 3).await.unwrap();
    assert_eq!(
        (second.status, second.error_type()),
        (429, Some("too_many_long_polls"))
    );
    let queued = c
        .acquire(
            "sales.orders",
            &Acquire {
                wait_seconds: 3,
                ..read("another")
            },
        )
        .await
        .unwrap();
    assert_eq!(queued.status, 429, "refused before it queues: {queued:?}");
    assert_eq!(
        c.lease(&waiting.lease_id, 0).await.unwrap().status,
        200,
        "plain reads still work"
    );
    assert_eq!(open.await.unwrap().status, 200);
}

#[tokio::test]
async fn oversized_headers_are_refused_with_the_json_error_body() {
    let s = Server::sqlite().await;
    let answer = reqwest::Client::new()
        .get(format!("{}/v1/tables", s.url))
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 431);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "headers_too_large");
}
