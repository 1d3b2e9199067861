//! How fast a long-polling writer learns of the release that lets it in:
//! a reader holds the table, a writer long-polls (possibly on another
//! replica), the reader releases; the time from sending the release to the
//! writer's answer is one sample.

use crate::client::{Acquire, Client};
use std::time::{Duration, Instant};

pub async fn wake_latencies(
    reader_url: &str,
    writer_url: &str,
    table: &str,
    rounds: usize,
    token: Option<String>,
) -> anyhow::Result<Vec<Duration>> {
    let reader = Client::new(reader_url).with_token(token.clone());
    let writer = Client::new(writer_url).with_token(token);
    let answer = reader.put_table(table, serde_json::json!({})).await?;
    anyhow::ensure!(answer.status < 300, "PUT table: {answer:?}");
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let read = Acquire {
            mode: "read",
            holder: format!("reader-{round}"),
            ttl_seconds: 60,
            ..Acquire::default()
        };
        let held = reader
            .acquire(table, &read)
            .await?
            .lease()
            .ok_or_else(|| anyhow::anyhow!("read not granted"))?;
        let long_poll = {
            let (writer, table) = (writer.clone(), table.to_owned());
            tokio::spawn(async move {
                let write = Acquire {
                    mode: "write",
                    holder: format!("writer-{round}"),
                    ttl_seconds: 60,
                    wait_seconds: 30,
                    ..Acquire::default()
                };
                let answer = writer.acquire(&table, &write).await;
                (answer, Instant::now())
            })
        };
        wait_for_a_waiter(&reader, table).await?;
        let released = Instant::now();
        let release = reader.release(&held.lease_id, held.token).await?;
        anyhow::ensure!(release.status == 200, "release: {release:?}");
        let (answer, answered) = long_poll.await?;
        let answer = answer?;
        anyhow::ensure!(answer.status == 201, "write not granted: {answer:?}");
        let granted = answer
            .lease()
            .ok_or_else(|| anyhow::anyhow!("write not granted: {answer:?}"))?;
        samples.push(answered.duration_since(released));
        writer.release(&granted.lease_id, granted.token).await?;
    }
    Ok(samples)
}

async fn wait_for_a_waiter(client: &Client, table: &str) -> anyhow::Result<()> {
    for _ in 0..500 {
        let view = client.table_leases(table).await?;
        if view.body["waiters"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("the writer never queued")
}
