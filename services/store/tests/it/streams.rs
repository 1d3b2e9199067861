//! Streams, batches and bookmark versions: a commit's rows read back, the
//! history in version order, listings with open batches and scopes.

use crate::support::{every, table};
use sluice_core::streams::{
    BatchCommand, BatchReply, BookmarkCommand, BookmarkUpdate, Commit, Counts, LoadProgress, Phase,
    PutStream, StreamSettings,
};
use sluice_core::{BatchId, BatchState, StreamName};
use sluice_store::Store;

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).expect("a valid stream name")
}

async fn run(store: &Store, command: BatchCommand) -> BatchReply {
    store
        .batch_command(command, Some("test".into()))
        .await
        .expect("the store answers")
        .expect("the rules accept")
}

/// Register `name`, feeding the table `orders` of its first part's namespace.
async fn register(store: &Store, name: &str) {
    register_on(
        store,
        name,
        &format!("{}.orders", name.split('.').next().unwrap()),
    )
    .await
}

async fn register_on(store: &Store, name: &str, table_name: &str) {
    let command = PutStream {
        stream: stream(name),
        settings: StreamSettings {
            table: table(table_name),
            source: serde_json::json!({"kind": "dms"}),
            expected_schema_hash: None,
        },
    };
    let reply = store.put_stream(command, None).await.unwrap().unwrap();
    assert!(reply.created);
}

/// Open a batch; its id and token.
async fn open(store: &Store, name: &str) -> (BatchId, i64) {
    let batch_id = BatchId::new_v7();
    let reply = run(
        store,
        BatchCommand::Open {
            stream: stream(name),
            batch_id,
            run_id: "run-1".into(),
            ttl_seconds: 60,
            if_match: None,
        },
    )
    .await;
    (reply.batch.id, reply.batch.token)
}

