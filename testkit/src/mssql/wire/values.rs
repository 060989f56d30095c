//! Column types and values on the wire (MS-TDS 2.2.5.4–2.2.5.5): the TYPE_INFO a real
//! SQL Server puts in COLMETADATA for each [`SqlType`], and each [`Value`]'s bytes in a
//! ROW. Also the date/time arithmetic shared with the RPC parameter decoder.

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::cp1252;
use crate::mssql::types::{Column, SqlType, Value};

/// TDS data type bytes (MS-TDS 2.2.5.4).
pub mod ty {
    pub const NULL: u8 = 0x1F;
    pub const INT1: u8 = 0x30;
    pub const BIT: u8 = 0x32;
    pub const INT2: u8 = 0x34;
    pub const INT4: u8 = 0x38;
    pub const DATETIM4: u8 = 0x3A;
    pub const FLT4: u8 = 0x3B;
    pub const MONEY: u8 = 0x3C;
    pub const DATETIME: u8 = 0x3D;
    pub const FLT8: u8 = 0x3E;
    pub const MONEY4: u8 = 0x7A;
    pub const INT8: u8 = 0x7F;
    pub const GUID: u8 = 0x24;
    pub const INTN: u8 = 0x26;
    pub const DATEN: u8 = 0x28;
    pub const TIMEN: u8 = 0x29;
    pub const DATETIME2N: u8 = 0x2A;
    pub const DATETIMEOFFSETN: u8 = 0x2B;
    pub const BITN: u8 = 0x68;
    pub const DECIMALN: u8 = 0x6A;
    pub const NUMERICN: u8 = 0x6C;
    pub const FLTN: u8 = 0x6D;
    pub const MONEYN: u8 = 0x6E;
    pub const DATETIMN: u8 = 0x6F;
    pub const BIGVARBINARY: u8 = 0xA5;
    pub const BIGVARCHAR: u8 = 0xA7;
    pub const BIGBINARY: u8 = 0xAD;
    pub const BIGCHAR: u8 = 0xAF;
    pub const NVARCHAR: u8 = 0xE7;
    pub const NCHAR: u8 = 0xEF;
}

/// The collation SQL Server reports for SQL_Latin1_General_CP1_CI_AS (LCID 0x0409,
/// ignore case/kana/width, sort id 52): the server default of a US install, code page
/// 1252.
pub const SQL_LATIN1_GENERAL_CP1_CI_AS: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// A NULL PLP value.
pub const PLP_NULL: u64 = 0xFFFF_FFFF_FFFF_FFFF;
/// Size of the chunks a PLP value is sent in.
const PLP_CHUNK: usize = 8000;

/// A value that cannot be sent as its column's type: an engine bug, reported to the
/// client as a conversion error rather than a corrupt stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value {value} does not fit column type {ty:?}")]
pub struct EncodeError {
    pub ty: SqlType,
    pub value: String,
}

fn mismatch(ty: &SqlType, value: &Value) -> EncodeError {
    EncodeError {
        ty: ty.clone(),
        value: format!("{value:?}"),
    }
}

/// How a type's values are length-prefixed in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// One length byte (0 = NULL).
    ByteLen,
    /// Two length bytes (0xFFFF = NULL).
    UShortLen,
    /// Partially length-prefixed (`(max)` types).
    Plp,
}

fn framing(ty: &SqlType) -> Framing {
    use SqlType::*;
    match ty {
        Char(_) | NChar(_) | Binary(_) => Framing::UShortLen,
        VarChar(Some(_)) | NVarChar(Some(_)) | VarBinary(Some(_)) => Framing::UShortLen,
        VarChar(None) | NVarChar(None) | VarBinary(None) => Framing::Plp,
        _ => Framing::ByteLen,
    }
}

/// Bytes a NULL of this type costs in a ROW token; NBCROW saves them.
pub fn null_cost(ty: &SqlType) -> usize {
    match framing(ty) {
        Framing::ByteLen => 1,
        Framing::UShortLen => 2,
        Framing::Plp => 8,
    }
}

/// Storage bytes of decimal(p, _) values, sign byte excluded.
pub fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 4,
        10..=19 => 8,
        20..=28 => 12,
        _ => 16,
    }
}

/// Bytes of a time(scale) value.
pub fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

