//! Scopes hold on everything that belongs to a table, as hostile callers
//! try them: consumer views (fed from a table) and the containers they
//! live in, jobs and their runs; and a run's arguments cannot hand its Glue
//! job another sluice to log in to.

use crate::errors::assert_error;
use crate::harness::{fresh_database, until, Server};
use crate::raw::{Answer, Client};
use crate::snapshots::{py, sql_catalog};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::time::Duration;

async fn send(client: &Client, method: Method, path: &str, body: Option<Value>) -> Answer {
    client.send(method, path, body.as_ref()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_job_token_cannot_take_over_another_teams_view() {
    let container = fresh_database().await;
    let mut conn = PgConnection::connect(&container).await.unwrap();
    for sql in [
        "CREATE TABLE fin_v1 (id int, amount int)",
        "INSERT INTO fin_v1 VALUES (1, 100)",
        "CREATE TABLE sales_v1 (id int, amount int)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let server = Server::sqlite_with(&["--auth", "on", "--refresh-interval-seconds", "3600"]).await;
    let admin = server.client_with(&server.create_token("root", "admin", &[], &[]));
    let catalog = sql_catalog(&server.data_dir());
    for table in ["finance.ledger", "sales.orders"] {
        py(&catalog, &["create", table]).await;
        assert_eq!(admin.put_table(table, json!({})).await.unwrap().status, 201);
    }
    let snapshot: i64 = py(&catalog, &["append", "finance.ledger", "3"])
        .await
        .parse()
        .unwrap();
    let put = send(
        &admin,
        Method::PUT,
        "/v1/containers/analytics",
        Some(json!({ "kind": "postgres", "url": container })),
    )
    .await;
    assert_eq!(put.status, 201, "{put:?}");
    let finance = server.client_with(&server.create_token("fin-job", "job", &["finance."], &[]));
    let sales = server.client_with(&server.create_token("sales-job", "job", &["sales."], &[]));

    // finance's hydration is live: fin_report reads fin_v1.
    let created = send(
        &finance,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "finance.ledger", "container": "analytics",
                     "target": "fin_v1", "views": ["fin_report"], "run_id": "fin-run" })),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let live = send(
        &finance,
        Method::POST,
        &format!("/v1/hydrations/{id}/progress"),
        Some(
            json!({ "token": created.body["session"]["token"], "phase": "catching_up",
                     "snapshot_id": snapshot }),
        ),
    )
    .await;
    assert_eq!(live.body["state"], "live", "{live:?}");
    until(
        "fin_report mapped to fin_v1",
        Duration::from_secs(30),
        || async {
            send(&admin, Method::GET, "/v1/views/analytics/fin_report", None)
                .await
                .body
        },
        |v| v["target"] == "fin_v1",
        || server.log_text(),
    )
    .await;

    // sales names finance's view: refused, nothing changes.
    let taken = send(
        &sales,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "sales.orders", "container": "analytics",
                     "target": "sales_v1", "views": ["fin_report"] })),
    )
    .await;
    assert_error("another scope's view", &taken, 403, "out_of_scope");
    let finance_hydration = send(&admin, Method::GET, &format!("/v1/hydrations/{id}"), None).await;
    assert_eq!(
        finance_hydration.body["state"], "live",
        "{finance_hydration:?}"
    );
    let reads: (i32,) = sqlx::query_as("SELECT amount FROM fin_report")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(reads.0, 100);

    // A free view is sales's to name.
    let own = send(
        &sales,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "sales.orders", "container": "analytics",
                     "target": "sales_v1", "views": ["sales_report"] })),
    )
    .await;
    assert_eq!(own.status, 201, "{own:?}");

    // Lists and reads: finance's view is finance's.
    let listed = |client: Client| async move {
        let page = send(&client, Method::GET, "/v1/views", None).await;
        assert_eq!(page.status, 200, "{page:?}");
        page.body["views"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["view"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(!listed(sales.clone())
        .await
        .contains(&"fin_report".to_owned()));
    assert!(listed(finance.clone())
        .await
        .contains(&"fin_report".to_owned()));
    assert!(listed(admin.clone())
        .await
        .contains(&"fin_report".to_owned()));
    let read = send(&sales, Method::GET, "/v1/views/analytics/fin_report", None).await;
    assert_error("another scope's view", &read, 403, "out_of_scope");
    // A container is shared; where it is (its URL) is not shown to a scope.
    let shown = send(&sales, Method::GET, "/v1/containers/analytics", None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert!(shown.body["url"].is_null(), "{shown:?}");
    let page = send(&sales, Method::GET, "/v1/containers", None).await;
    assert!(page.body["containers"][0]["url"].is_null(), "{page:?}");
    let full = send(&admin, Method::GET, "/v1/containers/analytics", None).await;
    assert!(full.body["url"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    let orphans = send(
        &sales,
        Method::GET,
        "/v1/containers/analytics/orphans",
        None,
    )
    .await;
    assert_error("orphans to a scoped token", &orphans, 403, "out_of_scope");
    // An operator moves fin_report off fin_v1 by hand: finance's live
    // hydration still fills fin_v1, so it is no orphan to clean up.
    let moved = send(
        &admin,
        Method::POST,
        "/v1/views/analytics/fin_report/remap",
        Some(json!({ "target": "sales_v1", "reason": "audit" })),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    let orphans = send(
        &admin,
        Method::GET,
        "/v1/containers/analytics/orphans",
        None,
    )
    .await;
    assert_eq!(orphans.body["orphans"], json!([]), "{orphans:?}");

    // Targets and views stay out of the container's system schemas.
    for (target, views) in [
        ("pg_catalog.pg_authid", json!(["sales_secrets"])),
        ("information_schema.tables", json!(["sales_t"])),
        ("sales_v1", json!(["pg_catalog.pg_roles"])),
        ("PG_TOAST.x", json!(["sales_x"])),
    ] {
        let answer = send(
            &sales,
            Method::POST,
            "/v1/hydrations",
            Some(json!({ "table": "sales.orders", "container": "analytics",
                         "target": target, "views": views,
                         "columns": ["rolname", "rolpassword"] })),
        )
        .await;
        assert_eq!(answer.status, 422, "{target} {views}: {answer:?}");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("system schema"), "{message}");
    }

    // A view promised to sales by its unfinished hydration is not free.
    let promised = send(
        &finance,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "finance.ledger", "container": "analytics",
                     "target": "fin_v1", "views": ["sales_report"] })),
    )
    .await;
    assert_error("a view promised to sales", &promised, 403, "out_of_scope");

    // Two hydrations named `shared` while it was free (one by an unscoped
    // caller, who may): the first to go live takes it, and the other's
    // reports are refused from then on; the view keeps reading finance.
    let sales_snapshot: i64 = py(&catalog, &["append", "sales.orders", "2"])
        .await
        .parse()
        .unwrap();
    let first = send(
        &sales,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "sales.orders", "container": "analytics",
                     "target": "sales_v1", "views": ["shared"], "run_id": "sales-run" })),
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let second = send(
        &admin,
        Method::POST,
        "/v1/hydrations",
        Some(json!({ "table": "finance.ledger", "container": "analytics",
                     "target": "fin_v1", "views": ["shared"], "run_id": "admin-run" })),
    )
    .await;
    assert_eq!(second.status, 201, "{second:?}");
    let second_id = second.body["id"].as_str().unwrap();
    let live = send(
        &admin,
        Method::POST,
        &format!("/v1/hydrations/{second_id}/progress"),
        Some(
            json!({ "token": second.body["session"]["token"], "phase": "catching_up",
                     "snapshot_id": snapshot }),
        ),
    )
    .await;
    assert_eq!(live.body["state"], "live", "{live:?}");
    until(
        "shared mapped to fin_v1",
        Duration::from_secs(30),
        || async {
            send(&admin, Method::GET, "/v1/views/analytics/shared", None)
                .await
                .body
        },
        |v| v["target"] == "fin_v1",
        || server.log_text(),
    )
    .await;
    let first_id = first.body["id"].as_str().unwrap();
    let late = send(
        &sales,
        Method::POST,
        &format!("/v1/hydrations/{first_id}/progress"),
        Some(
            json!({ "token": first.body["session"]["token"], "phase": "catching_up",
                     "snapshot_id": sales_snapshot }),
        ),
    )
    .await;
    assert_error("going live onto finance's view", &late, 403, "out_of_scope");
    let shared = send(&admin, Method::GET, "/v1/views/analytics/shared", None).await;
    assert_eq!(shared.body["target"], "fin_v1", "{shared:?}");
}

