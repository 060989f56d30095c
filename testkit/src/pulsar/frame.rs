//! Frame layer: Pulsar's binary framing, the bottom of the stand-in.
//!
//! A frame is `[total size][command size][BaseCommand]`, and a payload command (SEND,
//! MESSAGE) appends `[magic 0x0e01][CRC32C][metadata size][MessageMetadata][payload]`,
//! the checksum covering everything after itself. The `pulsar` crate ships a codec,
//! but it rejects a bad checksum by failing the whole stream, while a broker answers
//! that one SEND with a `ChecksumError` and keeps the connection; and we want the raw
//! metadata bytes so that consumers get entries exactly as they were sent. So the
//! stand-in decodes frames itself, reusing the crate's generated protocol types.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use pulsar::proto::{BaseCommand, MessageMetadata};
use tokio_util::codec::{Decoder, Encoder};

/// The magic number announcing a CRC32C-checked payload section.
const MAGIC_CRC32C: u16 = 0x0e01;

/// Why a frame could not be read or written; each one ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// announced frame size, the 4-byte size field included
        size: usize,
        /// configured maximum
        max: usize,
    },
    /// The frame's sizes or magic number do not add up.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The command or the message metadata is not valid protobuf.
    #[error("undecodable protobuf in frame: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A command could not be encoded (never happens with a growable buffer).
    #[error("could not encode a frame: {0}")]
    Encode(#[from] prost::EncodeError),
}

/// A frame read from a client.
#[derive(Debug)]
pub(crate) struct InFrame {
    pub command: BaseCommand,
    pub payload: Option<InPayload>,
}

/// The payload section of a frame read from a client, kept byte for byte.
#[derive(Debug)]
pub(crate) struct InPayload {
    pub metadata: MessageMetadata,
    pub metadata_bytes: Bytes,
    pub data: Bytes,
    /// Whether the CRC32C in the frame matches its content.
    pub checksum_ok: bool,
}

/// A frame to write to a client.
#[derive(Debug, Clone)]
pub(crate) struct OutFrame {
    pub command: BaseCommand,
    pub payload: Option<OutPayload>,
}

/// The payload of an outgoing MESSAGE: metadata and data as the producer sent them.
#[derive(Debug, Clone)]
pub(crate) struct OutPayload {
    pub metadata_bytes: Bytes,
    pub data: Bytes,
}

impl OutFrame {
    /// A frame without payload.
    pub fn command(command: BaseCommand) -> Self {
        OutFrame { command, payload: None }
    }
}

/// Reads [`InFrame`]s and writes [`OutFrame`]s.
pub(crate) struct FrameCodec {
    max_frame_size: usize,
}

impl FrameCodec {
    /// A codec refusing frames larger than `max_frame_size` bytes, counting the 4-byte
    /// total-size field as Netty's `LengthFieldBasedFrameDecoder(max, 0, 4, 0, 4)` in
    /// a broker's `PulsarChannelInitializer` does. Like that decoder (fail-fast) it
    /// refuses as soon as the size field is read, without waiting for the frame.
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec { max_frame_size }
    }
}

