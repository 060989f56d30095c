//! Result rows to JSON, written straight into the batch buffer (no intermediate
//! `serde_json::Value`), beside the column layout of [`super::sql`]'s statements.
//! Lossless: bigint and exact decimals become strings (JSON numbers are doubles to most
//! consumers), binary becomes base64, date and time types RFC 3339 with exactly the
//! column's fractional digits, uniqueidentifier SQL Server's upper-case text form.

use base64::Engine as _;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tiberius::{ColumnData, FromSql, Row};

use super::catalog::{ColumnInfo, TableInfo};
use super::sql;
use super::SourceError;
pub use crate::envelope::write_str;
use crate::envelope::{BatchBuilder, ChangeHead, Op};

/// How a column's values are written, decided once from its SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// bit: `true`/`false`.
    Bool,
    /// tinyint, smallint, int: exact as JSON numbers.
    Int,
    /// bigint: a string, since JSON numbers round beyond 2^53.
    BigInt,
    /// decimal/numeric: a string with the column's scale.
    Decimal,
    /// money, selected as decimal(19,4).
    Money,
    /// smallmoney, selected as decimal(10,4).
    SmallMoney,
    /// real, float.
    Float,
    /// Any character type.
    String,
    /// Any binary type: base64.
    Binary,
    /// date: `YYYY-MM-DD`.
    Date,
    /// time(scale).
    Time(u8),
    /// datetime (3 digits), smalldatetime (0), datetime2(scale).
    DateTime(u8),
    /// datetimeoffset(scale).
    DateTimeOffset(u8),
    /// uniqueidentifier: upper-case text.
    Guid,
}

impl ValueKind {
    /// The kind for a `sys.types` name, or `None` for types without a lossless JSON
    /// form here (sql_variant, hierarchyid, geometry, geography, CLR types).
    pub fn from_type_name(type_name: &str, scale: u8) -> Option<Self> {
        Some(match type_name.to_ascii_lowercase().as_str() {
            "bit" => ValueKind::Bool,
            "tinyint" | "smallint" | "int" => ValueKind::Int,
            "bigint" => ValueKind::BigInt,
            "decimal" | "numeric" => ValueKind::Decimal,
            "money" => ValueKind::Money,
            "smallmoney" => ValueKind::SmallMoney,
            "real" | "float" => ValueKind::Float,
            "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "sysname" | "xml" => ValueKind::String,
            "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => ValueKind::Binary,
            "date" => ValueKind::Date,
            "time" => ValueKind::Time(scale.min(7)),
            "datetime" => ValueKind::DateTime(3),
            "smalldatetime" => ValueKind::DateTime(0),
            "datetime2" => ValueKind::DateTime(scale.min(7)),
            "datetimeoffset" => ValueKind::DateTimeOffset(scale.min(7)),
            "uniqueidentifier" => ValueKind::Guid,
            _ => return None,
        })
    }
}

/// A cell could not be converted (a type the catalog did not predict).
#[derive(Debug, thiserror::Error)]
#[error("column {column}: cannot encode {found} as {expected:?}")]
pub struct EncodeError {
    /// The column.
    pub column: String,
    /// What the catalog said it holds.
    pub expected: ValueKind,
    /// What tiberius delivered.
    pub found: &'static str,
}

