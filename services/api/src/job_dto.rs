//! Bodies of the scheduling routes: job definitions, runs, compactions.

use crate::dto::in_range;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use sluice_core::scheduling::{Backoff, CatchUp, Compaction, Job, JobKind, JobSpec, Run, RunState};
use sluice_core::{Millis, StreamName, TableName};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

const KINDS: [(&str, JobKind); 5] = [
    ("ingestion", JobKind::Ingestion),
    ("hydration", JobKind::Hydration),
    ("compaction", JobKind::Compaction),
    ("export", JobKind::Export),
    ("other", JobKind::Other),
];

fn kind_name(kind: JobKind) -> &'static str {
    KINDS.iter().find(|k| k.1 == kind).map_or("other", |k| k.0)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutJobBody {
    /// The Glue job sluice starts.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[\s\S]*[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][\s\S]*$"
    )]
    pub glue_job_name: String,
    /// `ingestion`, `hydration`, `compaction`, `export` or `other`.
    #[schema(value_type = JobKindName, inline)]
    pub kind: String,
    /// Default job arguments, `--key` to value. Values may name `{table}`,
    /// `{stream}`, `{job}`, `{run_id}`, and for compaction jobs
    /// `{lease_id}` and `{token}`. `--sluice-*` are sluice's own.
    #[serde(default)]
    #[schema(schema_with = default_arguments_schema)]
    pub arguments: BTreeMap<String, String>,
    /// The table its runs are about (`{table}`; events are filed under it).
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")]
    pub table: Option<String>,
    /// The stream its runs feed (`{stream}`).
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")]
    pub stream: Option<String>,
    /// A five-field cron (`*/5 * * * *`, `0 2 * * mon-fri`, `@daily`);
    /// absent: on demand only.
    #[serde(default)]
    #[schema(schema_with = schedule_schema)]
    pub schedule: Option<String>,
    /// The IANA zone the schedule is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Fires missed while sluice was down: `once` (default: one run for
    /// them all) or `skip`.
    #[serde(default)]
    #[schema(value_type = Option<CatchUpName>, inline)]
    pub catch_up: Option<String>,
    /// Default 1 (what Glue job bookmarks require).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent_runs: Option<i64>,
    /// Attempts before a run is dead-lettered (default 3; 1: no retry).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i64>,
    /// Wait after the first failure (default 30), doubling, with jitter.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub backoff_seconds: Option<i64>,
    /// Longest wait between attempts (default 900).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub max_backoff_seconds: Option<i64>,
    /// A run going longer is stopped and counts as failed (default 172800,
    /// Glue's own default of 48 hours).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout_seconds: Option<i64>,
}

