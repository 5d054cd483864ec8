"""`refresh` against the local fake Binance (and CoinGecko) server, through the CLI."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_predictor.cli.main import cli
from crypto_predictor.storage.job_runs import last_runs
from crypto_predictor.storage.lock import JobLock
from crypto_predictor.market.store import CandleStore
from tests.conftest import FAKE_NOW_MS
from tests.support.cli import assert_one_line_error

FAKE_NOW = pd.Timestamp(FAKE_NOW_MS, unit="ms", tz="UTC")  # 2021-10-01 00:00:30: the 23:00 candle just closed
MID_HOUR = pd.Timestamp("2021-09-30T23:30:00Z")  # the 23:00 candle is still forming


@pytest.fixture()
def env(tmp_path, fake_market):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'refresh.db'}", "MARKET_DATA_SOURCE": "binance",
            "BINANCE_BASE_URL": fake_market.url, "COINGECKO_BASE_URL": fake_market.url,
            "FEAR_GREED_BASE_URL": fake_market.url,
            "REFRESH_ASSETS": "bitcoin,ETH", "HTTP_RETRIES": "0", "HTTP_BACKOFF": "0.01"}


def refresh(env, *args):
    return CliRunner().invoke(cli, ["refresh", *args], env=env)


def expected_count(candles, since, until) -> int:
    return int(((candles["open_time"] >= since) & (candles["open_time"] <= until)).sum())


def test_refresh_fetches_closed_candles_only_and_a_second_run_inserts_nothing(env, fake_market, btc_candles,
                                                                             eth_candles):
    first = refresh(env, "--initial-days", "3", "--as-of", MID_HOUR.isoformat())
    assert first.exit_code == 0, first.output
    since, last_closed = MID_HOUR - pd.Timedelta(days=3), pd.Timestamp("2021-09-30T22:00Z")
    n_btc, n_eth = expected_count(btc_candles, since, last_closed), expected_count(eth_candles, since, last_closed)
    assert n_btc > 60  # three days less the 2021-09-29 outage
    lines = first.output.splitlines()
    assert lines[0].startswith(f"bitcoin      1h [binance] received {n_btc}, inserted {n_btc}, updated 0")
    assert lines[0].endswith(", 2021-09-28 00:00 .. 2021-09-30 22:00")
    assert lines[1].startswith(f"ethereum     1h [binance] received {n_eth}, inserted {n_eth}, updated 0")
    assert lines[2].startswith(f"refreshed 2/2 asset(s): {n_btc + n_eth} inserted, 0 updated in ")
    store = CandleStore(env["DATABASE_URL"])
    # The 23:00 candle was still open at 23:30: not stored, though the server offered it.
    assert store.latest_time("bitcoin") == last_closed
    assert store.count("bitcoin", "1h") == n_btc and store.count("ethereum", "1h") == n_eth

    second = refresh(env, "--as-of", FAKE_NOW.isoformat())  # the hour has closed: exactly that candle is new
    assert second.exit_code == 0, second.output
    assert "refreshed 2/2 asset(s): 2 inserted, 0 updated" in second.output
    assert store.latest_time("bitcoin") == pd.Timestamp("2021-09-30T23:00Z")
    stored = store.load("bitcoin", "1h", "2021-09-30T23:00Z")
    offered = btc_candles.set_index("open_time").loc["2021-09-30T23:00Z"]
    assert stored["close"].iloc[0] == pytest.approx(offered["close"])

    calls = fake_market.count("/api/v3/klines")
    third = refresh(env, "--as-of", FAKE_NOW.isoformat())
    assert third.exit_code == 0, third.output
    assert "refreshed 2/2 asset(s): 0 inserted, 0 updated" in third.output
    assert "bitcoin      1h [binance] received 0, inserted 0" in third.output and "no new candles" in third.output
    assert fake_market.count("/api/v3/klines") == calls  # up to date: the provider is not even asked
    assert store.count() == n_btc + n_eth + 2


def test_refresh_from_coingecko_keeps_closed_hourly_candles(env, fake_market):
    env = dict(env, MARKET_DATA_SOURCE="coingecko", REFRESH_ASSETS="bitcoin")
    first = refresh(env, "--initial-days", "2", "--as-of", FAKE_NOW.isoformat())
    assert first.exit_code == 0, first.output
    assert "bitcoin      1h [coingecko]" in first.output
    store = CandleStore(env["DATABASE_URL"])
    assert store.latest_time("bitcoin") == pd.Timestamp("2021-09-30T23:00Z")
    again = refresh(env, "--as-of", FAKE_NOW.isoformat())
    assert again.exit_code == 0 and "0 inserted, 0 updated" in again.output


def test_one_failing_asset_is_reported_and_the_others_still_refresh(env):
    env = dict(env, REFRESH_ASSETS="solana,bitcoin")  # the fake exchange does not list SOLUSDT
    result = refresh(env, "--initial-days", "1", "--as-of", FAKE_NOW.isoformat())
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("solana       FAILED binance:")
    assert lines[1].startswith("bitcoin      1h [binance] received 23, inserted 23,")  # 01:00 .. 23:00
    assert ", 1 failed in " in lines[2]
    store = CandleStore(env["DATABASE_URL"])
    assert store.count("bitcoin") > 0
    run = last_runs(store.engine)["refresh"]  # what the dashboard shows
    assert run["ok"] is False and ", 1 failed in " in run["summary"]
    assert refresh(dict(env, REFRESH_ASSETS="bitcoin"), "--initial-days", "1", "--as-of",
                   FAKE_NOW.isoformat()).exit_code == 0
    assert last_runs(store.engine)["refresh"]["ok"] is True


def test_unknown_configured_asset_is_one_error_line(env):
    assert_one_line_error(refresh(dict(env, REFRESH_ASSETS="bitcoin,NOTACOIN")),
                          "REFRESH_ASSETS: unknown symbol 'NOTACOIN'")


def test_a_second_refresh_while_one_runs_refuses_with_one_line(env, fake_market):
    store = CandleStore(env["DATABASE_URL"])
    store.init_schema()
    with JobLock(store.engine, "refresh", 600, owner="worker-1:77:feed") as held:
        result = refresh(env, "--as-of", FAKE_NOW.isoformat())
        assert held.holder()["owner"] == "worker-1:77:feed"  # the refused run left the lock alone
    assert_one_line_error(result, "job 'refresh' is already running", "worker-1:77:feed")
    assert fake_market.count("/api/v3/klines") == 0 and store.count() == 0
    assert last_runs(store.engine)["refresh"] is None  # a refused run is not a run
    assert refresh(env, "--initial-days", "1", "--as-of", FAKE_NOW.isoformat()).exit_code == 0


def test_refresh_from_a_csv_directory(tmp_path, data_dir):
    from tests.support.slices import write_slice

    folder = write_slice(data_dir, tmp_path / "ohlcv", "2021-09-25T00:00:00Z", assets=("solana",))
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'csv.db'}", "MARKET_DATA_SOURCE": "csv",
           "MARKET_DATA_DIR": str(folder), "REFRESH_ASSETS": ""}
    result = refresh(env, "--as-of", "2021-09-30T12:10:00Z")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("solana       1h [csv]")  # default assets: what the directory holds
    assert CandleStore(env["DATABASE_URL"]).latest_time("solana") == pd.Timestamp("2021-09-30T11:00Z")


@pytest.mark.parametrize("value", ["yesterday-ish", ""])
def test_a_bad_as_of_is_a_usage_error(env, value):
    result = refresh(env, "--as-of", value)
    assert result.exit_code == 2 and "not an ISO time" in result.output and "Traceback" not in result.output
