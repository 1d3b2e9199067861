//! Every error a user can cause is a 4xx with the JSON error body
//! `{"error":{"type","message"}}`, never a 5xx, and changes nothing.

use crate::harness::Server;
use crate::leases::{read, table, write};
use crate::on_every_backend;
use crate::raw::{Acquire, Answer, Client, Lease};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const ORDERS: &str = "sales.orders";
const UNKNOWN_LEASE: &str = "0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11";

/// Assert `answer` is the JSON error body with this status and type and a
/// non-empty message.
#[track_caller]
pub(crate) fn assert_error(what: &str, answer: &Answer, status: u16, kind: &str) {
    assert_eq!(
        (answer.status, answer.error_type()),
        (status, Some(kind)),
        "{what}: {answer:?}"
    );
    let message = answer
        .body
        .pointer("/error/message")
        .and_then(Value::as_str);
    assert!(
        message.is_some_and(|m| !m.trim().is_empty()),
        "{what}: the error has no message: {answer:?}"
    );
}

/// A request with a raw body and an optional `content-type`, answered as
/// status and JSON body (or the body's text as a JSON string).
async fn raw(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Result<Answer> {
    let mut request = http.request(method, format!("{base}{path}")).body(body);
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    answer_of(request.send().await?).await
}

/// A response as its status and JSON body (or the body's text as a JSON
/// string), for a request not sent through `raw::Client`.
pub(crate) async fn answer_of(response: reqwest::Response) -> reqwest::Result<Answer> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer { status, body })
}

async fn send_raw(
    s: &Server,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    raw(
        &reqwest::Client::new(),
        &s.url,
        method,
        path,
        content_type,
        body,
    )
    .await
    .unwrap()
}

pub(crate) async fn send(c: &Client, method: Method, path: &str, body: Option<Value>) -> Answer {
    c.send(method, path, body.as_ref()).await.unwrap()
}

/// A valid acquire body with `changes` merged in (`null` removes a field).
fn acquire_body(changes: Value) -> Value {
    with(
        &json!({ "mode": "read", "holder": "hydrate", "ttl_seconds": 60 }),
        changes,
    )
}

