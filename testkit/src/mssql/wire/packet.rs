//! TDS packet framing (MS-TDS 2.2.3): the 8-byte header every message is split under.
//!
//! The bottom layer of the wire server. [`read_message`] reassembles one client message
//! from its packets; [`PacketWriter`] cuts a server response into packets of the
//! negotiated size as it is encoded, so a large result never sits in memory twice.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the packet header that precedes every packet's payload.
pub const HEADER_LEN: usize = 8;

/// The largest message we accept from a client. SQL Server's own limit is far higher,
/// but a test stand-in that buffers whole requests must bound what a broken or hostile
/// client can make it allocate.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// Packet types (MS-TDS 2.2.3.1.1) this server understands.
pub mod packet_type {
    /// SQL batch: ALL_HEADERS then UCS-2 text.
    pub const SQL_BATCH: u8 = 0x01;
    /// RPC request (e.g. `sp_executesql`).
    pub const RPC: u8 = 0x03;
    /// Tabular result: every server response.
    pub const TABULAR_RESULT: u8 = 0x04;
    /// Attention (cancel) signal.
    pub const ATTENTION: u8 = 0x06;
    /// Transaction manager request (begin/commit/rollback without T-SQL).
    pub const TRANSACTION_MANAGER: u8 = 0x0E;
    /// LOGIN7.
    pub const LOGIN7: u8 = 0x10;
    /// PRELOGIN, and the TLS handshake wrapped in it.
    pub const PRELOGIN: u8 = 0x12;
}

/// Status bits of a packet header (MS-TDS 2.2.3.1.2).
pub mod status {
    /// Last packet of the message.
    pub const END_OF_MESSAGE: u8 = 0x01;
    /// Client asks the server to ignore this message.
    pub const IGNORE: u8 = 0x02;
}

/// Why a client message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("i/o error while reading a packet")]
    Io(#[from] std::io::Error),
    #[error("packet header declares length {0}, shorter than the header itself")]
    ShortPacket(usize),
    #[error("packet of type {found:#04x} continues a message of type {expected:#04x}")]
    MixedTypes { expected: u8, found: u8 },
    #[error("message exceeds {MAX_MESSAGE_LEN} bytes")]
    TooLarge,
}

/// A decoded 8-byte packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub ty: u8,
    pub status: u8,
    /// Total packet length, header included.
    pub length: u16,
    pub spid: u16,
    pub id: u8,
}

impl PacketHeader {
    /// Decodes a header from its 8 bytes.
    pub fn decode(bytes: [u8; HEADER_LEN]) -> Self {
        Self {
            ty: bytes[0],
            status: bytes[1],
            length: u16::from_be_bytes([bytes[2], bytes[3]]),
            spid: u16::from_be_bytes([bytes[4], bytes[5]]),
            id: bytes[6],
        }
    }

    /// Appends the header's 8 bytes to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.ty);
        dst.put_u8(self.status);
        dst.put_u16(self.length);
        dst.put_u16(self.spid);
        dst.put_u8(self.id);
        dst.put_u8(0);
    }
}

/// One reassembled client message.
#[derive(Debug)]
pub struct Message {
    /// The packet type of its packets.
    pub ty: u8,
    /// Status of the first packet (reset-connection bits live here).
    pub status: u8,
    /// The concatenated payloads.
    pub payload: BytesMut,
}

/// Reads one whole message: packets until one carries END_OF_MESSAGE. Returns `None`
/// on a clean EOF before the first header byte (the client went away between requests).
pub async fn read_message<R>(reader: &mut R) -> Result<Option<Message>, PacketError>
where
    R: AsyncRead + Unpin,
{
    let mut message: Option<Message> = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if message.is_none() {
            // A clean EOF exactly between messages is not an error.
            let n = reader.read(&mut header[..1]).await?;
            if n == 0 {
                return Ok(None);
            }
            reader.read_exact(&mut header[1..]).await?;
        } else {
            reader.read_exact(&mut header).await?;
        }
        let header = PacketHeader::decode(header);
        let len = usize::from(header.length);
        if len < HEADER_LEN {
            return Err(PacketError::ShortPacket(len));
        }
        let msg = message.get_or_insert_with(|| Message {
            ty: header.ty,
            status: header.status,
            payload: BytesMut::new(),
        });
        if msg.ty != header.ty {
            return Err(PacketError::MixedTypes {
                expected: msg.ty,
                found: header.ty,
            });
        }
        let body = len - HEADER_LEN;
        if msg.payload.len() + body > MAX_MESSAGE_LEN {
            return Err(PacketError::TooLarge);
        }
        let start = msg.payload.len();
        msg.payload.resize(start + body, 0);
        reader.read_exact(&mut msg.payload[start..]).await?;
        if header.status & status::END_OF_MESSAGE != 0 {
            return Ok(message);
        }
    }
}

