"""One price basis through splits and dividends, point in time, against a Yahoo that behaves like
Yahoo: bars split-adjusted as of the fetch day (splits after the requested range included),
`Adj Close` dividend-adjusted, actions on their ex-dates. Real Dagster runs, the embedded
Postgres, yfinance's own parsing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from stock_assets.commands.restate import restate
from stock_assets.definitions import build_definitions
from stock_assets.market.calendars import sessions_between
from stock_assets.market.sources import CsvSource, Dividend, Split, SyntheticSource, YahooSource
from stock_assets.settings import load_settings
from stock_assets.storage.prices import prices_until
from stock_assets.storage.writer import query_frame
from stock_assets_tests.fake_yahoo import FakeYahoo

START, BACKFILLED = dt.date(2016, 1, 4), dt.date(2019, 5, 31)
DAILY = sessions_between(dt.date(2019, 6, 3), dt.date(2019, 6, 14))
TEN_FOR_ONE, THREE_FOR_TWO = dt.date(2019, 6, 4), dt.date(2019, 6, 11)
TRUTH_SOURCE = SyntheticSource(
    seed=11,
    tickers=("AAA", "BBB"),
    start=START,
    end=dt.date(2019, 6, 28),
    splits=(Split("AAA", TEN_FOR_ONE, 10.0), Split("AAA", THREE_FOR_TWO, 1.5)),
    dividends=(
        Dividend("AAA", dt.date(2019, 3, 15), 0.8),
        Dividend("AAA", dt.date(2019, 6, 6), 0.09),
        Dividend("AAA", dt.date(2019, 6, 13), 0.05),
        Dividend("BBB", dt.date(2019, 6, 7), 0.4),
    ),
)
TRUTH = TRUTH_SOURCE.fetch(["AAA", "BBB"], START, TRUTH_SOURCE.end)
SMALL = {"gap": 20, "seq_lens": [10], "model_name": "price_basis_model"}


def _reference_adjusted(as_of: dt.date) -> pd.DataFrame:
    """By hand, one row at a time: close × Π over later ex-dates e ≤ as_of of
    P_e / (s_e (P_e + D_e))."""
    out = []
    for _, rows in TRUTH[TRUTH.trade_date <= as_of].groupby("ticker"):
        rows = rows.sort_values("trade_date").reset_index(drop=True)
        factor = 1.0
        adjusted = [0.0] * len(rows)
        for i in range(len(rows) - 1, -1, -1):
            adjusted[i] = rows.close[i] * factor
            s, d, p = rows.split_ratio[i], rows.dividend[i], rows.close[i]
            factor *= p / (s * (p + d))
        out.append(rows.assign(adjusted=adjusted))
    return pd.concat(out, ignore_index=True)


def _total_returns(as_of: dt.date) -> pd.DataFrame:
    """The holder's true total return per session: s · (P + D) / P_prev."""
    rows = TRUTH[TRUTH.trade_date <= as_of].sort_values(["ticker", "trade_date"])
    prev = rows.groupby("ticker")["close"].shift(1)
    return rows.assign(total=rows.split_ratio * (rows.close + rows.dividend) / prev)


