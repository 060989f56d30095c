-- sample/001: the sample "Shop" schema used by scripts/demo and docker/compose.yml.
-- Run in the Shop database before the numbered migrations:
--   sqlcmd -d Shop -i migrations/sample/001_sample_schema.sql
-- Covers every column type the sidecar maps (see README, "Type mapping"). Idempotent.

-- CREATE SCHEMA must be the first statement of its batch, so it cannot follow IF
-- directly; EXEC runs it as a batch of its own.
IF NOT EXISTS (SELECT 1 FROM sys.schemas WHERE name = N'sales')
    EXEC (N'CREATE SCHEMA [sales]');
GO

IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE object_id = OBJECT_ID(N'[dbo].[Customers]'))
    CREATE TABLE [dbo].[Customers] (
        [Id] int NOT NULL PRIMARY KEY,
        [Name] nvarchar(100) NOT NULL,
        [Email] varchar(200) NULL,
        [CreatedAt] datetime2(3) NOT NULL,
        [ExternalId] uniqueidentifier NOT NULL
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE object_id = OBJECT_ID(N'[dbo].[Orders]'))
    CREATE TABLE [dbo].[Orders] (
        [Id] bigint NOT NULL PRIMARY KEY,
        [CustomerId] int NOT NULL,
        [Total] decimal(18, 2) NOT NULL,
        [Currency] char(3) NOT NULL,
        [PlacedAt] datetimeoffset(7) NOT NULL,
        [Note] nvarchar(max) NULL,
        [Paid] bit NOT NULL
    );
GO

-- [LineNo] must stay bracketed: LINENO is a reserved word.
IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE object_id = OBJECT_ID(N'[sales].[OrderLines]'))
    CREATE TABLE [sales].[OrderLines] (
        [OrderId] bigint NOT NULL,
        [LineNo] smallint NOT NULL,
        [Sku] varchar(40) NOT NULL,
        [Qty] int NOT NULL,
        [Price] money NOT NULL,
        [Weight] real NULL,
        [Discount] float NULL,
        [ShipDate] date NULL,
        [ShipTime] time(3) NULL,
        [Payload] varbinary(max) NULL,
        [LegacyTs] datetime NULL,
        [Flags] tinyint NOT NULL,
        PRIMARY KEY ([OrderId], [LineNo])
    );
GO