impl Decoder for FrameCodec {
    type Item = InFrame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<InFrame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if 4 + total > self.max_frame_size {
            return Err(FrameError::TooLarge {
                size: 4 + total,
                max: self.max_frame_size,
            });
        }
        if total < 4 {
            return Err(FrameError::Malformed("total size smaller than command size"));
        }
        if src.len() < 4 + total {
            src.reserve(4 + total - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(4 + total).freeze();
        frame.advance(4);
        let command_size = frame.get_u32() as usize;
        if command_size > frame.len() {
            return Err(FrameError::Malformed("command size exceeds the frame"));
        }
        let command = BaseCommand::decode(frame.split_to(command_size))?;
        if frame.is_empty() {
            return Ok(Some(InFrame { command, payload: None }));
        }
        if frame.len() < 10 {
            return Err(FrameError::Malformed("payload section too short"));
        }
        if frame.get_u16() != MAGIC_CRC32C {
            return Err(FrameError::Malformed("unknown magic number"));
        }
        let checksum = frame.get_u32();
        let checksum_ok = crc32c::crc32c(&frame) == checksum;
        let metadata_size = frame.get_u32() as usize;
        if metadata_size > frame.len() {
            return Err(FrameError::Malformed("metadata size exceeds the frame"));
        }
        let metadata_bytes = frame.split_to(metadata_size);
        let metadata = MessageMetadata::decode(metadata_bytes.clone())?;
        Ok(Some(InFrame {
            command,
            payload: Some(InPayload {
                metadata,
                metadata_bytes,
                data: frame,
                checksum_ok,
            }),
        }))
    }
}

impl Encoder<OutFrame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: OutFrame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let command_size = item.command.encoded_len();
        let payload_size = item
            .payload
            .as_ref()
            .map(|p| 2 + 4 + 4 + p.metadata_bytes.len() + p.data.len())
            .unwrap_or(0);
        let total = 4 + command_size + payload_size;
        dst.reserve(4 + total);
        dst.put_u32(total as u32);
        dst.put_u32(command_size as u32);
        item.command.encode(dst)?;
        if let Some(payload) = item.payload {
            let metadata_size = (payload.metadata_bytes.len() as u32).to_be_bytes();
            let mut crc = crc32c::crc32c(&metadata_size);
            crc = crc32c::crc32c_append(crc, &payload.metadata_bytes);
            crc = crc32c::crc32c_append(crc, &payload.data);
            dst.put_u16(MAGIC_CRC32C);
            dst.put_u32(crc);
            dst.put_slice(&metadata_size);
            dst.put_slice(&payload.metadata_bytes);
            dst.put_slice(&payload.data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsar::message::{Codec, Message, Payload};
    use pulsar::proto::CommandSend;

    fn send_frame() -> BytesMut {
        let message = Message {
            command: BaseCommand {
                r#type: pulsar::proto::base_command::Type::Send as i32,
                send: Some(CommandSend {
                    producer_id: 3,
                    sequence_id: 7,
                    ..Default::default()
                }),
                ..Default::default()
            },
            payload: Some(Payload {
                metadata: MessageMetadata {
                    producer_name: "p".into(),
                    sequence_id: 7,
                    ..Default::default()
                },
                data: b"hello".to_vec(),
            }),
        };
        let mut buf = BytesMut::new();
        Encoder::encode(&mut Codec, message, &mut buf).expect("encode");
        buf
    }

    #[test]
    fn reads_what_the_client_codec_writes_and_checks_the_crc() {
        let mut buf = send_frame();
        let frame = FrameCodec::new(1 << 20)
            .decode(&mut buf)
            .expect("decode")
            .expect("complete frame");
        let payload = frame.payload.expect("payload");
        assert!(payload.checksum_ok);
        assert_eq!(&payload.data[..], b"hello");
        assert_eq!(payload.metadata.sequence_id, 7);
        assert!(buf.is_empty());
    }

    #[test]
    fn flags_a_corrupted_payload() {
        let mut buf = send_frame();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let frame = FrameCodec::new(1 << 20)
            .decode(&mut buf)
            .expect("decode")
            .expect("complete frame");
        assert!(!frame.payload.expect("payload").checksum_ok);
    }

    #[test]
    fn the_client_codec_reads_what_we_write() {
        let mut buf = send_frame();
        let frame = FrameCodec::new(1 << 20)
            .decode(&mut buf)
            .expect("decode")
            .expect("frame");
        let payload = frame.payload.expect("payload");
        let out = OutFrame {
            command: frame.command,
            payload: Some(OutPayload {
                metadata_bytes: payload.metadata_bytes,
                data: payload.data,
            }),
        };
        let mut written = BytesMut::new();
        FrameCodec::new(1 << 20).encode(out, &mut written).expect("encode");
        let back = Decoder::decode(&mut Codec, &mut written)
            .expect("client decode")
            .expect("frame");
        assert_eq!(back.payload.expect("payload").data, b"hello");
    }

    #[test]
    fn refuses_oversized_frames() {
        let mut buf = BytesMut::from(&[0u8, 0x10, 0, 0][..]);
        assert!(matches!(
            FrameCodec::new(1024).decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_limit_counts_the_size_field() {
        let frame = send_frame();
        let mut exact = frame.clone();
        assert!(FrameCodec::new(frame.len()).decode(&mut exact).expect("fits").is_some());
        let mut over = frame.clone();
        assert!(matches!(
            FrameCodec::new(frame.len() - 1).decode(&mut over),
            Err(FrameError::TooLarge { size, .. }) if size == frame.len()
        ));
    }
}
