//! `mssql-standin`: the SQL Server stand-in as a process, for the demo and manual
//! testing. `--sample` builds the `Shop` database from the repo's migrations;
//! `--workload` keeps committing a small mix of changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use testkit::mssql::engine::Engine;
use testkit::mssql::sample;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};

#[derive(Parser)]
#[command(about = "A SQL Server stand-in speaking TDS 7.4 with Change Tracking")]
struct Args {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 1433)]
    port: u16,
    /// Password of the `sa` login.
    #[arg(long, default_value = "Standin-Pass-1")]
    sa_password: String,
    /// Create the sample Shop database by running migrations/.
    #[arg(long)]
    sample: bool,
    /// Commit a workload transaction every this many milliseconds (needs --sample).
    #[arg(long)]
    workload: bool,
    /// Milliseconds between workload transactions.
    #[arg(long, default_value_t = 500)]
    workload_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let engine = Engine::with_sa_password(&args.sa_password);
    if args.sample {
        sample::setup(&engine)?;
    }
    let config = MssqlServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        ..Default::default()
    };
    let server = MssqlServer::start(Arc::new(engine.clone()), config).await?;
    println!("mssql-standin listening on {}", server.addr());
    let workload = async {
        if !(args.sample && args.workload) {
            return std::future::pending::<anyhow::Result<()>>().await;
        }
        let mut step = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(args.workload_interval_ms)).await;
            sample::workload_step(&engine, step)?;
            step += 1;
        }
    };
    tokio::select! {
        r = workload => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    server.shutdown().await;
    Ok(())
}
