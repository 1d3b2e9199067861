//! Authentication, roles, scopes and audit, on a server that requires tokens.

use crate::harness::{fresh_database, Server};
use crate::raw::Client;
use serde_json::{json, Value};
use sqlx::Connection;

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

/// What a route's object belongs to, for a caller scoped to another
/// namespace than `sales.`.
#[derive(Clone, Copy, PartialEq)]
enum Reach {
    /// Anyone, no token: liveness, the spec, the login.
    Public,
    /// A list or a shared thing: a scoped caller is let in (and sees its
    /// own part only).
    Any,
    /// Something of `sales.` or of no table: refused `out_of_scope`.
    Scoped,
}

/// Everything the matrix acts on, made by an unscoped admin.
struct World {
    server: Server,
    lease: String,
    token: i64,
    batch: String,
    batch_token: i64,
    run: String,
    hydration: String,
    hydration_token: i64,
    container_url: String,
}

async fn world(server: Server) -> World {
    use reqwest::Method as M;
    let s = setup(server).await;
    let root = &s.admin;
    let ok = |a: &crate::raw::Answer| assert!(a.status < 300, "setup: {a:?}");
    let call = |m: M, p: String, b: Value| async move { root.send(m, &p, Some(&b)).await.unwrap() };
    let stream = call(
        M::PUT,
        "/v1/streams/sales.orders.cdc".into(),
        json!({"table": "sales.orders"}),
    )
    .await;
    ok(&stream);
    let batch = call(
        M::POST,
        "/v1/streams/sales.orders.cdc/batches".into(),
        json!({"run_id": "setup", "ttl_seconds": 600}),
    )
    .await;
    ok(&batch);
    let job = call(
        M::PUT,
        "/v1/jobs/orders-ingest".into(),
        json!({"glue_job_name": "g", "kind": "ingestion", "table": "sales.orders"}),
    )
    .await;
    ok(&job);
    let run = call(M::POST, "/v1/jobs/orders-ingest/runs".into(), json!({})).await;
    ok(&run);
    let container_url = fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&container_url).await.unwrap();
    sqlx::query("CREATE TABLE t1 (id int)")
        .execute(&mut conn)
        .await
        .unwrap();
    ok(&call(
        M::PUT,
        "/v1/containers/analytics".into(),
        json!({"kind": "postgres", "url": container_url}),
    )
    .await);
    let hydration = call(
        M::POST,
        "/v1/hydrations".into(),
        json!({"table": "sales.orders", "container": "analytics", "target": "t1", "run_id": "run-1"}),
    )
    .await;
    ok(&hydration);
    // A view mapped by hand: fed from no table, so no scope's.
    ok(&call(
        M::POST,
        "/v1/views/analytics/report/remap".into(),
        json!({"target": "t1", "reason": "setup"}),
    )
    .await);
    World {
        lease: s.lease_id,
        token: s.token,
        batch: batch.body["batch_id"].as_str().unwrap().to_owned(),
        batch_token: batch.body["token"].as_i64().unwrap(),
        run: run.body["id"].as_str().unwrap().to_owned(),
        hydration: hydration.body["id"].as_str().unwrap().to_owned(),
        hydration_token: hydration.body["session"]["token"].as_i64().unwrap(),
        container_url,
        server: s.server,
    }
}

