-- 002: allow SNAPSHOT isolation, which the sidecar uses to read every table's changes
-- at one consistent version per poll (run with sqlcmd -d <database>).
-- On a busy server the ALTER waits until transactions open before it have finished.
-- Idempotent: does nothing when snapshot isolation is already allowed.
IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE database_id = DB_ID() AND snapshot_isolation_state = 1)
    ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON;
GO
