//! `cdc-tail`: prints each change batch as it arrives on Redis Pub/Sub and Pulsar, one
//! line per batch, so the demo shows the stream live. Decompresses Redis payloads by
//! their magic bytes, as any subscriber would.

use std::io::Read;

use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

#[derive(Parser)]
#[command(about = "Print cdc-sidecar batches from Redis Pub/Sub and Pulsar")]
struct Args {
    /// Redis URL to PSUBSCRIBE on.
    #[arg(long)]
    redis: Option<String>,
    /// Channel pattern.
    #[arg(long, default_value = "cdc:*")]
    pattern: String,
    /// Pulsar URL.
    #[arg(long)]
    pulsar: Option<String>,
    /// Pulsar topics to read (repeat the flag).
    #[arg(long = "topic")]
    topics: Vec<String>,
}

fn decompress(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match payload {
        [b'{', ..] => out.extend_from_slice(payload),
        [0x28, 0xB5, 0x2F, 0xFD, ..] => out = zstd::decode_all(payload)?,
        [0x04, 0x22, 0x4D, 0x18, ..] => {
            lz4_flex::frame::FrameDecoder::new(payload).read_to_end(&mut out)?;
        }
        [0xFF, 0x06, ..] => {
            snap::read::FrameDecoder::new(payload).read_to_end(&mut out)?;
        }
        _ => {
            flate2::read::ZlibDecoder::new(payload).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

fn summary(source: &str, wire_bytes: usize, json: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return format!("[{source}] {wire_bytes} bytes, not JSON");
    };
    let changes = v["changes"].as_array().map(Vec::len).unwrap_or(0);
    let mut ops = std::collections::BTreeMap::new();
    for c in v["changes"].as_array().into_iter().flatten() {
        *ops.entry(c["op"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    let ops: Vec<String> = ops.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "[{source}] {}.{} {} v{}→{}: {changes} changes ({}) {wire_bytes}B on the wire{}",
        v["source"]["schema"].as_str().unwrap_or("?"),
        v["source"]["table"].as_str().unwrap_or("?"),
        v["kind"].as_str().unwrap_or("?"),
        v["from_version"],
        v["to_version"],
        ops.join(", "),
        v.get("reason").map(|r| format!(", reason {r}")).unwrap_or_default(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let redis = async {
        let Some(url) = &args.redis else {
            return std::future::pending::<anyhow::Result<()>>().await;
        };
        let mut pubsub = redis::Client::open(url.as_str())?.get_async_pubsub().await?;
        pubsub.psubscribe(&args.pattern).await?;
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            let payload = msg.get_payload_bytes();
            println!("{}", summary("redis", payload.len(), &decompress(payload)?));
        }
        Ok(())
    };
    let pulsar = async {
        let Some(url) = &args.pulsar else {
            return std::future::pending::<anyhow::Result<()>>().await;
        };
        if args.topics.is_empty() {
            return std::future::pending::<anyhow::Result<()>>().await;
        }
        let client = Pulsar::builder(url.as_str(), TokioExecutor).build().await?;
        let mut consumer: Consumer<Vec<u8>, _> = client
            .consumer()
            .with_topics(&args.topics)
            .with_subscription("cdc-tail")
            .with_subscription_type(SubType::Exclusive)
            .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Latest))
            .build()
            .await?;
        while let Some(msg) = consumer.try_next().await? {
            let data = msg.payload.data.clone();
            consumer.ack(&msg).await?;
            println!("{}", summary("pulsar", data.len(), &data));
        }
        Ok(())
    };
    tokio::select! {
        r = redis => r,
        r = pulsar => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
