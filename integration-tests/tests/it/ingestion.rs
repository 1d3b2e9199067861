//! An ingestion job that keeps its position only in sluice: the AWS Glue
//! job over an AWS DMS prefix in `integration-tests/ingest/dms_ingest.py`,
//! merging into a real Iceberg table (pyiceberg, Glue catalog and S3 on
//! moto), killed mid-load, restarted, following CDC while files arrive, and
//! two runs racing. The job is always started the same way: the bookmark
//! alone moves it from the full load to CDC.

use crate::harness::Server;
use crate::lake::{venv, Lake};
use crate::on_every_backend;
use crate::raw::Client;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

on_every_backend!(
    a_job_killed_mid_load_resumes_completes_the_load_and_follows_cdc,
    two_racing_runs_record_every_file_exactly_once,
);

pub(crate) const STREAM: &str = "sales.orders_cdc";
pub(crate) const TABLE: &str = "sales.orders";
/// When the full load started: CDC resumes from here once it is over.
pub(crate) const CDC_START: &str = "20240501-000000000";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ingest/dms_ingest.py")
}

/// The job's interpreter, with the emulator's credentials.
fn python() -> Command {
    let mut command = Command::new(venv().join("bin/python"));
    command
        .arg(script())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    command
}

/// Run blocking work (child processes, files) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task")
}

/// The folder DMS writes to, the job's target table, and a model of what
/// that table must hold: LOAD rows then CDC changes, in the order written.
pub(crate) struct Dms {
    dir: tempfile::TempDir,
    pub(crate) loads: Vec<String>,
    pub(crate) cdcs: Vec<String>,
    model: BTreeMap<i64, (String, i64)>,
}

impl Dms {
    pub(crate) fn new() -> Dms {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("prefix")).expect("prefix dir");
        Dms {
            dir,
            loads: Vec::new(),
            cdcs: Vec::new(),
            model: BTreeMap::new(),
        }
    }

    pub(crate) fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }

    /// Full-load file `n`: every row an upsert.
    pub(crate) fn load(&mut self, n: u32, rows: &[(i64, &str, i64)]) {
        let name = format!("LOAD{n:08X}.csv");
        let mut text = String::from("id,name,amount\n");
        for &(id, row_name, amount) in rows {
            text += &format!("{id},{row_name},{amount}\n");
            self.model.insert(id, (row_name.to_owned(), amount));
        }
        self.write(&name, &text);
        self.loads.push(name);
    }

    /// CDC file at commit time `stamp` (`YYYYMMDD-HHMMSSmmm`): I, U or D rows.
    pub(crate) fn cdc(&mut self, stamp: &str, rows: &[(&str, i64, &str, i64)]) {
        let name = format!("{stamp}.csv");
        let mut text = String::from("Op,id,name,amount\n");
        for &(op, id, row_name, amount) in rows {
            text += &format!("{op},{id},{row_name},{amount}\n");
            if op == "D" {
                self.model.remove(&id);
            } else {
                self.model.insert(id, (row_name.to_owned(), amount));
            }
        }
        self.write(&name, &text);
        self.cdcs.push(name);
    }

    /// Write under a name the job ignores, then rename: the job sees a file
    /// whole or not at all, as with an S3 object.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.prefix().join(format!(".{name}.part"));
        std::fs::write(&tmp, text).expect("write a DMS file");
        std::fs::rename(tmp, self.prefix().join(name)).expect("publish a DMS file");
    }

    /// The model as the job's `--dump` prints a table: `[[id,name,amount],...]`.
    pub(crate) fn expected(&self) -> Value {
        self.model
            .iter()
            .map(|(id, (name, amount))| json!([id, name, amount]))
            .collect()
    }
}

/// How every run of the job is started: the same flags whatever the phase.
#[derive(Clone)]
pub(crate) struct Job {
    url: String,
    /// A folder, or `s3://bucket/prefix/` on the lake's endpoint.
    prefix: String,
    catalog_uri: String,
}

impl Job {
    /// The job over `dms`, and its Iceberg table created in `lake`.
    async fn new(s: &Server, dms: &Dms, lake: &Lake) -> Job {
        Job::over(s, &dms.prefix().display().to_string(), lake).await
    }

    /// The job over a prefix, and its Iceberg table created in `lake`.
    pub(crate) async fn over(s: &Server, prefix: &str, lake: &Lake) -> Job {
        let job = Job {
            url: s.url.clone(),
            prefix: prefix.to_owned(),
            catalog_uri: lake.url.clone(),
        };
        let setup = job.clone();
        blocking(move || {
            setup.table_output(&["--setup", "--warehouse", "s3://lake/"]);
        })
        .await;
        job
    }

