//! The AWS events queue: an SQS queue that EventBridge rules feed with
//! Glue's "Data Catalog Table State Change" and "Job State Change" events
//! (`deploy/terraform/aws/events.tf` makes them). The leader long-polls it
//! and hastens what the reconcile and the run polls would do anyway: a
//! changed table is refreshed now, a run whose state changed is read now
//! (one `GetJobRun` confirms it; the event alone changes nothing). Every
//! message is deleted once handled; what sluice cannot use (malformed,
//! unknown, or about a table or run it does not know) is counted and
//! dropped. AWS delivers these events best effort: a lost one only waits
//! for the next reconcile or poll.

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use sluice_core::aws_events::{self, AwsEvent};
use sluice_core::TableName;
use sluice_store::{Leadership, Nudges, Store};
use std::time::Duration;
use tokio::sync::mpsc;

/// A Glue run whose state changed, by job name and Glue's run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunChanged {
    pub job_name: String,
    pub run_id: String,
}

/// Where the events come from.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub queue_url: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// The long-poll's wait (SQS's longest).
const WAIT_SECONDS: i32 = 20;
/// After a failed receive.
const BACK_OFF: Duration = Duration::from_secs(5);

/// Start reading the queue while this replica leads. Changed runs go to
/// the scheduler's loop through the returned receiver.
pub fn spawn_listener(
    config: EventsConfig,
    store: Store,
    nudges: Nudges,
    mut leadership: Leadership,
) -> (mpsc::Receiver<RunChanged>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        let sqs = client(&config).await;
        tracing::info!(queue = %config.queue_url, "reading AWS events from SQS on the leader");
        loop {
            leadership.until_leading().await;
            let received = sqs
                .receive_message()
                .queue_url(&config.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECONDS)
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "reading the AWS events queue failed");
                    tokio::time::sleep(BACK_OFF).await;
                    continue;
                }
            };
            let mut handled = Vec::new();
            for (i, message) in messages.iter().enumerate() {
                let event = aws_events::parse(message.body().unwrap_or_default());
                tracing::debug!(?event, "an AWS event");
                store.stats().aws_event(event.kind());
                match event {
                    AwsEvent::TableChanged { table } => {
                        // A table sluice does not know is dropped by the
                        // refresh (not registered): no catalog call.
                        if let Ok(table) = TableName::parse(&table) {
                            nudges.changed(table);
                        }
                    }
                    AwsEvent::JobRunChanged {
                        job_name, run_id, ..
                    } => {
                        let _ = tx.try_send(RunChanged { job_name, run_id });
                    }
                    AwsEvent::Unknown { detail_type } => {
                        tracing::debug!(%detail_type, "an AWS event sluice does not read: dropped");
                    }
                    AwsEvent::Malformed => {
                        tracing::debug!("a message that is no AWS event: dropped");
                    }
                }
                if let Some(handle) = message.receipt_handle() {
                    handled.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(handle)
                            .build()
                            .expect("id and handle are set"),
                    );
                }
            }
            if handled.is_empty() {
                continue;
            }
            let deleted = sqs
                .delete_message_batch()
                .queue_url(&config.queue_url)
                .set_entries(Some(handled))
                .send()
                .await;
            if let Err(e) = deleted {
                // They come back after the visibility timeout: handled
                // twice, which is harmless (a refresh, a read).
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "deleting handled AWS events failed");
            }
        }
    });
    (rx, task)
}

/// An SQS client: the default AWS chain, `[aws]` region and endpoint
/// first; a call gives up after longer than the long-poll's wait.
async fn client(config: &EventsConfig) -> aws_sdk_sqs::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(WAIT_SECONDS as u64 + 10))
            .build(),
    );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}