/// A job on `table` (none: a job of no table).
async fn define(admin: &Client, name: &str, table: Option<&str>) {
    let mut body = json!({ "glue_job_name": "g", "kind": "ingestion" });
    if let Some(table) = table {
        body["table"] = json!(table);
    }
    let answer = send(admin, Method::PUT, &format!("/v1/jobs/{name}"), Some(body)).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_hold_on_jobs_and_runs_as_on_compactions() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.client_with(&server.create_token("root", "admin", &[], &[]));
    for table in ["finance.ledger", "sales.orders"] {
        assert_eq!(admin.put_table(table, json!({})).await.unwrap().status, 201);
    }
    define(&admin, "ledger", Some("finance.ledger")).await;
    define(&admin, "orders", Some("sales.orders")).await;
    define(&admin, "housekeeping", None).await;
    let run = send(
        &admin,
        Method::POST,
        "/v1/jobs/ledger/runs",
        Some(json!({})),
    )
    .await;
    assert_eq!(run.status, 201, "{run:?}");
    let finance_run = run.body["id"].as_str().unwrap().to_owned();

    for role in ["scheduler", "operator"] {
        let sales = server.client_with(&server.create_token(
            &format!("sales-{role}"),
            role,
            &["sales."],
            &[],
        ));
        let out_of_scope = [
            (
                Method::POST,
                "/v1/jobs/ledger/runs".to_owned(),
                Some(json!({})),
            ),
            (
                Method::POST,
                "/v1/jobs/housekeeping/runs".to_owned(),
                Some(json!({})),
            ),
            (Method::GET, "/v1/jobs/ledger".to_owned(), None),
            (Method::GET, format!("/v1/runs/{finance_run}"), None),
            (Method::POST, format!("/v1/runs/{finance_run}/cancel"), None),
            (Method::POST, format!("/v1/runs/{finance_run}/retry"), None),
            (
                Method::POST,
                format!("/v1/runs/{finance_run}/discard"),
                None,
            ),
        ];
        for (method, path, body) in out_of_scope {
            let answer = send(&sales, method.clone(), &path, body).await;
            // The role may lack the permission (403 forbidden) or have it:
            // either way the scope is never passed.
            assert_eq!(answer.status, 403, "{role} {method} {path}: {answer:?}");
            if answer.error_type() != Some("forbidden") {
                assert_error(
                    &format!("{role} {method} {path}"),
                    &answer,
                    403,
                    "out_of_scope",
                );
            }
        }
        // Lists hold only its own scope's jobs and runs (and their arguments).
        let jobs = send(&sales, Method::GET, "/v1/jobs", None).await;
        let names: Vec<&str> = jobs.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["orders"], "{role}: {jobs:?}");
        let runs = send(&sales, Method::GET, "/v1/runs", None).await;
        assert_eq!(runs.status, 200, "{runs:?}");
        assert!(
            runs.body["runs"].as_array().unwrap().is_empty(),
            "{role} sees another scope's runs: {runs:?}"
        );
    }
    // The run was never cancelled by them.
    let still = send(
        &admin,
        Method::GET,
        &format!("/v1/runs/{finance_run}"),
        None,
    )
    .await;
    assert_ne!(still.body["state"], "cancelled", "{still:?}");

    // A scoped scheduler starts its own scope's runs, and cannot define a
    // job of no table or take over another scope's job by its name.
    let sales = server.client_with(&server.create_token("sales-admin", "admin", &["sales."], &[]));
    let own = send(
        &sales,
        Method::POST,
        "/v1/jobs/orders/runs",
        Some(json!({})),
    )
    .await;
    assert_eq!(own.status, 201, "{own:?}");
    let mine = send(&sales, Method::GET, "/v1/runs", None).await;
    assert_eq!(mine.body["runs"].as_array().unwrap().len(), 1, "{mine:?}");
    for (name, body) in [
        (
            "tableless",
            json!({ "glue_job_name": "g", "kind": "ingestion" }),
        ),
        (
            "ledger",
            json!({ "glue_job_name": "g", "kind": "ingestion", "table": "sales.orders" }),
        ),
    ] {
        let answer = send(&sales, Method::PUT, &format!("/v1/jobs/{name}"), Some(body)).await;
        assert_error(name, &answer, 403, "out_of_scope");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_argument_cannot_hand_the_job_another_sluice() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.client_with(&server.create_token("root", "admin", &[], &[]));
    assert_eq!(
        admin
            .put_table("sales.orders", json!({}))
            .await
            .unwrap()
            .status,
        201
    );
    define(&admin, "orders", Some("sales.orders")).await;
    let scheduler = server.client_with(&server.create_token("cron", "scheduler", &[], &[]));
    for (arguments, says) in [
        // A value that reads as an option: Glue hands the job
        // `--zz --sluice-url=http://attacker`.
        (json!({ "--zz": "--sluice-url=http://attacker" }), "--"),
        (
            json!({ "--zz": "--sluice-aws-sts-endpoint=http://attacker" }),
            "--",
        ),
        (json!({ "--zz": "--sluice-run-id=x/1" }), "--"),
        // sluice's own keys, in any case or spelling.
        (json!({ "--sluice-url": "http://attacker" }), "sluice"),
        (json!({ "--SLUICE-URL": "http://attacker" }), "sluice"),
        (json!({ "--sluice_url": "http://attacker" }), "sluice"),
        (json!({ "--SLUICE_TOKEN": "sluice_x_y" }), "sluice"),
        // What no command line holds as one argument.
        (json!({ "--x": "red\u{1b}[31m" }), "control"),
        (json!({ "--x": "a\nb" }), "control"),
        (json!({ "--a b": "1" }), "letters"),
        (json!({ "---x": "1" }), "letters"),
    ] {
        let run = send(
            &scheduler,
            Method::POST,
            "/v1/jobs/orders/runs",
            Some(json!({ "arguments": arguments })),
        )
        .await;
        assert_error(&arguments.to_string(), &run, 422, "invalid_request");
        let message = run.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{arguments}: {message}");
        // Nor as a definition's defaults.
        let defined = send(
            &admin,
            Method::PUT,
            "/v1/jobs/orders",
            Some(
                json!({ "glue_job_name": "g", "kind": "ingestion", "table": "sales.orders",
                         "arguments": arguments }),
            ),
        )
        .await;
        assert_error(&arguments.to_string(), &defined, 422, "invalid_request");
    }
    let runs = send(&admin, Method::GET, "/v1/runs", None).await;
    assert!(runs.body["runs"].as_array().unwrap().is_empty(), "{runs:?}");
    // Ordinary arguments still pass, `-` inside a value included.
    let fine = send(
        &scheduler,
        Method::POST,
        "/v1/jobs/orders/runs",
        Some(json!({ "arguments": { "--day": "2026-12-07", "--mode": "-x" } })),
    )
    .await;
    assert_eq!(fine.status, 201, "{fine:?}");
}
