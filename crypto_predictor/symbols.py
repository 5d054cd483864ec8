"""Asset identities: "bitcoin" <-> "BTC" <-> "BTCUSDT" all name one asset."""

from __future__ import annotations

from dataclasses import dataclass

from crypto_predictor.errors import UnknownSymbol, UnknownTimeframe


@dataclass(frozen=True)
class Asset:
    id: str  # CoinGecko id; the canonical name everywhere in this package
    ticker: str
    name: str

    @property
    def pair(self) -> str:
        """Binance spot pair against USDT."""
        return f"{self.ticker}USDT"


ASSETS: tuple[Asset, ...] = (
    Asset("bitcoin", "BTC", "Bitcoin"),
    Asset("ethereum", "ETH", "Ethereum"),
    Asset("binancecoin", "BNB", "BNB"),
    Asset("cardano", "ADA", "Cardano"),
    Asset("solana", "SOL", "Solana"),
    Asset("polkadot", "DOT", "Polkadot"),
    Asset("litecoin", "LTC", "Litecoin"),
    Asset("ripple", "XRP", "XRP"),
    Asset("dogecoin", "DOGE", "Dogecoin"),
    Asset("tron", "TRX", "TRON"),
    Asset("avalanche-2", "AVAX", "Avalanche"),
    Asset("chainlink", "LINK", "Chainlink"),
    Asset("matic-network", "MATIC", "Polygon"),
    Asset("shiba-inu", "SHIB", "Shiba Inu"),
    Asset("cosmos", "ATOM", "Cosmos Hub"),
    Asset("bitcoin-cash", "BCH", "Bitcoin Cash"),
    Asset("ethereum-classic", "ETC", "Ethereum Classic"),
    Asset("uniswap", "UNI", "Uniswap"),
    Asset("stellar", "XLM", "Stellar"),
    Asset("monero", "XMR", "Monero"),
)

_LOOKUP: dict[str, Asset] = {}
for _a in ASSETS:
    for _key in (_a.id, _a.ticker, _a.pair, _a.name):
        _LOOKUP[_key.lower()] = _a


def supported_ids() -> list[str]:
    return [a.id for a in ASSETS]


def resolve(symbol) -> Asset:
    """Return the asset a user's symbol names, in any of its spellings."""
    if isinstance(symbol, Asset):
        return symbol
    if not isinstance(symbol, str) or not symbol.strip():
        raise UnknownSymbol(
            f"symbol must be a non-empty string; supported: {', '.join(supported_ids())}",
            supported=supported_ids(),
        )
    asset = _LOOKUP.get(symbol.strip().lower())
    if asset is None:
        raise UnknownSymbol(
            f"unknown symbol {symbol!r}; supported: {', '.join(supported_ids())} "
            "(CoinGecko id, ticker such as BTC, or Binance pair such as BTCUSDT)",
            supported=supported_ids(),
        )
    return asset


# Prediction timeframes and their horizons in hours.
TIMEFRAMES: dict[str, int] = {"1h": 1, "24h": 24, "7d": 168, "30d": 720}

# Candle intervals we store, with their length in milliseconds.
INTERVALS_MS: dict[str, int] = {
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


def check_timeframe(timeframe) -> str:
    if timeframe not in TIMEFRAMES:
        raise UnknownTimeframe(
            f"unknown timeframe {timeframe!r}; valid: {', '.join(TIMEFRAMES)}",
            valid=list(TIMEFRAMES),
        )
    return timeframe


def check_interval(interval) -> str:
    if interval not in INTERVALS_MS:
        raise UnknownTimeframe(
            f"unknown interval {interval!r}; valid: {', '.join(INTERVALS_MS)}",
            valid=list(INTERVALS_MS),
        )
    return interval
