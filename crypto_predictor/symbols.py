"""Asset identities: "bitcoin" <-> "BTC" <-> "BTCUSDT" all name one asset.

Two tiers: the 20 ``core`` assets (shared/data/ohlcv; trained by default) and 154 ``universe``
assets (shared/data/universe: every Binance USDT spot pair listed from 2021-04 to 2023-12 but
those, fiat, stable and gold tokens; trained on request, served by the global model). An asset
whose CoinGecko id is not known here has its lower-case ticker as id and answers to its ticker
and pair only (``coingecko_id`` None: the CoinGecko source cannot fetch it).
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto_predictor.errors import UnknownSymbol, UnknownTimeframe


@dataclass(frozen=True)
class Asset:
    id: str  # CoinGecko id (else the lower-case ticker): the canonical name everywhere in this package
    ticker: str
    name: str
    tier: str = "core"  # "core" | "universe"
    known_id: bool = True  # whether ``id`` is the asset's CoinGecko id

    @property
    def coingecko_id(self) -> str | None:
        return self.id if self.known_id else None

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

CORE_ASSETS = ASSETS

# Universe assets: TICKER, or TICKER:coingecko-id:Name where the CoinGecko id is known.
_UNIVERSE = """
    1INCH:1inch:1inch
    AAVE:aave:Aave
    ACM
    AKRO
    ALGO:algorand:Algorand
    ALICE
    ALPHA
    ANKR:ankr:Ankr
    ANT
    ARDR
    ARPA
    ASR
    ATM
    AUDIO:audius:Audius
    AVA
    AXS:axie-infinity:Axie Infinity
    BADGER
    BAL:balancer:Balancer
    BAND:band-protocol:Band Protocol
    BAT:basic-attention-token:Basic Attention
    BEL
    BLZ
    BNT:bancor:Bancor
    CAKE:pancakeswap-token:PancakeSwap
    CELO:celo:Celo
    CELR
    CFX
    CHR
    CHZ:chiliz:Chiliz
    CKB
    COMP:compound-governance-token:Compound
    COS
    COTI
    CRV:curve-dao-token:Curve DAO
    CTK
    CTSI
    CTXC
    DASH:dash:Dash
    DATA
    DCR:decred:Decred
    DEGO
    DENT
    DGB:digibyte:DigiByte
    DIA
    DOCK
    DODO
    DREP
    DUSK
    EGLD:elrond-erd-2:MultiversX
    ENJ:enjincoin:Enjin Coin
    EOS:eos:EOS
    FET:fetch-ai:Fetch.ai
    FIL:filecoin:Filecoin
    FIO
    FIRO
    FIS
    FLM
    FTM:fantom:Fantom
    FUN
    GRT:the-graph:The Graph
    HARD
    HBAR:hedera-hashgraph:Hedera
    HIVE
    HOT
    ICX:icon:ICON
    INJ:injective-protocol:Injective
    IOST
    IOTA:iota:IOTA
    IOTX
    IRIS
    JST
    JUV
    KAVA:kava:Kava
    KMD
    KNC:kyber-network-crystal:Kyber Network
    KSM:kusama:Kusama
    LINA
    LIT
    LRC:loopring:Loopring
    LSK:lisk:Lisk
    LTO
    MANA:decentraland:Decentraland
    MBL
    MDT
    MKR:maker:Maker
    MTL
    NEAR:near:NEAR Protocol
    NEO:neo:NEO
    NKN
    NMR:numeraire:Numeraire
    NULS
    OCEAN:ocean-protocol:Ocean Protocol
    OG
    OGN
    OM
    OMG
    ONE:harmony:Harmony
    ONG
    ONT:ontology:Ontology
    ORN
    OXT
    PERP
    PNT
    POND
    PSG
    QTUM:qtum:Qtum
    REEF
    REN
    RIF
    RLC
    ROSE:oasis-network:Oasis Network
    RSR
    RUNE:thorchain:THORChain
    RVN:ravencoin:Ravencoin
    SAND:the-sandbox:The Sandbox
    SC:siacoin:Siacoin
    SFP
    SKL
    SNX:havven:Synthetix
    STMX
    STORJ:storj:Storj
    STPT
    STRAX
    STX
    SUPER
    SUSHI:sushi:Sushi
    SXP
    TFUEL
    THETA:theta-token:Theta Network
    TKO
    TRB
    TROY
    TRU
    TWT
    UMA:uma:UMA
    UNFI
    UTK
    VET:vechain:VeChain
    VITE
    VTHO
    WAN
    WAVES:waves:Waves
    WIN
    WING
    WNXM
    WRX
    XEM:nem:NEM
    XTZ:tezos:Tezos
    XVS
    YFI:yearn-finance:yearn.finance
    ZEC:zcash:Zcash
    ZEN:zencash:Horizen
    ZIL:zilliqa:Zilliqa
    ZRX:0x:0x
"""


def _universe(table: str) -> tuple[Asset, ...]:
    out = []
    for line in filter(None, (raw.strip() for raw in table.splitlines())):
        ticker, _, rest = line.partition(":")
        coin_id, _, name = rest.partition(":")
        out.append(Asset(coin_id or ticker.lower(), ticker, name or ticker, "universe", bool(coin_id)))
    return tuple(out)


UNIVERSE_ASSETS = _universe(_UNIVERSE)
ASSETS = CORE_ASSETS + UNIVERSE_ASSETS


def _lookup(assets) -> dict[str, Asset]:
    table: dict[str, Asset] = {}
    for asset in assets:
        keys = (asset.id, asset.ticker, asset.pair, asset.name) if asset.known_id else (asset.ticker, asset.pair)
        for key in dict.fromkeys(k.lower() for k in keys):
            if table.get(key, asset) is not asset:  # two assets answering to one name: a table error
                raise RuntimeError(f"symbol {key!r} names both {table[key].id} and {asset.id}")
            table[key] = asset
    return table


_LOOKUP = _lookup(ASSETS)


def supported_ids() -> list[str]:
    """Every asset id, core first."""
    return [a.id for a in ASSETS]


def core_ids() -> list[str]:
    return [a.id for a in CORE_ASSETS]


def _supported_text() -> str:
    return f"{', '.join(core_ids())} and {len(UNIVERSE_ASSETS)} more (GET /api/v1/symbols lists them)"


def resolve(symbol) -> Asset:
    """Return the asset a user's symbol names, in any of its spellings."""
    if isinstance(symbol, Asset):
        return symbol
    if not isinstance(symbol, str) or not symbol.strip():
        raise UnknownSymbol(
            f"symbol must be a non-empty string; supported: {_supported_text()}",
            supported=supported_ids(),
        )
    asset = _LOOKUP.get(symbol.strip().lower())
    if asset is None:
        raise UnknownSymbol(
            f"unknown symbol {symbol!r}; supported: {_supported_text()} "
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