/// Every operation of the spec as `METHOD template`, with what it needs,
/// how far a scoped caller reaches, and a valid request for it. The test
/// checks this list against the spec the server serves, so a new route
/// cannot be left out.
fn routes(w: &World) -> Vec<(&'static str, &'static str, Reach, String, Option<Value>)> {
    use Reach::*;
    let (lease, token) = (&w.lease, w.token);
    let batch = format!("/v1/streams/sales.orders.cdc/batches/{}", w.batch);
    let bt = w.batch_token;
    let (run, h, ht) = (&w.run, &w.hydration, w.hydration_token);
    let none = "0190b6a0-0000-7000-8000-000000000000";
    vec![
        ("GET /healthz", "public", Public, "/healthz".into(), None),
        ("GET /readyz", "public", Public, "/readyz".into(), None),
        (
            "GET /openapi.json",
            "public",
            Public,
            "/openapi.json".into(),
            None,
        ),
        (
            "POST /v1/auth/aws",
            "public",
            Public,
            "/v1/auth/aws".into(),
            Some(json!({"method": "POST", "url": "http://sts", "headers": {}, "body": ""})),
        ),
        (
            "GET /v1/tables",
            "read_tables",
            Any,
            "/v1/tables".into(),
            None,
        ),
        (
            "GET /v1/tables/{table}",
            "read_tables",
            Scoped,
            "/v1/tables/sales.orders".into(),
            None,
        ),
        (
            "PUT /v1/tables/{table}",
            "manage_tables",
            Scoped,
            "/v1/tables/sales.orders".into(),
            Some(json!({})),
        ),
        (
            "GET /v1/tables/{table}/leases",
            "read_tables",
            Scoped,
            "/v1/tables/sales.orders/leases".into(),
            None,
        ),
        (
            "POST /v1/tables/{table}/leases",
            "use_leases",
            Scoped,
            "/v1/tables/sales.orders/leases".into(),
            Some(json!({"mode": "read", "holder": "matrix", "ttl_seconds": 60})),
        ),
        (
            "POST /v1/tables/{table}/refresh",
            "refresh_tables",
            Scoped,
            "/v1/tables/sales.orders/refresh".into(),
            None,
        ),
        (
            "GET /v1/tables/{table}/retention",
            "read_tables",
            Scoped,
            "/v1/tables/sales.orders/retention".into(),
            None,
        ),
        (
            "GET /v1/tables/{table}/snapshots",
            "read_tables",
            Scoped,
            "/v1/tables/sales.orders/snapshots".into(),
            None,
        ),
        (
            "GET /v1/tables/{table}/compactions",
            "read_jobs",
            Scoped,
            "/v1/tables/sales.orders/compactions".into(),
            None,
        ),
        (
            "POST /v1/tables/{table}/compactions",
            "request_compactions",
            Scoped,
            "/v1/tables/sales.orders/compactions".into(),
            Some(json!({"requested_by": "matrix"})),
        ),
        (
            "GET /v1/tables/{table}/compactions/{id}",
            "read_jobs",
            Scoped,
            format!("/v1/tables/sales.orders/compactions/{none}"),
            None,
        ),
        (
            "GET /v1/compactions",
            "read_jobs",
            Any,
            "/v1/compactions".into(),
            None,
        ),
        (
            "GET /v1/leases/{lease_id}",
            "read_leases",
            Scoped,
            format!("/v1/leases/{lease}"),
            None,
        ),
        (
            "POST /v1/leases/{lease_id}/heartbeat",
            "use_leases",
            Scoped,
            format!("/v1/leases/{lease}/heartbeat"),
            Some(json!({"token": token})),
        ),
        (
            "POST /v1/leases/{lease_id}/revoke",
            "revoke_leases",
            Scoped,
            format!("/v1/leases/{lease}/revoke"),
            Some(json!({"reason": "matrix"})),
        ),
        (
            "DELETE /v1/leases/{lease_id}",
            "use_leases",
            Scoped,
            format!("/v1/leases/{lease}?token={token}"),
            None,
        ),
        (
            "GET /v1/streams",
            "read_streams",
            Any,
            "/v1/streams".into(),
            None,
        ),
        (
            "GET /v1/streams/{stream}",
            "read_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc".into(),
            None,
        ),
        (
            "PUT /v1/streams/{stream}",
            "manage_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc".into(),
            Some(json!({"table": "sales.orders"})),
        ),
        (
            "POST /v1/streams/{stream}/batches",
            "use_batches",
            Scoped,
            "/v1/streams/sales.orders.cdc/batches".into(),
            Some(json!({"run_id": "matrix"})),
        ),
        (
            "GET /v1/streams/{stream}/batches/{batch_id}",
            "read_streams",
            Scoped,
            batch.clone(),
            None,
        ),
        (
            "POST /v1/streams/{stream}/batches/{batch_id}/heartbeat",
            "use_batches",
            Scoped,
            format!("{batch}/heartbeat"),
            Some(json!({"token": bt})),
        ),
        (
            "POST /v1/streams/{stream}/batches/{batch_id}/commit",
            "use_batches",
            Scoped,
            format!("{batch}/commit"),
            Some(json!({"token": bt, "bookmark": {"load": {"files_done": ["LOAD1.csv"]}}})),
        ),
        (
            "POST /v1/streams/{stream}/batches/{batch_id}/fail",
            "use_batches",
            Scoped,
            format!("{batch}/fail"),
            Some(json!({"token": bt})),
        ),
        (
            "GET /v1/streams/{stream}/bookmark",
            "read_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc/bookmark".into(),
            None,
        ),
        (
            "GET /v1/streams/{stream}/bookmark/history",
            "read_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc/bookmark/history".into(),
            None,
        ),
        (
            "GET /v1/streams/{stream}/bookmark/history/{version}",
            "read_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc/bookmark/history/1".into(),
            None,
        ),
        (
            "POST /v1/streams/{stream}/bookmark/rewind",
            "rewind_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc/bookmark/rewind".into(),
            Some(json!({"to_version": 1, "reason": "matrix"})),
        ),
        (
            "POST /v1/streams/{stream}/bookmark/reset",
            "rewind_streams",
            Scoped,
            "/v1/streams/sales.orders.cdc/bookmark/reset".into(),
            Some(json!({"reason": "matrix"})),
        ),
        (
            "GET /v1/containers",
            "read_containers",
            Any,
            "/v1/containers".into(),
            None,
        ),
        (
            "GET /v1/containers/{name}",
            "read_containers",
            Any,
            "/v1/containers/analytics".into(),
            None,
        ),
        (
            "PUT /v1/containers/{name}",
            "manage_containers",
            Scoped,
            "/v1/containers/analytics".into(),
            Some(json!({"kind": "postgres", "url": w.container_url})),
        ),
        (
            "GET /v1/containers/{name}/orphans",
            "read_containers",
            Scoped,
            "/v1/containers/analytics/orphans".into(),
            None,
        ),
        (
            "GET /v1/hydrations",
            "read_hydrations",
            Any,
            "/v1/hydrations".into(),
            None,
        ),
        (
            "POST /v1/hydrations",
            "run_hydrations",
            Scoped,
            "/v1/hydrations".into(),
            Some(json!({"table": "sales.orders", "container": "analytics", "target": "t2"})),
        ),
        (
            "GET /v1/hydrations/{id}",
            "read_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}"),
            None,
        ),
        (
            "POST /v1/hydrations/{id}/attach",
            "run_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}/attach"),
            Some(json!({"run_id": "run-1"})),
        ),
        (
            "POST /v1/hydrations/{id}/heartbeat",
            "run_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}/heartbeat"),
            Some(json!({"token": ht})),
        ),
        (
            "POST /v1/hydrations/{id}/progress",
            "run_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}/progress"),
            Some(json!({"token": ht, "phase": "snapshot", "snapshot_id": 1})),
        ),
        (
            "POST /v1/hydrations/{id}/detach",
            "run_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}/detach"),
            Some(json!({"token": ht})),
        ),
        (
            "POST /v1/hydrations/{id}/cancel",
            "cancel_hydrations",
            Scoped,
            format!("/v1/hydrations/{h}/cancel"),
            Some(json!({"reason": "matrix"})),
        ),
        (
            "GET /v1/views",
            "read_containers",
            Any,
            "/v1/views".into(),
            None,
        ),
        (
            "GET /v1/views/{container}/{view}",
            "read_containers",
            Scoped,
            "/v1/views/analytics/report".into(),
            None,
        ),
        (
            "PUT /v1/views/{container}/{view}",
            "manage_views",
            Scoped,
            "/v1/views/analytics/report".into(),
            Some(json!({"auto_remap": true})),
        ),
        (
            "POST /v1/views/{container}/{view}/remap",
            "manage_views",
            Scoped,
            "/v1/views/analytics/report/remap".into(),
            Some(json!({"target": "t1", "reason": "matrix"})),
        ),
        (
            "POST /v1/views/{container}/{view}/rollback",
            "manage_views",
            Scoped,
            "/v1/views/analytics/report/rollback".into(),
            Some(json!({"reason": "matrix"})),
        ),
        ("GET /v1/jobs", "read_jobs", Any, "/v1/jobs".into(), None),
        (
            "GET /v1/jobs/{name}",
            "read_jobs",
            Scoped,
            "/v1/jobs/orders-ingest".into(),
            None,
        ),
        (
            "PUT /v1/jobs/{name}",
            "manage_jobs",
            Scoped,
            "/v1/jobs/orders-ingest".into(),
            Some(json!({"glue_job_name": "g", "kind": "ingestion", "table": "sales.orders"})),
        ),
        (
            "POST /v1/jobs/{name}/runs",
            "start_runs",
            Scoped,
            "/v1/jobs/orders-ingest/runs".into(),
            Some(json!({})),
        ),
        // Refused as busy (its runs are not finished) once let in.
        (
            "DELETE /v1/jobs/{name}",
            "manage_jobs",
            Scoped,
            "/v1/jobs/orders-ingest".into(),
            None,
        ),
        ("GET /v1/runs", "read_jobs", Any, "/v1/runs".into(), None),
        (
            "GET /v1/runs/{id}",
            "read_jobs",
            Scoped,
            format!("/v1/runs/{run}"),
            None,
        ),
        (
            "POST /v1/runs/{id}/cancel",
            "operate_runs",
            Scoped,
            format!("/v1/runs/{run}/cancel"),
            None,
        ),
        (
            "POST /v1/runs/{id}/retry",
            "operate_runs",
            Scoped,
            format!("/v1/runs/{run}/retry"),
            None,
        ),
        (
            "POST /v1/runs/{id}/discard",
            "operate_runs",
            Scoped,
            format!("/v1/runs/{run}/discard"),
            None,
        ),
        (
            "GET /v1/events",
            "read_events",
            Any,
            "/v1/events".into(),
            None,
        ),
        (
            "GET /v1/events/stream",
            "read_events",
            Any,
            "/v1/events/stream".into(),
            None,
        ),
    ]
}