impl PutJobBody {
    pub fn into_spec(self) -> Result<JobSpec, ApiError> {
        let kind = KINDS
            .iter()
            .find(|k| k.0 == self.kind)
            .map(|k| k.1)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "kind `{}` must be one of ingestion, hydration, compaction, export, other",
                    self.kind
                ))
            })?;
        let catch_up = match self.catch_up.as_deref() {
            None | Some("once") => CatchUp::Once,
            Some("skip") => CatchUp::Skip,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "catch_up `{other}` must be `once` or `skip`"
                )))
            }
        };
        let table = self
            .table
            .as_deref()
            .map(TableName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(e.0))?;
        if let Some(table) = table.as_ref().filter(|t| t.is_reserved()) {
            return Err(ApiError::invalid(format!(
                "`{table}` is reserved for sluice itself: a job cannot run on it"
            )));
        }
        let stream = self
            .stream
            .as_deref()
            .map(StreamName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(e.0))?;
        let initial = in_range(
            "backoff_seconds",
            self.backoff_seconds.unwrap_or(30),
            1,
            86400,
        )?;
        Ok(JobSpec {
            glue_job_name: self.glue_job_name,
            kind,
            arguments: self.arguments,
            table,
            stream,
            schedule: self.schedule,
            timezone: self.timezone.unwrap_or_else(|| "UTC".into()),
            catch_up,
            max_concurrent_runs: in_range(
                "max_concurrent_runs",
                self.max_concurrent_runs.unwrap_or(1),
                1,
                1000,
            )?,
            max_attempts: in_range("max_attempts", self.max_attempts.unwrap_or(3), 1, 100)?,
            backoff: Backoff {
                initial_seconds: initial,
                max_seconds: in_range(
                    "max_backoff_seconds",
                    self.max_backoff_seconds
                        .unwrap_or(900.max(i64::from(initial))),
                    1,
                    86400,
                )?,
            },
            timeout_seconds: in_range(
                "timeout_seconds",
                self.timeout_seconds.unwrap_or(172_800),
                1,
                604_800,
            )?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobBody {
    pub name: String,
    pub glue_job_name: String,
    pub kind: String,
    pub arguments: BTreeMap<String, String>,
    pub table: Option<String>,
    pub stream: Option<String>,
    pub schedule: Option<String>,
    pub timezone: String,
    pub catch_up: String,
    pub max_concurrent_runs: u32,
    pub max_attempts: u32,
    pub backoff_seconds: u32,
    pub max_backoff_seconds: u32,
    pub timeout_seconds: u32,
    /// The next planned fire of its schedule.
    pub next_fire_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Job> for JobBody {
    fn from(j: Job) -> JobBody {
        let s = j.spec;
        JobBody {
            name: j.name,
            glue_job_name: s.glue_job_name,
            kind: kind_name(s.kind).to_owned(),
            arguments: s.arguments,
            table: s.table.map(String::from),
            stream: s.stream.map(String::from),
            schedule: s.schedule,
            timezone: s.timezone,
            catch_up: match s.catch_up {
                CatchUp::Once => "once",
                CatchUp::Skip => "skip",
            }
            .to_owned(),
            max_concurrent_runs: s.max_concurrent_runs,
            max_attempts: s.max_attempts,
            backoff_seconds: s.backoff.initial_seconds,
            max_backoff_seconds: s.backoff.max_seconds,
            timeout_seconds: s.timeout_seconds,
            next_fire_at: j.next_fire_at.map(Millis::to_rfc3339),
            created_at: j.created_at.to_rfc3339(),
            updated_at: j.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<JobBody>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Continue after this name (or id): the previous page's `next_after`.
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunBody {
    /// Arguments for this run, over the job's defaults.
    #[serde(default)]
    #[schema(schema_with = run_arguments_schema)]
    pub arguments: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunBody {
    pub id: String,
    pub job: String,
    pub glue_job_name: String,
    /// `queued`, `starting`, `running`, `succeeded`, `retrying`,
    /// `dead_letter`, `failed` (a discarded dead letter) or `cancelled`.
    pub state: String,
    /// Why it exists: `{"kind":"schedule","fire_at","missed"}`,
    /// `{"kind":"manual"}` or `{"kind":"compaction","compaction_id"}`.
    #[schema(value_type = Object)]
    pub trigger: serde_json::Value,
    pub table: Option<String>,
    /// The job arguments it runs with (sluice's own `--sluice-*` aside).
    pub arguments: BTreeMap<String, String>,
    /// Attempts launched in Glue.
    pub attempt: u32,
    /// Failed attempts since it was queued or last retried by hand.
    pub failures: u32,
    pub max_attempts: u32,
    pub glue_run_id: Option<String>,
    /// The Glue run's state as last polled (`RUNNING`, `WAITING`...).
    pub glue_state: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Queued or retrying: when it may start next.
    pub next_attempt_at: Option<String>,
    pub dpu_seconds: Option<f64>,
    pub error: Option<String>,
    /// A cancel was asked; the leader stops its Glue run.
    pub cancel_requested: bool,
    pub compaction_id: Option<String>,
}

impl From<Run> for RunBody {
    fn from(r: Run) -> RunBody {
        let waiting = matches!(r.state, RunState::Queued | RunState::Retrying);
        RunBody {
            id: r.id.to_string(),
            job: r.job,
            glue_job_name: r.glue_job_name,
            state: r.state.as_str().to_owned(),
            trigger: serde_json::to_value(&r.trigger).unwrap_or_default(),
            table: r.table.map(String::from),
            arguments: r.arguments,
            attempt: r.attempt,
            failures: r.failures,
            max_attempts: r.max_attempts,
            glue_run_id: r.glue_run_id,
            glue_state: r.glue_state.map(|s| s.as_str().to_owned()),
            created_at: r.created_at.to_rfc3339(),
            updated_at: r.updated_at.to_rfc3339(),
            started_at: r.started_at.map(Millis::to_rfc3339),
            ended_at: r.ended_at.map(Millis::to_rfc3339),
            next_attempt_at: waiting.then(|| r.due_at.to_rfc3339()),
            dpu_seconds: r.dpu_seconds,
            error: r.error,
            cancel_requested: r.cancel_requested,
            compaction_id: r.compaction_id.map(|c| c.to_string()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunsPage {
    pub runs: Vec<RunBody>,
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// Only runs of this job.
    pub job: Option<String>,
    /// Only runs in this state.
    #[param(value_type = Option<RunStateName>, inline)]
    pub state: Option<String>,
    /// Only runs created at or after this instant (RFC 3339).
    #[param(
        pattern = r"^[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|[12][0-9]))[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]|[+-][0-9]):([0-5][0-9]|[+-][0-9]))$"
    )]
    pub since: Option<String>,
    /// Continue after this run id: the previous page's `next_after`.
    #[param(
        pattern = r"^(|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|\{[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})$"
    )]
    pub after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `oldest` first (the default) or `newest` first.
    pub order: Option<RunOrder>,
}

/// The order of a page of runs: by creation, `oldest` or `newest` first.
/// (A query parameter's schema: registered in the spec by `ApiDoc`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunOrder {
    Oldest,
    Newest,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCompactionBody {
    /// Who asks (a scheduler's name), recorded with the request.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[\s\S]*[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][\s\S]*$"
    )]
    pub requested_by: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// Do not ask for the write lease before this instant (RFC 3339).
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|[12][0-9]))[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]|[+-][0-9]):([0-5][0-9]|[+-][0-9]))$"
    )]
    pub not_before: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompactionBody {
    pub id: String,
    pub table: String,
    /// `queued`, `waiting` (its write lease queues behind readers),
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub requested_by: String,
    pub reason: Option<String>,
    pub not_before: String,
    pub created_at: String,
    pub updated_at: String,
    /// The sluice job that compacts the table.
    pub job: String,
    pub lease_id: Option<String>,
    /// The fencing token of its write lease: the job writes it into the
    /// snapshot summary as `sluice.lease-token`.
    pub token: Option<i64>,
    /// The runs started for it, oldest first.
    pub runs: Vec<String>,
    pub failures: u32,
    pub max_attempts: u32,
    /// The table's current snapshot when the lease was granted.
    pub base_snapshot_id: Option<i64>,
    /// The rewrite snapshot that proved the compaction.
    pub result_snapshot_id: Option<i64>,
    /// `no_new_snapshot`, `fence_mismatch`, `run_failed` or `lease_lost`.
    pub failure: Option<String>,
    pub error: Option<String>,
    pub ended_at: Option<String>,
}

