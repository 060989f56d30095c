//! Client requests after login (MS-TDS 2.2.6): SQL batches, RPC calls with their typed
//! parameters, and transaction manager requests, decoded from a whole message.

use chrono::{FixedOffset, NaiveDateTime, TimeZone};

use super::cp1252;
use super::decode::{ucs2_to_string, DecodeError, Reader};
use super::values::{self, ty, PLP_NULL};
use crate::mssql::types::Value;

/// Skips the ALL_HEADERS block that starts every batch, RPC and TM request.
fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let total = r.u32_le()? as usize;
    if total < 4 || total - 4 > r.remaining() {
        return Err(DecodeError::Malformed(format!("ALL_HEADERS length {total}")));
    }
    r.skip(total - 4)
}

/// Decodes a SQL batch: ALL_HEADERS, then the statement text in UCS-2.
pub fn decode_sql_batch(payload: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let rest = r.take(r.remaining())?;
    ucs2_to_string(rest, "SQL batch")
}

/// How an RPC names its procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcRef {
    /// A well-known procedure by id (10 = sp_executesql).
    Id(u16),
    Name(String),
}

/// The id of `sp_executesql` in ProcIDSwitch form.
pub const SP_EXECUTESQL_ID: u16 = 10;

/// One parameter of an RPC call.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcParam {
    /// As sent, `@` included; may be empty (positional).
    pub name: String,
    /// fByRefValue: an output parameter.
    pub by_ref: bool,
    pub value: Value,
}

/// One procedure call of an RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub proc: ProcRef,
    pub params: Vec<RpcParam>,
}

impl RpcCall {
    /// Whether this calls `sp_executesql`, by id or by (optionally qualified) name.
    pub fn is_sp_executesql(&self) -> bool {
        match &self.proc {
            ProcRef::Id(id) => *id == SP_EXECUTESQL_ID,
            ProcRef::Name(name) => {
                let bare = name.rsplit('.').next().unwrap_or(name);
                bare.trim_matches(|c| c == '[' || c == ']')
                    .eq_ignore_ascii_case("sp_executesql")
            }
        }
    }

    /// The procedure's name for messages.
    pub fn proc_name(&self) -> String {
        match &self.proc {
            ProcRef::Id(SP_EXECUTESQL_ID) => "sp_executesql".to_string(),
            ProcRef::Id(id) => format!("procedure id {id}"),
            ProcRef::Name(name) => name.clone(),
        }
    }
}

/// Why an RPC message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// Broken framing: the connection cannot continue.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// A parameter type we do not implement. SQL Server answers error 8009 and keeps
    /// the connection, and so do we.
    #[error("parameter {index} ({name:?}): data type {ty:#04x} is unknown")]
    UnknownType { index: usize, name: String, ty: u8 },
}

/// Decodes an RPC message: ALL_HEADERS then one or more calls separated by batch flags.
pub fn decode_rpc(payload: &[u8]) -> Result<Vec<RpcCall>, RpcError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let mut calls = Vec::new();
    loop {
        let name_len = r.u16_le()?;
        let proc = if name_len == 0xFFFF {
            ProcRef::Id(r.u16_le()?)
        } else {
            ProcRef::Name(r.ucs2(usize::from(name_len), "procedure name")?)
        };
        let _options = r.u16_le()?;
        let mut params = Vec::new();
        let mut more_calls = false;
        while r.remaining() > 0 {
            let mut peek = r.clone();
            // BatchFlag (0x80) / NoExecFlag (0xFE, 0xFF) end this call.
            if matches!(peek.u8()?, 0x80 | 0xFE | 0xFF) {
                r.skip(1)?;
                more_calls = r.remaining() > 0;
                break;
            }
            let index = params.len() + 1;
            let name = r.b_varchar("parameter name")?;
            let status = r.u8()?;
            let value = decode_param_value(&mut r).map_err(|e| match e {
                ParamError::Decode(d) => RpcError::Malformed(d),
                ParamError::UnknownType(ty) => RpcError::UnknownType {
                    index,
                    name: name.clone(),
                    ty,
                },
            })?;
            params.push(RpcParam {
                name,
                by_ref: status & 0x01 != 0,
                value,
            });
        }
        calls.push(RpcCall { proc, params });
        if !more_calls {
            return Ok(calls);
        }
    }
}

enum ParamError {
    Decode(DecodeError),
    UnknownType(u8),
}

impl From<DecodeError> for ParamError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

fn bad(what: &str) -> DecodeError {
    DecodeError::Malformed(what.to_string())
}

/// Reads a PLP value's bytes (`None` for NULL).
fn read_plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let total = r.u64_le()?;
    if total == PLP_NULL {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = r.u32_le()? as usize;
        if chunk == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(r.take(chunk)?);
    }
}

