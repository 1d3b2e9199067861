//! The peer load: the same clients and the same spread over names as the
//! lease load, taking and releasing etcd locks through etcd's v3 JSON
//! gateway (a lease granted once per client, then lock / unlock), so that
//! sluice's figures can be ratios to etcd's measured minutes apart.

use crate::load::{percentile, XorShift};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct EtcdLoadConfig {
    /// etcd's client URL, e.g. `http://127.0.0.1:2379`.
    pub url: String,
    pub clients: usize,
    /// Lock names `sluice-bench/t{index}`.
    pub tables: usize,
    pub duration: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct EtcdSummary {
    pub clients: usize,
    pub tables: usize,
    pub seconds: f64,
    /// Locks and unlocks answered, each counting as one (as sluice's load
    /// counts acquires and releases).
    pub ops: u64,
    pub ops_per_second: f64,
    pub grants: u64,
    pub grant_p50_ms: f64,
    pub grant_p99_ms: f64,
    pub errors: u64,
}

pub async fn run(config: EtcdLoadConfig) -> anyhow::Result<EtcdSummary> {
    let started = Instant::now();
    let end = started + config.duration;
    let tasks: Vec<_> = (0..config.clients)
        .map(|id| {
            let config = config.clone();
            tokio::spawn(async move { client_loop(id, config, end).await })
        })
        .collect();
    let (mut ops, mut errors, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        let (o, e, l) = task.await??;
        ops += o;
        errors += e;
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(EtcdSummary {
        clients: config.clients,
        tables: config.tables,
        seconds,
        ops,
        ops_per_second: ops as f64 / seconds,
        grants: latencies.len() as u64,
        grant_p50_ms: percentile(&latencies, 0.5),
        grant_p99_ms: percentile(&latencies, 0.99),
        errors,
    })
}

async fn client_loop(
    id: usize,
    config: EtcdLoadConfig,
    end: Instant,
) -> anyhow::Result<(u64, u64, Vec<u64>)> {
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", config.url))
            .json(&body)
            .send()
    };
    // One etcd lease per client, outliving the run: a lock is held under it.
    let ttl = config.duration.as_secs() + 60;
    let grant: Value = post("/v3/lease/grant", json!({ "TTL": ttl }))
        .await?
        .json()
        .await?;
    let lease = grant["ID"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("lease grant answered {grant}"))?
        .to_owned();
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9));
    let (mut ops, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    while Instant::now() < end {
        let name = format!("sluice-bench/t{:05}", rng.below(config.tables as u64));
        let asked = Instant::now();
        let locked: Value = match post(
            "/v3/lock/lock",
            json!({ "name": base64(name.as_bytes()), "lease": lease }),
        )
        .await
        {
            Ok(response) if response.status().is_success() => response.json().await?,
            _ => {
                errors += 1;
                continue;
            }
        };
        latencies.push(asked.elapsed().as_micros() as u64);
        ops += 1;
        let Some(key) = locked["key"].as_str() else {
            errors += 1;
            continue;
        };
        match post("/v3/lock/unlock", json!({ "key": key })).await {
            Ok(response) if response.status().is_success() => ops += 1,
            _ => errors += 1,
        }
    }
    Ok((ops, errors, latencies))
}

/// Standard base64 with padding: how etcd's JSON gateway takes bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(
            super::base64(b"sluice-bench/t00001"),
            "c2x1aWNlLWJlbmNoL3QwMDAwMQ=="
        );
    }
}
