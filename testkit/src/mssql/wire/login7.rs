//! LOGIN7 (MS-TDS 2.2.6.4): the client's credentials, database and packet size.
//! Decodes the fixed header, the offset/length table and the obfuscated password.

use super::decode::{ucs2_to_string, DecodeError, Reader};

/// OptionFlags2 bit: integrated (Windows) security, which the stand-in does not offer.
const INTEGRATED_SECURITY: u8 = 0x80;
/// OptionFlags3 bit: the FeatureExt block is present (federated auth, …).
const EXTENSION_USED: u8 = 0x10;

/// What a LOGIN7 message carries that the server acts on.
#[derive(Clone, PartialEq, Eq)]
pub struct Login7 {
    /// TDS version the client speaks, as sent (e.g. `0x74000004`).
    pub tds_version: u32,
    /// Requested packet size; 0 means "the server's default".
    pub packet_size: u32,
    pub hostname: String,
    pub user: String,
    pub password: String,
    pub app_name: String,
    pub server_name: String,
    /// Requested database; empty means the login's default.
    pub database: String,
    /// Whether the client asked for Windows authentication.
    pub integrated_security: bool,
    /// Whether the client sent a FeatureExt block (e.g. Azure AD tokens).
    pub feature_ext: bool,
}

// Never print the password.
impl std::fmt::Debug for Login7 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("{:#010x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("app_name", &self.app_name)
            .field("server_name", &self.server_name)
            .field("database", &self.database)
            .field("integrated_security", &self.integrated_security)
            .field("feature_ext", &self.feature_ext)
            .finish()
    }
}

/// Reverses the LOGIN7 password obfuscation: each byte was nibble-swapped then XORed
/// with 0xA5.
fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|b| {
            let x = b ^ 0xA5;
            x.rotate_left(4)
        })
        .collect()
}

/// Decodes a LOGIN7 payload.
pub fn decode(payload: &[u8]) -> Result<Login7, DecodeError> {
    let mut r = Reader::new(payload);
    let length = r.u32_le()? as usize;
    if length > payload.len() || length < 94 {
        return Err(DecodeError::Malformed(format!(
            "LOGIN7 length {length} for a {}-byte message",
            payload.len()
        )));
    }
    let tds_version = r.u32_le()?;
    let packet_size = r.u32_le()?;
    r.skip(12)?; // client program version, process id, connection id
    let _flags1 = r.u8()?;
    let flags2 = r.u8()?;
    let _type_flags = r.u8()?;
    let flags3 = r.u8()?;
    r.skip(8)?; // time zone, LCID

    // (offset, length in characters) pairs, in order.
    let field = |r: &mut Reader<'_>, what: &'static str, secret: bool| {
        let offset = usize::from(r.u16_le()?);
        let chars = usize::from(r.u16_le()?);
        let bytes = payload
            .get(offset..offset + chars * 2)
            .ok_or_else(|| DecodeError::Malformed(format!("LOGIN7 {what} points outside the message")))?;
        if secret {
            ucs2_to_string(&deobfuscate(bytes), what)
        } else {
            ucs2_to_string(bytes, what)
        }
    };
    let hostname = field(&mut r, "hostname", false)?;
    let user = field(&mut r, "user name", false)?;
    let password = field(&mut r, "password", true)?;
    let app_name = field(&mut r, "application name", false)?;
    let server_name = field(&mut r, "server name", false)?;
    r.skip(4)?; // extension (offset to FeatureExt) / unused
    let _library = field(&mut r, "client library", false)?;
    let _language = field(&mut r, "language", false)?;
    let database = field(&mut r, "database", false)?;

    Ok(Login7 {
        tds_version,
        packet_size,
        hostname,
        user,
        password,
        app_name,
        server_name,
        database,
        integrated_security: flags2 & INTEGRATED_SECURITY != 0,
        feature_ext: flags3 & EXTENSION_USED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deobfuscation_inverts_the_client_transform() {
        let plain = b"Pa55word!";
        let obfuscated: Vec<u8> = plain
            .iter()
            .map(|b| ((b << 4) & 0xf0 | (b >> 4) & 0x0f) ^ 0xA5)
            .collect();
        assert_eq!(deobfuscate(&obfuscated), plain);
    }

    #[test]
    fn truncated_login_is_rejected() {
        assert!(decode(&[10, 0, 0, 0]).is_err());
    }
}
