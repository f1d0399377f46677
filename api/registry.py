"""What the API reads from the MLflow registry: the `production` alias, version kinds, runs.

MLflow's client is synchronous and its SQL store retries a dead server for minutes, so calls
run in a worker thread under a timeout, and a failure says "registry unavailable" (503) at once.
Versions never change their kind or run, so those lookups are cached for the process's life;
the alias is re-read at most every `alias_ttl` seconds, and whenever the database says a
promotion was written (the caller passes its write counters as `version_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

from stock_assets.storage.schema import PRODUCTION_ALIAS

ALIAS = PRODUCTION_ALIAS
_FINAL = {"FINISHED", "FAILED", "KILLED"}


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking/registry store cannot be read."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    kind: str | None
    run_id: str | None
    cutoff: str | None
    dataset_run_id: str | None


class RegistryReader:
    def __init__(self, tracking_uri: str | None, timeout: float = 10.0, alias_ttl: float = 30.0):
        self.tracking_uri = tracking_uri
        self.timeout = timeout
        self.alias_ttl = alias_ttl
        self._client: Any = None
        self._versions: dict[tuple[str, str], VersionInfo] = {}
        self._missing: dict[tuple[str, str], float] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._alias: dict[str, tuple[Any, float, VersionInfo | None]] = {}

    def _make_client(self) -> Any:
        if not self.tracking_uri:
            raise RegistryUnavailable("no MLflow tracking URI is configured (MLFLOW_TRACKING_URI)")
        if self.tracking_uri.startswith("postgresql"):
            # MLflow's SQL store would retry an unreachable server for minutes: ask libpq first.
            import psycopg2

            try:
                psycopg2.connect(
                    "postgresql://" + self.tracking_uri.split("://", 1)[1], connect_timeout=5
                ).close()
            except psycopg2.Error as exc:
                raise RegistryUnavailable(f"MLflow store unreachable: {exc}".strip()) from exc
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    async def _call(self, fn, *args: Any) -> Any:
        def run() -> Any:
            if self._client is None:
                self._client = self._make_client()
            return fn(self._client, *args)

        try:
            return await asyncio.wait_for(asyncio.to_thread(run), self.timeout)
        except RegistryUnavailable:
            raise
        except TimeoutError as exc:
            raise RegistryUnavailable(
                f"MLflow registry did not answer in {self.timeout} s"
            ) from exc
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException) and _is_missing(exc):
                raise LookupError(str(exc)) from exc
            if isinstance(exc, MlflowException | OSError) or "OperationalError" in repr(exc):
                raise RegistryUnavailable(f"MLflow registry error: {exc}") from exc
            raise

    async def warm_up(self) -> None:
        """Open the client ahead of the first request; a failure is reported when one comes."""
        with contextlib.suppress(Exception):
            await self._call(lambda c: None)

    async def production(self, model_name: str, version_key: Any) -> VersionInfo | None:
        cached = self._alias.get(model_name)
        now = time.monotonic()
        if cached and cached[0] == version_key and now - cached[1] < self.alias_ttl:
            return cached[2]
        try:
            mv = await self._call(lambda c: c.get_model_version_by_alias(model_name, ALIAS))
        except LookupError:
            info = None
        else:
            info = _info(mv)
            self._versions[(model_name, info.version)] = info
        self._alias[model_name] = (version_key, now, info)
        return info

    async def version(self, model_name: str, version: str) -> VersionInfo | None:
        key = (model_name, version)
        if key not in self._versions:
            missed = self._missing.get(key)
            if missed is not None and time.monotonic() - missed < self.alias_ttl:
                return None  # asked recently: not registered (yet)
            try:
                mv = await self._call(lambda c: c.get_model_version(model_name, version))
            except LookupError:
                self._missing[key] = time.monotonic()
                return None
            self._versions[key] = _info(mv)
        return self._versions[key]

    async def kinds(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """Kinds of many versions; an unreachable registry leaves them unknown (None)."""
        out: dict[tuple[str, str], str | None] = {}
        for name, version in sorted(pairs):
            try:
                info = await self.version(name, version)
            except RegistryUnavailable:
                info = None
            out[(name, version)] = info.kind if info else None
        return out

    async def run(self, run_id: str) -> dict[str, Any] | None:
        if run_id not in self._runs:
            try:
                run = await self._call(lambda c: c.get_run(run_id))
            except LookupError:
                return None
            info = run.info
            found = {
                "run_id": info.run_id,
                "experiment_id": info.experiment_id,
                "status": info.status,
                "start_time": dt.datetime.fromtimestamp(info.start_time / 1000, dt.UTC)
                if info.start_time
                else None,
            }
            if info.status not in _FINAL:  # a running run's status will change
                return found
            self._runs[run_id] = found
        return self._runs[run_id]


def _is_missing(exc: Exception) -> bool:
    code = str(getattr(exc, "error_code", ""))
    return "RESOURCE_DOES_NOT_EXIST" in code or "not found" in str(exc).lower()


def _info(mv: Any) -> VersionInfo:
    tags = mv.tags or {}
    return VersionInfo(
        version=str(mv.version),
        kind=tags.get("kind") or None,
        run_id=mv.run_id or None,
        cutoff=tags.get("cutoff") or None,
        dataset_run_id=tags.get("dataset_run_id") or None,
    )
