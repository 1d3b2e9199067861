//! The load generator: many clients take and release random leases on many
//! tables against one or more sluice processes, and record every grant and
//! release (with its token) for the checker.

use crate::client::{self, Client};
use crate::history::Hold;
use serde::Serialize;
use sluice_api::dto::{AcquireBody, LeaseMode, LeaseStateBody, PutTableBody};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// One or more sluice processes; client `i` talks to `urls[i % n]`.
    pub urls: Vec<String>,
    pub clients: usize,
    pub tables: usize,
    /// Tables are named `{namespace}.t{index}`.
    pub namespace: String,
    pub duration: Duration,
    /// Share of read leases, 0.0 to 1.0.
    pub read_ratio: f64,
    pub ttl_seconds: u32,
    pub wait_seconds: u32,
    /// How long a client holds each lease before releasing it.
    pub hold: Duration,
    /// How long to keep retrying a call whose connection failed (a replica
    /// being restarted) before giving up on it.
    pub retry_for: Duration,
    /// A bearer token for servers that require one.
    pub token: Option<String>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            urls: vec!["http://127.0.0.1:7878".into()],
            clients: 16,
            tables: 100,
            namespace: "load".into(),
            duration: Duration::from_secs(5),
            read_ratio: 0.7,
            ttl_seconds: 30,
            wait_seconds: 30,
            hold: Duration::ZERO,
            retry_for: Duration::from_secs(30),
            token: None,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub clients: usize,
    pub tables: usize,
    pub seconds: f64,
    /// Acquires and releases answered, each counting as one.
    pub ops: u64,
    pub ops_per_second: f64,
    pub grants: u64,
    pub grant_p50_ms: f64,
    pub grant_p99_ms: f64,
    /// Calls answered with an unexpected status.
    pub errors: u64,
    /// The first few of them, said.
    pub error_samples: Vec<String>,
    /// Calls retried after a failed connection.
    pub retries: u64,
}

pub struct LoadResult {
    pub holds: Vec<Hold>,
    pub summary: Summary,
}

pub fn table_name(namespace: &str, index: usize) -> String {
    format!("{namespace}.t{index:05}")
}

/// Register the tables the load will use.
pub async fn setup(config: &LoadConfig, settings: &PutTableBody) -> anyhow::Result<()> {
    let client = Client::new(&config.urls[0]).with_token(config.token.clone());
    for i in 0..config.tables {
        let table = table_name(&config.namespace, i);
        client
            .put_table(&table, settings)
            .await
            .map_err(|e| anyhow::anyhow!("PUT table {table}: {e}"))?;
    }
    Ok(())
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    samples: std::sync::Mutex<Vec<String>>,
}

impl Counters {
    /// An unexpected answer: counted, and the first few kept to say why.
    fn error(&self, what: impl FnOnce() -> String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().expect("samples lock");
        if samples.len() < 5 {
            samples.push(what());
        }
    }
}

pub async fn run(config: LoadConfig) -> anyhow::Result<LoadResult> {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let end = started + config.duration;
    let clients: Vec<Client> = config
        .urls
        .iter()
        .map(|u| Client::new(u).with_token(config.token.clone()))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..config.clients {
        let client = clients[i % clients.len()].clone();
        let (config, counters) = (config.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(i as u32, client, config, counters, end).await
        }));
    }
    let mut holds = Vec::new();
    let mut latencies = Vec::new();
    for task in tasks {
        let (h, l) = task.await?;
        holds.extend(h);
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ops = counters.ops.load(Ordering::Relaxed);
    let summary = Summary {
        clients: config.clients,
        tables: config.tables,
        seconds,
        ops,
        ops_per_second: ops as f64 / seconds,
        grants: latencies.len() as u64,
        grant_p50_ms: percentile(&latencies, 0.50),
        grant_p99_ms: percentile(&latencies, 0.99),
        errors: counters.errors.load(Ordering::Relaxed),
        error_samples: counters.samples.lock().expect("samples lock").clone(),
        retries: counters.retries.load(Ordering::Relaxed),
    };
    Ok(LoadResult { holds, summary })
}

