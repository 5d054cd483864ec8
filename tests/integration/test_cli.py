"""`python -m crypto_predictor init|ingest` through Click's CliRunner and as a real subprocess."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from crypto_predictor.cli.main import cli
from crypto_predictor.market.store import CandleStore
from tests.support.slices import write_slice


@pytest.fixture()
def small_dir(tmp_path, data_dir):
    """A csv directory holding one month of BTC and ETH in the shared format."""
    return write_slice(data_dir, tmp_path / "ohlcv", "2021-09-01T00:00:00Z")


@pytest.fixture()
def env(tmp_path):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "MARKET_DATA_DIR": ""}


def test_init_is_idempotent(env):
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["init"], env=env)
        assert result.exit_code == 0, result.output
        assert "candles" in result.output


def test_ingest_csv_prints_a_report_per_asset_and_is_idempotent(env, small_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", "--source", "csv", "--data-dir", str(small_dir)], env=env)
    assert result.exit_code == 0, result.output
    assert "bitcoin 1h [csv]" in result.output and "ethereum 1h [csv]" in result.output
    # September 2021 has 720 hours; Binance was down for two of them on 2021-09-29.
    assert "received 718, inserted 718, updated 0" in result.output
    assert "gaps 1 (2 missing candles)" in result.output
    assert "ingested 2 asset(s), 1436 rows" in result.output
    again = runner.invoke(cli, ["ingest", "--source", "csv", "--data-dir", str(small_dir), "--symbol", "BTC"], env=env)
    assert again.exit_code == 0
    assert "received 718, inserted 0, updated 0, unchanged 718" in again.output
    assert CandleStore(env["DATABASE_URL"]).count() == 1436


def test_ingest_days_keeps_the_newest_days(env, small_dir):
    result = CliRunner().invoke(cli, ["ingest", "--source", "csv", "--data-dir", str(small_dir),
                                      "--symbol", "ethereum", "--days", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "received 46, inserted 46" in result.output  # 48 hours less the outage


@pytest.mark.parametrize("args, message", [
    (["--symbol", "NOTACOIN"], "unknown symbol 'NOTACOIN'; supported: bitcoin"),
    (["--data-dir", "/nonexistent/dir"], "market data directory not found: /nonexistent/dir"),
    (["--symbol", "ripple"], "no file XRPUSDT-1h.csv or .csv.gz"),
])
def test_ingest_errors_are_one_readable_line(env, small_dir, args, message):
    base = ["ingest", "--source", "csv", "--data-dir", str(small_dir)]
    result = CliRunner().invoke(cli, base + args, env=env)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_unreachable_provider_exits_non_zero_with_one_line(env):
    env = dict(env, BINANCE_BASE_URL="http://127.0.0.1:9", HTTP_RETRIES="0")
    result = CliRunner().invoke(cli, ["ingest", "--source", "binance", "--symbol", "bitcoin", "--days", "2"], env=env)
    assert result.exit_code == 1
    assert "Error: bitcoin: binance: could not connect" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["init"], ["ingest", "--source", "csv"], ["train", "--quick"], ["refresh"],
                                     ["verify"], ["retrain", "--dry-run"]])
def test_every_command_reports_an_unopenable_store_in_one_line(tmp_path, small_dir, command):
    """One store opener (cli/common.py): the same readable line, password hidden, from every command."""
    bad = {"DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}", "MARKET_DATA_DIR": str(small_dir),
           "MARKET_DATA_SOURCE": "csv", "MODELS_DIR": str(tmp_path / "models")}
    result = CliRunner().invoke(cli, command, env=bad)
    assert result.exit_code == 1, result.output
    assert f"Error: cannot open the candle store sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}" in result.output
    assert "Traceback" not in result.output
    secret = CliRunner().invoke(cli, command, env=dict(bad, DATABASE_URL="postgresql+psycopg://u:hunter2@127.0.0.1:9/db"))
    assert secret.exit_code == 1 and "hunter2" not in secret.output and "postgresql+psycopg://u:***@" in secret.output


def test_module_entry_point_runs(env, small_dir):
    proc = subprocess.run([sys.executable, "-m", "crypto_predictor", "ingest", "--help"],
                          capture_output=True, text=True, env={**env, "PATH": ""}, timeout=60)
    assert proc.returncode == 0
    for option in ("--source", "--data-dir", "--symbol", "--interval", "--days"):
        assert option in proc.stdout
