//! Every column type the stand-in declares decodes through tiberius to the value that
//! went in, and NULL to `None`; every parameter type tiberius sends arrives decoded.

mod tds_common;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use tds_common::*;
use testkit::mssql::types::{Outcome, Param, SqlType, Value};
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, FromSql, Row};
use uuid::Uuid;

/// Serves `[value]` then `[NULL]` as a one-column result of `ty` and returns the rows
/// tiberius decoded.
async fn select(ty: SqlType, value: Value) -> Vec<Row> {
    let backend = FakeBackend::new();
    backend.script("SELECT v", vec![rows("v", ty, vec![value, Value::Null])]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;
    let rows = client
        .simple_query("SELECT v")
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    drop(client);
    server.shutdown().await;
    assert_eq!(rows.len(), 2);
    rows
}

/// Asserts the first row decodes to `expected` and the second to `None`.
async fn round_trip<T>(ty: SqlType, value: Value, expected: T)
where
    T: for<'a> FromSql<'a> + PartialEq + std::fmt::Debug,
{
    let rows = select(ty.clone(), value).await;
    assert_eq!(rows[0].get::<T, _>(0), Some(expected), "{ty:?}");
    assert_eq!(rows[1].get::<T, _>(0), None, "{ty:?} NULL");
}

/// [`round_trip`] for string columns (tiberius lends `&str`).
async fn round_trip_str(ty: SqlType, s: &str) {
    let rows = select(ty.clone(), Value::String(s.to_string())).await;
    assert_eq!(rows[0].get::<&str, _>(0), Some(s), "{ty:?}");
    assert_eq!(rows[1].get::<&str, _>(0), None, "{ty:?} NULL");
}

/// [`round_trip`] for binary columns (tiberius lends `&[u8]`).
async fn round_trip_bytes(ty: SqlType, b: &[u8]) {
    let rows = select(ty.clone(), Value::Binary(b.to_vec())).await;
    assert_eq!(rows[0].get::<&[u8], _>(0), Some(b), "{ty:?}");
    assert_eq!(rows[1].get::<&[u8], _>(0), None, "{ty:?} NULL");
}

#[tokio::test]
async fn bit_column() {
    round_trip(SqlType::Bit, Value::Bit(true), true).await;
}

#[tokio::test]
async fn tinyint_column() {
    round_trip(SqlType::TinyInt, Value::Int(255), 255u8).await;
}

#[tokio::test]
async fn smallint_column() {
    round_trip(SqlType::SmallInt, Value::Int(-32768), -32768i16).await;
}

#[tokio::test]
async fn int_column() {
    round_trip(SqlType::Int, Value::Int(-2_000_000_000), -2_000_000_000i32).await;
}

#[tokio::test]
async fn bigint_column() {
    round_trip(SqlType::BigInt, Value::Int(i64::MIN), i64::MIN).await;
}

#[tokio::test]
async fn decimal_column_keeps_precision_and_scale() {
    for (precision, value) in [
        (9u8, -12_345_678i128),
        (18, 123_456_789_012_345_678),
        (28, -(10i128.pow(27) + 7)),
        (38, 10i128.pow(37) + 5),
    ] {
        let ty = SqlType::Decimal { precision, scale: 4 };
        let rows = select(ty, Value::Decimal { value, scale: 4 }).await;
        let n: Numeric = rows[0].get(0).expect("value");
        assert_eq!((n.value(), n.scale()), (value, 4), "decimal({precision}, 4)");
        assert_eq!(rows[1].get::<Numeric, _>(0), None);
    }
}

#[tokio::test]
async fn decimal_column_rescales_values_to_the_column_scale() {
    let ty = SqlType::Decimal {
        precision: 10,
        scale: 2,
    };
    let rows = select(ty, Value::Decimal { value: 12345, scale: 3 }).await;
    let n: Numeric = rows[0].get(0).expect("value");
    assert_eq!((n.value(), n.scale()), (1235, 2));
}

#[tokio::test]
async fn money_column() {
    // tiberius reads money as f64.
    round_trip(SqlType::Money, Value::Money(-1_234_567), -123.4567f64).await;
}

#[tokio::test]
async fn real_column() {
    round_trip(SqlType::Real, Value::Float(1.5), 1.5f32).await;
}

#[tokio::test]
async fn float_column() {
    round_trip(SqlType::Float, Value::Float(std::f64::consts::PI), std::f64::consts::PI).await;
}

#[tokio::test]
async fn char_column_is_padded_to_its_length() {
    let rows = select(SqlType::Char(6), Value::String("abc".into())).await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("abc   "));
    assert_eq!(rows[1].get::<&str, _>(0), None);
}

