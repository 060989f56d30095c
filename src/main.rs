//! The `cdc-sidecar` binary: arguments, configuration, logging, signals. Everything
//! else is the library, so tests run exactly what ships.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use cdc_sidecar::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    version,
    about = "Streams SQL Server Change Tracking to Apache Pulsar and Redis Pub/Sub"
)]
struct Args {
    /// The configuration file; environment variables CDC_SIDECAR_* override it.
    #[arg(long, global = true, env = "CDC_SIDECAR_CONFIG", default_value = "sidecar.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Stream changes until SIGTERM or Ctrl-C (the default).
    Run,
    /// Run the startup checks against the database and exit.
    Check,
    /// Inspect or move table checkpoints.
    Checkpoint {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Exit 0 if this container's /healthz answers 200 (for Docker HEALTHCHECK).
    Healthcheck {
        /// Address of the HTTP endpoints; defaults to http.listen on loopback.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum CheckpointAction {
    /// Show every table's checkpoint.
    List,
    /// Set a table's checkpoint (even backwards). Refused while a sidecar runs.
    Set { table: String, version: i64 },
    /// Forget a table's checkpoint: it starts as new (snapshot or current version).
    Delete { table: String },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(Some(&args.config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cdc-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cdc-sidecar: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(args.command.unwrap_or(Command::Run), config)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cdc-sidecar: {e:#}");
            let code = e.downcast_ref::<cdc_sidecar::RunError>().map_or(1, |e| e.exit_code());
            ExitCode::from(code as u8)
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<u8> {
    match command {
        Command::Run => {
            let token = CancellationToken::new();
            tokio::spawn(shutdown_on_signal(token.clone()));
            let grace = std::time::Duration::from_millis(config.shutdown.grace_period_ms);
            let run = cdc_sidecar::run(config, token.clone());
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => result?,
                _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
                    anyhow::bail!("shutdown took longer than shutdown.grace_period_ms ({grace:?}); what was not delivered is read again on restart");
                }
            }
            Ok(0)
        }
        Command::Check => {
            let report = cdc_sidecar::check(&config).await?;
            if report.problems.is_empty() {
                println!(
                    "ok: {} tables ready on {} / {}",
                    report.tables.len(),
                    report.identity.server,
                    report.identity.database
                );
                Ok(0)
            } else {
                Err(cdc_sidecar::RunError::Setup(report.problems).into())
            }
        }
        Command::Checkpoint { action } => {
            match action {
                CheckpointAction::List => {
                    for (table, cp) in cdc_sidecar::admin::checkpoint_list(&config).await? {
                        println!("{table}\t{}\t{}", cp.version, cp.updated_at_ms);
                    }
                }
                CheckpointAction::Set { table, version } => {
                    cdc_sidecar::admin::checkpoint_set(&config, &table, version).await?;
                    println!("{table}: checkpoint set to {version}");
                }
                CheckpointAction::Delete { table } => {
                    let existed = cdc_sidecar::admin::checkpoint_delete(&config, &table).await?;
                    println!(
                        "{table}: {}",
                        if existed {
                            "checkpoint deleted"
                        } else {
                            "had no checkpoint"
                        }
                    );
                }
            }
            Ok(0)
        }
        Command::Healthcheck { addr } => {
            let mut addr = addr.unwrap_or(config.http.listen);
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Ok(
                if cdc_sidecar::http::probe(addr, std::time::Duration::from_secs(3)).await {
                    0
                } else {
                    1
                },
            )
        }
    }
}

async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
    token.cancel();
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
