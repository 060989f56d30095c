//! Batches and RPCs end to end: multiple result sets, server errors, responses larger
//! than a packet, transactions and database changes reported through ENVCHANGE.

mod tds_common;

use tds_common::*;
use testkit::mssql::types::{Outcome, SqlError, SqlType, Value};

fn error(number: i32, class: u8, state: u8, message: &str, line: u32) -> Outcome {
    Outcome::Error(SqlError {
        number,
        state,
        class,
        message: message.to_string(),
        line,
    })
}

#[tokio::test]
async fn simple_query_returns_every_result_set_of_a_batch() {
    let backend = FakeBackend::new();
    let sql = "SELECT 1 AS a; UPDATE t SET x = 1; SELECT N'x' AS b";
    backend.script(
        sql,
        vec![
            rows("a", SqlType::Int, vec![Value::Int(1), Value::Int(2)]),
            Outcome::Done { row_count: Some(5) },
            rows("b", SqlType::NVarChar(Some(10)), vec![Value::String("x".into())]),
        ],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let results = client.simple_query(sql).await.unwrap().into_results().await.unwrap();

    assert_eq!(results.len(), 2);
    let a: Vec<i32> = results[0].iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(a, [1, 2]);
    assert_eq!(results[1][0].get::<&str, _>("b"), Some("x"));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn execute_reports_rows_affected_per_statement() {
    let backend = FakeBackend::new();
    let sql = "INSERT INTO t VALUES (@P1)";
    backend.script(
        sql,
        vec![
            Outcome::Done { row_count: Some(3) },
            Outcome::Done { row_count: Some(1) },
        ],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let result = client.execute(sql, &[&1i32]).await.unwrap();

    assert_eq!(result.rows_affected(), &[3, 1]);
    assert_eq!(result.total(), 4);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn batch_errors_arrive_as_server_errors_with_all_fields() {
    let backend = FakeBackend::new();
    backend.script(
        "SELECT * FROM nope",
        vec![error(208, 16, 1, "Invalid object name 'nope'.", 1)],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let err = match client.simple_query("SELECT * FROM nope").await {
        Ok(stream) => stream.into_results().await.err(),
        Err(e) => Some(e),
    }
    .expect("an error");

    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 208);
            assert_eq!(e.class(), 16);
            assert_eq!(e.state(), 1);
            assert_eq!(e.message(), "Invalid object name 'nope'.");
            assert_eq!(e.server(), "TESTKIT-MSSQL");
            assert_eq!(e.line(), 1);
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // The connection is still usable afterwards.
    backend.script("SELECT 2", vec![rows("v", SqlType::Int, vec![Value::Int(2)])]);
    let row = first_row(&mut client, "SELECT 2").await;
    assert_eq!(row.get::<i32, _>(0), Some(2));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn rpc_errors_arrive_as_server_errors() {
    let backend = FakeBackend::new();
    let sql = "SELECT ctt.min_valid_version FROM sys.change_tracking_tables AS ctt WHERE ctt.object_id = @P1";
    backend.script(
        sql,
        vec![error(
            229,
            14,
            5,
            "The SELECT permission was denied on the object 'change_tracking_tables'.",
            3,
        )],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let err = match client.query(sql, &[&7i32]).await {
        Ok(stream) => stream.into_results().await.err(),
        Err(e) => Some(e),
    }
    .expect("an error");

    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!((e.code(), e.class(), e.state(), e.line()), (229, 14, 5, 3));
            assert!(e.message().starts_with("The SELECT permission was denied"));
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn rows_before_an_error_are_delivered_then_the_error() {
    let backend = FakeBackend::new();
    let sql = "SELECT 1; SELECT 1/0";
    backend.script(
        sql,
        vec![
            rows("a", SqlType::Int, vec![Value::Int(1)]),
            error(8134, 16, 1, "Divide by zero error encountered.", 1),
        ],
    );
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let mut stream = client.simple_query(sql).await.unwrap();
    use futures_util::TryStreamExt;
    let mut got = Vec::new();
    let err = loop {
        match stream.try_next().await {
            Ok(Some(tiberius::QueryItem::Row(r))) => got.push(r.get::<i32, _>(0).unwrap()),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the error must surface"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, [1]);
    assert!(matches!(err, tiberius::error::Error::Server(ref e) if e.code() == 8134));
    drop(stream);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_result_much_larger_than_a_packet_streams_completely() {
    let backend = FakeBackend::new();
    let n = 20_000i64;
    let outcome = Outcome::Rows {
        columns: vec![col("Id", SqlType::BigInt), col("Name", SqlType::NVarChar(Some(100)))],
        rows: (0..n)
            .map(|i| vec![Value::Int(i), Value::String(format!("customer number {i}"))])
            .collect(),
    };
    backend.script("SELECT big", vec![outcome]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    let rows = client
        .simple_query("SELECT big")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();

    assert_eq!(rows.len() as i64, n);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<i64, _>(0), Some(i as i64));
        assert_eq!(row.get::<&str, _>(1), Some(format!("customer number {i}").as_str()));
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_packet_size_is_honoured() {
    let backend = FakeBackend::new();
    let big = "y".repeat(100_000);
    backend.script(
        "SELECT plp",
        vec![rows("v", SqlType::NVarChar(None), vec![Value::String(big.clone())])],
    );
    let server = start(&backend).await;
    let mut config = config(&server, USER, PASSWORD, Some(DATABASE));
    config.packet_size(16_384);
    let mut client = connect_with(config).await.unwrap();

    let row = first_row(&mut client, "SELECT plp").await;

    assert_eq!(row.get::<&str, _>(0), Some(big.as_str()));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn response_packets_use_the_negotiated_size() {
    // A raw client asking for 512-byte packets sees no packet longer than that.
    let backend = FakeBackend::new();
    backend.script(
        "SELECT wide",
        vec![rows(
            "v",
            SqlType::NVarChar(None),
            vec![Value::String("z".repeat(3000))],
        )],
    );
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login_with_packet_size(&server, 512).await;
    raw_batch(&mut tcp, "SELECT wide").await;
    let sizes = read_packet_sizes(&mut tcp).await;
    assert!(sizes.len() > 10, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 512), "{sizes:?}");
    assert!(sizes[..sizes.len() - 1].iter().all(|s| *s == 512));
    server.shutdown().await;
}

#[tokio::test]
async fn transactions_are_reported_through_envchange() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    raw_batch(&mut tcp, "BEGIN TRANSACTION").await;
    let begin = read_response(&mut tcp).await;
    // ENVCHANGE(0xE3), length, type 8, new value of 8 bytes, empty old value.
    assert_eq!(&begin[..4], &[0xE3, 11, 0, 8]);
    assert_eq!(begin[4], 8);
    let descriptor = begin[5..13].to_vec();
    assert_eq!(begin[13], 0);

    raw_batch(&mut tcp, "COMMIT TRANSACTION").await;
    let commit = read_response(&mut tcp).await;
    assert_eq!(&commit[..5], &[0xE3, 11, 0, 9, 0]);
    assert_eq!(commit[5], 8);
    assert_eq!(&commit[6..14], &descriptor[..]);

    raw_batch(&mut tcp, "BEGIN TRAN").await;
    let _ = read_response(&mut tcp).await;
    raw_batch(&mut tcp, "ROLLBACK").await;
    let rollback = read_response(&mut tcp).await;
    assert_eq!(&rollback[..5], &[0xE3, 11, 0, 10, 0]);
    server.shutdown().await;
}

#[tokio::test]
async fn tiberius_transaction_manager_requests_run_as_tsql() {
    let backend = FakeBackend::new();
    backend.script("SELECT 1", vec![Outcome::Done { row_count: None }]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    client.begin_transaction().await.unwrap();
    client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client.commit_transaction().await.unwrap();
    client.begin_transaction().await.unwrap();
    client.rollback_transaction().await.unwrap();

    let sqls: Vec<String> = backend.calls().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        sqls,
        [
            "BEGIN TRANSACTION",
            "SELECT 1",
            "COMMIT TRANSACTION",
            "BEGIN TRANSACTION",
            "ROLLBACK TRANSACTION"
        ]
    );
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn use_database_is_reported_through_envchange_and_info() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    raw_batch(&mut tcp, "USE master").await;
    let response = read_response(&mut tcp).await;

    assert_eq!(&response[..4], &[0xE3, 23, 0, 1]);
    assert_eq!(response[4], 6);
    let new: Vec<u8> = "master".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert_eq!(&response[5..17], &new[..]);
    assert_eq!(response[26], 0xAB, "INFO 5701 follows");
    assert_eq!(i32::from_le_bytes(response[29..33].try_into().unwrap()), 5701);
    server.shutdown().await;
}

#[tokio::test]
async fn attention_is_acknowledged_with_a_done_attn() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    raw_packet(&mut tcp, 0x06, &[]).await;
    let response = read_response(&mut tcp).await;

    assert_eq!(response[0], 0xFD);
    assert_eq!(u16::from_le_bytes([response[1], response[2]]), 0x0020);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_procedures_get_error_2812_and_the_connection_survives() {
    let backend = FakeBackend::new();
    backend.script("SELECT 3", vec![rows("v", SqlType::Int, vec![Value::Int(3)])]);
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    let mut payload = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let name: Vec<u8> = "sp_who".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    payload.extend_from_slice(&6u16.to_le_bytes());
    payload.extend_from_slice(&name);
    payload.extend_from_slice(&[0, 0]);
    raw_packet(&mut tcp, 0x03, &payload).await;
    let response = read_response(&mut tcp).await;

    assert_eq!(response[0], 0xAA);
    assert_eq!(i32::from_le_bytes(response[3..7].try_into().unwrap()), 2812);
    raw_batch(&mut tcp, "SELECT 3").await;
    let next = read_response(&mut tcp).await;
    assert_eq!(next[0], 0x81, "COLMETADATA");
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_query_cuts_a_streaming_result_short() {
    // GIVEN a result far larger than the socket buffers, so it is still streaming.
    let backend = FakeBackend::new();
    let n = 400_000i64;
    backend.script(
        "SELECT huge",
        vec![Outcome::Rows {
            columns: vec![col("Id", SqlType::BigInt), col("Pad", SqlType::NVarChar(Some(40)))],
            rows: (0..n)
                .map(|i| vec![Value::Int(i), Value::String("padding padding padding".into())])
                .collect(),
        }],
    );
    backend.script("SELECT 5", vec![rows("v", SqlType::Int, vec![Value::Int(5)])]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;

    // WHEN the client reads a few rows, drops the stream and cancels.
    {
        use futures_util::TryStreamExt;
        let mut stream = client.simple_query("SELECT huge").await.unwrap().into_row_stream();
        for expected in 0..3i64 {
            let row = stream.try_next().await.unwrap().unwrap();
            assert_eq!(row.get::<i64, _>(0), Some(expected));
        }
    }
    tokio::time::timeout(DEADLINE, client.cancel_query())
        .await
        .expect("cancel within the deadline")
        .expect("the server acknowledges the attention");

    // THEN the connection is clean for the next query.
    let row = first_row(&mut client, "SELECT 5").await;
    assert_eq!(row.get::<i32, _>(0), Some(5));
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unsupported_parameter_type_gets_error_8009_and_the_connection_survives() {
    let backend = FakeBackend::new();
    backend.script("SELECT 3", vec![rows("v", SqlType::Int, vec![Value::Int(3)])]);
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    // sp_executesql by id with one xml (0xF1) parameter.
    let mut payload = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    payload.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
    payload.extend_from_slice(&[2, b'@', 0, b'x', 0, 0, 0xF1, 0]);
    raw_packet(&mut tcp, 0x03, &payload).await;
    let response = read_response(&mut tcp).await;

    assert_eq!(response[0], 0xAA);
    assert_eq!(i32::from_le_bytes(response[3..7].try_into().unwrap()), 8009);
    raw_batch(&mut tcp, "SELECT 3").await;
    assert_eq!(read_response(&mut tcp).await[0], 0x81, "COLMETADATA");
    server.shutdown().await;
}
