//! Hardening limits: queue length, open long-polls, header size, slow
//! headers and the cap on open connections.

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
    crate::errors::assert_error(
        "an acquire that would wait, refused before it queues",
        &queued,
        429,
        "too_many_long_polls",
    );
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
    let answer = crate::errors::answer_of(answer).await.unwrap();
    crate::errors::assert_error("20 KiB of headers", &answer, 431, "headers_too_large");
}

/// Where the server listens, for raw sockets.
fn address(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// A client that sends one byte of a request head every second and never
/// finishes: how long after connecting the server closed it.
async fn slow_header(address: String) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 1024];
    for i in 0.. {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // an error answer before the close
            },
            _ = tick.tick() => {
                let byte = head.get(i).copied().unwrap_or(b'a');
                if socket.write_all(&[byte]).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed_while_health_checks_stay_fast() {
    // Arrange
    let s = Server::sqlite_with(&["--header-read-timeout-seconds", "3"]).await;
    let slow: Vec<_> = (0..500)
        .map(|_| tokio::spawn(slow_header(address(&s))))
        .collect();

    // Act: a health check every 100 ms while they trickle.
    let health = reqwest::Client::new();
    let mut latencies = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        let asked = std::time::Instant::now();
        let answer = health
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed_after = Vec::new();
    for task in slow {
        closed_after.push(task.await.unwrap());
    }

    // Assert: every slow client was closed at the deadline (3 s, a tick of
    // slack), and the server kept answering others at once meanwhile.
    closed_after.sort();
    let last = *closed_after.last().unwrap();
    assert!(
        closed_after[0] >= Duration::from_millis(2900) && last <= Duration::from_secs(5),
        "closed between {:?} and {last:?}",
        closed_after[0]
    );
    // The behaviour: slow-header clients never hold a health check up to
    // their own deadline (3 s). How fast it stays is not checked here:
    // scripts/latency-bench.sh measures it (BENCHMARKS.md).
    let worst = *latencies.iter().max().unwrap();
    assert!(
        worst < Duration::from_millis(1500),
        "a health check waited {worst:?} of {} checks, near the 3 s header deadline",
        latencies.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_answered_503_and_closed_and_the_cap_frees_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Arrange: the cap held by idle sockets.
    let s = Server::sqlite_with(&[
        "--max-open-connections",
        "20",
        "--header-read-timeout-seconds",
        "2",
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(address(&s)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act: one more.
    let mut extra = tokio::net::TcpStream::connect(address(&s)).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).await.unwrap();

    // Assert: a 503 with the JSON body, then closed (read_to_string ended).
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["type"], "too_many_connections");

    // The idle sockets are closed at the header deadline, freeing the cap.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ok = reqwest::get(format!("{}/healthz", s.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
    drop(idle);
}

#[tokio::test]
async fn the_listen_backlog_is_the_systems_not_128() {
    // A burst of long-polls queues in the kernel's accept queue; at 128 it
    // overflowed and connections waited for SYN retries.
    let Ok(somaxconn) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") else {
        return; // not Linux
    };
    let somaxconn: u64 = somaxconn.trim().parse().unwrap();
    let s = Server::sqlite().await;
    let port = s.url.rsplit(':').next().unwrap().to_owned();
    // For a listening socket, `ss` shows the backlog as its Send-Q.
    let output = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    let line = String::from_utf8(output.stdout).unwrap();
    let backlog: u64 = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("ss printed {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(65_535), "{line}");
}
