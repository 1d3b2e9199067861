//! The writer tasks: group commit. Each drains what is pending (up to a
//! bound), runs it as one transaction, and answers only after the commit.
//! Each aggregate's commands have their own queue and writers (a [`Group`]:
//! `leases::Leases`, `streams::Streams`).

use crate::error::StoreError;
use crate::stats::StoreStats;
use crate::WriterConfig;
use futures::future::BoxFuture;
use sluice_core::RuleError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// One aggregate's commands, committed in groups.
pub(crate) trait Group: Send + Sync + 'static {
    type Job: Pending;
    /// Its name in the metrics (`leases`, `streams`).
    const NAME: &'static str;
    /// Run `jobs` as one transaction, leaving each job's answer in it.
    fn commit<'a>(&'a self, jobs: &'a mut [Self::Job]) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A queued command that can be answered.
pub(crate) trait Pending: Send + 'static {
    /// Send the answer the commit left in the job, or the commit's error.
    fn finish(self, committed: Result<(), StoreError>);
}

/// What a caller awaits: the rules' answer, once committed, or the store's
/// failure.
pub type Answer<R> = Result<Result<R, RuleError>, StoreError>;

/// Where one command's answer of type `R` is kept until the commit, and
/// the caller it goes to.
pub(crate) struct Slot<R> {
    answer: Option<Result<R, RuleError>>,
    reply: oneshot::Sender<Answer<R>>,
}

impl<R> Slot<R> {
    pub fn new() -> (Slot<R>, oneshot::Receiver<Answer<R>>) {
        let (reply, answer) = oneshot::channel();
        (
            Slot {
                answer: None,
                reply,
            },
            answer,
        )
    }

    /// The rules' answer, kept until the transaction commits (a retry of
    /// the batch overwrites it).
    pub fn set(&mut self, answer: Result<R, RuleError>) {
        self.answer = Some(answer);
    }

    pub fn finish(self, committed: Result<(), StoreError>) {
        let answer = committed.and_then(|()| {
            self.answer.ok_or_else(|| {
                StoreError::Internal("the batch committed without answering a command".into())
            })
        });
        // The caller may have gone away (client disconnected): the change is
        // committed all the same.
        let _ = self.reply.send(answer);
    }
}

pub(crate) fn spawn<G: Group>(
    group: Arc<G>,
    jobs: mpsc::Receiver<G::Job>,
    writers: usize,
    config: &WriterConfig,
    stats: &Arc<StoreStats>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let jobs = Arc::new(Mutex::new(jobs));
    let max_batch = config.max_batch.max(1);
    (0..writers.max(1))
        .map(|_| {
            let (group, jobs, stats) = (group.clone(), jobs.clone(), stats.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&jobs, max_batch).await {
                    run(&*group, batch, &stats).await;
                }
            })
        })
        .collect()
}

/// Wait for one command, then take whatever else is already queued.
async fn next_batch<J>(jobs: &Mutex<mpsc::Receiver<J>>, max_batch: usize) -> Option<Vec<J>> {
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

async fn run<G: Group>(group: &G, mut batch: Vec<G::Job>, stats: &StoreStats) {
    let started = std::time::Instant::now();
    match group.commit(&mut batch).await {
        Ok(()) => {
            stats.committed(G::NAME, batch.len(), started.elapsed().as_secs_f64());
            for job in batch {
                job.finish(Ok(()));
            }
        }
        Err(StoreError::TooLarge(why)) if batch.len() > 1 => {
            // Past the database's limit on one transaction (DynamoDB's
            // items): commit each half as its own transaction, each
            // answered after its own commit; a command is never split.
            tracing::debug!(%why, commands = batch.len(), "batch too large; committing it in halves");
            stats.split(G::NAME);
            let second = batch.split_off(batch.len() / 2);
            Box::pin(run(group, batch, stats)).await;
            Box::pin(run(group, second, stats)).await;
        }
        Err(error) if batch.len() > 1 => {
            // One bad command must not fail its neighbours: retry alone.
            tracing::warn!(%error, commands = batch.len(), "batch failed; retrying its commands one by one");
            let mut down: Option<StoreError> = None;
            for job in batch {
                // Once the database is gone, the rest would each wait for a
                // connection in turn: fail them now; their callers get 503.
                if let Some(error) = &down {
                    job.finish(Err(error.clone()));
                    continue;
                }
                let mut one = [job];
                let committed = group.commit(&mut one).await;
                if let Err(error) = &committed {
                    tracing::error!(%error, "command failed");
                    if matches!(error, StoreError::Unavailable(_)) {
                        down = Some(error.clone());
                    }
                }
                let [job] = one;
                job.finish(committed);
            }
        }
        Err(error) => {
            tracing::error!(%error, "command failed");
            for job in batch {
                job.finish(Err(error.clone()));
            }
        }
    }
}
