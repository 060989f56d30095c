//! Backlog catch-up (issue 10, item 3): a backlog of changes committed while no
//! sidecar runs, read by a sidecar started from the checkpoint before them, with every
//! `CHANGETABLE` statement bounded by `poll.statement_rows` (`TOP`, continued by
//! keyset). Measured: the time until the checkpoint reaches the last version, changes/s,
//! the sidecar's CPU and peak RSS, and the longest single request the SQL Server
//! stand-in executed meanwhile (`MssqlServer::max_request_duration`; the sidecar is
//! its only client then).
//!
//! The baseline, in the same run over the same backlog: `statement_rows` so high that
//! one statement reads the whole backlog, as before the bound. Its
//! `source.command_timeout_ms` is raised so that statement is allowed to finish; the
//! bounded run keeps every default.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdc_sidecar::checkpoint::CheckpointStore;
use cdc_sidecar::config::{Config, PollConfig};
use cdc_sidecar::envelope::Position;
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};

use crate::report::{mib, thousands, Section};
use crate::rig::{free_port, ProcUsage, Rig, SidecarProcess, DB, DEADLINE};
use crate::workload::LinesWorkload;
use crate::Size;

/// Rows per committed transaction of the backlog.
const TXN_ROWS: usize = 1_000;
/// `poll.statement_rows` of the baseline: more than any backlog here, so one statement
/// reads all of it.
const UNBOUNDED_ROWS: usize = 1_000_000_000;
/// `source.command_timeout_ms` of the baseline, so its one long statement may finish.
const UNBOUNDED_TIMEOUT_MS: u64 = 1_200_000;

/// One catch-up.
struct CatchUp {
    secs: f64,
    cpu_secs: f64,
    peak_rss: u64,
    /// Peak RSS of this process (the stand-ins) during the catch-up.
    rig_peak_rss: Option<u64>,
    longest: Duration,
    /// Requests the stand-in executed (batches, RPC calls, transaction requests).
    requests: u64,
    /// `CHANGETABLE` statements the sidecar counted.
    statements: f64,
    source_errors: f64,
}