/// Writes the TYPE_INFO of `ty` as SQL Server does in COLMETADATA.
pub fn encode_type_info(sql_type: &SqlType, dst: &mut BytesMut) {
    use SqlType::*;
    let ushort = |n: Option<u16>, units: u16| n.map_or(0xFFFF, |n| n.saturating_mul(units));
    match sql_type {
        Bit => dst.put_slice(&[ty::BITN, 1]),
        TinyInt => dst.put_slice(&[ty::INTN, 1]),
        SmallInt => dst.put_slice(&[ty::INTN, 2]),
        Int => dst.put_slice(&[ty::INTN, 4]),
        BigInt => dst.put_slice(&[ty::INTN, 8]),
        Decimal { precision, scale } => dst.put_slice(&[ty::DECIMALN, decimal_len(*precision) + 1, *precision, *scale]),
        Money => dst.put_slice(&[ty::MONEYN, 8]),
        Real => dst.put_slice(&[ty::FLTN, 4]),
        Float => dst.put_slice(&[ty::FLTN, 8]),
        Char(n) => {
            dst.put_u8(ty::BIGCHAR);
            dst.put_u16_le(*n);
            dst.put_slice(&SQL_LATIN1_GENERAL_CP1_CI_AS);
        }
        VarChar(n) => {
            dst.put_u8(ty::BIGVARCHAR);
            dst.put_u16_le(ushort(*n, 1));
            dst.put_slice(&SQL_LATIN1_GENERAL_CP1_CI_AS);
        }
        NChar(n) => {
            dst.put_u8(ty::NCHAR);
            dst.put_u16_le(n.saturating_mul(2));
            dst.put_slice(&SQL_LATIN1_GENERAL_CP1_CI_AS);
        }
        NVarChar(n) => {
            dst.put_u8(ty::NVARCHAR);
            dst.put_u16_le(ushort(*n, 2));
            dst.put_slice(&SQL_LATIN1_GENERAL_CP1_CI_AS);
        }
        Binary(n) => {
            dst.put_u8(ty::BIGBINARY);
            dst.put_u16_le(*n);
        }
        VarBinary(n) => {
            dst.put_u8(ty::BIGVARBINARY);
            dst.put_u16_le(ushort(*n, 1));
        }
        Date => dst.put_u8(ty::DATEN),
        Time(scale) => dst.put_slice(&[ty::TIMEN, *scale]),
        DateTime => dst.put_slice(&[ty::DATETIMN, 8]),
        DateTime2(scale) => dst.put_slice(&[ty::DATETIME2N, *scale]),
        DateTimeOffset(scale) => dst.put_slice(&[ty::DATETIMEOFFSETN, *scale]),
        UniqueIdentifier => dst.put_slice(&[ty::GUID, 16]),
    }
}

/// The fixed-length type SQL Server declares for a NOT NULL column of `ty`, where one
/// exists (it uses INTN, BITN, … only for nullable columns).
pub fn fixed_type(sql_type: &SqlType) -> Option<u8> {
    use SqlType::*;
    Some(match sql_type {
        Bit => ty::BIT,
        TinyInt => ty::INT1,
        SmallInt => ty::INT2,
        Int => ty::INT4,
        BigInt => ty::INT8,
        Money => ty::MONEY,
        Real => ty::FLT4,
        Float => ty::FLT8,
        DateTime => ty::DATETIME,
        _ => return None,
    })
}

/// Writes a column's TYPE_INFO: the fixed-length type for NOT NULL columns that have
/// one, the nullable (N) type otherwise, as SQL Server does.
pub fn encode_column_type_info(column: &Column, dst: &mut BytesMut) {
    match fixed_type(&column.ty) {
        Some(fixed) if !column.nullable => dst.put_u8(fixed),
        _ => encode_type_info(&column.ty, dst),
    }
}

/// Writes a value of `column`, in the fixed-length form (no length prefix) when
/// [`encode_column_type_info`] declared a fixed-length type.
pub fn encode_column_value(column: &Column, value: &Value, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if column.nullable || fixed_type(&column.ty).is_none() {
        return encode_value(&column.ty, value, dst);
    }
    if matches!(value, Value::Null) {
        // A NOT NULL column cannot carry NULL: the engine broke its own metadata.
        return Err(mismatch(&column.ty, value));
    }
    let start = dst.len();
    encode_value(&column.ty, value, dst)?;
    // Drop the one-byte length prefix of the N form.
    let end = dst.len();
    dst.copy_within(start + 1..end, start);
    dst.truncate(end - 1);
    Ok(())
}

