//! Logins, users and permissions: 18456 for a bad login, 4060 for a database the
//! login cannot open, 229 for a missing SELECT or VIEW CHANGE TRACKING grant, and
//! metadata hidden from principals without any permission.

mod engine_support;

use engine_support::*;
use testkit::mssql::engine::Engine;
use testkit::mssql::types::Value;

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    fn with_user() -> Engine {
        let engine = shop();
        engine
            .execute(
                "Shop",
                "CREATE LOGIN [app] WITH PASSWORD = N'App-Passw0rd!'; CREATE USER [app] FOR LOGIN [app];",
            )
            .expect("login");
        engine
    }

    #[test]
    fn wrong_password_or_unknown_login_is_18456() {
        let engine = with_user();
        for (user, password) in [("app", "wrong"), ("nobody", "x"), ("sa", "")] {
            let e = login(&engine, user, password, Some("Shop")).err().expect("login fails");
            assert_eq!((e.number, e.class, e.state), (18456, 14, 1));
            assert_eq!(e.message, format!("Login failed for user '{user}'."));
        }
    }

    #[test]
    fn sa_password_is_configurable() {
        let engine = Engine::with_sa_password("Other-Pw1!");
        assert!(login(&engine, "sa", "Other-Pw1!", None).is_ok());
        assert!(login(&engine, "sa", testkit::mssql::engine::DEFAULT_SA_PASSWORD, None).is_err());
    }

    #[test]
    fn missing_database_or_no_user_there_is_4060() {
        let engine = with_user();
        let e = login(&engine, "sa", testkit::mssql::engine::DEFAULT_SA_PASSWORD, Some("Nope"))
            .err()
            .expect("4060");
        assert_eq!((e.number, e.class), (4060, 11));
        assert_eq!(
            e.message,
            "Cannot open database \"Nope\" requested by the login. The login failed."
        );
        engine.execute("master", "CREATE DATABASE Other").expect("db");
        let e = login(&engine, "app", "App-Passw0rd!", Some("Other"))
            .err()
            .expect("no user");
        assert_eq!(e.number, 4060);
        assert!(login(&engine, "app", "App-Passw0rd!", Some("Shop")).is_ok());
        // master admits every login through its guest user; the default database is master.
        let s = login(&engine, "app", "App-Passw0rd!", None).expect("master via guest");
        use testkit::mssql::types::BackendSession;
        assert_eq!(s.database(), "master");
    }

    #[test]
    fn select_without_permission_is_229() {
        let engine = with_user();
        let mut s = login(&engine, "app", "App-Passw0rd!", Some("Shop")).expect("login");
        let e = error_of(&mut s, "SELECT * FROM dbo.Orders", &[]);
        assert_eq!((e.number, e.class), (229, 14));
        assert_eq!(
            e.message,
            "The SELECT permission was denied on the object 'Orders', database 'Shop', schema 'dbo'."
        );
        // Without any permission the object is invisible to metadata functions.
        let r = rows(&run(&mut s, "SELECT OBJECT_ID(N'dbo.Orders')", &[]));
        assert_eq!(r, vec![vec![Value::Null]]);
    }

    #[test]
    fn changetable_without_view_change_tracking_is_229() {
        let engine = with_user();
        engine
            .execute("Shop", "GRANT SELECT ON SCHEMA::[dbo] TO [app]")
            .expect("grant");
        let mut s = login(&engine, "app", "App-Passw0rd!", Some("Shop")).expect("login");
        run(&mut s, "SELECT * FROM dbo.Orders", &[]);
        let e = error_of(&mut s, "SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT", &[]);
        assert_eq!((e.number, e.class), (229, 14));
        assert_eq!(
            e.message,
            "The VIEW CHANGE TRACKING permission was denied on the object 'Orders', database 'Shop', schema 'dbo'."
        );
        let r = rows(&run(
        &mut s,
        "SELECT HAS_PERMS_BY_NAME(N'dbo.Orders', N'OBJECT', N'SELECT'), HAS_PERMS_BY_NAME(N'dbo.Orders', N'OBJECT', N'VIEW CHANGE TRACKING')",
        &[],
    ));
        assert_eq!(r, vec![vec![Value::Int(1), Value::Int(0)]]);
        engine
            .execute("Shop", "GRANT VIEW CHANGE TRACKING ON OBJECT::dbo.Orders TO app")
            .expect("grant");
        run(&mut s, "SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT", &[]);
    }

    #[test]
    fn a_reader_cannot_write_or_configure() {
        let engine = with_user();
        engine
            .execute("Shop", "GRANT SELECT ON SCHEMA::dbo TO app")
            .expect("grant");
        let mut s = login(&engine, "app", "App-Passw0rd!", Some("Shop")).expect("login");
        assert_eq!(
            error_of(&mut s, "INSERT INTO dbo.Orders VALUES (1, N'a', 1)", &[]).number,
            229
        );
        assert_eq!(
            error_of(&mut s, "CREATE LOGIN x WITH PASSWORD = N'y'", &[]).number,
            15247
        );
        assert_eq!(
            error_of(&mut s, "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION OFF", &[]).number,
            5011
        );
    }

    #[test]
    fn creating_an_existing_login_or_user_is_refused() {
        let engine = with_user();
        assert_eq!(
            engine
                .execute("Shop", "CREATE LOGIN [app] WITH PASSWORD = N'x'")
                .expect_err("dup")
                .number,
            15025
        );
        assert_eq!(
            engine
                .execute("Shop", "CREATE USER [app] FOR LOGIN [app]")
                .expect_err("dup")
                .number,
            15023
        );
    }

    #[test]
    fn deny_overrides_a_schema_grant_and_revoke_removes_both() {
        let engine = with_user();
        engine
            .execute(
                "Shop",
                "GRANT SELECT ON SCHEMA::[dbo] TO [app]; DENY SELECT ON OBJECT::dbo.Orders TO [app]",
            )
            .expect("grant + deny");
        let mut s = login(&engine, "app", "App-Passw0rd!", Some("Shop")).expect("login");
        assert_eq!(error_of(&mut s, "SELECT * FROM dbo.Orders", &[]).number, 229);
        engine
            .execute("Shop", "REVOKE SELECT ON OBJECT::dbo.Orders FROM [app]")
            .expect("revoke the deny");
        run(&mut s, "SELECT * FROM dbo.Orders", &[]);
        engine
            .execute("Shop", "REVOKE SELECT ON SCHEMA::[dbo] FROM [app]")
            .expect("revoke the grant");
        assert_eq!(error_of(&mut s, "SELECT * FROM dbo.Orders", &[]).number, 229);
    }
}
