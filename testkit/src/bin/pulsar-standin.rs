//! `pulsar-standin`: the Pulsar broker stand-in as a process, for the demo and for
//! running the sidecar by hand. Listens until SIGINT/SIGTERM, then shuts down cleanly.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};

/// Pulsar broker stand-in speaking the binary protocol.
#[derive(Debug, Parser)]
#[command(name = "pulsar-standin", version)]
struct Args {
    /// Port to listen on (0 picks a free one, printed at startup).
    #[arg(long, default_value_t = 6650, env = "PULSAR_STANDIN_PORT")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "PULSAR_STANDIN_BIND")]
    bind: IpAddr,
    /// Token clients must present (auth method "token"); none: no authentication.
    #[arg(long, env = "PULSAR_STANDIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// URL answered to topic lookups (default: pulsar:// + the address the client reached).
    #[arg(long, env = "PULSAR_STANDIN_ADVERTISED_URL")]
    advertised_url: Option<String>,
    /// Seconds between keep-alive pings; a client silent between two pings is dropped.
    #[arg(long, default_value_t = 30)]
    keep_alive_secs: u64,
    /// Largest message in bytes (broker.conf `maxMessageSize`), announced to clients; a
    /// frame over it plus 10 KiB of padding closes the connection.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    max_message_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let config = PulsarStandinConfig {
        bind: SocketAddr::new(args.bind, args.port),
        token: args.token,
        advertised_url: args.advertised_url,
        keep_alive: Duration::from_secs(args.keep_alive_secs.max(1)),
        max_message_size: args.max_message_size,
        ..PulsarStandinConfig::default()
    };
    let standin = PulsarStandin::start(config)
        .await
        .with_context(|| format!("listening on {}:{}", args.bind, args.port))?;
    println!("pulsar-standin listening on {}", standin.url());
    shutdown_signal().await?;
    standin.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
