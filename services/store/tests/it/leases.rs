//! Tables and leases: what a transaction writes is what the reads load.

use crate::support::{acquire, every, put_table, table};
use sluice_core::{LeaseCommand, LeaseState, Mode, TableCommand};
use std::time::Duration;

#[tokio::test]
async fn a_waiting_writer_is_read_back_with_its_place_and_granted_by_the_release() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.orders").await;
        let reader = acquire(store, "sales.orders", Mode::Read, 60).await;
        let writer = acquire(store, "sales.orders", Mode::Write, 60).await;
        assert_eq!(reader.state, LeaseState::Granted, "{}", b.name);
        assert_eq!(writer.state, LeaseState::Waiting, "{}", b.name);

        let read = store.lease(writer.id).await.unwrap().expect("stored");
        assert_eq!(read.lease, writer, "{}: the row read back", b.name);
        assert_eq!(read.position, Some(1), "{}", b.name);
        assert!(!read.stale, "{}", b.name);

        let summary = store.tables(None, 10, &[]).await.unwrap();
        assert_eq!(summary.len(), 1, "{}", b.name);
        assert_eq!(
            (summary[0].holders, summary[0].waiters),
            (1, 1),
            "{}",
            b.name
        );

        let release = LeaseCommand::Release {
            lease_id: reader.id,
            token: reader.token,
        };
        let released = store.lease_command(release, None).await.unwrap().unwrap();
        assert_eq!(released.lease.state, LeaseState::Released, "{}", b.name);
        let granted = store.lease(writer.id).await.unwrap().unwrap().lease;
        assert_eq!(granted.state, LeaseState::Granted, "{}", b.name);
        assert_eq!(
            granted.token,
            reader.token.map(|t| t + 1),
            "{}: tokens increase per table",
            b.name
        );
    }
}

/// On DynamoDB each replica's clock judges expiry, `skew_margin` late: a
/// lease past its TTL but within the margin is still its holder's (a
/// replica whose clock runs ahead must not cut it off early).
#[tokio::test]
async fn on_dynamodb_a_lease_expires_only_once_its_ttl_and_the_skew_margin_ran() {
    let b = crate::support::dynamodb_with_margin(1500).await;
    let store = &b.store;
    put_table(store, "sales.skew").await;
    let lease = acquire(store, "sales.skew", Mode::Write, 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let read = store.lease(lease.id).await.unwrap().unwrap();
    assert!(!read.stale, "past its TTL, within the margin: {read:?}");
    assert_eq!(read.lease.state, LeaseState::Granted);
    let events = store
        .events(&sluice_store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.event.kind.as_str() != "lease_expired"),
        "not swept within the margin: {events:?}"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let read = store.lease(lease.id).await.unwrap().unwrap();
    assert!(
        read.stale || read.lease.state == LeaseState::Expired,
        "past its TTL and the margin: {read:?}"
    );
}

#[tokio::test]
async fn a_lease_past_its_ttl_never_reads_as_live_stale_until_swept_then_expired() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.stale").await;
        let lease = acquire(store, "sales.stale", Mode::Read, 1).await;
        // The sweeper expires it right after its TTL, so a read then finds
        // it stale (not swept yet) or expired (swept), never live: which
        // one is a race with the sweeper, and either keeps the promise.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let read = store.lease(lease.id).await.unwrap().unwrap();
        assert!(
            read.stale || read.lease.state == LeaseState::Expired,
            "{}: past its TTL, {read:?}",
            b.name
        );
        let lookup = LeaseCommand::Lookup { lease_id: lease.id };
        let settled = store.lease_command(lookup, None).await.unwrap().unwrap();
        assert_eq!(settled.lease.state, LeaseState::Expired, "{}", b.name);
        assert!(!store.lease(lease.id).await.unwrap().unwrap().stale);
    }
}

#[tokio::test]
async fn table_listings_page_by_name_and_honour_scopes() {
    for b in every().await {
        let store = &b.store;
        for name in ["hr.payroll", "sales.a", "sales.b", "sales.c"] {
            put_table(store, name).await;
        }
        let names = |page: Vec<sluice_store::TableSummary>| -> Vec<String> {
            page.into_iter().map(|t| t.state.name.to_string()).collect()
        };
        let first = names(store.tables(None, 2, &[]).await.unwrap());
        assert_eq!(first, ["hr.payroll", "sales.a"], "{}", b.name);
        let next = names(store.tables(Some("sales.a"), 10, &[]).await.unwrap());
        assert_eq!(next, ["sales.b", "sales.c"], "{}", b.name);
        let scoped = names(store.tables(None, 10, &["hr.".into()]).await.unwrap());
        assert_eq!(scoped, ["hr.payroll"], "{}", b.name);
    }
}

#[tokio::test]
async fn an_unknown_table_or_lease_is_the_callers_error_not_the_stores() {
    for b in every().await {
        let store = &b.store;
        let sweep = TableCommand::Sweep {
            table: table("no.such"),
        };
        let unknown = store.table(sweep, None).await.expect("the store answers");
        assert_eq!(unknown.unwrap_err().kind(), "table_not_found", "{}", b.name);
        let id = sluice_core::LeaseId::new_v7();
        assert_eq!(store.lease(id).await.unwrap(), None, "{}", b.name);
        let lookup = LeaseCommand::Lookup { lease_id: id };
        let missing = store
            .lease_command(lookup, None)
            .await
            .expect("the store answers");
        assert_eq!(missing.unwrap_err().kind(), "lease_not_found", "{}", b.name);
    }
}

#[tokio::test]
async fn a_name_differing_only_in_case_finds_the_registered_table_and_cannot_be_stored() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "salesX.orders").await;
        let alike = table("salesx.orders");
        let found = store.table_named_alike(&alike).await.unwrap();
        assert_eq!(found, Some(table("salesX.orders")), "{}", b.name);
        let exact = store.table_named_alike(&table("salesX.orders")).await;
        assert_eq!(exact.unwrap(), None, "{}: not its own twin", b.name);

        // Past the API's check (two racing registrations), the folded
        // unique index refuses the second.
        let put = TableCommand::Put {
            table: alike,
            settings: Default::default(),
        };
        let second = store.table(put, None).await;
        assert!(second.is_err(), "{}: {second:?}", b.name);
        assert_eq!(
            store.tables(None, 10, &[]).await.unwrap().len(),
            1,
            "{}",
            b.name
        );
    }
}
