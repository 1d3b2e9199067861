//! Databases written before a migration, opened by the current code: what
//! they held reads as the migration says it becomes.

use crate::support::table;
use serde_json::json;
use sluice_core::containers::ContainerName;
use sluice_core::hydrations::{rules, HydrationState, NewHydration};
use sluice_core::{LeaseId, Millis};
use sluice_store::{Store, StoreConfig, WriterConfig};
use sqlx::migrate::Migrator;
use std::path::Path;

/// The snapshot the copy applied last: the log's current one.
const APPLIED: i64 = 102;

/// A hydration as the code before migration 0013 wrote it: `completed`
/// (its read lease released when it went live), ended, no sessions.
fn completed_doc(id: LeaseId) -> String {
    let new = NewHydration {
        id,
        table: table("sales.orders"),
        container: ContainerName::parse("analytics").unwrap(),
        target: "orders_v1".into(),
        views: Vec::new(),
        columns: None,
        lag_threshold_snapshots: 0,
    };
    let log = crate::hydrations::log();
    let (hydration, _) = rules::create(new, &log, Some("job"), Millis(1_100_000));
    let mut doc = serde_json::to_value(hydration).unwrap();
    let doc_map = doc.as_object_mut().unwrap();
    doc_map.remove("session");
    doc_map.remove("sessions");
    doc["state"] = json!("completed");
    doc["progress"]["applied_snapshot_id"] = json!(APPLIED);
    doc["ended_at"] = json!(1_200_000);
    doc["reason"] = json!("its lease was released");
    doc.to_string()
}

/// The rows a pre-0013 database holds: a table, a container, and a
/// completed hydration (bound: its id and document); each dialect binds
/// `$N` the same way.
const ROWS: [&str; 3] = [
    "INSERT INTO sluice_tables (name, catalog, compaction_job, max_compaction_deferral_seconds, \
     last_token, last_seq, created_at, updated_at) VALUES ('sales.orders', NULL, NULL, 60, 1, 1, 0, 0)",
    "INSERT INTO containers (name, kind, glue_database, created_at, updated_at) \
     VALUES ('analytics', 'glue', 'analytics', 0, 0)",
    "INSERT INTO hydrations (id, table_name, container, state, doc) \
     VALUES ($1, 'sales.orders', 'analytics', 'completed', $2)",
];

/// The migrations up to `version`, as a release of that time shipped them.
async fn migrator_until(dialect: &str, version: i64) -> Migrator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(dialect);
    let mut migrator = Migrator::new(dir).await.expect("the migrations folder");
    let kept: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = kept.into();
    migrator
}

/// A database at `url` of `$connection`'s kind, as a release before
/// migration 0013 left it: a completed hydration `$id`.
macro_rules! written_before_0013 {
    ($connection:ty, $dialect:literal, $url:expr, $id:expr) => {{
        use sqlx::Connection;
        let mut conn = <$connection>::connect($url).await.unwrap();
        migrator_until($dialect, 12)
            .await
            .run(&mut conn)
            .await
            .unwrap();
        for (i, row) in ROWS.iter().enumerate() {
            let mut q = sqlx::query(row);
            if i == 2 {
                q = q.bind($id.to_string()).bind(completed_doc($id));
            }
            q.execute(&mut conn).await.unwrap();
        }
    }};
}

async fn check_upgraded(store: &Store, id: LeaseId) {
    let h = store.hydration(id).await.unwrap().expect("still there");
    assert_eq!(h.state, HydrationState::Live, "{h:?}");
    assert_eq!(h.ended_at, None);
    assert_eq!(h.reason, None);
    assert!(h.session.is_none(), "{h:?}");
    // A live copy with no session: its pin is what retention keeps.
    let readers = store
        .follower_readers(&table("sales.orders"))
        .await
        .unwrap();
    assert_eq!(readers.len(), 1, "{readers:?}");
    assert_eq!(readers[0].pin, Some(APPLIED));
    // Open again: nothing left to do, nothing changed.
    let listed = store
        .hydrations(&sluice_store::HydrationQuery {
            state: Some(HydrationState::Live),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn completed_hydrations_become_live_copies_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sluice.db").display()
    );
    let id = LeaseId::new_v7();
    written_before_0013!(sqlx::SqliteConnection, "sqlite", &url, id);
    let config = StoreConfig::Sqlite {
        data_dir: dir.path().to_owned(),
    };
    let store = Store::open(&config, WriterConfig::default()).await.unwrap();
    check_upgraded(&store, id).await;
}

#[tokio::test]
async fn completed_hydrations_become_live_copies_on_postgres() {
    use sqlx::Connection;
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let id = LeaseId::new_v7();
    written_before_0013!(sqlx::PgConnection, "postgres", &url, id);
    let config = StoreConfig::Postgres {
        url,
        max_connections: 2,
    };
    let store = Store::open(&config, WriterConfig::default()).await.unwrap();
    check_upgraded(&store, id).await;
}

/// DynamoDB has no migrations folder: `sluice migrate` rewrites the items
/// of completed hydrations, and the result reads as on the SQL backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_hydrations_become_live_copies_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let backend = crate::support::dynamodb().await;
    let StoreConfig::Dynamo(config) = &backend.config else {
        unreachable!("a DynamoDB backend")
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(config.endpoint.clone().unwrap())
        .load()
        .await;
    // The item as the code before wrote it: no open-hydration entry (a
    // completed hydration had ended).
    let id = LeaseId::new_v7();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    aws_sdk_dynamodb::Client::new(&sdk)
        .put_item()
        .table_name(format!("{}-state", config.table_prefix))
        .item("pk", s("hydration"))
        .item("sk", s(&id.to_string()))
        .item("doc", s(&completed_doc(id)))
        .item("table", s("sales.orders"))
        .item("container", s("analytics"))
        .item("state", s("completed"))
        .send()
        .await
        .unwrap();
    Store::migrate(&backend.config).await.unwrap();
    check_upgraded(&backend.store, id).await;
    // A second migrate finds nothing left to do.
    Store::migrate(&backend.config).await.unwrap();
    check_upgraded(&backend.store, id).await;
}
