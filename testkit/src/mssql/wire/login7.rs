//! LOGIN7 (MS-TDS 2.2.6.4): the client's credentials, database and packet size.
//! Decodes the fixed header, the offset/length table, the obfuscated password and,
//! for TDS 7.4 clients that set fExtension, the FeatureExt block; decides which
//! requested features the login answers with in FEATUREEXTACK (MS-TDS 2.2.7.11).
//!
//! - LOGIN7: <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/773a62b6-ee89-4c02-9e5e-344882630aac>
//! - FEATUREEXTACK: <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/2eb82f8e-11f0-46dc-b42d-27302fa4701a>
//! - Login Ready state (FEDAUTH rules), MS-TDS 3.3.5.5: <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/1d82a68b-57c2-46e9-84ba-ed41f7bd0c7c>

use super::decode::{ucs2_to_string, DecodeError, Reader};

/// OptionFlags2 bit: integrated (Windows) security, which the stand-in does not offer.
const INTEGRATED_SECURITY: u8 = 0x80;
/// OptionFlags3 bit fExtension: ibExtension/cbExtension point to a DWORD holding the
/// offset of the FeatureExt block (MS-TDS 2.2.6.4, introduced in TDS 7.4).
const EXTENSION_USED: u8 = 0x10;

/// FeatureExt FeatureId values (MS-TDS 2.2.6.4) the stand-in looks at; every other id
/// is skipped by its FeatureDataLen and never acknowledged.
pub mod feature {
    /// Connection resiliency: the client offers to recover a session.
    pub const SESSIONRECOVERY: u8 = 0x01;
    /// Federated (Azure AD / Entra ID) authentication: a token replaces the password.
    pub const FEDAUTH: u8 = 0x02;
    /// The client can read UTF-8 collations (FreeTDS and the ODBC driver send it).
    pub const UTF8_SUPPORT: u8 = 0x0A;
    /// Ends the FeatureExt block and the FEATUREEXTACK token.
    pub const TERMINATOR: u8 = 0xFF;
}

/// One FeatureOpt of the FeatureExt block: FeatureId, then FeatureDataLen (DWORD) bytes
/// of FeatureData.
#[derive(Clone, PartialEq, Eq)]
pub struct FeatureOpt {
    pub id: u8,
    pub data: Vec<u8>,
}

// FEDAUTH data carries an access token: print ids and lengths only.
impl std::fmt::Debug for FeatureOpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeatureOpt({:#04x}, {} bytes)", self.id, self.data.len())
    }
}

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
    /// The FeatureExt block, when the client set fExtension (TDS 7.4 clients such as
    /// FreeTDS and the ODBC driver do; tiberius only for Azure AD tokens).
    pub feature_ext: Option<Vec<FeatureOpt>>,
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

impl Login7 {
    /// Whether the client asked for federated authentication (FEDAUTH), which the
    /// stand-in cannot honour: it has no federated authentication layer to validate a
    /// token against. MS-TDS 3.3.5.5 then leaves only a "Login failed" ERROR and a
    /// closed connection (whether fFedAuthEcho matches our PRELOGIN — which never
    /// carries FEDAUTHREQUIRED — or not).
    pub fn requests_fedauth(&self) -> bool {
        self.feature_ext
            .as_deref()
            .is_some_and(|features| features.iter().any(|f| f.id == feature::FEDAUTH))
    }

    /// What a successful login acknowledges in FEATUREEXTACK, or `None` when the client
    /// sent no FeatureExt (then no FEATUREEXTACK is sent: MS-TDS 2.2.7.11 makes it a
    /// reply to FeatureExt, sent only along with LOGINACK). An empty list still yields
    /// a FEATUREEXTACK holding only its TERMINATOR, which the token grammar
    /// (`1*FeatureAckOpt`, TERMINATOR being one) allows.
    pub fn feature_acks(&self) -> Option<Vec<FeatureOpt>> {
        let features = self.feature_ext.as_deref()?;
        Some(features.iter().filter_map(acknowledge).collect())
    }
}

/// The FEATUREEXTACK entry for one requested feature: a server acknowledges only the
/// features it supports (MS-TDS 2.2.7.11), and the stand-in supports none yet.
fn acknowledge(requested: &FeatureOpt) -> Option<FeatureOpt> {
    match requested.id {
        // No connection resiliency here; without the ack the client knows it must not
        // try to recover sessions on this server.
        feature::SESSIONRECOVERY => None,
        // Every collation here is SQL_Latin1_General_CP1_CI_AS and char data travels
        // as code page 1252, never UTF-8: an ack would promise UTF-8 collations.
        feature::UTF8_SUPPORT => None,
        // Refused before the login succeeds (see `Login7::requests_fedauth`).
        feature::FEDAUTH => None,
        // Unknown (or unsupported: COLUMNENCRYPTION, GLOBALTRANSACTIONS, …) features
        // are skipped by their FeatureDataLen and not acknowledged.
        _ => None,
    }
}

