//! The Glue port over aws-sdk-glue.
//!
//! The client never retries by itself: `StartJobRun` has no idempotency
//! token, so an SDK retry after a lost answer would launch a second run.
//! The scheduler retries instead, after looking for the run by its stamp.

use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::operation::start_job_run::StartJobRunError;
use aws_sdk_glue::types::JobRun;
use aws_sdk_glue::Client;
use sluice_core::scheduling::glue::{
    GlueError, GlueFuture, GluePort, GlueRun, GlueState, RUN_ID_ARG,
};
use sluice_core::Millis;
use std::collections::BTreeMap;
use std::time::Duration;

/// Runs of one job `find_runs` looks through, newest first.
const LOOK_BACK: usize = 600;

pub struct Glue {
    region: Option<String>,
    endpoint_url: Option<String>,
    timeout: Duration,
    client: tokio::sync::OnceCell<Client>,
}

impl Glue {
    /// A client from the default AWS configuration chain, with `region`
    /// and `endpoint_url` (emulators) taking precedence; every call gives
    /// up after `timeout`.
    pub fn new(region: Option<String>, endpoint_url: Option<String>, timeout: Duration) -> Glue {
        Glue {
            region,
            endpoint_url,
            timeout,
            client: Default::default(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(self.timeout)
                            .build(),
                    );
                if let Some(region) = &self.region {
                    config = config.region(aws_config::Region::new(region.clone()));
                }
                if let Some(url) = &self.endpoint_url {
                    config = config.endpoint_url(url);
                }
                let config = config.load().await;
                warn_without_credentials(&config, self.timeout).await;
                Client::new(&config)
            })
            .await
    }
}

/// Say once, at the first Glue call, when the default chain finds no
/// credentials (a laptop without AWS): runs then stay `starting` with
/// the reason on each, and this says why in one line.
async fn warn_without_credentials(config: &aws_config::SdkConfig, timeout: Duration) {
    use aws_sdk_glue::config::ProvideCredentials;
    let found = match config.credentials_provider() {
        Some(provider) => {
            match tokio::time::timeout(timeout, provider.provide_credentials()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("none found within {timeout:?}")),
            }
        }
        None => Err("no credentials provider".to_owned()),
    };
    if let Err(why) = found {
        tracing::warn!(
            %why,
            "no AWS credentials found: sluice cannot start or follow Glue runs until there are \
             (environment, profile, or the task's or instance's role)"
        );
    }
}

/// A failed call: a refusal Glue means (bad input, no such job, no
/// access) or something that may pass (throttling, timeouts, 5xx).
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> GlueError {
    match &error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = format!("{code}: {}", e.message().unwrap_or_default());
            match code.as_str() {
                "ConcurrentRunsExceededException" => GlueError::ConcurrentRunsExceeded(message),
                "EntityNotFoundException"
                | "InvalidInputException"
                | "AccessDeniedException"
                | "ValidationException"
                | "IllegalWorkflowStateException" => GlueError::Refused(message),
                _ => GlueError::Unavailable(message),
            }
        }
        _ => GlueError::Unavailable(format!(
            "{}",
            aws_sdk_glue::error::DisplayErrorContext(&error)
        )),
    }
}

fn millis(t: Option<&aws_sdk_glue::primitives::DateTime>) -> Option<Millis> {
    t.and_then(|t| t.to_millis().ok()).map(Millis)
}

fn run_of(r: &JobRun) -> Result<GlueRun, GlueError> {
    let state = r
        .job_run_state()
        .and_then(|s| GlueState::parse(s.as_str()))
        .ok_or_else(|| {
            GlueError::Unavailable(format!("job run {:?} has no known state", r.id()))
        })?;
    let capacity_seconds = r
        .max_capacity()
        .map(|c| c * f64::from(r.execution_time()))
        .filter(|v| *v > 0.0);
    Ok(GlueRun {
        id: r.id().unwrap_or_default().to_owned(),
        state,
        started_on: millis(r.started_on()),
        completed_on: millis(r.completed_on()),
        dpu_seconds: r.dpu_seconds().or(capacity_seconds),
        error_message: r.error_message().map(str::to_owned),
        arguments: r
            .arguments()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

impl GluePort for Glue {
    fn start_job_run<'a>(
        &'a self,
        job: &'a str,
        arguments: &'a BTreeMap<String, String>,
    ) -> GlueFuture<'a, String> {
        Box::pin(async move {
            let answer = self
                .client()
                .await
                .start_job_run()
                .job_name(job)
                .set_arguments(Some(arguments.clone().into_iter().collect()))
                .send()
                .await;
            match answer {
                Ok(out) => out
                    .job_run_id()
                    .map(str::to_owned)
                    .ok_or_else(|| GlueError::Unavailable("StartJobRun answered no run id".into())),
                Err(SdkError::ServiceError(s))
                    if matches!(
                        s.err(),
                        StartJobRunError::ConcurrentRunsExceededException(_)
                    ) =>
                {
                    Err(GlueError::ConcurrentRunsExceeded(
                        s.err()
                            .message()
                            .unwrap_or("concurrent runs exceeded")
                            .to_owned(),
                    ))
                }
                Err(e) => Err(classify(e)),
            }
        })
    }

    fn find_runs<'a>(&'a self, job: &'a str, stamp: &'a str) -> GlueFuture<'a, Vec<GlueRun>> {
        Box::pin(async move {
            let client = self.client().await;
            let mut found = Vec::new();
            let mut seen = 0usize;
            let mut next: Option<String> = None;
            loop {
                let page = client
                    .get_job_runs()
                    .job_name(job)
                    .max_results(200)
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(classify)?;
                for r in page.job_runs() {
                    seen += 1;
                    let stamped = r
                        .arguments()
                        .and_then(|a| a.get(RUN_ID_ARG))
                        .is_some_and(|v| v == stamp);
                    if stamped {
                        found.push(run_of(r)?);
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() && seen < LOOK_BACK => next = Some(t.to_owned()),
                    _ => return Ok(found),
                }
            }
        })
    }

    fn get_job_run<'a>(&'a self, job: &'a str, run_id: &'a str) -> GlueFuture<'a, GlueRun> {
        Box::pin(async move {
            let out = self
                .client()
                .await
                .get_job_run()
                .job_name(job)
                .run_id(run_id)
                .send()
                .await
                .map_err(classify)?;
            let run = out
                .job_run()
                .ok_or_else(|| GlueError::Unavailable("GetJobRun answered no run".into()))?;
            run_of(run)
        })
    }

    fn stop_job_run<'a>(&'a self, job: &'a str, run_id: &'a str) -> GlueFuture<'a, ()> {
        Box::pin(async move {
            let out = self
                .client()
                .await
                .batch_stop_job_run()
                .job_name(job)
                .job_run_ids(run_id)
                .send()
                .await
                .map_err(classify)?;
            match out.errors().first() {
                None => Ok(()),
                Some(e) => {
                    let detail = e.error_detail();
                    let code = detail.and_then(|d| d.error_code()).unwrap_or("Unknown");
                    let message = detail.and_then(|d| d.error_message()).unwrap_or_default();
                    Err(GlueError::Refused(format!(
                        "BatchStopJobRun: {code}: {message}"
                    )))
                }
            }
        })
    }
}