/// Writes a NULL of `ty`.
fn put_null(ty: &SqlType, dst: &mut BytesMut) {
    match framing(ty) {
        Framing::ByteLen => dst.put_u8(0),
        Framing::UShortLen => dst.put_u16_le(0xFFFF),
        Framing::Plp => dst.put_u64_le(PLP_NULL),
    }
}

/// Writes a (possibly long) byte string in the column's framing.
fn put_bytes(framing: Framing, bytes: &[u8], dst: &mut BytesMut) {
    match framing {
        Framing::Plp => {
            dst.put_u64_le(bytes.len() as u64);
            for chunk in bytes.chunks(PLP_CHUNK) {
                dst.put_u32_le(chunk.len() as u32);
                dst.put_slice(chunk);
            }
            dst.put_u32_le(0);
        }
        // Non-max values are at most 8000 bytes; longer ones are cut rather than
        // allowed to corrupt the length prefix.
        _ => {
            let len = bytes.len().min(0xFFFE);
            dst.put_u16_le(len as u16);
            dst.put_slice(&bytes[..len]);
        }
    }
}

fn utf16le(s: &str, pad_to_units: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    let mut units = 0usize;
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
        units += 1;
    }
    if let Some(n) = pad_to_units {
        for _ in units..n {
            out.extend_from_slice(&(b' ' as u16).to_le_bytes());
        }
    }
    out
}

/// Rescales a decimal `value / 10^from` to `to` decimal places, rounding half away
/// from zero as SQL Server does. `None` on overflow.
pub fn rescale(value: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        10i128
            .checked_pow(u32::from(to - from))
            .and_then(|f| value.checked_mul(f))
    } else {
        let f = 10i128.checked_pow(u32::from(from - to))?;
        let half = f / 2;
        let adjusted = if value >= 0 {
            value.checked_add(half)?
        } else {
            value.checked_sub(half)?
        };
        Some(adjusted / f)
    }
}

/// Nanoseconds since midnight (leap-second nanos clamped into the second).
fn nanos_of_day(t: NaiveTime) -> u64 {
    u64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(t.nanosecond().min(999_999_999))
}

/// time(scale) increments since midnight.
pub fn time_increments(t: NaiveTime, scale: u8) -> u64 {
    nanos_of_day(t) / 10u64.pow(9 - u32::from(scale.min(7)))
}

/// The time a number of time(scale) increments since midnight stands for.
pub fn time_from_increments(increments: u64, scale: u8) -> Option<NaiveTime> {
    let nanos = increments.checked_mul(10u64.pow(9 - u32::from(scale.min(7))))?;
    let secs = u32::try_from(nanos / 1_000_000_000).ok()?;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, (nanos % 1_000_000_000) as u32)
}

fn put_time(t: NaiveTime, scale: u8, dst: &mut BytesMut) {
    let inc = time_increments(t, scale).to_le_bytes();
    dst.put_slice(&inc[..usize::from(time_len(scale))]);
}

/// Days since 0001-01-01, as DATE stores them.
pub fn days_since_year_one(d: NaiveDate) -> u32 {
    // num_days_from_ce counts 0001-01-01 as day 1; valid SQL dates are >= that.
    u32::try_from(d.num_days_from_ce() - 1).unwrap_or(0)
}

/// The date a DATE day count stands for.
pub fn date_from_days(days: u32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).ok()?.checked_add(1)?)
}

fn put_date(d: NaiveDate, dst: &mut BytesMut) {
    dst.put_slice(&days_since_year_one(d).to_le_bytes()[..3]);
}

fn datetime_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// (days since 1900-01-01, 1/300-second ticks) of a datetime, rounded to the tick.
pub fn datetime_parts(dt: NaiveDateTime) -> (i32, u32) {
    const TICKS_PER_DAY: u64 = 300 * 86_400;
    let mut days = (dt.date() - datetime_epoch()).num_days() as i32;
    let mut ticks = (nanos_of_day(dt.time()) * 3 + 5_000_000) / 10_000_000;
    if ticks >= TICKS_PER_DAY {
        days += 1;
        ticks = 0;
    }
    (days, ticks as u32)
}

