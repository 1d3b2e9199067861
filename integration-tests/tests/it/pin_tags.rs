//! Pins mirrored as Iceberg tags, written by sluice's tag writer into the
//! embedded SQL catalog and read back, and expired against, by pyiceberg:
//! a tagged snapshot survives another engine's `expire_snapshots`, the
//! tag moves and goes, and a writer committing to the table meanwhile
//! loses nothing (the tag's commit is made again on its metadata).

use crate::snapshots::{py, sql_catalog};
use serde_json::Value;
use sluice_core::TableName;
use sluice_iceberg::{CatalogConfig, Catalogs, TagTarget};

const TABLE: &str = "lake.orders";
const TAG: &str = "sluice-pin-test";
const DAY_MS: i64 = 86_400_000;

async fn catalogs(dir: &std::path::Path) -> Catalogs {
    let config = CatalogConfig::embedded("local", dir);
    Catalogs::connect(&[config], Some("local")).await.unwrap()
}

async fn refs(catalog: &Value) -> Value {
    serde_json::from_str(&py(catalog, &["refs", TABLE]).await).unwrap()
}

/// Another engine (pyiceberg) expires every snapshot it may: what is left.
async fn expire_all(catalog: &Value) -> Vec<i64> {
    py(
        catalog,
        &["expire-older-than", TABLE, "2100-01-01T00:00:00"],
    )
    .await;
    snapshot_ids(catalog).await
}

async fn snapshot_ids(catalog: &Value) -> Vec<i64> {
    let all: Value = serde_json::from_str(&py(catalog, &["snapshots", TABLE]).await).unwrap();
    all["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_snapshot_survives_another_engines_expiry_and_the_tag_moves_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    // sluice's catalog first: it makes the catalog database as the
    // `iceberg` crate reads it, and pyiceberg then uses it.
    let sluice = catalogs(dir.path()).await;
    let catalog = sql_catalog(dir.path());
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let s2: i64 = py(&catalog, &["append", TABLE, "2"]).await.parse().unwrap();
    let s3: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let table = TableName::parse(TABLE).unwrap();
    let at = |snapshot_id| {
        Some(TagTarget {
            snapshot_id,
            max_ref_age_ms: DAY_MS,
        })
    };

    assert!(sluice.set_tag("local", &table, TAG, at(s1)).await.unwrap());
    // Again: already so, no commit.
    assert!(!sluice.set_tag("local", &table, TAG, at(s1)).await.unwrap());
    let tagged = refs(&catalog).await;
    assert_eq!(tagged[TAG]["snapshot_id"], s1, "{tagged}");
    assert_eq!(tagged[TAG]["type"], "tag", "{tagged}");
    assert_eq!(tagged[TAG]["max_ref_age_ms"], DAY_MS, "{tagged}");
    assert_eq!(tagged["main"]["snapshot_id"], s3, "{tagged}");

    // pyiceberg expires everything older than now but what refs hold.
    let now = "2100-01-01T00:00:00";
    py(&catalog, &["expire-older-than", TABLE, now]).await;
    let kept = snapshot_ids(&catalog).await;
    assert!(kept.contains(&s1), "the tagged snapshot expired: {kept:?}");
    assert!(!kept.contains(&s2), "{kept:?}");
    assert!(kept.contains(&s3), "{kept:?}");

    // The tag moves with the pin, and goes when the pin goes.
    assert!(sluice.set_tag("local", &table, TAG, at(s3)).await.unwrap());
    assert_eq!(refs(&catalog).await[TAG]["snapshot_id"], s3);
    assert!(sluice.set_tag("local", &table, TAG, None).await.unwrap());
    assert!(refs(&catalog).await.get(TAG).is_none());
    assert!(!sluice.set_tag("local", &table, TAG, None).await.unwrap());
    py(&catalog, &["expire-older-than", TABLE, now]).await;
    assert_eq!(snapshot_ids(&catalog).await, vec![s3]);

    // Refused, nothing written: a snapshot the table does not have.
    let missing = sluice.set_tag("local", &table, TAG, at(12345)).await;
    assert!(
        matches!(missing, Err(sluice_iceberg::TagError::Refused(_))),
        "{missing:?}"
    );
}

/// A writer appends while the tag is moved again and again: every append
/// lands, and the tag ends where it was last set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_committing_while_the_tag_is_written_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = catalogs(dir.path()).await;
    let catalog = sql_catalog(dir.path());
    py(&catalog, &["create", TABLE]).await;
    let first: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let table = TableName::parse(TABLE).unwrap();
    let writer = {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            let mut appended = Vec::new();
            for _ in 0..8 {
                appended.push(
                    py(&catalog, &["append", TABLE, "1"])
                        .await
                        .parse::<i64>()
                        .unwrap(),
                );
            }
            appended
        })
    };
    let mut moves = 0;
    while !writer.is_finished() {
        let target = if moves % 2 == 0 { None } else { Some(first) };
        let target = target.map(|snapshot_id| TagTarget {
            snapshot_id,
            max_ref_age_ms: DAY_MS,
        });
        sluice.set_tag("local", &table, TAG, target).await.unwrap();
        moves += 1;
        // As often as pins move when copies report progress many times a
        // second, not in a tight loop that no writer could ever pass.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let appended = writer.await.unwrap();
    sluice
        .set_tag(
            "local",
            &table,
            TAG,
            Some(TagTarget {
                snapshot_id: first,
                max_ref_age_ms: DAY_MS,
            }),
        )
        .await
        .unwrap();
    let ids = snapshot_ids(&catalog).await;
    for id in appended.iter().chain([&first]) {
        assert!(ids.contains(id), "snapshot {id} lost: {ids:?}");
    }
    let refs = refs(&catalog).await;
    assert_eq!(
        refs["main"]["snapshot_id"],
        *appended.last().unwrap(),
        "{refs}"
    );
    assert_eq!(refs[TAG]["snapshot_id"], first, "{refs}");
    assert!(moves > 1, "the tag was never written during the appends");
}

