//! What the stand-in stores and how tests read it back: an entry is one SEND exactly
//! as the producer framed it (metadata + possibly compressed, possibly batched
//! payload); a message is what an application sees after decompressing the entry
//! and splitting its batch. Decoding is done here, independently of the client, so a
//! test can check what the producer really put on the wire.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::{Buf, Bytes};
use prost::Message as _;
use pulsar::proto::{CompressionType, MessageMetadata, SingleMessageMetadata};

/// One SEND as stored: metadata and payload exactly as the producer sent them.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// fully qualified topic (partition) name
    pub topic: String,
    /// ledger id of the message id given in the receipt
    pub ledger_id: u64,
    /// entry id of the message id given in the receipt (the entry's index in the topic)
    pub entry_id: u64,
    /// partition index, -1 for a non-partitioned topic
    pub partition: i32,
    /// decoded message metadata
    pub metadata: MessageMetadata,
    /// the metadata bytes as sent, forwarded unchanged to consumers
    pub metadata_bytes: Bytes,
    /// the payload as sent (compressed and batched if the producer did so)
    pub payload: Bytes,
}

/// One application message, decoded from an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// entry this message came from
    pub entry_id: u64,
    /// index inside the entry's batch, `None` for an unbatched entry
    pub batch_index: Option<u32>,
    /// the application payload, decompressed
    pub payload: Vec<u8>,
    /// partition key
    pub key: Option<String>,
    /// ordering key (used by Key_Shared dispatch when set)
    pub ordering_key: Option<Vec<u8>>,
    /// application properties
    pub properties: BTreeMap<String, String>,
    /// event time set by the application
    pub event_time: Option<u64>,
    /// producer sequence id (the entry's plus the batch index when not set per message)
    pub sequence_id: u64,
    /// producer name
    pub producer_name: String,
    /// publish time (ms since the epoch) set by the producer
    pub publish_time: u64,
}

/// Why an entry could not be decoded into messages: the producer sent something a
/// consumer would choke on.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The metadata names a compression type this protocol does not define.
    #[error("entry {entry_id}: unknown compression type {kind}")]
    UnknownCompression {
        /// entry id
        entry_id: u64,
        /// the raw enum value
        kind: i32,
    },
    /// An LZ4 entry without `uncompressed_size` cannot be decoded (raw LZ4 blocks do
    /// not carry their size).
    #[error("entry {entry_id}: LZ4 payload without uncompressed_size")]
    MissingUncompressedSize {
        /// entry id
        entry_id: u64,
    },
    /// Decompression failed.
    #[error("entry {entry_id}: {kind:?} decompression failed: {source}")]
    Decompress {
        /// entry id
        entry_id: u64,
        /// compression type
        kind: CompressionType,
        /// decoder error
        #[source]
        source: std::io::Error,
    },
    /// The decompressed size differs from the declared `uncompressed_size`.
    #[error("entry {entry_id}: decompressed {got} bytes, metadata says {declared}")]
    SizeMismatch {
        /// entry id
        entry_id: u64,
        /// size after decompression
        got: usize,
        /// `uncompressed_size`
        declared: u32,
    },
    /// The batch does not hold `num_messages_in_batch` well-formed messages.
    #[error("entry {entry_id}: malformed batch: {reason}")]
    Batch {
        /// entry id
        entry_id: u64,
        /// what is wrong
        reason: String,
    },
}

impl StoredEntry {
    /// How many application messages the entry holds.
    pub fn num_messages(&self) -> u64 {
        self.metadata.num_messages_in_batch.unwrap_or(1).max(1) as u64
    }

    /// The compression the producer applied.
    pub fn compression(&self) -> CompressionType {
        self.metadata
            .compression
            .and_then(|c| CompressionType::try_from(c).ok())
            .unwrap_or(CompressionType::None)
    }

