//! Start real sluice processes (the built binary) on SQLite, on a fresh
//! PostgreSQL database or on DynamoDB (moto's), kill them with SIGKILL,
//! restart them.

use crate::lake::Lake;
use crate::raw::Client;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Server {
    pub url: String,
    pub client: Client,
    /// The storage flags (`--data-dir ...` or `--database-url ...`).
    storage: Vec<String>,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
    /// The DynamoDB this server's table lives in, kept running while any
    /// replica on it is.
    dynamodb: Option<Arc<Lake>>,
    /// More environment for the process (a skewed clock, say).
    env: Vec<(String, String)>,
}

/// Credentials for moto (it checks none) and no instance-metadata lookups,
/// for every sluice process a test starts.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A moto server and a fresh sluice table in it, created by `sluice migrate`.
pub struct DynamoDb {
    pub moto: Arc<Lake>,
    pub url: String,
}

impl DynamoDb {
    pub async fn start() -> DynamoDb {
        let moto = Arc::new(Lake::start_serial().await);
        let url = format!(
            "dynamodb://it?region=us-east-1&endpoint={}&skew_margin_ms=200",
            moto.url
        );
        let output = Command::new(binary())
            .args(["migrate", "--database-url", &url])
            .envs(AWS_ENV)
            .output()
            .expect("run sluice migrate");
        assert!(
            output.status.success(),
            "sluice migrate on DynamoDB: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        DynamoDb { moto, url }
    }

    /// A replica on this table, authentication off (as `on_database`).
    pub async fn replica(&self) -> Server {
        self.replica_with(&["--auth", "off"]).await
    }

    pub async fn replica_with(&self, extra: &[&str]) -> Server {
        let mut server = Server::on_database_with(&self.url, extra).await;
        server.dynamodb = Some(self.moto.clone());
        server
    }

    /// A replica whose clock reads `offset` from the machine's (Debian's
    /// libfaketime, e.g. `+1.5`: seconds ahead), authentication off.
    pub async fn replica_skewed(&self, offset: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ["--database-url", &self.url, "--auth", "off"]
            .map(str::to_owned)
            .to_vec();
        let env = [
            (
                "LD_PRELOAD",
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
            ),
            ("FAKETIME", offset),
            // Timers (tokio's) keep the machine's pace; only the time of
            // day, which judges expiry, is off.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        let mut server = Server::start_with_env(args, dir, env).await;
        server.dynamodb = Some(self.moto.clone());
        server
    }
}

/// The sluice binary: `SLUICE_BIN`, or the workspace's debug build.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/sluice");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bin sluice` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The PostgreSQL server the tests use (`DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, empty database on the test server.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    let base = base.to_owned();
    let query = admin
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{base}/{name}{query}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// sluice on SQLite in a fresh data dir.
    pub async fn sqlite() -> Server {
        Server::sqlite_with(&[]).await
    }

    /// sluice on SQLite in a fresh data dir, with more `serve` flags.
    pub async fn sqlite_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data").display().to_string();
        let mut args = vec!["--data-dir".to_owned(), data];
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start(args, dir).await
    }

    /// sluice on a fresh DynamoDB table (its own moto server).
    pub async fn dynamodb() -> Server {
        DynamoDb::start().await.replica().await
    }

    /// sluice on a fresh PostgreSQL database.
    pub async fn postgres() -> Server {
        let url = fresh_database().await;
        Server::on_database(&url).await
    }

    /// Another replica on the same PostgreSQL database. Authentication is
    /// turned off explicitly: the behaviour tests are about leases; the
    /// auth tests turn it on.
    pub async fn on_database(url: &str) -> Server {
        Server::on_database_with(url, &["--auth", "off"]).await
    }

