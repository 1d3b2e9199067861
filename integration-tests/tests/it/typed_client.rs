//! The typed Rust client (the one tools and the operator CLI build on)
//! against a live server: its requests are accepted as the API's own types,
//! its answers decode, and a refusal arrives as the server's error type.

use crate::harness::Server;
use sluice_api::dto::{AcquireBody, HeartbeatBody, LeaseMode, LeaseStateBody, PutTableBody};
use sluice_api::stream_dto::{
    BatchStateBody, BookmarkUpdateBody, CommitBody, CountsBody, FailBatchBody, LoadBody,
    OpenBatchBody, PhaseBody, PutStreamBody, ResetBody,
};

fn ask(mode: LeaseMode, holder: &str) -> AcquireBody {
    AcquireBody {
        mode,
        holder: holder.into(),
        ttl_seconds: 60,
        wait_seconds: None,
        idempotency_key: None,
        purpose: Some("typed client".into()),
        pin_snapshot_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_tables_round_trip_and_refusals_carry_the_error_type() {
    let s = Server::sqlite().await;
    let c = s.client.typed();
    let unknown = c
        .acquire("sales.orders", &ask(LeaseMode::Read, "hydrate"))
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.kind()),
        (Some(404), Some("table_not_found")),
        "{unknown}"
    );
    assert!(!unknown.is_transient());

    let table = c
        .put_table("sales.orders", &PutTableBody::default())
        .await
        .unwrap();
    assert_eq!(
        (table.table.as_str(), table.last_token),
        ("sales.orders", 0)
    );
    let reader = c
        .acquire("sales.orders", &ask(LeaseMode::Read, "hydrate"))
        .await
        .unwrap();
    assert!(matches!(reader.state, LeaseStateBody::Granted));
    assert_eq!(reader.purpose.as_deref(), Some("typed client"));
    let writer = c
        .acquire("sales.orders", &ask(LeaseMode::Write, "compact"))
        .await
        .unwrap();
    assert!(matches!(writer.state, LeaseStateBody::Waiting));
    assert_eq!(writer.position, Some(1));
    let view = c.table_leases("sales.orders").await.unwrap();
    assert_eq!((view.holders.len(), view.waiters.len()), (1, 1));

    let stale = c
        .heartbeat(
            &reader.lease_id,
            &HeartbeatBody {
                token: reader.token.map(|t| t + 1),
                ttl_seconds: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), Some("stale_token"), "{stale}");
    let released = c.release(&reader.lease_id, reader.token).await.unwrap();
    assert!(matches!(released.state, LeaseStateBody::Released));
    let granted = c.lease(&writer.lease_id, 0).await.unwrap();
    assert!(matches!(granted.state, LeaseStateBody::Granted));
    c.revoke(&granted.lease_id, "typed client test")
        .await
        .unwrap();

    let page = c.tables(None, 10).await.unwrap();
    assert_eq!(page.tables.len(), 1);
    assert_eq!(page.tables[0].last_token, 2);
    let kinds: Vec<String> = c
        .all_events(0, Some("sales.orders"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&"lease_revoked".to_owned()),
        "the log tells the story: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_runs_open_commit_fail_and_reset_through_typed_bodies() {
    let s = Server::sqlite().await;
    let c = s.client.typed();
    c.put_table("sales.orders", &PutTableBody::default())
        .await
        .unwrap();
    let stream = c
        .put_stream(
            "sales.orders_cdc",
            &PutStreamBody {
                table: "sales.orders".into(),
                source: None,
                expected_schema_hash: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(stream.bookmark.phase, PhaseBody::Load));

    let open = OpenBatchBody {
        run_id: "jr_1".into(),
        ttl_seconds: Some(60),
    };
    let batch = c.open_batch("sales.orders_cdc", &open).await.unwrap();
    assert_eq!(batch.bookmark.as_ref().map(|b| b.version), Some(1));
    let commit = CommitBody {
        token: batch.token,
        bookmark: BookmarkUpdateBody {
            load: Some(LoadBody {
                files_done: vec!["LOAD00000001.csv".into()],
                ..LoadBody::default()
            }),
            delta: None,
        },
        load_complete: false,
        counts: CountsBody {
            inserted: 10,
            updated: 0,
            deleted: 0,
        },
        snapshot_id: Some(7),
        schema_hash: None,
    };
    let done = c
        .commit_batch("sales.orders_cdc", &batch.batch_id, &commit)
        .await
        .unwrap();
    assert!(matches!(done.batch.state, BatchStateBody::Committed));
    assert_eq!(done.bookmark.version, 2);

    let next = c
        .open_batch(
            "sales.orders_cdc",
            &OpenBatchBody {
                run_id: "jr_2".into(),
                ttl_seconds: None,
            },
        )
        .await
        .unwrap();
    let failed = c
        .fail_batch(
            "sales.orders_cdc",
            &next.batch_id,
            &FailBatchBody {
                token: next.token,
                reason: Some("spark died".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.end_reason.as_deref(), Some("spark died"));
    let late = c
        .commit_batch(
            "sales.orders_cdc",
            &next.batch_id,
            &CommitBody {
                token: next.token,
                ..commit
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (late.status(), late.kind()),
        (Some(409), Some("batch_finished")),
        "{late}"
    );

    let reset = c
        .reset(
            "sales.orders_cdc",
            &ResetBody {
                reason: "table recreated".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(reset.version, 3);
    let history = c.history("sales.orders_cdc").await.unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(history[1].meta.snapshot_id, Some(7));
    assert_eq!(history[1].load.files_done_count, 1);
    let whole = c.version("sales.orders_cdc", 2).await.unwrap();
    assert_eq!(whole.bookmark.load.files_done, ["LOAD00000001.csv"]);
    assert_eq!(
        c.bookmark("sales.orders_cdc").await.unwrap().version,
        3,
        "the bookmark is the last version"
    );
}