/// Reads the FeatureExt block: `ibExtension` points to a DWORD that is the offset of
/// FeatureExt from the start of LOGIN7 (MS-TDS 2.2.6.4, `ibFeatureExtLong`); FeatureExt
/// is a list of (FeatureId BYTE, FeatureDataLen DWORD, FeatureData) ended by 0xFF.
fn decode_feature_ext(
    payload: &[u8],
    ib_extension: usize,
    cb_extension: usize,
) -> Result<Vec<FeatureOpt>, DecodeError> {
    let malformed = |what: &str| DecodeError::Malformed(format!("LOGIN7 FeatureExt: {what}"));
    if cb_extension < 4 {
        return Err(malformed(&format!(
            "cbExtension {cb_extension} is too short for ibFeatureExtLong"
        )));
    }
    let pointer = payload
        .get(ib_extension..ib_extension + 4)
        .ok_or_else(|| malformed("ibExtension points outside the message"))?;
    let offset = u32::from_le_bytes([pointer[0], pointer[1], pointer[2], pointer[3]]) as usize;
    let block = payload
        .get(offset..)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| malformed("ibFeatureExtLong points outside the message"))?;
    let mut r = Reader::new(block);
    let mut features = Vec::new();
    loop {
        let id = r.u8().map_err(|_| malformed("no TERMINATOR"))?;
        if id == feature::TERMINATOR {
            return Ok(features);
        }
        let len = r.u32_le()? as usize;
        if len > r.remaining() {
            return Err(malformed(&format!("feature {id:#04x} claims {len} bytes")));
        }
        features.push(FeatureOpt {
            id,
            data: r.take(len)?.to_vec(),
        });
    }
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
    // ibExtension/cbExtension (cbExtension in bytes); "unused" before TDS 7.4 or
    // when fExtension is clear.
    let ib_extension = usize::from(r.u16_le()?);
    let cb_extension = usize::from(r.u16_le()?);
    let _library = field(&mut r, "client library", false)?;
    let _language = field(&mut r, "language", false)?;
    let database = field(&mut r, "database", false)?;
    let feature_ext = if flags3 & EXTENSION_USED != 0 {
        Some(decode_feature_ext(payload, ib_extension, cb_extension)?)
    } else {
        None
    };

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
        feature_ext,
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

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// A LOGIN7 laid out as FreeTDS lays it out for TDS 7.4: the variable data, then
    /// the 4-byte ibFeatureExtLong that ibExtension points to, then `feature_ext`
    /// (fExtension set) — or no extension at all when `feature_ext` is `None`.
    fn login7_bytes(user: &str, password: &str, database: &str, feature_ext: Option<&[u8]>) -> Vec<u8> {
        let obfuscated: Vec<u8> = ucs2(password).iter().map(|b| b.rotate_left(4) ^ 0xA5).collect();
        let texts: [(Vec<u8>, usize); 4] = [
            (ucs2("host"), 4),
            (ucs2(user), user.encode_utf16().count()),
            (obfuscated, password.encode_utf16().count()),
            (ucs2("app"), 3),
        ];
        let mut fixed = Vec::new();
        fixed.extend_from_slice(&0u32.to_le_bytes()); // Length, patched below
        fixed.extend_from_slice(&0x7400_0004u32.to_le_bytes());
        fixed.extend_from_slice(&4096u32.to_le_bytes());
        fixed.extend_from_slice(&[0u8; 12]);
        let flags3 = if feature_ext.is_some() { 0x18 } else { 0x08 };
        fixed.extend_from_slice(&[0xE0, 0x03, 0x00, flags3]);
        fixed.extend_from_slice(&[0u8; 8]);
        let mut data = Vec::new();
        let mut offset = 94usize;
        let mut entry = |fixed: &mut Vec<u8>, data: &mut Vec<u8>, bytes: &[u8], len: usize| {
            fixed.extend_from_slice(&(offset as u16).to_le_bytes());
            fixed.extend_from_slice(&(len as u16).to_le_bytes());
            data.extend_from_slice(bytes);
            offset += bytes.len();
        };
        for (bytes, chars) in &texts {
            entry(&mut fixed, &mut data, bytes, *chars);
        }
        entry(&mut fixed, &mut data, &ucs2("srv"), 3);
        // ibExtension/cbExtension: a DWORD patched once the FeatureExt offset is known.
        let extension_at = 94 + data.len();
        match feature_ext {
            Some(_) => entry(&mut fixed, &mut data, &[0; 4], 4),
            None => entry(&mut fixed, &mut data, &[], 0),
        }
        entry(&mut fixed, &mut data, &ucs2("lib"), 3);
        entry(&mut fixed, &mut data, &ucs2("us_english"), 10);
        entry(&mut fixed, &mut data, &ucs2(database), database.encode_utf16().count());
        fixed.extend_from_slice(&[0u8; 6]); // ClientID
        for _ in 0..3 {
            // SSPI, attach db file, change password
            fixed.extend_from_slice(&(offset as u16).to_le_bytes());
            fixed.extend_from_slice(&0u16.to_le_bytes());
        }
        fixed.extend_from_slice(&0u32.to_le_bytes()); // cbSSPILong
        assert_eq!(fixed.len(), 94);
        fixed.extend_from_slice(&data);
        if let Some(block) = feature_ext {
            let feature_ext_at = fixed.len() as u32;
            fixed[extension_at..extension_at + 4].copy_from_slice(&feature_ext_at.to_le_bytes());
            fixed.extend_from_slice(block);
        }
        let len = fixed.len() as u32;
        fixed[..4].copy_from_slice(&len.to_le_bytes());
        fixed
    }

    fn opt(id: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn feature_ext_is_read_through_ib_extension_and_fields_stay_intact() {
        // SESSIONRECOVERY (empty: a fresh session), an id MS-TDS does not define with
        // a payload that contains 0xFF, UTF8_SUPPORT as FreeTDS sends it, and
        // GLOBALTRANSACTIONS (0x05), which the stand-in does not support.
        let block = [
            opt(feature::SESSIONRECOVERY, &[]),
            opt(0x42, &[0xFF, 0x00, 0xFF]),
            opt(feature::UTF8_SUPPORT, &[0x01]),
            opt(0x05, &[]),
            vec![feature::TERMINATOR],
        ]
        .concat();
        let login = decode(&login7_bytes("sidecar", "S3cret!pässword", "Shop", Some(&block))).unwrap();

        assert_eq!(login.user, "sidecar");
        assert_eq!(login.password, "S3cret!pässword");
        assert_eq!(login.server_name, "srv");
        assert_eq!(login.database, "Shop");
        let ids: Vec<(u8, Vec<u8>)> = login
            .feature_ext
            .clone()
            .expect("fExtension was set")
            .into_iter()
            .map(|f| (f.id, f.data))
            .collect();
        assert_eq!(
            ids,
            vec![
                (feature::SESSIONRECOVERY, vec![]),
                (0x42, vec![0xFF, 0x00, 0xFF]),
                (feature::UTF8_SUPPORT, vec![0x01]),
                (0x05, vec![]),
            ]
        );
        assert!(!login.requests_fedauth());

        // Nothing requested is supported here: FEATUREEXTACK is its terminator alone.
        let acks = login.feature_acks().expect("a FeatureExt gets a FEATUREEXTACK");
        assert!(acks.is_empty(), "{acks:?}");
        let mut buf = bytes::BytesMut::new();
        let acks: Vec<(u8, &[u8])> = acks.iter().map(|a| (a.id, a.data.as_slice())).collect();
        super::super::tokens::feature_ext_ack(&mut buf, &acks);
        assert_eq!(&buf[..], &[0xAE, 0xFF]);
    }

    #[test]
    fn feature_ext_ack_lists_each_acknowledged_feature_then_the_terminator() {
        let mut buf = bytes::BytesMut::new();
        super::super::tokens::feature_ext_ack(&mut buf, &[(feature::UTF8_SUPPORT, &[0x01])]);
        assert_eq!(&buf[..], &[0xAE, 0x0A, 0x01, 0x00, 0x00, 0x00, 0x01, 0xFF]);
    }

    #[test]
    fn a_login_without_f_extension_has_no_feature_ext_and_no_ack() {
        let login = decode(&login7_bytes("sidecar", "pw", "Shop", None)).unwrap();
        assert_eq!(login.password, "pw");
        assert_eq!(login.feature_ext, None);
        assert_eq!(login.feature_acks(), None);
    }

    #[test]
    fn fedauth_in_feature_ext_is_reported() {
        // Options byte: fFedAuthEcho (bit 0) = 0, bFedAuthLibrary (bits 1-7) = 0x01
        // (security token), then the token length and token.
        let mut fedauth = vec![0x01 << 1];
        fedauth.extend_from_slice(&4u32.to_le_bytes());
        fedauth.extend_from_slice(b"tokn");
        let block = [opt(feature::FEDAUTH, &fedauth), vec![feature::TERMINATOR]].concat();
        let login = decode(&login7_bytes("", "", "Shop", Some(&block))).unwrap();
        assert!(login.requests_fedauth());
        assert!(!format!("{login:?}").contains("tokn"), "the token must not be logged");
    }

    #[test]
    fn malformed_feature_ext_is_rejected() {
        // No terminator.
        let unterminated = opt(feature::UTF8_SUPPORT, &[0x01]);
        assert!(decode(&login7_bytes("u", "p", "d", Some(&unterminated))).is_err());
        // A FeatureDataLen running past the message.
        let overlong = [vec![0x0A], 100u32.to_le_bytes().to_vec(), vec![0x01, 0xFF]].concat();
        assert!(decode(&login7_bytes("u", "p", "d", Some(&overlong))).is_err());
        // ibFeatureExtLong pointing past the end.
        let mut bytes = login7_bytes("u", "p", "d", Some(&[feature::TERMINATOR]));
        let ib_extension = usize::from(u16::from_le_bytes([bytes[56], bytes[57]]));
        bytes[ib_extension..ib_extension + 4].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(decode(&bytes).is_err());
    }
}
