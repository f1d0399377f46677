#!/bin/bash
# Runs once, when the postgres volume is first initialized (official image's initdb hook), as
# the superuser: the only thing that ever uses it. One role per job, each limited to its database:
#
#   dagster_app   owns `dagster` (Dagster's runs, events, schedules)    webserver, daemon, code, runs
#   mlflow_app    owns `mlflow` and `mlflow_auth` (tracking, users)     the MLflow server
#   stock_writer  creates and writes the tables of `stocks`             code server, runs
#   api_reader    reads every present and future table of `stocks`      the API
#
# No role is a superuser or may create roles or databases; none may connect to another's
# database. Passwords reach SQL as psql variables (:'name'), never spliced into the text, so any
# character is safe in them.
set -euo pipefail
for name in DAGSTER_DB_PASSWORD MLFLOW_DB_PASSWORD WRITER_DB_PASSWORD API_DB_PASSWORD; do
    if [ -z "${!name:-}" ]; then
        echo "$name must be set (see .env.example)" >&2
        exit 1
    fi
done

run_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" "$@"
}

run_psql --dbname postgres \
    -v dagster_password="$DAGSTER_DB_PASSWORD" \
    -v mlflow_password="$MLFLOW_DB_PASSWORD" \
    -v writer_password="$WRITER_DB_PASSWORD" \
    -v api_password="$API_DB_PASSWORD" <<'SQL'
CREATE ROLE dagster_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'dagster_password';
CREATE ROLE mlflow_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';
CREATE ROLE stock_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'writer_password';
CREATE ROLE api_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'api_password';
ALTER ROLE api_reader SET default_transaction_read_only = on;

CREATE DATABASE dagster OWNER dagster_app;
CREATE DATABASE mlflow OWNER mlflow_app;
CREATE DATABASE mlflow_auth OWNER mlflow_app;
CREATE DATABASE stocks;

-- nobody connects by default; each role to its own database only
REVOKE ALL ON DATABASE dagster, mlflow, mlflow_auth, stocks, postgres FROM PUBLIC;
GRANT CONNECT ON DATABASE dagster TO dagster_app;
GRANT CONNECT ON DATABASE mlflow, mlflow_auth TO mlflow_app;
GRANT CONNECT, TEMPORARY ON DATABASE stocks TO stock_writer;
GRANT CONNECT ON DATABASE stocks TO api_reader;
-- the platform checks at start that its databases exist (it cannot create them)
GRANT CONNECT ON DATABASE postgres TO stock_writer;
SQL

run_psql --dbname stocks <<'SQL'
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO stock_writer;
GRANT USAGE ON SCHEMA public TO api_reader;
-- tables the writer creates later are readable by the API, and only readable
ALTER DEFAULT PRIVILEGES FOR ROLE stock_writer IN SCHEMA public
    GRANT SELECT ON TABLES TO api_reader;
SQL