/// Reads little-endian unsigned bytes into a u64.
fn uint_le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn read_time(r: &mut Reader<'_>, len: usize, scale: u8) -> Result<chrono::NaiveTime, DecodeError> {
    let inc = uint_le(r.take(len)?);
    values::time_from_increments(inc, scale).ok_or_else(|| bad("time value"))
}

fn read_date(r: &mut Reader<'_>) -> Result<chrono::NaiveDate, DecodeError> {
    let days = uint_le(r.take(3)?) as u32;
    values::date_from_days(days).ok_or_else(|| bad("date value"))
}

fn read_int(r: &mut Reader<'_>, len: usize) -> Result<Value, DecodeError> {
    Ok(Value::Int(match len {
        1 => i64::from(r.u8()?),
        2 => i64::from(r.i16_le()?),
        4 => i64::from(r.i32_le()?),
        8 => r.i64_le()?,
        _ => return Err(bad("integer length")),
    }))
}

fn read_float(r: &mut Reader<'_>, len: usize) -> Result<Value, DecodeError> {
    Ok(Value::Float(match len {
        4 => f64::from(r.f32_le()?),
        8 => r.f64_le()?,
        _ => return Err(bad("float length")),
    }))
}

fn read_money(r: &mut Reader<'_>, len: usize) -> Result<Value, DecodeError> {
    Ok(Value::Money(match len {
        4 => i64::from(r.i32_le()?),
        8 => {
            let hi = i64::from(r.i32_le()?);
            let lo = i64::from(r.u32_le()?);
            (hi << 32) | lo
        }
        _ => return Err(bad("money length")),
    }))
}

fn read_datetime(r: &mut Reader<'_>, len: usize) -> Result<Value, DecodeError> {
    let dt = match len {
        4 => {
            let days = r.u16_le()?;
            let minutes = r.u16_le()?;
            values::datetime_from_parts(i32::from(days), u32::from(minutes) * 60 * 300)
        }
        8 => {
            let days = r.i32_le()?;
            let ticks = r.u32_le()?;
            values::datetime_from_parts(days, ticks)
        }
        _ => return Err(bad("datetime length")),
    };
    dt.map(Value::DateTime).ok_or_else(|| bad("datetime value"))
}

