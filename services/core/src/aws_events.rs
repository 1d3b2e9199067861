//! AWS events that tell sluice of a change before its polls would: what
//! EventBridge delivers to sluice's SQS queue, parsed. Two kinds are used:
//! "Glue Data Catalog Table State Change" (a table's metadata moved: read
//! it now) and "Glue Job State Change" (a run ended: read it now). AWS
//! delivers these best effort, so each only hastens what the listing
//! reconcile and the run polls do anyway; anything else on the queue is
//! told apart, counted and dropped.

use serde::Deserialize;

/// What a message on the queue means to sluice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsEvent {
    /// A Glue table changed (`database.table`, in lower case).
    TableChanged { table: String },
    /// A Glue job run changed state.
    JobRunChanged {
        job_name: String,
        run_id: String,
        state: String,
    },
    /// An EventBridge event of another kind (a rule that sends more than
    /// sluice reads): dropped.
    Unknown { detail_type: String },
    /// Not an EventBridge event at all (a stray message, a truncated one).
    Malformed,
}

impl AwsEvent {
    /// The label it is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            AwsEvent::TableChanged { .. } => "table",
            AwsEvent::JobRunChanged { .. } => "job_run",
            AwsEvent::Unknown { .. } => "unknown",
            AwsEvent::Malformed => "malformed",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableDetail {
    database_name: String,
    table_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobDetail {
    job_name: String,
    job_run_id: String,
    state: String,
}

/// Parse one message body. Never fails: what sluice cannot use says why.
pub fn parse(body: &str) -> AwsEvent {
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        return AwsEvent::Malformed;
    };
    let detail = envelope.detail;
    match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        ("aws.glue", "Glue Data Catalog Table State Change") => {
            match serde_json::from_value::<TableDetail>(detail) {
                Ok(d) if !d.database_name.is_empty() && !d.table_name.is_empty() => {
                    AwsEvent::TableChanged {
                        table: format!("{}.{}", d.database_name, d.table_name).to_lowercase(),
                    }
                }
                _ => AwsEvent::Malformed,
            }
        }
        ("aws.glue", "Glue Job State Change") => {
            match serde_json::from_value::<JobDetail>(detail) {
                Ok(d) if !d.job_run_id.is_empty() => AwsEvent::JobRunChanged {
                    job_name: d.job_name,
                    run_id: d.job_run_id,
                    state: d.state,
                },
                _ => AwsEvent::Malformed,
            }
        }
        (_, detail_type) => AwsEvent::Unknown {
            detail_type: detail_type.chars().take(100).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_glue_events_are_read_as_aws_documents_them() {
        let table = r#"{"version":"0","id":"2617428d-715f-edef-70b9-dd2b28d23d24",
            "detail-type":"Glue Data Catalog Table State Change","source":"aws.glue",
            "account":"123456789012","time":"2026-12-07T18:57:21Z","region":"us-east-1",
            "resources":["arn:aws:glue:us-east-1:123456789012:table/Sales/Orders"],
            "detail":{"databaseName":"Sales","changedPartitions":[],
                      "typeOfChange":"UpdateTable","tableName":"Orders"}}"#;
        assert_eq!(
            parse(table),
            AwsEvent::TableChanged {
                table: "sales.orders".into()
            }
        );
        let job = r#"{"version":"0","id":"abcdef00-1234-5678-9abc-def012345678",
            "detail-type":"Glue Job State Change","source":"aws.glue",
            "account":"123456789012","time":"2026-12-07T18:57:21Z","region":"us-east-1",
            "resources":[],"detail":{"jobName":"ingest","severity":"INFO",
            "state":"SUCCEEDED","jobRunId":"jr_0123","message":"Job run succeeded"}}"#;
        assert_eq!(
            parse(job),
            AwsEvent::JobRunChanged {
                job_name: "ingest".into(),
                run_id: "jr_0123".into(),
                state: "SUCCEEDED".into()
            }
        );
    }

    #[test]
    fn garbage_truncated_and_foreign_messages_are_told_apart() {
        assert_eq!(parse("not json"), AwsEvent::Malformed);
        assert_eq!(
            parse(r#"{"source":"aws.glue","detail-type":"Glue Job"#),
            AwsEvent::Malformed
        );
        assert_eq!(parse("{}"), AwsEvent::Malformed);
        let no_run = r#"{"source":"aws.glue","detail-type":"Glue Job State Change","detail":{"jobName":"j"}}"#;
        assert_eq!(parse(no_run), AwsEvent::Malformed);
        let foreign = r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#;
        assert_eq!(parse(foreign).kind(), "unknown");
        let crawler =
            r#"{"source":"aws.glue","detail-type":"Glue Crawler State Change","detail":{}}"#;
        assert_eq!(parse(crawler).kind(), "unknown");
    }
}
