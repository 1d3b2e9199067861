//! Faults beyond kill -9, short enough for the test command: a sluice
//! replica paused (SIGSTOP) longer than its holders' TTLs wakes up fenced
//! out, and PostgreSQL paused under load; after each, the history checker
//! finds no double grant, no lost acknowledged change, tokens increasing
//! per table. (`scripts/soak.sh` runs the same faults for longer.)

use crate::harness::{fresh_database, Server};
use crate::own_postgres::PgServer;
use crate::raw::Client;
use reqwest::Method;
use serde_json::{json, Value};
use sluice_client::history;
use sluice_client::load::{self, LoadConfig, LoadResult};
use std::time::Duration;

/// SIGSTOP or SIGCONT to every process in `pids`.
fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> crate::raw::Answer {
    client.send(method, path, body.as_ref()).await.unwrap()
}

/// The checker over what the clients saw and the server's event log.
async fn checked(result: &LoadResult, via: &Server) {
    let events = via.client.typed().all_events(0, None).await.unwrap();
    let report = history::check(&result.holds, &events);
    assert!(report.ok(), "{:#?}", report.violations);
    eprintln!(
        "checked {} holds on {} tables against {} events",
        report.holds, report.tables, report.events
    );
}

/// Two replicas on one PostgreSQL database.
async fn replicas(db: &str) -> (Server, Server) {
    (Server::on_database(db).await, Server::on_database(db).await)
}

