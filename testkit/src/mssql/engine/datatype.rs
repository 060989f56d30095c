//! SQL Server's data types as the catalog describes them: parsing a declared type
//! name, and the `sys.types` / `sys.columns` facts (type ids, max_length in bytes,
//! precision, scale) that the sidecar's schema discovery reads.

use super::error;
use crate::mssql::types::{SqlError, SqlType};

/// Parses `name(args)` into a type; `None` args stand for `max`.
pub fn parse_type(name: &str, args: &[Option<u32>]) -> Result<SqlType, SqlError> {
    let lower = name.to_ascii_lowercase();
    let arg = |i: usize| args.get(i).copied();
    let len = |default: u16, max_ok: bool, limit: u32| -> Result<Option<u16>, SqlError> {
        match arg(0) {
            None => Ok(Some(default)),
            Some(None) if max_ok => Ok(None),
            Some(None) => Err(SqlError::new(102, 15, "Incorrect syntax near 'max'.")),
            Some(Some(n)) if n >= 1 && n <= limit => Ok(Some(n as u16)),
            Some(Some(n)) => Err(SqlError::new(
                131,
                15,
                format!("The size ({n}) given to the type '{lower}' exceeds the maximum allowed for any data type ({limit})."),
            )),
        }
    };
    let scale_arg = |default: u8| -> Result<u8, SqlError> {
        match arg(0) {
            None => Ok(default),
            Some(Some(s)) if s <= 7 => Ok(s as u8),
            _ => Err(SqlError::new(
                1002,
                16,
                format!("Line 1: Specified scale {} is invalid.", arg(0).flatten().unwrap_or(0)),
            )),
        }
    };
    Ok(match lower.as_str() {
        "bit" => SqlType::Bit,
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "int" | "integer" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "decimal" | "numeric" | "dec" => {
            let p = arg(0).flatten().unwrap_or(18);
            let s = arg(1).flatten().unwrap_or(0);
            if !(1..=38).contains(&p) || s > p {
                return Err(SqlError::new(
                    2750,
                    16,
                    format!("Column or parameter #1: Specified column precision {p} is greater than the maximum precision of 38."),
                ));
            }
            SqlType::Decimal {
                precision: p as u8,
                scale: s as u8,
            }
        }
        "money" => SqlType::Money,
        // Stored and sent as money; the catalog reports the declared type.
        "smallmoney" => SqlType::Money,
        "real" => SqlType::Real,
        "float" => SqlType::Float,
        "char" => SqlType::Char(len(1, false, 8000)?.unwrap_or(1)),
        "varchar" => SqlType::VarChar(len(1, true, 8000)?),
        "nchar" => SqlType::NChar(len(1, false, 4000)?.unwrap_or(1)),
        "nvarchar" => SqlType::NVarChar(len(1, true, 4000)?),
        "sysname" => SqlType::NVarChar(Some(128)),
        "binary" => SqlType::Binary(len(1, false, 8000)?.unwrap_or(1)),
        "varbinary" => SqlType::VarBinary(len(1, true, 8000)?),
        "date" => SqlType::Date,
        "time" => SqlType::Time(scale_arg(7)?),
        "datetime" => SqlType::DateTime,
        // Stored and sent as datetime (rounded to the minute); the catalog reports
        // the declared type.
        "smalldatetime" => SqlType::DateTime,
        "datetime2" => SqlType::DateTime2(scale_arg(7)?),
        "datetimeoffset" => SqlType::DateTimeOffset(scale_arg(7)?),
        "uniqueidentifier" => SqlType::UniqueIdentifier,
        _ => return Err(error::unknown_type("1", name)),
    })
}

/// `system_type_id` of a type (also its `user_type_id`, these being system types).
pub fn type_id(ty: &SqlType) -> i64 {
    match ty {
        SqlType::Bit => 104,
        SqlType::TinyInt => 48,
        SqlType::SmallInt => 52,
        SqlType::Int => 56,
        SqlType::BigInt => 127,
        SqlType::Decimal { .. } => 106,
        SqlType::Money => 60,
        SqlType::Real => 59,
        SqlType::Float => 62,
        SqlType::Char(_) => 175,
        SqlType::VarChar(_) => 167,
        SqlType::NChar(_) => 239,
        SqlType::NVarChar(_) => 231,
        SqlType::Binary(_) => 173,
        SqlType::VarBinary(_) => 165,
        SqlType::Date => 40,
        SqlType::Time(_) => 41,
        SqlType::DateTime => 61,
        SqlType::DateTime2(_) => 42,
        SqlType::DateTimeOffset(_) => 43,
        SqlType::UniqueIdentifier => 36,
    }
}

