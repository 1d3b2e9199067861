//! A PostgreSQL server of a test's own, in a temporary folder on a free
//! port, for tests that stop or restart the database under sluice without
//! disturbing the other tests (which share the server of `DATABASE_URL`).
//!
//! `initdb` and `pg_ctl` come from `/usr/lib/postgresql/<version>/bin` (the
//! newest installed). initdb refuses to run as root, so as root every
//! command runs as the `postgres` user (`runuser`), which owns the folder.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    bin: PathBuf,
    port: u16,
    /// Holds `data/` (the cluster), the socket and `log`; removed on drop.
    dir: tempfile::TempDir,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e} (is PostgreSQL installed?)", root.display()))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no {}/*/bin/initdb", root.display()))
        .1
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    /// initdb (trust auth) and start, ready for connections.
    pub fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .expect("temp dir");
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let server = PgServer {
            bin: bin_dir(),
            port: crate::harness::free_port(),
            dir,
            as_postgres,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                // Only the setup skips fsync; the server runs with fsync=on.
                "--no-sync".as_ref(),
            ],
        );
        server.start_again();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The `postgres` database, over TCP.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Create database `name`; its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url())
            .await
            .expect("connect to the test's own PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Start (again) on the same port; returns once it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        );
    }

    /// Stop in fast mode: sessions are ended, open transactions rolled back.
    pub fn stop(&self) {
        self.stop_mode("fast", true);
    }

    fn stop_mode(&self, mode: &str, must_succeed: bool) {
        let data = self.data_dir();
        let args = [
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ];
        if must_succeed {
            self.run("pg_ctl", &args);
        } else {
            let _ = self.command("pg_ctl", &args).output();
        }
    }

    /// The server's log, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn command(&self, program: &str, args: &[&std::ffi::OsStr]) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        // The postgres user may not be able to read the caller's directory.
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_text()
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Whatever state it is in; the folder goes with `dir`.
        self.stop_mode("immediate", false);
    }
}
