//! Authentication, roles, scopes and audit, on a server that requires tokens.

use crate::harness::{fresh_database, Server};
use crate::raw::Client;
use serde_json::{json, Value};

struct Setup {
    server: Server,
    admin: Client,
    lease_id: String,
    token: i64,
}

/// A server with auth on, two tables, and a granted lease on `sales.orders`.
async fn setup(server: Server) -> Setup {
    let admin = server.client_with(&server.create_token("root", "admin", &[], &[]));
    for table in ["sales.orders", "hr.people"] {
        let answer = admin.put_table(table, json!({})).await.unwrap();
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let lease = admin
        .send(
            reqwest::Method::POST,
            "/v1/tables/sales.orders/leases",
            Some(&json!({"mode": "read", "holder": "setup", "ttl_seconds": 600})),
        )
        .await
        .unwrap();
    assert_eq!(lease.status, 201, "{lease:?}");
    Setup {
        lease_id: lease.body["lease_id"].as_str().unwrap().to_owned(),
        token: lease.body["token"].as_i64().unwrap(),
        server,
        admin,
    }
}

/// Every route, what it needs, and a valid request for it.
fn routes(lease: &str, token: i64) -> Vec<(&'static str, reqwest::Method, String, Option<Value>)> {
    use reqwest::Method as M;
    vec![
        ("read_tables", M::GET, "/v1/tables".into(), None),
        (
            "manage_tables",
            M::PUT,
            "/v1/tables/sales.orders".into(),
            Some(json!({})),
        ),
        (
            "read_tables",
            M::GET,
            "/v1/tables/sales.orders".into(),
            None,
        ),
        (
            "read_tables",
            M::GET,
            "/v1/tables/sales.orders/leases".into(),
            None,
        ),
        (
            "use_leases",
            M::POST,
            "/v1/tables/sales.orders/leases".into(),
            Some(json!({"mode": "read", "holder": "matrix", "ttl_seconds": 60})),
        ),
        ("read_leases", M::GET, format!("/v1/leases/{lease}"), None),
        (
            "use_leases",
            M::POST,
            format!("/v1/leases/{lease}/heartbeat"),
            Some(json!({"token": token})),
        ),
        (
            "revoke_leases",
            M::POST,
            format!("/v1/leases/{lease}/revoke"),
            Some(json!({"reason": "matrix"})),
        ),
        (
            "use_leases",
            M::DELETE,
            format!("/v1/leases/{lease}?token={token}"),
            None,
        ),
        ("read_events", M::GET, "/v1/events".into(), None),
    ]
}

/// What each role may do, written out independently of the server's table.
fn allowed(role: &str, need: &str) -> bool {
    match role {
        "admin" => true,
        "operator" => matches!(
            need,
            "read_tables" | "read_leases" | "read_events" | "revoke_leases"
        ),
        "scheduler" => matches!(need, "read_tables" | "read_leases"),
        "job" => matches!(need, "read_tables" | "read_leases" | "use_leases"),
        _ => false,
    }
}

async fn every_route_answers_every_kind_of_caller_as_the_role_matrix_says(server: Server) {
    let s = setup(server).await;
    let mut callers: Vec<(String, Option<String>, Option<&str>)> = vec![
        ("no token".into(), None, Some("missing_token")),
        (
            "bad token".into(),
            Some("sluice_0000_nope".into()),
            Some("invalid_token"),
        ),
        (
            "garbage".into(),
            Some("not a token".into()),
            Some("invalid_token"),
        ),
    ];
    let expired = s
        .server
        .create_token("expired", "admin", &[], &["--expires-in-days", "1"]);
    s.server.expire_token("expired").await;
    callers.push(("expired".into(), Some(expired), Some("token_expired")));
    let revoked = s.server.create_token("revoked", "admin", &[], &[]);
    s.server.revoke_token("revoked");
    callers.push(("revoked".into(), Some(revoked), Some("token_revoked")));
    let forged = {
        let real = s.server.create_token("forged", "admin", &[], &[]);
        format!("{}x", &real[..real.len() - 1])
    };
    callers.push(("wrong secret".into(), Some(forged), Some("invalid_token")));
    for role in ["job", "scheduler", "operator", "admin"] {
        let token = s.server.create_token(role, role, &[], &[]);
        callers.push((role.into(), Some(token), None));
    }
    let out_of_scope = s.server.create_token("hr-admin", "admin", &["hr."], &[]);
    callers.push(("out of scope".into(), Some(out_of_scope), None));

    for (who, token, refused_as) in &callers {
        let client = Client::new(&s.server.url).with_token(token.clone());
        for (need, method, path, body) in routes(&s.lease_id, s.token) {
            let answer = client
                .send(method.clone(), &path, body.as_ref())
                .await
                .unwrap();
            let role = if who == "out of scope" {
                "admin"
            } else {
                who.as_str()
            };
            let expected_type = match refused_as {
                Some(kind) => Some(*kind),
                None if who == "out of scope" && path != "/v1/tables" && path != "/v1/events" => {
                    Some("out_of_scope")
                }
                None if !allowed(role, need) => Some("forbidden"),
                None => None,
            };
            match expected_type {
                Some(kind) => {
                    let status = if kind.ends_with("token") || kind.starts_with("token") {
                        401
                    } else {
                        403
                    };
                    assert_eq!(
                        (answer.status, answer.error_type()),
                        (status, Some(kind)),
                        "{who} {method} {path}: {answer:?}"
                    );
                }
                // Past the role and scope checks; the setup's lease is
                // root's, so another principal's heartbeat or release is
                // refused as not its own (proved on its own below).
                None => assert!(
                    answer.status < 400
                        || answer.status == 409
                        || answer.error_type() == Some("not_owner"),
                    "{who} {method} {path} must be let in: {answer:?}"
                ),
            }
        }
    }
    // Public routes need no token.
    let anyone = Client::new(&s.server.url);
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            anyone
                .send(reqwest::Method::GET, path, None)
                .await
                .unwrap()
                .status,
            200,
            "{path}"
        );
    }
}

