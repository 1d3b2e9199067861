//! What the store counts as it commits, for `/metrics`: each group
//! commit's size and latency, and the lease transitions this process
//! committed (grants and how long they waited, expirations, revocations).
//! Per process: with several replicas, sum across them.

use sluice_core::snapshots::Cause;
use sluice_core::{EventKind, Lease, Millis, NewEvent};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// A Prometheus histogram over fixed bucket bounds.
#[derive(Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; summed when written.
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        if let Some(b) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[b] += 1;
        }
    }

    /// Its `_bucket`, `_sum` and `_count` lines; `labels` is `a="b",...`
    /// or empty.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Seconds: a commit takes milliseconds; a lease may wait for hours.
const SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
    86400.0,
];
/// Commands per group commit.
const BATCH: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

struct Commits {
    size: Histogram,
    seconds: Histogram,
}

#[derive(Default)]
struct LeaseCounts {
    grants: u64,
    expirations: u64,
    revocations: u64,
    /// Requested to granted, for every grant (0 when granted at once).
    wait: Option<Histogram>,
}

#[derive(Default)]
struct Inner {
    /// By group (`leases`, `streams`).
    commits: BTreeMap<&'static str, Commits>,
    /// By lease mode.
    leases: BTreeMap<&'static str, LeaseCounts>,
    /// By group: batches past the database's limit on one transaction,
    /// committed in halves.
    splits: BTreeMap<&'static str, u64>,
    /// Pin tags carried out by this process, by outcome.
    pin_tags: BTreeMap<&'static str, u64>,
    /// The snapshot watcher's catalog calls, by kind (`listing`, `read`).
    catalog_calls: BTreeMap<&'static str, u64>,
    reconcile: Reconcile,
    /// Messages read from the AWS events queue, by what they were.
    aws_events: BTreeMap<&'static str, u64>,
    /// Snapshot-log refreshes recorded, by cause.
    refreshes: BTreeMap<&'static str, u64>,
}

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub(crate) struct PassOutcome {
    /// Tables read (moved, new or failing).
    pub moved: u64,
    /// Tables not confirmed: unlisted namespace, missing, failed read.
    pub unconfirmed: usize,
    /// Some listing or read succeeded: the pass confirmed tables.
    pub confirmed: bool,
}

/// The snapshot watcher's reconcile, as this process runs it.
#[derive(Default)]
struct Reconcile {
    budget: f64,
    tables: usize,
    interval: std::time::Duration,
    passes: u64,
    moved: u64,
    last_pass: std::time::Duration,
    /// Tables the last pass could not confirm.
    unconfirmed: usize,
    /// When the last pass that confirmed tables began (unix seconds).
    confirmed_at: f64,
}

#[derive(Default)]
pub struct StoreStats(Mutex<Inner>);

impl StoreStats {
    /// One group commit of `size` commands that took `seconds`.
    pub(crate) fn committed(&self, group: &'static str, size: usize, seconds: f64) {
        let mut inner = self.0.lock().expect("stats lock");
        let c = inner.commits.entry(group).or_insert_with(|| Commits {
            size: Histogram::new(&BATCH),
            seconds: Histogram::new(&SECONDS),
        });
        c.size.observe(size as f64);
        c.seconds.observe(seconds);
    }

    /// A batch of `group` was too large for one transaction and is being
    /// committed in halves.
    pub(crate) fn split(&self, group: &'static str) {
        *self
            .0
            .lock()
            .expect("stats lock")
            .splits
            .entry(group)
            .or_default() += 1;
    }

    /// A pin's tag carried out: `written`, `unchanged`, `retried` (the
    /// catalog was unavailable) or `refused`.
    pub(crate) fn pin_tag(&self, outcome: &'static str) {
        *self
            .0
            .lock()
            .expect("stats lock")
            .pin_tags
            .entry(outcome)
            .or_default() += 1;
    }

    /// A message of the AWS events queue handled, by kind (`table`,
    /// `job_run`, `unknown`, `malformed`).
    pub fn aws_event(&self, kind: &'static str) {
        *self
            .0
            .lock()
            .expect("stats lock")
            .aws_events
            .entry(kind)
            .or_default() += 1;
    }

    /// The watcher's budget of catalog calls a second.
    pub(crate) fn catalog_budget(&self, per_second: f64) {
        self.0.lock().expect("stats lock").reconcile.budget = per_second;
    }

