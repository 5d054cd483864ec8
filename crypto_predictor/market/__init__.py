"""Market data: provider clients, validation and the candle store."""

import time

from crypto_predictor.errors import InvalidInput
from crypto_predictor.config import MARKET_SOURCES


def get_source(name: str, config, data_dir=None, clock=time.time):
    """The source called ``name``: binance, coingecko or csv (which needs a directory).

    ``clock`` is a live source's idea of now (it keeps closed candles only); jobs replaying a past day pass their own.
    """
    if name == "binance":
        from crypto_predictor.market.binance import BinanceSource

        return BinanceSource(config, clock=clock)
    if name == "coingecko":
        from crypto_predictor.market.coingecko import CoinGeckoSource

        return CoinGeckoSource(config, clock=clock)
    if name == "csv":
        from crypto_predictor.market.csvdir import CsvSource

        directory = data_dir or config.MARKET_DATA_DIR
        if not directory:
            raise InvalidInput("the csv source needs a directory: --data-dir or MARKET_DATA_DIR")
        return CsvSource(directory)
    raise InvalidInput(f"unknown market data source {name!r}; valid: {', '.join(MARKET_SOURCES)}")
