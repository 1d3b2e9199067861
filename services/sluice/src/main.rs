//! The `sluice` binary: `serve`, `migrate`, `openapi`, `token`.
#![forbid(unsafe_code)]

mod config;
mod tls;
mod token_cli;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand};
use config::{FileConfig, StorageArgs};
use sluice_api::{ApiConfig, AppState};
use sluice_store::Store;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests (long-polls included) get to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "The control plane of an Iceberg data platform"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

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
        /// Serve HTTPS with this PEM certificate chain (with --tls-key).
        #[arg(long, env = "SLUICE__SERVER__TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "SLUICE__SERVER__TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Run the database migrations and exit.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(token_cli::TokenCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Cmd::Openapi => {
            println!("{}", serde_json::to_string_pretty(&sluice_api::openapi())?);
            Ok(())
        }
        Cmd::Migrate { storage } => {
            init_logging();
            let (store, _) = storage.resolve(&file.database);
            Store::migrate(&store).await?;
            tracing::info!("migrated {}", config::describe(&store));
            Ok(())
        }
        Cmd::Serve {
            bind,
            auth,
            max_waiters_per_table,
            max_long_polls,
            tls_cert,
            tls_key,
            storage,
        } => {
            init_logging();
            let bind = bind
                .or(file.server.bind.clone())
                .unwrap_or_else(|| config::DEFAULT_BIND.to_owned());
            let auth = auth
                .or(file.server.auth.clone())
                .unwrap_or_else(|| "auto".to_owned());
            let (store_config, writer) = storage.resolve(&file.database);
            let defaults = ApiConfig::default();
            let api = ApiConfig {
                max_waiters_per_table: max_waiters_per_table
                    .or(file.server.max_waiters_per_table)
                    .unwrap_or(defaults.max_waiters_per_table),
                max_long_polls: max_long_polls
                    .or(file.server.max_long_polls)
                    .unwrap_or(defaults.max_long_polls),
                ..defaults
            };
            let tls = tls_cert
                .or(file.server.tls_cert.clone())
                .zip(tls_key.or(file.server.tls_key.clone()));
            serve(&bind, &auth, tls, api, store_config, writer).await
        }
        Cmd::Token(cmd) => token_cli::run(cmd, &file).await,
    }
}

async fn serve(
    bind: &str,
    auth: &str,
    tls: Option<(PathBuf, PathBuf)>,
    api: ApiConfig,
    store_config: sluice_store::StoreConfig,
    writer: sluice_store::WriterConfig,
) -> anyhow::Result<()> {
    let store = Store::open(&store_config, writer).await?;
    let listener = tokio::net::TcpListener::bind(bind)
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
    let app = sluice_api::router(AppState::new(store, &api), api);
    tracing::info!(
        "sluice listening on {}://{} (storage: {})",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        config::describe(&store_config)
    );
    let stop = CancellationToken::new();
    let server = match tls {
        Some((cert, key)) => tokio::spawn(
            axum::serve(tls::TlsListener::new(listener, &cert, &key)?, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        ),
        None => tokio::spawn(
            axum::serve(listener.tap_io(no_delay), app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        ),
    };
    shutdown_signal().await;
    tracing::info!(
        "shutting down; draining requests for up to {} s",
        DRAIN.as_secs()
    );
    stop.cancel();
    match tokio::time::timeout(DRAIN, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("requests still open after the drain; stopping anyway"),
    }
    Ok(())
}

/// Answers are small and latency is the point: no Nagle delay.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
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

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}
