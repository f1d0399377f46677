"""stock_assets: daily stock predictions as a Dagster asset graph on Postgres and MLflow."""
