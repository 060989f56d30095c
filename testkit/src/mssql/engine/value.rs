//! Values as SQL Server compares, orders and converts them: strings under the default
//! collation's rules (`collation`: case-insensitive, accent-sensitive, trailing spaces
//! ignored, varchar and nvarchar sorting differently), numeric comparisons across
//! integer/decimal/float families, and the implicit conversions an INSERT or a
//! comparison performs.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::collation::{self, Rules};
use super::error;
use crate::mssql::types::{SqlError, SqlType, Value};

/// A stored row: immutable and shared, so snapshots and result sets copy pointers.
pub type Row = Arc<[Value]>;

/// A primary-key value (or a heap's hidden row id), ordered as SQL Server orders
/// the key columns, so a table stored under it iterates in clustered-index order.
/// The second field has bit `i` set when key column `i` is `nchar`/`nvarchar`, whose
/// strings sort by the collation's Unicode rules (varchar ones by its non-Unicode
/// rules). Two keys compare under the union of their bits, so a probe built from bare
/// values ([`Key::new`]) finds and ranges over stored keys in their own order; equality
/// is the same under both rule sets.
#[derive(Debug, Clone)]
pub struct Key(pub Arc<[Value]>, u32);

impl Key {
    /// Builds a key (or a probe) from its column values, strings under the
    /// non-Unicode rules unless compared with a stored key.
    pub fn new(values: Vec<Value>) -> Self {
        Self(values.into(), 0)
    }

    /// Builds a key whose columns flagged in `unicode` sort by the Unicode rules.
    pub fn with_rules(values: Vec<Value>, unicode: u32) -> Self {
        Self(values.into(), unicode)
    }

    /// Renders the key as SQL Server does in Msg 2627 (`1, N'x'` → `1, x`).
    pub fn display(&self) -> String {
        self.0.iter().map(display_value).collect::<Vec<_>>().join(", ")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        let unicode = self.1 | other.1;
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let rules = if i < 32 && unicode & (1 << i) != 0 {
                Rules::Unicode
            } else {
                Rules::NonUnicode
            };
            let o = sort_cmp_as(a, b, rules);
            if o != Ordering::Equal {
                return o;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

/// Renders a value for messages.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bit(b) => u8::from(*b).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Decimal { value, scale } => decimal_to_string(*value, *scale),
        Value::Money(m) => decimal_to_string(i128::from(*m), 4),
        Value::Float(f) => f.to_string(),
        Value::String(s) => s.clone(),
        Value::Binary(b) => {
            let mut s = String::from("0x");
            for byte in b {
                s.push_str(&format!("{byte:02X}"));
            }
            s
        }
        Value::Date(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::DateTime(d) => d.to_string(),
        Value::DateTimeOffset(d) => d.to_string(),
        Value::Guid(g) => g.to_string().to_uppercase(),
    }
}

fn decimal_to_string(value: i128, scale: u8) -> String {
    if scale == 0 {
        return value.to_string();
    }
    let neg = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int_part, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int_part}.{frac}", if neg { "-" } else { "" })
}

/// A numeric view of a value, for comparisons across integer/decimal/float.
enum Num {
    Exact(i128, u8),
    Approx(f64),
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Bit(b) => Some(Num::Exact(i128::from(*b), 0)),
        Value::Int(i) => Some(Num::Exact(i128::from(*i), 0)),
        Value::Decimal { value, scale } => Some(Num::Exact(*value, *scale)),
        Value::Money(m) => Some(Num::Exact(i128::from(*m), 4)),
        Value::Float(f) => Some(Num::Approx(*f)),
        _ => None,
    }
}

fn num_to_f64(n: &Num) -> f64 {
    match n {
        Num::Exact(v, s) => *v as f64 / 10f64.powi(i32::from(*s)),
        Num::Approx(f) => *f,
    }
}

