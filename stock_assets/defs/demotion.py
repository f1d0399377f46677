"""The demotion job: production goes back to naive on the record, when the retraining sensor's
demotion rule (lifecycle/demotion.py) says the serving learned model is worse than naive.

A demotion is a move like a promotion: the same journal and lock, compare-and-set on the version
the rule judged, a `model_promotions` row (action `demote`, reason `demotion: …`), undone by
`stock-assets rollback`. It is alerted on the failure channels (mail/webhook).

No `from __future__ import annotations` here: Dagster reads the config and resource hints.
"""

import datetime as dt

from dagster import Config, OpExecutionContext, job, op

from stock_assets.defs.resources import (
    AlertChannels,
    MarketResource,
    ModelRegistryResource,
    PostgresResource,
)
from stock_assets.lifecycle.demotion import DEMOTION_REASON
from stock_assets.lifecycle.journal import move
from stock_assets.lifecycle.registry import naive_version, register_naive
from stock_assets.runtime.alerts import Alert, AlertDeliveryError, deliver
from stock_assets.storage.prices import prices_until, stored_span

DEMOTE_JOB = "demote_production"


class DemotionConfig(Config):
    expected_version: str  # the version the rule judged: moved only if it still serves
    reason: str


@op(description="Move production from the judged learned version to naive, on the record.")
def demote_to_naive(
    context: OpExecutionContext,
    config: DemotionConfig,
    stocks_db: PostgresResource,
    registry: ModelRegistryResource,
    market: MarketResource,
    alerts: AlertChannels,
) -> None:
    registry.setup()
    name = registry.model_name
    with stocks_db.connect() as conn:
        target = naive_version(name)
        if target is None:  # naive never registered (a registry seeded by hand): fit it now
            span = stored_span(conn)
            newest = span[1] if span else dt.date.today()
            target = register_naive(conn, name, prices_until(conn, market.ticker_list(), newest))
        moved = move(
            conn,
            name,
            target,
            expected=config.expected_version,
            actor="policy",
            reason=f"{DEMOTION_REASON}: {config.reason}",
            action="demote",
            log=context.log.warning,
        )
    said = f"production of {name} demoted from v{moved.previous} to naive v{moved.new}"
    context.log.warning(f"{said}: {config.reason}")
    alert = Alert(
        kind="demotion",
        subject=f"[stock_assets] {said}",
        body=f"{said}.\n{config.reason}\nUndo: stock-assets rollback",
        details={"model": name, "from": moved.previous, "to": moved.new, "reason": config.reason},
    )
    try:
        deliver(alert, alerts.settings())
    except AlertDeliveryError as exc:  # the move stands; the run log and journal say it
        context.log.error(f"demotion alert not delivered: {exc}")


@job(name=DEMOTE_JOB, description="Production back to naive (requested by retraining_sensor).")
def demote_production():
    demote_to_naive()
