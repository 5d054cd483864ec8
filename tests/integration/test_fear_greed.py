"""The Fear & Greed Index: the shared CSV and the API (a local server in its shape) into the store.

The fake server (tests/support/fake_market.py) serves the shared file's rows up to its "now"
(2021-10-01 00:00:30, the day just begun) newest first, as alternative.me does, and misbehaves
on request.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_predictor.cli.main import cli
from crypto_predictor.config import TestConfig
from crypto_predictor.errors import MarketDataUnavailable
from crypto_predictor.market.fear_greed import FearGreedSource, SentimentResult, parse_payload
from crypto_predictor.market.sentiment import SentimentStore, ingest_sentiment
from crypto_predictor.market.store import CandleStore
from tests.conftest import FAKE_NOW_MS
from tests.support.cli import assert_one_line_error

FAKE_NOW = pd.Timestamp(FAKE_NOW_MS, unit="ms", tz="UTC")


@pytest.fixture()
def env(tmp_path, fake_market):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'fg.db'}", "FEAR_GREED_BASE_URL": fake_market.url,
            "HTTP_RETRIES": "1", "HTTP_BACKOFF": "0.01", "HTTP_MAX_RETRY_AFTER": "1"}


def ingest(env, *args):
    return CliRunner().invoke(cli, ["ingest", "--source", "fear-greed", "--as-of", FAKE_NOW.isoformat(), *args], env=env)


def stored(env) -> pd.DataFrame:
    return SentimentStore(CandleStore(env["DATABASE_URL"]).engine).frame()


def test_the_shared_csv_is_stored_once_with_its_missing_days_reported(env, fear_greed_csv, fear_greed_rows):
    first = ingest(env, "--data-dir", str(fear_greed_csv.parent.parent))  # the shared data root finds sentiment/
    assert first.exit_code == 0, first.output
    n = len(fear_greed_rows)
    assert f"received {n}, inserted {n}, updated 0, unchanged 0" in first.output
    assert "fear_greed 1d [csv] 2018-02-01 .. 2023-12-31" in first.output
    assert "missing days 3; 2018-04-14 .. 2018-04-16 (3)" in first.output
    frame = stored(env)
    assert len(frame) == n and frame.index.is_monotonic_increasing
    day = pd.Timestamp("2018-02-02", tz="UTC")
    assert frame.loc[day, "value"] == 15 and frame.loc[day, "classification"] == "Extreme Fear"

    again = ingest(env, "--data-dir", str(fear_greed_csv))
    assert again.exit_code == 0, again.output
    assert f"received {n}, inserted 0, updated 0, unchanged {n}" in again.output
    assert len(stored(env)) == n


def test_the_api_fills_an_empty_store_and_then_asks_only_for_the_newest_days(env, fake_market, fear_greed_rows):
    first = ingest(env)
    assert first.exit_code == 0, first.output
    closed = fear_greed_rows[fear_greed_rows["timestamp"] < FAKE_NOW.floor("1D").timestamp()]
    assert fake_market.requests[-1][1] == {"limit": "0", "format": "json"}  # everything, on an empty store
    assert f"received {len(closed)}, inserted {len(closed)}" in first.output
    assert "left out 1 value(s) of the day in progress" in first.output  # 2021-10-01 has only begun
    frame = stored(env)
    assert frame.index[-1] == pd.Timestamp("2021-09-30", tz="UTC")
    expected = closed.set_index(pd.to_datetime(closed["timestamp"], unit="s", utc=True))["value"]
    assert (frame["value"].to_numpy() == expected.to_numpy()).all()

    again = ingest(env)
    assert again.exit_code == 0, again.output
    limit = int(fake_market.requests[-1][1]["limit"])
    assert 2 <= limit <= 3  # the newest stored day is yesterday
    assert "inserted 0" in again.output and len(stored(env)) == len(closed)


def test_rejected_values_and_conflicts_are_reported_not_stored(tmp_path):
    store = SentimentStore(CandleStore(f"sqlite:///{tmp_path / 'v.db'}").engine)
    CandleStore(store.engine).init_schema()
    body = {"data": [{"value": "130", "timestamp": "1633046400"}, {"value": "abc", "timestamp": "1632960000"},
                     {"value": "-1", "timestamp": "1632873600"}, {"value": "40", "timestamp": "1632787200"},
                     {"value": "41", "timestamp": "1632787200"}, {"value": "20", "timestamp": "1632700800"},
                     {"value": "20", "timestamp": "1632700800"}, {"value": "30", "timestamp": "1632614400"},
                     {"value": "55", "timestamp": "1632614400"}],
            "metadata": {"error": None}}
    report = ingest_sentiment(SentimentResult(parse_payload(body), "fear-greed"), store)
    assert report.rejected == {"value outside 0-100": 2, "missing or non-numeric value": 1}
    assert report.exact_duplicates == 1 and report.conflicting_duplicates == 2
    values = store.load()
    assert values.to_dict() == {pd.Timestamp("2021-09-26", tz="UTC"): 55.0, pd.Timestamp("2021-09-27", tz="UTC"): 20.0,
                                pd.Timestamp("2021-09-28", tz="UTC"): 41.0}
    changed = {"data": [{"value": "60", "timestamp": "1632614400"}], "metadata": {"error": None}}
    kept = ingest_sentiment(SentimentResult(parse_payload(changed), "fear-greed"), store)
    assert kept.kept_apart == 1 and store.load().iloc[0] == 55.0  # history is not rewritten silently
    revised = ingest_sentiment(SentimentResult(parse_payload(changed), "fear-greed"), store, revise=True)
    assert revised.updated == 1 and store.load().iloc[0] == 60.0


@pytest.mark.parametrize("fault, message", [
    ({"status": 429, "headers": {"Retry-After": "120"}, "body": {"error": "slow down"}},
     "fear-greed: asked us to wait 120 s (Retry-After)"),
    ({"raw": "<html>oops"}, "fear-greed: malformed JSON in response"),
    ({"status": 200, "body": {"data": [], "metadata": {"error": "Invalid limit"}}},
     "fear-greed: the API reported an error: Invalid limit"),
    ({"status": 200, "body": {"name": "Fear and Greed Index"}}, "fear-greed: unexpected payload (no 'data' list)"),
    ({"status": 200, "body": {"data": [{"value": "3"}], "metadata": {}}},
     "fear-greed: unexpected payload (an entry without 'timestamp' and 'value')"),
    ({"status": 404, "body": {"error": "gone"}}, "fear-greed: HTTP 404: gone"),
])
def test_provider_faults_are_one_readable_line(env, fake_market, fault, message):
    fake_market.fail("/fng", fault)
    result = ingest(env)
    assert_one_line_error(result, message)
    assert stored(env).empty


def test_a_server_error_is_retried(env, fake_market):
    fake_market.fail("/fng", {"status": 503, "body": {"error": "busy"}})
    result = ingest(env, "--days", "5")
    assert result.exit_code == 0, result.output
    assert fake_market.count("/fng") == 2 and len(stored(env)) == 4  # 5 asked, the day in progress left out


def test_the_source_refuses_a_negative_limit(fake_market):
    source = FearGreedSource(TestConfig(FEAR_GREED_BASE_URL=fake_market.url))
    with pytest.raises(Exception, match="limit must be a number of days >= 0"):
        source.fetch(-1)


def test_an_unreachable_api_is_unavailable_not_a_hang():
    source = FearGreedSource(TestConfig(FEAR_GREED_BASE_URL="http://127.0.0.1:9", HTTP_RETRIES=0))
    with pytest.raises(MarketDataUnavailable, match="fear-greed: could not connect"):
        source.fetch(3)


def test_refresh_catches_the_index_up_with_the_candles(env, fake_market):
    job = dict(env, MARKET_DATA_SOURCE="binance", BINANCE_BASE_URL=fake_market.url, REFRESH_ASSETS="bitcoin")
    run = CliRunner().invoke(cli, ["refresh", "--initial-days", "2", "--as-of", FAKE_NOW.isoformat()], env=job)
    assert run.exit_code == 0, run.output
    line = run.output.splitlines()[-1]
    assert line.startswith("fear_greed   1d [fear-greed] received ") and line.endswith("2018-02-01 .. 2021-09-30")
    assert "missing days 3" in line
    again = CliRunner().invoke(cli, ["refresh", "--as-of", FAKE_NOW.isoformat()], env=job)
    assert again.exit_code == 0 and ", inserted 0," in again.output.splitlines()[-1]
    off = CliRunner().invoke(cli, ["refresh", "--as-of", FAKE_NOW.isoformat()], env=dict(job, FEAR_GREED_REFRESH="0"))
    assert off.output.splitlines()[-1] == "fear_greed   skipped (FEAR_GREED_REFRESH is off)"
    fake_market.fail("/fng", {"status": 500}, {"status": 500})
    down = CliRunner().invoke(cli, ["refresh", "--as-of", FAKE_NOW.isoformat()], env=job)
    assert down.exit_code == 0, down.output  # the candles were refreshed; the index waits for the next run
    assert down.output.splitlines()[-1].startswith("fear_greed   FAILED fear-greed:")


def test_refresh_from_csv_reads_the_shared_file_up_to_now(env, data_dir):
    job = dict(env, MARKET_DATA_SOURCE="csv", MARKET_DATA_DIR=str(data_dir), REFRESH_ASSETS="bitcoin")
    run = CliRunner().invoke(cli, ["refresh", "--initial-days", "1", "--as-of", "2019-01-01T05:00:00Z"], env=job)
    assert run.exit_code == 0, run.output
    assert run.output.splitlines()[-1].endswith("2018-02-01 .. 2018-12-31")


def test_the_store_on_postgresql_is_idempotent(postgres_url, fear_greed_csv):
    env = {"DATABASE_URL": postgres_url}
    first = ingest(env, "--data-dir", str(fear_greed_csv), "--days", "30")
    assert first.exit_code == 0, first.output
    assert "received 30, inserted 30" in first.output
    again = ingest(env, "--data-dir", str(fear_greed_csv), "--days", "30")
    assert "received 30, inserted 0, updated 0, unchanged 30" in again.output
    frame = stored(env)
    assert len(frame) == 30 and frame.index[-1] == pd.Timestamp("2023-12-31", tz="UTC")
    assert json.dumps(frame["value"].tolist())  # plain floats
