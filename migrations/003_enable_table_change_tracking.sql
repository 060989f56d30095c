-- 003: turn on Change Tracking for one table; run once per streamed table:
--   sqlcmd -d Shop -v Table="[dbo].[Orders]" -i migrations/003_enable_table_change_tracking.sql
-- $(Table) is the bracket-quoted two-part name. The table needs a primary key.
-- TRACK_COLUMNS_UPDATED fills "changed_columns" of update events.
-- Idempotent: does nothing when the table is already tracked.
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'$(Table)'))
    ALTER TABLE $(Table) ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);
GO
