//! Response tokens (MS-TDS 2.2.7): LOGINACK, ENVCHANGE, INFO/ERROR, COLMETADATA,
//! ROW/NBCROW, RETURNSTATUS and the DONE family, written into a packet buffer.

use bytes::{BufMut, BytesMut};

use super::values::{self, EncodeError};
use crate::mssql::types::{Column, Value};

const LOGINACK: u8 = 0xAD;
const FEATUREEXTACK: u8 = 0xAE;
const ENVCHANGE: u8 = 0xE3;
const ERROR: u8 = 0xAA;
const INFO: u8 = 0xAB;
const COLMETADATA: u8 = 0x81;
const ROW: u8 = 0xD1;
const NBCROW: u8 = 0xD2;
const RETURNSTATUS: u8 = 0x79;
const DONE: u8 = 0xFD;
const DONEPROC: u8 = 0xFE;
const DONEINPROC: u8 = 0xFF;

/// DONE status bits (MS-TDS 2.2.7.6).
pub mod done_status {
    pub const FINAL: u16 = 0x0000;
    pub const MORE: u16 = 0x0001;
    pub const ERROR: u16 = 0x0002;
    pub const COUNT: u16 = 0x0010;
    pub const ATTN: u16 = 0x0020;
}

/// CurCmd values SQL Server reports in DONE tokens.
pub mod cur_cmd {
    pub const NONE: u16 = 0x0000;
    pub const SELECT: u16 = 0x00C1;
    pub const EXECUTE: u16 = 0x00E0;
}

/// Which DONE token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneKind {
    /// End of a statement in a batch.
    Done,
    /// End of a statement inside a stored procedure (sp_executesql).
    DoneInProc,
    /// End of a stored procedure.
    DoneProc,
}

/// Appends a UCS-2 B_VARCHAR, cut at 255 characters (the length is one byte).
fn put_b_varchar(dst: &mut BytesMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    dst.put_u8(units.len() as u8);
    for u in units {
        dst.put_u16_le(u);
    }
}

/// Appends a UCS-2 US_VARCHAR, cut at 65535 characters.
fn put_us_varchar(dst: &mut BytesMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(0xFFFF).collect();
    dst.put_u16_le(units.len() as u16);
    for u in units {
        dst.put_u16_le(u);
    }
}

/// Writes a token whose body is prefixed by its u16 length, filling the body with `f`.
fn with_u16_len(dst: &mut BytesMut, token: u8, f: impl FnOnce(&mut BytesMut)) {
    dst.put_u8(token);
    let at = dst.len();
    dst.put_u16_le(0);
    f(dst);
    let len = u16::try_from(dst.len() - at - 2).unwrap_or(u16::MAX);
    dst[at..at + 2].copy_from_slice(&len.to_le_bytes());
}

/// LOGINACK: the server speaks `tds_version` (big-endian on the wire), program name
/// and version as SQL Server reports them.
pub fn login_ack(dst: &mut BytesMut, tds_version: u32, prog_name: &str, version: [u8; 4]) {
    with_u16_len(dst, LOGINACK, |d| {
        d.put_u8(1); // interface: T-SQL
        d.put_u32(tds_version);
        put_b_varchar(d, prog_name);
        d.put_slice(&version);
    });
}

/// FEATUREEXTACK (MS-TDS 2.2.7.11, TDS 7.4): after LOGINACK, one (FeatureId,
/// FeatureAckDataLen DWORD, FeatureAckData) per acknowledged feature, then the 0xFF
/// TERMINATOR; no length prefix.
/// <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-tds/2eb82f8e-11f0-46dc-b42d-27302fa4701a>
pub fn feature_ext_ack(dst: &mut BytesMut, acks: &[(u8, &[u8])]) {
    dst.put_u8(FEATUREEXTACK);
    for (id, data) in acks {
        dst.put_u8(*id);
        dst.put_u32_le(u32::try_from(data.len()).unwrap_or(u32::MAX));
        dst.put_slice(data);
    }
    dst.put_u8(0xFF);
}

/// ENVCHANGE types (MS-TDS 2.2.7.9).
pub mod env {
    pub const DATABASE: u8 = 1;
    pub const LANGUAGE: u8 = 2;
    pub const PACKET_SIZE: u8 = 4;
    pub const COLLATION: u8 = 7;
    pub const BEGIN_TRAN: u8 = 8;
    pub const COMMIT_TRAN: u8 = 9;
    pub const ROLLBACK_TRAN: u8 = 10;
}

/// ENVCHANGE with B_VARCHAR new/old values (database, language, packet size).
pub fn env_change_text(dst: &mut BytesMut, ty: u8, new: &str, old: &str) {
    with_u16_len(dst, ENVCHANGE, |d| {
        d.put_u8(ty);
        put_b_varchar(d, new);
        put_b_varchar(d, old);
    });
}

/// ENVCHANGE with B_VARBYTE new/old values (collation, transactions).
pub fn env_change_bytes(dst: &mut BytesMut, ty: u8, new: &[u8], old: &[u8]) {
    with_u16_len(dst, ENVCHANGE, |d| {
        d.put_u8(ty);
        d.put_u8(new.len() as u8);
        d.put_slice(new);
        d.put_u8(old.len() as u8);
        d.put_slice(old);
    });
}

/// The fields of an ERROR or INFO token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub text: &'a str,
    pub server: &'a str,
    pub procedure: &'a str,
    pub line: u32,
}