pub async fn run(exe: &Path, size: &Size, section: &mut Section) -> Result<()> {
    let changes = size.backlog_changes;
    let mut rig = Rig::start().await?;
    let names = rig.create_lines_tables(1)?;

    // The backlog, committed with no sidecar running.
    let engine = rig.engine.clone();
    let tables = names.clone();
    let wrote = Instant::now();
    let (from, to) = tokio::task::spawn_blocking(move || -> Result<(i64, i64)> {
        let mut workload = LinesWorkload::preload(&engine, &tables, changes, 1, TXN_ROWS)?;
        let from = engine.current_version(DB).unwrap_or(0);
        let written = workload.commit(&engine, changes)?;
        Ok((from, written.last_version))
    })
    .await??;
    eprintln!(
        "backlog: {} changes in transactions of {TXN_ROWS} written in {:.1} s (versions {from}..={to})",
        thousands(changes as f64),
        wrote.elapsed().as_secs_f64()
    );

    let bounded_rows = PollConfig::default().statement_rows;
    let bounded = catch_up(exe, &mut rig, &names, from, to, changes, "", None).await?;
    let unbounded = catch_up(
        exe,
        &mut rig,
        &names,
        from,
        to,
        changes,
        &format!("statement_rows = {UNBOUNDED_ROWS}"),
        Some(UNBOUNDED_TIMEOUT_MS),
    )
    .await?;

    // The shipped default, as the bounded run used it.
    let defaults = Config::from_toml_str(&rig.config_toml(&names, "", 0)).context("benchmark config")?;
    let command_timeout = Duration::from_millis(defaults.source.command_timeout_ms);
    let runs = [
        (
            format!("statement_rows = {} (default)", thousands(bounded_rows as f64)),
            &bounded,
        ),
        (
            "statement_rows unbounded (one statement, as before)".to_string(),
            &unbounded,
        ),
    ];
    for (i, (case, run)) in runs.iter().enumerate() {
        section.add(
            case,
            "catch-up: sidecar start → every change delivered, checkpoint at the last version",
            format!("{:.1} s", run.secs),
        );
        section.add(case, "changes/s", thousands(changes as f64 / run.secs));
        if i == 0 {
            section.add_goal(
                case,
                "longest single statement the stand-in executed",
                millis(run.longest),
                &format!("< source.command_timeout_ms ({:.0} s)", command_timeout.as_secs_f64()),
                run.longest < command_timeout,
            );
        } else {
            section.add(
                case,
                "longest single statement the stand-in executed",
                millis(run.longest),
            );
        }
        section.add(
            case,
            "CHANGETABLE statements (requests the stand-in executed)",
            format!("{:.0} ({})", run.statements, run.requests),
        );
        section.add(case, "sidecar CPU s", format!("{:.2}", run.cpu_secs));
        section.add(
            case,
            "sidecar CPU s per million changes",
            format!("{:.2}", run.cpu_secs / (changes as f64 / 1e6)),
        );
        section.add(case, "sidecar peak RSS", mib(run.peak_rss));
        if let Some(rss) = run.rig_peak_rss {
            section.add(case, "bench process (stand-ins) peak RSS", mib(rss));
        }
        if run.source_errors > 0.0 {
            section.add(case, "source errors (retried)", format!("{:.0}", run.source_errors));
        }
    }
    let ratios = "bounded / unbounded";
    section.add(ratios, "catch-up time", format!("{:.2}", bounded.secs / unbounded.secs));
    section.add(
        ratios,
        "longest statement",
        format!("{:.4}", bounded.longest.as_secs_f64() / unbounded.longest.as_secs_f64()),
    );
    section.add(
        ratios,
        "sidecar peak RSS",
        format!("{:.2}", bounded.peak_rss as f64 / unbounded.peak_rss.max(1) as f64),
    );
    let bound_ms = (bounded.longest.as_secs_f64() * 1000.0).ceil();
    section.note(format!(
        "Bound: longest statement ≤ {bound_ms:.0} ms at statement_rows = {} while a backlog of {} changes \
         (transactions of {TXN_ROWS} rows, one table) caught up; unbounded, one statement took {}{}.",
        thousands(bounded_rows as f64),
        thousands(changes as f64),
        millis(unbounded.longest),
        if unbounded.longest >= command_timeout {
            format!(
                ", beyond the default source.command_timeout_ms ({:.0} s), which would have failed it on every retry",
                command_timeout.as_secs_f64()
            )
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// Sets the checkpoint to `from`, starts a sidecar with `poll_extra` and waits until its
/// checkpoint reaches `to`.
#[allow(clippy::too_many_arguments)]
async fn catch_up(
    exe: &Path,
    rig: &mut Rig,
    names: &[String],
    from: i64,
    to: i64,
    changes: usize,
    poll_extra: &str,
    command_timeout_ms: Option<u64>,
) -> Result<CatchUp> {
    // A fresh Pulsar stand-in per run: the previous run's stored messages are let go.
    let fresh = PulsarStandin::start(PulsarStandinConfig::default())
        .await
        .context("Pulsar stand-in")?;
    std::mem::replace(&mut rig.pulsar, fresh).shutdown().await;

    let port = free_port()?;
    let mut toml = rig.config_toml(names, poll_extra, port);
    if let Some(ms) = command_timeout_ms {
        toml = toml.replacen(
            "encryption = \"off\"\n",
            &format!("encryption = \"off\"\ncommand_timeout_ms = {ms}\n"),
            1,
        );
    }
    let config = Config::from_toml_str(&toml).context("benchmark config")?;
    rig.set_checkpoints(&config, from).await?;
    let store = rig.checkpoints(&config).await?;
    let done = Position::complete(to);

    let rig_peak_reset = reset_peak_rss();
    rig.mssql.reset_request_stats();
    let started = Instant::now();
    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    let mut reported = Instant::now();
    let table = &config.tables[0].name;
    loop {
        let position = store.load(table).await?.map(|c| c.position());
        if position.is_some_and(|p| p >= done) {
            break;
        }
        // A backlog that ends exactly where a statement's TOP stopped leaves the
        // checkpoint at the last version's last part; the sidecar marks the version
        // complete only with its next checkpoint write (`checkpoint.idle_write_interval_ms`
        // later). Every change is delivered once the metric counts them all (it counts a
        // batch when every sink acknowledged it, before its checkpoint is written).
        if position.is_some_and(|p| p.version == to)
            && sidecar.metric_sum("cdc_sidecar_changes_total", "").await? as usize == changes
        {
            break;
        }
        sidecar.check_alive()?;
        if started.elapsed() > DEADLINE {
            bail!("the sidecar did not catch up within {DEADLINE:?} ({poll_extra:?})");
        }
        if reported.elapsed() > Duration::from_secs(10) {
            let behind = to - position.map_or(from, |p| p.version);
            eprintln!(
                "backlog {poll_extra:?}: {behind} versions behind after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let longest = rig.mssql.max_request_duration();
    let requests = rig.mssql.timed_requests();
    let rig_peak_rss = rig_peak_reset
        .then(|| ProcUsage::read(std::process::id()).ok().map(|u| u.peak_rss))
        .flatten();
    let published = sidecar.metric_sum("cdc_sidecar_changes_total", "").await?;
    let statements = sidecar
        .metric_sum("cdc_sidecar_source_queries_total", "kind=\"changes\"")
        .await?;
    let source_errors = sidecar.metric_sum("cdc_sidecar_source_errors_total", "").await?;
    let usage = sidecar.stop().await?;
    if published as usize != changes {
        bail!("{poll_extra:?}: the sidecar published {published} changes, {changes} were committed");
    }
    Ok(CatchUp {
        secs,
        cpu_secs: usage.cpu_secs,
        peak_rss: usage.peak_rss,
        rig_peak_rss,
        longest,
        requests,
        statements,
        source_errors,
    })
}

/// Resets this process's peak RSS (VmHWM) to its current RSS, so the next reading is
/// the peak of what follows. False where the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A duration in milliseconds: one decimal below 10 s, whole milliseconds above.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", thousands(ms))
    }
}
