//! How fast a long-polling writer learns of the release that lets it in:
//! a reader holds the table, a writer long-polls (possibly on another
//! replica), the reader releases; the time from sending the release to the
//! writer's answer is one sample.

use crate::client::Client;
use sluice_api::dto::{AcquireBody, LeaseMode, LeaseStateBody, PutTableBody};
use std::time::{Duration, Instant};

fn ask(mode: LeaseMode, holder: String, wait_seconds: i64) -> AcquireBody {
    AcquireBody {
        mode,
        holder,
        ttl_seconds: 60,
        wait_seconds: Some(wait_seconds),
        idempotency_key: None,
        purpose: None,
        pin_snapshot_id: None,
    }
}

pub async fn wake_latencies(
    reader_url: &str,
    writer_url: &str,
    table: &str,
    rounds: usize,
    token: Option<String>,
) -> anyhow::Result<Vec<Duration>> {
    let reader = Client::new(reader_url).with_token(token.clone());
    let writer = Client::new(writer_url).with_token(token);
    reader.put_table(table, &PutTableBody::default()).await?;
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let held = reader
            .acquire(table, &ask(LeaseMode::Read, format!("reader-{round}"), 0))
            .await?;
        anyhow::ensure!(
            matches!(held.state, LeaseStateBody::Granted),
            "read not granted: {held:?}"
        );
        let long_poll = {
            let (writer, table) = (writer.clone(), table.to_owned());
            tokio::spawn(async move {
                let write = ask(LeaseMode::Write, format!("writer-{round}"), 30);
                let answer = writer.acquire(&table, &write).await;
                (answer, Instant::now())
            })
        };
        wait_for_a_waiter(&reader, table).await?;
        let released = Instant::now();
        reader.release(&held.lease_id, held.token).await?;
        let (answer, answered) = long_poll.await?;
        let granted = answer?;
        anyhow::ensure!(
            matches!(granted.state, LeaseStateBody::Granted),
            "write not granted: {granted:?}"
        );
        samples.push(answered.duration_since(released));
        writer.release(&granted.lease_id, granted.token).await?;
    }
    Ok(samples)
}

async fn wait_for_a_waiter(client: &Client, table: &str) -> anyhow::Result<()> {
    for _ in 0..500 {
        if !client.table_leases(table).await?.waiters.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("the writer never queued")
}