/// `TABLE` registered with `settings`, a container, and a hydration of it
/// created by run `run-1` with `extra` fields: its id and session token.
async fn follow(server: &crate::harness::Server, settings: Value, extra: Value) -> (String, Value) {
    use reqwest::Method;
    let table = format!("/v1/tables/{TABLE}");
    server
        .expect(Method::PUT, &table, Some(settings), 201)
        .await;
    let container = serde_json::json!({ "kind": "glue", "database": "analytics" });
    server
        .expect(
            Method::PUT,
            "/v1/containers/analytics",
            Some(container),
            201,
        )
        .await;
    let mut body = serde_json::json!({ "table": TABLE, "container": "analytics",
                                        "target": "orders_v1", "run_id": "run-1" });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let created = server
        .expect(Method::POST, "/v1/hydrations", Some(body), 201)
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    (id, created["session"]["token"].clone())
}

/// What `py refs` says the tag of hydration `id` is on, once it says
/// `done` of it (the outbox writes tags after the change that moved them).
async fn tag_of(catalog: &Value, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let name = format!("sluice-pin-{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tag = refs(catalog)
            .await
            .get(&name)
            .cloned()
            .unwrap_or(Value::Null);
        if done(&tag) {
            return tag;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tag {name} never became what was wanted: {tag}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Cancel hydration `id`: the copy keeps nothing, and its tag goes.
async fn cancel_and_see_the_tag_go(server: &crate::harness::Server, catalog: &Value, id: &str) {
    let cancel = format!("/v1/hydrations/{id}/cancel");
    let body = serde_json::json!({});
    server
        .expect(reqwest::Method::POST, &cancel, Some(body), 200)
        .await;
    tag_of(catalog, id, Value::is_null).await;
}

/// No tag commit was refused (each would be a `pin_tag_failed` event).
async fn no_tag_failed(server: &crate::harness::Server) {
    let path = "/v1/events?kind=pin_tag_failed";
    let failed = server.expect(reqwest::Method::GET, path, None, 200).await;
    assert_eq!(failed["events"], serde_json::json!([]), "{failed}");
}

/// Through sluice: a hydration's pin is mirrored as a tag in its table's
/// metadata by the outbox, from its first report on; pyiceberg's
/// `expire_snapshots` keeps the pinned snapshot, so the copy that has not
/// caught up since is not stale; the tag moves with progress and goes
/// when the copy is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copys_pin_is_a_tag_that_moves_with_it_and_outlives_another_engines_expiry() {
    use reqwest::Method;
    use serde_json::json;
    let server = crate::harness::Server::sqlite_with(&["--refresh-interval-seconds", "3600"]).await;
    let catalog = sql_catalog(&server.data_dir());
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let s2: i64 = py(&catalog, &["append", TABLE, "2"]).await.parse().unwrap();
    let (id, token) = follow(&server, json!({}), json!({ "pin_snapshot_id": s1 })).await;
    let progress = format!("/v1/hydrations/{id}/progress");
    let report = |phase: &str, snapshot: i64| {
        Some(json!({ "token": token, "phase": phase, "snapshot_id": snapshot }))
    };

    // Copying s1: the tag is on s1, a tag (not a branch), and ages out on
    // its own a month past its snapshot's commit.
    server
        .expect(Method::POST, &progress, report("snapshot", s1), 200)
        .await;
    let tag = tag_of(&catalog, &id, |t| t["snapshot_id"] == s1).await;
    assert_eq!(tag["type"], "tag", "{tag}");
    assert!(
        tag["max_ref_age_ms"].as_i64().unwrap() >= 30 * DAY_MS,
        "{tag}"
    );

    // Live at s2: the tag moves there.
    let live = server
        .expect(Method::POST, &progress, report("catching_up", s2), 200)
        .await;
    assert_eq!(live["state"], "live", "{live}");
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s2).await;

    // The table moves on and another engine expires everything it may:
    // what the copy applied stays, so it can still catch up.
    let s3: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let s4: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let kept = expire_all(&catalog).await;
    assert!(
        kept.contains(&s2),
        "the pinned snapshot was expired: {kept:?}"
    );
    assert!(!kept.contains(&s1) && !kept.contains(&s3), "{kept:?}");
    server
        .expect(
            Method::POST,
            &format!("/v1/tables/{TABLE}/refresh"),
            None,
            200,
        )
        .await;
    let behind = server
        .expect(Method::GET, &format!("/v1/hydrations/{id}"), None, 200)
        .await;
    assert_eq!(behind["state"], "lagging", "{behind}");
    let caught_up = server
        .expect(Method::POST, &progress, report("catching_up", s4), 200)
        .await;
    assert_eq!(caught_up["state"], "live", "{caught_up}");
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s4).await;
    // How it went shows on the hydration, and in the metrics.
    let shown = server
        .expect(Method::GET, &format!("/v1/hydrations/{id}"), None, 200)
        .await;
    assert_eq!(shown["pin_tag"]["state"], "done", "{shown}");
    let metrics = server.call(Method::GET, "/metrics", None).await;
    let text = metrics
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| metrics.body.to_string());
    assert!(
        text.contains("sluice_pin_tag_writes_total{outcome=\"written\"}"),
        "{text}"
    );

    cancel_and_see_the_tag_go(&server, &catalog, &id).await;
    no_tag_failed(&server).await;
}