fn cmp_num(a: &Num, b: &Num) -> Ordering {
    match (a, b) {
        (Num::Exact(x, sx), Num::Exact(y, sy)) => {
            let s = (*sx).max(*sy);
            let xs = x.saturating_mul(10i128.pow(u32::from(s - sx)));
            let ys = y.saturating_mul(10i128.pow(u32::from(s - sy)));
            xs.cmp(&ys)
        }
        _ => num_to_f64(a).total_cmp(&num_to_f64(b)),
    }
}

/// SQL comparison: `None` when either side is NULL (UNKNOWN), an error when the
/// families cannot meet (e.g. a non-numeric string against an int). Strings compare
/// under the collation's `rules` (see [`collation::comparison_rules`]).
pub fn compare(a: &Value, b: &Value, rules: Rules) -> Result<Option<Ordering>, SqlError> {
    if matches!(a, Value::Null) || matches!(b, Value::Null) {
        return Ok(None);
    }
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(Some(cmp_num(&x, &y)));
    }
    Ok(Some(match (a, b) {
        (Value::String(x), Value::String(y)) => collation::compare(x, y, rules),
        (Value::Binary(x), Value::Binary(y)) => {
            let xt = trim_zeros(x);
            let yt = trim_zeros(y);
            xt.cmp(yt)
        }
        (Value::String(s), other) | (other, Value::String(s)) if as_num(other).is_some() => {
            let converted = convert_string_to_number(s, other)?;
            let o = cmp_num(&converted, &as_num(other).unwrap_or(Num::Exact(0, 0)));
            if matches!(a, Value::String(_)) {
                o
            } else {
                o.reverse()
            }
        }
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) => x.cmp(y),
        (Value::Date(x), Value::DateTime(y)) => x.and_time(NaiveTime::MIN).cmp(y),
        (Value::DateTime(x), Value::Date(y)) => x.cmp(&y.and_time(NaiveTime::MIN)),
        (Value::DateTimeOffset(x), Value::DateTimeOffset(y)) => x.cmp(y),
        (Value::Guid(x), Value::Guid(y)) => x.cmp(y),
        (Value::String(s), Value::Guid(g)) | (Value::Guid(g), Value::String(s)) => {
            let parsed =
                uuid::Uuid::parse_str(s.trim()).map_err(|_| error::conversion_failed_generic("uniqueidentifier"))?;
            let o = parsed.cmp(g);
            if matches!(a, Value::String(_)) {
                o
            } else {
                o.reverse()
            }
        }
        (Value::String(s), d @ (Value::Date(_) | Value::DateTime(_)))
        | (d @ (Value::Date(_) | Value::DateTime(_)), Value::String(s)) => {
            let parsed = parse_datetime(s).ok_or_else(|| error::conversion_failed_generic("datetime"))?;
            let other = match d {
                Value::Date(x) => x.and_time(NaiveTime::MIN),
                Value::DateTime(x) => *x,
                _ => parsed,
            };
            let o = parsed.cmp(&other);
            if matches!(a, Value::String(_)) {
                o
            } else {
                o.reverse()
            }
        }
        _ => return Err(error::operand_clash(family_name(a), family_name(b))),
    }))
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1] == 0 {
        end -= 1;
    }
    &b[..end]
}

fn convert_string_to_number(s: &str, other: &Value) -> Result<Num, SqlError> {
    let t = s.trim();
    match other {
        Value::Float(_) => t
            .parse::<f64>()
            .map(Num::Approx)
            .map_err(|_| error::conversion_failed("varchar", s, "float")),
        Value::Decimal { .. } | Value::Money(_) => parse_decimal(t)
            .map(|(v, sc)| Num::Exact(v, sc))
            .ok_or_else(|| error::conversion_failed("varchar", s, "numeric")),
        _ => t
            .parse::<i64>()
            .map(|i| Num::Exact(i128::from(i), 0))
            .map_err(|_| error::conversion_failed("varchar", s, "int")),
    }
}

/// A short family name for Msg 206.
pub fn family_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bit(_) => "bit",
        Value::Int(_) => "int",
        Value::Decimal { .. } => "numeric",
        Value::Money(_) => "money",
        Value::Float(_) => "float",
        Value::String(_) => "nvarchar",
        Value::Binary(_) => "varbinary",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::DateTime(_) => "datetime2",
        Value::DateTimeOffset(_) => "datetimeoffset",
        Value::Guid(_) => "uniqueidentifier",
    }
}