    /// Run the script's table subcommand (`--setup`, `--dump`...).
    fn table_output(&self, args: &[&str]) -> Vec<u8> {
        let output = python()
            .args(args)
            .args(["--table", TABLE, "--catalog-uri", &self.catalog_uri])
            .output()
            .expect("run the job's python");
        assert!(output.status.success(), "{args:?}: {output:?}");
        output.stdout
    }

    pub(crate) fn command(&self, run_id: &str, ttl_seconds: u32) -> Command {
        let args = [
            "--url".to_owned(),
            self.url.clone(),
            "--stream".into(),
            STREAM.into(),
            "--prefix".into(),
            self.prefix.clone(),
            "--table".into(),
            TABLE.into(),
            "--catalog-uri".into(),
            self.catalog_uri.clone(),
            "--run-id".into(),
            run_id.into(),
            "--ttl".into(),
            ttl_seconds.to_string(),
            "--files-per-batch".into(),
            "1".into(),
            "--cdc-start".into(),
            CDC_START.into(),
            // Generous: a run may wait for a killed run's batch to expire or
            // for a racing run's batches on a slow machine.
            "--wait".into(),
            "300".into(),
        ];
        // The job is told nothing about phases: the bookmark decides.
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                !["load", "delta", "phase"].iter().any(|p| flag.contains(p)),
                "{flag} is phase-specific"
            );
        }
        let mut command = python();
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The Iceberg table's rows, as `[[id,name,amount],...]` sorted by id.
    pub(crate) fn dump(&self) -> Value {
        serde_json::from_slice(&self.table_output(&["--dump"])).expect("--dump prints JSON")
    }

    /// The table's snapshots: snapshot id -> the sluice batch that wrote it.
    pub(crate) fn snapshots(&self) -> BTreeMap<i64, String> {
        let listed: Vec<Value> = serde_json::from_slice(&self.table_output(&["--snapshots"]))
            .expect("--snapshots prints JSON");
        listed
            .iter()
            .map(|s| {
                let batch = s["batch_id"]
                    .as_str()
                    .expect("every snapshot names its batch");
                (s["snapshot_id"].as_i64().expect("an id"), batch.to_owned())
            })
            .collect()
    }
}

/// The hash of the job's data columns, to register as the expected one.
pub(crate) fn schema_hash() -> String {
    let output = python()
        .arg("--schema-hash")
        .output()
        .expect("run the job's python");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A run of the job in progress.
pub(crate) struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// A finished run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    stderr: String,
}

impl Finished {
    /// Exit 0, or fail the test with everything the job printed.
    pub(crate) fn assert_success(&self) {
        assert!(
            self.status.success(),
            "the job failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

impl Running {
    pub(crate) fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("spawn the job");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Running { child, stdout }
    }

    /// The next line the job prints ("" once it has exited).
    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the job's output");
        line
    }

    /// Wait for the end (a run that hangs is killed after a generous while).
    /// Its output is a few lines, well within a pipe's buffer, so waiting
    /// before reading cannot block the job.
    pub(crate) fn finish(mut self, earlier: &str) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(400);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the job") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the job did not finish within 400 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = earlier.to_owned();
        self.stdout
            .read_to_string(&mut stdout)
            .expect("the job's stdout");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("the job's stderr");
        }
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    /// A test that panics mid-run leaves no job behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn run(command: Command) -> Finished {
    Running::start(command).finish("")
}

/// The files of each batch a run committed, from its
/// `batch <id> committed version <v> files [...]` lines.
fn committed_files(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("batch ") && l.contains(" committed version "))
        .map(|l| {
            let (_, files) = l.split_once(" files ").expect("a files list");
            serde_json::from_str::<Vec<String>>(files).expect("files as JSON")
        })
        .collect()
}

async fn get(c: &Client, path: &str) -> Value {
    let answer = c.send(Method::GET, path, None).await.unwrap();
    assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
    answer.body
}

/// Register the table and the stream over the DMS prefix.
async fn register(c: &Client, dms: &Dms) {
    let answer = c.put_table(TABLE, json!({})).await.unwrap();
    assert!(answer.status == 201 || answer.status == 200, "{answer:?}");
    let hash = blocking(schema_hash).await;
    let body = json!({
        "table": TABLE,
        "source": {"kind": "dms", "prefix": dms.prefix().display().to_string()},
        "expected_schema_hash": hash,
    });
    let answer = c
        .send(Method::PUT, &format!("/v1/streams/{STREAM}"), Some(&body))
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{answer:?}");
}

