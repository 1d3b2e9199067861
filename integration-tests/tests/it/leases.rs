//! Lease behaviour a platform engineer relies on, on both backends.

use crate::harness::Server;
use crate::on_every_backend;
use crate::raw::{Acquire, Client};
use serde_json::json;
use std::time::Duration;

pub fn read(holder: &str) -> Acquire {
    Acquire {
        mode: "read",
        holder: holder.into(),
        ttl_seconds: 60,
        ..Acquire::default()
    }
}

pub fn write(holder: &str) -> Acquire {
    Acquire {
        mode: "write",
        holder: holder.into(),
        ttl_seconds: 60,
        ..Acquire::default()
    }
}

pub async fn table(client: &Client, name: &str, settings: serde_json::Value) {
    let answer = client.put_table(name, settings).await.unwrap();
    assert!(answer.status == 201 || answer.status == 200, "{answer:?}");
}

on_every_backend!(
    two_readers_share_and_a_writer_is_granted_when_both_release,
    a_long_polling_writer_is_answered_by_the_last_release,
    a_holder_that_stops_heartbeating_expires_and_lets_the_waiter_in,
    a_heartbeat_keeps_a_lease_alive_past_its_ttl,
    the_same_idempotency_key_returns_the_same_lease,
    a_revoked_holder_is_refused_and_the_next_waiter_is_granted,
    a_waiter_revoked_while_long_polling_is_answered_with_the_revocation,
    readers_queue_behind_a_writer_once_its_deferral_ran_out,
    a_release_repeated_after_a_lost_answer_is_ok_and_a_stale_token_changes_nothing,
    a_waiter_that_stops_heartbeating_leaves_the_queue,
    the_event_log_replays_the_story_in_commit_order,
);

async fn two_readers_share_and_a_writer_is_granted_when_both_release(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let r1 = c.acquire("sales.orders", &read("hydrate-1")).await.unwrap();
    let r2 = c.acquire("sales.orders", &read("hydrate-2")).await.unwrap();
    assert_eq!(
        (r1.status, r2.status),
        (201, 201),
        "readers share: {r1:?} {r2:?}"
    );
    let w = c.acquire("sales.orders", &write("compact")).await.unwrap();
    assert_eq!(w.status, 202, "the writer waits: {w:?}");
    assert_eq!(w.body["position"], 1);
    let (r1, r2, w) = (r1.lease().unwrap(), r2.lease().unwrap(), w.lease().unwrap());

    assert_eq!(c.release(&r1.lease_id, r1.token).await.unwrap().status, 200);
    assert_eq!(
        c.lease(&w.lease_id, 0).await.unwrap().body["state"],
        "waiting"
    );
    assert_eq!(c.release(&r2.lease_id, r2.token).await.unwrap().status, 200);

    let w = c.lease(&w.lease_id, 0).await.unwrap().lease().unwrap();
    assert_eq!(w.state, "granted");
    assert!(
        w.token > r2.token && r2.token > r1.token,
        "tokens increase: {r1:?} {r2:?} {w:?}"
    );
    let view = c.table_leases("sales.orders").await.unwrap();
    assert_eq!(view.body["holders"].as_array().unwrap().len(), 1);
    assert_eq!(view.body["holders"][0]["mode"], "write");
}

async fn a_long_polling_writer_is_answered_by_the_last_release(s: Server) {
    let samples = sluice_client::wake::wake_latencies(&s.url, &s.url, "sales.orders", 1, None)
        .await
        .unwrap();
    eprintln!("writer answered {:?} after the release", samples[0]);
    // Push, not the 30 s timeout: the answer comes with the release.
    assert!(
        samples[0] < Duration::from_secs(5),
        "answered only after {:?}",
        samples[0]
    );
}

async fn a_holder_that_stops_heartbeating_expires_and_lets_the_waiter_in(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let r = c
        .acquire(
            "sales.orders",
            &Acquire {
                ttl_seconds: 1,
                ..read("crashed-job")
            },
        )
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w = c
        .acquire(
            "sales.orders",
            &Acquire {
                wait_seconds: 20,
                ..write("compact")
            },
        )
        .await
        .unwrap();
    assert_eq!(w.status, 201, "granted once the reader expired: {w:?}");
    let hb = c.heartbeat(&r.lease_id, r.token).await.unwrap();
    assert_eq!(
        (hb.status, hb.error_type()),
        (409, Some("lease_expired")),
        "{hb:?}"
    );
    let rel = c.release(&r.lease_id, r.token).await.unwrap();
    assert_eq!(
        (rel.status, rel.error_type()),
        (409, Some("lease_expired")),
        "{rel:?}"
    );
    assert_eq!(
        c.lease(&r.lease_id, 0).await.unwrap().body["state"],
        "expired"
    );
}

