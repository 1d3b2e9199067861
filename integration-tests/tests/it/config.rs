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
