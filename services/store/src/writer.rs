//! The writer tasks: group commit. Each drains what is pending (up to a
//! bound), runs it as one transaction, and answers only after the commit.
//! Leases and streams each have their own queue and writers.

use crate::{Backend, Committed, Hub, Request, StoreError, StreamRequest, Wake, WriterConfig};
use futures::future::BoxFuture;
use futures::FutureExt;
use sluice_core::{Millis, Reply, RuleError, StreamReply};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// One kind of command that commits in groups.
pub(crate) trait Group: Send + Sync + 'static {
    type Request: Clone + Send + Sync + 'static;
    type Answer: Send + 'static;
    /// Run `requests` as one transaction and answer each, in order.
    fn commit<'a>(
        &'a self,
        requests: &'a [Self::Request],
    ) -> BoxFuture<'a, Result<Vec<Self::Answer>, StoreError>>;
}

pub(crate) struct Job<G: Group> {
    pub request: G::Request,
    pub reply: oneshot::Sender<Result<G::Answer, StoreError>>,
}

pub(crate) fn spawn<G: Group>(
    group: Arc<G>,
    jobs: mpsc::Receiver<Job<G>>,
    writers: usize,
    config: &WriterConfig,
) -> Vec<tokio::task::JoinHandle<()>> {
    let jobs = Arc::new(Mutex::new(jobs));
    let max_batch = config.max_batch.max(1);
    (0..writers.max(1))
        .map(|_| {
            let (group, jobs) = (group.clone(), jobs.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&jobs, max_batch).await {
                    run(&*group, batch).await;
                }
            })
        })
        .collect()
}

/// Wait for one command, then take whatever else is already queued.
async fn next_batch<G: Group>(
    jobs: &Mutex<mpsc::Receiver<Job<G>>>,
    max_batch: usize,
) -> Option<Vec<Job<G>>> {
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

async fn run<G: Group>(group: &G, batch: Vec<Job<G>>) {
    let requests: Vec<_> = batch.iter().map(|j| j.request.clone()).collect();
    match group.commit(&requests).await {
        Ok(answers) => answer(batch, answers),
        Err(error) if batch.len() > 1 => {
            // One bad command must not fail its neighbours: retry alone.
            tracing::warn!(%error, commands = batch.len(), "batch failed; retrying its commands one by one");
            for job in batch {
                match group.commit(std::slice::from_ref(&job.request)).await {
                    Ok(answers) => answer(vec![job], answers),
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

fn answer<G: Group>(batch: Vec<Job<G>>, answers: Vec<G::Answer>) {
    for (job, answer) in batch.into_iter().zip(answers) {
        // The caller may have gone away (client disconnected): the change is
        // committed all the same.
        let _ = job.reply.send(Ok(answer));
    }
}

/// Lease commands: after the commit, wake the long-polls of the changed
/// tables and tell the sweeper about an earlier expiry.
pub(crate) struct Leases {
    pub backend: Arc<dyn Backend>,
    pub hub: Arc<Hub>,
    pub expiry: Arc<watch::Sender<Option<Millis>>>,
}

impl Group for Leases {
    type Request = Request;
    type Answer = Result<Reply, RuleError>;

    fn commit<'a>(
        &'a self,
        requests: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<Self::Answer>, StoreError>> {
        async move {
            let Committed {
                answers,
                changed,
                next_expiry,
            } = self.backend.run_batch(requests).await?;
            for (table, leases) in changed {
                self.hub.publish(&table, Wake::Changed(Arc::new(leases)));
            }
            if let Some(next) = next_expiry {
                self.expiry.send_if_modified(|planned| match planned {
                    Some(p) if *p <= next => false,
                    _ => {
                        *planned = Some(next);
                        true
                    }
                });
            }
            Ok(answers)
        }
        .boxed()
    }
}

/// Stream commands: nothing waits on them, so the commit is all.
pub(crate) struct Streams {
    pub backend: Arc<dyn Backend>,
}

impl Group for Streams {
    type Request = StreamRequest;
    type Answer = Result<StreamReply, RuleError>;

    fn commit<'a>(
        &'a self,
        requests: &'a [StreamRequest],
    ) -> BoxFuture<'a, Result<Vec<Self::Answer>, StoreError>> {
        self.backend.run_stream_batch(requests)
    }
}
