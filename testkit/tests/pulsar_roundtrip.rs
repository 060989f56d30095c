//! The real `pulsar` producer, with every compression type and with batching on and
//! off, against the stand-in; then the real consumer reads everything back in order.
//! The stand-in forwards entries as sent, so the consumer decompressing and
//! splitting them proves the producer's framing; the stand-in's own decoding proves
//! it reads the same thing.

mod pulsar_support;

use std::time::Duration;

use pulsar::compression::{Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd};
use pulsar::proto::CompressionType;
use pulsar::{ProducerOptions, SubType};
use pulsar_support::*;

const MESSAGES: usize = 20;
const BATCH: u32 = 5;

fn payload(i: usize) -> Vec<u8> {
    // compressible and distinct
    format!("row {i:04} {}", "abcdefgh".repeat(8)).into_bytes()
}

async fn roundtrip(name: &str, compression: Compression, expected: CompressionType, batching: bool) {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic(name);
    let options = ProducerOptions {
        compression: Some(compression),
        batch_size: batching.then_some(BATCH),
        ..Default::default()
    };
    let mut producer = client
        .producer()
        .with_topic(&topic)
        .with_name(format!("{name}-producer"))
        .with_options(options)
        .build()
        .await
        .expect("producer");

    // WHEN the producer sends messages with keys, properties and event times
    let mut receipts = Vec::new();
    for i in 0..MESSAGES {
        let receipt = producer
            .create_message()
            .with_content(payload(i))
            .with_key(format!("key-{}", i % 3))
            .with_property("row", i.to_string())
            .event_time(1_000 + i as u64)
            .send_non_blocking()
            .await
            .expect("queue message");
        receipts.push(receipt);
    }
    let receipts = tokio::time::timeout(DEADLINE, futures_util::future::try_join_all(receipts))
        .await
        .expect("receipts in time")
        .expect("every message acknowledged");

    // THEN every receipt names a stored entry, and entries are framed as configured
    let entries = standin.entries(&topic);
    let expected_entries = if batching { MESSAGES / BATCH as usize } else { MESSAGES };
    assert_eq!(entries.len(), expected_entries, "entries stored");
    for entry in &entries {
        assert_eq!(entry.compression(), expected, "entry {}", entry.entry_id);
        assert_eq!(
            entry.metadata.num_messages_in_batch,
            batching.then_some(BATCH as i32),
            "batch size of entry {}",
            entry.entry_id
        );
        assert_eq!(entry.metadata.producer_name, format!("{name}-producer"));
    }
    for receipt in &receipts {
        let id = receipt.message_id.as_ref().expect("receipt has a message id");
        assert!((id.entry_id as usize) < entries.len());
    }

    // AND the stand-in decodes them back to what was sent
    let stored = standin.try_messages(&topic).expect("entries decode");
    assert_eq!(stored.len(), MESSAGES);
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(m.payload, payload(i), "stored payload {i}");
        assert_eq!(m.key.as_deref(), Some(format!("key-{}", i % 3).as_str()));
        assert_eq!(m.properties.get("row"), Some(&i.to_string()));
        assert_eq!(m.event_time, Some(1_000 + i as u64));
        assert_eq!(m.batch_index, batching.then_some((i % BATCH as usize) as u32));
    }
    let stats = standin.stats(&topic);
    assert_eq!(stats.messages_received, MESSAGES as u64);
    assert_eq!(stats.entries_received, expected_entries as u64);
    assert_eq!(
        stats.bytes_received,
        entries.iter().map(|e| e.payload.len() as u64).sum::<u64>()
    );

    // AND an exclusive consumer reads everything back in order
    let mut consumer = consumer(&client, &topic, "readback", SubType::Exclusive).await;
    let read = read(&mut consumer, MESSAGES, true).await;
    for (i, m) in read.iter().enumerate() {
        assert_eq!(m.payload.data, payload(i), "consumed payload {i}");
        assert_eq!(m.key().as_deref(), Some(format!("key-{}", i % 3).as_str()));
    }
    assert_quiet(&mut consumer, Duration::from_millis(200)).await;

    // AND once acknowledged, nothing is left in the subscription
    let drained = tokio::time::timeout(DEADLINE, async {
        while standin.backlog(&topic, "readback") != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "backlog {:?}", standin.backlog(&topic, "readback"));

    consumer.close().await.expect("close consumer");
    producer.close().await.expect("close producer");
    standin.shutdown().await;
}

macro_rules! roundtrip_tests {
    ($($name:ident: $compression:expr, $kind:expr, $batching:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            roundtrip(stringify!($name), $compression, $kind, $batching).await;
        }
    )*};
}

roundtrip_tests! {
    uncompressed_unbatched_roundtrip: Compression::None, CompressionType::None, false;
    uncompressed_batched_roundtrip: Compression::None, CompressionType::None, true;
    lz4_unbatched_roundtrip: Compression::Lz4(CompressionLz4::default()), CompressionType::Lz4, false;
    lz4_batched_roundtrip: Compression::Lz4(CompressionLz4::default()), CompressionType::Lz4, true;
    zlib_unbatched_roundtrip: Compression::Zlib(CompressionZlib::default()), CompressionType::Zlib, false;
    zlib_batched_roundtrip: Compression::Zlib(CompressionZlib::default()), CompressionType::Zlib, true;
    zstd_unbatched_roundtrip: Compression::Zstd(CompressionZstd::default()), CompressionType::Zstd, false;
    zstd_batched_roundtrip: Compression::Zstd(CompressionZstd::default()), CompressionType::Zstd, true;
    snappy_unbatched_roundtrip: Compression::Snappy(CompressionSnappy::default()), CompressionType::Snappy, false;
    snappy_batched_roundtrip: Compression::Snappy(CompressionSnappy::default()), CompressionType::Snappy, true;
}