/// Total order for sorting and keys: NULL first (as SQL Server sorts ascending),
/// then by [`compare`]; incomparable families fall back to a fixed family order.
/// Strings sort under the given collation rules (the sorted expression's: Unicode
/// for nchar/nvarchar, non-Unicode for char/varchar).
pub fn sort_cmp_as(a: &Value, b: &Value, rules: Rules) -> Ordering {
    match (a, b) {
        // Fast paths for the common key types.
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => collation::compare(x, y, rules),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => match compare(a, b, rules) {
            Ok(Some(o)) => o,
            _ => family_rank(a).cmp(&family_rank(b)),
        },
    }
}

fn family_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bit(_) | Value::Int(_) | Value::Decimal { .. } | Value::Money(_) | Value::Float(_) => 1,
        Value::String(_) => 2,
        Value::Binary(_) => 3,
        Value::Date(_) | Value::DateTime(_) => 4,
        Value::Time(_) => 5,
        Value::DateTimeOffset(_) => 6,
        Value::Guid(_) => 7,
    }
}

/// Parses `-12.345` into (unscaled value, scale).
pub fn parse_decimal(s: &str) -> Option<(i128, u8)> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    if !int_part.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int_part}{frac}");
    let v: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let scale = u8::try_from(frac.len()).ok()?;
    Some((if neg { -v } else { v }, scale))
}

/// Parses the date/time literal forms SQL Server accepts most often.
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let t = s.trim();
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y%m%d %H:%M:%S%.f",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(d);
        }
    }
    for fmt in ["%Y-%m-%d", "%Y%m%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
            return Some(d.and_time(NaiveTime::MIN));
        }
    }
    None
}

/// The SQL Server type name of a declared type, as `sys.types.name` spells it.
pub fn type_name(ty: &SqlType) -> &'static str {
    match ty {
        SqlType::Bit => "bit",
        SqlType::TinyInt => "tinyint",
        SqlType::SmallInt => "smallint",
        SqlType::Int => "int",
        SqlType::BigInt => "bigint",
        SqlType::Decimal { .. } => "decimal",
        SqlType::Money => "money",
        SqlType::Real => "real",
        SqlType::Float => "float",
        SqlType::Char(_) => "char",
        SqlType::VarChar(_) => "varchar",
        SqlType::NChar(_) => "nchar",
        SqlType::NVarChar(_) => "nvarchar",
        SqlType::Binary(_) => "binary",
        SqlType::VarBinary(_) => "varbinary",
        SqlType::Date => "date",
        SqlType::Time(_) => "time",
        SqlType::DateTime => "datetime",
        SqlType::DateTime2(_) => "datetime2",
        SqlType::DateTimeOffset(_) => "datetimeoffset",
        SqlType::UniqueIdentifier => "uniqueidentifier",
    }
}

/// The natural type of a value of unknown origin (a parameter or a literal).
pub fn value_type(v: &Value) -> SqlType {
    match v {
        Value::Null => SqlType::Int,
        Value::Bit(_) => SqlType::Bit,
        Value::Int(i) => {
            if i32::try_from(*i).is_ok() {
                SqlType::Int
            } else {
                SqlType::BigInt
            }
        }
        Value::Decimal { scale, .. } => SqlType::Decimal {
            precision: 38,
            scale: *scale,
        },
        Value::Money(_) => SqlType::Money,
        Value::Float(_) => SqlType::Float,
        Value::String(_) => SqlType::NVarChar(Some(4000)),
        Value::Binary(_) => SqlType::VarBinary(Some(8000)),
        Value::Date(_) => SqlType::Date,
        Value::Time(_) => SqlType::Time(7),
        Value::DateTime(_) => SqlType::DateTime2(7),
        Value::DateTimeOffset(_) => SqlType::DateTimeOffset(7),
        Value::Guid(_) => SqlType::UniqueIdentifier,
    }
}

