//! Scenario 4: what an idle sidecar costs. Tables with no changes, a warm-up so the
//! probe interval reaches its idle ceiling, then a window over which the stand-in
//! counts the requests it receives and `/proc` gives the sidecar's CPU time and RSS.
//! Beside the shared probe, the original per-table polling (`poll.shared_probe = false`).

use std::path::Path;

use anyhow::{Context, Result};
use cdc_sidecar::config::Config;

use crate::report::{mib, Section};
use crate::rig::{free_port, Rig, SidecarProcess};
use crate::Size;

const GOAL_CPU_PERCENT: f64 = 1.0;
const GOAL_RSS: u64 = 40 * 1000 * 1000;

pub async fn run(exe: &Path, size: &Size, section: &mut Section) -> Result<()> {
    for &tables in size.idle_tables {
        let rig = Rig::start().await?;
        let names = rig.create_lines_tables(tables)?;
        for shared in [true, false] {
            let port = free_port()?;
            let extra = if shared { "" } else { "shared_probe = false" };
            let toml = rig.config_toml(&names, extra, port);
            let config = Config::from_toml_str(&toml).context("benchmark config")?;
            let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
            rig.wait_started(&config, &mut sidecar).await?;
            // Measurement windows, not synchronisation: the probe backs off to its ceiling first.
            tokio::time::sleep(size.idle_warmup).await;
            let requests = rig.mssql.requests();
            let usage = sidecar.usage()?;
            let probes = sidecar.metric_sum("cdc_sidecar_probes_total", "").await?;
            let discovers = sidecar
                .metric_sum("cdc_sidecar_source_queries_total", "kind=\"discover\"")
                .await?;
            tokio::time::sleep(size.idle_window).await;
            sidecar.check_alive()?;
            let requests = rig.mssql.requests() - requests;
            let after = sidecar.usage()?;
            let probes = sidecar.metric_sum("cdc_sidecar_probes_total", "").await? - probes;
            let discovers = sidecar
                .metric_sum("cdc_sidecar_source_queries_total", "kind=\"discover\"")
                .await?
                - discovers;
            let _ = sidecar.stop().await?;

            let window = size.idle_window.as_secs_f64();
            let ticks = if shared { probes } else { discovers / tables as f64 };
            let per_tick = if ticks > 0.0 { requests as f64 / ticks } else { f64::NAN };
            let cpu = 100.0 * (after.cpu_secs - usage.cpu_secs) / window;
            let case = format!(
                "{tables} idle table{}, {}",
                if tables == 1 { "" } else { "s" },
                if shared {
                    "shared probe"
                } else {
                    "per-table polling (original design)"
                }
            );
            section.add(
                &case,
                "queries/s seen by the stand-in",
                format!("{:.2}", requests as f64 / window),
            );
            if shared {
                section.add_goal(
                    &case,
                    "queries per tick",
                    format!("{per_tick:.1}"),
                    "1",
                    per_tick <= 1.0,
                );
                section.add_goal(
                    &case,
                    "sidecar CPU",
                    format!("{cpu:.2} %"),
                    "< 1 %",
                    cpu < GOAL_CPU_PERCENT,
                );
            } else {
                section.add(&case, "queries per tick", format!("{per_tick:.1}"));
                section.add(&case, "sidecar CPU", format!("{cpu:.2} %"));
            }
            if shared && tables >= 100 {
                section.add_goal(&case, "sidecar RSS", mib(after.rss), "≤ 40 MB", after.rss <= GOAL_RSS);
            } else {
                section.add(&case, "sidecar RSS", mib(after.rss));
            }
        }
    }
    section.note(format!(
        "Window {:.0} s after a {:.0} s warm-up; default poll (50 ms → 5 s, ×2 when idle).",
        size.idle_window.as_secs_f64(),
        size.idle_warmup.as_secs_f64()
    ));
    Ok(())
}