/// Reads TYPE_INFO then the value of one parameter.
fn decode_param_value(r: &mut Reader<'_>) -> Result<Value, ParamError> {
    let t = r.u8()?;
    let value = match t {
        ty::NULL => Value::Null,
        ty::INT1 => read_int(r, 1)?,
        ty::INT2 => read_int(r, 2)?,
        ty::INT4 => read_int(r, 4)?,
        ty::INT8 => read_int(r, 8)?,
        ty::BIT => Value::Bit(r.u8()? != 0),
        ty::FLT4 => read_float(r, 4)?,
        ty::FLT8 => read_float(r, 8)?,
        ty::MONEY => read_money(r, 8)?,
        ty::MONEY4 => read_money(r, 4)?,
        ty::DATETIME => read_datetime(r, 8)?,
        ty::DATETIM4 => read_datetime(r, 4)?,
        ty::INTN | ty::BITN | ty::FLTN | ty::MONEYN | ty::DATETIMN | ty::GUID => {
            let _max = r.u8()?;
            let len = usize::from(r.u8()?);
            match (t, len) {
                (_, 0) => Value::Null,
                (ty::INTN, n) => read_int(r, n)?,
                (ty::BITN, 1) => Value::Bit(r.u8()? != 0),
                (ty::FLTN, n) => read_float(r, n)?,
                (ty::MONEYN, n) => read_money(r, n)?,
                (ty::DATETIMN, n) => read_datetime(r, n)?,
                (ty::GUID, 16) => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(r.take(16)?);
                    Value::Guid(uuid::Uuid::from_bytes(values::guid_wire_bytes(b)))
                }
                _ => return Err(bad("fixed-size value length").into()),
            }
        }
        ty::DECIMALN | ty::NUMERICN => {
            let _max = r.u8()?;
            let _precision = r.u8()?;
            let scale = r.u8()?;
            let len = usize::from(r.u8()?);
            if len == 0 {
                Value::Null
            } else {
                if !matches!(len, 5 | 9 | 13 | 17) {
                    return Err(bad("decimal length").into());
                }
                let positive = r.u8()? == 1;
                let mut mag = [0u8; 16];
                mag[..len - 1].copy_from_slice(r.take(len - 1)?);
                let magnitude = i128::try_from(u128::from_le_bytes(mag)).map_err(|_| bad("decimal value"))?;
                Value::Decimal {
                    value: if positive { magnitude } else { -magnitude },
                    scale,
                }
            }
        }
        ty::DATEN => match r.u8()? {
            0 => Value::Null,
            3 => Value::Date(read_date(r)?),
            _ => return Err(bad("date length").into()),
        },
        ty::TIMEN | ty::DATETIME2N | ty::DATETIMEOFFSETN => {
            let scale = r.u8()?;
            if scale > 7 {
                return Err(bad("time scale").into());
            }
            let len = usize::from(r.u8()?);
            let tlen = usize::from(values::time_len(scale));
            match (t, len) {
                (_, 0) => Value::Null,
                (ty::TIMEN, n) if n == tlen => Value::Time(read_time(r, tlen, scale)?),
                (ty::DATETIME2N, n) if n == tlen + 3 => {
                    let time = read_time(r, tlen, scale)?;
                    Value::DateTime(NaiveDateTime::new(read_date(r)?, time))
                }
                (ty::DATETIMEOFFSETN, n) if n == tlen + 5 => {
                    let time = read_time(r, tlen, scale)?;
                    let utc = NaiveDateTime::new(read_date(r)?, time);
                    let offset = FixedOffset::east_opt(i32::from(r.i16_le()?) * 60)
                        .ok_or_else(|| bad("datetimeoffset offset"))?;
                    Value::DateTimeOffset(offset.from_utc_datetime(&utc))
                }
                _ => return Err(bad("time value length").into()),
            }
        }
        ty::BIGVARCHAR | ty::BIGCHAR | ty::NVARCHAR | ty::NCHAR => {
            let max = r.u16_le()?;
            r.skip(5)?; // collation
            let bytes = if max == 0xFFFF {
                read_plp(r)?
            } else {
                match r.u16_le()? {
                    0xFFFF => None,
                    n => Some(r.take(usize::from(n))?.to_vec()),
                }
            };
            match bytes {
                None => Value::Null,
                Some(b) if matches!(t, ty::NVARCHAR | ty::NCHAR) => {
                    Value::String(ucs2_to_string(&b, "nvarchar parameter")?)
                }
                Some(b) => Value::String(cp1252::decode(&b)),
            }
        }
        ty::BIGVARBINARY | ty::BIGBINARY => {
            let max = r.u16_le()?;
            let bytes = if max == 0xFFFF {
                read_plp(r)?
            } else {
                match r.u16_le()? {
                    0xFFFF => None,
                    n => Some(r.take(usize::from(n))?.to_vec()),
                }
            };
            bytes.map_or(Value::Null, Value::Binary)
        }
        other => return Err(ParamError::UnknownType(other)),
    };
    Ok(value)
}

/// A transaction manager request (MS-TDS 2.2.6.9), as tiberius' `begin_transaction`
/// and friends send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmRequest {
    Begin {
        isolation: u8,
        name: String,
    },
    Commit {
        name: String,
    },
    Rollback {
        name: String,
    },
    Save {
        name: String,
    },
    /// DTC requests and the like, which the stand-in refuses.
    Unsupported(u16),
}

impl TmRequest {
    /// The T-SQL a real server runs for this request.
    pub fn to_sql(&self) -> Option<String> {
        let quoted = |n: &str| {
            if n.is_empty() {
                String::new()
            } else {
                format!(" [{}]", n.replace(']', "]]"))
            }
        };
        Some(match self {
            Self::Begin { isolation, name } => {
                let level = match isolation {
                    1 => "READ UNCOMMITTED",
                    2 => "READ COMMITTED",
                    3 => "REPEATABLE READ",
                    4 => "SERIALIZABLE",
                    5 => "SNAPSHOT",
                    _ => return Some(format!("BEGIN TRANSACTION{}", quoted(name))),
                };
                format!(
                    "SET TRANSACTION ISOLATION LEVEL {level}; BEGIN TRANSACTION{}",
                    quoted(name)
                )
            }
            Self::Commit { name } => format!("COMMIT TRANSACTION{}", quoted(name)),
            Self::Rollback { name } => format!("ROLLBACK TRANSACTION{}", quoted(name)),
            Self::Save { name } => format!("SAVE TRANSACTION{}", quoted(name)),
            Self::Unsupported(_) => return None,
        })
    }
}

/// Decodes a transaction manager request.
pub fn decode_tm(payload: &[u8]) -> Result<TmRequest, DecodeError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let kind = r.u16_le()?;
    Ok(match kind {
        5 => {
            let isolation = r.u8()?;
            TmRequest::Begin {
                isolation,
                name: r.b_varchar("transaction name")?,
            }
        }
        7 => TmRequest::Commit {
            name: r.b_varchar("transaction name")?,
        },
        8 => TmRequest::Rollback {
            name: r.b_varchar("transaction name")?,
        },
        9 => TmRequest::Save {
            name: r.b_varchar("transaction name")?,
        },
        other => TmRequest::Unsupported(other),
    })
}