/// Cuts an outgoing message into packets of the negotiated size. Encoders append to
/// [`PacketWriter::buf`]; [`PacketWriter::flush_full`] sends every complete packet so
/// far (call it between rows), [`PacketWriter::finish`] sends the rest marked
/// END_OF_MESSAGE.
#[derive(Debug)]
pub struct PacketWriter {
    /// Payload bytes not yet sent.
    pub buf: BytesMut,
    ty: u8,
    packet_size: usize,
    spid: u16,
    next_id: u8,
    out: BytesMut,
}

impl PacketWriter {
    /// A writer for messages of packet type `ty`, at most `packet_size` bytes per packet
    /// (header included).
    pub fn new(ty: u8, packet_size: u32, spid: u16) -> Self {
        let packet_size = usize::try_from(packet_size)
            .unwrap_or(4096)
            .clamp(512, usize::from(u16::MAX));
        Self {
            buf: BytesMut::with_capacity(packet_size),
            ty,
            packet_size,
            spid,
            next_id: 1,
            out: BytesMut::with_capacity(packet_size),
        }
    }

    /// Changes the packet size for the packets that follow (after ENVCHANGE packet size).
    pub fn set_packet_size(&mut self, packet_size: u32) {
        self.packet_size = usize::try_from(packet_size)
            .unwrap_or(4096)
            .clamp(512, usize::from(u16::MAX));
    }

    fn frame(&mut self, len: usize, last: bool) {
        let header = PacketHeader {
            ty: self.ty,
            status: if last { status::END_OF_MESSAGE } else { 0 },
            // `len` is at most packet_size - HEADER_LEN, and packet_size <= u16::MAX.
            length: u16::try_from(len + HEADER_LEN).unwrap_or(u16::MAX),
            spid: self.spid,
            id: self.next_id,
        };
        self.next_id = self.next_id.wrapping_add(1);
        header.encode(&mut self.out);
        self.out.extend_from_slice(&self.buf[..len]);
        self.buf.advance(len);
    }

    /// Sends every full packet in the buffer, keeping the remainder for later.
    pub async fn flush_full<W>(&mut self, writer: &mut W) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let body = self.packet_size - HEADER_LEN;
        // Keep at least one byte back so the message's last packet is never empty
        // and always carries END_OF_MESSAGE.
        while self.buf.len() > body {
            self.frame(body, false);
        }
        if !self.out.is_empty() {
            writer.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends the rest of the message, its last packet marked END_OF_MESSAGE, and
    /// flushes the transport. The writer can then be reused for the next message.
    pub async fn finish<W>(&mut self, writer: &mut W) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        self.flush_full(writer).await?;
        let len = self.buf.len();
        self.frame(len, true);
        writer.write_all(&self.out).await?;
        self.out.clear();
        writer.flush().await?;
        self.next_id = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_splits_at_packet_size_and_reader_reassembles() {
        let mut writer = PacketWriter::new(packet_type::TABULAR_RESULT, 512, 7);
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        writer.buf.extend_from_slice(&payload);
        let mut wire = Vec::new();
        writer.finish(&mut wire).await.unwrap();

        // 504 payload bytes per packet: 2000 = 3 * 504 + 488.
        assert_eq!(wire.len(), 2000 + 4 * HEADER_LEN);
        let first = PacketHeader::decode(wire[..8].try_into().unwrap());
        assert_eq!(first.length, 512);
        assert_eq!(first.status, 0);
        assert_eq!(first.spid, 7);

        let mut reader = &wire[..];
        let message = read_message(&mut reader).await.unwrap().unwrap();
        assert_eq!(message.ty, packet_type::TABULAR_RESULT);
        assert_eq!(&message.payload[..], &payload[..]);
        assert!(read_message(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reader_rejects_a_header_shorter_than_itself() {
        let wire = [0x01u8, 0x01, 0x00, 0x04, 0, 0, 1, 0];
        let mut reader = &wire[..];
        assert!(matches!(
            read_message(&mut reader).await,
            Err(PacketError::ShortPacket(4))
        ));
    }
}
