//! Tables: registration, settings, listing, and who holds or waits.

use crate::harness::Server;
use crate::leases::{read, table, write};
use crate::on_every_backend;
use crate::raw::{Answer, Client};
use reqwest::Method;
use serde_json::{json, Value};

const ORDERS: &str = "sales.orders";

async fn get(c: &Client, path: &str) -> Answer {
    let answer = c.send(Method::GET, path, None).await.unwrap();
    assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
    answer
}

async fn get_table(c: &Client, name: &str) -> Value {
    get(c, &format!("/v1/tables/{name}")).await.body
}

/// The settings part of a table body.
fn settings(body: &Value) -> Value {
    json!({
        "max_compaction_deferral_seconds": body["max_compaction_deferral_seconds"],
        "catalog": body["catalog"],
        "compaction_job": body["compaction_job"],
    })
}

/// Walk `GET /v1/tables` with `limit`, returning the pages' names.
async fn pages(c: &Client, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/tables?limit={limit}&after={a}"),
            None => format!("/v1/tables?limit={limit}"),
        };
        let page = get(c, &path).await.body;
        let names: Vec<String> = page["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["table"].as_str().unwrap().to_owned())
            .collect();
        assert!(names.len() <= limit, "{path}: more than {limit}: {page}");
        pages.push(names);
        match page["next_after"].as_str() {
            Some(next) => {
                assert!(pages.len() <= 20, "paging does not end: {pages:?}");
                after = Some(next.to_owned());
            }
            None => {
                assert!(page["next_after"].is_null(), "{page}");
                return pages;
            }
        }
    }
}

on_every_backend!(
    a_table_is_registered_with_201_and_its_settings_replaced_with_200,
    the_table_shows_how_many_hold_and_wait,
    tables_are_listed_by_name_a_page_at_a_time,
    a_settings_change_is_recorded_as_a_table_settings_changed_event,
    lowering_the_deferral_to_zero_makes_a_new_reader_queue_behind_a_waiting_writer_at_once,
    names_that_differ_only_in_case_are_one_table_to_glue_so_the_second_is_refused,
);

