//! The `sluice` binary: `serve`, `migrate`, `healthcheck`, `check-config`,
//! `openapi`, `token`, and the operator commands that call a running server
//! (`tables`, `leases`, ...).
#![forbid(unsafe_code)]

mod config;
mod ops_cli;
mod principal_cli;
mod server;
mod tls;
mod token_cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{FileConfig, StorageArgs};
use sluice_api::{ApiConfig, AppState};
use sluice_store::Store;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests (long-polls included) get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(10);
/// hyper's own default; long enough that kept-alive client pools rarely
/// find their connection closed under them.
const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_WRITE_STALL_TIMEOUT_SECONDS: u64 = 30;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "The control plane of an Iceberg data platform",
    after_help = ops_cli::EXIT_CODES
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// The TOML configuration itself, instead of a file: for platforms that
    /// set environment variables but mount no files (ECS on Fargate).
    #[arg(
        long,
        global = true,
        env = "SLUICE_CONFIG_TOML",
        conflicts_with = "config",
        hide_env_values = true
    )]
    config_toml: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

// One value, parsed once at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the migrations, then serve the API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SLUICE__SERVER__BIND")]
        bind: Option<String>,
        /// `on`: every /v1 call needs a bearer token. `off`: none does.
        /// `auto` (default): off only for SQLite on a loopback address.
        #[arg(long, env = "SLUICE__SERVER__AUTH", value_parser = ["auto", "on", "off"])]
        auth: Option<String>,
        /// Most leases that may wait on one table (default 1000).
        #[arg(long, env = "SLUICE__SERVER__MAX_WAITERS_PER_TABLE")]
        max_waiters_per_table: Option<u32>,
        /// Most long-polls open at once (default 10000).
        #[arg(long, env = "SLUICE__SERVER__MAX_LONG_POLLS")]
        max_long_polls: Option<usize>,
        /// Close a connection whose request headers are not all in this
        /// many seconds after the server starts waiting for them (also how
        /// long an idle kept-alive connection stays open; default 30).
        #[arg(long, env = "SLUICE__SERVER__HEADER_READ_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        header_read_timeout_seconds: Option<u64>,
        /// Close a connection whose client has taken none of an answer for
        /// this many seconds (an event feed nobody reads; default 30).
        #[arg(long, env = "SLUICE__SERVER__WRITE_STALL_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        write_stall_timeout_seconds: Option<u64>,
        /// Most client connections open at once; more are answered 503 and
        /// closed (default: the open-file limit minus 256).
        #[arg(long, env = "SLUICE__SERVER__MAX_OPEN_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
        max_open_connections: Option<u64>,
        /// Drop an event feed's consumer that stays a page or more behind
        /// the log this long (default 60); it resumes with Last-Event-ID.
        #[arg(long, env = "SLUICE__SERVER__EVENT_FEED_DROP_AFTER_SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        event_feed_drop_after_seconds: Option<u64>,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, env = "SLUICE__SERVER__TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "SLUICE__SERVER__TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The Iceberg catalog of tables that name none (default: the only
        /// configured one, or the embedded `local` one on SQLite).
        #[arg(long, env = "SLUICE__ICEBERG__DEFAULT_CATALOG")]
        default_catalog: Option<String>,
        /// Shortest time, in seconds, between two reconcile passes of the
        /// snapshot logs with their catalogs' listings (default 30; with
        /// many tables the call budget spaces them further).
        #[arg(long, env = "SLUICE__ICEBERG__REFRESH_INTERVAL_SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        refresh_interval_seconds: Option<u64>,
        /// Catalog calls a second the snapshot watcher makes, for all
        /// tables: listing pages, metadata reads, nudged refreshes
        /// (default 50).
        #[arg(long, env = "SLUICE__ICEBERG__CATALOG_CALLS_PER_SECOND")]
        catalog_calls_per_second: Option<f64>,
        /// Seconds between two runs of the outbox (side effects such as a
        /// live hydration's view remap; default 1).
        #[arg(long, env = "SLUICE__OUTBOX__INTERVAL_SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
        outbox_interval_seconds: Option<u64>,
        /// Total Glue GetJobRun/GetJobRuns calls per second the scheduler
        /// makes to follow runs (default 10; Glue throttles per account).
        #[arg(long, env = "SLUICE__SCHEDULER__GLUE_CALLS_PER_SECOND")]
        glue_calls_per_second: Option<f64>,
        /// The SQS queue EventBridge feeds with Glue's table and job state
        /// changes: the leader reads it to refresh a changed table and read
        /// an ended run at once (default: none, polls alone).
        #[arg(long, env = "SLUICE__EVENTS__QUEUE_URL")]
        events_queue_url: Option<String>,
        /// Glue StartJobRun calls per second at most: a burst of due runs
        /// is started side by side within it (default 50).
        #[arg(long, env = "SLUICE__SCHEDULER__GLUE_STARTS_PER_SECOND")]
        glue_starts_per_second: Option<f64>,
        /// Longest wait between two polls of one run in Glue (default 30).
        #[arg(long, env = "SLUICE__SCHEDULER__RUN_POLL_MAX_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        run_poll_max_seconds: Option<u64>,
        /// TTL of the scheduler leader's lease: with several replicas, a
        /// dead leader is replaced after about this long (default 6).
        #[arg(long, env = "SLUICE__SCHEDULER__LEADER_TTL_SECONDS", value_parser = clap::value_parser!(u32).range(2..=300))]
        leader_ttl_seconds: Option<u32>,
        /// TTL of a compaction's write lease, heartbeated while its run
        /// lives (default 120).
        #[arg(long, env = "SLUICE__SCHEDULER__COMPACTION_LEASE_TTL_SECONDS", value_parser = clap::value_parser!(u32).range(3..=86400))]
        compaction_lease_ttl_seconds: Option<u32>,
        /// The URL the Glue jobs sluice starts reach it at (through a load
        /// balancer, say), passed to every run as `--sluice-url` so that
        /// the job's client needs no configuration of its own.
        #[arg(long, env = "SLUICE__SCHEDULER__ADVERTISE_URL")]
        advertise_url: Option<String>,
        /// Turn IAM authentication on: callers sign this deployment's name
        /// in `X-Sluice-Server-Id` (`POST /v1/auth/aws`).
        #[arg(long, env = "SLUICE__AWS_AUTH__SERVER_ID")]
        aws_auth_server_id: Option<String>,
        /// Where signed login requests go (default: STS in `[aws] region`,
        /// else the global endpoint).
        #[arg(long, env = "SLUICE__AWS_AUTH__STS_ENDPOINT")]
        aws_auth_sts_endpoint: Option<String>,
        /// How long a token from an IAM login lives (default 3600).
        #[arg(long, env = "SLUICE__AWS_AUTH__TOKEN_TTL_SECONDS", value_parser = clap::value_parser!(u64).range(60..=43200))]
        aws_auth_token_ttl_seconds: Option<u64>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Run the database migrations and exit.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Exit 0 if a sluice server answers its readiness check (for a
    /// container's HEALTHCHECK: the image has no curl), else 1.
    Healthcheck {
        /// The URL to GET; any 2xx answer is healthy. Default: `/readyz` on
        /// loopback at the port `serve` binds (`--bind`, else
        /// `SLUICE__SERVER__BIND`, else the file's, else 7878).
        #[arg(long)]
        url: Option<String>,
        /// The address `serve` listens on, when --url is absent.
        #[arg(long, env = "SLUICE__SERVER__BIND")]
        bind: Option<String>,
        /// Seconds before an unanswered check fails.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout_seconds: u64,
    },
    /// Read the configuration file and the storage settings and say what
    /// `serve` would use, without connecting: exit 1 on an unknown key or a
    /// bad value (a deployment's check before it rolls out).
    CheckConfig {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(token_cli::TokenCmd),
    /// Map AWS identities to principals (IAM authentication).
    #[command(subcommand)]
    Principal(principal_cli::PrincipalCmd),
    #[command(flatten)]
    Ops(ops_cli::OpsCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    if let Cmd::Ops(cmd) = cli.command {
        return runtime.block_on(ops_cli::run(cmd));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref(), cli.config_toml.as_deref())?;
    match cli.command {
        Cmd::Healthcheck {
            url,
            bind,
            timeout_seconds,
        } => {
            let url = url.unwrap_or_else(|| {
                let bind = bind
                    .or(file.server.bind)
                    .unwrap_or_else(|| config::DEFAULT_BIND.to_owned());
                let port = bind.rsplit_once(':').map_or("7878", |(_, port)| port);
                format!("http://127.0.0.1:{port}/readyz")
            });
            healthcheck(&url, Duration::from_secs(timeout_seconds)).await
        }
        Cmd::CheckConfig { storage } => {
            let (store, _) = storage.resolve(&file.database)?;
            let (catalogs, default) = config::catalogs(&file, &store, None);
            println!("storage: {}", config::describe(&store));
            for c in &catalogs {
                let mark = if default.as_deref() == Some(c.name.as_str()) {
                    " (default)"
                } else {
                    ""
                };
                println!("catalog: {}{mark}", c.name);
            }
            if let Some(endpoint) = &file.aws.endpoint_url {
                println!("aws endpoint: {endpoint}");
            }
            Ok(())
        }
        Cmd::Openapi => {
            println!("{}", serde_json::to_string_pretty(&sluice_api::openapi())?);
            Ok(())
        }
        Cmd::Migrate { storage } => {
            init_logging();
            let (store, _) = storage.resolve(&file.database)?;
            Store::migrate(&store).await?;
            tracing::info!("migrated {}", config::describe(&store));
            Ok(())
        }
        Cmd::Serve {
            bind,
            auth,
            max_waiters_per_table,
            max_long_polls,
            header_read_timeout_seconds,
            write_stall_timeout_seconds,
            max_open_connections,
            event_feed_drop_after_seconds,
            tls_cert,
            tls_key,
            default_catalog,
            refresh_interval_seconds,
            catalog_calls_per_second,
            outbox_interval_seconds,
            glue_calls_per_second,
            glue_starts_per_second,
            events_queue_url,
            run_poll_max_seconds,
            leader_ttl_seconds,
            compaction_lease_ttl_seconds,
            advertise_url,
            aws_auth_server_id,
            aws_auth_sts_endpoint,
            aws_auth_token_ttl_seconds,
            storage,
        } => {
            init_logging();
            let bind = bind
                .or(file.server.bind.clone())
                .unwrap_or_else(|| config::DEFAULT_BIND.to_owned());
            let auth = auth
                .or(file.server.auth.clone())
                .unwrap_or_else(|| "auto".to_owned());
            let (store_config, writer) = storage.resolve(&file.database)?;
            let defaults = ApiConfig::default();
            let api = ApiConfig {
                max_waiters_per_table: max_waiters_per_table
                    .or(file.server.max_waiters_per_table)
                    .unwrap_or(defaults.max_waiters_per_table),
                max_long_polls: max_long_polls
                    .or(file.server.max_long_polls)
                    .unwrap_or(defaults.max_long_polls),
                event_feed_drop_after: event_feed_drop_after_seconds
                    .or(file.server.event_feed_drop_after_seconds)
                    .map_or(defaults.event_feed_drop_after, Duration::from_secs),
                aws_auth: config::aws_auth(
                    &file,
                    aws_auth_server_id,
                    aws_auth_sts_endpoint,
                    aws_auth_token_ttl_seconds,
                )?,
                ..defaults
            };
            let tls = tls_cert
                .or(file.server.tls_cert.clone())
                .zip(tls_key.or(file.server.tls_key.clone()));
            let http = server::ServerConfig {
                header_read_timeout: Duration::from_secs(
                    header_read_timeout_seconds
                        .or(file.server.header_read_timeout_seconds)
                        .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
                ),
                write_stall_timeout: Duration::from_secs(
                    write_stall_timeout_seconds
                        .or(file.server.write_stall_timeout_seconds)
                        .unwrap_or(DEFAULT_WRITE_STALL_TIMEOUT_SECONDS),
                ),
                max_connections: max_open_connections
                    .or(file.server.max_open_connections)
                    .map_or_else(server::ServerConfig::default_max_connections, |m| {
                        m as usize
                    }),
                drain: DRAIN,
            };
            let (catalogs, default_catalog) =
                config::catalogs(&file, &store_config, default_catalog);
            let iceberg = Iceberg {
                catalogs,
                default_catalog,
                refresh_interval: Duration::from_secs(
                    refresh_interval_seconds
                        .or(file.iceberg.refresh_interval_seconds)
                        .unwrap_or(config::DEFAULT_REFRESH_INTERVAL_SECONDS),
                ),
                catalog_calls_per_second: catalog_calls_per_second
                    .or(file.iceberg.catalog_calls_per_second)
                    .filter(|r| *r > 0.0)
                    .unwrap_or(config::DEFAULT_CATALOG_CALLS_PER_SECOND),
                outbox_interval: Duration::from_secs(outbox_interval_seconds.unwrap_or(1)),
                events_queue_url: events_queue_url.or_else(|| file.events.queue_url.clone()),
                aws_region: file.aws.region.clone(),
                aws_endpoint_url: file.aws.endpoint_url.clone(),
            };
            let defaults = sluice_scheduler::SchedulerConfig::default();
            let scheduler = sluice_scheduler::SchedulerConfig {
                glue_calls_per_second: glue_calls_per_second
                    .or(file.scheduler.glue_calls_per_second)
                    .filter(|r| *r > 0.0)
                    .unwrap_or(defaults.glue_calls_per_second),
                glue_starts_per_second: glue_starts_per_second
                    .or(file.scheduler.glue_starts_per_second)
                    .filter(|r| *r > 0.0)
                    .unwrap_or(defaults.glue_starts_per_second),
                poll: sluice_core::scheduling::PollPolicy {
                    max_ms: run_poll_max_seconds
                        .or(file.scheduler.run_poll_max_seconds)
                        .map_or(defaults.poll.max_ms, |s| s as i64 * 1000),
                    ..defaults.poll
                },
                leader_ttl_seconds: leader_ttl_seconds
                    .or(file.scheduler.leader_ttl_seconds)
                    .unwrap_or(defaults.leader_ttl_seconds),
                compaction_lease_ttl_seconds: compaction_lease_ttl_seconds
                    .or(file.scheduler.compaction_lease_ttl_seconds)
                    .unwrap_or(defaults.compaction_lease_ttl_seconds),
                replica: format!("{}:{}", hostname(), std::process::id()),
                advertise_url: advertise_url.or_else(|| file.scheduler.advertise_url.clone()),
                aws_login: api
                    .aws_auth
                    .as_ref()
                    .map(|a| (a.server_id.clone(), a.sts_endpoint.clone())),
                ..defaults
            };
            serve(
                &bind,
                &auth,
                tls,
                api,
                http,
                store_config,
                writer,
                iceberg,
                scheduler,
            )
            .await
        }
        Cmd::Token(cmd) => token_cli::run(cmd, &file).await,
        Cmd::Principal(cmd) => principal_cli::run(cmd, &file).await,
        Cmd::Ops(_) => unreachable!("run by main"),
    }
}

/// One GET, no retries: the container runtime retries on its own schedule.
async fn healthcheck(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let answer = reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    println!("{body}");
    Ok(())
}

/// The Iceberg catalogs and how often the snapshot logs are refreshed.
struct Iceberg {
    catalogs: Vec<sluice_iceberg::CatalogConfig>,
    default_catalog: Option<String>,
    refresh_interval: Duration,
    catalog_calls_per_second: f64,
    /// The AWS events queue, if any.
    events_queue_url: Option<String>,
    /// How often the outbox's executor runs.
    outbox_interval: Duration,
    /// `[aws]`: for sluice's own AWS calls (Glue containers' views).
    aws_region: Option<String>,
    aws_endpoint_url: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    bind: &str,
    auth: &str,
    tls: Option<(PathBuf, PathBuf)>,
    api: ApiConfig,
    http: server::ServerConfig,
    store_config: sluice_store::StoreConfig,
    writer: sluice_store::WriterConfig,
    iceberg: Iceberg,
    scheduler: sluice_scheduler::SchedulerConfig,
) -> anyhow::Result<()> {
    let store = Store::open(&store_config, writer).await?;
    let catalogs: std::sync::Arc<dyn sluice_core::snapshots::CatalogPort> = std::sync::Arc::new(
        sluice_iceberg::Catalogs::connect(&iceberg.catalogs, iceberg.default_catalog.as_deref())
            .await?,
    );
    // The scheduler's leader lease also leads the watcher's reconcile and
    // the outbox: a follower replica calls no catalog, Glue or container.
    let (publish, leadership) = sluice_store::leadership();
    // No catalog, nothing to refresh (a PostgreSQL deployment before its
    // catalogs are configured).
    let (nudges, watcher) = if iceberg.catalogs.is_empty() {
        (sluice_store::Nudges::nowhere(), None)
    } else {
        let (nudges, task) = sluice_store::spawn_watcher(
            store.clone(),
            catalogs.clone(),
            sluice_store::WatchConfig {
                interval: iceberg.refresh_interval,
                catalog_calls_per_second: iceberg.catalog_calls_per_second,
            },
            leadership.clone(),
        );
        (nudges, Some(task))
    };
    let views: std::sync::Arc<dyn sluice_core::views::ViewPort> =
        std::sync::Arc::new(sluice_containers::Containers::new(
            iceberg.aws_region.clone(),
            iceberg.aws_endpoint_url.clone(),
        ));
    let (runs_changed, events) = match &iceberg.events_queue_url {
        Some(queue_url) => {
            let (rx, task) = sluice_scheduler::events::spawn_listener(
                sluice_scheduler::events::EventsConfig {
                    queue_url: queue_url.clone(),
                    region: iceberg.aws_region.clone(),
                    endpoint_url: iceberg.aws_endpoint_url.clone(),
                },
                store.clone(),
                nudges.clone(),
                leadership.clone(),
            );
            (Some(rx), Some(task))
        }
        None => (None, None),
    };
    let glue = std::sync::Arc::new(sluice_scheduler::Glue::new(
        iceberg.aws_region,
        iceberg.aws_endpoint_url,
        scheduler.glue_timeout,
    ));
    let stop_scheduler = CancellationToken::new();
    let scheduler = sluice_scheduler::spawn(
        store.clone(),
        glue,
        catalogs.clone(),
        scheduler,
        publish,
        runs_changed,
        stop_scheduler.clone(),
    );
    let executor = sluice_store::spawn_executor(
        store.clone(),
        sluice_store::OutboxPorts {
            views: views.clone(),
            catalogs: catalogs.clone(),
        },
        iceberg.outbox_interval,
        leadership,
    );
    let listener = server::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let embedded = matches!(store_config, sluice_store::StoreConfig::Sqlite { .. })
        && listener.local_addr()?.ip().is_loopback();
    let auth_required = match auth {
        "on" => true,
        "off" => false,
        "auto" => !embedded,
        other => anyhow::bail!("--auth must be auto, on or off, not `{other}`"),
    };
    if !auth_required {
        tracing::warn!(
            "AUTHENTICATION IS OFF: anyone who can reach {} may do anything, revoke included. \
             Fine for a first look on this machine; create tokens (`sluice token create`) and \
             serve with `--auth on` before anyone else depends on this server.",
            listener.local_addr()?
        );
        if !embedded {
            tracing::warn!("AUTHENTICATION WAS TURNED OFF EXPLICITLY on a server that others can reach or share");
        }
    }
    let api = ApiConfig {
        auth_required,
        ..api
    };
    let acceptor = tls
        .map(|(cert, key)| tls::acceptor(&cert, &key))
        .transpose()?;
    let app = sluice_api::router(AppState::new(store, catalogs, views, nudges, &api), api);
    tracing::info!(
        "sluice listening on {}://{} (storage: {}; at most {} connections)",
        if acceptor.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        config::describe(&store_config),
        http.max_connections
    );
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, app, acceptor, http, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    server.await?;
    // The scheduler resigns its leadership: another replica leads at once.
    stop_scheduler.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), scheduler).await;
    executor.abort();
    if let Some(events) = events {
        events.abort();
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// This machine's name, for the scheduler leader lease's holder.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}
