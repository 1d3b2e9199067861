//! Every backend, fresh for each test: SQLite in a temporary folder, a new
//! database on the PostgreSQL server `DATABASE_URL` names, and a new table
//! on a moto server of the test's own (DynamoDB).

use sluice_core::leases::{AcquireRequest, TableSettings};
use sluice_core::{Lease, LeaseCommand, LeaseId, Mode, TableCommand, TableName};
use sluice_store::{Store, StoreConfig, WriterConfig};

pub struct Backend {
    pub name: &'static str,
    pub store: Store,
    /// How it was opened: a test may open or migrate it again.
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
    _moto: Option<Moto>,
}

/// A moto server, stopped when dropped.
struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
        config,
        _dir: Some(dir),
        _moto: None,
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
        config,
        _dir: None,
        _moto: None,
    }
}

/// A fresh sluice table on a moto server of this test's own (from the venv
/// `scripts/test.sh` makes: `SLUICE_INGEST_VENV` or `.venv-ingest`).
pub async fn dynamodb() -> Backend {
    // A small skew margin: the tests' TTLs are a second or two.
    dynamodb_with_margin(50).await
}

/// [`dynamodb`] whose replicas may disagree by `skew_margin_ms`.
pub async fn dynamodb_with_margin(skew_margin_ms: u64) -> Backend {
    static CREDENTIALS: std::sync::Once = std::sync::Once::new();
    // moto checks no signature; the SDK's default chain needs some.
    CREDENTIALS.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
    let venv = std::env::var("SLUICE_INGEST_VENV").map_or_else(
        |_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-ingest"),
        std::path::PathBuf::from,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // One request at a time: moto's transactions are not isolated between
    // its threads (integration-tests/dynamodb/serial_moto.py).
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../integration-tests/dynamodb/serial_moto.py"
    );
    let child = std::process::Command::new(venv.join("bin/python"))
        .args([script, "127.0.0.1", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}/bin/moto_server: {e}", venv.display()));
    let moto = Moto(child);
    let url = format!(
        "dynamodb://store?region=us-east-1&endpoint=http://127.0.0.1:{port}&skew_margin_ms={skew_margin_ms}"
    );
    let config = StoreConfig::Dynamo(sluice_store::DynamoConfig::parse(&url).expect("a valid URL"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // moto answers within a second or two of starting.
    while let Err(error) = Store::migrate(&config).await {
        assert!(
            std::time::Instant::now() < deadline,
            "moto never answered: {error}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Backend {
        name: "dynamodb",
        store: Store::open(&config, WriterConfig::default())
            .await
            .expect("open DynamoDB"),
        config,
        _dir: None,
        _moto: Some(moto),
    }
}

/// Every backend, each fresh.
pub async fn every() -> Vec<Backend> {
    vec![sqlite().await, postgres().await, dynamodb().await]
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