#[tokio::test]
async fn varchar_column_travels_in_code_page_1252() {
    round_trip_str(SqlType::VarChar(Some(50)), "Grüße – 5 €").await;
}

#[tokio::test]
async fn varchar_max_column_is_plp() {
    let long = "x".repeat(20_000);
    round_trip_str(SqlType::VarChar(None), &long).await;
}

#[tokio::test]
async fn nchar_column_is_padded_to_its_length() {
    let rows = select(SqlType::NChar(4), Value::String("日本".into())).await;
    assert_eq!(rows[0].get::<&str, _>(0), Some("日本  "));
    assert_eq!(rows[1].get::<&str, _>(0), None);
}

#[tokio::test]
async fn nvarchar_column_carries_any_unicode() {
    let s = "héllo 日本 🎉".to_string();
    round_trip_str(SqlType::NVarChar(Some(100)), &s).await;
}

#[tokio::test]
async fn nvarchar_max_column_larger_than_a_packet() {
    let s: String = (0..30_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    round_trip_str(SqlType::NVarChar(None), &s).await;
}

#[tokio::test]
async fn empty_strings_are_not_null() {
    round_trip_str(SqlType::NVarChar(None), "").await;
    round_trip_str(SqlType::VarChar(Some(10)), "").await;
}

#[tokio::test]
async fn binary_column_is_zero_padded() {
    let rows = select(SqlType::Binary(4), Value::Binary(vec![1, 2])).await;
    assert_eq!(rows[0].get::<&[u8], _>(0), Some(&[1u8, 2, 0, 0][..]));
    assert_eq!(rows[1].get::<&[u8], _>(0), None);
}

#[tokio::test]
async fn varbinary_column() {
    round_trip_bytes(SqlType::VarBinary(Some(16)), &[0xDE, 0xAD]).await;
}

#[tokio::test]
async fn varbinary_max_column_larger_than_a_packet() {
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    round_trip_bytes(SqlType::VarBinary(None), &bytes).await;
}

#[tokio::test]
async fn date_column() {
    for d in [
        NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
        NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
    ] {
        round_trip(SqlType::Date, Value::Date(d), d).await;
    }
}

#[tokio::test]
async fn time_column_at_every_length_class() {
    for (scale, t) in [
        (0u8, NaiveTime::from_hms_opt(23, 59, 59).unwrap()),
        (3, NaiveTime::from_hms_milli_opt(12, 30, 15, 123).unwrap()),
        (7, NaiveTime::from_hms_nano_opt(1, 2, 3, 456_789_100).unwrap()),
    ] {
        round_trip(SqlType::Time(scale), Value::Time(t), t).await;
    }
}

#[tokio::test]
async fn datetime_column() {
    let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_milli_opt(13, 45, 10, 10)
        .unwrap();
    round_trip(SqlType::DateTime, Value::DateTime(dt), dt).await;
}

#[tokio::test]
async fn datetime2_column() {
    for (scale, dt) in [
        (
            7u8,
            NaiveDate::from_ymd_opt(2001, 9, 9)
                .unwrap()
                .and_hms_nano_opt(1, 46, 40, 123_456_700)
                .unwrap(),
        ),
        (
            0,
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
        ),
    ] {
        round_trip(SqlType::DateTime2(scale), Value::DateTime(dt), dt).await;
    }
}

#[tokio::test]
async fn datetimeoffset_column_keeps_the_offset() {
    let offset = FixedOffset::east_opt(-(5 * 3600 + 30 * 60)).unwrap();
    let dto = offset.with_ymd_and_hms(2024, 12, 31, 22, 15, 0).unwrap();
    let rows = select(SqlType::DateTimeOffset(7), Value::DateTimeOffset(dto)).await;
    let got: DateTime<FixedOffset> = rows[0].get(0).expect("value");
    assert_eq!(got, dto);
    assert_eq!(got.offset(), dto.offset());
    assert_eq!(rows[1].get::<DateTime<FixedOffset>, _>(0), None);
}

#[tokio::test]
async fn uniqueidentifier_column() {
    let g = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
    round_trip(SqlType::UniqueIdentifier, Value::Guid(g), g).await;
}

#[tokio::test]
async fn column_names_and_types_reach_the_client() {
    let backend = FakeBackend::new();
    backend.script(
        "SELECT meta",
        vec![Outcome::Rows {
            columns: vec![
                col("Id", SqlType::Int),
                col("Name", SqlType::NVarChar(Some(50))),
                col(
                    "Total",
                    SqlType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                ),
            ],
            rows: vec![],
        }],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;
    let mut stream = client.simple_query("SELECT meta").await.unwrap();
    let columns = stream.columns().await.unwrap().expect("metadata").to_vec();
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["Id", "Name", "Total"]);
    assert_eq!(columns[0].column_type(), tiberius::ColumnType::Int4);
    assert_eq!(columns[1].column_type(), tiberius::ColumnType::NVarchar);
    assert_eq!(columns[2].column_type(), tiberius::ColumnType::Decimaln);
    assert!(stream.into_first_result().await.unwrap().is_empty());
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn rows_with_many_nulls_decode_through_nbcrow() {
    let backend = FakeBackend::new();
    let columns: Vec<_> = (0..12)
        .map(|i| col(&format!("c{i}"), SqlType::NVarChar(None)))
        .collect();
    let mut sparse = vec![Value::Null; 12];
    sparse[3] = Value::String("three".into());
    sparse[11] = Value::String("eleven".into());
    let dense: Vec<Value> = (0..12).map(|i| Value::String(i.to_string())).collect();
    backend.script(
        "SELECT sparse",
        vec![Outcome::Rows {
            columns,
            rows: vec![sparse, dense],
        }],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;
    let rows = client
        .simple_query("SELECT sparse")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    for i in 0..12 {
        let expected = match i {
            3 => Some("three"),
            11 => Some("eleven"),
            _ => None,
        };
        assert_eq!(rows[0].get::<&str, _>(i), expected, "column {i}");
        assert_eq!(rows[1].get::<&str, _>(i), Some(i.to_string().as_str()));
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn query_parameters_of_every_type_arrive_decoded() {
    let backend = FakeBackend::new();
    let sql = "SELECT @P1";
    backend.script(sql, vec![Outcome::Done { row_count: None }]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let long_text: String = "ü".repeat(5000);
    let long_bytes: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let time = NaiveTime::from_hms_nano_opt(13, 14, 15, 123_456_700).unwrap();
    let datetime2 = date.and_time(time);
    let dto = FixedOffset::east_opt(2 * 3600)
        .unwrap()
        .with_ymd_and_hms(2024, 6, 1, 8, 0, 0)
        .unwrap();
    let guid = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
    let legacy_datetime = ColumnData::DateTime(Some(tiberius::time::DateTime::new(45_000, 300 * 3600)));
    let numeric = Numeric::new_with_scale(-123_456, 3);
    let none_int: Option<i32> = None;
    let none_str: Option<&str> = None;

    let mut query = tiberius::Query::new(sql);
    query.bind(42i32);
    query.bind(-9_000_000_000i64);
    query.bind(200u8);
    query.bind(-300i16);
    query.bind(true);
    query.bind(1.25f32);
    query.bind(-2.5e300f64);
    query.bind("héllo");
    query.bind(long_text.clone());
    query.bind(&[1u8, 2, 3][..]);
    query.bind(long_bytes.clone());
    query.bind(numeric);
    query.bind(date);
    query.bind(time);
    query.bind(datetime2);
    query.bind(dto);
    query.bind(guid);
    query.bind(legacy_datetime);
    query.bind(none_int);
    query.bind(none_str);
    query.bind("");
    query.execute(&mut client).await.expect("execute");

    let calls = backend.calls();
    let (got_sql, params) = calls.last().expect("a call");
    assert_eq!(got_sql, sql);
    let expected = vec![
        Value::Int(42),
        Value::Int(-9_000_000_000),
        Value::Int(200),
        Value::Int(-300),
        Value::Bit(true),
        Value::Float(1.25),
        Value::Float(-2.5e300),
        Value::String("héllo".into()),
        Value::String(long_text),
        Value::Binary(vec![1, 2, 3]),
        Value::Binary(long_bytes),
        Value::Decimal {
            value: -123_456,
            scale: 3,
        },
        Value::Date(date),
        Value::Time(time),
        Value::DateTime(datetime2),
        Value::DateTimeOffset(dto),
        Value::Guid(guid),
        Value::DateTime(
            NaiveDate::from_ymd_opt(1900, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                + chrono::Duration::days(45_000)
                + chrono::Duration::hours(1),
        ),
        Value::Null,
        Value::Null,
        Value::String(String::new()),
    ];
    let expected: Vec<Param> = expected
        .into_iter()
        .enumerate()
        .map(|(i, value)| Param {
            name: format!("@P{}", i + 1),
            value,
        })
        .collect();
    assert_eq!(params.len(), expected.len());
    for (got, want) in params.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    if let Value::DateTimeOffset(got) = &params[15].value {
        assert_eq!(got.offset(), dto.offset());
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn parameterised_query_returns_rows_through_sp_executesql() {
    let backend = FakeBackend::new();
    let sql = "SELECT TOP (@P1) T.[Id] FROM [dbo].[Orders] AS T WHERE T.[Id] > @P2 ORDER BY T.[Id]";
    backend.script(
        sql,
        vec![rows("Id", SqlType::Int, vec![Value::Int(11), Value::Int(12)])],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let rows = client
        .query(sql, &[&2i64, &10i32])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();

    let ids: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(ids, [11, 12]);
    let (_, params) = backend.calls().pop().unwrap();
    assert_eq!(
        params,
        vec![
            Param {
                name: "@P1".into(),
                value: Value::Int(2)
            },
            Param {
                name: "@P2".into(),
                value: Value::Int(10)
            },
        ]
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn not_null_columns_use_fixed_length_types_as_sql_server_does() {
    use testkit::mssql::types::Column;
    use tiberius::ColumnType as C;
    let dt = NaiveDate::from_ymd_opt(2020, 1, 2)
        .unwrap()
        .and_hms_milli_opt(3, 4, 5, 500)
        .unwrap();
    let cases: Vec<(SqlType, Value, C)> = vec![
        (SqlType::Bit, Value::Bit(true), C::Bit),
        (SqlType::TinyInt, Value::Int(7), C::Int1),
        (SqlType::SmallInt, Value::Int(-7), C::Int2),
        (SqlType::Int, Value::Int(70_000), C::Int4),
        (SqlType::BigInt, Value::Int(-7_000_000_000), C::Int8),
        (SqlType::Money, Value::Money(25_000), C::Money),
        (SqlType::Real, Value::Float(0.5), C::Float4),
        (SqlType::Float, Value::Float(0.25), C::Float8),
        (SqlType::DateTime, Value::DateTime(dt), C::Datetime),
        // Types without a fixed-length form keep their N type even when NOT NULL.
        (SqlType::Date, Value::Date(dt.date()), C::Daten),
    ];
    let backend = FakeBackend::new();
    backend.script(
        "SELECT fixed",
        vec![Outcome::Rows {
            columns: cases
                .iter()
                .enumerate()
                .map(|(i, (ty, _, _))| Column {
                    name: format!("c{i}"),
                    ty: ty.clone(),
                    nullable: false,
                })
                .collect(),
            rows: vec![cases.iter().map(|(_, v, _)| v.clone()).collect()],
        }],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let mut stream = client.simple_query("SELECT fixed").await.unwrap();
    let types: Vec<C> = stream
        .columns()
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|c| c.column_type())
        .collect();
    let row = stream.into_row().await.unwrap().unwrap();

    assert_eq!(types, cases.iter().map(|(_, _, t)| *t).collect::<Vec<_>>());
    assert_eq!(row.get::<bool, _>(0), Some(true));
    assert_eq!(row.get::<u8, _>(1), Some(7));
    assert_eq!(row.get::<i16, _>(2), Some(-7));
    assert_eq!(row.get::<i32, _>(3), Some(70_000));
    assert_eq!(row.get::<i64, _>(4), Some(-7_000_000_000));
    assert_eq!(row.get::<f64, _>(5), Some(2.5));
    assert_eq!(row.get::<f32, _>(6), Some(0.5));
    assert_eq!(row.get::<f64, _>(7), Some(0.25));
    assert_eq!(row.get::<chrono::NaiveDateTime, _>(8), Some(dt));
    assert_eq!(row.get::<NaiveDate, _>(9), Some(dt.date()));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_value_the_column_cannot_carry_becomes_a_conversion_error_not_a_broken_stream() {
    let backend = FakeBackend::new();
    backend.script(
        "SELECT broken",
        vec![
            rows("v", SqlType::Int, vec![Value::Int(1), Value::String("oops".into())]),
            rows("w", SqlType::Int, vec![Value::Int(2)]),
        ],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let err = match client.simple_query("SELECT broken").await {
        Ok(stream) => stream.into_results().await.err(),
        Err(e) => Some(e),
    }
    .expect("an error");

    assert!(
        matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 245),
        "{err:?}"
    );
    // The stream stayed well-formed: the connection is still usable.
    backend.script("SELECT 1", vec![rows("v", SqlType::Int, vec![Value::Int(1)])]);
    let row = client.simple_query("SELECT 1").await.unwrap().into_row().await.unwrap();
    assert_eq!(row.unwrap().get::<i32, _>(0), Some(1));
    drop(client);
    server.shutdown().await;
}
