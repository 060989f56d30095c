//! Collation through the real tiberius client: the default `SQL_Latin1_General_CP1_CI_AS`
//! is case-insensitive and accent-sensitive; `varchar` sorts by the SQL collation's
//! non-Unicode sort order (hyphen and apostrophe are ordinary punctuation, before
//! letters), while a comparison with an `nvarchar` operand, which is what tiberius binds
//! a Rust `&str` as, converts the varchar side to nvarchar (data type precedence) and
//! compares by the Unicode "word sort" rules (hyphen and apostrophe weighed last, so
//! `coop` < `co-op` < `cork`). Microsoft KB 322112 "Comparing SQL collations to Windows
//! collations" and KB 305704; see `testkit/src/mssql/engine/collation.rs`.
//!
//! Keyset pagination `WHERE k > @P1 ORDER BY k` over a varchar key with an nvarchar
//! parameter therefore mixes two orders and skips or repeats rows;
//! `WHERE k > CAST(@P1 AS varchar(50))` pages correctly.

mod engine_support;
mod engine_tds_support;

use engine_support::shop;
use engine_tds_support::{Standin, TdsClient};
use testkit::mssql::engine::Engine;
use testkit::mssql::wire::MssqlServer;
use tiberius::ToSql;

/// The keys of the issue, inserted in this (arbitrary) order.
const KEYS: [&str; 8] = ["b", "coop", "AC", "a-b", "co-op", "ab", "Co-Op2", "a'c"];

/// The keys in `varchar` (non-Unicode, sort order 52) order.
const SQL_ORDER: [&str; 8] = ["a'c", "a-b", "ab", "AC", "b", "co-op", "Co-Op2", "coop"];

/// The keys in `nvarchar` (Unicode word sort) order.
const WORD_ORDER: [&str; 8] = ["ab", "a-b", "AC", "a'c", "b", "coop", "co-op", "Co-Op2"];

/// The stand-in serving `engine`, and a client logged in as `sa` on `Shop`.
async fn connect(engine: &Engine) -> (MssqlServer, TdsClient) {
    let standin = Standin::start(engine.clone()).await;
    let client = standin.sa("Shop").await;
    (standin.server, client)
}

/// `Shop` with `dbo.Keys (k varchar(50) PRIMARY KEY)` holding [`KEYS`].
async fn keys_table(key_type: &str) -> (MssqlServer, TdsClient) {
    let engine = shop();
    let values = KEYS
        .iter()
        .map(|k| format!("('{}')", k.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    engine
        .execute(
            "Shop",
            &format!(
                "CREATE TABLE dbo.Keys (k {key_type} NOT NULL PRIMARY KEY); INSERT INTO dbo.Keys (k) VALUES {values};"
            ),
        )
        .expect("create and fill dbo.Keys");
    connect(&engine).await
}

/// The first column of every row of `sql`'s first result set, as strings.
async fn strings(client: &mut TdsClient, sql: &str, params: &[&dyn ToSql]) -> Vec<String> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<&str, _>(0).expect("a string").to_string())
        .collect()
}

/// The first integer of `sql`'s first row.
async fn int(client: &mut TdsClient, sql: &str, params: &[&dyn ToSql]) -> i32 {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_row()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .get::<i32, _>(0)
        .expect("an int")
}