/// Tags are off for one table (`pin_tags: false`): its copies' tags are
/// taken back, and another engine's expiry then removes the snapshot a
/// copy applied last, which turns it `stale`. Turned back on (the
/// catalog's default), the tag is written again without any progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tags_off_for_its_table_another_engines_expiry_makes_a_copy_stale() {
    use reqwest::Method;
    use serde_json::json;
    let server = crate::harness::Server::sqlite_with(&["--refresh-interval-seconds", "3600"]).await;
    let catalog = sql_catalog(&server.data_dir());
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let (id, token) = follow(&server, json!({}), json!({})).await;
    let progress = format!("/v1/hydrations/{id}/progress");
    let live = server
        .expect(
            Method::POST,
            &progress,
            Some(json!({ "token": token, "phase": "catching_up", "snapshot_id": s1 })),
            200,
        )
        .await;
    assert_eq!(live["state"], "live", "{live}");
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s1).await;

    let table = format!("/v1/tables/{TABLE}");
    let setting = |tables: &Value| tables["tables"][0]["pin_tags"].clone();
    server
        .expect(Method::PUT, &table, Some(json!({ "pin_tags": false })), 200)
        .await;
    tag_of(&catalog, &id, Value::is_null).await;
    let tables = server.expect(Method::GET, "/v1/tables", None, 200).await;
    assert_eq!(setting(&tables), json!(false), "{tables}");
    // Back to the catalog's default (on): written again.
    server
        .expect(Method::PUT, &table, Some(json!({})), 200)
        .await;
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s1).await;
    let tables = server.expect(Method::GET, "/v1/tables", None, 200).await;
    assert_eq!(setting(&tables), Value::Null, "{tables}");
    server
        .expect(Method::PUT, &table, Some(json!({ "pin_tags": false })), 200)
        .await;
    tag_of(&catalog, &id, Value::is_null).await;
    // Not a boolean: refused, nothing changed.
    let refused = server
        .expect(Method::PUT, &table, Some(json!({ "pin_tags": "no" })), 422)
        .await;
    assert_eq!(refused["error"]["type"], "invalid_request", "{refused}");

    // Nothing keeps s1 now: another engine expires it, and the copy,
    // which can no longer catch up from it, is stale.
    let s2: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    assert_eq!(expire_all(&catalog).await, vec![s2]);
    server
        .expect(Method::POST, &format!("{table}/refresh"), None, 200)
        .await;
    let stale = server
        .expect(Method::GET, &format!("/v1/hydrations/{id}"), None, 200)
        .await;
    assert_eq!(stale["state"], "stale", "{stale}");
    assert!(
        stale["reason"].as_str().unwrap().contains(&s1.to_string()),
        "{stale}"
    );
    no_tag_failed(&server).await;
}

