-- 004: the sidecar's least-privilege login: SELECT and VIEW CHANGE TRACKING on one
-- schema, exactly what its startup check requires. Run once per schema that holds a
-- streamed table (the login and user are created on the first run only):
--   sqlcmd -d Shop -v Login=cdc_sidecar Password="..." Schema=dbo -i migrations/004_sidecar_login.sql
-- CREATE LOGIN runs in master's scope but may be issued from any database; the user is
-- created in the current database. Idempotent: GRANT of a held permission is a no-op.
IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'$(Login)')
    CREATE LOGIN [$(Login)] WITH PASSWORD = N'$(Password)';
GO
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'$(Login)')
    CREATE USER [$(Login)] FOR LOGIN [$(Login)];
GO
GRANT SELECT ON SCHEMA::[$(Schema)] TO [$(Login)];
GO
GRANT VIEW CHANGE TRACKING ON SCHEMA::[$(Schema)] TO [$(Login)];
GO