pub(crate) fn percentile(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

async fn client_loop(
    id: u32,
    client: Client,
    config: LoadConfig,
    counters: Arc<Counters>,
    end: Instant,
) -> (Vec<Hold>, Vec<u64>) {
    let mut rng =
        XorShift(0x9E37_79B9_7F4A_7C15 ^ (u64::from(id) + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut holds = Vec::new();
    let mut latencies = Vec::new();
    let give_up = end + config.retry_for;
    while Instant::now() < end {
        let table = table_name(&config.namespace, rng.below(config.tables as u64) as usize);
        let mode = if rng.unit() < config.read_ratio {
            LeaseMode::Read
        } else {
            LeaseMode::Write
        };
        let acquire = AcquireBody {
            mode,
            holder: format!("client-{id}"),
            ttl_seconds: i64::from(config.ttl_seconds),
            wait_seconds: Some(i64::from(config.wait_seconds)),
            // A retry after a lost answer must get the same lease back.
            idempotency_key: Some(uuid::Uuid::now_v7().to_string()),
            purpose: None,
            pin_snapshot_id: None,
        };
        let asked = Instant::now();
        let requested_ms = wall_ms();
        let Some(answer) = retrying(&counters, give_up, || client.acquire(&table, &acquire)).await
        else {
            break;
        };
        counters.ops.fetch_add(1, Ordering::Relaxed);
        let mut lease = match answer {
            Ok(lease) => lease,
            // It waited past its TTL without a heartbeat reaching sluice (a
            // server paused, a link cut) and left the queue: the server's
            // call, as when a waiter expires between polls below.
            Err(e) if e.kind() == Some("lease_expired") => continue,
            Err(e) => {
                counters.error(|| format!("acquire {table}: {e}"));
                continue;
            }
        };
        let mut poll_error = None;
        while matches!(lease.state, LeaseStateBody::Waiting) {
            let Some(next) = retrying(&counters, give_up, || {
                client.lease(&lease.lease_id, config.wait_seconds)
            })
            .await
            else {
                break;
            };
            match next {
                Ok(next) => lease = next,
                Err(e) => {
                    poll_error = Some(e.to_string());
                    break;
                }
            }
        }
        match lease.state {
            LeaseStateBody::Granted => {}
            // Gave up waiting, or the poll failed.
            LeaseStateBody::Waiting => {
                counters.error(|| {
                    format!(
                        "waiting for {} on {table}: {}",
                        lease.lease_id,
                        poll_error.unwrap_or_else(|| "gave up".into())
                    )
                });
                continue;
            }
            // Expired or revoked while it waited: the server's call.
            _ => continue,
        }
        let granted_ack_ms = wall_ms();
        latencies.push(asked.elapsed().as_micros() as u64);
        let token = lease.token.unwrap_or_default();
        if !config.hold.is_zero() {
            tokio::time::sleep(config.hold).await;
        }
        let release_sent_ms = wall_ms();
        let released = retrying(&counters, give_up, || {
            client.release(&lease.lease_id, Some(token))
        })
        .await;
        counters
            .ops
            .fetch_add(u64::from(released.is_some()), Ordering::Relaxed);
        let release_acked = matches!(released, Some(Ok(_)));
        // 409: it ended on its own (expired, revoked) before the release.
        if let Some(Err(e)) = &released {
            if e.status() != Some(409) {
                counters.error(|| format!("release {}: {e}", lease.lease_id));
            }
        }
        holds.push(Hold {
            client: id,
            table,
            lease_id: lease.lease_id,
            mode: sluice_core::Mode::from(mode).as_str().to_owned(),
            token,
            requested_ms,
            granted_ack_ms,
            expires_at_ms: sluice_core::Millis::parse_rfc3339(&lease.expires_at)
                .map_or(i64::MAX, |m| m.0),
            release_sent_ms: Some(release_sent_ms),
            release_acked,
        });
    }
    (holds, latencies)
}

/// Call until the server answers anything but "unavailable", retrying
/// failed connections and 503s until `give_up`.
async fn retrying<T, F, Fut>(
    counters: &Counters,
    give_up: Instant,
    mut call: F,
) -> Option<client::Result<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = client::Result<T>>,
{
    loop {
        match call().await {
            Err(e) if e.is_transient() && e.status() != Some(429) => {
                if Instant::now() >= give_up {
                    return None;
                }
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return Some(answer),
        }
    }
}

pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A tiny deterministic PRNG: the load only needs spread, not quality.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The settings used for load tables: a short deferral so that writers are
/// not starved within a short run.
pub fn load_table_settings() -> PutTableBody {
    PutTableBody {
        max_compaction_deferral_seconds: Some(1),
        ..PutTableBody::default()
    }
}