/// Every version of the bookmark, oldest first and whole: pages of three
/// summaries, then each version read on its own (pages count files done,
/// versions list them).
async fn history(c: &Client) -> Vec<Value> {
    let mut versions = Vec::new();
    let mut after = 0;
    loop {
        let page = get(
            c,
            &format!("/v1/streams/{STREAM}/bookmark/history?after_version={after}&limit=3"),
        )
        .await;
        for summary in page["versions"].as_array().expect("versions") {
            let version = summary["version"].as_i64().expect("a version");
            let whole = get(
                c,
                &format!("/v1/streams/{STREAM}/bookmark/history/{version}"),
            )
            .await;
            assert_eq!(
                summary["load"]["files_done_count"].as_u64(),
                whole["load"]["files_done"]
                    .as_array()
                    .map(|f| f.len() as u64),
                "the page counts what the version lists"
            );
            versions.push(whole);
        }
        match page["next_after_version"].as_i64() {
            Some(next) => {
                assert!(next > after, "pages move forward: {page}");
                after = next;
            }
            None => return versions,
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// What the history must tell whoever ran the job: versions 1..K with no
/// gap, `created` then one `batch` version per commit; each LOAD file added
/// to files_done by exactly one version; one move to phase delta, by the
/// version that added the last LOAD file (CDC files were there already),
/// starting at the load's start; then one CDC file per version, in order,
/// each once and none skipped. Returns the version that added each LOAD file.
fn check_history(versions: &[Value], dms: &Dms) -> BTreeMap<String, Vec<usize>> {
    let story = serde_json::to_string_pretty(versions).unwrap();
    let mut added: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut done_before: Vec<String> = Vec::new();
    let mut to_delta = Vec::new();
    let mut delta_files = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let number = i + 1;
        assert_eq!(v["version"], json!(number), "no gap: {story}");
        let cause = if number == 1 { "created" } else { "batch" };
        assert_eq!(v["cause"], cause, "version {number}: {story}");
        let done = strings(&v["load"]["files_done"]);
        for file in done.iter().filter(|f| !done_before.contains(*f)) {
            added.entry(file.clone()).or_default().push(number);
        }
        done_before = done;
        if i > 0 && v["phase"] != versions[i - 1]["phase"] {
            assert_eq!(v["phase"], "delta", "only forward, load to delta: {story}");
            to_delta.push(number);
        }
        if let Some(file) = v["delta"]["file"].as_str() {
            delta_files.push(file.to_owned());
        }
    }
    for file in &dms.loads {
        assert_eq!(
            added.get(file).map(Vec::len),
            Some(1),
            "{file} is added by exactly one version: {added:?}\n{story}"
        );
    }
    assert_eq!(added.len(), dms.loads.len(), "{added:?}");

    let last_load = dms.loads.last().expect("LOAD files");
    assert_eq!(
        to_delta, added[last_load],
        "the version that added {last_load} moves to delta, and no other: {story}"
    );
    let first_delta = &versions[to_delta[0] - 1]["delta"];
    assert_eq!(first_delta["file"], Value::Null, "{story}");
    assert_eq!(first_delta["commit_timestamp"], CDC_START, "{story}");

    // One CDC file per version (files-per-batch 1), strictly increasing,
    // every one of them: none twice, none skipped.
    assert!(
        delta_files.windows(2).all(|w| w[0] < w[1]),
        "delta files strictly increase: {delta_files:?}"
    );
    assert_eq!(delta_files, dms.cdcs, "{story}");
    assert_eq!(
        versions.len(),
        1 + dms.loads.len() + dms.cdcs.len(),
        "one version per file: {story}"
    );
    added
}

/// Every committed batch reported a snapshot of the Iceberg table, and
/// every snapshot was written by a committed batch of this stream (or one
/// of `uncommitted`, whose merge reached the table before its run died):
/// the bookmark's history and the table's join.
fn check_snapshots(versions: &[Value], snapshots: &BTreeMap<i64, String>, uncommitted: &[&str]) {
    assert!(!snapshots.is_empty());
    let batches: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["batch_id"].as_str())
        .collect();
    for v in versions.iter().filter(|v| v["cause"] == "batch") {
        if v["counts"]["inserted"] == 0
            && v["counts"]["updated"] == 0
            && v["counts"]["deleted"] == 0
        {
            // A batch that changed nothing (a redo, an empty load-complete)
            // reports the table's current snapshot, or none.
            if let Some(id) = v["snapshot_id"].as_i64() {
                assert!(snapshots.contains_key(&id), "{v}");
            }
            continue;
        }
        let id = v["snapshot_id"].as_i64().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(
            snapshots.get(&id).map(String::as_str),
            v["batch_id"].as_str(),
            "the snapshot of {v} names another batch: {snapshots:?}"
        );
    }
    for batch in snapshots.values() {
        assert!(
            batches.contains(&batch.as_str()) || uncommitted.contains(&batch.as_str()),
            "a snapshot by a batch that is not in the history: {batch}"
        );
    }
}

async fn a_job_killed_mid_load_resumes_completes_the_load_and_follows_cdc(s: Server) {
    let c = &s.client;
    let mut dms = Dms::new();
    register(c, &dms).await;
    // Ids overlap across files, so later LOAD files update earlier rows.
    dms.load(1, &[(1, "ada", 10), (2, "bob", 20), (3, "cyd", 30)]);
    dms.load(2, &[(3, "cyd", 31), (4, "dee", 40), (5, "eve", 50)]);
    dms.load(3, &[(5, "eve", 51), (6, "fay", 60), (7, "gus", 70)]);
    let lake = Lake::start().await;
    let job = Job::new(&s, &dms, &lake).await;

    // Run 1 merges LOAD1 and commits it, merges LOAD2 into the table, and
    // dies before telling sluice. (TTL 5 rather than the job's 2 so that the
    // open batch can be seen below even on a slow machine.)
    let killed_run = {
        let job = job.clone();
        blocking(move || {
            let mut command = job.command("glue-run-1", 5);
            command.env("CRASH_AFTER_WORK", "2");
            run(command)
        })
        .await
    };
    assert_eq!(killed_run.status.signal(), Some(9), "{killed_run:?}");
    assert_eq!(
        committed_files(&killed_run.stdout),
        vec![vec!["LOAD00000001.csv".to_owned()]],
        "{killed_run:?}"
    );
    let bookmark = get(c, &format!("/v1/streams/{STREAM}/bookmark")).await;
    assert_eq!(bookmark["phase"], "load", "{bookmark}");
    assert_eq!(
        bookmark["load"]["files_done"],
        json!(["LOAD00000001.csv"]),
        "LOAD2 reached the table, not the bookmark: {bookmark}"
    );
    let view = get(c, &format!("/v1/streams/{STREAM}")).await;
    let open = &view["open_batch"];
    assert_eq!(open["run_id"], "glue-run-1", "{view}");
    assert_eq!(open["state"], "open", "{view}");
    let killed_batch = open["batch_id"].as_str().expect("a batch id").to_owned();

    // DMS finishes the load and moves on to CDC: an update of a LOAD row, a
    // delete, inserts (one inserted and deleted again).
    dms.cdc(
        "20240501-000100000",
        &[
            ("U", 2, "bob", 21),
            ("D", 1, "ada", 10),
            ("I", 8, "hal", 80),
        ],
    );
    dms.cdc(
        "20240501-000200000",
        &[
            ("U", 6, "fay", 61),
            ("I", 9, "ivy", 90),
            ("D", 9, "ivy", 90),
            ("U", 8, "hal", 81),
        ],
    );

    // Run 2 waits out the killed batch, redoes LOAD2, does LOAD3 (which
    // completes the load), then both CDC files, and stops when idle.
    let second = {
        let job = job.clone();
        blocking(move || run(job.command("glue-run-2", 10))).await
    };
    second.assert_success();
    assert_eq!(
        committed_files(&second.stdout),
        [
            "LOAD00000002.csv",
            "LOAD00000003.csv",
            "20240501-000100000.csv",
            "20240501-000200000.csv"
        ]
        .map(|f| vec![f.to_owned()]),
        "{second:?}"
    );
    let killed = get(c, &format!("/v1/streams/{STREAM}/batches/{killed_batch}")).await;
    assert_eq!(killed["state"], "failed", "{killed}");
    assert_eq!(killed["end_reason"], "expired", "{killed}");

    // Run 3 starts with one new CDC file; two more arrive while it runs
    // (it sleeps after each batch). It may or may not see them.
    dms.cdc("20240501-000300000", &[("I", 10, "jon", 100)]);
    let (dms, third) = {
        let job = job.clone();
        blocking(move || {
            let mut command = job.command("glue-run-3", 10);
            command.env("SLEEP_PER_BATCH", "1");
            let mut running = Running::start(command);
            let first = running.line();
            assert!(first.starts_with("batch "), "{first}");
            dms.cdc(
                "20240501-000400000",
                &[("U", 10, "jon", 101), ("D", 3, "cyd", 31)],
            );
            dms.cdc(
                "20240501-000500000",
                &[("I", 11, "kim", 110), ("U", 5, "eve", 52)],
            );
            (dms, running.finish(&first))
        })
        .await
    };
    third.assert_success();

    // Run 4 picks up whatever run 3 did not.
    let fourth = {
        let job = job.clone();
        blocking(move || run(job.command("glue-run-4", 10))).await
    };
    fourth.assert_success();
    let mut later: Vec<Vec<String>> = committed_files(&third.stdout);
    later.extend(committed_files(&fourth.stdout));
    assert_eq!(
        later,
        dms.cdcs[2..]
            .iter()
            .map(|f| vec![f.clone()])
            .collect::<Vec<_>>(),
        "{third:?} {fourth:?}"
    );

    let (rows, snapshots) = blocking(move || (job.dump(), job.snapshots())).await;
    assert_eq!(rows, dms.expected());

    let versions = history(c).await;
    let added = check_history(&versions, &dms);
    check_snapshots(&versions, &snapshots, &[&killed_batch]);
    // The killed run's merge of LOAD2 is in the table (a snapshot names its
    // batch); the redo changed nothing, so it made no snapshot of its own.
    assert!(
        snapshots.values().any(|b| *b == killed_batch),
        "{snapshots:?}"
    );
    let run_of = |file: &str| versions[added[file][0] - 1]["run_id"].clone();
    assert_eq!(run_of("LOAD00000001.csv"), "glue-run-1");
    assert_eq!(
        run_of("LOAD00000002.csv"),
        "glue-run-2",
        "the killed run's LOAD2 was redone by the next run"
    );
}

async fn two_racing_runs_record_every_file_exactly_once(s: Server) {
    let c = &s.client;
    let mut dms = Dms::new();
    register(c, &dms).await;
    dms.load(1, &[(1, "ada", 10), (2, "bob", 20), (3, "cyd", 30)]);
    dms.load(2, &[(3, "cyd", 31), (4, "dee", 40)]);
    dms.load(3, &[(4, "dee", 41), (5, "eve", 50)]);
    dms.cdc(
        "20240501-000100000",
        &[
            ("U", 1, "ada", 11),
            ("D", 2, "bob", 20),
            ("I", 6, "fay", 60),
        ],
    );
    dms.cdc(
        "20240501-000200000",
        &[("D", 6, "fay", 60), ("U", 3, "cyd", 32)],
    );
    dms.cdc(
        "20240501-000300000",
        &[("I", 7, "gus", 70), ("I", 2, "bob", 22)],
    );
    let lake = Lake::start().await;
    let job = Job::new(&s, &dms, &lake).await;

    let (a, b) = {
        let job = job.clone();
        blocking(move || {
            // A short pause after each commit lets the other run, polling
            // every 0.5 s, take turns; which run gets which file is luck.
            let racer = |run_id: &str| {
                let mut command = job.command(run_id, 10);
                command.env("SLEEP_PER_BATCH", "0.6");
                Running::start(command)
            };
            let (a, b) = (racer("race-a"), racer("race-b"));
            (a.finish(""), b.finish(""))
        })
        .await
    };
    a.assert_success();
    b.assert_success();
    // Both ran: each got a batch in turn (committed files, or found nothing
    // left and said so), and while one held the stream the other's open
    // was refused (409 `batch_open`) and it waited.
    for (run, out) in [("race-a", &a), ("race-b", &b)] {
        assert!(
            !committed_files(&out.stdout).is_empty() || out.stdout.contains("idle at version"),
            "{run} never got a batch: {out:?}"
        );
    }
    let refused = s.metric("sluice_refusals_total{type=\"batch_open\"}").await;
    assert!(
        refused > 0,
        "no open was refused while the other run held the stream"
    );

    // Between them the two runs committed every file once.
    let mut committed: Vec<String> = committed_files(&a.stdout)
        .into_iter()
        .chain(committed_files(&b.stdout))
        .flatten()
        .collect();
    committed.sort();
    let mut all: Vec<String> = dms.loads.iter().chain(&dms.cdcs).cloned().collect();
    all.sort();
    assert_eq!(committed, all, "{a:?} {b:?}");

    let (rows, snapshots) = blocking(move || (job.dump(), job.snapshots())).await;
    assert_eq!(rows, dms.expected());
    let versions = history(c).await;
    check_history(&versions, &dms);
    check_snapshots(&versions, &snapshots, &[]);
    for v in &versions[1..] {
        assert!(v["run_id"] == "race-a" || v["run_id"] == "race-b", "{v}");
    }
}
