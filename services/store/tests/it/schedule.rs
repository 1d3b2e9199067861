//! The scheduler's tick reads what is open, not the history: with 10,000
//! finished runs kept, its reads on DynamoDB cost what the few open runs
//! and due jobs cost; and finished runs go with the retention.

use crate::support::every;
use sluice_core::scheduling::run::NewRun;
use sluice_core::scheduling::Trigger;
use sluice_core::scheduling::{Backoff, CatchUp, Job, JobKind, JobSpec, Run, RunId, RunState};
use sluice_core::Millis;
use sluice_store::{
    system_now, RunQuery, ScheduleWrite, Store, StoreConfig, Versioned, WriterConfig, Written,
};
use std::collections::BTreeMap;

const FINISHED: usize = 10_000;

fn job(name: &str, next_fire_at: Option<Millis>, now: Millis) -> Job {
    Job {
        name: name.into(),
        spec: JobSpec {
            glue_job_name: "glue-job".into(),
            kind: JobKind::Other,
            arguments: BTreeMap::new(),
            table: None,
            stream: None,
            schedule: Some("0 * * * *".into()),
            timezone: "UTC".into(),
            catch_up: CatchUp::Once,
            max_concurrent_runs: 1,
            max_attempts: 1,
            backoff: Backoff {
                initial_seconds: 60,
                max_seconds: 600,
            },
            timeout_seconds: 3600,
        },
        next_fire_at,
        created_at: now,
        updated_at: now,
    }
}

fn run(job: &str, state: RunState, now: Millis) -> Run {
    let mut run = NewRun {
        id: RunId(uuid::Uuid::now_v7()),
        job: job.into(),
        glue_job_name: "glue-job".into(),
        trigger: Trigger::Manual,
        table: None,
        arguments: BTreeMap::new(),
        sluice_arguments: BTreeMap::new(),
        max_attempts: 1,
        backoff: Backoff {
            initial_seconds: 60,
            max_seconds: 600,
        },
        timeout_seconds: 3600,
        compaction_id: None,
    }
    .queue(now);
    run.state = state;
    run
}

async fn write(store: &Store, runs: Vec<Run>) {
    let w = ScheduleWrite {
        runs: runs
            .into_iter()
            .map(|value| Versioned { value, version: 0 })
            .collect(),
        ..Default::default()
    };
    assert_eq!(store.write_schedule(&w).await.unwrap(), Written::Done);
}