/// What each role may do, written out independently of the server's table.
fn allowed(role: &str, need: &str) -> bool {
    const READ: [&str; 7] = [
        "read_tables",
        "refresh_tables",
        "read_containers",
        "read_hydrations",
        "read_leases",
        "read_streams",
        "read_jobs",
    ];
    let also: &[&str] = match role {
        "admin" => return true,
        "operator" => &[
            "read_events",
            "revoke_leases",
            "cancel_hydrations",
            "manage_views",
            "rewind_streams",
            "start_runs",
            "operate_runs",
            "request_compactions",
        ],
        "scheduler" => &["start_runs", "request_compactions"],
        "job" => &["use_leases", "use_batches", "run_hydrations"],
        _ => return false,
    };
    READ.contains(&need) || also.contains(&need)
}

/// One request; the event feed's status only (it never ends).
async fn answer(
    client: &Client,
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> crate::raw::Answer {
    if path != "/v1/events/stream" {
        return client.send(method, path, body).await.unwrap();
    }
    let mut request = reqwest::Client::new().get(format!("{url}{path}"));
    if let Some(token) = client.token() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = if status >= 400 {
        response.json().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    crate::raw::Answer { status, body }
}

async fn every_route_answers_every_kind_of_caller_as_the_role_matrix_says(server: Server) {
    let w = world(server).await;
    let routes = routes(&w);
    // Every operation of the spec is in the matrix, and nothing else.
    let spec: Value = reqwest::get(format!("{}/openapi.json", w.server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut in_spec: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    in_spec.push("GET /openapi.json".into());
    in_spec.sort();
    let mut in_matrix: Vec<String> = routes.iter().map(|r| r.0.to_owned()).collect();
    in_matrix.sort();
    assert_eq!(
        in_matrix, in_spec,
        "the matrix lists every operation of the spec"
    );

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
    let expired = w
        .server
        .create_token("expired", "admin", &[], &["--expires-in-days", "1"]);
    w.server.expire_token("expired").await;
    callers.push(("expired".into(), Some(expired), Some("token_expired")));
    let revoked = w.server.create_token("revoked", "admin", &[], &[]);
    w.server.revoke_token("revoked");
    callers.push(("revoked".into(), Some(revoked), Some("token_revoked")));
    let forged = {
        let real = w.server.create_token("forged", "admin", &[], &[]);
        format!("{}x", &real[..real.len() - 1])
    };
    callers.push(("wrong secret".into(), Some(forged), Some("invalid_token")));
    // Each role scoped elsewhere (`hr.`), then unscoped: refusals first, so
    // that the unscoped callers' changes (a revoke, a cancel) come last.
    for scoped in [true, false] {
        for role in ["job", "scheduler", "operator", "admin"] {
            let (name, scopes): (String, &[&str]) = if scoped {
                (format!("hr-{role}"), &["hr."])
            } else {
                (role.to_owned(), &[])
            };
            let token = w.server.create_token(&name, role, scopes, &[]);
            callers.push((name, Some(token), None));
        }
    }

    for (who, token, refused_as) in &callers {
        let client = Client::new(&w.server.url).with_token(token.clone());
        let (role, scoped) = match who.strip_prefix("hr-") {
            Some(role) => (role, true),
            None => (who.as_str(), false),
        };
        for (operation, need, reach, path, body) in &routes {
            let method: reqwest::Method = operation.split(' ').next().unwrap().parse().unwrap();
            let got = answer(&client, &w.server.url, method, path, body.as_ref()).await;
            let expected = match (reach, refused_as) {
                (Reach::Public, _) => None,
                (_, Some(kind)) => Some(*kind),
                _ if !allowed(role, need) => Some("forbidden"),
                (Reach::Scoped, None) if scoped => Some("out_of_scope"),
                _ => None,
            };
            // Refused both by role and by scope: either refusal will do.
            let either = scoped && *reach == Reach::Scoped && expected == Some("forbidden");
            match expected {
                Some(_) if either => assert!(
                    got.status == 403
                        && matches!(got.error_type(), Some("forbidden" | "out_of_scope")),
                    "{who} {operation} ({path}): {got:?}"
                ),
                Some(kind) => {
                    let status = if kind.contains("token") { 401 } else { 403 };
                    assert_eq!(
                        (got.status, got.error_type()),
                        (status, Some(kind)),
                        "{who} {operation} ({path}): {got:?}"
                    );
                    assert!(
                        got.body["error"]["message"].as_str().is_some(),
                        "{who} {operation}: the JSON error body: {got:?}"
                    );
                }
                // Past the token, role and scope checks: what follows is
                // the route's own answer (the setup's lease and batch are
                // root's, so another principal's use is `not_owner`).
                None => assert!(
                    !matches!(got.status, 401 | 403) || got.error_type() == Some("not_owner"),
                    "{who} {operation} ({path}) must be let in: {got:?}"
                ),
            }
            assert!(got.status < 500, "{who} {operation}: {got:?}");
        }
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
    // Every file is scanned for the secret (not only up to the first that
    // holds the name).
    let mut name_seen = false;
    for file in std::fs::read_dir(s.data_dir()).unwrap() {
        let path = file.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "only a hash of the secret is stored: {path:?} holds it"
        );
        name_seen |= bytes.windows(6).any(|w| w == b"ci-bot");
    }
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
