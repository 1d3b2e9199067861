//! History retention: what ended before the cutoff goes, what is live or
//! recent stays, and so do bookmark versions and the log's last events.

use crate::support::{acquire, every, put_table};
use sluice_core::streams::{BatchCommand, PutStream, StreamSettings};
use sluice_core::{BatchId, LeaseCommand, LeaseState, Millis, Mode, StreamName};
use sluice_store::{system_now, EventQuery};

#[tokio::test]
async fn pruning_deletes_finished_history_before_the_cutoff_and_keeps_the_rest() {
    for b in every().await {
        let store = &b.store;
        put_table(store, "sales.orders").await;
        let mut finished = Vec::new();
        for _ in 0..3 {
            let lease = acquire(store, "sales.orders", Mode::Read, 60).await;
            let release = LeaseCommand::Release {
                lease_id: lease.id,
                token: lease.token,
            };
            store.lease_command(release, None).await.unwrap().unwrap();
            finished.push(lease.id);
        }
        let live = acquire(store, "sales.orders", Mode::Read, 600).await;
        let stream = StreamName::parse("sales.cdc").unwrap();
        let settings = StreamSettings {
            table: crate::support::table("sales.orders"),
            source: serde_json::json!({}),
            expected_schema_hash: None,
        };
        let put = PutStream {
            stream: stream.clone(),
            settings,
        };
        store.put_stream(put, None).await.unwrap().unwrap();
        let batch = |run: &str| BatchCommand::Open {
            stream: stream.clone(),
            batch_id: BatchId::new_v7(),
            run_id: run.into(),
            ttl_seconds: 600,
            if_match: None,
        };
        let failed = store
            .batch_command(batch("r1"), None)
            .await
            .unwrap()
            .unwrap()
            .batch;
        let fail = BatchCommand::Fail {
            stream: stream.clone(),
            batch_id: failed.id,
            token: failed.token,
            reason: None,
        };
        store.batch_command(fail, None).await.unwrap().unwrap();
        let open = store
            .batch_command(batch("r2"), None)
            .await
            .unwrap()
            .unwrap()
            .batch;
        let all = EventQuery {
            limit: 1000,
            ..EventQuery::default()
        };
        let events = store.events(&all).await.unwrap();
        assert!(events.len() > 5, "{}", b.name);

        // Nothing is older than a cutoff in the past.
        let long_ago = Millis(system_now().0 - 86_400_000);
        assert_eq!(store.prune(long_ago, 0).await.unwrap(), 0, "{}", b.name);

        // Everything that ended is older than a cutoff just ahead.
        let ahead = Millis(system_now().0 + 1_000);
        let pruned = store.prune(ahead, 2).await.unwrap();
        assert_eq!(pruned, 3 + 1 + (events.len() as u64 - 2), "{}", b.name);
        for id in finished {
            assert!(store.lease(id).await.unwrap().is_none(), "{}", b.name);
        }
        let kept = store
            .lease(live.id)
            .await
            .unwrap()
            .expect("live lease kept");
        assert_eq!(kept.lease.state, LeaseState::Granted, "{}", b.name);
        assert!(
            store.batch(&stream, failed.id).await.unwrap().is_none(),
            "{}",
            b.name
        );
        assert!(
            store.batch(&stream, open.id).await.unwrap().is_some(),
            "{}",
            b.name
        );
        let left: Vec<i64> = store
            .events(&all)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let last_two: Vec<i64> = events[events.len() - 2..].iter().map(|e| e.id).collect();
        assert_eq!(left, last_two, "{}: the log's last events stay", b.name);
        let history = store.history(&stream, 0, 10).await.unwrap();
        assert_eq!(history.len(), 1, "{}: bookmark versions stay", b.name);

        // The live lease and the open batch still work.
        let release = LeaseCommand::Release {
            lease_id: live.id,
            token: live.token,
        };
        store.lease_command(release, None).await.unwrap().unwrap();
    }
}
