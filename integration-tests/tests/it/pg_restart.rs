//! PostgreSQL stopped and started again under load across two replicas:
//! while it is down every call answers 503 `storage_unavailable` quickly
//! (no hang, no 500), once it is back both replicas serve again by
//! themselves within seconds, and the history stays safe (no double grant,
//! nothing acknowledged lost). The database is a server of the test's own,
//! so stopping it disturbs no other test.

use crate::harness::Server;
use crate::own_postgres::PgServer;
use crate::raw::Acquire;
use serde_json::{json, Value};
use sluice_client::history;
use sluice_client::load::{self, LoadConfig};
use sluice_client::wake;
use std::time::{Duration, Instant};

/// How long PostgreSQL stays down (at least; longer if the probes take longer).
const DOWN_FOR: Duration = Duration::from_secs(3);
/// Every call while the database is down answers within this (the
/// server's own request timeout is 330 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// Both replicas serve again within this once PostgreSQL accepts connections.
const RECOVER_WITHIN: Duration = Duration::from_secs(5);
const PROBE_TABLE: &str = "restart.probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_then_recovers_and_stays_safe() {
    let pg = std::sync::Arc::new(PgServer::start());
    let db = pg.create_database("sluice").await;
    let (a, b) = (
        Server::on_database(&db).await,
        Server::on_database(&db).await,
    );
    let config = LoadConfig {
        urls: vec![a.url.clone(), b.url.clone()],
        clients: 16,
        tables: 8,
        duration: Duration::from_secs(16),
        hold: Duration::from_millis(2),
        ttl_seconds: 15,
        wait_seconds: 5,
        retry_for: Duration::from_secs(30),
        ..LoadConfig::default()
    };
    load::setup(&config, &load::load_table_settings())
        .await
        .unwrap();
    let _logs = LogsOnFailure(&pg, [&a, &b]);
    let put = a.client.put_table(PROBE_TABLE, json!({})).await.unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    let running = tokio::spawn(load::run(config));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let down_ms = load::wall_ms();
    let down_at = Instant::now();
    let stopping = tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || {
            pg.stop();
            down_at.elapsed()
        }
    });
    // Probe both replicas during the shutdown (the pool's connections are
    // dead, new ones are refused as "shutting down") and once it is down
    // (connections refused), then until it has been down for DOWN_FOR.
    let (early, late) = tokio::join!(
        async {
            // The sessions end at once; the shutdown checkpoint takes longer.
            tokio::time::sleep(Duration::from_millis(200)).await;
            probe_round(&[&a, &b], down_at).await
        },
        async {
            let took = stopping.await.expect("pg_ctl stop -m fast");
            eprintln!("PostgreSQL stopped (fast) in {took:?}");
            probe_round(&[&a, &b], down_at).await
        }
    );
    let mut worst = early.max(late);
    while down_at.elapsed() < DOWN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        worst = worst.max(probe_round(&[&a, &b], down_at).await);
    }
    eprintln!("slowest 503 while down: {worst:?}");

    tokio::task::block_in_place(|| pg.start_again());
    let up_at = Instant::now();
    let up_ms = load::wall_ms();
    eprintln!(
        "PostgreSQL accepting connections again after {:?} down",
        down_at.elapsed()
    );
    // Meanwhile, as soon as they can, each replica's release wakes a
    // long-poll on the other: the LISTEN connections came back, and what
    // was committed before they listened again was not missed.
    let (took_a, took_b, woke_b, woke_a) = tokio::join!(
        serves_again(&a, up_at),
        serves_again(&b, up_at),
        first_wake(&a, &b, "restart.wake_ab"),
        first_wake(&b, &a, "restart.wake_ba"),
    );
    eprintln!("serving again after: replica A {took_a:?}, replica B {took_b:?}");
    eprintln!(
        "a release woke a long-poll on the other replica in: A->B {woke_b:?}, B->A {woke_a:?}"
    );
    for (name, took) in [("A", took_a), ("B", took_b)] {
        assert!(
            took <= RECOVER_WITHIN,
            "replica {name} served again only {took:?} after PostgreSQL was back"
        );
    }
    for (name, woken) in [("B", woke_b), ("A", woke_a)] {
        assert!(
            woken < RECOVER_WITHIN,
            "replica {name} answered a long-poll {woken:?} after the release on the other: \
             a NOTIFY missed around the restart"
        );
    }
    for s in [&a, &b] {
        let ready = s
            .client
            .send(reqwest::Method::GET, "/readyz", None)
            .await
            .unwrap();
        assert_eq!(ready.status, 200, "{ready:?}");
    }

    let result = running.await.unwrap().unwrap();
    eprintln!("load: {:?}", result.summary);
    assert!(
        result.summary.retries > 0,
        "the outage happened under load: {:?}",
        result.summary
    );
    assert_eq!(
        result.summary.errors, 0,
        "only 503s (retried) while down, nothing else unexpected: {:?}",
        result.summary
    );
    let before = result
        .holds
        .iter()
        .filter(|h| h.granted_ack_ms < down_ms)
        .count();
    let after = result
        .holds
        .iter()
        .filter(|h| h.granted_ack_ms > up_ms)
        .count();
    assert!(
        before > 20 && after > 20,
        "load before the stop ({before} holds) and after the start ({after}): {:?}",
        result.summary
    );

    let events = a.client.typed().all_events(0, None).await.unwrap();
    let report = history::check(&result.holds, &events);
    assert!(report.ok(), "{:#?}", report.violations);
    eprintln!(
        "checked {} holds on {} tables against {} events",
        report.holds, report.tables, report.events
    );
    for s in [&a, &b] {
        assert!(
            !s.log_text().contains("panicked"),
            "a panic in {}: {}",
            s.url,
            s.log_text()
        );
    }
}