async fn a_heartbeat_keeps_a_lease_alive_past_its_ttl(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let r = c
        .acquire(
            "sales.orders",
            &Acquire {
                ttl_seconds: 2,
                ..read("job")
            },
        )
        .await
        .unwrap()
        .lease()
        .unwrap();
    // 3.5 s in all, past the 2 s TTL; each heartbeat leaves 1.5 s of slack
    // for a busy test machine.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hb = c.heartbeat(&r.lease_id, r.token).await.unwrap();
        assert_eq!(hb.status, 200, "{hb:?}");
    }
    assert_eq!(
        c.lease(&r.lease_id, 0).await.unwrap().body["state"],
        "granted"
    );
    assert_eq!(c.release(&r.lease_id, r.token).await.unwrap().status, 200);
}

async fn the_same_idempotency_key_returns_the_same_lease(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let ask = Acquire {
        idempotency_key: Some("run-42".into()),
        ..write("compact")
    };
    let first = c
        .acquire("sales.orders", &ask)
        .await
        .unwrap()
        .lease()
        .unwrap();
    let again = c.acquire("sales.orders", &ask).await.unwrap();
    assert_eq!(again.status, 201);
    assert_eq!(
        again.lease().unwrap(),
        first,
        "a retry answers the same lease"
    );
    let other = c
        .acquire(
            "sales.orders",
            &Acquire {
                idempotency_key: Some("run-42".into()),
                ..read("someone-else")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (other.status, other.error_type()),
        (409, Some("idempotency_conflict"))
    );
    let view = c.table_leases("sales.orders").await.unwrap();
    assert_eq!(
        view.body["holders"].as_array().unwrap().len(),
        1,
        "no second lease"
    );
}

async fn a_revoked_holder_is_refused_and_the_next_waiter_is_granted(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let w = c
        .acquire("sales.orders", &write("stuck-compaction"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let r = c
        .acquire("sales.orders", &read("hydrate"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(r.state, "waiting");
    let revoked = c
        .revoke(&w.lease_id, "compaction stuck for 3 h")
        .await
        .unwrap();
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["end_reason"], "compaction stuck for 3 h");
    assert_eq!(
        c.lease(&r.lease_id, 0).await.unwrap().body["state"],
        "granted"
    );
    let hb = c.heartbeat(&w.lease_id, w.token).await.unwrap();
    assert_eq!((hb.status, hb.error_type()), (409, Some("lease_revoked")));
    let rel = c.release(&w.lease_id, w.token).await.unwrap();
    assert_eq!((rel.status, rel.error_type()), (409, Some("lease_revoked")));
    assert_eq!(
        c.revoke(&w.lease_id, "again").await.unwrap().status,
        200,
        "revoking twice is idempotent"
    );
}

async fn a_waiter_revoked_while_long_polling_is_answered_with_the_revocation(s: Server) {
    let c = s.client.clone();
    table(&c, "sales.orders", json!({})).await;
    let _w = c
        .acquire("sales.orders", &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let waiting = c
        .acquire("sales.orders", &read("hydrate"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let poll = {
        let (c, id) = (c.clone(), waiting.lease_id.clone());
        tokio::spawn(async move { c.lease(&id, 30).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.revoke(&waiting.lease_id, "operator")
            .await
            .unwrap()
            .status,
        200
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.body["state"], "revoked", "{answer:?}");
    let view = c.table_leases("sales.orders").await.unwrap();
    assert!(
        view.body["waiters"].as_array().unwrap().is_empty(),
        "left the queue"
    );
}

async fn readers_queue_behind_a_writer_once_its_deferral_ran_out(s: Server) {
    let c = &s.client;
    table(
        c,
        "sales.orders",
        json!({ "max_compaction_deferral_seconds": 1 }),
    )
    .await;
    let r1 = c
        .acquire("sales.orders", &read("hydrate-1"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w = c
        .acquire("sales.orders", &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(w.state, "waiting");
    let r2 = c.acquire("sales.orders", &read("hydrate-2")).await.unwrap();
    assert_eq!(
        r2.status, 201,
        "before the deadline readers pass the writer"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r3 = c.acquire("sales.orders", &read("hydrate-3")).await.unwrap();
    assert_eq!(
        r3.status, 202,
        "after it they queue behind the writer: {r3:?}"
    );
    assert_eq!(r3.body["position"], 2);
    let r2 = r2.lease().unwrap();
    c.release(&r1.lease_id, r1.token).await.unwrap();
    c.release(&r2.lease_id, r2.token).await.unwrap();
    let w = c.lease(&w.lease_id, 0).await.unwrap().lease().unwrap();
    assert_eq!(w.state, "granted", "compaction gets its window");
    let r3 = c
        .lease(r3.body["lease_id"].as_str().unwrap(), 0)
        .await
        .unwrap();
    assert_eq!(r3.body["state"], "waiting");
    c.release(&w.lease_id, w.token).await.unwrap();
    let r3 = c
        .lease(r3.body["lease_id"].as_str().unwrap(), 0)
        .await
        .unwrap();
    assert_eq!(r3.body["state"], "granted", "then the readers");
}

async fn a_release_repeated_after_a_lost_answer_is_ok_and_a_stale_token_changes_nothing(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let a = c
        .acquire("sales.orders", &write("a"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(c.release(&a.lease_id, a.token).await.unwrap().status, 200);
    let again = c.release(&a.lease_id, a.token).await.unwrap();
    assert_eq!(
        (again.status, again.body["state"].as_str()),
        (200, Some("released"))
    );
    let b = c
        .acquire("sales.orders", &write("b"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    // A's holder, confused, presents its old token for B's lease.
    let stale = c.release(&b.lease_id, a.token).await.unwrap();
    assert_eq!(
        (stale.status, stale.error_type()),
        (409, Some("stale_token")),
        "{stale:?}"
    );
    let b_now = c.lease(&b.lease_id, 0).await.unwrap().lease().unwrap();
    assert_eq!(
        (b_now.state.as_str(), b_now.token),
        ("granted", b.token),
        "B is untouched"
    );
    let no_token = c.release(&b.lease_id, None).await.unwrap();
    assert_eq!(
        (no_token.status, no_token.error_type()),
        (400, Some("token_required"))
    );
}

async fn a_waiter_that_stops_heartbeating_leaves_the_queue(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let w = c
        .acquire("sales.orders", &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let gone = c
        .acquire(
            "sales.orders",
            &Acquire {
                ttl_seconds: 1,
                ..read("walked-away")
            },
        )
        .await
        .unwrap()
        .lease()
        .unwrap();
    let stays = c
        .acquire("sales.orders", &read("stays"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    // `stays` keeps its place by long-polling; `gone` does nothing.
    let polled = c.lease(&stays.lease_id, 2).await.unwrap();
    assert_eq!(polled.body["state"], "waiting");
    assert_eq!(
        polled.body["position"], 1,
        "the silent waiter left: {polled:?}"
    );
    assert_eq!(
        c.lease(&gone.lease_id, 0).await.unwrap().body["state"],
        "expired"
    );
    c.release(&w.lease_id, w.token).await.unwrap();
    assert_eq!(
        c.lease(&stays.lease_id, 0).await.unwrap().body["state"],
        "granted"
    );
}

async fn the_event_log_replays_the_story_in_commit_order(s: Server) {
    let c = &s.client;
    table(c, "sales.orders", json!({})).await;
    let r = c
        .acquire("sales.orders", &read("hydrate"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w = c
        .acquire("sales.orders", &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    c.release(&r.lease_id, r.token).await.unwrap();
    c.revoke(&w.lease_id, "maintenance window over")
        .await
        .unwrap();
    let x = c
        .acquire(
            "sales.orders",
            &Acquire {
                ttl_seconds: 1,
                ..read("short")
            },
        )
        .await
        .unwrap()
        .lease()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = c.table_leases("sales.orders").await.unwrap();

    let events = c.all_events(0, Some("sales.orders")).await.unwrap();
    let story: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let lease = e["lease_id"].as_str().unwrap_or("-");
            let who = if lease == r.lease_id {
                "r"
            } else if lease == w.lease_id {
                "w"
            } else if lease == x.lease_id {
                "x"
            } else {
                "-"
            };
            (e["kind"].as_str().unwrap().to_owned(), who.to_owned())
        })
        .collect();
    let expected = [
        ("table_settings_changed", "-"),
        ("lease_requested", "r"),
        ("lease_granted", "r"),
        ("lease_requested", "w"),
        ("lease_released", "r"),
        ("lease_granted", "w"),
        ("lease_revoked", "w"),
        ("lease_requested", "x"),
        ("lease_granted", "x"),
        ("lease_expired", "x"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, w)| (k.to_string(), w.to_string()))
        .collect();
    assert_eq!(story, expected);
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "ids increase: {ids:?}");
    let grants = c
        .send(
            reqwest::Method::GET,
            "/v1/events?kind=lease_granted&limit=1",
            None,
        )
        .await
        .unwrap();
    assert_eq!(grants.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(grants.body["events"][0]["data"]["token"], r.token.unwrap());
}