/// The datetime that (days since 1900-01-01, 1/300-second ticks) stands for.
pub fn datetime_from_parts(days: i32, ticks: u32) -> Option<NaiveDateTime> {
    let date = datetime_epoch().checked_add_signed(chrono::Duration::days(i64::from(days)))?;
    let nanos = u64::from(ticks) * 10_000_000 / 3;
    let secs = u32::try_from(nanos / 1_000_000_000).ok()?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, (nanos % 1_000_000_000) as u32)?;
    Some(NaiveDateTime::new(date, time))
}

/// SQL Server stores a GUID's first three groups little-endian.
pub fn guid_wire_bytes(bytes: [u8; 16]) -> [u8; 16] {
    let mut b = bytes;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// Writes `value` as a value of column type `sql_type`, length prefix included.
pub fn encode_value(sql_type: &SqlType, value: &Value, dst: &mut BytesMut) -> Result<(), EncodeError> {
    use SqlType as T;
    use Value as V;
    let bad = || mismatch(sql_type, value);
    if matches!(value, V::Null) {
        put_null(sql_type, dst);
        return Ok(());
    }
    match (sql_type, value) {
        (T::Bit, V::Bit(b)) => dst.put_slice(&[1, u8::from(*b)]),
        (T::Bit, V::Int(i @ (0 | 1))) => dst.put_slice(&[1, *i as u8]),
        (T::TinyInt, V::Int(i)) => dst.put_slice(&[1, u8::try_from(*i).map_err(|_| bad())?]),
        (T::SmallInt, V::Int(i)) => {
            dst.put_u8(2);
            dst.put_i16_le(i16::try_from(*i).map_err(|_| bad())?);
        }
        (T::Int, V::Int(i)) => {
            dst.put_u8(4);
            dst.put_i32_le(i32::try_from(*i).map_err(|_| bad())?);
        }
        (T::BigInt, V::Int(i)) => {
            dst.put_u8(8);
            dst.put_i64_le(*i);
        }
        (T::TinyInt | T::SmallInt | T::Int | T::BigInt, V::Bit(b)) => {
            return encode_value(sql_type, &V::Int(i64::from(*b)), dst)
        }
        (T::Decimal { precision, scale }, V::Decimal { .. } | V::Int(_)) => {
            let (v, s) = match value {
                V::Decimal { value, scale } => (*value, *scale),
                V::Int(i) => (i128::from(*i), 0),
                _ => return Err(bad()),
            };
            let v = rescale(v, s, *scale).ok_or_else(bad)?;
            let limit = 10i128.checked_pow(u32::from(*precision)).unwrap_or(i128::MAX);
            if v.unsigned_abs() >= limit.unsigned_abs() {
                return Err(bad());
            }
            let len = decimal_len(*precision);
            dst.put_u8(len + 1);
            dst.put_u8(u8::from(v >= 0));
            dst.put_slice(&v.unsigned_abs().to_le_bytes()[..usize::from(len)]);
        }
        (T::Money, V::Money(m)) => {
            dst.put_u8(8);
            dst.put_i32_le((*m >> 32) as i32);
            dst.put_u32_le(*m as u32);
        }
        (T::Money, V::Decimal { value: v, scale }) => {
            let m = rescale(*v, *scale, 4)
                .and_then(|m| i64::try_from(m).ok())
                .ok_or_else(bad)?;
            return encode_value(sql_type, &V::Money(m), dst);
        }
        (T::Real, V::Float(f)) => {
            dst.put_u8(4);
            dst.put_f32_le(*f as f32);
        }
        (T::Float, V::Float(f)) => {
            dst.put_u8(8);
            dst.put_f64_le(*f);
        }
        (T::Real | T::Float, V::Int(i)) => return encode_value(sql_type, &V::Float(*i as f64), dst),
        (T::Char(n), V::String(s)) => {
            let mut bytes = Vec::new();
            cp1252::encode(s, &mut bytes);
            bytes.resize(bytes.len().max(usize::from(*n)), b' ');
            put_bytes(Framing::UShortLen, &bytes, dst);
        }
        (T::VarChar(_), V::String(s)) => {
            let mut bytes = Vec::new();
            cp1252::encode(s, &mut bytes);
            put_bytes(framing(sql_type), &bytes, dst);
        }
        (T::NChar(n), V::String(s)) => put_bytes(Framing::UShortLen, &utf16le(s, Some(usize::from(*n))), dst),
        (T::NVarChar(_), V::String(s)) => put_bytes(framing(sql_type), &utf16le(s, None), dst),
        (T::Binary(n), V::Binary(b)) => {
            let mut bytes = b.clone();
            bytes.resize(bytes.len().max(usize::from(*n)), 0);
            put_bytes(Framing::UShortLen, &bytes, dst);
        }
        (T::VarBinary(_), V::Binary(b)) => put_bytes(framing(sql_type), b, dst),
        (T::Date, V::Date(d)) => {
            dst.put_u8(3);
            put_date(*d, dst);
        }
        (T::Date, V::DateTime(dt)) => return encode_value(sql_type, &V::Date(dt.date()), dst),
        (T::Time(scale), V::Time(t)) => {
            dst.put_u8(time_len(*scale));
            put_time(*t, *scale, dst);
        }
        (T::DateTime, V::DateTime(dt)) => {
            let (days, ticks) = datetime_parts(*dt);
            dst.put_u8(8);
            dst.put_i32_le(days);
            dst.put_u32_le(ticks);
        }
        (T::DateTime2(scale), V::DateTime(dt)) => {
            dst.put_u8(time_len(*scale) + 3);
            put_time(dt.time(), *scale, dst);
            put_date(dt.date(), dst);
        }
        (T::DateTime | T::DateTime2(_), V::Date(d)) => {
            return encode_value(sql_type, &V::DateTime(d.and_time(NaiveTime::MIN)), dst)
        }
        (T::DateTimeOffset(scale), V::DateTimeOffset(dto)) => {
            let utc = dto.naive_utc();
            dst.put_u8(time_len(*scale) + 5);
            put_time(utc.time(), *scale, dst);
            put_date(utc.date(), dst);
            dst.put_i16_le((dto.offset().local_minus_utc() / 60) as i16);
        }
        (T::UniqueIdentifier, V::Guid(g)) => {
            dst.put_u8(16);
            dst.put_slice(&guid_wire_bytes(*g.as_bytes()));
        }
        _ => return Err(bad()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_rounds_to_three_hundredths_and_round_trips() {
        let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_milli_opt(13, 45, 10, 3)
            .unwrap();
        let (days, ticks) = datetime_parts(dt);
        let back = datetime_from_parts(days, ticks).unwrap();
        assert_eq!(back.date(), dt.date());
        assert!((back - dt).num_microseconds().unwrap().abs() < 1700);
    }

    #[test]
    fn rescale_rounds_half_away_from_zero() {
        assert_eq!(rescale(12345, 3, 2), Some(1235));
        assert_eq!(rescale(-12345, 3, 2), Some(-1235));
        assert_eq!(rescale(12, 0, 2), Some(1200));
    }

    #[test]
    fn decimal_value_uses_the_column_length() {
        let mut buf = BytesMut::new();
        let ty = SqlType::Decimal {
            precision: 10,
            scale: 2,
        };
        encode_value(&ty, &Value::Decimal { value: -150, scale: 2 }, &mut buf).unwrap();
        assert_eq!(&buf[..], &[9, 0, 150, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn not_null_int_columns_are_fixed_length_without_a_length_prefix() {
        let column = Column {
            name: "id".into(),
            ty: SqlType::Int,
            nullable: false,
        };
        let mut buf = BytesMut::new();
        encode_column_type_info(&column, &mut buf);
        encode_column_value(&column, &Value::Int(258), &mut buf).unwrap();
        assert_eq!(&buf[..], &[ty::INT4, 2, 1, 0, 0]);
        assert!(encode_column_value(&column, &Value::Null, &mut buf).is_err());
    }

    #[test]
    fn a_string_in_an_int_column_is_an_error() {
        let mut buf = BytesMut::new();
        assert!(encode_value(&SqlType::Int, &Value::String("x".into()), &mut buf).is_err());
    }
}
