//! Encryption: the TLS handshake wrapped in PRELOGIN packets, full encryption and
//! login-only encryption, with tiberius (rustls) trusting a self-signed certificate.

mod tds_common;

use tds_common::*;
use testkit::mssql::types::{SqlType, Value};
use testkit::mssql::wire::{MssqlServerConfig, TlsSettings};
use tiberius::EncryptionLevel;

fn tls_config(force: bool) -> MssqlServerConfig {
    let mut tls = TlsSettings::self_signed(&["localhost"]).expect("certificate");
    tls.force_encryption = force;
    MssqlServerConfig {
        tls: Some(tls),
        ..MssqlServerConfig::default()
    }
}

async fn query_over(level: EncryptionLevel, force: bool) {
    let backend = FakeBackend::new();
    let big = "é".repeat(20_000);
    backend.script(
        "SELECT secret",
        vec![rows("v", SqlType::NVarChar(None), vec![Value::String(big.clone())])],
    );
    let server = start_with(&backend, tls_config(force)).await;
    let mut config = config(&server, USER, PASSWORD, Some(DATABASE));
    config.encryption(level);
    config.trust_cert();

    let mut client = connect_with(config).await.expect("login over TLS");
    let row = first_row(&mut client, "SELECT secret").await;

    assert_eq!(row.get::<&str, _>(0), Some(big.as_str()), "{level:?}");
    assert_eq!(backend.logins()[0].1, PASSWORD, "password decoded through TLS");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn required_encryption_connects_with_trust_cert() {
    query_over(EncryptionLevel::Required, false).await;
}

#[tokio::test]
async fn encryption_on_connects_with_trust_cert() {
    query_over(EncryptionLevel::On, false).await;
}

#[tokio::test]
async fn login_only_encryption_then_plain_traffic() {
    query_over(EncryptionLevel::Off, false).await;
}

#[tokio::test]
async fn a_forcing_server_encrypts_clients_that_only_allow_it() {
    query_over(EncryptionLevel::Off, true).await;
}

#[tokio::test]
async fn a_client_without_encryption_still_connects_to_a_non_forcing_tls_server() {
    query_over(EncryptionLevel::NotSupported, false).await;
}

#[tokio::test]
async fn an_untrusted_self_signed_certificate_is_rejected_by_the_client() {
    let backend = FakeBackend::new();
    let server = start_with(&backend, tls_config(false)).await;
    let mut config = config(&server, USER, PASSWORD, Some(DATABASE));
    config.encryption(EncryptionLevel::Required);

    let result = connect_with(config).await;

    assert!(result.is_err(), "certificate must not be trusted by default");
    assert!(backend.logins().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn tds8_strict_encryption_starts_tls_before_prelogin() {
    query_over(EncryptionLevel::Strict, false).await;
}