/// `body` with `changes` merged in (`null` removes a field).
pub(crate) fn with(body: &Value, changes: Value) -> Value {
    let mut body = body.clone();
    for (key, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body
}

fn acquire_path(table: &str) -> String {
    format!("/v1/tables/{table}/leases")
}

async fn granted(c: &Client, table: &str, ask: &Acquire) -> Lease {
    let answer = c.acquire(table, ask).await.unwrap();
    assert_eq!(answer.status, 201, "{answer:?}");
    answer.lease().unwrap()
}

/// Nobody holds or waits on `table`, and no lease was ever requested on it.
async fn assert_no_lease_on(c: &Client, table: &str) {
    let view = c.table_leases(table).await.unwrap();
    assert_eq!(view.status, 200, "{view:?}");
    assert_eq!(view.body["holders"], json!([]), "{view:?}");
    assert_eq!(view.body["waiters"], json!([]), "{view:?}");
    let requested = c.all_events(0, Some(table)).await.unwrap();
    assert!(
        requested.iter().all(|e| e["kind"] != "lease_requested"),
        "no lease was requested: {requested:?}"
    );
}

// ---------------------------------------------------------------------
// Request shape: refused before storage is touched (SQLite only).
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_json_body_is_refused_with_400_malformed_json() {
    // Arrange
    let s = Server::sqlite().await;
    table(&s.client, ORDERS, json!({})).await;
    let json = Some("application/json");
    let cases = [
        (
            "truncated acquire",
            Method::POST,
            acquire_path(ORDERS),
            r#"{"mode":"#,
        ),
        ("empty acquire", Method::POST, acquire_path(ORDERS), ""),
        (
            "not JSON at all",
            Method::POST,
            acquire_path(ORDERS),
            "mode=read",
        ),
        (
            "trailing garbage",
            Method::POST,
            acquire_path(ORDERS),
            r#"{"mode":"read","holder":"h","ttl_seconds":60} x"#,
        ),
        (
            "truncated table settings",
            Method::PUT,
            format!("/v1/tables/{ORDERS}"),
            "{",
        ),
        (
            "truncated heartbeat",
            Method::POST,
            format!("/v1/leases/{UNKNOWN_LEASE}/heartbeat"),
            r#"{"token":"#,
        ),
        (
            "truncated revoke",
            Method::POST,
            format!("/v1/leases/{UNKNOWN_LEASE}/revoke"),
            r#"{"reason""#,
        ),
    ];

    for (what, method, path, body) in cases {
        // Act
        let answer = send_raw(&s, method, &path, json, body).await;
        // Assert
        assert_error(what, &answer, 400, "malformed_json");
    }
    assert_no_lease_on(&s.client, ORDERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_json_content_type_is_refused_with_415() {
    // Arrange
    let s = Server::sqlite().await;
    table(&s.client, ORDERS, json!({})).await;
    let body = acquire_body(json!({})).to_string();
    let cases = [
        (
            "acquire, no content-type",
            acquire_path(ORDERS),
            None,
            Method::POST,
        ),
        (
            "acquire, text/plain",
            acquire_path(ORDERS),
            Some("text/plain"),
            Method::POST,
        ),
        (
            "acquire, form",
            acquire_path(ORDERS),
            Some("application/x-www-form-urlencoded"),
            Method::POST,
        ),
        (
            "table settings, no content-type",
            format!("/v1/tables/{ORDERS}"),
            None,
            Method::PUT,
        ),
    ];

    for (what, path, content_type, method) in cases {
        // Act
        let answer = send_raw(&s, method, &path, content_type, body.clone()).await;
        // Assert
        assert_error(what, &answer, 415, "unsupported_media_type");
    }
    assert_no_lease_on(&s.client, ORDERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_body_of_the_wrong_shape_is_refused_with_422_invalid_request() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let cases = [
        ("unknown field", acquire_body(json!({ "colour": "blue" }))),
        (
            "ttl_seconds as a string",
            acquire_body(json!({ "ttl_seconds": "60" })),
        ),
        (
            "ttl_seconds as a float",
            acquire_body(json!({ "ttl_seconds": 1.5 })),
        ),
        (
            "ttl_seconds beyond i64",
            json!({ "mode": "read", "holder": "h", "ttl_seconds": 1e30 }),
        ),
        ("holder as a number", acquire_body(json!({ "holder": 5 }))),
        ("missing mode", acquire_body(json!({ "mode": null }))),
        ("missing holder", acquire_body(json!({ "holder": null }))),
        (
            "missing ttl_seconds",
            acquire_body(json!({ "ttl_seconds": null })),
        ),
        (
            "mode exclusive",
            acquire_body(json!({ "mode": "exclusive" })),
        ),
        ("mode in capitals", acquire_body(json!({ "mode": "READ" }))),
        ("an array", json!([])),
        ("null", Value::Null),
    ];

    for (what, body) in cases {
        // Act
        let answer = send(c, Method::POST, &acquire_path(ORDERS), Some(body)).await;
        // Assert
        assert_error(what, &answer, 422, "invalid_request");
    }
    assert_no_lease_on(c, ORDERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_values_out_of_range_are_refused_with_422_invalid_request() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let cases = [
        ("negative ttl", acquire_body(json!({ "ttl_seconds": -1 }))),
        ("ttl 0", acquire_body(json!({ "ttl_seconds": 0 }))),
        (
            "ttl 10^12",
            acquire_body(json!({ "ttl_seconds": 1_000_000_000_000_i64 })),
        ),
        ("ttl 86401", acquire_body(json!({ "ttl_seconds": 86_401 }))),
        (
            "ttl i64::MIN",
            acquire_body(json!({ "ttl_seconds": i64::MIN })),
        ),
        ("wait -1", acquire_body(json!({ "wait_seconds": -1 }))),
        ("wait 301", acquire_body(json!({ "wait_seconds": 301 }))),
        (
            "wait i64::MAX",
            acquire_body(json!({ "wait_seconds": i64::MAX })),
        ),
        ("empty holder", acquire_body(json!({ "holder": "" }))),
        ("blank holder", acquire_body(json!({ "holder": "   " }))),
        (
            "holder of 300 chars",
            acquire_body(json!({ "holder": "h".repeat(300) })),
        ),
        ("empty purpose", acquire_body(json!({ "purpose": "" }))),
        (
            "purpose of 2000 chars",
            acquire_body(json!({ "purpose": "p".repeat(2000) })),
        ),
        (
            "empty idempotency key",
            acquire_body(json!({ "idempotency_key": "" })),
        ),
        (
            "idempotency key of 300 chars",
            acquire_body(json!({ "idempotency_key": "k".repeat(300) })),
        ),
    ];

    for (what, body) in cases {
        // Act
        let answer = send(c, Method::POST, &acquire_path(ORDERS), Some(body)).await;
        // Assert
        assert_error(what, &answer, 422, "invalid_request");
    }
    assert_no_lease_on(c, ORDERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_table_name_is_refused_with_400_invalid_table_name() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    let long = format!("a.{}", "x".repeat(300));
    let names = [
        "orders", "a..b", "a.b%20c", ".orders", "sales.", "a.b%2Fc", &long,
    ];

    for name in names {
        // Act
        let acquire = send(
            c,
            Method::POST,
            &acquire_path(name),
            Some(acquire_body(json!({}))),
        )
        .await;
        let put = send(
            c,
            Method::PUT,
            &format!("/v1/tables/{name}"),
            Some(json!({})),
        )
        .await;
        let get = send(c, Method::GET, &format!("/v1/tables/{name}"), None).await;
        let leases = send(c, Method::GET, &format!("/v1/tables/{name}/leases"), None).await;
        let events = send(c, Method::GET, &format!("/v1/events?table={name}"), None).await;
        // Assert
        assert_error(
            &format!("acquire on {name}"),
            &acquire,
            400,
            "invalid_table_name",
        );
        assert_error(&format!("PUT {name}"), &put, 400, "invalid_table_name");
        assert_error(&format!("GET {name}"), &get, 400, "invalid_table_name");
        assert_error(
            &format!("leases of {name}"),
            &leases,
            400,
            "invalid_table_name",
        );
        assert_error(
            &format!("events of {name}"),
            &events,
            400,
            "invalid_table_name",
        );
    }
    let listed = send(c, Method::GET, "/v1/tables", None).await;
    assert_eq!(
        listed.body["tables"],
        json!([]),
        "nothing was registered: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_lease_id_is_refused_with_400_invalid_lease_id() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    let ids = ["not-a-uuid", "12345", "0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e1"];

    for id in ids {
        // Act
        let get = send(c, Method::GET, &format!("/v1/leases/{id}"), None).await;
        let heartbeat = send(
            c,
            Method::POST,
            &format!("/v1/leases/{id}/heartbeat"),
            Some(json!({ "token": 1 })),
        )
        .await;
        let release = send(c, Method::DELETE, &format!("/v1/leases/{id}"), None).await;
        let release_with_token =
            send(c, Method::DELETE, &format!("/v1/leases/{id}?token=1"), None).await;
        let revoke = send(
            c,
            Method::POST,
            &format!("/v1/leases/{id}/revoke"),
            Some(json!({ "reason": "operator" })),
        )
        .await;
        // Assert
        assert_error(&format!("GET {id}"), &get, 400, "invalid_lease_id");
        assert_error(
            &format!("heartbeat {id}"),
            &heartbeat,
            400,
            "invalid_lease_id",
        );
        assert_error(&format!("DELETE {id}"), &release, 400, "invalid_lease_id");
        assert_error(
            &format!("DELETE {id}?token=1"),
            &release_with_token,
            400,
            "invalid_lease_id",
        );
        assert_error(&format!("revoke {id}"), &revoke, 400, "invalid_lease_id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_out_of_range_query_is_refused_with_a_4xx() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let cases = [
        ("/v1/tables?limit=0", 422, "invalid_request"),
        ("/v1/tables?limit=1001", 422, "invalid_request"),
        ("/v1/tables?limit=-5", 422, "invalid_request"),
        ("/v1/tables?limit=ten", 400, "invalid_query"),
        (
            "/v1/tables?limit=99999999999999999999",
            400,
            "invalid_query",
        ),
        ("/v1/events?kind=nope", 422, "invalid_request"),
        ("/v1/events?after=-1", 422, "invalid_request"),
        ("/v1/events?after=abc", 400, "invalid_query"),
        ("/v1/events?limit=0", 422, "invalid_request"),
        ("/v1/events?limit=1001", 422, "invalid_request"),
        ("/v1/events?table=bad", 400, "invalid_table_name"),
        ("/v1/events?table=a..b", 400, "invalid_table_name"),
        (
            "/v1/leases/0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11?wait_seconds=-1",
            422,
            "invalid_request",
        ),
        (
            "/v1/leases/0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11?wait_seconds=301",
            422,
            "invalid_request",
        ),
        (
            "/v1/leases/0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11?wait_seconds=soon",
            400,
            "invalid_query",
        ),
    ];

    for (path, status, kind) in cases {
        // Act
        let answer = send(c, Method::GET, path, None).await;
        // Assert
        assert_error(path, &answer, status, kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_refused_with_413_and_the_json_error_body() {
    // Arrange
    let s = Server::sqlite().await;
    table(&s.client, ORDERS, json!({})).await;
    let big = "x".repeat(100 * 1024);
    let cases = [
        (
            "acquire",
            Method::POST,
            acquire_path(ORDERS),
            acquire_body(json!({ "purpose": big })),
        ),
        (
            "table settings",
            Method::PUT,
            format!("/v1/tables/{ORDERS}"),
            json!({ "catalog": big }),
        ),
        (
            "revoke",
            Method::POST,
            format!("/v1/leases/{UNKNOWN_LEASE}/revoke"),
            json!({ "reason": big }),
        ),
    ];

    for (what, method, path, body) in cases {
        // Act
        let answer = send_raw(
            &s,
            method,
            &path,
            Some("application/json"),
            body.to_string(),
        )
        .await;
        // Assert
        assert_error(what, &answer, 413, "payload_too_large");
    }
    assert_no_lease_on(&s.client, ORDERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_404_not_found_in_json() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    // (`/` and `/api` are the dashboard's pages.)
    let cases = [
        (Method::GET, "/nope"),
        (Method::GET, "/ui/nope.js"),
        (Method::GET, "/v2/tables"),
        (Method::GET, "/v1/leases"),
        (Method::GET, "/v1/tables/sales.orders/nope"),
        (Method::POST, "/v1/tables/sales.orders/leases/extra"),
        (
            Method::GET,
            "/v1/leases/0190a0b1-7c3e-7d2a-9f10-4b7e2c9d8e11/nope",
        ),
    ];

    for (method, path) in cases {
        // Act
        let answer = send(c, method.clone(), path, None).await;
        // Assert
        assert_error(&format!("{method} {path}"), &answer, 404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_method_not_allowed_in_json() {
    // Arrange
    let s = Server::sqlite().await;
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let cases = [
        (Method::PATCH, "/v1/tables/sales.orders".to_owned()),
        (Method::DELETE, "/v1/tables/sales.orders".to_owned()),
        (Method::POST, "/v1/tables/sales.orders".to_owned()),
        (Method::DELETE, "/v1/tables".to_owned()),
        (Method::PUT, "/v1/tables/sales.orders/leases".to_owned()),
        (Method::POST, "/v1/events".to_owned()),
        (Method::PUT, format!("/v1/leases/{UNKNOWN_LEASE}")),
        (Method::GET, format!("/v1/leases/{UNKNOWN_LEASE}/heartbeat")),
        (Method::GET, format!("/v1/leases/{UNKNOWN_LEASE}/revoke")),
        (Method::POST, "/healthz".to_owned()),
    ];

    for (method, path) in cases {
        // Act
        let answer = send(c, method.clone(), &path, Some(json!({}))).await;
        // Assert
        assert_error(
            &format!("{method} {path}"),
            &answer,
            405,
            "method_not_allowed",
        );
    }
    let view = c.table_leases(ORDERS).await.unwrap();
    assert_eq!(view.status, 200, "the table is still there: {view:?}");
}

// ---------------------------------------------------------------------
// Errors that involve storage: on SQLite and on PostgreSQL.
// ---------------------------------------------------------------------

on_every_backend!(
    invalid_table_settings_are_refused_with_422_and_register_nothing,
    an_unregistered_table_is_404_table_not_found,
    an_unknown_lease_id_is_404_lease_not_found,
    a_pin_snapshot_id_on_a_write_lease_is_refused_with_422,
    a_stale_token_is_refused_with_409_and_the_lease_is_unchanged,
    a_release_or_heartbeat_without_the_token_of_a_granted_lease_is_400_and_changes_nothing,
    an_expired_lease_is_409_lease_expired,
    a_revoked_lease_is_409_lease_revoked_and_other_ended_leases_name_their_state,
    invalid_heartbeat_and_revoke_bodies_are_refused_with_422_and_change_nothing,
    text_with_a_nul_character_is_never_a_5xx,
    a_tables_page_after_a_name_with_a_nul_character_is_never_a_5xx,
    two_hundred_concurrent_bad_requests_never_get_a_5xx,
    a_body_naming_a_key_twice_is_refused_with_400_and_changes_nothing,
    control_and_bidi_characters_in_holders_runs_and_sources_are_refused,
);

async fn invalid_table_settings_are_refused_with_422_and_register_nothing(s: Server) {
    // Arrange
    let c = &s.client;
    let cases = [
        (
            "deferral -1",
            json!({ "max_compaction_deferral_seconds": -1 }),
        ),
        (
            "deferral 2592001",
            json!({ "max_compaction_deferral_seconds": 2_592_001 }),
        ),
        (
            "deferral 10^15",
            json!({ "max_compaction_deferral_seconds": 1_000_000_000_000_000_i64 }),
        ),
        (
            "deferral as text",
            json!({ "max_compaction_deferral_seconds": "1h" }),
        ),
        ("empty catalog", json!({ "catalog": "" })),
        (
            "catalog with U+202E",
            json!({ "catalog": "lake\u{202e}ekal" }),
        ),
        ("catalog with a newline", json!({ "catalog": "la\nke" })),
        (
            "compaction job with U+202E",
            json!({ "compaction_job": "c\u{202e}x" }),
        ),
        (
            "compaction job of 300 chars",
            json!({ "compaction_job": "j".repeat(300) }),
        ),
        ("unknown field", json!({ "owner": "data-platform" })),
    ];

    for (what, settings) in cases {
        // Act
        let answer = c.put_table(ORDERS, settings).await.unwrap();
        // Assert
        assert_error(what, &answer, 422, "invalid_request");
    }
    let get = send(c, Method::GET, &format!("/v1/tables/{ORDERS}"), None).await;
    assert_error("GET after refused PUTs", &get, 404, "table_not_found");
    assert!(
        c.all_events(0, None).await.unwrap().is_empty(),
        "no event was recorded"
    );
}

async fn an_unregistered_table_is_404_table_not_found(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;

    // Act
    let acquire = c.acquire("sales.unknown", &read("hydrate")).await.unwrap();
    let write_acquire = c.acquire("sales.unknown", &write("compact")).await.unwrap();
    let long_poll = c
        .acquire(
            "sales.unknown",
            &Acquire {
                wait_seconds: 5,
                ..read("hydrate")
            },
        )
        .await
        .unwrap();
    let get = send(c, Method::GET, "/v1/tables/sales.unknown", None).await;
    let leases = c.table_leases("sales.unknown").await.unwrap();

    // Assert
    assert_error("acquire (read)", &acquire, 404, "table_not_found");
    assert_error("acquire (write)", &write_acquire, 404, "table_not_found");
    assert_error("acquire (long-poll)", &long_poll, 404, "table_not_found");
    assert_error("GET table", &get, 404, "table_not_found");
    assert_error("GET table leases", &leases, 404, "table_not_found");
    let listed = send(c, Method::GET, "/v1/tables", None).await;
    let names: Vec<&str> = listed.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ORDERS], "a miss registers nothing");
}

async fn an_unknown_lease_id_is_404_lease_not_found(s: Server) {
    // Arrange: a table with live leases, so lookups run against real rows.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let held = granted(c, ORDERS, &write("compact")).await;
    let id = UNKNOWN_LEASE;

    // Act
    let get = c.lease(id, 0).await.unwrap();
    let long_poll = c.lease(id, 1).await.unwrap();
    let heartbeat = c.heartbeat(id, Some(1)).await.unwrap();
    let heartbeat_without_token = c.heartbeat(id, None).await.unwrap();
    let release = c.release(id, held.token).await.unwrap();
    let cancel = c.release(id, None).await.unwrap();
    let revoke = c.revoke(id, "operator").await.unwrap();

    // Assert
    assert_error("GET", &get, 404, "lease_not_found");
    assert_error("GET long-poll", &long_poll, 404, "lease_not_found");
    assert_error("heartbeat", &heartbeat, 404, "lease_not_found");
    assert_error(
        "heartbeat without token",
        &heartbeat_without_token,
        404,
        "lease_not_found",
    );
    assert_error("DELETE with token", &release, 404, "lease_not_found");
    assert_error("DELETE without token", &cancel, 404, "lease_not_found");
    assert_error("revoke", &revoke, 404, "lease_not_found");
    let still = c.lease(&held.lease_id, 0).await.unwrap().lease().unwrap();
    assert_eq!((still.state.as_str(), still.token), ("granted", held.token));
}

async fn a_pin_snapshot_id_on_a_write_lease_is_refused_with_422(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let body = json!({
        "mode": "write", "holder": "compact", "ttl_seconds": 60, "pin_snapshot_id": 42,
    });

    // Act
    let answer = send(c, Method::POST, &acquire_path(ORDERS), Some(body)).await;

    // Assert
    assert_error("pin on a write lease", &answer, 422, "invalid_request");
    assert_no_lease_on(c, ORDERS).await;
    let reader = acquire_body(json!({ "pin_snapshot_id": 42 }));
    let pinned = send(c, Method::POST, &acquire_path(ORDERS), Some(reader)).await;
    assert_eq!(pinned.status, 201, "a reader may pin: {pinned:?}");
    assert_eq!(pinned.body["pin_snapshot_id"], 42);
}

async fn a_stale_token_is_refused_with_409_and_the_lease_is_unchanged(s: Server) {
    // Arrange: A held and released; B holds now; C waits behind B.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let a = granted(c, ORDERS, &write("a")).await;
    assert_eq!(c.release(&a.lease_id, a.token).await.unwrap().status, 200);
    let b = granted(c, ORDERS, &write("b")).await;
    let waiter = c
        .acquire(ORDERS, &read("c"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(waiter.state, "waiting");
    let b_before = c.lease(&b.lease_id, 0).await.unwrap();
    let waiter_before = c.lease(&waiter.lease_id, 0).await.unwrap();
    let b_token = b.token.unwrap();
    let raw_path = format!("/v1/leases/{}?token=abc", b.lease_id);

    // Act
    let old_release = c.release(&b.lease_id, a.token).await.unwrap();
    let future_release = c.release(&b.lease_id, Some(b_token + 1)).await.unwrap();
    let old_heartbeat = c.heartbeat(&b.lease_id, a.token).await.unwrap();
    let future_heartbeat = c.heartbeat(&b.lease_id, Some(b_token + 1)).await.unwrap();
    let waiter_release = c.release(&waiter.lease_id, Some(b_token)).await.unwrap();
    let waiter_heartbeat = c.heartbeat(&waiter.lease_id, Some(b_token)).await.unwrap();
    let repeated_by_other = c.release(&a.lease_id, Some(b_token)).await.unwrap();
    let not_a_number = send(c, Method::DELETE, &raw_path, None).await;

    // Assert
    assert_error(
        "release with the old token",
        &old_release,
        409,
        "stale_token",
    );
    assert_error(
        "release with a future token",
        &future_release,
        409,
        "stale_token",
    );
    assert_error(
        "heartbeat with the old token",
        &old_heartbeat,
        409,
        "stale_token",
    );
    assert_error(
        "heartbeat with a future token",
        &future_heartbeat,
        409,
        "stale_token",
    );
    assert_error(
        "release of a waiter with a token",
        &waiter_release,
        409,
        "stale_token",
    );
    assert_error(
        "heartbeat of a waiter with a token",
        &waiter_heartbeat,
        409,
        "stale_token",
    );
    assert_error(
        "re-release of A with B's token",
        &repeated_by_other,
        409,
        "stale_token",
    );
    assert_error("DELETE ?token=abc", &not_a_number, 400, "invalid_query");
    let b_after = c.lease(&b.lease_id, 0).await.unwrap();
    assert_eq!(b_after.body, b_before.body, "B is untouched");
    let waiter_after = c.lease(&waiter.lease_id, 0).await.unwrap();
    assert_eq!(
        waiter_after.body, waiter_before.body,
        "the waiter is untouched"
    );
    let a_after = c.lease(&a.lease_id, 0).await.unwrap();
    assert_eq!(a_after.body["state"], "released");
    assert_eq!(
        c.release(&b.lease_id, b.token).await.unwrap().status,
        200,
        "B's own token works"
    );
}

async fn a_release_or_heartbeat_without_the_token_of_a_granted_lease_is_400_and_changes_nothing(
    s: Server,
) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let held = granted(c, ORDERS, &read("hydrate")).await;
    let before = c.lease(&held.lease_id, 0).await.unwrap();

    // Act
    let release = c.release(&held.lease_id, None).await.unwrap();
    let heartbeat = c.heartbeat(&held.lease_id, None).await.unwrap();
    let empty_heartbeat = send(
        c,
        Method::POST,
        &format!("/v1/leases/{}/heartbeat", held.lease_id),
        Some(json!({ "ttl_seconds": 3600 })),
    )
    .await;

    // Assert
    assert_error("release without token", &release, 400, "token_required");
    assert_error("heartbeat without token", &heartbeat, 400, "token_required");
    assert_error(
        "heartbeat with only a ttl",
        &empty_heartbeat,
        400,
        "token_required",
    );
    let after = c.lease(&held.lease_id, 0).await.unwrap();
    assert_eq!(after.body, before.body, "the lease is untouched");
}

async fn an_expired_lease_is_409_lease_expired(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let short = granted(
        c,
        ORDERS,
        &Acquire {
            ttl_seconds: 1,
            ..write("crashed-job")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Act
    let heartbeat = c.heartbeat(&short.lease_id, short.token).await.unwrap();
    let release = c.release(&short.lease_id, short.token).await.unwrap();
    let revoke = c.revoke(&short.lease_id, "too late").await.unwrap();

    // Assert
    assert_error("heartbeat", &heartbeat, 409, "lease_expired");
    assert_error("release", &release, 409, "lease_expired");
    assert_error("revoke", &revoke, 409, "lease_expired");
    let now = c.lease(&short.lease_id, 0).await.unwrap();
    assert_eq!(
        (now.status, now.body["state"].as_str()),
        (200, Some("expired"))
    );
}

async fn a_revoked_lease_is_409_lease_revoked_and_other_ended_leases_name_their_state(s: Server) {
    // Arrange: one revoked, one released, one cancelled while waiting.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let revoked = granted(c, ORDERS, &write("stuck")).await;
    assert_eq!(
        c.revoke(&revoked.lease_id, "stuck for 3 h")
            .await
            .unwrap()
            .status,
        200
    );
    let released = granted(c, ORDERS, &write("done")).await;
    let waiter = c
        .acquire(ORDERS, &read("gives-up"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(waiter.state, "waiting");
    assert_eq!(c.release(&waiter.lease_id, None).await.unwrap().status, 200);
    assert_eq!(
        c.release(&released.lease_id, released.token)
            .await
            .unwrap()
            .status,
        200
    );

    // Act
    let revoked_heartbeat = c.heartbeat(&revoked.lease_id, revoked.token).await.unwrap();
    let revoked_release = c.release(&revoked.lease_id, revoked.token).await.unwrap();
    let revoked_cancel = c.release(&revoked.lease_id, None).await.unwrap();
    let released_heartbeat = c
        .heartbeat(&released.lease_id, released.token)
        .await
        .unwrap();
    let released_revoke = c.revoke(&released.lease_id, "late").await.unwrap();
    let cancelled_heartbeat = c.heartbeat(&waiter.lease_id, None).await.unwrap();
    let cancelled_revoke = c.revoke(&waiter.lease_id, "late").await.unwrap();

    // Assert
    assert_error(
        "heartbeat of revoked",
        &revoked_heartbeat,
        409,
        "lease_revoked",
    );
    assert_error("release of revoked", &revoked_release, 409, "lease_revoked");
    assert_error("cancel of revoked", &revoked_cancel, 409, "lease_revoked");
    assert_error(
        "heartbeat of released",
        &released_heartbeat,
        409,
        "lease_released",
    );
    assert_error(
        "revoke of released",
        &released_revoke,
        409,
        "lease_released",
    );
    assert_error(
        "heartbeat of cancelled",
        &cancelled_heartbeat,
        409,
        "lease_cancelled",
    );
    assert_error(
        "revoke of cancelled",
        &cancelled_revoke,
        409,
        "lease_cancelled",
    );
    let view = c.table_leases(ORDERS).await.unwrap();
    assert_eq!(
        (view.body["holders"].clone(), view.body["waiters"].clone()),
        (json!([]), json!([]))
    );
}

async fn invalid_heartbeat_and_revoke_bodies_are_refused_with_422_and_change_nothing(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let held = granted(c, ORDERS, &write("compact")).await;
    let before = c.lease(&held.lease_id, 0).await.unwrap();
    let heartbeat = format!("/v1/leases/{}/heartbeat", held.lease_id);
    let revoke = format!("/v1/leases/{}/revoke", held.lease_id);
    let cases = [
        (
            "heartbeat ttl 0",
            &heartbeat,
            json!({ "token": held.token, "ttl_seconds": 0 }),
        ),
        (
            "heartbeat ttl -1",
            &heartbeat,
            json!({ "token": held.token, "ttl_seconds": -1 }),
        ),
        (
            "heartbeat ttl 86401",
            &heartbeat,
            json!({ "token": held.token, "ttl_seconds": 86_401 }),
        ),
        (
            "heartbeat token as text",
            &heartbeat,
            json!({ "token": "1" }),
        ),
        (
            "heartbeat unknown field",
            &heartbeat,
            json!({ "token": held.token, "extend": true }),
        ),
        ("revoke with empty reason", &revoke, json!({ "reason": "" })),
        (
            "revoke with blank reason",
            &revoke,
            json!({ "reason": "  " }),
        ),
        (
            "revoke with reason of 2000 chars",
            &revoke,
            json!({ "reason": "r".repeat(2000) }),
        ),
        ("revoke without reason", &revoke, json!({})),
        (
            "revoke with unknown field",
            &revoke,
            json!({ "reason": "x", "force": true }),
        ),
    ];

    for (what, path, body) in cases {
        // Act
        let answer = send(c, Method::POST, path, Some(body)).await;
        // Assert
        assert_error(what, &answer, 422, "invalid_request");
    }
    let after = c.lease(&held.lease_id, 0).await.unwrap();
    assert_eq!(after.body, before.body, "the lease is untouched");
}

/// Why `answer` is not acceptable for a request a user may send: a 5xx, or
/// a 4xx without the JSON error body.
fn unacceptable(what: &str, answer: &Answer) -> Option<String> {
    let message = answer
        .body
        .pointer("/error/message")
        .and_then(Value::as_str);
    let is_error_body = answer.error_type().is_some_and(|t| !t.is_empty())
        && message.is_some_and(|m| !m.is_empty());
    let ok = (200..300).contains(&answer.status)
        || ((400..500).contains(&answer.status) && is_error_body);
    (!ok).then(|| format!("{what}: {} {}", answer.status, answer.body))
}

async fn text_with_a_nul_character_is_never_a_5xx(s: Server) {
    // Arrange: a NUL is valid JSON (`\u0000`) but PostgreSQL text cannot hold it.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let held = granted(c, ORDERS, &read("hydrate")).await;
    let nul = "a\u{0}b";
    let acquires = [
        ("holder", acquire_body(json!({ "holder": nul }))),
        ("purpose", acquire_body(json!({ "purpose": nul }))),
        (
            "idempotency_key",
            acquire_body(json!({ "idempotency_key": nul })),
        ),
    ];
    let settings = [
        ("catalog", json!({ "catalog": nul })),
        ("compaction_job", json!({ "compaction_job": nul })),
    ];

    // Act
    let mut answers = Vec::new();
    for (field, body) in acquires {
        let answer = send(c, Method::POST, &acquire_path(ORDERS), Some(body)).await;
        answers.push((format!("acquire with a NUL in {field}"), answer));
    }
    for (field, body) in settings {
        let answer = c.put_table("sales.nul", body).await.unwrap();
        answers.push((format!("PUT table with a NUL in {field}"), answer));
    }
    let revoke = c.revoke(&held.lease_id, nul).await.unwrap();
    answers.push(("revoke with a NUL in reason".to_owned(), revoke));

    // Assert
    let failures: Vec<String> = answers
        .iter()
        .filter_map(|(what, answer)| unacceptable(what, answer))
        .collect();
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let ready = send(c, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
}

async fn a_tables_page_after_a_name_with_a_nul_character_is_never_a_5xx(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;

    let mut failures = Vec::new();
    for path in [
        "/v1/tables?after=%00",
        "/v1/tables?after=sales.a%00b&limit=10",
    ] {
        // Act
        let answer = send(c, Method::GET, path, None).await;
        // Assert
        failures.extend(unacceptable(path, &answer));
    }
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One bad request of kind `i % 20`, answered.
async fn bad_request(
    i: usize,
    http: &reqwest::Client,
    base: &str,
    held: &Lease,
    revoked: &Lease,
) -> (String, reqwest::Result<Answer>) {
    let json_type = Some("application/json");
    let valid = acquire_body(json!({})).to_string();
    let (method, path, content_type, body): (Method, String, Option<&str>, String) = match i % 20 {
        0 => (
            Method::POST,
            acquire_path(ORDERS),
            json_type,
            r#"{"mode":"#.into(),
        ),
        1 => (Method::POST, acquire_path(ORDERS), None, valid),
        2 => (
            Method::POST,
            acquire_path("sales.unknown"),
            json_type,
            valid,
        ),
        3 => (Method::POST, acquire_path("a..b"), json_type, valid),
        4 => (
            Method::GET,
            format!("/v1/leases/{UNKNOWN_LEASE}"),
            None,
            String::new(),
        ),
        5 => (
            Method::POST,
            format!("/v1/leases/{UNKNOWN_LEASE}/heartbeat"),
            json_type,
            r#"{"token":1}"#.into(),
        ),
        6 => (
            Method::DELETE,
            format!("/v1/leases/{UNKNOWN_LEASE}?token=1"),
            None,
            String::new(),
        ),
        7 => (
            Method::POST,
            format!("/v1/leases/{UNKNOWN_LEASE}/revoke"),
            json_type,
            r#"{"reason":"x"}"#.into(),
        ),
        8 => {
            let stale = held.token.unwrap() + 1 + i as i64;
            (
                Method::DELETE,
                format!("/v1/leases/{}?token={stale}", held.lease_id),
                None,
                String::new(),
            )
        }
        9 => {
            let stale = held.token.unwrap() + 1 + i as i64;
            (
                Method::POST,
                format!("/v1/leases/{}/heartbeat", held.lease_id),
                json_type,
                json!({ "token": stale }).to_string(),
            )
        }
        10 => (
            Method::GET,
            "/v1/leases/not-a-uuid".into(),
            None,
            String::new(),
        ),
        11 => (
            Method::GET,
            "/v1/tables?limit=0".into(),
            None,
            String::new(),
        ),
        12 => (
            Method::GET,
            "/v1/events?kind=nope".into(),
            None,
            String::new(),
        ),
        13 => (Method::GET, "/v1/nope".into(), None, String::new()),
        14 => (
            Method::PATCH,
            format!("/v1/tables/{ORDERS}"),
            json_type,
            "{}".into(),
        ),
        15 => (
            Method::POST,
            acquire_path(ORDERS),
            json_type,
            acquire_body(json!({ "ttl_seconds": 0 })).to_string(),
        ),
        16 => (
            Method::POST,
            acquire_path(ORDERS),
            json_type,
            json!({ "mode": "write", "holder": "w", "ttl_seconds": 60, "pin_snapshot_id": 7 })
                .to_string(),
        ),
        17 => (
            Method::DELETE,
            format!("/v1/leases/{}", held.lease_id),
            None,
            String::new(),
        ),
        18 => (
            Method::POST,
            format!("/v1/leases/{}/heartbeat", revoked.lease_id),
            json_type,
            json!({ "token": revoked.token }).to_string(),
        ),
        _ => (
            Method::PUT,
            format!("/v1/tables/{ORDERS}"),
            json_type,
            json!({ "max_compaction_deferral_seconds": -1 }).to_string(),
        ),
    };
    let what = format!("#{i}: {method} {path}");
    (
        what,
        raw(http, base, method, &path, content_type, body).await,
    )
}

async fn two_hundred_concurrent_bad_requests_never_get_a_5xx(s: Server) {
    // Arrange: a holder whose token the bad requests get wrong, and a revoked lease.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let held = granted(c, ORDERS, &read("hydrate")).await;
    let revoked = granted(c, ORDERS, &read("revoked")).await;
    assert_eq!(
        c.revoke(&revoked.lease_id, "operator")
            .await
            .unwrap()
            .status,
        200
    );
    let before = c.lease(&held.lease_id, 0).await.unwrap();
    let http = reqwest::Client::new();

    // Act
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (http, base) = (http.clone(), s.url.clone());
            let (held, revoked) = (held.clone(), revoked.clone());
            tokio::spawn(async move { bad_request(i, &http, &base, &held, &revoked).await })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        let (what, answer) = task.await.unwrap();
        match answer {
            Err(e) => failures.push(format!("{what}: no answer: {e}")),
            Ok(a) if (200..300).contains(&a.status) => {
                failures.push(format!("{what}: accepted: {} {}", a.status, a.body))
            }
            Ok(a) => failures.extend(unacceptable(&what, &a)),
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let after = c.lease(&held.lease_id, 0).await.unwrap();
    assert_eq!(after.body, before.body, "the holder is untouched");
    let view = c.table_leases(ORDERS).await.unwrap();
    assert_eq!(
        view.body["holders"].as_array().unwrap().len(),
        1,
        "{view:?}"
    );
    assert_eq!(view.body["waiters"], json!([]), "{view:?}");
    let ready = send(c, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
}

#[tokio::test]
async fn a_body_that_is_json_but_not_an_object_is_refused() {
    let s = Server::sqlite().await;
    s.client
        .put_table("sales.orders", serde_json::json!({}))
        .await
        .unwrap();
    for (path, body) in [
        (
            "/v1/tables/sales.orders/leases",
            serde_json::json!(["read", "me", 60]),
        ),
        ("/v1/tables/sales.orders", serde_json::json!([null, null])),
        ("/v1/tables/sales.orders", serde_json::json!(7)),
    ] {
        let method = if path.ends_with("leases") {
            reqwest::Method::POST
        } else {
            reqwest::Method::PUT
        };
        let answer = s.client.send(method, path, Some(&body)).await.unwrap();
        assert_eq!(
            (answer.status, answer.error_type()),
            (422, Some("invalid_request")),
            "{path} {body}: {answer:?}"
        );
    }
    let view = s.client.table_leases("sales.orders").await.unwrap();
    assert!(
        view.body["holders"].as_array().unwrap().is_empty(),
        "no lease was granted"
    );
}

async fn a_body_naming_a_key_twice_is_refused_with_400_and_changes_nothing(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let acquire = r#"{"mode":"read","holder":"h","ttl_seconds":60,"mode":"write"}"#;
    let nested = r#"{"table":"sales.orders","source":{"dms":{"task":"a","task":"b"}}}"#;

    // Act
    let lease = send_raw(
        &s,
        Method::POST,
        &acquire_path(ORDERS),
        Some("application/json"),
        acquire,
    )
    .await;
    let stream = send_raw(
        &s,
        Method::PUT,
        "/v1/streams/sales.orders_cdc",
        Some("application/json"),
        nested,
    )
    .await;

    // Assert: 400 naming the key; no lease, no stream.
    assert_error("a lease asked twice over", &lease, 400, "duplicate_key");
    assert!(
        lease.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`mode`"),
        "{lease:?}"
    );
    assert_error("a nested duplicate", &stream, 400, "duplicate_key");
    let view = c.table_leases(ORDERS).await.unwrap();
    assert_eq!(view.body["waiters"], json!([]));
    assert_eq!(view.body["holders"], json!([]));
    let missing = send(c, Method::GET, "/v1/streams/sales.orders_cdc", None).await;
    assert_error("the stream", &missing, 404, "stream_not_found");
}

async fn control_and_bidi_characters_in_holders_runs_and_sources_are_refused(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let stream_path = "/v1/streams/sales.orders_cdc";
    let stream = |source: Value| json!({ "table": ORDERS, "source": source });
    let cases = [
        (
            "holder with U+202E",
            Method::POST,
            acquire_path(ORDERS),
            acquire_body(json!({ "holder": "job\u{202E}txt.exe" })),
        ),
        (
            "holder with U+2066",
            Method::POST,
            acquire_path(ORDERS),
            acquire_body(json!({ "holder": "job\u{2066}x" })),
        ),
        (
            "NUL in a source value",
            Method::PUT,
            stream_path.to_owned(),
            stream(json!({ "task": "a\u{0}b" })),
        ),
        (
            "NUL in a source key",
            Method::PUT,
            stream_path.to_owned(),
            stream(json!({ "ta\u{0}sk": "a" })),
        ),
        (
            "escape in a nested source list",
            Method::PUT,
            stream_path.to_owned(),
            stream(json!({ "files": ["ok", "\u{1b}[31mred"] })),
        ),
    ];

    // Act + Assert
    for (what, method, path, body) in cases {
        let answer = send(c, method, &path, Some(body)).await;
        assert_error(what, &answer, 422, "invalid_request");
    }
    let view = c.table_leases(ORDERS).await.unwrap();
    assert_eq!(view.body["holders"], json!([]), "no lease was made");
    let missing = send(c, Method::GET, stream_path, None).await;
    assert_error("the stream", &missing, 404, "stream_not_found");

    // A run id is a name too.
    let registered = send(
        c,
        Method::PUT,
        stream_path,
        Some(stream(json!({ "kind": "dms" }))),
    )
    .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let open = send(
        c,
        Method::POST,
        "/v1/streams/sales.orders_cdc/batches",
        Some(json!({ "run_id": "jr_\u{202E}1" })),
    )
    .await;
    assert_error("run id with U+202E", &open, 422, "invalid_request");
}