async fn a_table_is_registered_with_201_and_its_settings_replaced_with_200(s: Server) {
    // Arrange
    let c = &s.client;
    let custom = json!({
        "max_compaction_deferral_seconds": 600,
        "catalog": "glue-prod",
        "compaction_job": "compact-sales-orders",
    });

    // Act
    let created = c.put_table(ORDERS, json!({})).await.unwrap();
    let replaced = c.put_table(ORDERS, custom.clone()).await.unwrap();
    let repeated = c.put_table(ORDERS, custom.clone()).await.unwrap();
    let reset = c
        .put_table(ORDERS, json!({ "max_compaction_deferral_seconds": 0 }))
        .await
        .unwrap();

    // Assert
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["table"], ORDERS);
    assert_eq!(
        settings(&created.body),
        json!({ "max_compaction_deferral_seconds": 86_400, "catalog": null, "compaction_job": null }),
        "the defaults: {created:?}"
    );
    assert_eq!(
        (
            &created.body["last_token"],
            &created.body["holders"],
            &created.body["waiters"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(settings(&replaced.body), custom, "echoed: {replaced:?}");
    assert_eq!(
        replaced.body["created_at"], created.body["created_at"],
        "created once"
    );
    assert_eq!(repeated.status, 200, "{repeated:?}");
    assert_eq!(settings(&repeated.body), custom);
    assert_eq!(reset.status, 200, "{reset:?}");
    assert_eq!(
        settings(&reset.body),
        json!({ "max_compaction_deferral_seconds": 0, "catalog": null, "compaction_job": null }),
        "a PUT replaces every setting: {reset:?}"
    );
    let shown = get_table(c, ORDERS).await;
    assert_eq!(
        settings(&shown),
        settings(&reset.body),
        "GET shows the last PUT"
    );
    assert_eq!(shown["created_at"], created.body["created_at"]);
}

async fn the_table_shows_how_many_hold_and_wait(s: Server) {
    // Arrange: two readers hold, two writers wait.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let r1 = c
        .acquire(ORDERS, &read("hydrate-1"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let r2 = c
        .acquire(ORDERS, &read("hydrate-2"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w = c
        .acquire(ORDERS, &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w2 = c
        .acquire(ORDERS, &write("compact-2"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(
        (
            r1.state.as_str(),
            r2.state.as_str(),
            w.state.as_str(),
            w2.state.as_str()
        ),
        ("granted", "granted", "waiting", "waiting")
    );

    // Act
    let busy = get_table(c, ORDERS).await;
    let listed_busy = get(c, "/v1/tables").await.body;
    c.release(&r1.lease_id, r1.token).await.unwrap();
    c.release(&r2.lease_id, r2.token).await.unwrap();
    let writer_holds = get_table(c, ORDERS).await;
    c.release(&w2.lease_id, None).await.unwrap();
    let w = c.lease(&w.lease_id, 0).await.unwrap().lease().unwrap();
    c.release(&w.lease_id, w.token).await.unwrap();
    let idle = get_table(c, ORDERS).await;

    // Assert
    assert_eq!(
        (&busy["holders"], &busy["waiters"]),
        (&json!(2), &json!(2)),
        "{busy}"
    );
    assert_eq!(busy["last_token"], 2, "{busy}");
    let listed = &listed_busy["tables"][0];
    assert_eq!(
        (&listed["holders"], &listed["waiters"]),
        (&json!(2), &json!(2)),
        "the list agrees: {listed}"
    );
    assert_eq!(
        (&writer_holds["holders"], &writer_holds["waiters"]),
        (&json!(1), &json!(1)),
        "{writer_holds}"
    );
    assert_eq!(writer_holds["last_token"], 3, "{writer_holds}");
    assert_eq!(
        (&idle["holders"], &idle["waiters"]),
        (&json!(0), &json!(0)),
        "{idle}"
    );
}

async fn tables_are_listed_by_name_a_page_at_a_time(s: Server) {
    // Arrange: five tables registered out of order.
    let c = &s.client;
    let names = [
        "sales.returns",
        "ops.audit",
        "sales.customers",
        "lake.raw.events",
        "sales.orders",
    ];
    for name in names {
        table(c, name, json!({ "catalog": name })).await;
    }
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();

    // Act
    let by_two = pages(c, 2).await;
    let by_five = pages(c, 5).await;
    let by_default = pages(c, 100).await;
    let after_ops = get(c, "/v1/tables?after=ops.audit").await.body;

    // Assert
    assert_eq!(by_two.len(), 3, "pages of 2, 2 and 1: {by_two:?}");
    assert_eq!(by_two.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(by_two.concat(), expected, "each table once, by name");
    assert_eq!(by_five.concat(), expected, "{by_five:?}");
    assert_eq!(by_default, [expected.clone()], "one page holds them all");
    let after: Vec<&str> = after_ops["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(after, expected[2..], "only names after `ops.audit`");
    for t in after_ops["tables"].as_array().unwrap() {
        assert_eq!(
            t["catalog"], t["table"],
            "each table carries its own settings: {t}"
        );
    }
}

async fn a_settings_change_is_recorded_as_a_table_settings_changed_event(s: Server) {
    // Arrange
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let changed = json!({ "max_compaction_deferral_seconds": 3600, "compaction_job": "nightly" });

    // Act
    let answer = c.put_table(ORDERS, changed.clone()).await.unwrap();
    let unchanged = c.put_table(ORDERS, changed).await.unwrap();

    // Assert
    assert_eq!((answer.status, unchanged.status), (200, 200));
    let path = format!("/v1/events?table={ORDERS}&kind=table_settings_changed");
    let events = get(c, &path).await.body["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        events.len(),
        2,
        "the creation and the change; a no-op PUT records nothing: {events:?}"
    );
    let (create, change) = (&events[0], &events[1]);
    assert!(create["id"].as_i64() < change["id"].as_i64());
    assert_eq!(
        (&create["table"], &change["table"]),
        (&json!(ORDERS), &json!(ORDERS))
    );
    assert_eq!(create["data"]["created"], true, "{create}");
    assert_eq!(change["data"]["created"], false, "{change}");
    assert_eq!(
        create["data"]["settings"]["max_compaction_deferral_seconds"],
        86_400
    );
    assert_eq!(
        change["data"]["settings"],
        json!({ "max_compaction_deferral_seconds": 3600, "catalog": null,
                "compaction_job": "nightly", "pin_tags": null }),
        "{change}"
    );
    assert!(change["lease_id"].is_null(), "{change}");
}

async fn lowering_the_deferral_to_zero_makes_a_new_reader_queue_behind_a_waiting_writer_at_once(
    s: Server,
) {
    // Arrange: with the default deferral (24 h) readers pass a waiting writer.
    let c = &s.client;
    table(c, ORDERS, json!({})).await;
    let r1 = c
        .acquire(ORDERS, &read("hydrate-1"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    let w = c
        .acquire(ORDERS, &write("compact"))
        .await
        .unwrap()
        .lease()
        .unwrap();
    assert_eq!(w.state, "waiting");
    let r2 = c.acquire(ORDERS, &read("hydrate-2")).await.unwrap();
    assert_eq!(
        r2.status, 201,
        "before the change readers pass the writer: {r2:?}"
    );
    let r2 = r2.lease().unwrap();

    // Act
    let changed = c
        .put_table(ORDERS, json!({ "max_compaction_deferral_seconds": 0 }))
        .await
        .unwrap();
    let r3 = c.acquire(ORDERS, &read("hydrate-3")).await.unwrap();

    // Assert
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        r3.status, 202,
        "the new reader queues behind the writer: {r3:?}"
    );
    assert_eq!(r3.body["position"], 2, "{r3:?}");
    let shown = get_table(c, ORDERS).await;
    assert_eq!(
        (&shown["holders"], &shown["waiters"]),
        (&json!(2), &json!(2)),
        "{shown}"
    );
    c.release(&r1.lease_id, r1.token).await.unwrap();
    c.release(&r2.lease_id, r2.token).await.unwrap();
    let w = c.lease(&w.lease_id, 0).await.unwrap().lease().unwrap();
    assert_eq!(w.state, "granted", "the writer gets its window first");
    let r3_id = r3.body["lease_id"].as_str().unwrap();
    assert_eq!(c.lease(r3_id, 0).await.unwrap().body["state"], "waiting");
    c.release(&w.lease_id, w.token).await.unwrap();
    assert_eq!(
        c.lease(r3_id, 0).await.unwrap().body["state"],
        "granted",
        "then the reader"
    );
}

async fn names_that_differ_only_in_case_are_one_table_to_glue_so_the_second_is_refused(s: Server) {
    let c = &s.client;
    table(c, "salesX.t", json!({})).await;
    for alike in ["salesx.t", "SALESX.T", "salesX.T"] {
        let answer = c.put_table(alike, json!({})).await.unwrap();
        crate::errors::assert_error(alike, &answer, 409, "table_name_conflict");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`salesX.t`"),
            "names the registered one: {message}"
        );
    }
    // The registered spelling still takes settings; the others hold no lease.
    let again = c.put_table("salesX.t", json!({})).await.unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    let lease = c.acquire("salesx.t", &read("hydrate")).await.unwrap();
    crate::errors::assert_error(
        "a lease on the other spelling",
        &lease,
        404,
        "table_not_found",
    );
    let names: Vec<String> = pages(c, 10).await.concat();
    assert_eq!(names, ["salesX.t"]);
}

/// `?prefix=` narrows a listing on the server, within the token's scopes:
/// a scoped token never sees past them, whatever prefix it asks for.
async fn a_prefix_narrows_the_listing_within_the_tokens_scopes(s: Server) {
    let admin = s.client_with(&s.create_token("admin", "admin", &[], &[]));
    for name in ["hr.people", "sales.orders", "sales.refunds", "sandbox.t"] {
        assert_eq!(admin.put_table(name, json!({})).await.unwrap().status, 201);
    }
    let names = |page: Answer| -> Vec<String> {
        page.body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["table"].as_str().unwrap().to_owned())
            .collect()
    };
    let sales = get(&admin, "/v1/tables?prefix=sales.").await;
    assert_eq!(names(sales), ["sales.orders", "sales.refunds"]);
    let paged = get(&admin, "/v1/tables?prefix=sa&limit=2").await;
    assert_eq!(paged.body["next_after"], "sales.refunds");
    let rest = get(&admin, "/v1/tables?prefix=sa&after=sales.refunds").await;
    assert_eq!(names(rest), ["sandbox.t"]);

    let scoped = s.client_with(&s.create_token("sales", "operator", &["sales."], &[]));
    // Wider than the scope: the scope holds. Inside it: the prefix does.
    assert_eq!(
        names(get(&scoped, "/v1/tables?prefix=s").await),
        ["sales.orders", "sales.refunds"]
    );
    assert_eq!(
        names(get(&scoped, "/v1/tables?prefix=sales.r").await),
        ["sales.refunds"]
    );
    // Outside it: nothing, not an error.
    let outside = get(&scoped, "/v1/tables?prefix=hr.").await;
    assert_eq!(names(outside), Vec::<String>::new());
    let long = format!("/v1/tables?prefix={}", "x".repeat(1025));
    let refused = admin.send(Method::GET, &long, None).await.unwrap();
    crate::errors::assert_error("a 1025-character prefix", &refused, 422, "invalid_request");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("prefix"), "{message}");
}

crate::on_every_backend_with_auth!(a_prefix_narrows_the_listing_within_the_tokens_scopes);