    pub async fn on_database_with(url: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = vec!["--database-url".to_owned(), url.to_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start(args, dir).await
    }

    /// `sluice token create` against this server's database; the token.
    pub fn create_token(&self, name: &str, role: &str, scopes: &[&str], extra: &[&str]) -> String {
        let output = self.try_create_token(name, role, scopes, extra);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// `sluice token create`, whether or not it succeeds.
    pub fn try_create_token(
        &self,
        name: &str,
        role: &str,
        scopes: &[&str],
        extra: &[&str],
    ) -> std::process::Output {
        let mut cmd = Command::new(binary());
        cmd.args(["token", "create", "--name", name, "--role", role]);
        for scope in scopes {
            cmd.args(["--scope", scope]);
        }
        cmd.args(extra)
            .args(&self.storage)
            .envs(AWS_ENV)
            .output()
            .expect("run sluice token create")
    }

    /// Make a token's expiry pass, in the database (the CLI only makes
    /// tokens that expire at least a day from now).
    pub async fn expire_token(&self, name: &str) {
        use sqlx::Connection;
        let sql = "UPDATE api_tokens SET expires_at = 1 WHERE name = $1";
        let changed = match self.storage.as_slice() {
            [flag, dir] if flag == "--data-dir" => {
                let url = format!("sqlite://{dir}/sluice.db");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql)
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            [flag, url] if flag == "--database-url" && url.starts_with("dynamodb://") => {
                crate::dynamodb::expire_token(url, name).await
            }
            [flag, url] if flag == "--database-url" => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql)
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            other => panic!("unknown storage {other:?}"),
        };
        assert_eq!(changed, 1, "token {name}");
    }

    /// The `--database-url` this server stores in (none: SQLite in its
    /// data directory).
    pub fn database_url(&self) -> Option<&str> {
        match self.storage.as_slice() {
            [flag, url] if flag == "--database-url" => Some(url),
            _ => None,
        }
    }

    /// One integer from this server's database (an inspection query).
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        match self.storage.as_slice() {
            [flag, dir] if flag == "--data-dir" => {
                let url = format!("sqlite://{dir}/sluice.db");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            [flag, url] if flag == "--database-url" => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            other => panic!("unknown storage {other:?}"),
        }
    }

    /// `sluice token revoke`.
    pub fn revoke_token(&self, name: &str) {
        let output = Command::new(binary())
            .args(["token", "revoke", "--name", name])
            .args(&self.storage)
            .envs(AWS_ENV)
            .output()
            .expect("run sluice token revoke");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A client of this server with `token`.
    pub fn client_with(&self, token: &str) -> Client {
        Client::new(&self.url).with_token(Some(token.to_owned()))
    }

    /// Start with extra arguments after `serve` (e.g. a second process on
    /// the same data dir), returning its exit status and output if it stops
    /// within `within`.
    pub fn try_serve(
        args: &[&str],
        within: Duration,
    ) -> Option<(std::process::ExitStatus, String)> {
        Server::try_serve_with_env(args, &[], within)
    }

    /// [`Server::try_serve`] with more environment variables.
    pub fn try_serve_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        within: Duration,
    ) -> Option<(std::process::ExitStatus, String)> {
        let mut child = Command::new(binary())
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait") {
                let output = child.wait_with_output().expect("output");
                let text = String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr);
                return Some((status, text));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    async fn start(flags: Vec<String>, dir: tempfile::TempDir) -> Server {
        Server::start_with_env(flags, dir, Vec::new()).await
    }

    async fn start_with_env(
        flags: Vec<String>,
        dir: tempfile::TempDir,
        env: Vec<(String, String)>,
    ) -> Server {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let storage = flags[..2].to_vec();
        let mut args = vec!["serve".into(), "--bind".into(), format!("127.0.0.1:{port}")];
        args.extend(flags);
        let mut server = Server {
            client: Client::new(&url),
            url,
            storage,
            args,
            child: None,
            log: dir.path().join("sluice.log"),
            dir,
            dynamodb: None,
            env,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary())
            .args(&self.args)
            // `SLUICE_TEST_LOG=debug` to see more of a failing test.
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(AWS_ENV)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn sluice");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(answer) = self
                .client
                .send(reqwest::Method::GET, "/readyz", None)
                .await
            {
                if answer.status == 200 {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("sluice exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sluice not ready: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of every series of a counter in `/metrics` whose line
    /// starts with `series` (a name, or a name and its first labels).
    pub async fn metric(&self, series: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("its text");
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A request through the untyped client; panics if it cannot be sent.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> crate::raw::Answer {
        self.client
            .send(method, path, body.as_ref())
            .await
            .expect("send a request")
    }

    /// The body of a call that must answer `status` (`body`: a JSON value
    /// or `None`).
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<Option<serde_json::Value>>,
        status: u16,
    ) -> serde_json::Value {
        let answer = self.call(method.clone(), path, body.into()).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        answer.body
    }

    /// The running process's id (none after `kill9`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// Start again with the same arguments (same port, same storage).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The store a test's sluice runs on, for the tests that build their
/// servers themselves (extra flags, configuration files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Dynamodb,
}

impl Backend {
    /// A sluice on a fresh store of this kind with more `serve` flags.
    /// On PostgreSQL and DynamoDB authentication is off unless `extra`
    /// says otherwise (as [`Server::on_database`]); on SQLite `auto`
    /// already means off.
    pub async fn server_with(self, extra: &[&str]) -> Server {
        let mut args = extra.to_vec();
        if self != Backend::Sqlite && !extra.contains(&"--auth") {
            args.extend_from_slice(&["--auth", "off"]);
        }
        match self {
            Backend::Sqlite => Server::sqlite_with(&args).await,
            Backend::Postgres => Server::on_database_with(&fresh_database().await, &args).await,
            Backend::Dynamodb => DynamoDb::start().await.replica_with(&args).await,
        }
    }

    /// Whether its store is SQLite in the server's data directory (where
    /// the embedded catalog is too).
    pub fn is_sqlite(self) -> bool {
        self == Backend::Sqlite
    }
}

/// Run a scenario on every backend: three tests, `sqlite`, `postgres` and
/// `dynamodb`.
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::harness::Server::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::harness::Server::postgres().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                super::$scenario($crate::harness::Server::dynamodb().await).await
            }
        }
    )*};
}

/// Run a scenario with authentication on, on every backend.
#[macro_export]
macro_rules! on_every_backend_with_auth {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::harness::Server::sqlite_with(&["--auth", "on"]).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::harness::fresh_database().await;
                super::$scenario($crate::harness::Server::on_database_with(&db, &["--auth", "on"]).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() {
                let table = $crate::harness::DynamoDb::start().await;
                super::$scenario(table.replica_with(&["--auth", "on"]).await).await
            }
        }
    )*};
}

/// Read until `done` holds, every 100 ms; after `within`, fail with `what`,
/// the last value read and `context` (a server's log, say).
pub async fn until<F, Fut>(
    what: &str,
    within: Duration,
    read: F,
    done: impl Fn(&serde_json::Value) -> bool,
    context: impl Fn() -> String,
) -> serde_json::Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    let deadline = Instant::now() + within;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never got there: {value}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run a `sluice` command to its end: whether it succeeded, and what it
/// printed (stdout, then stderr).
pub fn outcome(command: &mut Command) -> (bool, String) {
    let out = command.output().expect("run sluice");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
