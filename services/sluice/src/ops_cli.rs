//! The operator commands (`sluice tables`, `sluice leases ls`, ...): calls
//! of a running server through the typed client, printed as aligned
//! tables for people or as the API's own JSON (`--json`) for scripts.

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use sluice_api::hydration_dto::HydrationBody;
use sluice_api::job_dto::RequestCompactionBody;
use sluice_api::stream_dto::{ResetBody, RewindBody};
use sluice_api::view_dto::{RemapBody, RollbackBody};
use sluice_client::client::{Client, Error};
use sluice_client::feed::FeedItem;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// The exit codes a script can rely on (also in `sluice --help`).
pub const EXIT_CODES: &str = "Exit codes of the client commands: 0 done; 2 bad usage; \
3 not found (404); 4 refused as invalid or conflicting (400, 409, 412, 422); \
5 not authenticated or not allowed (401, 403); 6 the server is unreachable, \
busy or failing (no answer, 429, 5xx); 7 what --wait or --follow waited \
for ended badly (a compaction failed, a hydration failed).";

#[derive(Args)]
pub struct Connection {
    /// The server's URL.
    #[arg(
        long,
        env = "SLUICE_URL",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    url: String,
    /// A bearer token (operator or admin for changes).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum OpsCmd {
    /// List tables with their lease counts.
    Tables {
        #[command(flatten)]
        conn: Connection,
        /// Only tables whose names start with this (e.g. `sales.`).
        #[arg(long)]
        prefix: Option<String>,
        /// Continue after this table name.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// A table's leases; one lease; revoke one.
    Leases {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Hydrations: list, show (and follow), cancel.
    Hydrations {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: HydrationCmd,
    },
    /// Ask for a table's compaction; `--wait` follows it to its end.
    Compact {
        #[command(flatten)]
        conn: Connection,
        table: String,
        /// Who asks, recorded with the request.
        #[arg(long, default_value = "sluice-cli")]
        requested_by: String,
        #[arg(long)]
        reason: Option<String>,
        /// Wait for the compaction to end, with a progress line.
        #[arg(long)]
        wait: bool,
    },
    /// A stream's bookmark: show, history, rewind, reset.
    Bookmark {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: BookmarkCmd,
    },
    /// Consumer views: list, show (with remap history), remap, rollback.
    Views {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: ViewCmd,
    },
    /// Job runs: list, show, retry, discard, cancel.
    Runs {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: RunCmd,
    },
    /// The latest events; `--follow` prints new ones as they happen.
    Events {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        table: Option<String>,
        /// Start after this event id (default: the last `--tail`).
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 20)]
        tail: i64,
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
pub enum LeaseCmd {
    /// Who holds a table and who waits, in queue order.
    Ls {
        table: String,
    },
    Show {
        lease_id: String,
    },
    /// Revoke a lease: its holder's next call is refused.
    Revoke {
        lease_id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum HydrationCmd {
    Ls {
        /// Only this state (e.g. `live`).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        table: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        id: String,
        /// Follow its progress until it is live or ends.
        #[arg(long)]
        follow: bool,
    },
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BookmarkCmd {
    Show {
        stream: String,
    },
    /// Every version of the bookmark, oldest first.
    History {
        stream: String,
    },
    /// Restore an earlier version (by number or by time).
    Rewind {
        stream: String,
        #[arg(long, conflicts_with = "to_time", required_unless_present = "to_time")]
        to_version: Option<i64>,
        /// RFC 3339.
        #[arg(long)]
        to_time: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Start the stream over from its full load.
    Reset {
        stream: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum ViewCmd {
    Ls {
        #[arg(long)]
        container: Option<String>,
    },
    Show {
        container: String,
        view: String,
    },
    Remap {
        container: String,
        view: String,
        #[arg(long)]
        target: String,
        /// Comma-separated; default: the columns it exposes today.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        #[arg(long)]
        reason: String,
    },
    /// Point the view back at what it read before its last remap.
    Rollback {
        container: String,
        view: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum RunCmd {
    /// The newest runs first.
    Ls {
        #[arg(long)]
        job: Option<String>,
        /// Only this state (e.g. `dead_letter`).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        id: String,
    },
    /// Queue a dead-lettered run again, with a fresh budget of attempts.
    Retry {
        id: String,
    },
    /// Give up on a dead-lettered run, or on one stuck starting (Glue
    /// unreachable): it ends failed and is never started again.
    Discard {
        id: String,
    },
    /// Stop a run (in Glue too; a starting one after a last look in Glue).
    Cancel {
        id: String,
    },
}

/// How a command ended, for the exit code.
enum Failure {
    Api(Error),
    /// What `--wait`/`--follow` waited for ended badly.
    EndedBadly(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Api(e)
    }
}

type Outcome = Result<(), Failure>;

impl OpsCmd {
    fn connection(&self) -> &Connection {
        match self {
            OpsCmd::Tables { conn, .. }
            | OpsCmd::Leases { conn, .. }
            | OpsCmd::Hydrations { conn, .. }
            | OpsCmd::Compact { conn, .. }
            | OpsCmd::Bookmark { conn, .. }
            | OpsCmd::Views { conn, .. }
            | OpsCmd::Runs { conn, .. }
            | OpsCmd::Events { conn, .. } => conn,
        }
    }
}

pub async fn run(cmd: OpsCmd) -> ExitCode {
    let conn = cmd.connection();
    let client = Client::new(&conn.url).with_token(conn.token.clone());
    let out = Out { json: conn.json };
    match dispatch(&client, &out, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::EndedBadly(why)) => {
            eprintln!("error: {}", printable(&why));
            ExitCode::from(7)
        }
        Err(Failure::Api(error)) => {
            // The server's message may quote what a caller stored.
            eprintln!("error: {}", printable(&error.to_string()));
            ExitCode::from(exit_code(&error))
        }
    }
}

fn exit_code(error: &Error) -> u8 {
    match error.status() {
        Some(404) => 3,
        Some(400 | 409 | 412 | 413 | 415 | 422) => 4,
        Some(401 | 403) => 5,
        _ => 6,
    }
}

async fn dispatch(c: &Client, out: &Out, cmd: OpsCmd) -> Outcome {
    match cmd {
        OpsCmd::Tables {
            prefix,
            after,
            limit,
            ..
        } => {
            let page = match &prefix {
                Some(p) => c.tables_matching(p, after.as_deref(), limit).await?,
                None => c.tables(after.as_deref(), limit).await?,
            };
            out.list(
                &page,
                "/tables",
                &[
                    ("TABLE", "/table"),
                    ("HOLDERS", "/holders"),
                    ("WAITERS", "/waiters"),
                    ("LAST TOKEN", "/last_token"),
                    ("COMPACTION JOB", "/compaction_job"),
                ],
            );
            if let Some(next) = page.next_after.filter(|_| !out.json) {
                eprintln!("more: --after {}", printable(&next));
            }
        }
        OpsCmd::Leases { cmd, .. } => leases(c, out, cmd).await?,
        OpsCmd::Hydrations { cmd, .. } => hydrations(c, out, cmd).await?,
        OpsCmd::Compact {
            table,
            requested_by,
            reason,
            wait,
            ..
        } => {
            let ask = RequestCompactionBody {
                requested_by,
                reason,
                not_before: None,
            };
            let mut compaction = c.request_compaction(&table, &ask).await?;
            if wait {
                let mut bar = Progress::new();
                while !matches!(
                    compaction.state.as_str(),
                    "succeeded" | "failed" | "cancelled"
                ) {
                    bar.show(
                        &format!(
                            "compaction {} of {table}: {}",
                            compaction.id, compaction.state
                        ),
                        None,
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    compaction = c.compaction(&table, &compaction.id).await?;
                }
                bar.done();
                out.record(&compaction);
                if compaction.state != "succeeded" {
                    return Err(Failure::EndedBadly(format!(
                        "the compaction ended {}: {}",
                        compaction.state,
                        compaction.error.as_deref().unwrap_or("no reason given")
                    )));
                }
            } else {
                out.record(&compaction);
            }
        }
        OpsCmd::Bookmark { cmd, .. } => bookmark(c, out, cmd).await?,
        OpsCmd::Views { cmd, .. } => views(c, out, cmd).await?,
        OpsCmd::Runs { cmd, .. } => runs(c, out, cmd).await?,
        OpsCmd::Events {
            table,
            after,
            tail,
            follow,
            ..
        } => events(c, out, table, after, tail, follow).await?,
    }
    Ok(())
}

async fn leases(c: &Client, out: &Out, cmd: LeaseCmd) -> Outcome {
    let columns = [
        ("LEASE", "/lease_id"),
        ("MODE", "/mode"),
        ("STATE", "/state"),
        ("HOLDER", "/holder"),
        ("TOKEN", "/token"),
        ("QUEUE", "/position"),
        ("GRANTED", "/granted_at"),
        ("EXPIRES", "/expires_at"),
    ];
    match cmd {
        LeaseCmd::Ls { table } => {
            let leases = c.table_leases(&table).await?;
            if out.json {
                out.print_json(&leases);
                return Ok(());
            }
            let rows: Vec<Value> = leases
                .holders
                .iter()
                .chain(&leases.waiters)
                .map(|l| serde_json::to_value(l).expect("a lease serializes"))
                .collect();
            out.table(&rows, &columns);
        }
        LeaseCmd::Show { lease_id } => out.record(&c.lease(&lease_id, 0).await?),
        LeaseCmd::Revoke { lease_id, reason } => out.record(&c.revoke(&lease_id, &reason).await?),
    }
    Ok(())
}

async fn hydrations(c: &Client, out: &Out, cmd: HydrationCmd) -> Outcome {
    match cmd {
        HydrationCmd::Ls {
            state,
            table,
            limit,
        } => {
            let page = c
                .hydrations(state.as_deref(), table.as_deref(), None, limit)
                .await?;
            out.list(
                &page,
                "/hydrations",
                &[
                    ("ID", "/id"),
                    ("TABLE", "/table"),
                    ("CONTAINER", "/container"),
                    ("TARGET", "/target"),
                    ("STATE", "/state"),
                    ("PROGRESS %", "/progress/percent"),
                    ("LAG SNAPSHOTS", "/lag/snapshots"),
                    ("LAG SECONDS", "/lag/seconds"),
                    ("RUN ATTACHED", "/session/run_id"),
                    ("PIN", "/pin_snapshot_id"),
                    ("REMAP", "/remap/state"),
                ],
            );
        }
        HydrationCmd::Show { id, follow } => {
            // The state as the API names it (`catching_up`, ...).
            let state_of = |h: &HydrationBody| match serde_json::to_value(h.state) {
                Ok(Value::String(s)) => s,
                _ => String::new(),
            };
            let mut h = c.hydration(&id).await?;
            if follow {
                let mut bar = Progress::new();
                while matches!(
                    state_of(&h).as_str(),
                    "pending" | "snapshot" | "catching_up"
                ) {
                    let lag = format!(
                        ", {} snapshots / {} s behind",
                        h.lag.snapshots, h.lag.seconds
                    );
                    bar.show(
                        &format!("{} {}{lag}", h.id, state_of(&h)),
                        h.progress.percent,
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    h = c.hydration(&id).await?;
                }
                bar.done();
            }
            out.record(&h);
            let state = state_of(&h);
            if follow && matches!(state.as_str(), "failed" | "cancelled" | "stale") {
                return Err(Failure::EndedBadly(format!(
                    "the hydration ended {state}: {}",
                    h.reason.as_deref().unwrap_or("no reason given")
                )));
            }
        }
        HydrationCmd::Cancel { id, reason } => out.record(&c.cancel_hydration(&id, reason).await?),
    }
    Ok(())
}

async fn bookmark(c: &Client, out: &Out, cmd: BookmarkCmd) -> Outcome {
    match cmd {
        BookmarkCmd::Show { stream } => out.record(&c.bookmark(&stream).await?),
        BookmarkCmd::History { stream } => {
            // The list is the whole answer: the pointer "" names it.
            out.list(
                &c.history(&stream).await?,
                "",
                &[
                    ("VERSION", "/version"),
                    ("PHASE", "/phase"),
                    ("CAUSE", "/cause"),
                    ("FILES DONE", "/load/files_done_count"),
                    ("DELTA FILE", "/delta/file"),
                    ("ACTOR", "/actor"),
                    ("REASON", "/reason"),
                    ("AT", "/updated_at"),
                ],
            );
        }
        BookmarkCmd::Rewind {
            stream,
            to_version,
            to_time,
            reason,
        } => {
            let body = RewindBody {
                to_version,
                to_time,
                reason,
            };
            out.record(&c.rewind(&stream, &body).await?)
        }
        BookmarkCmd::Reset { stream, reason } => {
            out.record(&c.reset(&stream, &ResetBody { reason }).await?)
        }
    }
    Ok(())
}

async fn views(c: &Client, out: &Out, cmd: ViewCmd) -> Outcome {
    match cmd {
        ViewCmd::Ls { container } => {
            let page = c.views(container.as_deref(), None, 1000).await?;
            out.list(
                &page,
                "/views",
                &[
                    ("CONTAINER", "/container"),
                    ("VIEW", "/view"),
                    ("TARGET", "/target"),
                    ("COLUMNS", "/columns"),
                    ("AUTO REMAP", "/auto_remap"),
                    ("HYDRATION", "/hydration_id"),
                ],
            );
        }
        ViewCmd::Show { container, view } => {
            let v = c.view(&container, &view).await?;
            if out.json {
                out.print_json(&v);
                return Ok(());
            }
            let mut value = serde_json::to_value(&v).expect("a view serializes");
            let history = value["history"].take();
            value.as_object_mut().expect("an object").remove("history");
            out.record(&value);
            println!("\nremap history (newest first):");
            out.table(
                history.as_array().map_or(&[][..], Vec::as_slice),
                &[
                    ("AT", "/at"),
                    ("KIND", "/kind"),
                    ("FROM", "/from"),
                    ("TO", "/to"),
                    ("HYDRATION", "/hydration_id"),
                    ("ACTOR", "/actor"),
                    ("REASON", "/reason"),
                ],
            );
        }
        ViewCmd::Remap {
            container,
            view,
            target,
            columns,
            reason,
        } => {
            let body = RemapBody {
                target,
                columns,
                reason,
            };
            out.record(&c.remap(&container, &view, &body).await?)
        }
        ViewCmd::Rollback {
            container,
            view,
            reason,
        } => out.record(
            &c.rollback(&container, &view, &RollbackBody { reason })
                .await?,
        ),
    }
    Ok(())
}

async fn runs(c: &Client, out: &Out, cmd: RunCmd) -> Outcome {
    match cmd {
        RunCmd::Ls { job, state, limit } => {
            let page = c
                .runs(job.as_deref(), state.as_deref(), None, limit, true)
                .await?;
            out.list(
                &page,
                "/runs",
                &[
                    ("ID", "/id"),
                    ("JOB", "/job"),
                    ("STATE", "/state"),
                    ("TABLE", "/table"),
                    ("ATTEMPT", "/attempt"),
                    ("GLUE RUN", "/glue_run_id"),
                    ("CREATED", "/created_at"),
                    ("ERROR", "/error"),
                ],
            );
        }
        RunCmd::Show { id } => out.record(&c.run(&id).await?),
        RunCmd::Retry { id } => out.record(&c.run_action(&id, "retry").await?),
        RunCmd::Discard { id } => out.record(&c.run_action(&id, "discard").await?),
        RunCmd::Cancel { id } => out.record(&c.run_action(&id, "cancel").await?),
    }
    Ok(())
}

const EVENT_COLUMNS: [(&str, &str); 6] = [
    ("ID", "/id"),
    ("AT", "/at"),
    ("KIND", "/kind"),
    ("TABLE", "/table"),
    ("STREAM", "/stream"),
    ("DATA", "/data"),
];

async fn events(
    c: &Client,
    out: &Out,
    table: Option<String>,
    after: Option<i64>,
    tail: i64,
    follow: bool,
) -> Outcome {
    if !follow {
        let page = match after {
            Some(after) => c.events(after, table.as_deref(), 1000).await?,
            None => c.recent_events(tail, table.as_deref(), 1000).await?,
        };
        out.list(&page, "/events", &EVENT_COLUMNS);
        return Ok(());
    }
    // Follow, resuming after the last event seen whenever the feed ends.
    let mut last = after;
    let mut header = !out.json;
    loop {
        let mut feed = match c.follow_events(last, Some(tail), table.as_deref()).await {
            Ok(feed) => feed,
            Err(e) if e.is_transient() => {
                eprintln!("sluice: {}; reconnecting", printable(&e.to_string()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            match feed.next().await {
                Ok(Some(FeedItem::Event(e))) => {
                    last = Some(e.id);
                    if out.json {
                        out.print_line(&e);
                    } else {
                        let row = serde_json::to_value(&e).expect("an event serializes");
                        out.row(&row, &EVENT_COLUMNS, header);
                        header = false;
                    }
                }
                Ok(Some(FeedItem::Ended {
                    kind,
                    reason,
                    last_event_id,
                })) => {
                    let why = format!("{kind}: {reason}");
                    eprintln!("sluice: the feed ended ({}); resuming", printable(&why));
                    last = Some(last_event_id);
                }
                Ok(None) | Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where the answers go: JSON as the API gave it, or aligned text.
struct Out {
    json: bool,
}

impl Out {
    fn print_json(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("an answer serializes")
        );
    }

    /// One JSON document per line (a followed feed).
    fn print_line(&self, value: &impl Serialize) {
        println!(
            "{}",
            serde_json::to_string(value).expect("an answer serializes")
        );
        let _ = std::io::stdout().flush();
    }

    /// One thing: its fields, one per line.
    fn record(&self, value: &impl Serialize) {
        if self.json {
            return self.print_json(value);
        }
        let value = serde_json::to_value(value).expect("an answer serializes");
        let Some(fields) = value.as_object() else {
            return println!("{}", cell(&value));
        };
        // Keys are the API's field names, but a map's keys (a run's
        // arguments) are stored text too.
        let keys: Vec<String> = fields.keys().map(|k| printable(k).into_owned()).collect();
        let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
        for (key, v) in keys.iter().zip(fields.values()) {
            println!("{key:width$}  {}", cell(v));
        }
    }

    /// A page: the JSON as it came, or its `items` as a table.
    fn list(&self, page: &impl Serialize, items: &str, columns: &[(&str, &str)]) {
        if self.json {
            return self.print_json(page);
        }
        let page = serde_json::to_value(page).expect("a page serializes");
        let rows = page.pointer(items).and_then(Value::as_array);
        self.table(rows.map_or(&[][..], Vec::as_slice), columns);
    }

    fn table(&self, rows: &[Value], columns: &[(&str, &str)]) {
        let cells: Vec<Vec<String>> = rows.iter().map(|row| cells(row, columns)).collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, (head, _))| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([head.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |values: Vec<&str>| {
            let padded: Vec<String> = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:w$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(columns.iter().map(|(head, _)| *head).collect());
        for row in &cells {
            line(row.iter().map(String::as_str).collect());
        }
        if rows.is_empty() {
            println!("(none)");
        }
    }

    /// One row of a table printed as it grows (a followed feed).
    fn row(&self, row: &Value, columns: &[(&str, &str)], header: bool) {
        if header {
            let heads: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
            println!("{}", heads.join("  "));
        }
        println!("{}", cells(row, columns).join("  "));
        let _ = std::io::stdout().flush();
    }
}

/// A row's cells: each column's JSON pointer into it, `-` where absent.
fn cells(row: &Value, columns: &[(&str, &str)]) -> Vec<String> {
    columns
        .iter()
        .map(|(_, at)| row.pointer(at).map_or_else(|| "-".to_owned(), cell))
        .collect()
}

/// A JSON value as one table cell, safe to print (see `printable`).
fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        // JSON escapes C0 controls but not DEL or C1: filtered too.
        other => other.to_string(),
    };
    printable(&text).into_owned()
}

/// Text from the server (stored by callers: a Glue job's failure message,
/// a compaction's `requested_by`, a reason) made safe for a terminal: a
/// control character (C0, DEL, C1) or a bidirectional override would
/// otherwise move the cursor, recolour, retitle the window or reorder
/// what is shown. Each one is printed as a visible escape instead: ESC as
/// `\e`, newline as `\n`, tab as `\t`, any other as `\u{..}`. Every
/// human output path goes through here; `--json` prints the API's JSON.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\u{1b}' => out.push_str("\\e"),
            c if unsafe_char(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A progress line on stderr: redrawn in place on a terminal, one line
/// per change otherwise (a log or a test reads every step).
struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    fn show(&mut self, what: &str, percent: Option<f64>) {
        let bar = percent.map(|p| {
            let filled = ((p / 100.0) * 30.0).round().clamp(0.0, 30.0) as usize;
            format!(
                "[{}{}] {p:5.1}% ",
                "#".repeat(filled),
                " ".repeat(30 - filled)
            )
        });
        let line = format!("{}{}", bar.unwrap_or_default(), printable(what));
        if self.last == line {
            return;
        }
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.last = line;
    }

    fn done(&self) {
        if self.tty && !self.last.is_empty() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_prints_without_control_characters() {
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(printable("\x1b[31mred\x1b[0m"), "\\e[31mred\\e[0m");
        assert_eq!(printable("a\nb\tc\rd\x07"), "a\\nb\\tc\\rd\\u{7}");
        assert_eq!(printable("del\x7f c1\u{9b}31m"), "del\\u{7f} c1\\u{9b}31m");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        // Cells of every shape go through it, JSON objects included (JSON
        // escapes C0 itself, but leaves DEL and C1 as they are).
        assert_eq!(cell(&json!("\x1b]0;title\x07")), "\\e]0;title\\u{7}");
        assert_eq!(cell(&json!(["a\x1b", "b"])), "a\\e,b");
        assert_eq!(cell(&json!({ "k": "\u{9b}" })), "{\"k\":\"\\u{9b}\"}");
    }

    use serde_json::json;
}
