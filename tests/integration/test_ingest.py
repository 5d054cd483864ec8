import pandas as pd

from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.ingest import ingest_asset
from crypto_predictor.market.store import CandleStore
from tests.support.slices import write_frame


def test_ingest_of_the_shared_btc_file_is_complete_and_idempotent(data_dir, store):
    src = CsvSource(data_dir)
    first = ingest_asset(src, store, "BTCUSDT")
    assert first.received == 55845
    assert first.inserted == 55845 and first.rejected == {}
    assert store.count("bitcoin", "1h") == 55845
    assert len(first.validation.gaps) > 0  # real exchange outages are reported
    again = ingest_asset(src, store, "bitcoin")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 55845)
    assert store.count("bitcoin", "1h") == 55845

    series = store.load("bitcoin", "1h")
    assert str(series.index.tz) == "UTC" and series.index.is_monotonic_increasing
    assert series.index[0] == pd.Timestamp("2017-08-17T04:00:00Z")
    assert series["high"].iloc[0] == 16199.91 and series["outlier"].iloc[0]  # flagged, not altered
    assert series.index[-1] == pd.Timestamp("2023-12-31T23:00:00Z")
    assert series["close"].iloc[-1] == 42283.58


def test_a_file_with_one_impossible_candle_rejects_exactly_that_row(tmp_path, store, btc_candles):
    rows = btc_candles.iloc[1000:1048].copy()
    bad_time = rows["open_time"].iloc[20]
    rows.loc[rows.index[20], "high"] = rows["low"].iloc[20] * 0.9  # high below low: impossible
    write_frame(tmp_path / "BTCUSDT-1h.csv.gz", rows)

    report = ingest_asset(CsvSource(tmp_path), store, "bitcoin")
    assert report.received == 48 and report.inserted == 47
    assert report.rejected == {"high below max(open, close)": 1}
    assert report.validation.rejected_rows["open_time"].tolist() == [bad_time]
    assert any("high below max(open, close)" in line for line in report.lines())


def test_changed_values_are_kept_apart_unless_revised(tmp_path, store, btc_candles):
    rows = btc_candles.iloc[:24].copy()
    write_frame(tmp_path / "BTCUSDT-1h.csv.gz", rows)
    ingest_asset(CsvSource(tmp_path), store, "bitcoin")
    before = store.load("bitcoin")
    rows.loc[rows.index[5], "volume"] = 999.0
    rows.loc[rows.index[9], "close"] = rows["close"].iloc[9] * 0.99
    write_frame(tmp_path / "BTCUSDT-1h.csv.gz", rows)
    report = ingest_asset(CsvSource(tmp_path), store, "bitcoin")
    assert (report.inserted, report.updated, report.unchanged, report.kept_apart) == (0, 0, 22, 2)
    assert report.kept_apart_times == [rows["open_time"].iloc[5], rows["open_time"].iloc[9]]
    assert any("kept apart 2 row(s)" in line and "--revise" in line for line in report.lines())
    pd.testing.assert_frame_equal(store.load("bitcoin"), before)  # history unchanged

    report = ingest_asset(CsvSource(tmp_path), store, "bitcoin", revise=True)
    assert (report.inserted, report.updated, report.unchanged, report.kept_apart) == (0, 2, 22, 0)
    assert store.load("bitcoin")["volume"].iloc[5] == 999.0


def test_store_loads_a_time_range_and_latest(store, data_dir):
    ingest_asset(CsvSource(data_dir), store, "solana")
    part = store.load("solana", "1h", "2021-09-01T00:00Z", "2021-09-01T23:00Z")
    assert len(part) == 24
    assert store.latest_time("solana") == pd.Timestamp("2023-12-31T23:00Z")  # the whole shared file
    assert store.latest_time("bitcoin") is None


def test_schema_init_is_idempotent(tmp_path):
    store = CandleStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert "candles" in store.init_schema()
    assert "candles" in store.init_schema()
