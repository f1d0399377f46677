#!/bin/bash
# Runs once, when the postgres volume is first initialized (official image's initdb hook).
# Databases for Dagster, the platform's tables and MLflow, all owned by POSTGRES_USER; a read-only
# role for the API that can read every present and future table of `stocks` and nothing else.
set -euo pipefail
: "${API_DB_PASSWORD:?API_DB_PASSWORD must be set (see .env.example)}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE DATABASE dagster;
CREATE DATABASE stocks;
CREATE DATABASE mlflow;
CREATE ROLE api_reader LOGIN PASSWORD '${API_DB_PASSWORD}';
REVOKE ALL ON DATABASE dagster, mlflow FROM PUBLIC;
GRANT CONNECT ON DATABASE stocks TO api_reader;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname stocks <<SQL
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO api_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO api_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE "${POSTGRES_USER}" IN SCHEMA public
    GRANT SELECT ON TABLES TO api_reader;
ALTER ROLE api_reader SET default_transaction_read_only = on;
SQL
