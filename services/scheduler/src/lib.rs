//! The scheduler: one loop, run by the leader among replicas, that fires
//! cron schedules, starts queued runs in Glue and follows them to the end,
//! and walks compaction requests through their write lease.
//!
//! All state is in the store, so the loop holds nothing a restart or a
//! takeover would lose: every tick re-reads what is due. Every write the
//! loop makes carries the leader's fence; a write refused as deposed makes
//! it stop leading at once.
#![forbid(unsafe_code)]

mod compactions;
pub mod events;
mod fires;
mod glue;
pub mod leader;
pub mod ops;
mod runs;

pub use glue::Glue;
pub use leader::{system_table, SYSTEM_TABLE};

use sluice_core::scheduling::{GluePort, PollPolicy};
use sluice_core::snapshots::CatalogPort;
use sluice_store::{Fence, Store};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often the leader looks for due work.
    pub tick: Duration,
    /// TTL of the leader's lease: a dead leader is replaced after about
    /// this long.
    pub leader_ttl_seconds: u32,
    /// Total `GetJobRun` / `GetJobRuns` calls per second, across all runs
    /// (Glue throttles per account).
    pub glue_calls_per_second: f64,
    /// `StartJobRun` calls per second at most (a burst of cron fires is
    /// started side by side within it).
    pub glue_starts_per_second: f64,
    /// Spacing of the polls of one run: from `min_ms`, doubling while
    /// nothing changes, up to `max_ms`.
    pub poll: PollPolicy,
    /// A run left `starting` (a crash, a lost answer) that Glue does not
    /// show after this long is started again. Longer than `glue_timeout`,
    /// so that a deposed leader's `StartJobRun` still in flight has landed
    /// (and shows in `GetJobRuns`) or failed by then.
    pub adopt_after: Duration,
    /// Longest a Glue call may take.
    pub glue_timeout: Duration,
    /// TTL of a compaction's write lease (heartbeated while it runs).
    pub compaction_lease_ttl_seconds: u32,
    /// This replica's name in the leader lease's holder.
    pub replica: String,
    /// The URL the jobs sluice starts reach it at, passed to every run as
    /// `--sluice-url` (none: the jobs are told nothing and need their own).
    pub advertise_url: Option<String>,
    /// IAM authentication's server id and STS endpoint, passed to every run
    /// as `--sluice-aws-server-id` and `--sluice-aws-sts-endpoint` (none:
    /// the jobs bring a token).
    pub aws_login: Option<(String, String)>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick: Duration::from_millis(250),
            leader_ttl_seconds: 6,
            glue_calls_per_second: 10.0,
            glue_starts_per_second: 50.0,
            poll: PollPolicy {
                min_ms: 1_000,
                max_ms: 30_000,
            },
            adopt_after: Duration::from_secs(6),
            glue_timeout: Duration::from_secs(5),
            compaction_lease_ttl_seconds: 120,
            replica: std::process::id().to_string(),
            advertise_url: None,
            aws_login: None,
        }
    }
}

/// What one tick sees and uses.
pub(crate) struct Context<'a> {
    pub store: &'a Store,
    pub glue: &'a dyn GluePort,
    pub catalogs: &'a dyn CatalogPort,
    pub config: &'a SchedulerConfig,
    pub fence: Fence,
    pub leader: &'a leader::Leader,
}

impl Context<'_> {
    /// Whether a Glue side effect may start now: the leader's lease was
    /// heartbeated within the last third of its TTL. (A call outliving a
    /// deposition is caught by the stamp: see `adopt_after`.)
    pub fn may_act(&self) -> bool {
        let third = Duration::from_secs(u64::from(self.config.leader_ttl_seconds)) / 3;
        self.leader.may_act(self.config.glue_timeout.min(third))
    }
}