    /// One catalog call by the watcher: a `listing` page or a `read`.
    pub(crate) fn catalog_call(&self, kind: &'static str) {
        *self
            .0
            .lock()
            .expect("stats lock")
            .catalog_calls
            .entry(kind)
            .or_default() += 1;
    }

    /// A reconcile pass over `tables`, spaced `interval` from the next.
    pub(crate) fn reconcile_planned(&self, tables: usize, interval: std::time::Duration) {
        let r = &mut self.0.lock().expect("stats lock").reconcile;
        r.tables = tables;
        r.interval = interval;
    }

    /// A pass that began at `began` ended after `took`, having read
    /// `outcome.moved` tables.
    pub(crate) fn reconciled(&self, outcome: &PassOutcome, began: Millis, took: Duration) {
        let r = &mut self.0.lock().expect("stats lock").reconcile;
        r.passes += 1;
        r.moved += outcome.moved;
        r.last_pass = took;
        r.unconfirmed = outcome.unconfirmed;
        if outcome.confirmed {
            r.confirmed_at = began.0 as f64 / 1000.0;
        }
    }

    /// A refresh of a table's log recorded, for `cause`.
    pub(crate) fn refreshed(&self, cause: Cause) {
        *self
            .0
            .lock()
            .expect("stats lock")
            .refreshes
            .entry(cause.as_str())
            .or_default() += 1;
    }

    /// The lease transitions a committed batch made: its events, with the
    /// leases they name.
    pub(crate) fn lease_events(&self, events: &[NewEvent], leases: &[Lease]) {
        let by_id: HashMap<_, _> = leases.iter().map(|l| (l.id, l)).collect();
        let mut inner = self.0.lock().expect("stats lock");
        for event in events {
            let Some(lease) = event.lease_id.and_then(|id| by_id.get(&id)) else {
                continue;
            };
            // The scheduler's leader lease is sluice's own business.
            if lease.table.is_reserved() {
                continue;
            }
            let counts = inner.leases.entry(lease.mode.as_str()).or_default();
            match event.kind {
                EventKind::LeaseGranted => {
                    counts.grants += 1;
                    let waited = lease.granted_at.unwrap_or(event.at).0 - lease.requested_at.0;
                    counts
                        .wait
                        .get_or_insert_with(|| Histogram::new(&SECONDS))
                        .observe(waited.max(0) as f64 / 1000.0);
                }
                EventKind::LeaseExpired => counts.expirations += 1,
                EventKind::LeaseRevoked => counts.revocations += 1,
                _ => {}
            }
        }
    }

