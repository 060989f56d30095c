#!/usr/bin/env bash
# Runs migrations/ in order against SQL Server with sqlcmd: the `migrate` service of
# compose.yml. Everything comes from the environment (defaults: the sample Shop setup):
#   MSSQL_HOST, MSSQL_PORT, MSSQL_SA_PASSWORD (required), DATABASE, TABLES, SCHEMAS,
#   SIDECAR_LOGIN, SIDECAR_PASSWORD (required), SAMPLE=1 to create the sample schema,
#   MIGRATIONS (the migrations/ directory), SQLCMD (the sqlcmd binary).
set -euo pipefail
set -f # TABLES holds [schema].[table] names: no globbing

: "${MSSQL_SA_PASSWORD:?set MSSQL_SA_PASSWORD}"
: "${SIDECAR_PASSWORD:?set SIDECAR_PASSWORD}"
host=${MSSQL_HOST:-mssql}
port=${MSSQL_PORT:-1433}
database=${DATABASE:-Shop}
tables=${TABLES:-[dbo].[Customers] [dbo].[Orders] [sales].[OrderLines]}
schemas=${SCHEMAS:-dbo sales}
login=${SIDECAR_LOGIN:-cdc_sidecar}
dir=${MIGRATIONS:-/migrations}
sqlcmd=${SQLCMD:-/opt/mssql-tools18/bin/sqlcmd}

# -b: stop and exit non-zero on the first error; -C: trust the server's self-signed
# certificate (the development server has no other).
sq() { "$sqlcmd" -S "tcp:$host,$port" -U sa -P "$MSSQL_SA_PASSWORD" -C -b "$@"; }

echo "migrate: database [$database] on $host,$port"
# Database names cannot be parameters; only the sample's name is expected here.
sq -d master -Q "IF DB_ID(N'$database') IS NULL CREATE DATABASE [$database];"
if [ "${SAMPLE:-1}" = 1 ]; then
  echo "migrate: sample/001_sample_schema.sql"
  sq -d "$database" -i "$dir/sample/001_sample_schema.sql"
fi
for f in 001_enable_database_change_tracking.sql 002_allow_snapshot_isolation.sql; do
  echo "migrate: $f"
  sq -d "$database" -i "$dir/$f"
done
for t in $tables; do
  echo "migrate: 003_enable_table_change_tracking.sql Table=$t"
  sq -d "$database" -v Table="$t" -i "$dir/003_enable_table_change_tracking.sql"
done
for s in $schemas; do
  echo "migrate: 004_sidecar_login.sql Login=$login Schema=$s"
  sq -d "$database" -v Login="$login" Password="$SIDECAR_PASSWORD" Schema="$s" -i "$dir/004_sidecar_login.sql"
done
echo "migrate: done"