/// On Glue, through the Glue double (which checks `VersionId` as Glue
/// does; moto does not): sluice's tag commits are `UpdateTable`s on the
/// version they read; a writer committing between that read and the update
/// makes it fail, and it is made again on the writer's metadata, so both
/// land; the tag follows the copy's progress, keeps its snapshot through
/// another engine's expiry, and goes with the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_glue_tag_commits_and_a_racing_writer_both_land() {
    use reqwest::Method;
    use serde_json::json;
    let double = crate::glue_double::GlueDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::snapshots::glue_config_at(dir.path(), &double.url, &double.lake.url, true);
    std::env::set_var("LAKE_KEY_ID", "testing");
    std::env::set_var("LAKE_SECRET", "testing");
    let server = crate::harness::Server::sqlite_with(&[
        "--config",
        &config.display().to_string(),
        "--refresh-interval-seconds",
        "3600",
    ])
    .await;
    // pyiceberg through the double too: its commits are checked the same.
    let mut catalog = crate::snapshots::glue_catalog(&double.lake);
    catalog["glue.endpoint"] = json!(double.url);
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "2"]).await.parse().unwrap();
    let settings = json!({ "catalog": "lake" });
    let (id, token) = follow(&server, settings, json!({ "lag_threshold_snapshots": 100 })).await;
    let progress = format!("/v1/hydrations/{id}/progress");
    let report = |phase: &str, snapshot: i64| {
        Some(json!({ "token": token, "phase": phase, "snapshot_id": snapshot }))
    };
    server
        .expect(Method::POST, &progress, report("snapshot", s1), 200)
        .await;
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s1).await;

    // A writer commits between sluice's read of the table and its
    // update (the double runs it right then): the update is refused, made
    // again on the writer's metadata, and both land.
    let s2: i64 = py(&catalog, &["append", TABLE, "1"]).await.parse().unwrap();
    let moto = crate::snapshots::glue_catalog(&double.lake);
    let writer = json!([
        crate::lake::venv().join("bin/python"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/iceberg/lake.py"),
        moto.to_string(),
        "append",
        TABLE,
        "1",
    ]);
    double
        .script(json!({ "before_update": { "orders": writer } }))
        .await;
    let refresh = format!("/v1/tables/{TABLE}/refresh");
    server.expect(Method::POST, &refresh, None, 200).await;
    server
        .expect(Method::POST, &progress, report("catching_up", s2), 200)
        .await;
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s2).await;
    assert_eq!(
        double.calls("UpdateTable:conflict").await,
        1,
        "the race happened"
    );
    let all: Value = serde_json::from_str(&py(&catalog, &["snapshots", TABLE]).await).unwrap();
    let current = all["current_snapshot_id"].as_i64().unwrap();
    assert!(
        ![s1, s2].contains(&current),
        "the writer's append is the table's current: {all}"
    );
    let newest = s2;

    // Another engine's expiry keeps the tagged snapshot.
    py(&catalog, &["append", TABLE, "1"]).await;
    let kept = expire_all(&catalog).await;
    assert!(
        kept.contains(&newest),
        "the pinned snapshot was expired: {kept:?}"
    );
    assert_eq!(kept.len(), 2, "the tag's and main's: {kept:?}");

    cancel_and_see_the_tag_go(&server, &catalog, &id).await;
}

