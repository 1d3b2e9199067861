//! Configuration: the example file in deploy/ is valid, and a bad file is
//! refused with a clear message.

use crate::harness::Server;
use std::time::Duration;

#[tokio::test]
async fn the_example_configuration_file_starts_sluice() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sluice.toml");
    // Flags override the file's bind address and data dir.
    let s = Server::sqlite_with(&["--config", file]).await;
    let ready = s
        .client
        .send(reqwest::Method::GET, "/readyz", None)
        .await
        .unwrap();
    assert_eq!(
        (ready.status, ready.body["storage"].as_str()),
        (200, Some("sqlite"))
    );
}

#[test]
fn an_unknown_key_in_the_configuration_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, "[database]\nurl_typo = \"postgres://x\"\n").unwrap();
    let data = dir.path().join("data");
    let (status, output) = Server::try_serve(
        &[
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    )
    .expect("sluice must stop by itself");
    assert!(!status.success());
    assert!(output.contains("url_typo"), "{output}");
}

#[tokio::test]
async fn migrate_creates_the_schema_on_sqlite_and_postgresql() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let status = std::process::Command::new(crate::harness::binary())
        .args(["migrate", "--data-dir", data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(data.join("sluice.db").exists());

    let url = crate::harness::fresh_database().await;
    let status = std::process::Command::new(crate::harness::binary())
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(status.success());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sluice_tables")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, 0);
}

#[test]
fn with_a_certificate_sluice_serves_https_and_refuses_plain_http() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(crate::harness::binary())
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |url: String| {
        Command::new("curl")
            .args(["-s", "--max-time", "2", "--cacert"])
            .arg(&cert)
            .arg(url)
            .output()
            .unwrap()
    };
    let mut answer = None;
    for _ in 0..100 {
        let out = curl(format!("https://127.0.0.1:{port}/readyz"));
        if out.status.success() && !out.stdout.is_empty() {
            answer = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let plain = curl(format!("http://127.0.0.1:{port}/readyz"));
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        answer.as_deref().is_some_and(|a| a.contains("ready")),
        "{answer:?}"
    );
    assert!(
        !plain.status.success() || plain.stdout.is_empty(),
        "plain HTTP must not be served"
    );
}

/// `sluice healthcheck`, as the image's HEALTHCHECK runs it.
fn healthcheck(args: &[&str], bind: Option<&str>) -> (bool, String) {
    let mut command = std::process::Command::new(crate::harness::binary());
    command.arg("healthcheck").args(args);
    match bind {
        Some(bind) => command.env("SLUICE__SERVER__BIND", bind),
        None => command.env_remove("SLUICE__SERVER__BIND"),
    };
    crate::harness::outcome(&mut command)
}

#[tokio::test]
async fn healthcheck_passes_on_a_ready_server_and_fails_otherwise() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    let bind = s.url.trim_start_matches("http://").to_owned();
    // No URL: /readyz at the port of SLUICE__SERVER__BIND, as in the image.
    let (ok, said) = healthcheck(&[], Some(&bind));
    assert!(ok && said.contains("ready"), "{said}");
    let (ok, _) = healthcheck(&["--url", &format!("{}/healthz", s.url)], None);
    assert!(ok);
    // A non-2xx answer, and no answer at all, both fail with the reason.
    let (ok, said) = healthcheck(&["--url", &format!("{}/v1/tables", s.url)], None);
    assert!(!ok && said.contains("401"), "{said}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let (ok, said) = healthcheck(
        &["--timeout-seconds", "2"],
        Some(&format!("0.0.0.0:{port}")),
    );
    assert!(!ok && said.contains("no answer"), "{said}");
}

#[test]
fn the_configuration_can_come_from_the_environment_instead_of_a_file() {
    let check = |env: &[(&str, &str)], args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        crate::harness::outcome(
            std::process::Command::new(crate::harness::binary())
                .arg("check-config")
                .args(args)
                .arg("--data-dir")
                .arg(dir.path())
                .envs(env.iter().copied()),
        )
    };
    let toml = "[catalogs.lake]\nkind = \"sql\"\nuri = \"sqlite::memory:\"\nwarehouse = \"file:///tmp/w\"\n";
    let (ok, said) = check(&[("SLUICE_CONFIG_TOML", toml)], &[]);
    assert!(ok && said.contains("catalog: lake (default)"), "{said}");
    let (ok, said) = check(&[("SLUICE_CONFIG_TOML", "[server]\nbnd = 1\n")], &[]);
    assert!(
        !ok && said.contains("SLUICE_CONFIG_TOML") && said.contains("bnd"),
        "{said}"
    );
    // Never both: which one would win is not obvious.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sluice.toml");
    let (ok, said) = check(&[("SLUICE_CONFIG_TOML", toml)], &["--config", file]);
    assert!(!ok && said.contains("cannot be used with"), "{said}");
}
