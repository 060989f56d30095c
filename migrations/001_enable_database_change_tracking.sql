-- 001: turn on Change Tracking for the current database (run with sqlcmd -d <database>).
--
-- Retention is 3 days. It must exceed the longest sidecar outage you want to survive
-- without a resync (a full re-snapshot): after a longer outage the sidecar's checkpoint
-- falls below CHANGE_TRACKING_MIN_VALID_VERSION and the table is re-snapshotted.
-- To use another value, edit "3 DAYS" below before the first run; on a database that
-- already has Change Tracking, this script changes nothing, so instead run
--   ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = 7 DAYS);
-- Idempotent: does nothing when Change Tracking is already on.
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
    ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 3 DAYS, AUTO_CLEANUP = ON);
GO