/// On a failed assertion, the end of each server's log.
struct LogsOnFailure<'a>(&'a PgServer, [&'a Server; 2]);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        for s in self.1 {
            eprintln!("--- sluice {} ---\n{}", s.url, tail(s.log_text()));
        }
        eprintln!("--- PostgreSQL ---\n{}", tail(self.0.log_text()));
    }
}

/// Probe every server at once; each call must answer 503
/// `storage_unavailable` with `Retry-After`, within ANSWER_WITHIN. The
/// slowest answer.
async fn probe_round(servers: &[&Server], down_at: Instant) -> Duration {
    let probes = probe_all(servers).await;
    for s in servers {
        for what in [ACQUIRE, "GET /readyz", "GET /v1/tables"] {
            let these: Vec<&Probe> = probes
                .iter()
                .filter(|p| p.url == s.url && p.what == what)
                .collect();
            let mut answers: Vec<String> = these
                .iter()
                .map(|p| format!("{} {}", p.status, p.kind.as_deref().unwrap_or("-")))
                .collect();
            answers.dedup();
            eprintln!(
                "sent {:>4.1} s after the stop: {} {}x {what} -> {answers:?} in {:?} to {:?} (Retry-After {:?})",
                these[0].sent.duration_since(down_at).as_secs_f64(),
                s.url,
                these.len(),
                these.iter().map(|p| p.latency).min().unwrap_or_default(),
                these.iter().map(|p| p.latency).max().unwrap_or_default(),
                these[0].retry_after,
            );
        }
    }
    for p in &probes {
        assert_eq!(p.status, 503, "{} {}: {p:?}", p.url, p.what);
        assert_eq!(
            p.kind.as_deref(),
            Some("storage_unavailable"),
            "{} {}: {p:?}",
            p.url,
            p.what
        );
        assert!(
            p.retry_after.is_some(),
            "{} {}: a 503 says when to retry: {p:?}",
            p.url,
            p.what
        );
        assert!(
            p.latency < ANSWER_WITHIN,
            "{} {} took {:?} while the database was down",
            p.url,
            p.what,
            p.latency
        );
    }
    probes.iter().map(|p| p.latency).max().unwrap_or_default()
}