    /// The text exposition of what was counted.
    pub fn render(&self, out: &mut String) {
        let inner = self.0.lock().expect("stats lock");
        out.push_str(
            "# HELP sluice_group_commit_size Commands committed per transaction, by aggregate.\n",
        );
        out.push_str("# TYPE sluice_group_commit_size histogram\n");
        for (group, c) in &inner.commits {
            c.size.write(
                out,
                "sluice_group_commit_size",
                &format!("group=\"{group}\""),
            );
        }
        out.push_str("# HELP sluice_group_commit_seconds Time of one group commit's transaction, by aggregate.\n");
        out.push_str("# TYPE sluice_group_commit_seconds histogram\n");
        for (group, c) in &inner.commits {
            c.seconds.write(
                out,
                "sluice_group_commit_seconds",
                &format!("group=\"{group}\""),
            );
        }
        out.push_str("# HELP sluice_group_commit_splits_total Group commits past the database's limit on one transaction (DynamoDB: 100 items), committed in halves.\n");
        out.push_str("# TYPE sluice_group_commit_splits_total counter\n");
        for (group, n) in &inner.splits {
            let _ = writeln!(
                out,
                "sluice_group_commit_splits_total{{group=\"{group}\"}} {n}"
            );
        }
        out.push_str("# HELP sluice_pin_tag_writes_total Hydrations' pins mirrored as tags by this process, by outcome (written, unchanged, retried, refused).\n");
        out.push_str("# TYPE sluice_pin_tag_writes_total counter\n");
        for (outcome, n) in &inner.pin_tags {
            let _ = writeln!(
                out,
                "sluice_pin_tag_writes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP sluice_catalog_calls_total Catalog calls by this process's snapshot watcher, by kind (listing: a page of a catalog's table listing; read: one table's metadata).\n");
        out.push_str("# TYPE sluice_catalog_calls_total counter\n");
        for (kind, n) in &inner.catalog_calls {
            let _ = writeln!(out, "sluice_catalog_calls_total{{kind=\"{kind}\"}} {n}");
        }
        out.push_str("# HELP sluice_aws_events_total Messages this process read from the AWS events queue, by kind (table, job_run; unknown and malformed ones are dropped).\n");
        out.push_str("# TYPE sluice_aws_events_total counter\n");
        for (kind, n) in &inner.aws_events {
            let _ = writeln!(out, "sluice_aws_events_total{{kind=\"{kind}\"}} {n}");
        }
        out.push_str("# HELP sluice_snapshot_refreshes_total Snapshot-log refreshes this process recorded, by cause (listing, event, on_demand, batch).\n");
        out.push_str("# TYPE sluice_snapshot_refreshes_total counter\n");
        // Every cause, from the start: a fixed set of series.
        for cause in [Cause::Listing, Cause::Event, Cause::OnDemand, Cause::Batch] {
            let n = inner.refreshes.get(cause.as_str()).copied().unwrap_or(0);
            let cause = cause.as_str();
            let _ = writeln!(
                out,
                "sluice_snapshot_refreshes_total{{cause=\"{cause}\"}} {n}"
            );
        }
        let r = &inner.reconcile;
        for (name, kind, help, value) in [
            (
                "sluice_catalog_calls_per_second",
                "gauge",
                "The watcher's budget of catalog calls a second, shared by all tables.",
                r.budget,
            ),
            (
                "sluice_snapshot_reconcile_interval_seconds",
                "gauge",
                "Time between reconcile passes on this replica: set by the budget and the table count (0: not leading yet).",
                r.interval.as_secs_f64(),
            ),
            (
                "sluice_snapshot_reconcile_tables",
                "gauge",
                "Registered tables the last reconcile pass compared with their catalog's listing.",
                r.tables as f64,
            ),
            (
                "sluice_snapshot_reconcile_last_pass_seconds",
                "gauge",
                "How long the last reconcile pass took, listing and reads.",
                r.last_pass.as_secs_f64(),
            ),
            (
                "sluice_snapshot_reconcile_passes_total",
                "counter",
                "Reconcile passes this replica ran (only the leader runs them).",
                r.passes as f64,
            ),
            (
                "sluice_snapshot_reconcile_moved_total",
                "counter",
                "Tables whose metadata a reconcile pass read: moved, new or failing.",
                r.moved as f64,
            ),
            (
                "sluice_snapshot_reconcile_confirmed_timestamp_seconds",
                "gauge",
                "When the last reconcile pass that confirmed tables began (unix time): every table it did not count unconfirmed matched its catalog then (0: none yet on this replica).",
                r.confirmed_at,
            ),
            (
                "sluice_snapshot_reconcile_unconfirmed_tables",
                "gauge",
                "Tables the last reconcile pass could not confirm: their namespace's listing failed, their catalog does not list them, or their read failed.",
                r.unconfirmed as f64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let modes = &inner.leases;
        for (name, help, get) in [
            (
                "sluice_lease_grants_total",
                "Leases granted by this process, by mode.",
                (|c: &LeaseCounts| c.grants) as fn(&LeaseCounts) -> u64,
            ),
            (
                "sluice_lease_expirations_total",
                "Leases that expired (TTL passed without a heartbeat), by mode.",
                |c| c.expirations,
            ),
            (
                "sluice_lease_revocations_total",
                "Leases an operator revoked, by mode.",
                |c| c.revocations,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (mode, c) in modes {
                let _ = writeln!(out, "{name}{{mode=\"{mode}\"}} {}", get(c));
            }
        }
        out.push_str("# HELP sluice_lease_wait_seconds From request to grant, by mode (0: granted at once).\n");
        out.push_str("# TYPE sluice_lease_wait_seconds histogram\n");
        for (mode, c) in modes {
            if let Some(wait) = &c.wait {
                wait.write(
                    out,
                    "sluice_lease_wait_seconds",
                    &format!("mode=\"{mode}\""),
                );
            }
        }
    }
}