fn message(dst: &mut BytesMut, token: u8, m: &Message<'_>) {
    with_u16_len(dst, token, |d| {
        d.put_i32_le(m.number);
        d.put_u8(m.state);
        d.put_u8(m.class);
        put_us_varchar(d, m.text);
        put_b_varchar(d, m.server);
        put_b_varchar(d, m.procedure);
        d.put_u32_le(m.line);
    });
}

/// ERROR token.
pub fn error(dst: &mut BytesMut, m: &Message<'_>) {
    message(dst, ERROR, m);
}

/// INFO token (same layout as ERROR; class 10 or lower).
pub fn info(dst: &mut BytesMut, m: &Message<'_>) {
    message(dst, INFO, m);
}

/// DONE, DONEINPROC or DONEPROC with a 64-bit row count (TDS 7.2+).
pub fn done(dst: &mut BytesMut, kind: DoneKind, status: u16, cur_cmd: u16, rows: u64) {
    dst.put_u8(match kind {
        DoneKind::Done => DONE,
        DoneKind::DoneInProc => DONEINPROC,
        DoneKind::DoneProc => DONEPROC,
    });
    dst.put_u16_le(status);
    dst.put_u16_le(cur_cmd);
    dst.put_u64_le(rows);
}

/// RETURNSTATUS: a stored procedure's return value.
pub fn return_status(dst: &mut BytesMut, status: i32) {
    dst.put_u8(RETURNSTATUS);
    dst.put_i32_le(status);
}

/// COLMETADATA for a result set.
pub fn col_metadata(dst: &mut BytesMut, columns: &[Column]) {
    dst.put_u8(COLMETADATA);
    dst.put_u16_le(u16::try_from(columns.len()).unwrap_or(0xFFFE));
    for col in columns.iter().take(0xFFFE) {
        dst.put_u32_le(0); // user type
                           // Nullable (0x0001) and updateable-unknown (0x0008 read/write) as a table column.
        let flags: u16 = if col.nullable { 0x0009 } else { 0x0008 };
        dst.put_u16_le(flags);
        values::encode_column_type_info(col, dst);
        put_b_varchar(dst, &col.name);
    }
}

/// Appends one row, choosing NBCROW when its null bitmap is smaller than the NULLs it
/// replaces, as SQL Server does. On error nothing is appended.
pub fn row(dst: &mut BytesMut, columns: &[Column], values: &[Value]) -> Result<(), EncodeError> {
    let start = dst.len();
    let result = encode_row(dst, columns, values);
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

fn encode_row(dst: &mut BytesMut, columns: &[Column], values: &[Value]) -> Result<(), EncodeError> {
    let null_savings: usize = columns
        .iter()
        .zip(values)
        .filter(|(_, v)| matches!(v, Value::Null))
        .map(|(c, _)| values::null_cost(&c.ty))
        .sum();
    let bitmap_len = columns.len().div_ceil(8);
    let missing = Value::Null;
    let value_at = |i: usize| values.get(i).unwrap_or(&missing);
    if null_savings > bitmap_len {
        dst.put_u8(NBCROW);
        let mut bitmap = vec![0u8; bitmap_len];
        for i in 0..columns.len() {
            if matches!(value_at(i), Value::Null) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        dst.put_slice(&bitmap);
        for (i, col) in columns.iter().enumerate() {
            let v = value_at(i);
            if !matches!(v, Value::Null) {
                values::encode_column_value(col, v, dst)?;
            }
        }
    } else {
        dst.put_u8(ROW);
        for (i, col) in columns.iter().enumerate() {
            values::encode_column_value(col, value_at(i), dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mssql::types::SqlType;

    fn cols(n: usize, ty: SqlType) -> Vec<Column> {
        (0..n)
            .map(|i| Column {
                name: format!("c{i}"),
                ty: ty.clone(),
                nullable: true,
            })
            .collect()
    }

    #[test]
    fn rows_whose_nulls_cost_more_than_a_bitmap_use_nbcrow() {
        let columns = cols(3, SqlType::Int);
        let mut buf = BytesMut::new();
        row(&mut buf, &columns, &[Value::Null, Value::Null, Value::Int(7)]).unwrap();
        // NBCROW, bitmap 0b011, then only the third value.
        assert_eq!(&buf[..], &[NBCROW, 0b0000_0011, 4, 7, 0, 0, 0]);
    }

    #[test]
    fn rows_without_nulls_use_row() {
        let columns = cols(2, SqlType::Bit);
        let mut buf = BytesMut::new();
        row(&mut buf, &columns, &[Value::Bit(true), Value::Null]).unwrap();
        // One BYTELEN NULL saves no more than the 1-byte bitmap costs.
        assert_eq!(&buf[..], &[ROW, 1, 1, 0]);
    }

    #[test]
    fn a_row_that_fails_to_encode_leaves_nothing_behind() {
        let columns = cols(2, SqlType::Int);
        let mut buf = BytesMut::new();
        let bad = [Value::Int(1), Value::String("x".into())];
        assert!(row(&mut buf, &columns, &bad).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn error_token_layout_matches_ms_tds() {
        let mut buf = BytesMut::new();
        error(
            &mut buf,
            &Message {
                number: 208,
                state: 1,
                class: 16,
                text: "x",
                server: "S",
                procedure: "",
                line: 3,
            },
        );
        let expected_len: u16 = 4 + 1 + 1 + (2 + 2) + (1 + 2) + 1 + 4;
        assert_eq!(buf[0], ERROR);
        assert_eq!(u16::from_le_bytes([buf[1], buf[2]]), expected_len);
        assert_eq!(buf.len(), 3 + usize::from(expected_len));
    }
}