class World:
    """A state fed by the fake Yahoo: ingest ranges and days, read what is stored."""

    def __init__(self, url: str, monkeypatch, tmp_path: Path):
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for table in ("raw_prices", "corporate_actions", "processed_features", "dataset_runs"):
                cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        self.url = url
        self.fake = FakeYahoo(TRUTH.copy()).install(monkeypatch)
        self.source = YahooSource(retries=0, cache_dir=tmp_path / "yf", sleep=lambda s: None)
        settings = load_settings().with_market(start_date=str(START), tickers=("AAA", "BBB"))
        self.defs = build_definitions(settings, source=self.source, retraining=SMALL)
        self.instance = DagsterInstance.ephemeral()

    def ingest(self, first: dt.date, last: dt.date | None = None, today: dt.date | None = None):
        self.fake.today = today or last or first
        tags = {}
        kwargs = {"partition_key": str(first)} if last is None else {}
        if last is not None:
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: str(first),
                ASSET_PARTITION_RANGE_END_TAG: str(last),
            }
        return self.defs.resolve_job_def("ingest_prices").execute_in_process(
            instance=self.instance, tags=tags, raise_on_error=False, **kwargs
        )

    def features(self, key: str) -> pd.DataFrame:
        self.instance.add_dynamic_partitions("dataset_runs", [key])
        result = self.defs.resolve_job_def("retrain").execute_in_process(
            instance=self.instance,
            partition_key=key,
            asset_selection=[AssetKey("processed_features")],
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        return self.table(
            "SELECT * FROM processed_features WHERE dataset_run_id = %s "
            "ORDER BY ticker, trade_date",
            (key,),
        ).drop(columns="dataset_run_id")

    def table(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        with psycopg2.connect(self.url) as conn:
            return query_frame(conn, sql, params)

    def adjusted(self, as_of: dt.date) -> pd.DataFrame:
        with psycopg2.connect(self.url) as conn:
            return prices_until(conn, ["AAA", "BBB"], as_of)


def _daily(world: World) -> World:
    assert world.ingest(START, BACKFILLED).success
    for day in DAILY:
        result = world.ingest(day)
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    return world


def test_day_by_day_across_splits_and_dividends_matches_the_truth(
    stocks_url, monkeypatch, tmp_path
):
    world = World(stocks_url, monkeypatch, tmp_path)
    assert world.ingest(START, BACKFILLED).success  # fetched on 2019-05-31: the old basis
    before = world.features(str(BACKFILLED))
    for day in DAILY:  # each fetched on its own day: every bar in that day's basis
        result = world.ingest(day)
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    stored = world.table("SELECT * FROM raw_prices ORDER BY ticker, trade_date")
    truth = TRUTH[TRUTH.trade_date <= DAILY[-1]].sort_values(["ticker", "trade_date"])
    np.testing.assert_allclose(stored["close"], truth["close"], rtol=1e-9)  # as traded
    actions = world.table("SELECT trade_date, ticker, split_ratio, dividend FROM corporate_actions")
    assert sorted(
        zip(actions.trade_date, actions.ticker, actions.split_ratio, actions.dividend, strict=True)
    ) == [
        (dt.date(2019, 3, 15), "AAA", 1.0, pytest.approx(0.8)),
        (TEN_FOR_ONE, "AAA", 10.0, 0.0),
        (dt.date(2019, 6, 6), "AAA", 1.0, pytest.approx(0.09)),
        (dt.date(2019, 6, 7), "BBB", 1.0, pytest.approx(0.4)),
        (THREE_FOR_TWO, "AAA", 1.5, 0.0),
        (dt.date(2019, 6, 13), "AAA", 1.0, pytest.approx(0.05)),
    ]

    # adjusted closes, point in time, equal the reference computed by hand; so does the view
    for as_of in (BACKFILLED, THREE_FOR_TWO, DAILY[-1]):
        got = world.adjusted(as_of)
        want = _reference_adjusted(as_of)
        np.testing.assert_allclose(got["close"], want["adjusted"], rtol=1e-9)
    view = world.table("SELECT close FROM adjusted_prices ORDER BY ticker, trade_date")
    np.testing.assert_allclose(view["close"], _reference_adjusted(DAILY[-1])["adjusted"], rtol=1e-9)

    # no return across a split or an ex-date differs from the true total return by > 1e-9
    adjusted = world.adjusted(DAILY[-1])
    ret = (adjusted.groupby("ticker")["close"].pct_change() + 1).to_numpy()
    true = _total_returns(DAILY[-1])
    known = ~np.isnan(true["total"].to_numpy())
    events = known & ((true["split_ratio"] != 1) | (true["dividend"] != 0)).to_numpy()
    assert events.sum() == 6  # both splits, all four dividends
    np.testing.assert_allclose(ret[known], true["total"].to_numpy()[known], rtol=0, atol=1e-9)
    assert np.abs(np.log(ret[known])).max() < 0.2  # no −90 % anywhere

    # a dataset run with a cutoff before the split is unchanged by ingesting the split later
    pd.testing.assert_frame_equal(world.features(f"{BACKFILLED}.r2"), before)


def test_features_are_the_same_backfilled_in_one_run_or_ingested_day_by_day(
    stocks_url, monkeypatch, tmp_path
):
    once = World(stocks_url, monkeypatch, tmp_path)
    assert once.ingest(START, DAILY[-1]).success  # one backfill, fetched on the last day
    backfilled = once.features(str(DAILY[-1]))
    daily = _daily(World(stocks_url, monkeypatch, tmp_path)).features(str(DAILY[-1]))
    pd.testing.assert_frame_equal(
        backfilled.drop(columns="close_adj"), daily.drop(columns="close_adj"), rtol=1e-9
    )
    np.testing.assert_allclose(backfilled["close_adj"], daily["close_adj"], rtol=1e-9)
    assert backfilled["target"].abs().max() < 0.2  # the 10:1 split is no −90 % target


def test_prediction_made_the_day_before_a_split_is_scored_in_its_basis(
    stocks_url, monkeypatch, tmp_path
):
    world = World(stocks_url, monkeypatch, tmp_path)
    with psycopg2.connect(stocks_url) as conn, conn.cursor() as cur:
        for table in ("daily_predictions", "performance_log"):
            cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    assert world.ingest(START, DAILY[1]).success
    ops = world.defs.resolve_job_def("daily_operations")
    for day in (DAILY[0], DAILY[1]):  # predict on the 3rd (naive), score on the 4th: 10:1
        world.fake.today = DAILY[1]
        result = ops.execute_in_process(
            instance=world.instance, partition_key=str(day), raise_on_error=False
        )
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    row = world.table(
        "SELECT * FROM performance_log WHERE trade_date = %s AND ticker = 'AAA'", (TEN_FOR_ONE,)
    ).iloc[0]
    truth = TRUTH.set_index(["ticker", "trade_date"])
    before, on = truth.loc[("AAA", DAILY[0])], truth.loc[("AAA", TEN_FOR_ONE)]
    assert row.last_close == pytest.approx(before.close)
    assert row.actual_close == pytest.approx(10 * on.close)  # the split day's close, old basis
    assert row.naive_abs_error == pytest.approx(abs(10 * on.close - before.close))
    assert row.naive_abs_error / before.close < 0.1  # an ordinary day, not a −90 % miss


def test_vendor_restatement_fails_before_writing_and_restate_repairs_it(
    stocks_url, monkeypatch, tmp_path
):
    world = World(stocks_url, monkeypatch, tmp_path)
    assert world.ingest(START, DAILY[2], today=DAILY[2]).success
    before = world.table("SELECT * FROM raw_prices ORDER BY ticker, trade_date")
    world.fake.rescale["AAA"] = 0.25  # the vendor silently restates AAA's whole history
    failed = world.ingest(DAILY[3])
    assert not failed.success
    message = " ".join(
        e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure
    )
    assert "unrecorded split or vendor restatement" in message and "AAA" in message
    assert "×0.25" in message
    pd.testing.assert_frame_equal(
        world.table("SELECT * FROM raw_prices ORDER BY ticker, trade_date"), before
    )  # nothing written
    world.fake.today = DAILY[3]
    settings = load_settings().with_market(start_date=str(START))
    done = restate(settings, world.source, "AAA", START)
    assert done.rows == len(before[before.ticker == "AAA"])
    assert world.ingest(DAILY[3]).success  # stored and vendor agree again
    restated = world.table("SELECT close FROM raw_prices WHERE ticker = 'AAA' ORDER BY trade_date")
    truth = TRUTH[(TRUTH.ticker == "AAA") & (TRUTH.trade_date <= DAILY[3])]
    np.testing.assert_allclose(restated["close"], truth["close"].to_numpy() * 0.25, rtol=1e-9)


def test_csv_with_a_ten_for_one_split_has_no_big_move_in_adjusted_prices(stocks_url, tmp_path):
    with psycopg2.connect(stocks_url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS raw_prices, corporate_actions CASCADE")
    rows = TRUTH[(TRUTH.ticker == "AAA") & (TRUTH.trade_date >= dt.date(2019, 1, 2))]
    rows = rows[rows.trade_date <= dt.date(2019, 6, 28)]
    pd.DataFrame(
        {
            "Date": [str(d) for d in rows.trade_date],
            "Open": rows.open,
            "High": rows.high,
            "Low": rows.low,
            "Close": rows.close,
            "Volume": rows.volume,
            "Dividends": rows.dividend,
            "Stock Splits": rows.split_ratio.where(rows.split_ratio != 1.0, 0.0),
        }
    ).to_csv(tmp_path / "AAA.csv", index=False)
    settings = load_settings().with_market(start_date="2019-01-02")
    job = build_definitions(settings, source=CsvSource(tmp_path)).resolve_job_def("ingest_prices")
    result = job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2019-01-02",
            ASSET_PARTITION_RANGE_END_TAG: "2019-06-28",
        },
        raise_on_error=False,
    )
    assert result.success
    with psycopg2.connect(stocks_url) as conn:
        raw = query_frame(conn, "SELECT trade_date, close FROM raw_prices ORDER BY trade_date")
        view = query_frame(
            conn, "SELECT trade_date, close FROM adjusted_prices ORDER BY trade_date"
        )
    raw_moves = raw["close"].pct_change().abs()
    assert raw_moves.max() > 0.85  # as traded, the split day is −90 %
    moves = view.set_index("trade_date")["close"].pct_change().abs()
    around = moves[dt.date(2019, 5, 20) : dt.date(2019, 6, 20)]
    assert len(around) > 15 and around.max() < 0.40
