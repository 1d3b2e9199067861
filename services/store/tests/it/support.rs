//! Both backends, fresh for each test: SQLite in a temporary folder, and a
//! new database on the PostgreSQL server `DATABASE_URL` names.

use sluice_core::leases::{AcquireRequest, TableSettings};
use sluice_core::{Lease, LeaseCommand, LeaseId, Mode, TableCommand, TableName};
use sluice_store::{Store, StoreConfig, WriterConfig};

pub struct Backend {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = StoreConfig::Sqlite {
        data_dir: dir.path().to_owned(),
    };
    Backend {
        name: "sqlite",
        store: Store::open(&config, WriterConfig::default())
            .await
            .expect("open SQLite"),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Backend {
    use sqlx::Connection;
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let (base, _) = admin.rsplit_once('/').expect("a database name in the URL");
    let config = StoreConfig::Postgres {
        url: format!("{base}/{name}"),
        max_connections: 4,
    };
    Backend {
        name: "postgres",
        store: Store::open(&config, WriterConfig::default())
            .await
            .expect("open PostgreSQL"),
        _dir: None,
    }
}

/// Both backends, each fresh.
pub async fn both() -> Vec<Backend> {
    vec![sqlite().await, postgres().await]
}

pub fn table(name: &str) -> TableName {
    TableName::parse(name).expect("a valid table name")
}

pub async fn put_table(store: &Store, name: &str) {
    let command = TableCommand::Put {
        table: table(name),
        settings: TableSettings::default(),
    };
    let reply = store
        .table(command, None)
        .await
        .expect("the store answers")
        .expect("the rules accept");
    assert!(reply.created);
}

pub async fn acquire(store: &Store, name: &str, mode: Mode, ttl_seconds: u32) -> Lease {
    let command = LeaseCommand::Acquire {
        table: table(name),
        request: AcquireRequest {
            lease_id: LeaseId::new_v7(),
            mode,
            holder: "job".into(),
            ttl_seconds,
            idempotency_key: None,
            purpose: None,
            pin_snapshot_id: None,
            max_waiters: 100,
        },
    };
    store
        .lease_command(command, None)
        .await
        .expect("the store answers")
        .expect("the rules accept")
        .lease
}
