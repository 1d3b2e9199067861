//! `sluice-load`: drive leases and stream batches against sluice, record the
//! lease history, check it.

use clap::{Parser, Subcommand};
use sluice_client::client::Client;
use sluice_client::history;
use sluice_client::load::{self, LoadConfig};
use sluice_client::stream_load::{self, StreamLoadConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sluice-load",
    about = "Load generator and history checker for sluice leases and streams"
)]
struct Cli {
    /// A bearer token, for servers that require one.
    #[arg(long, global = true, env = "SLUICE_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Take and release random leases; print a JSON summary; write the history.
    Run {
        /// A sluice base URL; repeat for several replicas.
        #[arg(long = "url", default_value = "http://127.0.0.1:7878")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        tables: usize,
        #[arg(long, default_value = "load")]
        namespace: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 0.7)]
        read_ratio: f64,
        #[arg(long, default_value_t = 30)]
        ttl: u32,
        #[arg(long, default_value_t = 30)]
        wait: u32,
        /// Milliseconds each lease is held before its release.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// Register the tables first.
        #[arg(long)]
        setup: bool,
        /// Write every hold as a JSON line here.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Measure how soon a long-polling writer is answered after the release
    /// that lets it in (give two URLs to measure across replicas).
    Wake {
        #[arg(long, default_value = "http://127.0.0.1:7878")]
        reader_url: String,
        #[arg(long)]
        writer_url: Option<String>,
        #[arg(long, default_value = "bench.wake")]
        table: String,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Run open -> commit batch cycles on random streams; print a JSON summary.
    Streams {
        #[arg(long, default_value = "http://127.0.0.1:7878")]
        url: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        #[arg(long, default_value = "load")]
        namespace: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Register the streams first.
        #[arg(long)]
        setup: bool,
    },
    /// The peer: take and release etcd locks the same way (etcd's v3 JSON
    /// gateway); print a JSON summary.
    Etcd {
        #[arg(long, default_value = "http://127.0.0.1:2379")]
        url: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        tables: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Check a recorded history against itself and the server's event log.
    Check {
        #[arg(long, default_value = "http://127.0.0.1:7878")]
        url: String,
        #[arg(long)]
        history: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let token = cli.token;
    match cli.command {
        Cmd::Run {
            urls,
            clients,
            tables,
            namespace,
            seconds,
            read_ratio,
            ttl,
            wait,
            hold_ms,
            setup,
            history,
        } => {
            let config = LoadConfig {
                urls,
                clients,
                tables,
                namespace,
                duration: Duration::from_secs_f64(seconds),
                read_ratio,
                ttl_seconds: ttl,
                wait_seconds: wait,
                hold: Duration::from_millis(hold_ms),
                token: token.clone(),
                ..LoadConfig::default()
            };
            if setup {
                load::setup(&config, &load::load_table_settings()).await?;
            }
            let result = load::run(config).await?;
            if let Some(path) = history {
                let lines: Vec<String> = result
                    .holds
                    .iter()
                    .map(|h| serde_json::to_string(h).expect("serialize"))
                    .collect();
                std::fs::write(path, lines.join("\n"))?;
            }
            println!("{}", serde_json::to_string(&result.summary)?);
            Ok(())
        }
        Cmd::Wake {
            reader_url,
            writer_url,
            table,
            rounds,
        } => {
            let writer_url = writer_url.unwrap_or_else(|| reader_url.clone());
            let mut samples = sluice_client::wake::wake_latencies(
                &reader_url,
                &writer_url,
                &table,
                rounds,
                token,
            )
            .await?;
            samples.sort_unstable();
            let ms = |q: f64| {
                samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
            };
            println!(
                "{}",
                serde_json::json!({ "rounds": rounds, "wake_p50_ms": ms(0.5), "wake_p99_ms": ms(0.99), "wake_max_ms": ms(1.0) })
            );
            Ok(())
        }
        Cmd::Streams {
            url,
            clients,
            streams,
            namespace,
            seconds,
            setup,
        } => {
            let config = StreamLoadConfig {
                url,
                clients,
                streams,
                namespace,
                duration: Duration::from_secs_f64(seconds),
                token,
            };
            if setup {
                stream_load::setup(&config).await?;
            }
            let summary = stream_load::run(config).await?;
            println!("{}", serde_json::to_string(&summary)?);
            anyhow::ensure!(summary.errors == 0, "{} calls failed", summary.errors);
            Ok(())
        }
        Cmd::Etcd {
            url,
            clients,
            tables,
            seconds,
        } => {
            let summary = sluice_client::etcd_load::run(sluice_client::etcd_load::EtcdLoadConfig {
                url,
                clients,
                tables,
                duration: Duration::from_secs_f64(seconds),
            })
            .await?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Cmd::Check { url, history: path } => {
            let holds = history::read_holds(&std::fs::read_to_string(path)?)?;
            let events = Client::new(&url)
                .with_token(token)
                .all_events(0, None)
                .await?;
            let report = history::check(&holds, &events);
            for v in &report.violations {
                eprintln!("violation: {v}");
            }
            println!(
                "checked {} holds on {} tables against {} events: {} violations",
                report.holds,
                report.tables,
                report.events,
                report.violations.len()
            );
            anyhow::ensure!(report.ok(), "the history is not safe");
            Ok(())
        }
    }
}