/// The load every fault runs under: 16 clients on 4 tables through both
/// replicas, with TTLs short enough for a fault to outlast them.
async fn under_fault(
    servers: [&Server; 2],
    seconds: u64,
    ttl_seconds: u32,
    fault: impl std::future::Future<Output = ()>,
) {
    let config = LoadConfig {
        urls: servers.iter().map(|s| s.url.clone()).collect(),
        clients: 16,
        tables: 4,
        duration: Duration::from_secs(seconds),
        hold: Duration::from_millis(5),
        ttl_seconds,
        wait_seconds: 5,
        retry_for: Duration::from_secs(60),
        ..LoadConfig::default()
    };
    load::setup(&config, &load::load_table_settings())
        .await
        .unwrap();
    let running = tokio::spawn(load::run(config));
    tokio::time::sleep(Duration::from_secs(3)).await;
    fault.await;
    let result = running.await.unwrap().unwrap();
    eprintln!("load: {:?}", result.summary);
    assert_eq!(result.summary.errors, 0, "{:?}", result.summary);
    assert!(result.holds.len() > 50, "{:?}", result.summary);
    checked(&result, servers[1]).await;
    for s in servers {
        assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
        let ready = s.client.send(Method::GET, "/readyz", None).await.unwrap();
        assert_eq!(ready.status, 200, "{} serves again: {ready:?}", s.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_replica_is_paused_past_its_ttl_wakes_up_fenced_out() {
    let (a, b) = replicas(&fresh_database().await).await;
    assert_eq!(
        a.client
            .put_table("nemesis.t", json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    let held = send(
        &a.client,
        Method::POST,
        "/v1/tables/nemesis.t/leases",
        Some(json!({ "mode": "write", "holder": "paused", "ttl_seconds": 2 })),
    )
    .await;
    assert_eq!(held.body["state"], "granted", "{held:?}");
    let (lease, token) = (
        held.body["lease_id"].as_str().unwrap().to_owned(),
        held.body["token"].as_i64().unwrap(),
    );

    signal(&[a.pid().unwrap()], "STOP");
    // Sent while its replica sleeps: answered only after it wakes.
    let late_heartbeat = tokio::spawn({
        let (client, lease) = (a.client.clone(), lease.clone());
        async move {
            send(
                &client,
                Method::POST,
                &format!("/v1/leases/{lease}/heartbeat"),
                Some(json!({ "token": token, "ttl_seconds": 60 })),
            )
            .await
        }
    });
    // The other replica judges the lease expired and grants the next writer.
    let next = send(
        &b.client,
        Method::POST,
        "/v1/tables/nemesis.t/leases",
        Some(json!({ "mode": "write", "holder": "next", "ttl_seconds": 60, "wait_seconds": 60 })),
    )
    .await;
    assert_eq!(next.body["state"], "granted", "{next:?}");
    assert!(next.body["token"].as_i64().unwrap() > token, "{next:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&[a.pid().unwrap()], "CONT");

    // Everything the paused holder sends is refused and applies nothing.
    let heartbeat = late_heartbeat.await.unwrap();
    assert_eq!(heartbeat.status, 409, "{heartbeat:?}");
    let release = send(
        &a.client,
        Method::DELETE,
        &format!("/v1/leases/{lease}?token={token}"),
        None,
    )
    .await;
    assert!(matches!(release.status, 200 | 204 | 409), "{release:?}");
    let reacquire = send(
        &a.client,
        Method::POST,
        &format!("/v1/leases/{lease}/heartbeat"),
        Some(json!({ "token": token })),
    )
    .await;
    assert_eq!(reacquire.status, 409, "{reacquire:?}");
    let current = send(
        &a.client,
        Method::GET,
        &format!("/v1/leases/{}", next.body["lease_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(current.body["state"], "granted", "{current:?}");
    let holders = send(&a.client, Method::GET, "/v1/tables/nemesis.t/leases", None).await;
    let live: Vec<&Value> = holders.body["holders"].as_array().unwrap().iter().collect();
    assert_eq!(live.len(), 1, "one writer: {holders:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_across_a_replica_paused_past_the_ttls_passes_the_checker() {
    let (a, b) = replicas(&fresh_database().await).await;
    let pid = a.pid().unwrap();
    under_fault([&a, &b], 12, 2, async {
        signal(&[pid], "STOP");
        // Longer than every TTL: B expires A's holders' leases and grants on.
        tokio::time::sleep(Duration::from_secs(5)).await;
        signal(&[pid], "CONT");
    })
    .await;
}

/// Every process of the test's own PostgreSQL: the postmaster and each
/// backend (a pause of the postmaster alone would leave sessions running).
fn postgres_pids(pg: &PgServer) -> Vec<u32> {
    let postmaster: u32 = std::fs::read_to_string(pg.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let children = std::process::Command::new("pgrep")
        .args(["-P", &postmaster.to_string()])
        .output()
        .expect("run pgrep");
    let mut pids = vec![postmaster];
    pids.extend(
        String::from_utf8_lossy(&children.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok()),
    );
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_paused_under_load_then_resumed_stays_safe() {
    let pg = PgServer::start();
    let (a, b) = replicas(&pg.create_database("sluice").await).await;
    under_fault([&a, &b], 16, 3, async {
        let pids = postgres_pids(&pg);
        signal(&pids, "STOP");
        // Paused past every TTL: nothing answers meanwhile.
        tokio::time::sleep(Duration::from_secs(5)).await;
        signal(&pids, "CONT");
    })
    .await;
}

/// `scripts/tcp-nemesis.py` between sluice and PostgreSQL: what it lets
/// through is set by writing `pass`, `blackhole` or `drop` to a file.
struct Partition {
    child: std::process::Child,
    mode: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Partition {
    fn start(target_port: u16) -> Partition {
        let dir = tempfile::tempdir().unwrap();
        let mode = dir.path().join("mode");
        std::fs::write(&mode, "pass").unwrap();
        let port = crate::harness::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tcp-nemesis.py");
        let child = std::process::Command::new("python3")
            .args([script, &port.to_string(), &target_port.to_string()])
            .arg(&mode)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tcp-nemesis.py");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Partition {
            child,
            mode,
            port,
            _dir: dir,
        }
    }

    fn set(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_from_postgres_under_load_heals_and_stays_safe() {
    let pg = PgServer::start();
    let direct = pg.create_database("sluice").await;
    let pg_port: u16 = direct
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let partition = Partition::start(pg_port);
    let db = direct.replace(&format!(":{pg_port}/"), &format!(":{}/", partition.port));
    let (a, b) = replicas(&db).await;
    under_fault([&a, &b], 24, 3, async {
        // Silence for 10 s (connections stay open, nothing moves), then heal.
        partition.set("blackhole");
        tokio::time::sleep(Duration::from_secs(10)).await;
        partition.set("pass");
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Every connection reset, new ones refused, for 3 s; then heal.
        partition.set("drop");
        tokio::time::sleep(Duration::from_secs(3)).await;
        partition.set("pass");
    })
    .await;
}