/// The server error number `sql` fails with.
async fn error_number(client: &mut TdsClient, sql: &str) -> (u32, String) {
    match client.execute(sql, &[]).await {
        Err(tiberius::error::Error::Server(e)) => (e.code(), e.message().to_string()),
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

/// Pages through `dbo.Keys` three keys at a time with `predicate` (over `@P1`, the last
/// key seen, bound as tiberius binds a `&str`: nvarchar), as a keyset reader does.
async fn keyset_pages(client: &mut TdsClient, predicate: &str) -> Vec<Vec<String>> {
    let sql = format!("SELECT TOP (3) k FROM dbo.Keys WHERE {predicate} ORDER BY k");
    let mut pages = Vec::new();
    let mut last = String::new();
    for _ in 0..20 {
        let page = strings(client, &sql, &[&last.as_str()]).await;
        let full = page.len() == 3;
        if let Some(k) = page.last() {
            last = k.clone();
        }
        if !page.is_empty() {
            pages.push(page);
        }
        if !full {
            return pages;
        }
    }
    panic!("pagination did not finish: {pages:?}");
}

#[tokio::test]
async fn varchar_equality_is_case_insensitive() {
    let (server, mut client) = keys_table("varchar(50)").await;
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys WHERE k = 'ac'", &[]).await,
        ["AC"]
    );
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys WHERE k = @P1", &[&"CO-OP2"]).await,
        ["Co-Op2"]
    );
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys WHERE k IN ('B', 'COOP') ORDER BY k",
            &[]
        )
        .await,
        ["b", "coop"],
        "the hyphen is not ignored by equality: 'coop' <> 'co-op'"
    );
    assert_eq!(
        int(
            &mut client,
            "SELECT CASE WHEN 'ABC' = 'abc' AND N'ABC' = N'abc' AND 'abc  ' = 'ABC' THEN 1 ELSE 0 END",
            &[]
        )
        .await,
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn varchar_primary_key_rejects_case_variant_with_2627() {
    let (server, mut client) = keys_table("varchar(50)").await;
    client
        .execute("CREATE TABLE dbo.Codes (code varchar(10) NOT NULL PRIMARY KEY)", &[])
        .await
        .expect("create");
    client
        .execute("INSERT INTO dbo.Codes (code) VALUES ('A')", &[])
        .await
        .expect("first insert");
    let (number, message) = error_number(&mut client, "INSERT INTO dbo.Codes (code) VALUES ('a')").await;
    assert_eq!(number, 2627);
    assert!(
        message.contains("Cannot insert duplicate key in object 'dbo.Codes'. The duplicate key value is (a)."),
        "{message}"
    );
    // Through a parameter too, and on the keys.
    let dup = client
        .execute("INSERT INTO dbo.Keys (k) VALUES (@P1)", &[&"CO-OP"])
        .await
        .expect_err("co-op exists as 'co-op'");
    assert!(
        matches!(&dup, tiberius::error::Error::Server(e) if e.code() == 2627),
        "{dup:?}"
    );
    assert_eq!(int(&mut client, "SELECT COUNT(*) FROM dbo.Codes", &[]).await, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn accents_are_significant() {
    let (server, mut client) = keys_table("varchar(50)").await;
    client
        .execute(
            "CREATE TABLE dbo.Words (w varchar(10) NOT NULL PRIMARY KEY); INSERT INTO dbo.Words (w) VALUES ('e'), ('é'), ('E-e')",
            &[],
        )
        .await
        .expect("'e' and 'é' are different keys");
    assert_eq!(
        strings(&mut client, "SELECT w FROM dbo.Words WHERE w = 'É'", &[]).await,
        ["é"],
        "case-insensitive, accent-sensitive"
    );
    assert_eq!(
        strings(&mut client, "SELECT w FROM dbo.Words WHERE w = @P1", &[&"E"]).await,
        ["e"]
    );
    assert_eq!(
        int(
            &mut client,
            "SELECT CASE WHEN 'e' = 'é' OR N'e' = N'é' THEN 1 ELSE 0 END",
            &[]
        )
        .await,
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn order_by_varchar_uses_sql_sort_where_hyphen_is_punctuation() {
    let (server, mut client) = keys_table("varchar(50)").await;
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys ORDER BY k", &[]).await,
        SQL_ORDER,
        "varchar: '-' and '\\'' are punctuation, sorting before letters"
    );
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys ORDER BY k DESC", &[]).await,
        SQL_ORDER.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys ORDER BY CAST(k AS nvarchar(50))",
            &[]
        )
        .await,
        WORD_ORDER,
        "the same keys as nvarchar sort by word sort"
    );
    assert_eq!(strings(&mut client, "SELECT MIN(k) FROM dbo.Keys", &[]).await, ["a'c"]);
    server.shutdown().await;
}

#[tokio::test]
async fn varchar_compared_with_nvarchar_param_uses_unicode_word_sort() {
    let (server, mut client) = keys_table("varchar(50)").await;
    // A varchar literal keeps the comparison non-Unicode: 'coop' > 'co-op'.
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys WHERE k > 'co-op' ORDER BY k", &[]).await,
        ["Co-Op2", "coop"]
    );
    // An nvarchar parameter makes it Unicode: 'coop' < N'co-op'.
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys WHERE k > @P1 ORDER BY k",
            &[&"co-op"]
        )
        .await,
        ["Co-Op2"]
    );
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys WHERE k < @P1 AND k >= N'c' ORDER BY k",
            &[&"co-op"]
        )
        .await,
        ["coop"]
    );
    // 'a''c' sorts first as varchar, yet is greater than N'AC' (the apostrophe weighs last).
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys WHERE k > @P1 ORDER BY k", &[&"AC"]).await,
        ["a'c", "b", "co-op", "Co-Op2", "coop"]
    );
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys WHERE k > CAST(@P1 AS varchar(50)) ORDER BY k",
            &[&"AC"]
        )
        .await,
        ["b", "co-op", "Co-Op2", "coop"]
    );
    assert_eq!(
        strings(
            &mut client,
            "SELECT k FROM dbo.Keys WHERE k BETWEEN @P1 AND N'ac' ORDER BY k",
            &[&"ab"]
        )
        .await,
        ["a-b", "ab", "AC"],
        "word sort: N'ab' <= 'a-b' and 'AC' <= N'ac' < 'a''c'"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn keyset_pagination_with_nvarchar_param_over_varchar_key_skips_or_repeats_rows() {
    let (server, mut client) = keys_table("varchar(50)").await;
    let pages = keyset_pages(&mut client, "k > @P1").await;
    assert_eq!(
        pages,
        [
            vec!["a'c", "a-b", "ab"],
            vec!["a'c", "a-b", "AC"],
            vec!["a'c", "b", "co-op"],
            vec!["Co-Op2"],
        ]
    );
    let seen: Vec<String> = pages.concat();
    assert_ne!(seen, SQL_ORDER, "rows returned != table");
    assert_eq!(seen.iter().filter(|k| *k == "a'c").count(), 3, "repeated");
    assert!(!seen.iter().any(|k| k == "coop"), "skipped");
    server.shutdown().await;
}

#[tokio::test]
async fn keyset_pagination_with_cast_to_varchar_returns_every_row_once() {
    let (server, mut client) = keys_table("varchar(50)").await;
    let pages = keyset_pages(&mut client, "k > CAST(@P1 AS varchar(50))").await;
    assert_eq!(
        pages,
        [
            vec!["a'c", "a-b", "ab"],
            vec!["AC", "b", "co-op"],
            vec!["Co-Op2", "coop"],
        ]
    );
    assert_eq!(pages.concat(), SQL_ORDER);
    server.shutdown().await;
}

#[tokio::test]
async fn nvarchar_key_is_stored_in_word_sort_order_and_pages_with_nvarchar_param() {
    let (server, mut client) = keys_table("nvarchar(50)").await;
    assert_eq!(
        strings(&mut client, "SELECT k FROM dbo.Keys ORDER BY k", &[]).await,
        WORD_ORDER
    );
    let pages = keyset_pages(&mut client, "k > @P1").await;
    assert_eq!(pages.concat(), WORD_ORDER);
    server.shutdown().await;
}

#[tokio::test]
async fn text_columns_carry_the_default_collation_and_collate_names_only_it() {
    let (server, mut client) = keys_table("varchar(50) COLLATE SQL_Latin1_General_CP1_CI_AS").await;
    assert_eq!(
        strings(
            &mut client,
            "SELECT collation_name FROM sys.columns WHERE object_id = OBJECT_ID(N'dbo.Keys')",
            &[]
        )
        .await,
        ["SQL_Latin1_General_CP1_CI_AS"]
    );
    client
        .execute(
            "CREATE TABLE dbo.D (a nvarchar(5) COLLATE database_default NOT NULL PRIMARY KEY, n int NULL)",
            &[],
        )
        .await
        .expect("database_default");
    let (number, message) = error_number(
        &mut client,
        "CREATE TABLE dbo.E (n int COLLATE SQL_Latin1_General_CP1_CI_AS)",
    )
    .await;
    assert_eq!(
        (number, message.as_str()),
        (447, "Expression type int is invalid for COLLATE clause.")
    );
    // Another collation is real SQL Server's, but not the stand-in's: refused, not ignored.
    let (number, _) = error_number(
        &mut client,
        "CREATE TABLE dbo.F (s varchar(5) COLLATE Latin1_General_CS_AS)",
    )
    .await;
    assert_eq!(number, 40517);
    server.shutdown().await;
}