#[derive(Debug)]
struct Probe {
    url: String,
    what: &'static str,
    status: u16,
    kind: Option<String>,
    retry_after: Option<String>,
    sent: Instant,
    latency: Duration,
}

/// Acquires sent at once to each server: they are committed as one batch,
/// which must fail as a whole when the database is down, not command by
/// command (each waiting for a connection in turn).
const ACQUIRES_AT_ONCE: usize = 8;
const ACQUIRE: &str = "POST acquire";

/// A burst of acquires, `/readyz` and a table listing on each server, all
/// at once.
async fn probe_all(servers: &[&Server]) -> Vec<Probe> {
    let http = reqwest::Client::builder()
        // Far beyond ANSWER_WITHIN: a hang fails the latency assertion
        // without stalling the test for the server's 330 s.
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let acquire = json!({ "mode": "read", "holder": "probe", "ttl_seconds": 30 });
    let mut calls = Vec::new();
    for s in servers {
        let acquires = (0..ACQUIRES_AT_ONCE).map(|_| {
            (
                ACQUIRE,
                http.post(format!("{}/v1/tables/{PROBE_TABLE}/leases", s.url))
                    .json(&acquire),
            )
        });
        let reads = [
            ("GET /readyz", http.get(format!("{}/readyz", s.url))),
            ("GET /v1/tables", http.get(format!("{}/v1/tables", s.url))),
        ];
        for (what, request) in acquires.chain(reads) {
            let url = s.url.clone();
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(error) => {
                        return Probe {
                            url,
                            what,
                            status: 0,
                            kind: Some(format!("no answer: {error}")),
                            retry_after: None,
                            sent,
                            latency: sent.elapsed(),
                        }
                    }
                };
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Probe {
                    url,
                    what,
                    status,
                    kind: body
                        .pointer("/error/type")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    retry_after,
                    sent,
                    latency: sent.elapsed(),
                }
            }));
        }
    }
    let mut probes = Vec::new();
    for call in calls {
        probes.push(call.await.unwrap());
    }
    probes
}

/// The first wake-up across replicas that gets through (a fresh table per
/// try: a failed try may leave a lease behind): how long the long-poll on
/// `to` took to answer after the release on `from` (30 s if not woken).
async fn first_wake(from: &Server, to: &Server, prefix: &str) -> Duration {
    let give_up = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let table = format!("{prefix}{attempt}");
        match wake::wake_latencies(&from.url, &to.url, &table, 1, None).await {
            Ok(samples) => return samples[0],
            Err(error) if Instant::now() < give_up => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no wake-up from {} to {}: {error}", from.url, to.url),
        }
    }
    unreachable!()
}

/// Acquire and release a lease on `s` until both succeed; how long after
/// `since` that was.
async fn serves_again(s: &Server, since: Instant) -> Duration {
    let give_up = since + Duration::from_secs(30);
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, acquire_and_release(s)).await {
            Ok(true) => return since.elapsed(),
            Ok(false) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => panic!("{} not serving 30 s after PostgreSQL was back", s.url),
        }
    }
}

async fn acquire_and_release(s: &Server) -> bool {
    let acquire = Acquire {
        mode: "read",
        holder: "recovery".into(),
        ttl_seconds: 30,
        wait_seconds: 0,
        idempotency_key: None,
    };
    let Ok(granted) = s.client.acquire(PROBE_TABLE, &acquire).await else {
        return false;
    };
    let Some(lease) = granted.lease().filter(|_| granted.status == 201) else {
        return false;
    };
    s.client
        .release(&lease.lease_id, lease.token)
        .await
        .is_ok_and(|released| released.status == 200)
}