impl From<Compaction> for CompactionBody {
    fn from(c: Compaction) -> CompactionBody {
        CompactionBody {
            id: c.id.to_string(),
            table: c.table.to_string(),
            state: c.state.as_str().to_owned(),
            requested_by: c.requested_by,
            reason: c.reason,
            not_before: c.not_before.to_rfc3339(),
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
            job: c.job,
            lease_id: c.lease_id.map(|l| l.to_string()),
            token: c.token,
            runs: c.runs.iter().map(|r| r.to_string()).collect(),
            failures: c.failures,
            max_attempts: c.max_attempts,
            base_snapshot_id: c.base_snapshot_id,
            result_snapshot_id: c.result_snapshot_id,
            failure: c.failure.map(|f| f.as_str().to_owned()),
            error: c.error,
            ended_at: c.ended_at.map(Millis::to_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompactionsPage {
    /// Newest first.
    pub compactions: Vec<CompactionBody>,
    /// Pass as `before` for older ones; absent on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompactionQueueBody {
    /// Oldest first.
    pub compactions: Vec<CompactionBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompactionParams {
    /// Only compactions older than this id.
    #[param(
        pattern = r"^(|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|\{[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})$"
    )]
    pub before: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The schema of a job's `kind`: one of [`KINDS`].
pub struct JobKindName;

impl utoipa::PartialSchema for JobKindName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::dto::name_enum(KINDS.iter().map(|k| k.0))
    }
}

impl ToSchema for JobKindName {}

/// The schema of a job's `catch_up`.
pub struct CatchUpName;

impl utoipa::PartialSchema for CatchUpName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::dto::name_enum(["once", "skip"])
    }
}

