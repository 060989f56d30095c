//! Partitioned topics and Key_Shared: a keyed producer routes each key to one
//! partition (the client's murmur3 routing, which the stand-in must make possible by
//! answering PARTITIONED_METADATA), and Key_Shared consumers see each key in order,
//! on one consumer.

mod pulsar_support;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use pulsar::consumer::Message;
use pulsar::routing_policy::RoutingPolicy;
use pulsar::{Consumer, ProducerOptions, Pulsar, SubType, TokioExecutor};
use pulsar_support::*;

const PARTITIONS: u32 = 4;
const KEYS: usize = 8;
const PER_KEY: usize = 10;

async fn produce_keyed(client: &Pulsar<TokioExecutor>, topic: &str) {
    let mut producer = client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            routing_policy: Some(RoutingPolicy::RoundRobin),
            ..Default::default()
        })
        .build()
        .await
        .expect("producer");
    let mut receipts = Vec::new();
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            receipts.push(
                producer
                    .create_message()
                    .with_content(format!("k{k}:{seq}").into_bytes())
                    .with_key(format!("k{k}"))
                    .send_non_blocking()
                    .await
                    .expect("queue"),
            );
        }
    }
    tokio::time::timeout(DEADLINE, futures_util::future::try_join_all(receipts))
        .await
        .expect("receipts in time")
        .expect("all acknowledged");
    producer.close().await.expect("close producer");
}

/// Reads `n` messages from two consumers at once; returns (consumer index, key, seq).
async fn read_both(
    a: &mut Consumer<Vec<u8>, TokioExecutor>,
    b: &mut Consumer<Vec<u8>, TokioExecutor>,
    n: usize,
) -> Vec<(usize, String, usize)> {
    let mut got = Vec::new();
    let parse = |m: &Message<Vec<u8>>| {
        let text = String::from_utf8(m.payload.data.clone()).expect("utf8");
        let (key, seq) = text.split_once(':').expect("key:seq");
        (key.to_string(), seq.parse::<usize>().expect("seq"))
    };
    let reading = async {
        while got.len() < n {
            tokio::select! {
                m = a.next() => {
                    let m = m.expect("stream a").expect("message a");
                    a.ack(&m).await.expect("ack a");
                    let (k, s) = parse(&m);
                    got.push((0, k, s));
                }
                m = b.next() => {
                    let m = m.expect("stream b").expect("message b");
                    b.ack(&m).await.expect("ack b");
                    let (k, s) = parse(&m);
                    got.push((1, k, s));
                }
            }
        }
    };
    if tokio::time::timeout(DEADLINE, reading).await.is_err() {
        panic!("read {} of {n} messages before the deadline", got.len());
    }
    got
}

fn assert_each_key_in_order_on_one_consumer(got: &[(usize, String, usize)]) {
    let mut by_key: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (consumer, key, seq) in got {
        by_key.entry(key).or_default().push((*consumer, *seq));
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, seen) in by_key {
        let consumers: BTreeSet<usize> = seen.iter().map(|(c, _)| *c).collect();
        assert_eq!(consumers.len(), 1, "key {key} went to consumers {consumers:?}");
        let seqs: Vec<usize> = seen.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, (0..PER_KEY).collect::<Vec<_>>(), "key {key} out of order");
    }
}

#[tokio::test]
async fn keyed_producer_routes_each_key_to_its_partition_and_key_shared_reads_keys_in_order() {
    let standin = standin().await;
    let topic = topic("keyed-partitioned");
    standin.create_partitioned_topic(&topic, PARTITIONS);
    let client = client(&standin.url()).await;

    // WHEN a keyed producer sends interleaved keys
    produce_keyed(&client, &topic).await;

    // THEN each key landed whole in the partition the client's routing picks
    let mut used = BTreeSet::new();
    for p in 0..PARTITIONS {
        let partition = format!("{topic}-partition-{p}");
        for m in standin.messages(&partition) {
            let key = m.key.expect("keyed");
            let expected = RoutingPolicy::compute_partition_index_for_key(&key, PARTITIONS as usize);
            assert_eq!(expected, p as usize, "key {key} stored in partition {p}");
            used.insert(p);
        }
    }
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
    assert_eq!(standin.messages(&topic).len(), KEYS * PER_KEY);
    assert_eq!(standin.stats(&topic).messages_received, (KEYS * PER_KEY) as u64);
    let partitions: BTreeSet<String> = standin.topics().into_iter().filter(|t| t.starts_with(&topic)).collect();
    assert_eq!(partitions.len(), PARTITIONS as usize);

    // AND two Key_Shared consumers each get whole keys, in order
    let mut a = consumer(&client, &topic, "by-key", SubType::KeyShared).await;
    let mut b = consumer(&client, &topic, "by-key", SubType::KeyShared).await;
    let got = read_both(&mut a, &mut b, KEYS * PER_KEY).await;
    assert_each_key_in_order_on_one_consumer(&got);
    standin.shutdown().await;
}

#[tokio::test]
async fn key_shared_spreads_keys_over_consumers_of_one_topic() {
    let standin = standin().await;
    let topic = topic("key-shared-single");
    let client = client(&standin.url()).await;
    // consumers first, so both are there when the entries arrive
    let mut a = consumer(&client, &topic, "ks", SubType::KeyShared).await;
    let mut b = consumer(&client, &topic, "ks", SubType::KeyShared).await;
    produce_keyed(&client, &topic).await;
    let got = read_both(&mut a, &mut b, KEYS * PER_KEY).await;
    assert_each_key_in_order_on_one_consumer(&got);
    let per_consumer: BTreeSet<usize> = got.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(per_consumer.len(), 2, "both consumers got keys");
    standin.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_splits_messages_and_failover_keeps_one_active() {
    let standin = standin().await;
    let client = client(&standin.url()).await;

    let shared_topic = topic("shared");
    let mut a = consumer(&client, &shared_topic, "s", SubType::Shared).await;
    let mut b = consumer(&client, &shared_topic, "s", SubType::Shared).await;
    produce_keyed(&client, &shared_topic).await;
    let got = read_both(&mut a, &mut b, KEYS * PER_KEY).await;
    let mut all: Vec<(String, usize)> = got.iter().map(|(_, k, s)| (k.clone(), *s)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), KEYS * PER_KEY, "every message exactly once");
    assert_eq!(got.iter().map(|(c, _, _)| *c).collect::<BTreeSet<_>>().len(), 2);

    let failover_topic = topic("failover");
    let mut a = consumer(&client, &failover_topic, "f", SubType::Failover).await;
    let mut b = consumer(&client, &failover_topic, "f", SubType::Failover).await;
    produce_keyed(&client, &failover_topic).await;
    let got = read_both(&mut a, &mut b, KEYS * PER_KEY).await;
    assert_eq!(got.iter().map(|(c, _, _)| *c).collect::<BTreeSet<_>>().len(), 1);
    let seqs: Vec<usize> = got.iter().map(|(_, _, s)| *s).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted, "failover delivers in order");
    standin.shutdown().await;
}
