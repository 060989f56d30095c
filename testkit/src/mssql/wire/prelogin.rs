//! PRELOGIN (MS-TDS 2.2.6.5): the first exchange, where client and server agree on
//! encryption. Sits above [`super::packet`]; the connection uses the negotiated
//! [`Encryption`] to decide whether a TLS handshake follows.

use bytes::{BufMut, BytesMut};

use super::decode::{DecodeError, Reader};

const VERSION: u8 = 0x00;
const ENCRYPTION: u8 = 0x01;
const INSTOPT: u8 = 0x02;
const THREADID: u8 = 0x03;
const MARS: u8 = 0x04;
const TERMINATOR: u8 = 0xFF;

/// The ENCRYPTION option values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// ENCRYPT_OFF: encrypt the login packet only.
    Off,
    /// ENCRYPT_ON: encrypt everything.
    On,
    /// ENCRYPT_NOT_SUP: no encryption at all.
    NotSup,
    /// ENCRYPT_REQ: encryption is required.
    Req,
}

impl Encryption {
    fn from_wire(b: u8) -> Result<Self, DecodeError> {
        // The high bits carry ENCRYPT_CLIENT_CERT (0x80); we do not support it but the
        // base level is still meaningful.
        match b & 0x0F {
            0 => Ok(Self::Off),
            1 => Ok(Self::On),
            2 => Ok(Self::NotSup),
            3 => Ok(Self::Req),
            other => Err(DecodeError::Malformed(format!(
                "PRELOGIN encryption value {other:#04x}"
            ))),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::On => 1,
            Self::NotSup => 2,
            Self::Req => 3,
        }
    }
}

/// What the client told us in its PRELOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrelogin {
    pub encryption: Encryption,
    /// The instance name the client asked us to validate, if any.
    pub instance: Option<String>,
}

/// Decodes the client's PRELOGIN payload.
pub fn decode(payload: &[u8]) -> Result<ClientPrelogin, DecodeError> {
    let mut table = Reader::new(payload);
    let mut encryption = None;
    let mut instance = None;
    loop {
        let token = table.u8()?;
        if token == TERMINATOR {
            break;
        }
        let offset = usize::from(table.u16_be()?);
        let len = usize::from(table.u16_be()?);
        let data = payload
            .get(offset..offset + len)
            .ok_or_else(|| DecodeError::Malformed(format!("PRELOGIN option {token} points outside the packet")))?;
        match token {
            ENCRYPTION => {
                let b = *data
                    .first()
                    .ok_or_else(|| DecodeError::Malformed("empty PRELOGIN encryption option".into()))?;
                encryption = Some(Encryption::from_wire(b)?);
            }
            INSTOPT => {
                let name: Vec<u8> = data.iter().copied().take_while(|b| *b != 0).collect();
                if !name.is_empty() {
                    instance = Some(String::from_utf8_lossy(&name).into_owned());
                }
            }
            // Version, thread id, MARS, trace id, fed-auth, nonce: nothing to act on.
            _ => {}
        }
    }
    Ok(ClientPrelogin {
        // A PRELOGIN without ENCRYPTION is treated as ENCRYPT_OFF, as SQL Server does.
        encryption: encryption.unwrap_or(Encryption::Off),
        instance,
    })
}

/// The server's answer to a client's encryption level (MS-TDS 2.2.6.5 table):
/// `tls` is whether a certificate is configured, `force` whether the server insists.
pub fn negotiate(client: Encryption, tls: bool, force: bool) -> Encryption {
    match (tls, force, client) {
        (false, _, _) => Encryption::NotSup,
        (true, _, Encryption::On | Encryption::Req) => Encryption::On,
        (true, false, Encryption::Off) => Encryption::Off,
        (true, false, Encryption::NotSup) => Encryption::NotSup,
        (true, true, Encryption::Off | Encryption::NotSup) => Encryption::Req,
    }
}

/// Encodes the server's PRELOGIN response: version, encryption, instance validity,
/// an empty thread id and MARS off, as SQL Server sends them.
pub fn encode_response(dst: &mut BytesMut, encryption: Encryption, version: [u8; 4]) {
    // (token, data) pairs; offsets are computed after the option table.
    let options: [(u8, &[u8]); 5] = [
        (VERSION, &[version[0], version[1], version[2], version[3], 0, 0]),
        (ENCRYPTION, &[encryption.to_wire()]),
        (INSTOPT, &[0]),
        (THREADID, &[]),
        (MARS, &[0]),
    ];
    let mut offset = options.len() * 5 + 1;
    for (token, data) in &options {
        dst.put_u8(*token);
        // The whole response is a few dozen bytes.
        dst.put_u16(offset as u16);
        dst.put_u16(data.len() as u16);
        offset += data.len();
    }
    dst.put_u8(TERMINATOR);
    for (_, data) in &options {
        dst.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_without_tls_never_offers_encryption() {
        for client in [Encryption::Off, Encryption::On, Encryption::NotSup, Encryption::Req] {
            assert_eq!(negotiate(client, false, false), Encryption::NotSup);
        }
    }

    #[test]
    fn login_only_encryption_when_both_sides_are_off() {
        assert_eq!(negotiate(Encryption::Off, true, false), Encryption::Off);
        assert_eq!(negotiate(Encryption::Off, true, true), Encryption::Req);
    }

    #[test]
    fn response_round_trips_through_the_decoder() {
        let mut buf = BytesMut::new();
        encode_response(&mut buf, Encryption::On, [15, 0, 7, 208]);
        let decoded = decode(&buf).unwrap();
        assert_eq!(decoded.encryption, Encryption::On);
        assert_eq!(decoded.instance, None);
    }
}