async fn a_scoped_token_sees_only_its_tables_in_lists_and_is_refused_elsewhere(server: Server) {
    let s = setup(server).await;
    let hr = s
        .server
        .client_with(&s.server.create_token("hr-ops", "operator", &["hr."], &[]));
    let tables = hr
        .send(reqwest::Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    let names: Vec<&str> = tables.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hr.people"]);
    let events = hr
        .send(reqwest::Method::GET, "/v1/events", None)
        .await
        .unwrap();
    let seen: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["table"].as_str().unwrap())
        .collect();
    assert!(
        !seen.is_empty() && seen.iter().all(|t| *t == "hr.people"),
        "{seen:?}"
    );
    let other = hr
        .send(reqwest::Method::GET, "/v1/events?table=sales.orders", None)
        .await
        .unwrap();
    assert_eq!(
        (other.status, other.error_type()),
        (403, Some("out_of_scope"))
    );
    let lease = hr.lease(&s.lease_id, 0).await.unwrap();
    assert_eq!(
        (lease.status, lease.error_type()),
        (403, Some("out_of_scope")),
        "no peeking at another team's lease"
    );
}

async fn every_change_records_its_caller_in_the_event_log(server: Server) {
    let s = setup(server).await;
    let job = s
        .server
        .client_with(&s.server.create_token("ingest-job", "job", &[], &[]));
    let oncall = s
        .server
        .client_with(&s.server.create_token("oncall", "operator", &[], &[]));
    let lease = job
        .send(
            reqwest::Method::POST,
            "/v1/tables/hr.people/leases",
            Some(&json!({"mode": "write", "holder": "run-7", "ttl_seconds": 60})),
        )
        .await
        .unwrap();
    let id = lease.body["lease_id"].as_str().unwrap();
    assert_eq!(oncall.revoke(id, "stuck").await.unwrap().status, 200);
    let events = s.admin.all_events(0, Some("hr.people")).await.unwrap();
    let story: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            ("table_settings_changed", "root"),
            ("lease_requested", "ingest-job"),
            ("lease_granted", "ingest-job"),
            ("lease_revoked", "oncall"),
        ]
    );
}

