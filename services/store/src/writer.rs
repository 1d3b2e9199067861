//! The writer tasks: group commit. Each drains what is pending (up to a
//! bound), runs it as one transaction, and answers only after the commit.

use crate::{Backend, Committed, Hub, Job, Wake, WriterConfig};
use sluice_core::Millis;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Mutex};

pub(crate) fn spawn(
    backend: Arc<dyn Backend>,
    jobs: mpsc::Receiver<Job>,
    hub: Arc<Hub>,
    expiry: Arc<watch::Sender<Option<Millis>>>,
    config: WriterConfig,
) -> Vec<tokio::task::JoinHandle<()>> {
    let jobs = Arc::new(Mutex::new(jobs));
    let writers = config.writers.clamp(1, backend.max_writers());
    (0..writers)
        .map(|_| {
            let (backend, jobs, hub, expiry) =
                (backend.clone(), jobs.clone(), hub.clone(), expiry.clone());
            let max_batch = config.max_batch.max(1);
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&jobs, max_batch).await {
                    run(&*backend, batch, &hub, &expiry).await;
                }
            })
        })
        .collect()
}

/// Wait for one command, then take whatever else is already queued.
async fn next_batch(jobs: &Mutex<mpsc::Receiver<Job>>, max_batch: usize) -> Option<Vec<Job>> {
    let mut jobs = jobs.lock().await;
    let first = jobs.recv().await?;
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn run(
    backend: &dyn Backend,
    batch: Vec<Job>,
    hub: &Hub,
    expiry: &watch::Sender<Option<Millis>>,
) {
    let requests: Vec<_> = batch.iter().map(|j| j.request.clone()).collect();
    match backend.run_batch(&requests).await {
        Ok(committed) => answer(batch, committed, hub, expiry),
        Err(error) if batch.len() > 1 => {
            // One bad command must not fail its neighbours: retry alone.
            tracing::warn!(%error, commands = batch.len(), "batch failed; retrying its commands one by one");
            for job in batch {
                match backend.run_batch(std::slice::from_ref(&job.request)).await {
                    Ok(committed) => answer(vec![job], committed, hub, expiry),
                    Err(error) => {
                        tracing::error!(%error, "command failed");
                        let _ = job.reply.send(Err(error));
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "command failed");
            // A batch of one: its command alone failed.
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(error));
            }
        }
    }
}

fn answer(
    batch: Vec<Job>,
    committed: Committed,
    hub: &Hub,
    expiry: &watch::Sender<Option<Millis>>,
) {
    for (job, answer) in batch.into_iter().zip(committed.answers) {
        // The caller may have gone away (client disconnected): the change is
        // committed all the same.
        let _ = job.reply.send(Ok(answer));
    }
    for (table, leases) in committed.changed {
        hub.publish(&table, Wake::Changed(Arc::new(leases)));
    }
    if let Some(next) = committed.next_expiry {
        expiry.send_if_modified(|planned| match planned {
            Some(p) if *p <= next => false,
            _ => {
                *planned = Some(next);
                true
            }
        });
    }
}
