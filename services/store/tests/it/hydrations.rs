//! Hydrations and their read lease, in one transaction: the lease is given
//! up by the report that first makes the copy live, and a compaction
//! waiting for it is granted by that same commit; the copy then keeps a
//! pin of its own that retention counts.

use crate::support::{acquire, every, put_table, table};
use sluice_core::containers::{Container, ContainerKind, ContainerName};
use sluice_core::hydrations::{
    Attach, HydrationPhase, HydrationState, LogView, NewHydration, ProgressReport, LEASE_PURPOSE,
};
use sluice_core::leases::AcquireRequest;
use sluice_core::snapshots::Snapshot;
use sluice_core::{LeaseId, LeaseState, Millis, Mode};
use sluice_store::{HydrationCommand, Store};
use std::sync::Arc;

pub(crate) fn log() -> LogView {
    let snapshots: Vec<Snapshot> = (0..3)
        .map(|i| Snapshot {
            id: 100 + i,
            parent_id: (i > 0).then(|| 99 + i),
            sequence_number: i + 1,
            timestamp: Millis(1_000_000 + i * 60_000),
            operation: "append".into(),
            summary: Default::default(),
            expired_at: None,
        })
        .collect();
    LogView {
        current: Some(102),
        snapshots,
    }
}

async fn create(store: &Store) -> (LeaseId, u64) {
    let container = Container {
        name: ContainerName::parse("analytics").unwrap(),
        kind: ContainerKind::Glue {
            database: "analytics".into(),
        },
        schemas: Vec::new(),
        created_at: Millis(0),
        updated_at: Millis(0),
    };
    store.put_container(&container).await.unwrap();
    let id = LeaseId::new_v7();
    let command = HydrationCommand::Create {
        new: NewHydration {
            id,
            table: table("sales.orders"),
            container: container.name.clone(),
            target: "orders_v2".into(),
            views: Vec::new(),
            columns: None,
            lag_threshold_snapshots: 0,
        },
        lease: AcquireRequest {
            lease_id: id,
            mode: Mode::Read,
            holder: "hydrate".into(),
            ttl_seconds: 600,
            idempotency_key: None,
            purpose: Some(LEASE_PURPOSE.into()),
            pin_snapshot_id: Some(100),
            max_waiters: 100,
        },
        log: Arc::new(log()),
        attach: Some(Attach {
            run_id: "run-1".into(),
            ttl_seconds: 600,
        }),
    };
    let reply = store
        .hydration_command(command, Some("job".into()))
        .await
        .unwrap()
        .unwrap();
    let token = reply.session.expect("the creating run is attached").token;
    (id, token)
}

async fn report(
    store: &Store,
    id: LeaseId,
    token: u64,
    phase: HydrationPhase,
    snapshot_id: i64,
) -> sluice_store::HydrationReply {
    let command = HydrationCommand::Progress {
        id,
        table: table("sales.orders"),
        report: ProgressReport {
            token,
            phase,
            snapshot_id,
            rows_copied: None,
            rows_total: None,
        },
        log: Arc::new(log()),
    };
    store
        .hydration_command(command, Some("job".into()))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_first_live_gives_up_the_read_lease_and_grants_the_waiting_compaction_in_one_commit() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.orders").await;
        let (id, token) = create(store).await;
        let compaction = acquire(store, "sales.orders", Mode::Write, 600).await;
        assert_eq!(compaction.state, LeaseState::Waiting, "{}", b.name);

        let copying = report(store, id, token, HydrationPhase::Snapshot, 100).await;
        assert_eq!(
            copying.hydration.state,
            HydrationState::Snapshot,
            "{}",
            b.name
        );
        let lease = copying.lease.expect("its read lease").lease;
        assert_eq!(
            (lease.state, lease.pin_snapshot_id),
            (LeaseState::Granted, Some(100)),
            "{}",
            b.name
        );
        assert!(store
            .follower_readers(&table("sales.orders"))
            .await
            .unwrap()
            .is_empty());

        let live = report(store, id, token, HydrationPhase::CatchingUp, 102).await;
        assert!(live.became_live, "{}", b.name);
        assert_eq!(live.hydration.state, HydrationState::Live, "{}", b.name);
        let lease = live.lease.expect("its read lease, ended").lease;
        assert_eq!(
            lease.state,
            LeaseState::Released,
            "{}: released in the same batch",
            b.name
        );
        let granted = store.lease(compaction.id).await.unwrap().unwrap().lease;
        assert_eq!(
            granted.state,
            LeaseState::Granted,
            "{}: the compaction runs",
            b.name
        );

        // The copy keeps what it applied, as retention counts it.
        let readers = store
            .follower_readers(&table("sales.orders"))
            .await
            .unwrap();
        assert_eq!(
            readers.iter().map(|r| r.pin).collect::<Vec<_>>(),
            vec![Some(102)],
            "{}",
            b.name
        );
        let stored = store.hydration(id).await.unwrap().unwrap();
        assert_eq!(
            (stored.state, stored.pin()),
            (HydrationState::Live, Some(102)),
            "{}",
            b.name
        );

        // Detached, it stays a live copy; a later run attaches with a new
        // token and reports without any lease.
        let detach = HydrationCommand::Detach {
            id,
            table: table("sales.orders"),
            token,
        };
        store
            .hydration_command(detach, Some("job".into()))
            .await
            .unwrap()
            .unwrap();
        let attach = HydrationCommand::Attach {
            id,
            table: table("sales.orders"),
            run: Attach {
                run_id: "run-2".into(),
                ttl_seconds: 60,
            },
        };
        let second = store
            .hydration_command(attach, Some("job".into()))
            .await
            .unwrap()
            .unwrap();
        let second_token = second.session.expect("attached").token;
        assert!(second_token > token, "{}", b.name);
        let again = report(store, id, second_token, HydrationPhase::CatchingUp, 102).await;
        assert_eq!(again.hydration.state, HydrationState::Live, "{}", b.name);
        assert_eq!(again.hydration.sessions, 2, "{}", b.name);
    }
}

/// A table's `pin_tags` turned off, back to its catalog's default, or on:
/// each change asks the outbox, in the same commit, to write or take back
/// the tag of every copy of the table; a put that leaves it as it was asks
/// nothing.
#[tokio::test]
async fn a_change_of_the_tables_pin_tags_resyncs_its_copies_tags() {
    use sluice_core::leases::TableSettings;
    use sluice_core::TableCommand;
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.orders").await;
        let (id, token) = create(store).await;
        report(store, id, token, HydrationPhase::Snapshot, 100).await;
        let latest = || async {
            let status = store.pin_tag_status(id).await.unwrap();
            status.expect("an intent for the pin").id
        };
        let put = |pin_tags: Option<bool>| async move {
            let command = TableCommand::Put {
                table: table("sales.orders"),
                settings: TableSettings {
                    pin_tags,
                    ..TableSettings::default()
                },
            };
            let reply = store.table(command, None).await.unwrap().unwrap();
            assert_eq!(reply.state.settings.pin_tags, pin_tags);
        };
        let moved = latest().await;
        put(None).await;
        assert_eq!(latest().await, moved, "{}: nothing changed", b.name);
        put(Some(false)).await;
        let off = latest().await;
        assert!(off > moved, "{}: off asks for the tag to go", b.name);
        put(Some(false)).await;
        assert_eq!(latest().await, off, "{}", b.name);
        put(None).await;
        let default = latest().await;
        assert!(default > off, "{}: the default asks again", b.name);
        put(Some(true)).await;
        assert!(latest().await > default, "{}", b.name);
    }
}