crate::on_every_backend_with_auth!(
    only_the_principal_that_took_a_lease_or_opened_a_batch_acts_on_it,
    every_route_answers_every_kind_of_caller_as_the_role_matrix_says,
    a_scoped_token_sees_only_its_tables_in_lists_and_is_refused_elsewhere,
    every_change_records_its_caller_in_the_event_log,
);

async fn only_the_principal_that_took_a_lease_or_opened_a_batch_acts_on_it(server: Server) {
    // Arrange: two jobs in the same scope; the tokens they hold are visible
    // to both (tables show `last_token`, streams their open batch).
    let s = setup(server).await;
    let a = s
        .server
        .client_with(&s.server.create_token("job-a", "job", &["sales."], &[]));
    let b = s
        .server
        .client_with(&s.server.create_token("job-b", "job", &["sales."], &[]));
    let oncall = s
        .server
        .client_with(&s.server.create_token("oncall", "operator", &[], &[]));
    let lease = a
        .send(
            reqwest::Method::POST,
            "/v1/tables/sales.orders/leases",
            Some(&json!({"mode": "read", "holder": "a", "ttl_seconds": 600, "idempotency_key": "k1"})),
        )
        .await
        .unwrap();
    assert_eq!(lease.status, 201, "{lease:?}");
    let (id, token) = (
        lease.body["lease_id"].as_str().unwrap().to_owned(),
        lease.body["token"].as_i64(),
    );
    let stream = s
        .admin
        .send(
            reqwest::Method::PUT,
            "/v1/streams/sales.orders_cdc",
            Some(&json!({"table": "sales.orders"})),
        )
        .await
        .unwrap();
    assert_eq!(stream.status, 201, "{stream:?}");
    let batch = a
        .send(
            reqwest::Method::POST,
            "/v1/streams/sales.orders_cdc/batches",
            Some(&json!({"run_id": "jr_a"})),
        )
        .await
        .unwrap();
    assert_eq!(batch.status, 201, "{batch:?}");
    let batch_id = batch.body["batch_id"].as_str().unwrap().to_owned();
    let batch_token = batch.body["token"].as_i64().unwrap();
    let batch_path = format!("/v1/streams/sales.orders_cdc/batches/{batch_id}");

    // Act: job B uses what it can read.
    let attempts = [
        (
            reqwest::Method::POST,
            format!("/v1/leases/{id}/heartbeat"),
            Some(json!({"token": token})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/leases/{id}?token={}", token.unwrap()),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("{batch_path}/heartbeat"),
            Some(json!({"token": batch_token})),
        ),
        (
            reqwest::Method::POST,
            format!("{batch_path}/fail"),
            Some(json!({"token": batch_token})),
        ),
        (
            reqwest::Method::POST,
            format!("{batch_path}/commit"),
            Some(
                json!({"token": batch_token, "bookmark": {"load": {"files_done": ["LOAD1.csv"]}}}),
            ),
        ),
        // Naming A's run does not hand over A's batch and token.
        (
            reqwest::Method::POST,
            "/v1/streams/sales.orders_cdc/batches".to_owned(),
            Some(json!({"run_id": "jr_a"})),
        ),
    ];
    for (method, path, body) in &attempts {
        let answer = b.send(method.clone(), path, body.as_ref()).await.unwrap();
        // Assert
        assert_eq!(
            (answer.status, answer.error_type()),
            (403, Some("not_owner")),
            "job-b {method} {path}: {answer:?}"
        );
        assert!(answer.body.get("token").is_none(), "no token handed over");
    }
    // Nor does A's idempotency key.
    let same_key = b
        .send(
            reqwest::Method::POST,
            "/v1/tables/sales.orders/leases",
            Some(&json!({"mode": "read", "holder": "a", "ttl_seconds": 600, "idempotency_key": "k1"})),
        )
        .await
        .unwrap();
    assert_eq!(
        same_key.error_type(),
        Some("idempotency_conflict"),
        "{same_key:?}"
    );

    // Every refusal is in the log, with who tried.
    let events = s.admin.all_events(0, None).await.unwrap();
    let refused: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "access_refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["data"]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("job-b", "heartbeat"),
            ("job-b", "release"),
            ("job-b", "heartbeat"),
            ("job-b", "fail"),
            ("job-b", "commit"),
            ("job-b", "open"),
        ]
    );

    // A's lease and batch are untouched: A still acts, an operator revokes.
    let beat = a
        .send(
            reqwest::Method::POST,
            &format!("/v1/leases/{id}/heartbeat"),
            Some(&json!({"token": token})),
        )
        .await
        .unwrap();
    assert_eq!(beat.status, 200, "{beat:?}");
    let revoked = oncall.revoke(&id, "stuck").await.unwrap();
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let committed = a
        .send(
            reqwest::Method::POST,
            &format!("{batch_path}/commit"),
            Some(
                &json!({"token": batch_token, "bookmark": {"load": {"files_done": ["LOAD1.csv"]}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(committed.status, 200, "{committed:?}");
}

#[tokio::test]
async fn postgresql_requires_tokens_unless_told_otherwise() {
    let db = fresh_database().await;
    let s = Server::on_database_with(&db, &[]).await;
    let answer = s
        .client
        .send(reqwest::Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.error_type()),
        (401, Some("missing_token"))
    );
}

#[tokio::test]
async fn the_embedded_default_runs_without_tokens_and_says_so_loudly() {
    let s = Server::sqlite().await;
    let answer = s
        .client
        .send(reqwest::Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        s.log_text().contains("AUTHENTICATION IS OFF"),
        "{}",
        s.log_text()
    );
}

#[tokio::test]
async fn sqlite_on_a_non_loopback_address_requires_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--bind", &format!("0.0.0.0:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(a) = client.send(reqwest::Method::GET, "/v1/tables", None).await {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let answer = answer.expect("the server answered");
    assert_eq!(
        (answer.status, answer.error_type()),
        (401, Some("missing_token"))
    );
}

#[tokio::test]
async fn a_listed_token_never_shows_its_secret() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    let token = s.create_token("ci-bot", "job", &["sales."], &["--expires-in-days", "30"]);
    let secret = token.rsplit('_').next().unwrap();
    let list = std::process::Command::new(crate::harness::binary())
        .args(["token", "list", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(
        text.contains("ci-bot") && text.contains("job") && text.contains("sales."),
        "{text}"
    );
    assert!(!text.contains(secret), "the secret must never be listed");
    let name_seen = std::fs::read_dir(s.data_dir()).unwrap().any(|file| {
        let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "only a hash of the secret is stored"
        );
        bytes.windows(6).any(|w| w == b"ci-bot")
    });
    assert!(
        name_seen,
        "the token's record is in the data dir (database or its WAL)"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_two_credentials_are_refused() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    let token = s.create_token("job", "job", &[], &[]);
    let http = reqwest::Client::new();
    let get = |values: Vec<String>| {
        let mut request = http.get(format!("{}/v1/tables", s.url));
        for v in values {
            request = request.header(reqwest::header::AUTHORIZATION, v);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["error"]["type"].as_str().map(str::to_owned))
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(
            get(vec![format!("{scheme} {token}")]).await,
            (200, None),
            "scheme `{scheme}`"
        );
    }
    assert_eq!(
        get(vec![format!("Basic {token}")]).await,
        (401, Some("invalid_token".into()))
    );
    let other = s.create_token("other", "admin", &[], &[]);
    assert_eq!(
        get(vec![format!("Bearer {token}"), format!("Bearer {other}")]).await,
        (400, Some("duplicate_authorization".into())),
        "two credentials: neither is picked"
    );
}

#[tokio::test]
async fn a_token_expires_between_one_day_and_ten_years() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    for days in ["0", "3651", "4294967295"] {
        let output = s.try_create_token("t", "job", &[], &["--expires-in-days", days]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{days} days accepted");
        assert!(stderr.contains("1..=3650"), "{days}: {stderr}");
    }
    let token = s.create_token("t", "job", &[], &["--expires-in-days", "3650"]);
    let answer = s
        .client_with(&token)
        .send(reqwest::Method::GET, "/v1/tables", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// `sluice token import`, as a deployment's one-shot runs it.
fn import(s: &Server, name: &str, role: &str, var: &str, value: Option<&str>) -> (bool, String) {
    let mut command = std::process::Command::new(crate::harness::binary());
    command
        .args(["token", "import", "--name", name, "--role", role])
        .args(["--from-env", var, "--data-dir"])
        .arg(s.data_dir())
        .env_remove(var);
    if let Some(value) = value {
        command.env(var, value);
    }
    crate::harness::outcome(&mut command)
}

#[tokio::test]
async fn an_imported_token_authenticates_and_importing_it_again_changes_nothing() {
    let s = Server::sqlite_with(&["--auth", "on"]).await;
    let token = "sluice_deploy0123456789_thisisthedeploymentssecretvalue42";
    let (ok, said) = import(&s, "deploy-ops", "operator", "DEPLOY_TOKEN", Some(token));
    assert!(ok && said.contains("imported token `deploy-ops`"), "{said}");
    let events = s
        .client_with(token)
        .send(reqwest::Method::GET, "/v1/events", None)
        .await
        .unwrap();
    assert_eq!(events.status, 200, "the operator token reads the event log");
    // A second task starting, or the next rollout: nothing to do.
    let (ok, said) = import(&s, "deploy-ops", "operator", "DEPLOY_TOKEN", Some(token));
    assert!(ok && said.contains("imported already"), "{said}");

    // Each mistake a deployment can make is refused, with what to do.
    let other = "sluice_other0123456789a_anothersecretvalueofthirtytwoplus";
    for (value, role, expect) in [
        (
            Some(other),
            "operator",
            "a different token named `deploy-ops` exists",
        ),
        (
            Some(token),
            "admin",
            "a different token named `deploy-ops` exists",
        ),
        (
            Some("sluice_short_secret"),
            "operator",
            "does not hold a sluice token",
        ),
        (
            Some("not-a-token"),
            "operator",
            "does not hold a sluice token",
        ),
        (None, "operator", "`DEPLOY_TOKEN` is not set"),
        (Some(token), "root", "unknown role `root`"),
    ] {
        let (ok, said) = import(&s, "deploy-ops", role, "DEPLOY_TOKEN", value);
        assert!(!ok && said.contains(expect), "{value:?} {role}: {said}");
    }
    // The refused attempts changed nothing: the token still works as it was.
    let events = s
        .client_with(token)
        .send(reqwest::Method::GET, "/v1/events", None)
        .await
        .unwrap();
    assert_eq!(events.status, 200);
}

#[test]
fn principal_rules_are_made_once_listed_and_deleted_with_clear_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        crate::harness::outcome(
            std::process::Command::new(crate::harness::binary())
                .arg("principal")
                .args(args)
                .arg("--data-dir")
                .arg(&data),
        )
    };
    let glue = "arn:aws:iam::*:role/glue-ingest-*";
    let create = [
        "create",
        "--aws-arn",
        glue,
        "--role",
        "job",
        "--scope",
        "sales.",
    ];
    let (ok, said) = run(&create);
    assert!(ok && said.contains("now get role job"), "{said}");
    // The same rule again (a deployment's one-shot): nothing to do.
    let (ok, said) = run(&create);
    assert!(ok && said.contains("exists already"), "{said}");
    for (args, expect) in [
        (
            vec!["create", "--aws-arn", glue, "--role", "admin"],
            "a different rule",
        ),
        (
            vec!["create", "--aws-arn", "glue-*", "--role", "job"],
            "is not an ARN pattern",
        ),
        (
            vec!["create", "--aws-arn", glue, "--role", "root"],
            "unknown role",
        ),
        (
            vec![
                "create",
                "--aws-arn",
                glue,
                "--role",
                "job",
                "--scope",
                "Sales Orders",
            ],
            "is not a table name prefix",
        ),
        (
            vec!["delete", "--aws-arn", "arn:aws:iam::1:user/x"],
            "no rule for",
        ),
    ] {
        let (ok, said) = run(&args);
        assert!(!ok && said.contains(expect), "{args:?}: {said}");
    }
    let (ok, said) = run(&["list"]);
    assert!(
        ok && said.contains(glue) && said.contains("sales."),
        "{said}"
    );
    let (ok, _) = run(&["delete", "--aws-arn", glue]);
    assert!(ok);
    let (_, said) = run(&["list"]);
    assert!(!said.contains(glue), "{said}");
}