impl ToSchema for CatchUpName {}

/// The schema of a run state filter (`state=dead_letter`).
pub struct RunStateName;

impl utoipa::PartialSchema for RunStateName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::dto::name_enum(RunState::ALL.iter().map(|s| s.as_str()))
    }
}

impl ToSchema for RunStateName {}

/// Job arguments as `sluice_core::scheduling::job::check_argument` and its
/// placeholder check take them: a key is `--` then 1 to 128 letters,
/// digits, `_`, `-` or `.` (not `-` first, not `sluice...` in any case);
/// a value does not start with `--`, has no control characters, and names
/// only known placeholders (`{{` and `}}` are literal braces). Not said:
/// which placeholders a job may use (its `table`, `stream`, its kind), and
/// that a value is at most 4096 bytes (a `maxLength` beside this pattern
/// stalls schemathesis's coverage phase, which builds a value that long).
fn arguments_schema(description: &str) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(
                    r"^--(?![Ss][Ll][Uu][Ii][Cc][Ee])[A-Za-z0-9_.][A-Za-z0-9_.-]{0,127}$",
                )),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(
                    r"^(?!--)(\{\{|\}\}|\{(table|stream|job|run_id|lease_id|token)\}|[^{}\u0000-\u001F\u007F-\u009F])*$",
                )),
        ))
        .build()
}

fn default_arguments_schema() -> utoipa::openapi::schema::Object {
    arguments_schema(
        "Default job arguments, `--key` to value. Values may name `{table}`,\n\
         `{stream}`, `{job}`, `{run_id}`, and for compaction jobs\n\
         `{lease_id}` and `{token}`. `--sluice-*` are sluice's own.",
    )
}

fn run_arguments_schema() -> utoipa::openapi::schema::Object {
    arguments_schema("Arguments for this run, over the job's defaults.")
}

/// A schedule as `sluice_core::scheduling::cron::Cron::parse` reads it:
/// one of its `@` names, or five whitespace-separated fields of comma
/// lists of `*`, `N` or `A-B`, each with an optional `/STEP`, numbers in
/// the field's range (as `u32` reads them: `+` and leading zeros allowed),
/// months and weekdays also by name in any case. Not said: that a range
/// runs forwards, and that the days named exist in some month.
fn schedule_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    // `char::is_whitespace`, which trims the expression and splits its fields.
    const WS: &str = r"[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
    fn field(number: &str, step: &str, names: &[&str]) -> String {
        let mut value = format!(r"\+?0*({number})");
        if !names.is_empty() {
            let names: Vec<String> = names
                .iter()
                .map(|n| {
                    n.chars()
                        .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c))
                        .collect()
                })
                .collect();
            value = format!("({value}|{})", names.join("|"));
        }
        let part = format!(r"(\*|{value}(-{value})?)(/\+?0*({step}))?");
        format!("{part}(,{part})*")
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let fields = [
        field("[1-5]?[0-9]", "[1-5][0-9]|[1-9]", &[]),
        field("1?[0-9]|2[0-3]", "1[0-9]|2[0-3]|[1-9]", &[]),
        field("[12][0-9]|3[01]|[1-9]", "[12][0-9]|3[01]|[1-9]", &[]),
        field("1[0-2]|[1-9]", "1[0-2]|[1-9]", &MONTHS),
        field("[0-7]", "[1-7]", &DAYS),
    ];
    let pattern = format!(
        "^{WS}*(@(hourly|daily|midnight|weekly|monthly|yearly|annually)|{}){WS}*$",
        fields.join(&format!("{WS}+"))
    );
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "A five-field cron (`*/5 * * * *`, `0 2 * * mon-fri`, `@daily`);\nabsent: on demand only.",
        ))
        .pattern(Some(pattern))
        .build()
}
