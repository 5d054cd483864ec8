"""Features: causality, column contract, gaps, outliers and targets, on real candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from crypto_predictor.errors import InvalidInput
from crypto_predictor.features import (FEATURE_NAMES, SERVING_ROWS, WARMUP, build_features,
                                       feature_names, make_target, market_index, regularize, resample_daily)
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.market.validation import validate
from tests.conftest import DATA_DIR

ROWS = 3000  # from the first candle: holds BTC's bad first print and the 2017-09-22 outage


def _load(asset: str, rows: int = ROWS) -> pd.DataFrame:
    """Candles as the store serves them: validated (``outlier`` flags), indexed by open time."""
    if not (DATA_DIR / "BTCUSDT-1h.csv.gz").is_file():
        pytest.fail(f"shared market data not found at {DATA_DIR} (set CRYPTO_PREDICTOR_DATA_DIR)")
    raw = CsvSource(DATA_DIR).fetch(asset).candles.iloc[:rows]
    clean, _ = validate(raw, "1h")
    return clean.set_index("open_time")


@pytest.fixture(scope="module")
def btc_raw() -> pd.DataFrame:
    return _load("bitcoin")


@pytest.fixture(scope="module")
def btc(btc_raw) -> pd.DataFrame:
    return regularize(btc_raw)


@pytest.fixture(scope="module")
def eth(btc) -> pd.DataFrame:
    return regularize(_load("ethereum", ROWS + 50)).loc[: btc.index[-1]]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and a.index.equals(b.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12, atol=1e-15, equal_nan=True)


def _scale_after(frame: pd.DataFrame, t, factor: float) -> pd.DataFrame:
    out = frame.copy()
    later = out.index > t
    for col in ("open", "high", "low", "close", "volume"):
        out.loc[later, col] *= factor
    return out


# -- (1) causality ---------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [WARMUP - 3, 700, 881, 2200])
def test_rows_up_to_t_never_depend_on_later_rows(btc, eth, cut):
    t = btc.index[cut]
    ctx = {"ethereum": eth}
    full = build_features(btc, ctx)
    expected = full.loc[:t]

    # later rows removed (equivalently: the full frame is the short one with rows appended)
    _same(build_features(btc.loc[:t], {"ethereum": eth.loc[:t]}), expected)
    # later candles tripled, and a later row flagged as an outlier
    altered = _scale_after(btc, t, 3.0)
    altered.loc[altered.index > t, "outlier"] = True
    changed = build_features(altered, ctx)
    _same(changed.loc[:t], expected)
    # the alteration did reach the later rows, so the comparison above could have failed
    assert not np.allclose(changed["ret_24"].iloc[cut + 1:cut + 25], full["ret_24"].iloc[cut + 1:cut + 25])
    # context altered, truncated or extended after t
    ctx_changed = build_features(btc, {"ethereum": _scale_after(eth, t, 3.0)})
    _same(ctx_changed.loc[:t], expected)
    assert not np.allclose(ctx_changed["ctx_ethereum_ret_24"].iloc[cut + 1:cut + 25],
                           full["ctx_ethereum_ret_24"].iloc[cut + 1:cut + 25])
    _same(build_features(btc, {"ethereum": eth.loc[:t]}).loc[:t], expected)


def test_talib_indicators_are_causal(btc):
    h, lo, c = (btc[k].to_numpy() for k in ("high", "low", "close"))
    cut = 1000
    calls = [
        lambda h, lo, c: [talib.SMA(c, 24)], lambda h, lo, c: [talib.EMA(c, 72)],
        lambda h, lo, c: [talib.RSI(c, 14)], lambda h, lo, c: list(talib.MACD(c, 12, 26, 9)),
        lambda h, lo, c: list(talib.BBANDS(c, 20, 2, 2, 0)), lambda h, lo, c: [talib.ATR(h, lo, c, 14)],
    ]
    future = np.arange(len(c)) > cut
    for call in calls:
        whole = call(h, lo, c)
        short = call(h[:cut + 1], lo[:cut + 1], c[:cut + 1])
        spoilt = call(np.where(future, h * 3, h), np.where(future, lo * 3, lo), np.where(future, c * 3, c))
        for w, s, x in zip(whole, short, spoilt):
            assert np.array_equal(w[:cut + 1], s, equal_nan=True)
            assert np.array_equal(w[:cut + 1], x[:cut + 1], equal_nan=True)


def test_context_uses_only_rows_at_or_before_each_time():
    idx = pd.date_range("2021-01-01", periods=40, freq="1h", tz="UTC")
    main = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=idx)
    close = np.exp(np.arange(40) * 0.01 + (np.arange(40) % 2) * 0.05)  # distinct 1-candle returns
    ctx = pd.DataFrame({"close": close}, index=idx)
    # context lacks 10:00 and 20:00-27:00; one extra row at 30:30 sits between main rows
    ctx = ctx.drop(idx[[10] + list(range(20, 28))])
    ctx.loc[idx[30] + pd.Timedelta("30min")] = 999.0
    ctx = ctx.sort_index()
    got = build_features(main, {"x": ctx})["ctx_x_ret_1"]
    own = np.log(ctx["close"]).diff()
    assert got[idx[9]] == own[idx[9]]
    assert got[idx[10]] == own[idx[9]]  # one hour stale: the past value is carried
    assert got[idx[22]] == own[idx[19]]  # three candles stale: still carried
    assert np.isnan(got[idx[23]]) and np.isnan(got[idx[27]])  # older than that: unknown
    assert got[idx[30]] == own[idx[30]]  # never the 30:30 row, which lies in its future
    assert got[idx[31]] == own[idx[31]]


# -- (2) column contract ---------------------------------------------------------------------

def test_columns_follow_feature_names_whatever_the_context_order(btc, eth):
    plain = build_features(btc)
    assert list(plain.columns) == FEATURE_NAMES == feature_names([])
    assert plain.index.equals(btc.index)
    assert (plain.dtypes == np.float64).all()
    both = build_features(btc, {"ethereum": eth, "bitcoin": btc})
    other = build_features(btc, {"bitcoin": btc, "ethereum": eth})
    assert list(both.columns) == feature_names(["ethereum", "bitcoin"]) == feature_names(["bitcoin", "ethereum"])
    assert list(both.columns[: len(FEATURE_NAMES)]) == FEATURE_NAMES
    assert {"ctx_bitcoin_ret_1", "ctx_bitcoin_ret_24", "ctx_bitcoin_rvol_24"} <= set(both.columns)
    _same(both, other)
    # the bitcoin context seen from bitcoin repeats bitcoin's own values
    np.testing.assert_array_equal(both["ctx_bitcoin_ret_24"], both["ret_24"])
    with pytest.raises(InvalidInput):
        feature_names(["bitcoin", "bitcoin"])


# -- (3) finiteness --------------------------------------------------------------------------

def test_no_inf_and_no_nan_after_warmup(btc, eth):
    feats = build_features(btc, {"ethereum": eth})
    values = feats.to_numpy()
    assert not np.isinf(values).any()
    assert not np.isnan(values[WARMUP:]).any()
    assert np.isnan(values[WARMUP - 1]).any()  # WARMUP is the tight bound, not a guess
    assert feats["rsi_14"].dropna().between(0, 1).all() and feats["bb_width_20"].dropna().ge(0).all()


def test_serving_on_the_last_rows_matches_training_on_full_history(btc, eth):
    full = build_features(btc, {"ethereum": eth})
    for end in (1200, 2100, len(btc)):
        tail = btc.iloc[end - SERVING_ROWS:end]
        served = build_features(tail, {"ethereum": eth.loc[tail.index[0]:tail.index[-1]]}).iloc[-1]
        np.testing.assert_allclose(served.to_numpy(), full.iloc[end - 1].to_numpy(), rtol=0, atol=1e-4)


def test_inputs_are_not_modified(btc, eth):
    before, ctx_before = btc.copy(deep=True), eth.copy(deep=True)
    build_features(btc, {"ethereum": eth})
    regularize(btc)
    resample_daily(btc)
    pd.testing.assert_frame_equal(btc, before)
    pd.testing.assert_frame_equal(eth, ctx_before)


def test_bad_input_is_refused(btc):
    holed = btc.iloc[:300].copy()
    holed.iloc[200, holed.columns.get_loc("close")] = np.nan  # would poison every later EMA
    with pytest.raises(InvalidInput):
        build_features(holed)
    with pytest.raises(InvalidInput):
        build_features(btc.iloc[:300].iloc[::-1])
    with pytest.raises(InvalidInput):
        build_features(btc.iloc[:300].reset_index())


# -- (4) targets -----------------------------------------------------------------------------

def test_make_target_by_row_shift():
    close = pd.Series([100.0, 110.0, 121.0, 100.0])
    one = make_target(close, 1)
    np.testing.assert_allclose(one[:3], np.log([1.1, 1.1, 100 / 121]))
    assert np.isnan(one.iloc[3])
    two = make_target(close, 2)
    np.testing.assert_allclose(two[:2], np.log([1.21, 100 / 110]))
    assert two.iloc[2:].isna().all() and two.index.equals(close.index)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInput):
            make_target(close, bad)


# -- (5) gaps --------------------------------------------------------------------------------

def test_regularize_fills_the_2017_09_22_outage(btc_raw, btc):
    first, last = pd.Timestamp("2017-09-22T20:00Z"), pd.Timestamp("2017-09-22T23:00Z")
    assert not btc_raw.index.isin(pd.date_range(first, last, freq="1h")).any()  # the real gap
    assert len(btc) == (btc_raw.index[-1] - btc_raw.index[0]) / pd.Timedelta("1h") + 1
    assert (btc.index.to_series().diff().dropna() == pd.Timedelta("1h")).all()
    assert btc.index[btc["filled"]].equals(pd.date_range(first, last, freq="1h"))
    gap, prev = btc.loc[first:last], btc_raw.loc[:first].iloc[-1]
    for col in ("open", "high", "low", "close"):
        assert (gap[col] == prev["close"]).all()
    assert (gap["volume"] == 0).all() and not gap["outlier"].any()
    pd.testing.assert_frame_equal(btc.loc[btc_raw.index, btc_raw.columns], btc_raw)
    pd.testing.assert_frame_equal(regularize(btc), btc)  # idempotent
    # after regularize a row shift is a time shift: the target across the outage is honest
    target = make_target(btc["close"], 24)
    t = first - pd.Timedelta("2h")
    assert target[t] == pytest.approx(np.log(btc_raw.loc[t + pd.Timedelta("24h"), "close"] / btc_raw.loc[t, "close"]))


def test_regularize_refuses_off_grid_times(btc_raw):
    odd = btc_raw.iloc[:10].copy()
    odd.index = odd.index[:9].append(pd.DatetimeIndex([odd.index[8] + pd.Timedelta("30min")]))
    with pytest.raises(InvalidInput):
        regularize(odd)


# -- (6) outliers ----------------------------------------------------------------------------

def test_outlier_rows_do_not_poison_atr(btc):
    # BTC's first candle: open = high = 16199.91, close 4308.83; validation flags it
    assert bool(btc["outlier"].iloc[0]) and btc["high"].iloc[0] > 3 * btc["close"].iloc[0]
    atr = build_features(btc.iloc[:400])["atr_14"]
    assert atr.iloc[14:].max() < 0.05

    # the same bad print in mid-series: clipped when flagged, a spike when not
    spoilt = btc.iloc[:400].copy()
    row = spoilt.index[300]
    spoilt.loc[row, ["open", "high"]] = 3.76 * spoilt.loc[row, "close"]
    clean_atr = build_features(btc.iloc[:400])["atr_14"].iloc[300:320]
    flagged = spoilt.assign(outlier=spoilt.index == row)
    flagged_atr = build_features(flagged)["atr_14"].iloc[300:320]
    unflagged_atr = build_features(spoilt.assign(outlier=False))["atr_14"].iloc[300:320]
    assert (flagged_atr < 1.5 * clean_atr).all()
    assert (unflagged_atr > 5 * clean_atr).any()


def test_real_eth_wick_flag_is_clipped():
    eth = regularize(_load("ethereum", 400))
    row = pd.Timestamp("2017-08-22T04:00Z")
    assert bool(eth.loc[row, "outlier"])
    flagged = build_features(eth)["atr_14"]
    raw = build_features(eth.assign(outlier=False))["atr_14"]
    assert flagged[row] < raw[row]
    assert flagged.loc[row:].iloc[:14].max() < 0.05


# -- (7) daily bars --------------------------------------------------------------------------

def test_resample_daily_keeps_complete_days_only():
    idx = pd.date_range("2021-03-01T22:00Z", "2021-03-04T05:00Z", freq="1h")
    n = len(idx)
    hourly = pd.DataFrame({
        "open": np.arange(n) + 100.0, "high": np.arange(n) + 110.0, "low": np.arange(n) + 90.0,
        "close": np.arange(n) + 101.0, "volume": np.ones(n), "outlier": False,
    }, index=idx.rename("open_time"))
    hourly.loc["2021-03-02T05:00Z", ["high", "outlier"]] = [500.0, True]
    daily = resample_daily(hourly)
    assert list(daily.index) == [pd.Timestamp("2021-03-02", tz="UTC"), pd.Timestamp("2021-03-03", tz="UTC")]
    d2 = daily.loc[pd.Timestamp("2021-03-02", tz="UTC")]
    assert (d2["open"], d2["high"], d2["low"], d2["close"], d2["volume"]) == (102.0, 500.0, 92.0, 126.0, 24.0)
    assert bool(d2["outlier"]) and not bool(daily["outlier"].iloc[1])
    assert daily["open"].iloc[1] == 126.0 and daily["close"].iloc[1] == 150.0
    # a day with a missing hour is incomplete until regularize fills it
    holed = hourly.drop(pd.Timestamp("2021-03-03T10:00Z"))
    assert list(resample_daily(holed).index) == [pd.Timestamp("2021-03-02", tz="UTC")]
    assert list(resample_daily(regularize(holed)).index) == list(daily.index)


def test_features_on_daily_bars(btc):
    daily = resample_daily(btc)
    assert len(daily) == 124 and daily.index[0] == pd.Timestamp("2017-08-18", tz="UTC")
    feats = build_features(daily)
    assert list(feats.columns) == FEATURE_NAMES and not np.isinf(feats.to_numpy()).any()


# -- market index ------------------------------------------------------------------------------

def test_market_index_is_the_mean_hourly_log_return_of_the_assets_listed(btc, eth):
    # eth lists 10 hours after btc: those hours are btc's return alone; an hour missing from eth is
    # not a return of eth's (the gap's return is left out, not spread).
    late_eth = eth["close"].iloc[10:].drop(eth.index[500])
    index = market_index({"bitcoin": btc["close"], "ethereum": late_eth})
    r_btc = np.log(btc["close"]).diff()
    r_eth = np.log(late_eth).diff().where(late_eth.index.to_series().diff() == pd.Timedelta("1h"))
    expected = pd.concat([r_btc, r_eth], axis=1).mean(axis=1).fillna(0.0).cumsum()
    np.testing.assert_allclose(np.log(index["close"]).to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-12)
    assert index["close"].iloc[0] == 1.0 and (index["volume"] == 0).all()
    hour = index.index[5]
    assert np.log(index["close"].loc[hour] / index["close"].shift(1).loc[hour]) == pytest.approx(r_btc.loc[hour])


@pytest.mark.parametrize("cut", [50, 1200])
def test_market_index_up_to_t_never_depends_on_later_rows(btc, eth, cut):
    t = btc.index[cut]
    full = market_index({"bitcoin": btc["close"], "ethereum": eth["close"]})
    changed = market_index({"bitcoin": _scale_after(btc, t, 1.7)["close"],
                            "ethereum": _scale_after(eth, t, 0.4)["close"].loc[: btc.index[cut + 100]]})
    np.testing.assert_allclose(full.loc[:t, "close"], changed.loc[:t, "close"], rtol=1e-12)
    assert not np.allclose(full.loc[btc.index[cut + 1]:btc.index[cut + 100], "close"],
                           changed.loc[btc.index[cut + 1]:btc.index[cut + 100], "close"])


def test_market_index_refuses_what_it_cannot_average(btc):
    with pytest.raises(InvalidInput, match="at least one"):
        market_index({})
    bad = btc["close"].copy()
    bad.iloc[3] = 0.0
    with pytest.raises(InvalidInput, match="non-positive"):
        market_index({"bitcoin": bad})