/// Parameter names from an `sp_executesql` declaration list (`@P1 int,@P2
/// nvarchar(4000)`), for calls that send values without names.
pub fn declared_names(decl: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in decl.chars().chain(std::iter::once(',')) {
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' if depth == 0 => {
                if let Some(name) = current.split_whitespace().next() {
                    names.push(name.to_string());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_names_skip_commas_inside_type_arguments() {
        assert_eq!(
            declared_names("@P1 numeric(10,2),@P2 nvarchar(max), @x int"),
            vec!["@P1", "@P2", "@x"]
        );
        assert!(declared_names("").is_empty());
    }

    #[test]
    fn sp_executesql_is_recognised_by_id_and_by_qualified_name() {
        for proc in [
            ProcRef::Id(10),
            ProcRef::Name("sp_executesql".into()),
            ProcRef::Name("[sys].[sp_executesql]".into()),
            ProcRef::Name("SYS.SP_EXECUTESQL".into()),
        ] {
            let call = RpcCall { proc, params: vec![] };
            assert!(call.is_sp_executesql(), "{:?}", call.proc);
        }
    }

    fn all_headers() -> Vec<u8> {
        let mut v = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&1u32.to_le_bytes());
        v
    }

    fn b_varchar(s: &str) -> Vec<u8> {
        let mut v = vec![s.encode_utf16().count() as u8];
        v.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
        v
    }

    #[test]
    fn decodes_parameter_types_tiberius_never_sends() {
        let mut p = all_headers();
        p.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]); // sp_executesql by id, no options
                                                         // money 12.3456 as MONEYN(8)
        p.extend(b_varchar("@m"));
        p.extend_from_slice(&[0, ty::MONEYN, 8, 8]);
        p.extend_from_slice(&0i32.to_le_bytes());
        p.extend_from_slice(&123_456u32.to_le_bytes());
        // varchar(10) 'é' in cp1252
        p.extend(b_varchar("@v"));
        p.extend_from_slice(&[0, ty::BIGVARCHAR, 10, 0, 0x09, 0x04, 0xD0, 0x00, 0x34, 1, 0, 0xE9]);
        // fixed INT4 and an INTN NULL
        p.extend(b_varchar("@i"));
        p.extend_from_slice(&[0, ty::INT4]);
        p.extend_from_slice(&(-5i32).to_le_bytes());
        p.extend(b_varchar("@n"));
        p.extend_from_slice(&[1, ty::INTN, 4, 0]);
        // smalldatetime 1900-01-02 00:01 as DATETIMN(4)
        p.extend(b_varchar("@s"));
        p.extend_from_slice(&[0, ty::DATETIMN, 4, 4, 1, 0, 1, 0]);

        let calls = decode_rpc(&p).unwrap();

        assert_eq!(calls.len(), 1);
        assert!(calls[0].is_sp_executesql());
        let values: Vec<&Value> = calls[0].params.iter().map(|p| &p.value).collect();
        let smalldatetime = chrono::NaiveDate::from_ymd_opt(1900, 1, 2)
            .unwrap()
            .and_hms_opt(0, 1, 0)
            .unwrap();
        assert_eq!(
            values,
            [
                &Value::Money(123_456),
                &Value::String("é".into()),
                &Value::Int(-5),
                &Value::Null,
                &Value::DateTime(smalldatetime),
            ]
        );
        assert!(calls[0].params[3].by_ref);
    }

    #[test]
    fn an_unknown_parameter_type_is_reported_not_fatal() {
        let mut p = all_headers();
        p.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
        p.extend(b_varchar("@x"));
        p.extend_from_slice(&[0, 0xF1, 0]); // xml
        assert_eq!(
            decode_rpc(&p),
            Err(RpcError::UnknownType {
                index: 1,
                name: "@x".into(),
                ty: 0xF1
            })
        );
    }

    #[test]
    fn several_calls_in_one_message_are_split_at_the_batch_flag() {
        let mut p = all_headers();
        p.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
        p.extend(b_varchar("@a"));
        p.extend_from_slice(&[0, ty::INTN, 1, 1, 9]);
        p.push(0x80);
        p.extend_from_slice(&[2, 0]);
        p.extend("sp".encode_utf16().flat_map(|u| u.to_le_bytes()));
        p.extend_from_slice(&[0, 0]);
        let calls = decode_rpc(&p).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].params[0].value, Value::Int(9));
        assert_eq!(calls[1].proc, ProcRef::Name("sp".into()));
    }

    #[test]
    fn truncated_rpc_is_malformed() {
        let payload = [22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xFF];
        assert!(matches!(decode_rpc(&payload), Err(RpcError::Malformed(_))));
    }
}