fn int_range(ty: &SqlType) -> Option<(i64, i64, &'static str)> {
    match ty {
        SqlType::TinyInt => Some((0, 255, "tinyint")),
        SqlType::SmallInt => Some((i64::from(i16::MIN), i64::from(i16::MAX), "smallint")),
        SqlType::Int => Some((i64::from(i32::MIN), i64::from(i32::MAX), "int")),
        SqlType::BigInt => Some((i64::MIN, i64::MAX, "bigint")),
        _ => None,
    }
}

/// Where a conversion happens, for the messages that name a table and column.
pub struct Target<'a> {
    /// `Shop.dbo.Orders`
    pub table: &'a str,
    pub column: &'a str,
}

/// Converts a value to a column's type as an INSERT/UPDATE does, with SQL Server's
/// errors for overflow, truncation and failed conversions.
pub fn coerce(v: Value, ty: &SqlType, target: &Target<'_>) -> Result<Value, SqlError> {
    if matches!(v, Value::Null) {
        return Ok(Value::Null);
    }
    let tyname = type_name(ty);
    match ty {
        SqlType::Bit => match v {
            Value::Bit(b) => Ok(Value::Bit(b)),
            Value::Int(i) => Ok(Value::Bit(i != 0)),
            Value::Decimal { value, .. } => Ok(Value::Bit(value != 0)),
            Value::Float(f) => Ok(Value::Bit(f != 0.0)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bit(true)),
                "false" | "0" => Ok(Value::Bit(false)),
                _ => Err(error::conversion_failed("varchar", &s, "bit")),
            },
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let (lo, hi, name) = int_range(ty).unwrap_or((i64::MIN, i64::MAX, "bigint"));
            let i: i64 = match v {
                Value::Int(i) => i,
                Value::Bit(b) => i64::from(b),
                Value::Decimal { value, scale } => {
                    let t = value / 10i128.pow(u32::from(scale));
                    i64::try_from(t).map_err(|_| error::arithmetic_overflow(name))?
                }
                Value::Money(m) => m / 10_000,
                Value::Float(f) => {
                    if f.is_finite() && f.trunc() >= i64::MIN as f64 && f.trunc() <= i64::MAX as f64 {
                        f.trunc() as i64
                    } else {
                        return Err(error::arithmetic_overflow(name));
                    }
                }
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| error::conversion_failed("varchar", &s, name))?,
                other => return Err(error::operand_clash(family_name(&other), name)),
            };
            if i < lo || i > hi {
                return Err(if matches!(ty, SqlType::TinyInt | SqlType::SmallInt) {
                    error::integer_overflow(name, i)
                } else {
                    error::arithmetic_overflow(name)
                });
            }
            Ok(Value::Int(i))
        }
        SqlType::Decimal { precision, scale } => {
            let (value, s) = match v {
                Value::Int(i) => (i128::from(i), 0),
                Value::Bit(b) => (i128::from(b), 0),
                Value::Decimal { value, scale } => (value, scale),
                Value::Money(m) => (i128::from(m), 4),
                Value::Float(f) => {
                    let scaled = (f * 10f64.powi(i32::from(*scale))).round();
                    (scaled as i128, *scale)
                }
                Value::String(s) => {
                    parse_decimal(&s).ok_or_else(|| error::conversion_failed("varchar", &s, "numeric"))?
                }
                other => return Err(error::operand_clash(family_name(&other), tyname)),
            };
            let from = if s == 0 { "int" } else { "numeric" };
            let value = rescale(value, s, *scale);
            if value.unsigned_abs() >= 10u128.pow(u32::from(*precision)) {
                return Err(error::arithmetic_overflow_from(from, "numeric"));
            }
            Ok(Value::Decimal { value, scale: *scale })
        }
        SqlType::Money => {
            let (value, s) = match v {
                Value::Int(i) => (i128::from(i), 0),
                Value::Bit(b) => (i128::from(b), 0),
                Value::Decimal { value, scale } => (value, scale),
                Value::Money(m) => (i128::from(m), 4),
                Value::Float(f) => ((f * 10_000.0).round() as i128, 4),
                Value::String(s) => {
                    parse_decimal(&s).ok_or_else(|| error::conversion_failed("varchar", &s, "money"))?
                }
                other => return Err(error::operand_clash(family_name(&other), tyname)),
            };
            let m = rescale(value, s, 4);
            i64::try_from(m)
                .map(Value::Money)
                .map_err(|_| error::arithmetic_overflow("money"))
        }
        SqlType::Real | SqlType::Float => match v {
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| error::conversion_failed("varchar", &s, "float")),
            other => match as_num(&other) {
                Some(n) => {
                    let f = num_to_f64(&n);
                    Ok(Value::Float(if matches!(ty, SqlType::Real) {
                        f64::from(f as f32)
                    } else {
                        f
                    }))
                }
                None => Err(error::operand_clash(family_name(&other), tyname)),
            },
        },
        SqlType::Char(n) | SqlType::NChar(n) => {
            let s = to_text(v, tyname)?;
            let len = s.chars().count();
            let n = usize::from(*n);
            if len > n && s.trim_end_matches(' ').chars().count() > n {
                return Err(error::truncation(
                    target.table,
                    target.column,
                    &s.chars().take(n).collect::<String>(),
                ));
            }
            let mut s: String = s.chars().take(n).collect();
            let pad = n - s.chars().count();
            s.push_str(&" ".repeat(pad));
            Ok(Value::String(s))
        }
        SqlType::VarChar(n) | SqlType::NVarChar(n) => {
            let s = to_text(v, tyname)?;
            if let Some(n) = n {
                let n = usize::from(*n);
                if s.chars().count() > n {
                    if s.trim_end_matches(' ').chars().count() > n {
                        return Err(error::truncation(
                            target.table,
                            target.column,
                            &s.chars().take(n).collect::<String>(),
                        ));
                    }
                    return Ok(Value::String(s.chars().take(n).collect()));
                }
            }
            Ok(Value::String(s))
        }
        SqlType::Binary(n) => {
            let mut b = to_bytes(v, tyname)?;
            let n = usize::from(*n);
            if b.len() > n {
                return Err(error::truncation(target.table, target.column, ""));
            }
            b.resize(n, 0);
            Ok(Value::Binary(b))
        }
        SqlType::VarBinary(n) => {
            let b = to_bytes(v, tyname)?;
            if let Some(n) = n {
                if b.len() > usize::from(*n) {
                    return Err(error::truncation(target.table, target.column, ""));
                }
            }
            Ok(Value::Binary(b))
        }
        SqlType::Date => match v {
            Value::Date(d) => Ok(Value::Date(d)),
            Value::DateTime(d) => Ok(Value::Date(d.date())),
            Value::DateTimeOffset(d) => Ok(Value::Date(d.naive_local().date())),
            Value::String(s) => parse_datetime(&s)
                .map(|d| Value::Date(d.date()))
                .ok_or_else(|| error::conversion_failed_generic("date")),
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
        SqlType::Time(_) => match v {
            Value::Time(t) => Ok(Value::Time(t)),
            Value::DateTime(d) => Ok(Value::Time(d.time())),
            Value::String(s) => NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
                .map(Value::Time)
                .map_err(|_| error::conversion_failed_generic("time")),
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
        SqlType::DateTime | SqlType::DateTime2(_) => match v {
            Value::DateTime(d) => Ok(Value::DateTime(d)),
            Value::Date(d) => Ok(Value::DateTime(d.and_time(NaiveTime::MIN))),
            Value::DateTimeOffset(d) => Ok(Value::DateTime(d.naive_local())),
            Value::String(s) => parse_datetime(&s)
                .map(Value::DateTime)
                .ok_or_else(|| error::conversion_failed_generic("datetime")),
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
        SqlType::DateTimeOffset(_) => match v {
            Value::DateTimeOffset(d) => Ok(Value::DateTimeOffset(d)),
            Value::DateTime(d) => Ok(Value::DateTimeOffset(d.and_utc().fixed_offset())),
            Value::String(s) => chrono::DateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f %:z")
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(s.trim()))
                .map(Value::DateTimeOffset)
                .or_else(|_| {
                    parse_datetime(&s)
                        .map(|d| Value::DateTimeOffset(d.and_utc().fixed_offset()))
                        .ok_or_else(|| error::conversion_failed_generic("datetimeoffset"))
                }),
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
        SqlType::UniqueIdentifier => match v {
            Value::Guid(g) => Ok(Value::Guid(g)),
            Value::String(s) => uuid::Uuid::parse_str(s.trim())
                .map(Value::Guid)
                .map_err(|_| error::conversion_failed_generic("uniqueidentifier")),
            other => Err(error::operand_clash(family_name(&other), tyname)),
        },
    }
}

fn rescale(value: i128, from: u8, to: u8) -> i128 {
    if to >= from {
        value.saturating_mul(10i128.pow(u32::from(to - from)))
    } else {
        // SQL Server rounds half away from zero when lowering the scale.
        let div = 10i128.pow(u32::from(from - to));
        let q = value / div;
        let r = value % div;
        if r.abs() * 2 >= div {
            q + value.signum()
        } else {
            q
        }
    }
}

fn to_text(v: Value, target: &str) -> Result<String, SqlError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Binary(_) => Err(error::implicit_conversion("varbinary", target)),
        other => Ok(display_value(&other)),
    }
}