    /// Decompresses the payload and splits the batch into messages.
    pub fn decode(&self) -> Result<Vec<StoredMessage>, PayloadError> {
        let data = self.decompressed()?;
        let md = &self.metadata;
        let base = StoredMessage {
            entry_id: self.entry_id,
            batch_index: None,
            payload: Vec::new(),
            key: md.partition_key.clone(),
            ordering_key: md.ordering_key.clone(),
            properties: md
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            event_time: md.event_time,
            sequence_id: md.sequence_id,
            producer_name: md.producer_name.clone(),
            publish_time: md.publish_time,
        };
        let Some(count) = md.num_messages_in_batch else {
            return Ok(vec![StoredMessage { payload: data, ..base }]);
        };
        let batch_error = |reason: String| PayloadError::Batch {
            entry_id: self.entry_id,
            reason,
        };
        let mut rest = Bytes::from(data);
        let mut messages = Vec::with_capacity(count.max(0) as usize);
        for index in 0..count.max(0) as u32 {
            if rest.len() < 4 {
                return Err(batch_error(format!("message {index}: truncated size")));
            }
            let size = rest.get_u32() as usize;
            if size > rest.len() {
                return Err(batch_error(format!("message {index}: truncated metadata")));
            }
            let single = SingleMessageMetadata::decode(rest.split_to(size))
                .map_err(|e| batch_error(format!("message {index}: {e}")))?;
            let payload_size = usize::try_from(single.payload_size)
                .map_err(|_| batch_error(format!("message {index}: negative payload size")))?;
            if payload_size > rest.len() {
                return Err(batch_error(format!("message {index}: truncated payload")));
            }
            let payload = rest.split_to(payload_size).to_vec();
            messages.push(StoredMessage {
                batch_index: Some(index),
                payload,
                key: single.partition_key,
                ordering_key: single.ordering_key,
                properties: single.properties.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                event_time: single.event_time,
                sequence_id: single.sequence_id.unwrap_or(md.sequence_id + u64::from(index)),
                ..base.clone()
            });
        }
        if !rest.is_empty() {
            return Err(batch_error(format!("{} trailing bytes", rest.len())));
        }
        Ok(messages)
    }

    /// The key Key_Shared dispatch sticks to: the ordering key, else the partition
    /// key, of the entry or else of the first message of its batch.
    pub(crate) fn sticky_key(&self) -> Vec<u8> {
        if let Some(key) = &self.metadata.ordering_key {
            return key.clone();
        }
        if let Some(key) = &self.metadata.partition_key {
            return key.as_bytes().to_vec();
        }
        if self.metadata.num_messages_in_batch.is_some() {
            if let Some(first) = self.decode().ok().and_then(|m| m.into_iter().next()) {
                if let Some(key) = first.ordering_key {
                    return key;
                }
                if let Some(key) = first.key {
                    return key.into_bytes();
                }
            }
        }
        Vec::new()
    }

    fn decompressed(&self) -> Result<Vec<u8>, PayloadError> {
        let entry_id = self.entry_id;
        let kind = match self.metadata.compression {
            None => CompressionType::None,
            Some(raw) => {
                CompressionType::try_from(raw).map_err(|_| PayloadError::UnknownCompression { entry_id, kind: raw })?
            }
        };
        let failed = |source| PayloadError::Decompress { entry_id, kind, source };
        let data = &self.payload[..];
        let out = match kind {
            CompressionType::None => return Ok(data.to_vec()),
            // The client compresses with `lz4::block::compress(.., prepend_size = false)`:
            // a raw LZ4 block whose size only the metadata knows.
            CompressionType::Lz4 => {
                let size = self
                    .metadata
                    .uncompressed_size
                    .ok_or(PayloadError::MissingUncompressedSize { entry_id })?;
                lz4_flex::block::decompress(data, size as usize).map_err(|e| failed(std::io::Error::other(e)))?
            }
            CompressionType::Zlib => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
                out
            }
            CompressionType::Zstd => zstd::decode_all(data).map_err(failed)?,
            // Snappy in the framing format, as `snap::write::FrameEncoder` writes it.
            CompressionType::Snappy => {
                let mut out = Vec::new();
                snap::read::FrameDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
                out
            }
        };
        if let Some(declared) = self.metadata.uncompressed_size {
            if declared as usize != out.len() {
                return Err(PayloadError::SizeMismatch {
                    entry_id,
                    got: out.len(),
                    declared,
                });
            }
        }
        Ok(out)
    }
}
