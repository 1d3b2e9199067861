//! Compaction under the write lease, on a real Iceberg table in moto's
//! Glue and S3: the request waits while a hydration's read lease is held,
//! the compaction job (a pyiceberg script the Glue double runs for the
//! Glue run sluice starts) rewrites the table under the lease's token,
//! sluice checks the new snapshot in the table's metadata and releases the
//! lease. A job that "succeeds" without a rewrite, or writes another
//! token, is reported as such.

use crate::glue_double::GlueDouble;
use crate::harness::Server;
use crate::scheduler::{define, scheduled};
use crate::snapshots::{glue_catalog, py};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const TABLE: &str = "sales.orders";

async fn compaction(server: &Server, id: &str) -> Value {
    let answer = server
        .call(
            Method::GET,
            &format!("/v1/tables/{TABLE}/compactions/{id}"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn until(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let within = Duration::from_secs(90);
    let read = || compaction(server, id);
    crate::harness::until("compaction", within, read, done, || server.log_text()).await
}

async fn request(server: &Server) -> (u16, Value) {
    let answer = server
        .call(
            Method::POST,
            &format!("/v1/tables/{TABLE}/compactions"),
            Some(json!({ "requested_by": "nightly", "reason": "small files" })),
        )
        .await;
    (answer.status, answer.body)
}

async fn lease_state(server: &Server, lease_id: &str) -> String {
    let answer = server
        .call(Method::GET, &format!("/v1/leases/{lease_id}"), None)
        .await;
    answer.body["state"].as_str().unwrap_or_default().to_owned()
}

/// The table's snapshots as pyiceberg reads them.
async fn snapshots(catalog: &Value) -> Value {
    serde_json::from_str(&py(catalog, &["snapshots", TABLE]).await).unwrap()
}

/// A sluice scheduling on moto's Glue (behind the double) whose `TABLE` is
/// an Iceberg table in the Glue catalog with three snapshots, compacted by
/// the job `compact`: Glue job `compact-orders`, which runs `compact.py`.
pub(crate) struct Lake {
    pub double: GlueDouble,
    pub server: Server,
    pub catalog: Value,
    /// Where `compact.py` writes the arguments it was started with.
    pub record: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Lake {
    /// What the double runs for a run of `compact-orders`.
    pub fn compact_command(&self) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/iceberg/compact.py");
        json!([crate::lake::venv().join("bin/python"), script])
    }

    /// The job `compact`, with `compact.py` in `mode` (`rewrite`, `noop`,
    /// `foreign-token`).
    pub fn job(&self, mode: &str) -> Value {
        json!({ "glue_job_name": "compact-orders", "kind": "compaction", "table": TABLE,
                "max_attempts": 1,
                // Braces are placeholders: literal ones are doubled.
                "arguments": { "--catalog": self.catalog.to_string().replace('{', "{{").replace('}', "}}"),
                               "--mode": mode,
                               "--record": self.record.display().to_string(),
                               "--lease": "{lease_id}:{token}" } })
    }
}

pub(crate) async fn glue_lake() -> Lake {
    let double = GlueDouble::start().await;
    double.create_job("compact-orders", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let server = scheduled(
        &double,
        dir.path(),
        &[
            "--refresh-interval-seconds",
            "3600",
            "--advertise-url",
            "http://sluice.internal:7878",
            "--aws-auth-server-id",
            "lake-prod",
            "--aws-auth-sts-endpoint",
            "https://sts.eu-west-1.amazonaws.com/",
        ],
    )
    .await;
    let catalog = glue_catalog(&double.lake);
    let lake = Lake {
        record: dir.path().join("compact-args.jsonl"),
        double,
        server,
        catalog,
        _dir: dir,
    };
    lake.double
        .script(json!({ "commands": { "compact-orders": lake.compact_command() } }))
        .await;
    py(&lake.catalog, &["create", TABLE]).await;
    for _ in 0..3 {
        py(&lake.catalog, &["append", TABLE, "5"]).await;
    }
    let put = lake
        .server
        .call(
            Method::PUT,
            &format!("/v1/tables/{TABLE}"),
            Some(json!({ "catalog": "lake", "compaction_job": "compact" })),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    define(&lake.server, "compact", lake.job("rewrite")).await;
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_waits_for_readers_then_rewrites_under_its_token_and_is_checked_in_iceberg() {
    let lake = glue_lake().await;
    let jobs = (lake.job("noop"), lake.job("foreign-token"));
    // `_dir` stays bound: the folder lives as long as the test.
    let Lake {
        double,
        server,
        catalog,
        record,
        _dir,
    } = lake;

    // A hydration-like reader holds the table.
    let reader = server
        .call(
            Method::POST,
            &format!("/v1/tables/{TABLE}/leases"),
            Some(json!({ "mode": "read", "ttl_seconds": 60, "holder": "hydration" })),
        )
        .await;
    assert_eq!(reader.status, 201, "{}", reader.body);
    let (status, c) = request(&server).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    // A second request while it is pending answers the same one.
    let (status, again) = request(&server).await;
    assert_eq!((status, &again["id"]), (200, &c["id"]));

    let waiting = until(&server, &id, |c| c["state"] == "waiting").await;
    let lease_id = waiting["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(lease_state(&server, &lease_id).await, "waiting");
    // Nothing starts while the reader holds it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(double.calls("StartJobRun:compact-orders").await, 0);
    assert_eq!(compaction(&server, &id).await["state"], "waiting");

    let released = server
        .client
        .release(
            reader.body["lease_id"].as_str().unwrap(),
            reader.body["token"].as_i64(),
        )
        .await
        .unwrap();
    assert_eq!(released.status, 200, "{}", released.body);
    let running = until(&server, &id, |c| c["state"] != "waiting").await;
    assert!(
        matches!(running["state"].as_str(), Some("running" | "succeeded")),
        "{running}"
    );
    let done = until(&server, &id, |c| {
        c["state"] == "succeeded" || c["state"] == "failed"
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let token = done["token"].as_i64().unwrap();

    // Iceberg holds the rewrite: a `replace` descending from the base,
    // the current snapshot, with the lease's token in its summary.
    let table = snapshots(&catalog).await;
    let current = table["current_snapshot_id"].as_i64().unwrap();
    assert_eq!(
        done["result_snapshot_id"].as_i64(),
        Some(current),
        "{done} {table}"
    );
    let rewrite = table["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"].as_i64() == Some(current))
        .unwrap()
        .clone();
    assert_eq!(rewrite["operation"], "replace");
    assert_eq!(rewrite["parent_id"], done["base_snapshot_id"]);
    let log = server
        .call(
            Method::GET,
            &format!("/v1/tables/{TABLE}/snapshots?limit=1000"),
            None,
        )
        .await;
    let in_log = log.body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"].as_i64() == Some(current))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        in_log["summary"]["sluice.lease-token"],
        token.to_string(),
        "{in_log}"
    );

    // The job was started with its lease, from its job arguments.
    let recorded: Value = serde_json::from_str(
        std::fs::read_to_string(&record)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["sluice-lease-id"], lease_id);
    assert_eq!(recorded["sluice-token"], token.to_string());
    assert_eq!(recorded["sluice-table"], TABLE);
    // Where the job's client reaches sluice (`--advertise-url`).
    assert_eq!(recorded["sluice-url"], "http://sluice.internal:7878");
    // How it logs in with its role instead of a token (IAM authentication).
    assert_eq!(recorded["sluice-aws-server-id"], "lake-prod");
    assert_eq!(
        recorded["sluice-aws-sts-endpoint"],
        "https://sts.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        recorded["sluice-base-snapshot-id"],
        done["base_snapshot_id"].to_string()
    );
    assert!(
        recorded["sluice-expire-older-than"].is_string(),
        "{recorded}"
    );
    assert_eq!(recorded["lease"], format!("{lease_id}:{token}"));
    // Released when the run ended; a new reader is granted at once.
    assert_eq!(lease_state(&server, &lease_id).await, "released");
    let reader = server
        .call(
            Method::POST,
            &format!("/v1/tables/{TABLE}/leases"),
            Some(json!({ "mode": "read", "ttl_seconds": 60, "holder": "hydration" })),
        )
        .await;
    assert_eq!(reader.status, 201, "{}", reader.body);
    server
        .client
        .release(
            reader.body["lease_id"].as_str().unwrap(),
            reader.body["token"].as_i64(),
        )
        .await
        .unwrap();

    // A job that succeeds without a rewrite is not a compaction.
    define(&server, "compact", jobs.0).await;
    let (status, c) = request(&server).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    let failed = until(&server, id, |c| {
        c["state"] == "failed" || c["state"] == "succeeded"
    })
    .await;
    assert_eq!(
        (failed["state"].as_str(), failed["failure"].as_str()),
        (Some("failed"), Some("no_new_snapshot")),
        "{failed}"
    );
    assert_eq!(
        lease_state(&server, failed["lease_id"].as_str().unwrap()).await,
        "released"
    );

    // A rewrite carrying another grant's token breaks the fence.
    define(&server, "compact", jobs.1).await;
    let (_, c) = request(&server).await;
    let id = c["id"].as_str().unwrap();
    let failed = until(&server, id, |c| {
        c["state"] == "failed" || c["state"] == "succeeded"
    })
    .await;
    assert_eq!(failed["failure"], "fence_mismatch", "{failed}");

    // Every step is in the event log, in order.
    let events = server
        .call(
            Method::GET,
            &format!("/v1/events?table={TABLE}&limit=1000"),
            None,
        )
        .await;
    let kinds: Vec<String> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["compaction_id"] == done["id"])
        .map(|e| {
            format!(
                "{}:{}",
                e["kind"].as_str().unwrap(),
                e["data"]["to"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "compaction_requested:queued",
            "compaction_state_changed:waiting",
            "compaction_state_changed:running",
            "run_queued:queued",
            "run_state_changed:starting",
            "run_state_changed:running",
            "run_state_changed:succeeded",
            "compaction_state_changed:succeeded",
        ],
        "{kinds:?}"
    );
}
