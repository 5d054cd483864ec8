import numpy as np
import pandas as pd

from crypto_predictor.market.frames import normalise
from crypto_predictor.market.validation import validate


def candles(rows):
    frame = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])
    return normalise(frame)


GOOD = [
    ("2021-01-01T00:00Z", 100, 110, 95, 105, 10),
    ("2021-01-01T01:00Z", 105, 108, 101, 102, 12),
    ("2021-01-01T02:00Z", 102, 104, 99, 103, 9),
]


def test_clean_data_passes_untouched():
    clean, report = validate(candles(GOOD), "1h")
    assert len(clean) == 3 and report.rejected_total == 0 and report.gaps == []
    assert clean["close"].tolist() == [105, 102, 103]
    assert not clean["outlier"].any()


def test_each_impossible_candle_is_rejected_with_its_reason():
    bad = GOOD + [
        ("2021-01-01T03:00Z", 100, 99, 95, 98, 1),    # high below open
        ("2021-01-01T04:00Z", 100, 110, 101, 105, 1),  # low above open
        ("2021-01-01T05:00Z", 0, 110, 0, 105, 1),      # non-positive
        ("2021-01-01T06:00Z", 100, 110, 95, 105, -1),  # negative volume
        ("2021-01-01T07:30Z", 100, 110, 95, 105, 1),   # not on the hour
        ("2021-01-01T08:00Z", np.nan, 110, 95, 105, 1),
    ]
    clean, report = validate(candles(bad), "1h")
    assert len(clean) == 3
    assert report.rejected == {
        "high below max(open, close)": 1, "low above min(open, close)": 1, "non-positive price": 1,
        "negative volume": 1, "open time not aligned to interval": 1, "missing price": 1,
    }
    assert len(report.rejected_rows) == 6


def test_duplicates_exact_dropped_conflicting_resolved_to_the_last_and_reported():
    rows = GOOD + [GOOD[1], ("2021-01-01T02:00Z", 102, 104, 99, 103.5, 9)]
    clean, report = validate(candles(rows), "1h")
    assert report.exact_duplicates == 1
    assert report.conflicting_duplicates == [pd.Timestamp("2021-01-01T02:00Z")]
    assert len(clean) == 3 and clean["close"].iloc[-1] == 103.5


def test_gaps_are_listed():
    rows = [GOOD[0], ("2021-01-01T04:00Z", 102, 104, 99, 103, 9)]
    _, report = validate(candles(rows), "1h")
    assert report.gaps == [(pd.Timestamp("2021-01-01T01:00Z"), pd.Timestamp("2021-01-01T03:00Z"), 3)]
    assert report.missing_candles == 3


def test_outliers_flagged_not_altered(btc_candles):
    clean, report = validate(btc_candles.head(100), "1h")
    first = clean.iloc[0]
    assert first["outlier"] and first["high"] == 16199.91 and first["close"] == 4308.83
    assert report.outliers[0][0] == pd.Timestamp("2017-08-17T04:00Z")
    assert clean["outlier"].sum() == 1