/// `sys.columns.max_length`: bytes; -1 for `(max)`; `nvarchar(n)` is `2n`.
pub fn max_length(ty: &SqlType) -> i64 {
    match ty {
        SqlType::Bit | SqlType::TinyInt => 1,
        SqlType::SmallInt => 2,
        SqlType::Int | SqlType::Real => 4,
        SqlType::BigInt | SqlType::Money | SqlType::Float | SqlType::DateTime => 8,
        SqlType::Decimal { precision, .. } => match precision {
            1..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        },
        SqlType::Char(n) | SqlType::Binary(n) => i64::from(*n),
        SqlType::NChar(n) => 2 * i64::from(*n),
        SqlType::VarChar(n) | SqlType::VarBinary(n) => n.map_or(-1, i64::from),
        SqlType::NVarChar(n) => n.map_or(-1, |n| 2 * i64::from(n)),
        SqlType::Date => 3,
        SqlType::Time(s) => match s {
            0..=2 => 3,
            3..=4 => 4,
            _ => 5,
        },
        SqlType::DateTime2(s) => match s {
            0..=2 => 6,
            3..=4 => 7,
            _ => 8,
        },
        SqlType::DateTimeOffset(s) => match s {
            0..=2 => 8,
            3..=4 => 9,
            _ => 10,
        },
        SqlType::UniqueIdentifier => 16,
    }
}

/// `sys.columns.precision`.
pub fn precision(ty: &SqlType) -> i64 {
    let frac = |s: u8| i64::from(s) + i64::from(s > 0);
    match ty {
        SqlType::Bit => 1,
        SqlType::TinyInt => 3,
        SqlType::SmallInt => 5,
        SqlType::Int => 10,
        SqlType::BigInt | SqlType::Money => 19,
        SqlType::Decimal { precision, .. } => i64::from(*precision),
        SqlType::Real => 24,
        SqlType::Float => 53,
        SqlType::Date => 10,
        SqlType::Time(s) => 8 + frac(*s),
        SqlType::DateTime => 23,
        SqlType::DateTime2(s) => 19 + frac(*s),
        SqlType::DateTimeOffset(s) => 26 + frac(*s),
        _ => 0,
    }
}

/// `sys.columns.scale`.
pub fn scale(ty: &SqlType) -> i64 {
    match ty {
        SqlType::Decimal { scale, .. } => i64::from(*scale),
        SqlType::Money => 4,
        SqlType::DateTime => 3,
        SqlType::Time(s) | SqlType::DateTime2(s) | SqlType::DateTimeOffset(s) => i64::from(*s),
        _ => 0,
    }
}

/// The rows of `sys.types` for the system types the stand-in knows:
/// (name, type, is_variable_max_length).
pub fn system_types() -> Vec<(&'static str, SqlType, i64)> {
    vec![
        ("bigint", SqlType::BigInt, 127),
        ("binary", SqlType::Binary(8000), 173),
        ("bit", SqlType::Bit, 104),
        ("char", SqlType::Char(8000), 175),
        ("date", SqlType::Date, 40),
        ("datetime", SqlType::DateTime, 61),
        ("datetime2", SqlType::DateTime2(7), 42),
        ("datetimeoffset", SqlType::DateTimeOffset(7), 43),
        (
            "decimal",
            SqlType::Decimal {
                precision: 38,
                scale: 38,
            },
            106,
        ),
        ("float", SqlType::Float, 62),
        ("int", SqlType::Int, 56),
        ("money", SqlType::Money, 60),
        ("smallmoney", SqlType::Money, 122),
        ("smalldatetime", SqlType::DateTime, 58),
        ("nchar", SqlType::NChar(4000), 239),
        (
            "numeric",
            SqlType::Decimal {
                precision: 38,
                scale: 38,
            },
            108,
        ),
        ("nvarchar", SqlType::NVarChar(Some(4000)), 231),
        ("real", SqlType::Real, 59),
        ("smallint", SqlType::SmallInt, 52),
        ("sysname", SqlType::NVarChar(Some(128)), 256),
        ("time", SqlType::Time(7), 41),
        ("tinyint", SqlType::TinyInt, 48),
        ("uniqueidentifier", SqlType::UniqueIdentifier, 36),
        ("varbinary", SqlType::VarBinary(Some(8000)), 165),
        ("varchar", SqlType::VarChar(Some(8000)), 167),
    ]
}

/// `sysname`, the type of names in catalog views.
pub const SYSNAME: SqlType = SqlType::NVarChar(Some(128));

/// Alias types every database has (`sys.types` rows with `is_user_defined = 0`
/// whose `user_type_id` differs from their `system_type_id`): `sysname`, an
/// `nvarchar(128) NOT NULL` with user_type_id 256. Returns (user_type_id, is_nullable).
pub fn system_alias(type_name: &str) -> Option<(i64, bool)> {
    match type_name {
        "sysname" => Some((256, false)),
        _ => None,
    }
}

/// `(system_type_id, max_length, precision, scale)` of a type as declared, the
/// facts `sys.columns` and `sys.types` report.
pub fn catalog_facts(ty: &SqlType, type_name: &str) -> (i64, i64, i64, i64) {
    if let Some(o) = declared_override(type_name) {
        return o;
    }
    let id = if type_name == "numeric" { 108 } else { type_id(ty) };
    (id, max_length(ty), precision(ty), scale(ty))
}

/// Whether a type is character-based (it then has a collation in the catalog).
pub fn is_character(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_)
    )
}

/// Catalog facts of declared types stored as a wider [`SqlType`]:
/// (system_type_id, max_length, precision, scale).
pub fn declared_override(type_name: &str) -> Option<(i64, i64, i64, i64)> {
    match type_name {
        "smallmoney" => Some((122, 4, 10, 4)),
        "smalldatetime" => Some((58, 4, 16, 0)),
        _ => None,
    }
}