fn variant_name(data: &ColumnData<'_>) -> &'static str {
    match data {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "string",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "binary",
        ColumnData::Numeric(_) => "numeric",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    }
}

/// Whether the cell is SQL NULL.
pub fn is_null(data: &ColumnData<'_>) -> bool {
    match data {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

/// Appends `v` as exactly `width` decimal digits, zero-padded (no allocation: this
/// runs for every date and time cell).
fn write_padded(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn write_fraction(out: &mut Vec<u8>, nanos: u32, digits: u8) {
    if digits == 0 {
        return;
    }
    let digits = u32::from(digits.min(9));
    out.push(b'.');
    write_padded(out, nanos.min(999_999_999) / 10u32.pow(9 - digits), digits as usize);
}

fn write_time(out: &mut Vec<u8>, t: NaiveTime, digits: u8) {
    write_padded(out, t.hour(), 2);
    out.push(b':');
    write_padded(out, t.minute(), 2);
    out.push(b':');
    write_padded(out, t.second(), 2);
    write_fraction(out, t.nanosecond(), digits);
}

fn write_date(out: &mut Vec<u8>, d: NaiveDate) {
    // SQL Server dates are years 1..=9999: always four digits.
    write_padded(out, d.year().unsigned_abs(), 4);
    out.push(b'-');
    write_padded(out, d.month(), 2);
    out.push(b'-');
    write_padded(out, d.day(), 2);
}

/// datetime stores 1/300 s; SQL Server shows it rounded to the millisecond
/// (.000, .003, .007), so round rather than truncate.
fn round_datetime_ms(dt: NaiveDateTime) -> NaiveDateTime {
    let ms = (dt.nanosecond() as i64 + 500_000) / 1_000_000;
    dt.with_nanosecond(0).unwrap_or(dt) + chrono::Duration::milliseconds(ms)
}

/// Appends one cell as JSON.
pub fn write_value(
    out: &mut Vec<u8>,
    column: &str,
    kind: ValueKind,
    data: &ColumnData<'static>,
) -> Result<(), EncodeError> {
    if is_null(data) {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    let mismatch = || EncodeError {
        column: column.to_string(),
        expected: kind,
        found: variant_name(data),
    };
    match (kind, data) {
        (_, ColumnData::Bit(Some(b))) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (
            ValueKind::BigInt | ValueKind::Decimal | ValueKind::Money | ValueKind::SmallMoney,
            ColumnData::I64(Some(v)),
        ) => {
            out.push(b'"');
            write_int(out, *v);
            out.push(b'"');
        }
        (_, ColumnData::U8(Some(v))) => write_int(out, i64::from(*v)),
        (_, ColumnData::I16(Some(v))) => write_int(out, i64::from(*v)),
        (_, ColumnData::I32(Some(v))) => write_int(out, i64::from(*v)),
        (_, ColumnData::I64(Some(v))) => write_int(out, *v),
        (ValueKind::Money | ValueKind::SmallMoney, ColumnData::F64(Some(v))) => {
            // Only if the cast was not applied; 4 digits is money's exact scale.
            write_str(out, &format!("{v:.4}"));
        }
        (_, ColumnData::F32(Some(v))) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        (_, ColumnData::F64(Some(v))) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        (_, ColumnData::Numeric(Some(n))) => write_str(out, &format_decimal(n.value(), n.scale())),
        (_, ColumnData::String(Some(s))) => write_str(out, s),
        (_, ColumnData::Xml(Some(x))) => write_str(out, &x.to_string()),
        (_, ColumnData::Binary(Some(b))) => {
            out.push(b'"');
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes());
            out.push(b'"');
        }
        (_, ColumnData::Guid(Some(g))) => {
            let mut buf = [0u8; 36];
            out.push(b'"');
            out.extend_from_slice(g.hyphenated().encode_upper(&mut buf).as_bytes());
            out.push(b'"');
        }
        (_, ColumnData::Date(Some(_))) => {
            let d = NaiveDate::from_sql(data).ok().flatten().ok_or_else(mismatch)?;
            out.push(b'"');
            write_date(out, d);
            out.push(b'"');
        }
        (_, ColumnData::Time(Some(_))) => {
            let t = NaiveTime::from_sql(data).ok().flatten().ok_or_else(mismatch)?;
            let digits = if let ValueKind::Time(s) = kind { s } else { 7 };
            out.push(b'"');
            write_time(out, t, digits);
            out.push(b'"');
        }
        (_, ColumnData::DateTime(Some(_)) | ColumnData::SmallDateTime(Some(_)) | ColumnData::DateTime2(Some(_))) => {
            let mut dt = NaiveDateTime::from_sql(data).ok().flatten().ok_or_else(mismatch)?;
            if matches!(data, ColumnData::DateTime(_)) {
                dt = round_datetime_ms(dt);
            }
            let digits = match kind {
                ValueKind::DateTime(s) => s,
                _ if matches!(data, ColumnData::DateTime(_)) => 3,
                _ if matches!(data, ColumnData::SmallDateTime(_)) => 0,
                _ => 7,
            };
            out.push(b'"');
            write_date(out, dt.date());
            out.push(b'T');
            write_time(out, dt.time(), digits);
            out.push(b'"');
        }
        (_, ColumnData::DateTimeOffset(Some(_))) => {
            let dt = DateTime::<FixedOffset>::from_sql(data)
                .ok()
                .flatten()
                .ok_or_else(mismatch)?;
            let digits = if let ValueKind::DateTimeOffset(s) = kind { s } else { 7 };
            let local = dt.naive_local();
            out.push(b'"');
            write_date(out, local.date());
            out.push(b'T');
            write_time(out, local.time(), digits);
            out.extend_from_slice(dt.format("%:z").to_string().as_bytes());
            out.push(b'"');
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `value / 10^scale` in plain decimal notation, exactly.
pub fn format_decimal(value: i128, scale: u8) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let mut out = String::with_capacity(digits.len() + 3);
    if negative {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        out.push_str(&digits[..digits.len() - scale]);
        out.push('.');
        out.push_str(&digits[digits.len() - scale..]);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// Writes `"name":value` members for `columns` and their `cells`, in order.
fn write_members(out: &mut Vec<u8>, columns: &[ColumnInfo], cells: &[ColumnData<'static>]) -> Result<(), SourceError> {
    for (j, (c, cell)) in columns.iter().zip(cells).enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_str(out, &c.name);
        out.push(b':');
        write_value(out, &c.name, c.kind, cell).map_err(|e| SourceError::Unexpected(e.to_string()))?;
    }
    Ok(())
}

/// Where a table's key sits in a [`sql::changes`] row, computed once per read.
pub struct ChangeLayout {
    key_offset: usize,
    /// Positions of the key columns among the published columns.
    key_in_row: Vec<usize>,
    /// The mask columns, in the order their flags are packed.
    mask: Vec<ColumnInfo>,
}

impl ChangeLayout {
    /// The layout of `table`'s change rows.
    pub fn new(table: &TableInfo) -> Self {
        Self {
            key_offset: sql::changes_key_offset(table),
            key_in_row: table
                .key
                .iter()
                .filter_map(|k| table.columns.iter().position(|c| c.id == k.id))
                .collect(),
            mask: table.mask_columns().cloned().collect(),
        }
    }
}

/// Appends one `CHANGETABLE` row (layout of [`sql::changes`]) to the batch. Returns
/// its version and its key as JSON members (`"Id":7`), the keyset cursor to continue
/// after it.
pub fn push_change_row(
    builder: &mut BatchBuilder,
    table: &TableInfo,
    layout: &ChangeLayout,
    row: Row,
) -> Result<(i64, String), SourceError> {
    let version: Option<i64> = row.try_get(0)?;
    let creation_version: Option<i64> = row.try_get(1)?;
    let op_text: Option<&str> = row.try_get(2)?;
    let op = op_text
        .and_then(Op::from_sys_change_operation)
        .ok_or_else(|| SourceError::Unexpected(format!("unknown SYS_CHANGE_OPERATION {op_text:?}")))?;
    let context: Option<Vec<u8>> = row.try_get::<&[u8], _>(3)?.map(<[u8]>::to_vec);
    let mut changed: Option<Vec<&str>> = None;
    if table.track_columns_updated && op == Op::Update {
        // Packed in-mask flags (see sql::changes); NULL means no per-column mask.
        let mut names = Vec::new();
        let mut any_mask = false;
        for (chunk_index, chunk) in layout.mask.chunks(sql::MASK_BITS).enumerate() {
            if let Some(bits) = row.try_get::<i32, _>(4 + chunk_index)? {
                any_mask = true;
                for (bit, c) in chunk.iter().enumerate() {
                    if bits & (1 << bit) != 0 {
                        names.push(c.name.as_str());
                    }
                }
            }
        }
        if any_mask {
            changed = Some(names);
        }
    }
    let cells: Vec<ColumnData<'static>> = row.into_iter().collect();
    let key_cells = &cells[layout.key_offset..layout.key_offset + table.key.len()];
    let row_cells = &cells[layout.key_offset + table.key.len()..];
    // With the LEFT JOIN, a row that is gone has NULL in every key column.
    let row_present = op != Op::Delete
        && (layout.key_in_row.is_empty() || layout.key_in_row.iter().any(|&p| !is_null(&row_cells[p])));
    let head = ChangeHead {
        op,
        version,
        creation_version,
        changed_columns: changed.as_deref(),
        context: context.as_deref(),
    };
    let mut key = Vec::with_capacity(32);
    write_members(&mut key, &table.key, key_cells)?;
    builder.push_change(
        &head,
        |out| {
            out.extend_from_slice(&key);
            Ok(())
        },
        row_present.then_some(|out: &mut Vec<u8>| write_members(out, &table.columns, row_cells)),
    )?;
    let key = String::from_utf8(key).map_err(|e| SourceError::Unexpected(e.to_string()))?;
    Ok((version.unwrap_or_default(), key))
}

/// A key value bound as a parameter; the keyset predicates cast it to the column's
/// declared type, so text stands for every type whose JSON form is a string.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyParam {
    /// tinyint, smallint, int, bigint.
    Int(i64),
    /// bit.
    Bool(bool),
    /// real, float.
    Float(f64),
    /// binary types (base64 in JSON).
    Bytes(Vec<u8>),
    /// decimal, money, character, date and time types, uniqueidentifier.
    Text(String),
}

impl KeyParam {
    /// Binds the value as the next parameter of `query`.
    pub fn bind(&self, query: &mut tiberius::Query<'_>) {
        match self {
            KeyParam::Int(v) => query.bind(*v),
            KeyParam::Bool(v) => query.bind(*v),
            KeyParam::Float(v) => query.bind(*v),
            KeyParam::Bytes(v) => query.bind(v.clone()),
            KeyParam::Text(v) => query.bind(v.clone()),
        }
    }
}

/// The parameters for a key written by [`push_change_row`] (JSON members), in key
/// order: the inverse of its encoding.
pub fn key_params(table: &TableInfo, members: &str) -> Result<Vec<KeyParam>, SourceError> {
    let bad = |why: &str| SourceError::Unexpected(format!("stored key {{{members}}} of {}: {why}", table.name));
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&format!("{{{members}}}")).map_err(|e| bad(&e.to_string()))?;
    let mut out = Vec::with_capacity(table.key.len());
    for k in &table.key {
        let v = object
            .get(&k.name)
            .ok_or_else(|| bad(&format!("no column {}", k.name)))?;
        let p = match (k.kind, v) {
            (ValueKind::Int, serde_json::Value::Number(n)) => {
                KeyParam::Int(n.as_i64().ok_or_else(|| bad("not an integer"))?)
            }
            (ValueKind::BigInt, serde_json::Value::String(s)) => {
                KeyParam::Int(s.parse().map_err(|_| bad("not a bigint"))?)
            }
            (ValueKind::Bool, serde_json::Value::Bool(b)) => KeyParam::Bool(*b),
            (ValueKind::Float, serde_json::Value::Number(n)) => {
                KeyParam::Float(n.as_f64().ok_or_else(|| bad("not a number"))?)
            }
            (ValueKind::Binary, serde_json::Value::String(s)) => KeyParam::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| bad("not base64"))?,
            ),
            (_, serde_json::Value::String(s)) => KeyParam::Text(s.clone()),
            _ => return Err(bad(&format!("unexpected value for {}", k.name))),
        };
        out.push(p);
    }
    Ok(out)
}

/// Appends one snapshot row (layout of [`sql::snapshot_chunk`]: the key, then the
/// published columns) as a `read` at `version`; returns its key cells, the keyset
/// cursor of the next chunk.
pub fn push_snapshot_row(
    builder: &mut BatchBuilder,
    table: &TableInfo,
    version: i64,
    row: Row,
) -> Result<Vec<ColumnData<'static>>, SourceError> {
    let cells: Vec<ColumnData<'static>> = row.into_iter().collect();
    let key_len = table.key.len();
    let head = ChangeHead {
        op: Op::Read,
        version: Some(version),
        creation_version: None,
        changed_columns: None,
        context: None,
    };
    builder.push_change(
        &head,
        |out| write_members(out, &table.key, &cells[..key_len]),
        Some(|out: &mut Vec<u8>| write_members(out, &table.columns, &cells[key_len..])),
    )?;
    Ok(cells[..key_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(kind: ValueKind, data: ColumnData<'static>) -> String {
        let mut out = Vec::new();
        write_value(&mut out, "c", kind, &data).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(
            format_decimal(170141183460469231731687303715884105727, 0),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(format_decimal(0, 4), "0.0000");
    }

    #[test]
    fn bigint_is_a_string_and_int_a_number() {
        assert_eq!(
            enc(ValueKind::BigInt, ColumnData::I64(Some(9007199254740993))),
            "\"9007199254740993\""
        );
        assert_eq!(enc(ValueKind::Int, ColumnData::I32(Some(-7))), "-7");
        assert_eq!(enc(ValueKind::Int, ColumnData::I32(None)), "null");
    }

    #[test]
    fn guid_is_upper_case_and_binary_base64() {
        let g = uuid::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        assert_eq!(
            enc(ValueKind::Guid, ColumnData::Guid(Some(g))),
            "\"6F9619FF-8B86-D011-B42D-00C04FC964FF\""
        );
        assert_eq!(
            enc(ValueKind::Binary, ColumnData::Binary(Some(vec![0, 1, 2, 255].into()))),
            "\"AAEC/w==\""
        );
    }

    #[test]
    fn dates_and_times_keep_the_columns_digits() {
        let d = NaiveDate::from_ymd_opt(7, 3, 9).unwrap();
        let t = NaiveTime::from_hms_nano_opt(8, 5, 3, 120_000_000).unwrap();
        let mut out = Vec::new();
        write_date(&mut out, d);
        out.push(b'T');
        write_time(&mut out, t, 3);
        assert_eq!(String::from_utf8(out).unwrap(), "0007-03-09T08:05:03.120");
        let mut out = Vec::new();
        write_time(&mut out, t, 0);
        assert_eq!(String::from_utf8(out).unwrap(), "08:05:03");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            enc(ValueKind::String, ColumnData::String(Some("a\"b\n".into()))),
            r#""a\"b\n""#
        );
    }
}
