//! The operator commands of the `sluice` binary against a real server:
//! each one's table for people and its `--json`, the errors a user can
//! cause, and the exit codes scripts rely on (0 done, 3 not found,
//! 4 refused, 5 not allowed, 6 unreachable, 7 a wait that ended badly).

use crate::compactions::glue_lake;
use crate::harness::{binary, free_port, Server};
use crate::snapshots::{py, refresh, TABLE};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// The human table's rows (after its header) as columns.
    fn rows(&self) -> Vec<Vec<String>> {
        assert_eq!(self.code, 0, "{}", self.stderr);
        self.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    }
}

/// `sluice ARGS` with `SLUICE_URL` and `SLUICE_TOKEN` set.
async fn sluice(url: &str, token: Option<&str>, args: &[&str]) -> Ran {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("SLUICE_URL", url)
        .env_remove("SLUICE_TOKEN");
    if let Some(token) = token {
        command.env("SLUICE_TOKEN", token);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run sluice"))
        .await
        .unwrap();
    Ran {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn tables_leases_bookmarks_views_runs_and_events() {
    let mut server = Server::sqlite_with(&["--auth", "on"]).await;
    let admin = server.create_token("admin", "admin", &[], &[]);
    let job = server.create_token("ingest", "job", &[], &[]);
    server.client = server.client_with(&admin);
    let url = server.url.clone();
    let run = |args: &'static [&'static str]| {
        let (url, admin) = (url.clone(), admin.clone());
        async move { sluice(&url, Some(&admin), args).await }
    };
    for table in ["sales.a", "sales.b", "hr.c"] {
        server
            .expect(Method::PUT, &format!("/v1/tables/{table}"), json!({}), 201)
            .await;
    }

    // tables: name order, a prefix, pages, JSON.
    let all = run(&["tables"]).await;
    assert!(all.stdout.starts_with("TABLE"), "{}", all.stdout);
    let names: Vec<String> = all.rows().iter().map(|r| r[0].clone()).collect();
    assert_eq!(names, ["hr.c", "sales.a", "sales.b"]);
    let sales = run(&["tables", "--prefix", "sales.", "--json"])
        .await
        .json();
    let names: Vec<&str> = sales["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales.a", "sales.b"]);
    let first = run(&["tables", "--limit", "1"]).await;
    assert_eq!(first.rows().len(), 1);
    assert!(
        first.stderr.contains("more: --after hr.c"),
        "{}",
        first.stderr
    );

    // leases: ls, show, revoke, and what a user gets wrong.
    let lease = server
        .expect(
            Method::POST,
            "/v1/tables/sales.a/leases",
            json!({ "mode": "read", "ttl_seconds": 300, "holder": "export-job" }),
            201,
        )
        .await;
    let id = lease["lease_id"].as_str().unwrap().to_owned();
    let ls = sluice(&url, Some(&admin), &["leases", "ls", "sales.a"]).await;
    let rows = ls.rows();
    assert_eq!(rows.len(), 1, "{}", ls.stdout);
    assert_eq!(
        rows[0][..5],
        [id.as_str(), "read", "granted", "export-job", "1"]
    );
    let json = sluice(&url, Some(&admin), &["leases", "ls", "sales.a", "--json"])
        .await
        .json();
    assert_eq!(json["holders"][0]["lease_id"], id.as_str());
    let shown = sluice(&url, Some(&admin), &["leases", "show", &id, "--json"])
        .await
        .json();
    assert_eq!(
        (&shown["holder"], &shown["token"]),
        (&json!("export-job"), &json!(1))
    );
    let show = sluice(&url, Some(&admin), &["leases", "show", &id]).await;
    assert!(show.stdout.contains("holder"), "{}", show.stdout);
    assert!(show.stdout.contains("export-job"), "{}", show.stdout);
    let revoked = sluice(
        &url,
        Some(&admin),
        &["leases", "revoke", &id, "--reason", "stuck", "--json"],
    )
    .await
    .json();
    assert_eq!(revoked["state"], "revoked");
    let unknown = run(&["leases", "show", "01890000-0000-7000-8000-000000000000"]).await;
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("lease_not_found"),
        "{}",
        unknown.stderr
    );
    let malformed = run(&["leases", "show", "not-a-lease"]).await;
    assert_eq!(malformed.code, 4, "{}", malformed.stderr);
    assert!(
        malformed.stderr.contains("invalid_lease_id"),
        "{}",
        malformed.stderr
    );
    let no_table = run(&["leases", "ls", "no.such"]).await;
    assert_eq!(no_table.code, 3, "{}", no_table.stderr);

    // Who may: no token, a job's token on an operator's command.
    let anonymous = sluice(&url, None, &["tables"]).await;
    assert_eq!(anonymous.code, 5, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("missing_token"),
        "{}",
        anonymous.stderr
    );
    let lease = server
        .expect(
            Method::POST,
            "/v1/tables/sales.b/leases",
            json!({ "mode": "read", "ttl_seconds": 300, "holder": "h" }),
            201,
        )
        .await;
    let as_job = sluice(
        &url,
        Some(&job),
        &[
            "leases",
            "revoke",
            lease["lease_id"].as_str().unwrap(),
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(as_job.code, 5, "{}", as_job.stderr);
    // Nothing listening there.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let unreachable = sluice(&nowhere, Some(&admin), &["tables"]).await;
    assert_eq!(unreachable.code, 6, "{}", unreachable.stderr);
    // Bad usage is clap's 2.
    assert_eq!(run(&["leases", "revoke"]).await.code, 2);

    // bookmark: show, reset, history, rewind.
    server
        .expect(
            Method::PUT,
            "/v1/streams/sales.a.cdc",
            json!({ "table": "sales.a" }),
            201,
        )
        .await;
    let shown = run(&["bookmark", "show", "sales.a.cdc", "--json"])
        .await
        .json();
    assert_eq!(
        (shown["version"].as_i64(), &shown["phase"]),
        (Some(1), &json!("load"))
    );
    let reset = run(&[
        "bookmark",
        "reset",
        "sales.a.cdc",
        "--reason",
        "reload",
        "--json",
    ])
    .await
    .json();
    assert_eq!(reset["version"], 2);
    let human = run(&["bookmark", "show", "sales.a.cdc"]).await;
    assert!(
        human
            .stdout
            .lines()
            .any(|l| l.starts_with("phase") && l.ends_with(" load")),
        "{}",
        human.stdout
    );
    let versions = run(&["bookmark", "history", "sales.a.cdc", "--json"])
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    let history = run(&["bookmark", "history", "sales.a.cdc"]).await;
    let rows = history.rows();
    assert_eq!(rows.len(), 2, "{}", history.stdout);
    assert_eq!((rows[0][0].as_str(), rows[1][0].as_str()), ("1", "2"));
    assert!(history.stdout.contains("reload"), "{}", history.stdout);
    let rewound = run(&[
        "bookmark",
        "rewind",
        "sales.a.cdc",
        "--to-version",
        "1",
        "--reason",
        "undo",
    ])
    .await;
    assert_eq!(rewound.code, 0, "{}", rewound.stderr);
    assert!(
        rewound
            .stdout
            .lines()
            .any(|l| l.starts_with("version") && l.ends_with(" 3")),
        "{}",
        rewound.stdout
    );
    let too_far = run(&[
        "bookmark",
        "rewind",
        "sales.a.cdc",
        "--to-version",
        "99",
        "--reason",
        "x",
    ])
    .await;
    assert!(matches!(too_far.code, 3 | 4), "{}", too_far.stderr);
    let no_stream = run(&["bookmark", "show", "no.such.stream"]).await;
    assert_eq!(no_stream.code, 3, "{}", no_stream.stderr);

    // views, runs, hydrations: empty lists, unknown ones.
    let views = run(&["views", "ls"]).await;
    assert!(views.stdout.contains("(none)"), "{}", views.stdout);
    assert_eq!(run(&["views", "show", "analytics", "orders"]).await.code, 3);
    let runs = run(&["runs", "ls", "--json"]).await.json();
    assert_eq!(runs["runs"], json!([]));
    assert_eq!(
        run(&["runs", "show", "01890000-0000-7000-8000-000000000000"])
            .await
            .code,
        3
    );
    assert_eq!(run(&["runs", "retry", "not-a-run"]).await.code, 4);
    let hydrations = run(&["hydrations", "ls"]).await;
    assert!(hydrations.stdout.starts_with("ID"), "{}", hydrations.stdout);
    assert_eq!(
        run(&["hydrations", "show", "01890000-0000-7000-8000-000000000000"])
            .await
            .code,
        3
    );

    // events: the latest, then followed live.
    let latest = run(&["events", "--tail", "3", "--json"]).await.json();
    let kinds: Vec<&str> = latest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"bookmark_rewound"), "{kinds:?}");
    let human = run(&["events", "--tail", "3"]).await;
    assert!(human.stdout.starts_with("ID"), "{}", human.stdout);
    let mut follow = Command::new(binary())
        .args([
            "events", "--follow", "--tail", "0", "--json", "--table", "hr.c",
        ])
        .env("SLUICE_URL", &url)
        .env("SLUICE_TOKEN", &admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in lines {
            let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
            let kind = event["kind"].as_str().unwrap().to_owned();
            seen.push(kind.clone());
            if kind == "lease_released" {
                break;
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = server
        .expect(
            Method::POST,
            "/v1/tables/hr.c/leases",
            json!({ "mode": "write", "ttl_seconds": 60, "holder": "compactor" }),
            201,
        )
        .await;
    let release = format!(
        "/v1/leases/{}?token={}",
        held["lease_id"].as_str().unwrap(),
        held["token"]
    );
    assert_eq!(
        server.call(Method::DELETE, &release, None).await.status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "events --follow printed no release"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(
        reader.join().unwrap(),
        ["lease_requested", "lease_granted", "lease_released"]
    );
}

/// `compact --wait` and `hydrations show --follow` on moto's Glue and real
/// Iceberg metadata: progress lines while they run, the exit code at the
/// end (0 when it went well, 7 when it did not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_wait_and_hydration_follow() {
    let lake = glue_lake().await;
    let (server, catalog) = (&lake.server, &lake.catalog);
    let snapshot = py(catalog, &["append", TABLE, "3"]).await;
    refresh(server).await;
    let url = server.url.clone();

    // A hydration followed until it is live.
    server
        .expect(
            Method::PUT,
            "/v1/containers/analytics",
            json!({ "kind": "postgres", "url": crate::harness::admin_url() }),
            201,
        )
        .await;
    let body = json!({ "table": TABLE, "container": "analytics", "target": "orders_cli", "run_id": "cli-run" });
    let created = server
        .expect(Method::POST, "/v1/hydrations", body, 201)
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let follow = {
        let (url, id) = (url.clone(), id.clone());
        tokio::spawn(
            async move { sluice(&url, None, &["hydrations", "show", &id, "--follow"]).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let progress = |phase: &str, copied: i64| {
        json!({ "token": created["session"]["token"], "phase": phase, "rows_copied": copied,
                "rows_total": 3, "snapshot_id": snapshot.trim().parse::<i64>().unwrap() })
    };
    let path = format!("/v1/hydrations/{id}/progress");
    server
        .expect(Method::POST, &path, progress("snapshot", 1), 200)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server
        .expect(Method::POST, &path, progress("catching_up", 3), 200)
        .await;
    let followed = follow.await.unwrap();
    assert_eq!(followed.code, 0, "{}", followed.stderr);
    assert!(followed.stderr.contains(" 33.3% "), "{}", followed.stderr);
    assert!(
        followed
            .stdout
            .lines()
            .any(|l| l.starts_with("state") && l.ends_with("live")),
        "{}",
        followed.stdout
    );
    let live = sluice(&url, None, &["hydrations", "ls", "--json"])
        .await
        .json();
    assert_eq!(live["hydrations"][0]["state"], "live", "{live}");
    let listed = sluice(&url, None, &["hydrations", "ls", "--state", "live"]).await;
    assert_eq!(listed.rows()[0][0], id, "{}", listed.stdout);

    // Cancelled: following it now ends at once, badly.
    let cancelled = sluice(
        &url,
        None,
        &["hydrations", "cancel", &id, "--reason", "test", "--json"],
    )
    .await
    .json();
    assert_eq!(cancelled["state"], "cancelled");
    let ended = sluice(&url, None, &["hydrations", "show", &id, "--follow"]).await;
    assert_eq!(ended.code, 7, "{}", ended.stderr);
    assert!(ended.stderr.contains("cancelled"), "{}", ended.stderr);
    let again = sluice(&url, None, &["hydrations", "cancel", &id]).await;
    assert_eq!(again.code, 4, "{}", again.stderr);

    // A compaction Glue fails: --wait follows it to `failed`, exit 7.
    lake.double
        .script(json!({ "commands": { "compact-orders": null },
                        "outcomes": { "compact-orders": ["FAILED"] } }))
        .await;
    let failed = sluice(&url, None, &["compact", TABLE, "--wait", "--json"]).await;
    assert_eq!(failed.code, 7, "{}\n{}", failed.stdout, failed.stderr);
    assert!(failed.stderr.contains("running"), "{}", failed.stderr);
    let body: Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(body["state"], "failed", "{body}");

    // One that rewrites the table under its token succeeds: exit 0.
    lake.double
        .script(json!({ "commands": { "compact-orders": lake.compact_command() } }))
        .await;
    let done = sluice(&url, None, &["compact", TABLE, "--wait"]).await;
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("state") && l.ends_with("succeeded")),
        "{}",
        done.stdout
    );
    // A table with no compaction job: refused, 4.
    server
        .expect(Method::PUT, "/v1/tables/sales.nojob", json!({}), 201)
        .await;
    let refused = sluice(&url, None, &["compact", "sales.nojob"]).await;
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no_compaction_job"),
        "{}",
        refused.stderr
    );
}

/// Polls `sluice runs show ID --json` until `done` holds.
async fn run_until(url: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = sluice(url, None, &["runs", "show", id, "--json"])
            .await
            .json();
        if done(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} stuck: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `views` remap, show and roll back a view in a real PostgreSQL
/// container; `runs` list, show, retry, discard and cancel runs that
/// moto's Glue (behind the double) fails or keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_remap_show_rollback_and_runs_retry_discard_cancel() {
    let lake = glue_lake().await;
    let (server, url) = (&lake.server, lake.server.url.clone());
    let cli = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sluice(&url, None, &args).await
        }
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();

    // views, in a container of its own.
    let container = crate::harness::fresh_database().await;
    let pool = sqlx::PgPool::connect(&container).await.unwrap();
    for target in ["orders_v1", "orders_v2"] {
        sqlx::query(&format!("CREATE TABLE {target} (id bigint, amount bigint)"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let body = json!({ "kind": "postgres", "url": container });
    server
        .expect(Method::PUT, "/v1/containers/analytics", body, 201)
        .await;
    let first = cli(args(
        "views remap analytics orders --target orders_v1 --reason first",
    ))
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first
            .stdout
            .lines()
            .any(|l| l.starts_with("target") && l.ends_with("orders_v1")),
        "{}",
        first.stdout
    );
    let second = cli(args(
        "views remap analytics orders --target orders_v2 --columns id --reason narrower --json",
    ))
    .await
    .json();
    assert_eq!(
        (&second["target"], &second["columns"]),
        (&json!("orders_v2"), &json!(["id"]))
    );
    let shown = cli(args("views show analytics orders")).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let history: Vec<&str> = shown
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("remap history"))
        .collect();
    assert_eq!(history.len(), 4, "{}", shown.stdout); // title, header, two remaps
    assert!(
        history[2].contains("orders_v1") && history[2].contains("narrower"),
        "{}",
        shown.stdout
    );
    let listed = cli(args("views ls --container analytics --json"))
        .await
        .json();
    assert_eq!(listed["views"][0]["target"], "orders_v2");
    let back = cli(args("views rollback analytics orders --reason undo --json"))
        .await
        .json();
    assert_eq!(back["target"], "orders_v1");
    // A target that is not there is refused, and the view left as it was.
    let missing = cli(args(
        "views remap analytics orders --target orders_v9 --reason typo",
    ))
    .await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("remap_refused"),
        "{}",
        missing.stderr
    );
    let none = cli(args("views rollback analytics nothing --reason x")).await;
    assert_eq!(none.code, 3, "{}", none.stderr);

    // runs: Glue fails the first two attempts and keeps the third running.
    lake.double.create_job("export-orders", 5).await;
    lake.double
        .script(json!({ "outcomes": { "export-orders": ["FAILED", "FAILED", "RUNNING"] } }))
        .await;
    let job = json!({ "glue_job_name": "export-orders", "kind": "export", "max_attempts": 1 });
    server
        .expect(Method::PUT, "/v1/jobs/export", job, 201)
        .await;
    let start = || async move {
        let run = server
            .expect(Method::POST, "/v1/jobs/export/runs", json!({}), 201)
            .await;
        run["id"].as_str().unwrap().to_owned()
    };
    let id = start().await;
    run_until(&url, &id, |r| r["state"] == "dead_letter").await;
    let dead = cli(args("runs ls --state dead_letter")).await;
    let rows = dead.rows();
    assert_eq!(
        (rows.len(), rows[0][0].as_str(), rows[0][1].as_str()),
        (1, id.as_str(), "export"),
        "{}",
        dead.stdout
    );
    let shown = cli(vec!["runs".into(), "show".into(), id.clone()]).await;
    assert!(shown.stdout.contains("scripted failed"), "{}", shown.stdout);
    let retried = cli(vec![
        "runs".into(),
        "retry".into(),
        id.clone(),
        "--json".into(),
    ])
    .await
    .json();
    assert_eq!(retried["state"], "queued", "{retried}");
    run_until(&url, &id, |r| {
        r["state"] == "dead_letter" && r["attempt"] == 2
    })
    .await;
    let discarded = cli(vec![
        "runs".into(),
        "discard".into(),
        id.clone(),
        "--json".into(),
    ])
    .await
    .json();
    assert_eq!(discarded["state"], "failed", "{discarded}");
    let again = cli(vec!["runs".into(), "discard".into(), id.clone()]).await;
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert!(again.stderr.contains("run_state"), "{}", again.stderr);
    let running = start().await;
    run_until(&url, &running, |r| r["state"] == "running").await;
    let cancelled = cli(vec![
        "runs".into(),
        "cancel".into(),
        running.clone(),
        "--json".into(),
    ])
    .await
    .json();
    assert_eq!(cancelled["cancel_requested"], true, "{cancelled}");
    run_until(&url, &running, |r| r["state"] == "cancelled").await;
}

/// Stored text is printed for people without its control characters: a
/// Glue run's failure message and a compaction's `requested_by` and
/// `reason` carrying terminal escapes (recolour, retitle the window) show
/// them escaped (`\e[31m`) in `compact`, `runs ls` and `runs show`, on
/// stdout and stderr; `--json` still gives the API's text as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output_prints_no_terminal_escapes_from_stored_text() {
    let lake = glue_lake().await;
    let url = lake.server.url.clone();
    // The compaction job fails with a message that recolours and retitles.
    let fail = "printf '\\033[31mboom\\033]0;pwned\\007' >&2; exit 1";
    lake.double
        .script(json!({ "commands": { "compact-orders": ["sh", "-c", fail, "sh"] } }))
        .await;
    let clean = |ran: &Ran| {
        for (name, text) in [("stdout", &ran.stdout), ("stderr", &ran.stderr)] {
            assert!(
                !text.contains(['\x1b', '\x07', '\u{9b}']),
                "{name} carries control characters: {text:?}"
            );
        }
    };
    let compact = sluice(
        &url,
        None,
        &[
            "compact",
            TABLE,
            "--requested-by",
            "\x1b[31mops",
            "--reason",
            "\x1b]0;title\x07why",
            "--wait",
        ],
    )
    .await;
    assert_eq!(compact.code, 7, "{}\n{}", compact.stdout, compact.stderr);
    clean(&compact);
    assert!(
        compact
            .stdout
            .lines()
            .any(|l| l.starts_with("requested_by") && l.ends_with("\\e[31mops")),
        "{}",
        compact.stdout
    );
    assert!(
        compact.stdout.contains("\\e]0;title\\u{7}why"),
        "{}",
        compact.stdout
    );

    let runs = sluice(&url, None, &["runs", "ls", "--json"]).await.json();
    let run = &runs["runs"][0];
    assert_eq!(run["error"], "\x1b[31mboom\x1b]0;pwned\x07", "{runs}");
    let id = run["id"].as_str().unwrap();
    let listed = sluice(&url, None, &["runs", "ls"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    clean(&listed);
    assert!(
        listed.stdout.contains("\\e[31mboom\\e]0;pwned\\u{7}"),
        "{}",
        listed.stdout
    );
    let shown = sluice(&url, None, &["runs", "show", id]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    clean(&shown);
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("error") && l.ends_with("\\e[31mboom\\e]0;pwned\\u{7}")),
        "{}",
        shown.stdout
    );
}
