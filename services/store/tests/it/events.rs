//! The event log: appended in commit order by every aggregate, filtered by
//! table, kind and scopes.

use crate::support::{acquire, every, put_table, table};
use sluice_core::{EventKind, Mode};
use sluice_store::EventQuery;

#[tokio::test]
async fn events_follow_commit_order_and_filter_by_table_kind_and_scope() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.orders").await;
        put_table(store, "hr.payroll").await;
        acquire(store, "sales.orders", Mode::Read, 60).await;
        acquire(store, "hr.payroll", Mode::Write, 60).await;
        let all = store
            .events(&EventQuery {
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "{}: ids strictly increase", b.name);
        // Two registrations, then requested + granted for each lease.
        assert_eq!(all.len(), 6, "{}: {all:?}", b.name);

        let granted_sales = store
            .events(&EventQuery {
                table: Some(table("sales.orders")),
                kind: Some(EventKind::LeaseGranted),
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(granted_sales.len(), 1, "{}", b.name);

        let scoped = store
            .events(&EventQuery {
                scopes: vec!["hr.".into()],
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert!(
            scoped.iter().all(|e| e
                .event
                .table
                .as_ref()
                .is_some_and(|t| t.as_str() == "hr.payroll")),
            "{}",
            b.name
        );
        assert_eq!(scoped.len(), 3, "{}", b.name);

        let after = store
            .events(&EventQuery {
                after: ids[3],
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 2, "{}", b.name);
    }
}
