//! The stream load: many clients run open -> commit cycles on random
//! streams, as ingestion jobs do, and time both calls.

use crate::client::Client;
use crate::load::{percentile, XorShift};
use serde::Serialize;
use serde_json::json;
use sluice_api::stream_dto::{
    BookmarkUpdateBody, CommitBody, CountsBody, LoadBody, OpenBatchBody, PutStreamBody,
};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StreamLoadConfig {
    pub url: String,
    pub clients: usize,
    pub streams: usize,
    /// Streams are named `{namespace}.s{index}`.
    pub namespace: String,
    pub duration: Duration,
    pub token: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct StreamSummary {
    pub clients: usize,
    pub streams: usize,
    pub seconds: f64,
    /// Batches opened and committed.
    pub cycles: u64,
    pub cycles_per_second: f64,
    pub open_p50_ms: f64,
    pub open_p99_ms: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// Opens refused because another client's batch was open on the stream.
    pub conflicts: u64,
    /// Calls answered with an unexpected status.
    pub errors: u64,
}

pub fn stream_name(namespace: &str, index: usize) -> String {
    format!("{namespace}.s{index:05}")
}

/// Register the streams the load will use, each on a table of its own
/// (registered first: a stream needs its table).
pub async fn setup(config: &StreamLoadConfig) -> anyhow::Result<()> {
    let client = Client::new(&config.url).with_token(config.token.clone());
    for i in 0..config.streams {
        let table = format!("{}.t{i:05}", config.namespace);
        client
            .put_table(&table, &sluice_api::dto::PutTableBody::default())
            .await
            .map_err(|e| anyhow::anyhow!("PUT table {table}: {e}"))?;
        let settings = PutStreamBody {
            table,
            source: Some(json!({ "kind": "bench" })),
            expected_schema_hash: None,
        };
        client
            .put_stream(&stream_name(&config.namespace, i), &settings)
            .await
            .map_err(|e| anyhow::anyhow!("register stream {i}: {e}"))?;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    cycles: u64,
    conflicts: u64,
    errors: u64,
    open_us: Vec<u64>,
    commit_us: Vec<u64>,
}

pub async fn run(config: StreamLoadConfig) -> anyhow::Result<StreamSummary> {
    let started = Instant::now();
    let deadline = started + config.duration;
    let tasks: Vec<_> = (0..config.clients)
        .map(|id| {
            let config = config.clone();
            tokio::spawn(async move { client_loop(id, &config, deadline).await })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await??;
        all.cycles += t.cycles;
        all.conflicts += t.conflicts;
        all.errors += t.errors;
        all.open_us.extend(t.open_us);
        all.commit_us.extend(t.commit_us);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.open_us.sort_unstable();
    all.commit_us.sort_unstable();
    Ok(StreamSummary {
        clients: config.clients,
        streams: config.streams,
        seconds,
        cycles: all.cycles,
        cycles_per_second: all.cycles as f64 / seconds,
        open_p50_ms: percentile(&all.open_us, 0.5),
        open_p99_ms: percentile(&all.open_us, 0.99),
        commit_p50_ms: percentile(&all.commit_us, 0.5),
        commit_p99_ms: percentile(&all.commit_us, 0.99),
        conflicts: all.conflicts,
        errors: all.errors,
    })
}

async fn client_loop(
    id: usize,
    config: &StreamLoadConfig,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let client = Client::new(&config.url).with_token(config.token.clone());
    let mut rng = XorShift(0xA076_1D64_78BD_642F ^ (id as u64 + 1).wrapping_mul(0xE703_7ED1));
    let run_id = format!("bench-run-{id}");
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let stream = stream_name(&config.namespace, rng.below(config.streams as u64) as usize);
        let sent = Instant::now();
        let open = OpenBatchBody {
            run_id: run_id.clone(),
            ttl_seconds: Some(60),
        };
        let opened = client.open_batch(&stream, &open).await;
        tally.open_us.push(sent.elapsed().as_micros() as u64);
        let batch = match opened {
            Ok(batch) => batch,
            Err(e) if e.status() == Some(409) => {
                tally.conflicts += 1;
                continue;
            }
            Err(crate::client::Error::Transport(e)) => return Err(e.into()),
            Err(_) => {
                tally.errors += 1;
                continue;
            }
        };
        let version = batch.bookmark.as_ref().map_or(0, |b| b.version);
        // A growing high-water mark: the bookmark stays one small row
        // however long the run.
        let body = CommitBody {
            token: batch.token,
            bookmark: BookmarkUpdateBody {
                load: Some(LoadBody {
                    high_water: Some(format!("LOAD{:012}.csv", version + 1)),
                    ..LoadBody::default()
                }),
                delta: None,
            },
            load_complete: false,
            counts: CountsBody {
                inserted: 100,
                updated: 10,
                deleted: 1,
            },
            snapshot_id: Some(version + 1),
            schema_hash: None,
        };
        let sent = Instant::now();
        let committed = client.commit_batch(&stream, &batch.batch_id, &body).await;
        tally.commit_us.push(sent.elapsed().as_micros() as u64);
        match committed {
            Ok(_) => tally.cycles += 1,
            Err(crate::client::Error::Transport(e)) => return Err(e.into()),
            Err(_) => tally.errors += 1,
        }
    }
    Ok(tally)
}
