//! moto's server as the lake's AWS (Glue and S3), one per test, and the
//! Python venv (moto, pyiceberg) the lake tests run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv with pyiceberg and moto: `SLUICE_INGEST_VENV`, or the one
/// `scripts/test.sh` makes.
pub fn venv() -> PathBuf {
    let venv = std::env::var("SLUICE_INGEST_VENV").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-ingest"),
        PathBuf::from,
    );
    assert!(
        venv.join("bin/python").exists(),
        "{} is missing: run `scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt` \
         (scripts/test.sh does)",
        venv.display()
    );
    venv
}

/// moto's server: Glue and S3 for the lake, one per test.
pub struct Lake {
    pub url: String,
    child: Child,
}

impl Lake {
    pub async fn start() -> Lake {
        Lake::start_with(Command::new(venv().join("bin/moto_server")).args([
            "-H",
            "127.0.0.1",
            "-p",
        ]))
        .await
    }

    /// moto answering one request at a time, for DynamoDB
    /// (`integration-tests/dynamodb/serial_moto.py` says why).
    pub async fn start_serial() -> Lake {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dynamodb/serial_moto.py");
        Lake::start_with(Command::new(venv().join("bin/python")).args([script, "127.0.0.1"])).await
    }

    /// Start `command` with a free port as its last argument.
    async fn start_with(command: &mut Command) -> Lake {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = command
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let lake = Lake {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = reqwest::get(format!("{}/moto-api/", lake.url)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return lake;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Lake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