/// DynamoDB: the finished runs put as the store lays them out, 25 to a
/// BatchWriteItem. Through the store's transactions it would take minutes:
/// moto copies the whole table for each one, to undo it if cancelled.
/// (Put so, an open run has no `run-open` item: as an older sluice wrote it.)
async fn seed(config: &sluice_store::DynamoConfig, runs: &[Run]) {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    let client = client(config).await;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    for chunk in runs.chunks(25) {
        let puts: Vec<WriteRequest> = chunk
            .iter()
            .map(|r| {
                let put = PutRequest::builder()
                    .item("pk", s("run"))
                    .item("sk", s(&r.id.to_string()))
                    .item("doc", s(&serde_json::to_string(r).unwrap()))
                    .item("v", n(1))
                    .item("job", s(&r.job))
                    .item("state", s(r.state.as_str()))
                    .item("due", n(r.due_at.0))
                    .item("created", n(r.created_at.0))
                    .build()
                    .unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let out = client
            .batch_write_item()
            .request_items(config.table(), puts)
            .send()
            .await
            .unwrap();
        assert!(out.unprocessed_items.unwrap_or_default().is_empty());
    }
}

async fn client(config: &sluice_store::DynamoConfig) -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(config.endpoint.clone().unwrap())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// Everything a scheduler tick and a metrics scrape read.
async fn tick(store: &Store, now: Millis) -> (Vec<String>, Vec<RunState>, u32, Vec<(String, i64)>) {
    let due: Vec<String> = store
        .due_jobs(now, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    let active: Vec<RunState> = store
        .active_runs(now, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value.state)
        .collect();
    let occupying = store.occupying("hourly").await.unwrap();
    let queued = RunQuery {
        job: Some("hourly".into()),
        state: Some(RunState::Queued),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(store.runs(&queued).await.unwrap().len(), 1);
    let counts = store.run_counts().await.unwrap();
    store.lease_counts().await.unwrap();
    (due, active, occupying, counts)
}

#[tokio::test]
async fn a_tick_reads_no_finished_run_and_finished_runs_go_with_the_retention() {
    for b in every().await {
        let store = &b.store;
        let now = system_now();
        let past = Millis(now.0 - 60_000);
        store
            .put_job(&job("hourly", Some(past), now))
            .await
            .unwrap();
        store
            .put_job(&job("later", Some(Millis(now.0 + 3_600_000)), now))
            .await
            .unwrap();
        store.put_job(&job("manual", None, now)).await.unwrap();
        // The history: 10,000 finished runs, 40 to a transaction.
        let finished: Vec<Run> = (0..FINISHED)
            .map(|i| {
                let state = [RunState::Succeeded, RunState::Failed, RunState::Cancelled][i % 3];
                run("hourly", state, past)
            })
            .collect();
        match &b.config {
            StoreConfig::Dynamo(config) => seed(config, &finished).await,
            _ => {
                for chunk in finished.chunks(40) {
                    write(store, chunk.to_vec()).await;
                }
            }
        }
        // The history reads as the store's own.
        let newest = RunQuery {
            limit: 10,
            newest_first: true,
            ..Default::default()
        };
        assert_eq!(store.runs(&newest).await.unwrap().len(), 10, "{}", b.name);
        write(
            store,
            vec![
                run("hourly", RunState::Queued, past),
                run("hourly", RunState::Running, past),
                run("hourly", RunState::DeadLetter, past),
            ],
        )
        .await;

        let before = store.items_read();
        let (due, active, occupying, counts) = tick(store, now).await;
        let read = store.items_read().zip(before).map(|(a, b)| a - b);
        assert_eq!(due, ["hourly"], "{}", b.name);
        let mut active = active;
        active.sort_by_key(|s| s.as_str());
        assert_eq!(active, [RunState::Queued, RunState::Running], "{}", b.name);
        assert_eq!(occupying, 1, "{}", b.name);
        let counts: Vec<(&str, i64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        assert_eq!(
            counts,
            [("dead_letter", 1), ("queued", 1), ("running", 1)],
            "{}: the gauge counts runs not finished",
            b.name
        );
        if let Some(read) = read {
            // The open runs' index (3 items, read by four calls), the due
            // job's index item and its job, the open runs fetched: tens of
            // items whatever the history holds.
            assert!(
                (1..=40).contains(&read),
                "{}: a tick read {read} items",
                b.name
            );
        }

        // A job's fire moves its index item: due no more, then due again.
        let w = ScheduleWrite {
            fires: vec![("hourly".into(), Some(past), Some(Millis(now.0 + 60_000)))],
            ..Default::default()
        };
        assert_eq!(store.write_schedule(&w).await.unwrap(), Written::Done);
        assert!(
            store.due_jobs(now, 100).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        store
            .put_job(&job("hourly", Some(past), now))
            .await
            .unwrap();
        assert_eq!(
            store.due_jobs(now, 100).await.unwrap().len(),
            1,
            "{}",
            b.name
        );
        assert!(store.delete_job("hourly").await.unwrap());
        assert!(
            store.due_jobs(now, 100).await.unwrap().is_empty(),
            "{}",
            b.name
        );

        // A run that finishes leaves the open index with its write.
        let mut open = store.active_runs(now, 100).await.unwrap();
        let mut done = open.remove(0);
        done.value.state = RunState::Succeeded;
        let w = ScheduleWrite {
            runs: vec![done],
            ..Default::default()
        };
        assert_eq!(store.write_schedule(&w).await.unwrap(), Written::Done);
        assert_eq!(
            store.active_runs(now, 100).await.unwrap().len(),
            1,
            "{}",
            b.name
        );

        // The retention: finished runs created before the cutoff go, the
        // open and dead-lettered ones stay.
        let ahead = Millis(system_now().0 + 60_000);
        let pruned = store.prune(ahead, 1_000_000).await.unwrap();
        assert!(pruned > FINISHED as u64, "{}: pruned {pruned}", b.name);
        let all = RunQuery {
            limit: 100,
            ..Default::default()
        };
        let mut kept: Vec<RunState> = store
            .runs(&all)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.state)
            .collect();
        kept.sort_by_key(|s| s.as_str());
        assert_eq!(
            kept,
            [RunState::DeadLetter, RunState::Running],
            "{}",
            b.name
        );
    }
}

/// A table an older sluice wrote has no index items: a replica refuses to
/// start on it until `sluice migrate` has built them, and then its open
/// runs and due jobs are found.
#[tokio::test]
async fn migrate_indexes_what_an_older_sluice_wrote_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let b = crate::support::dynamodb().await;
    let StoreConfig::Dynamo(config) = &b.config else {
        unreachable!("a DynamoDB backend")
    };
    let now = system_now();
    let past = Millis(now.0 - 60_000);
    b.store
        .put_job(&job("hourly", Some(past), now))
        .await
        .unwrap();
    seed(config, &[run("hourly", RunState::Queued, past)]).await;
    // As the older layout: no `job-fire` items, no marker.
    let client = client(config).await;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let fires = client
        .query()
        .table_name(config.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("job-fire"))
        .send()
        .await
        .unwrap();
    for (pk, sk) in fires
        .items()
        .iter()
        .map(|i| (i["pk"].clone(), i["sk"].clone()))
        .chain([(s("meta"), s("indexes"))])
    {
        client
            .delete_item()
            .table_name(config.table())
            .key("pk", pk)
            .key("sk", sk)
            .send()
            .await
            .unwrap();
    }
    let refused = Store::open(&b.config, WriterConfig::default()).await;
    let error = refused
        .err()
        .expect("an older table is refused")
        .to_string();
    assert!(error.contains("sluice migrate"), "{error}");

    Store::migrate(&b.config).await.unwrap();
    let store = Store::open(&b.config, WriterConfig::default())
        .await
        .unwrap();
    assert_eq!(store.active_runs(now, 10).await.unwrap().len(), 1);
    let due = store.due_jobs(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    // A second migrate finds the marker and builds nothing again.
    Store::migrate(&b.config).await.unwrap();
    assert_eq!(store.active_runs(now, 10).await.unwrap().len(), 1);
}
