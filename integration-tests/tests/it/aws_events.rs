//! AWS events on an SQS queue (moto's), in the shapes AWS documents for
//! EventBridge's "Glue Data Catalog Table State Change" and "Glue Job
//! State Change": the leader reads them and refreshes a table, or reads a
//! run, at once instead of at its next reconcile or poll. Anything else on
//! the queue is counted and dropped.

use crate::glue_double::GlueDouble;
use crate::harness::{Backend, Server};
use crate::snapshots::{glue_catalog, py, TABLE};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An SQS call to moto (the JSON protocol the SDKs speak).
async fn sqs(moto: &str, action: &str, body: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(moto)
        .header("X-Amz-Target", format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("call moto's SQS");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{action}: {status} {body}");
    body
}

async fn create_queue(moto: &str) -> String {
    let created = sqs(moto, "CreateQueue", json!({ "QueueName": "sluice-events" })).await;
    created["QueueUrl"].as_str().unwrap().to_owned()
}

async fn send(moto: &str, queue: &str, body: &str) {
    sqs(
        moto,
        "SendMessage",
        json!({ "QueueUrl": queue, "MessageBody": body }),
    )
    .await;
}

/// Messages on the queue, visible or being handled.
async fn left(moto: &str, queue: &str) -> i64 {
    let attributes = sqs(
        moto,
        "GetQueueAttributes",
        json!({ "QueueUrl": queue, "AttributeNames": ["All"] }),
    )
    .await;
    [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    .iter()
    .map(|k| {
        attributes["Attributes"][k]
            .as_str()
            .unwrap_or("0")
            .parse::<i64>()
            .unwrap()
    })
    .sum()
}

/// EventBridge's event for a change of Glue table `database.table`.
fn table_event(database: &str, table: &str) -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Glue Data Catalog Table State Change", "source": "aws.glue",
        "account": "123456789012", "time": "2026-12-07T18:57:21Z", "region": "us-east-1",
        "resources": [format!("arn:aws:glue:us-east-1:123456789012:table/{database}/{table}")],
        "detail": {
            "databaseName": database, "changedPartitions": [],
            "typeOfChange": "UpdateTable", "tableName": table,
        },
    })
    .to_string()
}

/// EventBridge's event for a Glue job run that changed state.
fn job_event(job: &str, run_id: &str, state: &str) -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Glue Job State Change", "source": "aws.glue",
        "account": "123456789012", "time": "2026-12-07T18:57:21Z", "region": "us-east-1",
        "resources": [],
        "detail": {
            "jobName": job, "severity": "INFO", "state": state,
            "jobRunId": run_id, "message": "Job run succeeded",
        },
    })
    .to_string()
}

async fn current_snapshot(server: &Server, table: &str) -> String {
    let page = server
        .expect(
            Method::GET,
            &format!("/v1/tables/{table}/snapshots"),
            None,
            200,
        )
        .await;
    page["catalog_state"]["current_snapshot_id"].to_string()
}

