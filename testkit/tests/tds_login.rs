//! Handshake through the real tiberius client: PRELOGIN, LOGIN7, login errors and
//! encryption refusal against a server without TLS.

mod tds_common;

use tds_common::*;
use testkit::mssql::types::{Outcome, SqlType, Value};
use tiberius::EncryptionLevel;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn login_succeeds_and_passes_credentials_and_database_to_the_backend() {
    let backend = FakeBackend::new();
    backend.script(
        "SELECT DB_NAME() AS db",
        vec![rows(
            "db",
            SqlType::NVarChar(Some(128)),
            vec![Value::String(DATABASE.into())],
        )],
    );
    let server = start(&backend).await;

    let mut client = connect(&server).await;
    let row = client
        .simple_query("SELECT DB_NAME() AS db")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("a row");

    assert_eq!(row.get::<&str, _>("db"), Some(DATABASE));
    assert_eq!(
        backend.logins(),
        vec![(USER.to_string(), PASSWORD.to_string(), Some(DATABASE.to_string()))]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn login_without_database_uses_the_default() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    let client = connect_with(config(&server, USER, PASSWORD, None)).await;

    assert!(client.is_ok(), "{:?}", client.err());
    assert_eq!(backend.logins()[0].2, None);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_error_18456_login_failed() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    let err = connect_with(config(&server, USER, "wrong", Some(DATABASE)))
        .await
        .expect_err("login must fail");

    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 18456);
            assert_eq!(e.class(), 14);
            assert_eq!(e.message(), format!("Login failed for user '{USER}'."));
            assert_eq!(e.server(), "TESTKIT-MSSQL");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_server_closes_the_connection_after_a_failed_login() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    let (response, mut tcp) = raw_login(&server, USER, "wrong", DATABASE).await;

    // ERROR token (0xAA) with number 18456, then a DONE (0xFD) with the error bit.
    assert_eq!(response[0], 0xAA);
    assert_eq!(i32::from_le_bytes(response[3..7].try_into().unwrap()), 18456);
    let done = &response[response.len() - 13..];
    assert_eq!(done[0], 0xFD);
    assert_eq!(u16::from_le_bytes([done[1], done[2]]), 0x0002);
    assert!(closed_by_server(&mut tcp).await, "server must hang up");
    server.shutdown().await;
}

#[tokio::test]
async fn a_good_raw_login_stays_open_and_answers_batches() {
    let backend = FakeBackend::new();
    backend.script("SELECT 1", vec![Outcome::Done { row_count: Some(1) }]);
    let server = start(&backend).await;

    let (response, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;
    assert!(response.contains(&0xAD), "LOGINACK present");
    raw_batch(&mut tcp, "SELECT 1").await;
    let answer = read_response(&mut tcp).await;

    assert_eq!(answer[0], 0xFD);
    assert_eq!(u16::from_le_bytes([answer[1], answer[2]]), 0x0010); // DONE_COUNT
    assert_eq!(u64::from_le_bytes(answer[5..13].try_into().unwrap()), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_packet_type_closes_the_connection() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    raw_packet(&mut tcp, 0x07, &[1, 2, 3]).await; // bulk load data out of nowhere

    assert!(closed_by_server(&mut tcp).await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_truncated_rpc_closes_the_connection() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let (_, mut tcp) = raw_login(&server, USER, PASSWORD, DATABASE).await;

    // ALL_HEADERS claims 200 bytes but the message ends first.
    raw_packet(&mut tcp, 0x03, &[200, 0, 0, 0, 1, 2]).await;

    assert!(closed_by_server(&mut tcp).await);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_database_is_error_4060() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    let err = connect_with(config(&server, USER, PASSWORD, Some("Nope")))
        .await
        .expect_err("login must fail");

    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!(e.code(), 4060);
            assert_eq!(e.class(), 11);
            assert!(e.message().contains("Cannot open database \"Nope\""));
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    server.shutdown().await;
}

/// FEDAUTH in the LOGIN7 FeatureExt (MS-TDS 2.2.6.4): the stand-in has no federated
/// authentication layer, so per MS-TDS 3.3.5.5 the login fails and nothing reaches
/// the backend.
#[tokio::test]
async fn an_azure_ad_token_login_is_refused_with_18456() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    let mut config = config(&server, USER, PASSWORD, Some(DATABASE));
    config.authentication(tiberius::AuthMethod::aad_token("not-a-real-token"));
    let err = connect_with(config).await.expect_err("login must fail");

    match err {
        tiberius::error::Error::Server(e) => {
            assert_eq!((e.code(), e.class()), (18456, 14));
            assert_eq!(e.message(), "Login failed for user '<token-identified principal>'.");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert!(backend.logins().is_empty(), "no SQL login was attempted");
    server.shutdown().await;
}

#[tokio::test]
async fn client_requiring_encryption_is_refused_by_a_server_without_tls() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;

    for level in [EncryptionLevel::Required, EncryptionLevel::On] {
        let mut config = config(&server, USER, PASSWORD, Some(DATABASE));
        config.encryption(level);
        config.trust_cert();
        let err = connect_with(config).await.expect_err("must be refused");
        assert!(
            err.to_string()
                .contains("Server does not allow the requested encryption level"),
            "{level:?}: {err}"
        );
    }
    assert!(backend.logins().is_empty(), "no credentials were sent");
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_instead_of_prelogin_closes_the_connection() {
    let backend = FakeBackend::new();
    let server = start(&backend).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    // A SQL batch packet before any PRELOGIN.
    tcp.write_all(&[0x01, 0x01, 0x00, 0x0A, 0, 0, 1, 0, b'h', 0])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
        .await
        .expect("server reacts")
        .unwrap_or(0);
    assert_eq!(n, 0, "server closes without answering");

    // The server is still healthy.
    let client = connect(&server).await;
    drop(client);
    server.shutdown().await;
}