/// The Iceberg REST protocol server in front of pyiceberg's SQL catalog
/// (`integration-tests/iceberg/rest_catalog.py`), stopped when dropped.
struct RestCatalog {
    url: String,
    child: std::process::Child,
}

impl RestCatalog {
    async fn start(catalog: &Value) -> RestCatalog {
        let port = crate::harness::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/iceberg/rest_catalog.py");
        let child = std::process::Command::new(crate::lake::venv().join("bin/python"))
            .args([script, &port.to_string(), &catalog.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the REST catalog");
        let rest = RestCatalog {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while rest.calls_now().await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the REST catalog did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        rest
    }

    async fn calls_now(&self) -> Option<Value> {
        let answer = reqwest::get(format!("{}/_double/calls", self.url))
            .await
            .ok()?;
        answer.json().await.ok()
    }

    async fn calls(&self, key: &str) -> i64 {
        self.calls_now().await.expect("the REST catalog answers")[key]
            .as_i64()
            .unwrap_or(0)
    }

    async fn script(&self, script: Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_double/script", self.url))
            .json(&script)
            .send()
            .await
            .expect("script the REST catalog");
        assert!(answer.status().is_success());
    }
}

impl Drop for RestCatalog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On a REST catalog: sluice reads the table through it and commits the
/// tag through its commit endpoint (the catalog writes the metadata); the
/// tag follows the copy, keeps its snapshot through another engine's
/// expiry, survives a catalog that failed a commit (retried), and goes
/// with the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_rest_catalog_the_tag_is_committed_through_its_commit_endpoint() {
    use reqwest::Method;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let catalog = sql_catalog(dir.path());
    py(&catalog, &["create", TABLE]).await;
    let s1: i64 = py(&catalog, &["append", TABLE, "3"]).await.parse().unwrap();
    let s2: i64 = py(&catalog, &["append", TABLE, "2"]).await.parse().unwrap();
    let rest = RestCatalog::start(&catalog).await;
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!("[catalogs.rest]\nkind = \"rest\"\nuri = \"{}\"\n", rest.url),
    )
    .unwrap();
    let server = crate::harness::Server::sqlite_with(&[
        "--config",
        &config.display().to_string(),
        "--refresh-interval-seconds",
        "3600",
    ])
    .await;
    let (id, token) = follow(&server, json!({ "catalog": "rest" }), json!({})).await;
    let progress = format!("/v1/hydrations/{id}/progress");
    let report = |phase: &str, snapshot: i64| {
        Some(json!({ "token": token, "phase": phase, "snapshot_id": snapshot }))
    };
    server
        .expect(Method::POST, &progress, report("snapshot", s1), 200)
        .await;
    let tag = tag_of(&catalog, &id, |t| t["snapshot_id"] == s1).await;
    assert_eq!(tag["type"], "tag", "{tag}");
    assert!(rest.calls("commit:ok").await >= 1);

    // The catalog fails the next commit: the outbox tries again.
    rest.script(json!({ "fail_commits": 1 })).await;
    let live = server
        .expect(Method::POST, &progress, report("catching_up", s2), 200)
        .await;
    assert_eq!(live["state"], "live", "{live}");
    tag_of(&catalog, &id, |t| t["snapshot_id"] == s2).await;
    let metrics = server.expect(Method::GET, "/metrics", None, 200).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("sluice_pin_tag_writes_total{outcome=\"retried\"} 1"),
        "{text}"
    );

    // Another engine's expiry keeps the tagged snapshot.
    py(&catalog, &["append", TABLE, "1"]).await;
    let kept = expire_all(&catalog).await;
    assert!(
        kept.contains(&s2),
        "the pinned snapshot was expired: {kept:?}"
    );
    assert!(!kept.contains(&s1), "{kept:?}");

    cancel_and_see_the_tag_go(&server, &catalog, &id).await;
    no_tag_failed(&server).await;
}
