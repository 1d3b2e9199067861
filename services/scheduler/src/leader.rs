//! One scheduler among replicas: the replica whose write lease on the
//! reserved system table is granted leads. Its lease has a short TTL and
//! is heartbeated every tick that is a third of it; the others wait in the
//! lease's queue (heartbeating their place) and the next is granted when
//! the leader's lease expires. A leader acts only while its lease is
//! surely still valid by its own clock, and every write it makes carries
//! the lease as a fence that the store checks.

use sluice_core::leases::command::AcquireRequest;
use sluice_core::{LeaseCommand, LeaseId, LeaseState, Mode, RuleError, TableCommand, TableName};
use sluice_store::{Fence, Store};
use std::time::{Duration, Instant};

/// The reserved table whose write lease makes a replica the leader.
pub const SYSTEM_TABLE: &str = "sluice_system.scheduler";
/// The principal of the leases sluice holds itself.
pub const PRINCIPAL: &str = "sluice:scheduler";

pub fn system_table() -> TableName {
    TableName::parse(SYSTEM_TABLE).expect("a valid table name")
}

pub struct Leader {
    store: Store,
    holder: String,
    ttl_seconds: u32,
    held: Option<Held>,
    table_ready: bool,
}

struct Held {
    lease_id: LeaseId,
    token: Option<sluice_core::Token>,
    /// When the last heartbeat that found the lease granted was sent.
    beat: Instant,
}

impl Leader {
    pub fn new(store: Store, replica: &str, ttl_seconds: u32) -> Leader {
        Leader {
            store,
            holder: format!("scheduler@{replica}"),
            ttl_seconds: ttl_seconds.max(2),
            held: None,
            table_ready: false,
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl_seconds))
    }

    /// The fence while this replica leads with time to spare: a third of
    /// the TTL is kept as margin for a call in flight and clock drift.
    pub fn fence(&self) -> Option<Fence> {
        self.held_until()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(fence, _)| fence)
    }

    /// The fence and the instant it stops being surely valid (the margin
    /// taken off), for the tasks that follow the leader.
    pub fn held_until(&self) -> Option<(Fence, Instant)> {
        let held = self.held.as_ref()?;
        let fence = Fence {
            lease_id: held.lease_id,
            token: held.token?,
        };
        Some((fence, held.beat + self.ttl() * 2 / 3))
    }

    /// Whether a side effect may start now and finish within `call`.
    pub fn may_act(&self, call: Duration) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| h.token.is_some() && h.beat.elapsed() + call < self.ttl() * 2 / 3)
    }

    /// Acquire, heartbeat or wait, as due; answers the fence when leading.
    pub async fn keep(&mut self) -> Option<Fence> {
        if let Err(error) = self.step().await {
            tracing::warn!(%error, "scheduler leadership: store call failed");
        }
        self.fence()
    }

    async fn step(&mut self) -> Result<(), sluice_store::StoreError> {
        let actor = Some(PRINCIPAL.to_owned());
        if !self.table_ready {
            let table = system_table();
            // Created once with default settings; an existing one is kept.
            if self.store.table_catalog(&table).await?.is_none() {
                let _ = self
                    .store
                    .table(
                        TableCommand::Put {
                            table,
                            settings: Default::default(),
                        },
                        actor.clone(),
                    )
                    .await?;
            }
            self.table_ready = true;
        }
        let Some(held) = &self.held else {
            let sent = Instant::now();
            let reply = self
                .store
                .lease_command(
                    LeaseCommand::Acquire {
                        table: system_table(),
                        request: AcquireRequest {
                            lease_id: LeaseId::new_v7(),
                            mode: Mode::Write,
                            holder: self.holder.clone(),
                            ttl_seconds: self.ttl_seconds,
                            idempotency_key: None,
                            purpose: Some("scheduler leader".into()),
                            pin_snapshot_id: None,
                            max_waiters: 10_000,
                        },
                    },
                    actor,
                )
                .await?;
            match reply {
                Ok(r) => {
                    if r.lease.state == LeaseState::Granted {
                        tracing::info!(lease = %r.lease.id, token = ?r.lease.token, "this replica leads the scheduler");
                    }
                    self.held = Some(Held {
                        lease_id: r.lease.id,
                        token: r.lease.token,
                        beat: sent,
                    })
                }
                Err(error) => tracing::warn!(%error, "scheduler leadership refused"),
            }
            return Ok(());
        };
        // Heartbeat every third of the TTL (every tick while waiting for the
        // grant, through a cheap lookup, so a takeover is seen at once).
        let (lease_id, token) = (held.lease_id, held.token);
        if token.is_some() && held.beat.elapsed() < self.ttl() / 3 {
            return Ok(());
        }
        let sent = Instant::now();
        let command = match token {
            Some(token) => LeaseCommand::Heartbeat {
                lease_id,
                token: Some(token),
                ttl_seconds: None,
            },
            None => LeaseCommand::Lookup { lease_id },
        };
        match self.store.lease_command(command, actor.clone()).await? {
            Ok(r) if r.lease.state == LeaseState::Granted => {
                if token.is_none() {
                    tracing::info!(lease = %lease_id, token = ?r.lease.token, "this replica leads the scheduler");
                    // Granted since the last look: heartbeat with the token
                    // before leading, so the TTL counts from now.
                    let _ = self
                        .store
                        .lease_command(
                            LeaseCommand::Heartbeat {
                                lease_id,
                                token: r.lease.token,
                                ttl_seconds: None,
                            },
                            actor,
                        )
                        .await?;
                }
                self.held = Some(Held {
                    lease_id,
                    token: r.lease.token,
                    beat: sent,
                });
            }
            Ok(r) if r.lease.state == LeaseState::Waiting => {
                // Keep the place in the queue alive.
                if sent.duration_since(self.held.as_ref().map_or(sent, |h| h.beat))
                    >= self.ttl() / 3
                {
                    let _ = self
                        .store
                        .lease_command(
                            LeaseCommand::Heartbeat {
                                lease_id,
                                token: None,
                                ttl_seconds: None,
                            },
                            actor,
                        )
                        .await?;
                    if let Some(h) = self.held.as_mut() {
                        h.beat = sent;
                    }
                }
            }
            Ok(_) | Err(RuleError::LeaseEnded { .. }) | Err(RuleError::LeaseNotFound(_)) => {
                if token.is_some() {
                    tracing::warn!(lease = %lease_id, "scheduler leadership lost");
                }
                self.held = None;
            }
            Err(error) => {
                tracing::warn!(%error, "scheduler leadership heartbeat refused");
                self.held = None;
            }
        }
        Ok(())
    }

    /// Give the lease up (shutdown): the next replica leads at once.
    pub async fn resign(&mut self) {
        if let Some(held) = self.held.take() {
            let _ = self
                .store
                .lease_command(
                    LeaseCommand::Release {
                        lease_id: held.lease_id,
                        token: held.token,
                    },
                    Some(PRINCIPAL.to_owned()),
                )
                .await;
        }
    }
}
