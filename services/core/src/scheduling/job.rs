//! Job definitions: which Glue job sluice starts, with what arguments, on
//! what schedule, and how hard it tries.

use super::cron::{CatchUp, Schedule};
use crate::names::{StreamName, TableName};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Ingestion,
    Hydration,
    Compaction,
    Export,
    Other,
}

/// Exponential back-off between failed attempts, with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The wait after the first failure; it doubles after each one.
    pub initial_seconds: u32,
    pub max_seconds: u32,
}

impl Backoff {
    /// The wait after the `failures`-th consecutive failure, with
    /// `jitter` in `[0, 1)` spreading it over its upper half ("equal
    /// jitter": never less than half the exponential wait, so retries of
    /// many runs do not arrive together and never come early).
    pub fn delay_ms(&self, failures: u32, jitter: f64) -> i64 {
        let exp = i64::from(self.initial_seconds)
            .saturating_mul(1i64 << failures.saturating_sub(1).min(30))
            .min(i64::from(self.max_seconds))
            .saturating_mul(1000);
        let half = exp / 2;
        half + ((exp - half) as f64 * jitter.clamp(0.0, 1.0)) as i64
    }
}

/// What a job definition says, as `PUT /v1/jobs/{name}` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub glue_job_name: String,
    pub kind: JobKind,
    /// Default job arguments (`--key` to value). Values may name
    /// `{table}`, `{stream}`, `{job}`, `{run_id}`, `{lease_id}` and
    /// `{token}`, filled in when a run starts.
    pub arguments: BTreeMap<String, String>,
    /// The table its runs are about (events are filed under it; `{table}`).
    pub table: Option<TableName>,
    pub stream: Option<StreamName>,
    /// Five-field cron; none: runs only on demand (or for compactions).
    pub schedule: Option<String>,
    /// The IANA zone the schedule is read in.
    pub timezone: String,
    pub catch_up: CatchUp,
    pub max_concurrent_runs: u32,
    /// Attempts before a run is dead-lettered (1: no retry).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// A run still going after this long is stopped and counts as failed.
    pub timeout_seconds: u32,
}

/// A stored job definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    pub spec: JobSpec,
    /// The next planned fire of its schedule.
    pub next_fire_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const PLACEHOLDERS: [&str; 6] = ["table", "stream", "job", "run_id", "lease_id", "token"];

/// A job name: what `PUT /v1/jobs/{name}` may use.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "job name `{name}` must be 1-255 letters, digits, `_`, `-` or `.`"
        ))
    }
}

/// Check a definition; answers its parsed schedule, if it has one.
pub fn check(spec: &JobSpec) -> Result<Option<Schedule>, String> {
    if spec.glue_job_name.trim().is_empty() || spec.glue_job_name.len() > 255 {
        return Err("glue_job_name must be 1-255 characters".into());
    }
    if !(1..=1000).contains(&spec.max_concurrent_runs) {
        return Err("max_concurrent_runs must be between 1 and 1000".into());
    }
    if !(1..=100).contains(&spec.max_attempts) {
        return Err("max_attempts must be between 1 and 100".into());
    }
    if spec.backoff.initial_seconds == 0 || spec.backoff.max_seconds < spec.backoff.initial_seconds
    {
        return Err(
            "backoff: initial_seconds must be at least 1 and max_seconds at least initial_seconds"
                .into(),
        );
    }
    if !(1..=7 * 24 * 3600).contains(&spec.timeout_seconds) {
        return Err("timeout_seconds must be between 1 and 604800 (7 days)".into());
    }
    for (key, value) in &spec.arguments {
        check_argument(key, value)?;
        check_template(value).map_err(|e| format!("argument `{key}`: {e}"))?;
    }
    match &spec.schedule {
        Some(cron) => Schedule::parse(cron, &spec.timezone).map(Some),
        None => {
            // The zone is still checked: a typo should not wait for a schedule.
            super::cron::zone(&spec.timezone)?;
            Ok(None)
        }
    }
}

/// One job argument as a caller gives it (a definition's default or a
/// run's own). Glue hands a job its arguments as `--key value` pairs on a
/// command line, where the job's parser cannot tell a value that reads as
/// an option from one: so no key may be one of sluice's own `--sluice*`
/// (in any case), and no value may start with `--`. Otherwise a caller
/// could hand the run another `--sluice-url` and have the job log in to
/// it with its own identity.
pub fn check_argument(key: &str, value: &str) -> Result<(), String> {
    let name = key.strip_prefix("--").unwrap_or_default();
    let name_ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('-');
    if !key.starts_with("--") || !name_ok {
        return Err(format!(
            "argument `{}` must be `--` then 1-128 letters, digits, `_`, `-` or `.`",
            key.escape_debug()
        ));
    }
    if name.to_ascii_lowercase().starts_with("sluice") {
        return Err(format!(
            "argument `{key}`: `--sluice*` arguments are set by sluice itself"
        ));
    }
    if value.starts_with("--") {
        return Err(format!(
            "argument `{key}`: a value may not start with `--` (the job would read it as an option)"
        ));
    }
    if value.len() > 4096 || value.chars().any(char::is_control) {
        return Err(format!(
            "argument `{key}`: a value is at most 4096 characters, without control characters"
        ));
    }
    Ok(())
}

/// Every `{name}` in `value` is a known placeholder (`{{` and `}}` are
/// literal braces).
fn check_template(value: &str) -> Result<(), String> {
    fill(value, &|name| {
        PLACEHOLDERS
            .contains(&name)
            .then(String::new)
            .ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    PLACEHOLDERS.join(", ")
                )
            })
    })
    .map(|_| ())
}

/// Replace each `{name}` in `value` by what `lookup` answers.
pub fn fill(
    value: &str,
    lookup: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let Some(stripped) = tail.strip_prefix('{') {
            let end = stripped
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{value}`"))?;
            out.push_str(&lookup(&stripped[..end])?);
            rest = &stripped[end + 1..];
        } else {
            return Err(format!("unmatched `}}` in `{value}` (write `}}}}`)"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The values a run's arguments are filled with.
#[derive(Debug, Clone, Default)]
pub struct TemplateValues {
    pub job: String,
    pub run_id: String,
    pub table: Option<String>,
    pub stream: Option<String>,
    pub lease_id: Option<String>,
    pub token: Option<String>,
}

/// A run's arguments: the definition's defaults overridden by the run's
/// own, each filled in. A placeholder with no value is an error.
pub fn resolve_arguments(
    defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    values: &TemplateValues,
) -> Result<BTreeMap<String, String>, String> {
    let lookup = |name: &str| -> Result<String, String> {
        let v = match name {
            "job" => Some(values.job.clone()),
            "run_id" => Some(values.run_id.clone()),
            "table" => values.table.clone(),
            "stream" => values.stream.clone(),
            "lease_id" => values.lease_id.clone(),
            "token" => values.token.clone(),
            _ => return Err(format!("unknown placeholder `{{{name}}}`")),
        };
        v.ok_or_else(|| format!("placeholder `{{{name}}}` has no value for this run"))
    };
    let mut out = BTreeMap::new();
    for (key, value) in defaults.iter().chain(overrides) {
        check_argument(key, value)?;
        let filled = fill(value, &lookup).map_err(|e| format!("argument `{key}`: {e}"))?;
        // What a placeholder brought in is checked too.
        check_argument(key, &filled)?;
        out.insert(key.clone(), filled);
    }
    Ok(out)
}