fn to_bytes(v: Value, target: &str) -> Result<Vec<u8>, SqlError> {
    match v {
        Value::Binary(b) => Ok(b),
        Value::Guid(g) => Ok(g.as_bytes().to_vec()),
        Value::Int(i) => Ok(i32::try_from(i)
            .map(|x| x.to_be_bytes().to_vec())
            .unwrap_or_else(|_| i.to_be_bytes().to_vec())),
        other => Err(error::implicit_conversion(family_name(&other), target)),
    }
}

/// Whether a value already has the family its column type promises the wire layer.
pub fn fits_family(v: &Value, ty: &SqlType) -> bool {
    match v {
        Value::Null => true,
        Value::Bit(_) => matches!(ty, SqlType::Bit),
        Value::Int(_) => matches!(
            ty,
            SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt
        ),
        Value::Decimal { scale, .. } => {
            matches!(ty, SqlType::Decimal { scale: s, .. } if s == scale)
        }
        Value::Money(_) => matches!(ty, SqlType::Money),
        Value::Float(_) => matches!(ty, SqlType::Float | SqlType::Real),
        Value::String(_) => matches!(
            ty,
            SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_)
        ),
        Value::Binary(_) => matches!(ty, SqlType::Binary(_) | SqlType::VarBinary(_)),
        Value::Date(_) => matches!(ty, SqlType::Date),
        Value::Time(_) => matches!(ty, SqlType::Time(_)),
        Value::DateTime(_) => matches!(ty, SqlType::DateTime | SqlType::DateTime2(_)),
        Value::DateTimeOffset(_) => matches!(ty, SqlType::DateTimeOffset(_)),
        Value::Guid(_) => matches!(ty, SqlType::UniqueIdentifier),
    }
}

/// Converts a result value to its column's type when its family differs (CASE
/// branches, ISNULL, UNION ALL columns of mixed types), as SQL Server does by data
/// type precedence. Lengths are not enforced here.
pub fn conform(v: Value, ty: &SqlType) -> Result<Value, SqlError> {
    if fits_family(&v, ty) {
        return Ok(v);
    }
    let relaxed = match ty {
        SqlType::Char(_) | SqlType::NChar(_) | SqlType::VarChar(_) => SqlType::VarChar(None),
        SqlType::NVarChar(_) => SqlType::NVarChar(None),
        SqlType::Binary(_) | SqlType::VarBinary(_) => SqlType::VarBinary(None),
        other => other.clone(),
    };
    coerce(v, &relaxed, &Target { table: "", column: "" })
}