#[tokio::test]
async fn a_committed_batch_and_its_bookmark_version_read_back() {
    for b in every().await {
        let store = &b.store;
        register(store, "sales.cdc").await;
        let (batch_id, token) = open(store, "sales.cdc").await;
        let open_now = store.stream(&stream("sales.cdc")).await.unwrap().unwrap();
        assert_eq!(
            open_now.batches.len(),
            1,
            "{}: the open batch comes along",
            b.name
        );

        run(
            store,
            BatchCommand::Commit {
                stream: stream("sales.cdc"),
                batch_id,
                token,
                commit: Commit {
                    bookmark: BookmarkUpdate::Load(LoadProgress {
                        files_done: vec!["LOAD00000001.csv".into()],
                        high_water: Some("LOAD00000001.csv".into()),
                        cdc_start: None,
                    }),
                    load_complete: false,
                    counts: Counts {
                        inserted: 10,
                        updated: 0,
                        deleted: 0,
                    },
                    snapshot_id: Some(42),
                    schema_hash: None,
                },
                if_match: None,
            },
        )
        .await;

        let state = store.stream(&stream("sales.cdc")).await.unwrap().unwrap();
        assert_eq!(state.bookmark.version, 2, "{}", b.name);
        assert_eq!(state.bookmark.phase, Phase::Load, "{}", b.name);
        assert_eq!(
            state.bookmark.load.files_done,
            ["LOAD00000001.csv"],
            "{}",
            b.name
        );
        assert!(state.batches.is_empty(), "{}: no open batch left", b.name);

        let batch = store
            .batch(&stream("sales.cdc"), batch_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.state, BatchState::Committed, "{}", b.name);
        assert_eq!(batch.snapshot_id, Some(42), "{}", b.name);
        assert_eq!(batch.counts.map(|c| c.inserted), Some(10), "{}", b.name);
        assert_eq!(
            store.batch(&stream("other.cdc"), batch_id).await.unwrap(),
            None,
            "{}: a batch is found under its own stream only",
            b.name
        );

        let history = store.history(&stream("sales.cdc"), 0, 10).await.unwrap();
        let versions: Vec<i64> = history.iter().map(|s| s.version.bookmark.version).collect();
        assert_eq!(versions, [1, 2], "{}", b.name);
        assert_eq!(history[1].version.batch_id, Some(batch_id), "{}", b.name);
        assert_eq!(
            history[1].version.actor.as_deref(),
            Some("test"),
            "{}",
            b.name
        );
        let later = store.history(&stream("sales.cdc"), 1, 10).await.unwrap();
        assert_eq!(later.len(), 1, "{}", b.name);

        // A page counts the files done; the version, read alone, lists them.
        let whole = store
            .version(&stream("sales.cdc"), 2)
            .await
            .unwrap()
            .expect("stored");
        assert!(!whole.bookmark.load.files_done.is_empty(), "{}", b.name);
        assert_eq!(
            history[1].files_done,
            whole.bookmark.load.files_done.len(),
            "{}",
            b.name
        );
        assert!(
            history[1].version.bookmark.load.files_done.is_empty(),
            "{}",
            b.name
        );
        let listed = &history[1].version.bookmark;
        assert_eq!(
            (listed.phase, &listed.load.high_water, &listed.delta),
            (
                whole.bookmark.phase,
                &whole.bookmark.load.high_water,
                &whole.bookmark.delta
            ),
            "{}: the rest of the position is listed",
            b.name
        );
        assert_eq!(store.version(&stream("sales.cdc"), 9).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_rewind_reads_its_target_inside_the_transaction() {
    for b in every().await {
        let store = &b.store;
        register(store, "sales.cdc").await;
        let (batch_id, token) = open(store, "sales.cdc").await;
        run(
            store,
            BatchCommand::Fail {
                stream: stream("sales.cdc"),
                batch_id,
                token,
                reason: None,
            },
        )
        .await;
        let rewind = BookmarkCommand::Rewind {
            stream: stream("sales.cdc"),
            to: sluice_core::streams::RewindTo::Version(1),
            reason: "replay".into(),
            if_match: None,
        };
        let bookmark = store.bookmark_command(rewind, None).await.unwrap().unwrap();
        assert_eq!(bookmark.version, 2, "{}", b.name);
        let history = store.history(&stream("sales.cdc"), 0, 10).await.unwrap();
        assert_eq!(
            history.last().unwrap().version.rewound_to,
            Some(1),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn stream_listings_page_by_name_carry_open_batches_and_honour_scopes() {
    for b in every().await {
        let store = &b.store;
        for name in ["hr.feed", "sales.a", "sales.b"] {
            register(store, name).await;
        }
        open(store, "sales.b").await;
        let all = store.streams(None, 10, &[]).await.unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hr.feed", "sales.a", "sales.b"], "{}", b.name);
        assert_eq!(all[2].batches.len(), 1, "{}", b.name);
        assert!(all[1].batches.is_empty(), "{}", b.name);
        let page = store.streams(Some("hr.feed"), 1, &[]).await.unwrap();
        assert_eq!(page[0].name.as_str(), "sales.a", "{}", b.name);
        let scoped = store.streams(None, 10, &["hr.".into()]).await.unwrap();
        assert_eq!(scoped.len(), 1, "{}", b.name);
        // In scope by its name, not by its table: not listed.
        register_on(store, "hr.payroll_feed", "finance.payroll").await;
        let scoped = store.streams(None, 10, &["hr.".into()]).await.unwrap();
        assert_eq!(scoped.len(), 1, "{}", b.name);
    }
}

/// Commit a load batch with these files done; the version it made.
async fn commit_files(store: &Store, name: &str, files: &[String]) -> i64 {
    let (batch_id, token) = open(store, name).await;
    let reply = run(
        store,
        BatchCommand::Commit {
            stream: stream(name),
            batch_id,
            token,
            commit: Commit {
                bookmark: BookmarkUpdate::Load(LoadProgress {
                    files_done: files.to_vec(),
                    high_water: files.last().cloned(),
                    cdc_start: None,
                }),
                load_complete: false,
                counts: Counts::default(),
                snapshot_id: None,
                schema_hash: None,
            },
            if_match: None,
        },
    )
    .await;
    reply
        .bookmark
        .expect("a commit answers its version")
        .version
}

#[tokio::test]
async fn versions_stored_as_what_they_added_read_back_whole_and_rewind_exactly() {
    for b in every().await {
        let store = &b.store;
        register(store, "sales.cdc").await;
        let files =
            |n: usize| -> Vec<String> { (1..=n).map(|i| format!("LOAD{i:08}.csv")).collect() };
        // Long lists, each a few files longer than the one before.
        let mut made = Vec::new();
        for n in [100, 101, 150, 150, 400] {
            made.push((commit_files(store, "sales.cdc", &files(n)).await, n));
        }
        for (version, n) in &made {
            let whole = store
                .version(&stream("sales.cdc"), *version)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                whole.bookmark.load.files_done,
                files(*n),
                "{}: v{version}",
                b.name
            );
            assert_eq!(whole.bookmark.load.high_water, files(*n).last().cloned());
        }
        let summaries = store.history(&stream("sales.cdc"), 0, 100).await.unwrap();
        let counts: Vec<usize> = summaries.iter().map(|s| s.files_done).collect();
        assert_eq!(counts, [0, 100, 101, 150, 150, 400], "{}", b.name);

        // A rewind to a version in the middle restores exactly its files.
        let rewind = BookmarkCommand::Rewind {
            stream: stream("sales.cdc"),
            to: sluice_core::streams::RewindTo::Version(3),
            reason: "replay".into(),
            if_match: None,
        };
        let restored = store.bookmark_command(rewind, None).await.unwrap().unwrap();
        assert_eq!(restored.load.files_done, files(101), "{}", b.name);
        // And the load goes on from there.
        let next = commit_files(store, "sales.cdc", &files(120)).await;
        let whole = store
            .version(&stream("sales.cdc"), next)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(whole.bookmark.load.files_done, files(120), "{}", b.name);
    }
}
