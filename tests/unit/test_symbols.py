import pytest

from crypto_predictor.errors import UnknownSymbol, UnknownTimeframe
from crypto_predictor.market.csvdir import CsvSource
from crypto_predictor.symbols import ASSETS, UNIVERSE_ASSETS, check_timeframe, core_ids, resolve, supported_ids

REQUIRED = ["bitcoin", "ethereum", "binancecoin", "cardano", "solana", "polkadot", "litecoin", "ripple",
            "dogecoin", "tron", "avalanche-2", "chainlink", "matic-network", "shiba-inu", "cosmos",
            "bitcoin-cash", "ethereum-classic", "uniswap", "stellar", "monero"]


@pytest.mark.parametrize("spelling", ["bitcoin", "BTC", "btc", "BTCUSDT", "btcusdt", " Bitcoin "])
def test_every_spelling_of_bitcoin_resolves_to_one_asset(spelling):
    asset = resolve(spelling)
    assert (asset.id, asset.ticker, asset.pair) == ("bitcoin", "BTC", "BTCUSDT")


def test_required_assets_are_supported_with_unique_ids_tickers_and_pairs():
    assert set(REQUIRED) <= set(supported_ids())
    for field in ("id", "ticker", "pair"):
        values = [getattr(a, field) for a in ASSETS]
        assert len(values) == len(set(values)), field
    assert resolve("avalanche-2").pair == "AVAXUSDT"
    assert resolve("XRP").id == "ripple"


def test_every_core_pair_of_the_shared_data_is_supported_by_id_ticker_and_pair(data_dir):
    pairs = sorted(p.name.split("-")[0] for p in data_dir.glob("*-1h.csv.gz"))
    assert len(pairs) == 20
    for pair in pairs:
        asset = resolve(pair)
        assert asset.pair == pair
        assert resolve(asset.ticker) == asset == resolve(asset.id)


def test_every_universe_pair_of_the_shared_data_is_supported_by_ticker_and_pair(data_dir):
    pairs = sorted(p.name.split("-")[0] for p in (data_dir.parent / "universe").glob("*-1h.csv.gz"))
    assert len(pairs) == len(UNIVERSE_ASSETS) == 154 and len(supported_ids()) == 174
    assert sorted(a.pair for a in UNIVERSE_ASSETS) == pairs
    for pair in pairs:
        asset = resolve(pair)
        assert asset.pair == pair and asset.tier == "universe" and resolve(asset.ticker) == asset
    # Both tiers from the shared data root in one source.
    assert CsvSource(data_dir.parent).available() == supported_ids()
    assert CsvSource(data_dir).available() == core_ids()


def test_a_universe_asset_answers_to_its_coingecko_id_only_when_it_is_known():
    algo = resolve("ALGOUSDT")
    assert (algo.id, algo.coingecko_id) == ("algorand", "algorand") and resolve("Algorand") is algo
    acm = resolve("acm")
    assert (acm.id, acm.ticker, acm.coingecko_id) == ("acm", "ACM", None) and resolve("ACMUSDT") is acm


@pytest.mark.parametrize("bad", ["notacoin", "", "BTCEUR", None, 42])
def test_unknown_symbol_lists_the_supported_assets(bad):
    with pytest.raises(UnknownSymbol) as err:
        resolve(bad)
    assert "bitcoin" in err.value.message and "avalanche-2" in err.value.message
    assert err.value.details["supported"] == supported_ids()
    assert err.value.http_status == 404


def test_timeframes():
    assert check_timeframe("24h") == "24h"
    with pytest.raises(UnknownTimeframe, match="1h, 24h, 7d, 30d"):
        check_timeframe("2h")
