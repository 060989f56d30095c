//! `cdc-bench`: measures the sidecar as its users judge it — throughput, the limits
//! beside it, latency, idle cost and compression — against the SQL Server and Pulsar
//! stand-ins and a real `redis-server`, and prints a Markdown table; and how a large
//! backlog catches up with every statement bounded.
//!
//! The sidecar runs in a child process (this binary re-executed as `cdc-bench sidecar
//! --config <file>`, which calls `cdc_sidecar::run` exactly as the `cdc-sidecar` binary
//! does), so its CPU time and peak RSS are read from `/proc` apart from the stand-ins,
//! which stay in this process. `docs/BENCHMARKS.md` has the results and how to read them.

mod arrivals;
mod backlog;
mod compression;
mod idle;
mod latency;
mod report;
mod rig;
mod throughput;
mod workload;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use report::Section;

#[derive(Parser)]
#[command(about = "Benchmarks of cdc-sidecar against the testkit stand-ins")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 1 and 2: changes/s for 1 and 10 tables, CPU, peak RSS, and the raw-read and publish limits.
    Throughput(SizeArg),
    /// 3: commit → Redis and → Pulsar latency at a steady rate with the default poll.
    Latency(SizeArg),
    /// 4: queries/s, CPU and RSS of an idle sidecar with 1, 10 and 100 tables.
    Idle(SizeArg),
    /// 5: bytes per change and MB/s of every codec on real envelopes.
    Compression(SizeArg),
    /// Issue 10: a backlog committed while no sidecar runs: catch-up time, CPU, RSS and
    /// the longest statement, bounded (`poll.statement_rows`) and unbounded.
    Backlog(SizeArg),
    /// Every scenario, in order.
    All(SizeArg),
    /// Internal: the sidecar itself, run by the scenarios in a child process. Stops
    /// when stdin closes.
    Sidecar {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct SizeArg {
    /// `tiny` is the CI smoke size (seconds in debug); `full` the sizes of the issue.
    #[arg(long, value_enum, default_value = "full")]
    size: SizeName,
}

#[derive(Clone, Copy, ValueEnum)]
enum SizeName {
    Tiny,
    Small,
    Full,
}

/// How big each scenario is.
pub struct Size {
    /// Throughput: changes per case (split over the tables).
    pub changes: usize,
    /// Rows per committed transaction.
    pub txn_rows: usize,
    /// Latency: changes/s and seconds.
    pub latency_rate: u32,
    pub latency_secs: f64,
    /// Idle: table counts, warm-up and window.
    pub idle_tables: &'static [usize],
    pub idle_warmup: Duration,
    pub idle_window: Duration,
    /// Compression: changes in the full-batch set, steps of the sample workload.
    pub compression_changes: usize,
    pub sample_steps: u64,
    /// Backlog: changes committed before the sidecar starts.
    pub backlog_changes: usize,
}

impl Size {
    fn of(name: SizeName) -> Self {
        match name {
            SizeName::Tiny => Size {
                changes: 2_000,
                txn_rows: 100,
                latency_rate: 200,
                latency_secs: 1.0,
                idle_tables: &[1, 10],
                idle_warmup: Duration::from_millis(300),
                idle_window: Duration::from_secs(1),
                compression_changes: 1_000,
                sample_steps: 40,
                backlog_changes: 20_000,
            },
            SizeName::Small => Size {
                changes: 100_000,
                txn_rows: 1_000,
                latency_rate: 1_000,
                latency_secs: 10.0,
                idle_tables: &[1, 10, 100],
                idle_warmup: Duration::from_secs(7),
                idle_window: Duration::from_secs(10),
                compression_changes: 20_000,
                sample_steps: 400,
                backlog_changes: 500_000,
            },
            SizeName::Full => Size {
                changes: 1_000_000,
                txn_rows: 1_000,
                latency_rate: 1_000,
                latency_secs: 30.0,
                idle_tables: &[1, 10, 100],
                idle_warmup: Duration::from_secs(10),
                idle_window: Duration::from_secs(60),
                compression_changes: 50_000,
                sample_steps: 2_000,
                backlog_changes: 5_000_000,
            },
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Sidecar { config } => sidecar(config),
        command => bench(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdc-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The child: the library's `run`, as the `cdc-sidecar` binary calls it, on the
/// binary's default multi-threaded runtime.
fn sidecar(path: PathBuf) -> Result<()> {
    let config = cdc_sidecar::config::Config::load(Some(&path))?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new()?;
    let token = CancellationToken::new();
    let on_eof = token.clone();
    // The parent closes our stdin to stop us, as SIGTERM stops the binary.
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        on_eof.cancel();
    });
    runtime.block_on(cdc_sidecar::run(config, token))?;
    Ok(())
}

fn bench(command: Command) -> Result<()> {
    let exe = std::env::current_exe().context("own executable")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (which, size) = match &command {
            Command::Throughput(s) => (1, s.size),
            Command::Latency(s) => (2, s.size),
            Command::Idle(s) => (3, s.size),
            Command::Compression(s) => (4, s.size),
            Command::Backlog(s) => (5, s.size),
            Command::All(s) => (0, s.size),
            Command::Sidecar { .. } => unreachable!("handled in main"),
        };
        let size = Size::of(size);
        let started = Instant::now();
        let mut sections = Vec::new();
        if which == 0 || which == 1 {
            let mut s = Section::new("Throughput (1) and limits (2)");
            throughput::run(&exe, &size, 1, &mut s)
                .await
                .context("throughput, 1 table")?;
            throughput::run(&exe, &size, 10, &mut s)
                .await
                .context("throughput, 10 tables")?;
            eprintln!("{}", s.markdown());
            sections.push(s);
        }
        if which == 0 || which == 2 {
            let mut s = Section::new("Latency (3)");
            latency::run(&exe, &size, &mut s).await.context("latency")?;
            eprintln!("{}", s.markdown());
            sections.push(s);
        }
        if which == 0 || which == 3 {
            let mut s = Section::new("Idle cost (4)");
            idle::run(&exe, &size, &mut s).await.context("idle")?;
            eprintln!("{}", s.markdown());
            sections.push(s);
        }
        if which == 0 || which == 4 {
            let mut s = Section::new("Compression (5)");
            compression::run(&exe, &size, &mut s).await.context("compression")?;
            eprintln!("{}", s.markdown());
            sections.push(s);
        }
        if which == 0 || which == 5 {
            let mut s = Section::new("Backlog catch-up (issue 10)");
            backlog::run(&exe, &size, &mut s).await.context("backlog")?;
            eprintln!("{}", s.markdown());
            sections.push(s);
        }
        println!("{}\n", machine());
        for s in &sections {
            println!("{}", s.markdown());
        }
        println!("(all scenarios took {:.0} s)", started.elapsed().as_secs_f64());
        Ok(())
    })
}

/// One line about the machine: CPU model, cores, memory, kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {model}, {cores} cores, {:.0} GiB, Linux {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}
