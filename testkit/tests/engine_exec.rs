//! `EXEC (N'…')` runs its text as a batch of its own, which is how T-SQL creates a
//! schema conditionally; `CREATE SCHEMA` elsewhere than at a batch start is refused.

use testkit::mssql::engine::Engine;

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    #[test]
    fn exec_string_creates_a_schema_conditionally_and_twice_is_harmless() {
        let e = Engine::new();
        e.execute("master", "CREATE DATABASE [S]").unwrap();
        let script = "IF NOT EXISTS (SELECT 1 FROM sys.schemas WHERE name = N'sales') EXEC (N'CREATE SCHEMA [sales]');";
        e.execute("S", script).unwrap();
        e.execute("S", script).unwrap();
        e.execute("S", "CREATE TABLE [sales].[T] ([Id] int NOT NULL PRIMARY KEY)")
            .unwrap();
    }

    #[test]
    fn create_schema_under_if_is_a_syntax_error_as_in_sql_server() {
        let e = Engine::new();
        e.execute("master", "CREATE DATABASE [S]").unwrap();
        let err = e
            .execute(
                "S",
                "IF NOT EXISTS (SELECT 1 FROM sys.schemas WHERE name = N'x') CREATE SCHEMA [x];",
            )
            .unwrap_err();
        assert_eq!(err.number, 156, "{err}");
    }
}
