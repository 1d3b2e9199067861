//! Consumer data containers: registered, read back and listed with their
//! secrets left out, on both backends; every mistake a 4xx.

use crate::harness::Server;
use crate::on_every_backend;
use reqwest::Method;
use serde_json::{json, Value};

on_every_backend!(
    containers_are_registered_replaced_and_listed_without_their_secrets,
    container_mistakes_are_refused,
);

async fn put(server: &Server, name: &str, body: Value) -> crate::raw::Answer {
    server
        .client
        .send(Method::PUT, &format!("/v1/containers/{name}"), Some(&body))
        .await
        .unwrap()
}

async fn containers_are_registered_replaced_and_listed_without_their_secrets(server: Server) {
    let secret = "s3cr3t-pa55";
    let url = format!("postgres://hydrator:{secret}@aurora.internal:5432/analytics?sslmode=require&password={secret}");
    let created = put(
        &server,
        "aurora-analytics",
        json!({ "kind": "postgres", "url": url }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["url"],
        "postgres://hydrator:***@aurora.internal:5432/analytics?sslmode=require&password=***"
    );
    // sqlx decodes a parameter's key: `pass%77ord` is its password.
    let encoded = put(
        &server,
        "aurora-encoded",
        json!({ "kind": "postgres",
                "url": format!("postgres://aurora.internal/analytics?user=u&pass%77ord={secret}&sslpassword={secret}") }),
    )
    .await;
    assert_eq!(encoded.status, 201, "{}", encoded.body);
    assert_eq!(
        encoded.body["url"],
        "postgres://aurora.internal/analytics?user=u&pass%77ord=***&sslpassword=***"
    );
    let by_env = put(
        &server,
        "aurora-env",
        json!({ "kind": "postgres", "url": "env:AURORA_URL" }),
    )
    .await;
    assert_eq!(by_env.status, 201, "{}", by_env.body);
    assert_eq!(by_env.body["url"], "env:AURORA_URL");
    let glue = put(
        &server,
        "athena",
        json!({ "kind": "glue", "database": "consumer_views" }),
    )
    .await;
    assert_eq!(glue.status, 201, "{}", glue.body);
    assert_eq!(
        (glue.body["kind"].clone(), glue.body["database"].clone()),
        (json!("glue"), json!("consumer_views"))
    );

    // Replacing keeps the creation time and answers 200.
    let replaced = put(
        &server,
        "athena",
        json!({ "kind": "glue", "database": "consumer_views_v2" }),
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.body["created_at"], glue.body["created_at"]);
    assert_eq!(replaced.body["database"], "consumer_views_v2");

    let one = server
        .client
        .send(Method::GET, "/v1/containers/aurora-analytics", None)
        .await
        .unwrap();
    assert_eq!(one.status, 200);
    assert_eq!(one.body, created.body);
    let mut names = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = server
            .client
            .send(Method::GET, &format!("/v1/containers{query}"), None)
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        for c in page.body["containers"].as_array().unwrap() {
            names.push(c["name"].as_str().unwrap().to_owned());
        }
        match page.body["next_after"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["athena", "aurora-analytics", "aurora-encoded", "aurora-env"]
    );
    // The password is in no answer and no log line.
    let listed = server
        .client
        .send(Method::GET, "/v1/containers", None)
        .await
        .unwrap();
    assert!(!listed.body.to_string().contains(secret));
    assert!(!server.log_text().contains(secret));
    let events = server
        .client
        .send(Method::GET, "/v1/events", None)
        .await
        .unwrap();
    assert!(!events.body.to_string().contains(secret));
}

async fn container_mistakes_are_refused(server: Server) {
    let cases = [
        ("no url", json!({ "kind": "postgres" }), 422),
        (
            "a database on postgres",
            json!({ "kind": "postgres", "url": "postgres://h/db", "database": "x" }),
            422,
        ),
        (
            "not a postgres url",
            json!({ "kind": "postgres", "url": "mysql://h/db" }),
            422,
        ),
        (
            "an empty env reference",
            json!({ "kind": "postgres", "url": "env:" }),
            422,
        ),
        (
            "a bad env name",
            json!({ "kind": "postgres", "url": "env:NOT-A-VAR" }),
            422,
        ),
        ("no database", json!({ "kind": "glue" }), 422),
        (
            "an upper-case Glue database",
            json!({ "kind": "glue", "database": "Views" }),
            422,
        ),
        (
            "an unknown kind",
            json!({ "kind": "redshift", "url": "postgres://h/db" }),
            422,
        ),
        (
            "an unknown field",
            json!({ "kind": "glue", "database": "v", "color": "red" }),
            422,
        ),
    ];
    for (what, body, status) in cases {
        let answer = put(&server, "c1", body).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert!(answer.error_type().is_some(), "{what}: {}", answer.body);
    }
    let bad_name = put(
        &server,
        "no.dots",
        json!({ "kind": "glue", "database": "v" }),
    )
    .await;
    assert_eq!(
        (bad_name.status, bad_name.error_type()),
        (400, Some("invalid_container_name"))
    );
    let missing = server
        .client
        .send(Method::GET, "/v1/containers/nope", None)
        .await
        .unwrap();
    assert_eq!(
        (missing.status, missing.error_type()),
        (404, Some("container_not_found"))
    );
    let malformed = server
        .client
        .send(
            Method::PUT,
            "/v1/containers/c1",
            Some(&json!("not an object")),
        )
        .await
        .unwrap();
    assert!((400..500).contains(&malformed.status), "{}", malformed.body);
}

/// Only an admin registers containers; every role reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_register_containers() {
    let server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.client_with(&server.create_token("admin", "admin", &[], &[]));
    let operator = server.client_with(&server.create_token("ops", "operator", &[], &[]));
    let body = json!({ "kind": "glue", "database": "views" });
    let refused = operator
        .send(Method::PUT, "/v1/containers/athena", Some(&body))
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    let created = admin
        .send(Method::PUT, "/v1/containers/athena", Some(&body))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let read = operator
        .send(Method::GET, "/v1/containers/athena", None)
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.body);
}

/// A container whose `env:VAR` is not set in sluice's environment cannot
/// be reached until someone sets it: a remap there is refused (409, not
/// a 503 that clients retry), naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_in_a_container_whose_variable_is_unset_is_refused_naming_it() {
    let server = Server::sqlite().await;
    let var = "SLUICE_IT_NEVER_SET_URL";
    let created = put(
        &server,
        "aurora-unset",
        json!({ "kind": "postgres", "url": format!("env:{var}") }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let refused = server
        .client
        .send(
            Method::POST,
            "/v1/views/aurora-unset/orders/remap",
            Some(&json!({ "target": "orders_v1", "reason": "first" })),
        )
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.error_type()),
        (409, Some("remap_refused")),
        "{}",
        refused.body
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(var),
        "{}",
        refused.body
    );
}