/// Start the loop: every replica runs it; only the leader does work. Its
/// leadership is published through `publish` for the other background
/// tasks that follow the leader (the snapshot watcher, the outbox).
pub fn spawn(
    store: Store,
    glue: Arc<dyn GluePort>,
    catalogs: Arc<dyn CatalogPort>,
    config: SchedulerConfig,
    publish: sluice_store::Publish,
    mut runs_changed: Option<tokio::sync::mpsc::Receiver<events::RunChanged>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leader =
            leader::Leader::new(store.clone(), &config.replica, config.leader_ttl_seconds);
        let began = std::time::Instant::now();
        let mut budgets = runs::Budgets {
            polls: sluice_core::rate::Bucket::new(config.glue_calls_per_second, began),
            starts: sluice_core::rate::Bucket::new(config.glue_starts_per_second, began),
        };
        let mut compaction_beats = compactions::Beats::default();
        let mut stats = TickStats::default();
        // Runs an AWS event said changed, waiting for a poll token.
        let mut changed: Vec<events::RunChanged> = Vec::new();
        let mut tick = tokio::time::interval(config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let fence = leader.keep().await;
            publish.set(leader.held_until());
            let Some(fence) = fence else {
                continue;
            };
            let cx = Context {
                store: &store,
                glue: glue.as_ref(),
                catalogs: catalogs.as_ref(),
                config: &config,
                fence,
                leader: &leader,
            };
            if let Some(rx) = runs_changed.as_mut() {
                while let Ok(run) = rx.try_recv() {
                    changed.push(run);
                }
            }
            let began = std::time::Instant::now();
            let outcome = async {
                while let Some(run) = changed.first() {
                    if !runs::confirm(&cx, run, &mut budgets.polls).await? {
                        break;
                    }
                    changed.remove(0);
                }
                fires::fire_due(&cx).await?;
                compactions::advance(&cx, &mut compaction_beats).await?;
                runs::advance(&cx, &mut budgets).await
            }
            .await;
            stats.record(began.elapsed());
            match outcome {
                Ok(()) => {}
                Err(Failure::Deposed) => {
                    tracing::warn!("the store refused a write as deposed: no longer leading");
                    publish.set(None);
                    leader = leader::Leader::new(
                        store.clone(),
                        &config.replica,
                        config.leader_ttl_seconds,
                    );
                }
                Err(Failure::Store(error)) => tracing::warn!(%error, "scheduler tick failed"),
            }
        }
        publish.set(None);
        leader.resign().await;
    })
}

/// How long the leader's ticks take, logged every 30 s (what a tick costs
/// with many jobs and runs; `scripts/scheduler-bench.sh` reads it).
#[derive(Default)]
struct TickStats {
    ticks: u32,
    total: Duration,
    max: Duration,
    since: Option<std::time::Instant>,
}

impl TickStats {
    fn record(&mut self, took: Duration) {
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        self.ticks += 1;
        self.total += took;
        self.max = self.max.max(took);
        if since.elapsed() >= Duration::from_secs(30) {
            tracing::info!(
                ticks = self.ticks,
                mean_ms = format!(
                    "{:.3}",
                    self.total.as_secs_f64() * 1000.0 / f64::from(self.ticks)
                ),
                max_ms = format!("{:.3}", self.max.as_secs_f64() * 1000.0),
                "scheduler ticks"
            );
            *self = TickStats::default();
        }
    }
}

/// Why a tick stopped early.
#[derive(Debug)]
pub(crate) enum Failure {
    Deposed,
    Store(sluice_store::StoreError),
}

impl From<sluice_store::StoreError> for Failure {
    fn from(e: sluice_store::StoreError) -> Failure {
        Failure::Store(e)
    }
}

/// Write through the fence; a conflict is `false` (someone else moved the
/// document: the next tick reads it again).
pub(crate) async fn write(
    cx: &Context<'_>,
    mut w: sluice_store::ScheduleWrite,
) -> Result<bool, Failure> {
    w.fence = Some(cx.fence);
    match cx.store.write_schedule(&w).await? {
        sluice_store::Written::Done => Ok(true),
        sluice_store::Written::Conflict => Ok(false),
        sluice_store::Written::Deposed => Err(Failure::Deposed),
    }
}

/// A number in `[0, 1)` for back-off jitter.
pub(crate) fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}
