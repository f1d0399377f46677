# One image for the user-code server, the webserver, the daemon, every run container, the API
# and the MLflow tracking server. Build: docker build -t stock-assets:local .
# Pinned by digest: a tag moves, a digest does not. The multi-platform index of
# python:3.11-slim-bookworm as resolved on 2026-10-01 (`docker buildx imagetools inspect
# python:3.11-slim-bookworm` prints the current one; bump it deliberately, with the tests).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- build: a virtualenv with the project and its pinned dependencies ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU torch first, from PyTorch's CPU index: a bare `torch` from PyPI pulls several GB of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stock_assets ./stock_assets
COPY api ./api
RUN pip install ".[deploy]"

# --- runtime: no compilers, a non-root user -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    STOCK_ASSETS_HOME=/app/state \
    MLFLOW_DISABLE_TELEMETRY=true \
    DAGSTER_EVENT_BATCH_SIZE=1000 \
    XDG_CACHE_HOME=/tmp/cache
WORKDIR /app
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
COPY deploy/workspace.yaml /app/workspace.yaml
# Mount points exist and belong to `app` in the image, so named volumes start out owned by it:
# the MLflow server (the only writer of artifacts) can always write /mlartifacts, and runs
# /app/exports. Containers run with a read-only root filesystem (tmpfs for scratch).
RUN mkdir -p /app/state /app/exports /mlartifacts /opt/dagster/home/storage \
 && chown -R app:app /app /mlartifacts /opt/dagster
USER app
EXPOSE 3000 4000 5000 8000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "stock_assets.definitions"]