/// A commit shows in the log as soon as its event is read, with the
/// reconcile an hour away; garbage, truncated and foreign messages change
/// nothing, are counted, and leave the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_event_refreshes_its_table_at_once_and_other_messages_are_dropped() {
    let double = GlueDouble::start().await;
    let moto = double.lake.url.clone();
    let catalog = glue_catalog(&double.lake);
    py(&catalog, &["create", TABLE]).await;
    let queue = create_queue(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let config = double.config(dir.path());
    let server = Backend::Sqlite
        .server_with(&[
            "--config",
            &config,
            "--refresh-interval-seconds",
            "3600",
            "--events-queue-url",
            &queue,
        ])
        .await;
    server
        .expect(Method::PUT, &format!("/v1/tables/{TABLE}"), json!({}), 201)
        .await;
    // Read once; the next reconcile is an hour away.
    server
        .expect(
            Method::POST,
            &format!("/v1/tables/{TABLE}/refresh"),
            None,
            200,
        )
        .await;
    let log = server
        .expect(Method::GET, &format!("/v1/tables/{TABLE}"), None, 200)
        .await["snapshot_log"]
        .clone();
    assert_eq!(log["checked_by"], "on_demand", "{log}");
    let id = py(&catalog, &["append", TABLE, "2"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(
        current_snapshot(&server, TABLE).await,
        id,
        "no reconcile yet"
    );

    let (database, table) = TABLE.split_once('.').unwrap();
    send(&moto, &queue, &table_event(database, table)).await;
    let sent = Instant::now();
    crate::harness::until(
        "the event's refresh",
        Duration::from_secs(10),
        || async { json!(current_snapshot(&server, TABLE).await) },
        |current| current.as_str() == Some(id.as_str()),
        || server.log_text(),
    )
    .await;
    eprintln!("the commit showed {:?} after its event", sent.elapsed());
    // The table says how fresh its log is, and why.
    let log = server
        .expect(Method::GET, &format!("/v1/tables/{TABLE}"), None, 200)
        .await["snapshot_log"]
        .clone();
    assert_eq!(log["checked_by"], "event", "{log}");
    assert!(log["age_seconds"].as_i64().unwrap() <= 10, "{log}");
    assert_eq!(
        server
            .metric("sluice_snapshot_refreshes_total{cause=\"event\"}")
            .await,
        1
    );

    // What sluice cannot use: counted, dropped, deleted.
    for body in [
        "not json at all",
        &table_event(database, table)[..60],
        r#"{"version":"0","source":"aws.s3","detail-type":"Object Created","detail":{}}"#,
        &table_event("other", "unregistered"),
        &job_event("someone-elses-job", "jr_0000", "SUCCEEDED"),
    ] {
        send(&moto, &queue, body).await;
    }
    crate::harness::until(
        "every message handled",
        Duration::from_secs(30),
        || async {
            json!([
                server
                    .metric("sluice_aws_events_total{kind=\"malformed\"}")
                    .await,
                server
                    .metric("sluice_aws_events_total{kind=\"unknown\"}")
                    .await,
                server
                    .metric("sluice_aws_events_total{kind=\"table\"}")
                    .await,
                server
                    .metric("sluice_aws_events_total{kind=\"job_run\"}")
                    .await,
            ])
        },
        |n| *n == json!([2, 1, 2, 1]),
        || server.log_text(),
    )
    .await;
    crate::harness::until(
        "an empty queue",
        Duration::from_secs(30),
        || async { json!(left(&moto, &queue).await) },
        |n| *n == json!(0),
        || server.log_text(),
    )
    .await;
    assert_eq!(current_snapshot(&server, TABLE).await, id);
    let unknown = server
        .call(Method::GET, "/v1/tables/other.unregistered/snapshots", None)
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

/// A run's end shows as soon as its Job State Change event is read, long
/// before its next poll (polls back off to an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_state_change_event_reads_the_run_at_once() {
    let double = GlueDouble::start().await;
    let moto = double.lake.url.clone();
    double.create_job("evented-glue", 1).await;
    double
        .script(json!({ "outcomes": { "evented-glue": ["RUNNING"] } }))
        .await;
    let queue = create_queue(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let config = double.config(dir.path());
    let server = Backend::Sqlite
        .server_with(&[
            "--config",
            &config,
            "--run-poll-max-seconds",
            "3600",
            "--events-queue-url",
            &queue,
        ])
        .await;
    crate::scheduler::define(
        &server,
        "evented",
        json!({ "glue_job_name": "evented-glue", "kind": "export", "max_attempts": 1 }),
    )
    .await;
    let id = crate::scheduler::start(&server, "evented").await;
    let running = crate::scheduler::until(&server, &id, Duration::from_secs(20), |r| {
        r["glue_state"] == "RUNNING"
    })
    .await;
    let glue_run = running["glue_run_id"].as_str().unwrap().to_owned();
    // Polls back off (1, 2, 4, 8, 16 s...): past 17 s, the next is ~15 s
    // away.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let polls = double.calls("GetJobRun").await;
    double.finish("evented-glue").await;
    send(
        &moto,
        &queue,
        &job_event("evented-glue", &glue_run, "SUCCEEDED"),
    )
    .await;
    let sent = Instant::now();
    let done = crate::scheduler::until(&server, &id, Duration::from_secs(8), |r| {
        r["state"] == "succeeded"
    })
    .await;
    eprintln!("the run's end showed {:?} after its event", sent.elapsed());
    assert_eq!(done["glue_state"], "SUCCEEDED");
    // One GetJobRun confirmed it.
    assert_eq!(double.calls("GetJobRun").await, polls + 1);
}
