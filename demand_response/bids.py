"""``bids.json``: the offers a consumer makes, its schema, validation and atomic saving.

Canonical form (docs/bids-format.md)::

    {"version": 1, "source": "manual",
     "bids": [{"watts": 1200, "price_wei_per_kwh": 40000000000000},
              {"kw": 0.8,    "price_wei_per_kwh": 55000000000000}]}

* ``watts``: integer watts of reduction (1 .. 2^32-1); or ``kw``: kilowatts, at most three
  decimals (converted to whole watts). Exactly one of the two per bid.
* ``price_wei_per_kwh``: the lowest price (wei per kWh) the household accepts, an integer
  (1 .. 2^256-1). It is rounded *up* to the request's price grid, never down.
* ``price``: the same as a decimal in the market's currency per kWh (``"0.0045"``, or with
  its unit ``"0.0045 ETH/kWh"``; ``units.parse_price``). Exactly one of the two per bid.
* ``currency`` (optional, top level): the currency ``price`` is in, ``"ETH"`` (the default) or a
  stablecoin such as ``"USDC"`` (``units.CURRENCIES``). The daemon bids these offers only on a
  request settled in that currency; ``price_wei_per_kwh`` is ETH only.
* ``source`` (optional): a free string saying where the bids came from.
* Fleet form: ``{"version": 1, "fleet": [{"household": 0, "bids": [...]}, ...]}``; fleet
  agent ``i`` uses entry ``i mod len(fleet)``.
* The seed's legacy form ``{"energy": [kW, ...], "price": [wei per kWh, ...]}`` is still
  read: ``energy[i]`` kW at ``price[i]`` wei per kWh.

Every error is a ``BidsError`` whose message names the file, the field and the problem. A
file that fails validation is never modified.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import BidsError, ConfigError
from .files import atomic_write_text
from .market import MAX_BID_WATTS, MAX_BIDS_PER_CALL, payout, snap_price_up
from .units import ETH, Currency, UnitError, currency as _currency, format_kw, format_price, parse_price, plain

MAX_FILE_BYTES = 1 << 20
MAX_WATTS = MAX_BID_WATTS  # the contract's limit per bid
MAX_PRICE = 2**256 - 1
MAX_BIDS = 4096
_TOP_KEYS = {"version", "source", "currency", "bids", "fleet"}
_LEGACY_KEYS = {"energy", "price"}
_BID_KEYS = {"watts", "kw", "price_wei_per_kwh", "price"}
#: The market's settlement currency (a ``price`` is a decimal of it per kWh).
MARKET_CURRENCY = ETH
_ENTRY_KEYS = {"household", "bids"}


@dataclass(frozen=True)
class Offer:
    """One bid: ``watts`` of reduction at no less than ``price`` wei per kWh."""

    watts: int
    price: int
    #: The currency ``price`` is in (base units per kWh); None: the request's own, whatever it is
    #: (offers fitted to a request, such as gridsim's).
    currency: Currency | None = ETH

    @property
    def kw(self) -> float:
        """The reduction in kW."""
        return self.watts / 1000


@dataclass(frozen=True)
class BidsDocument:
    """A validated ``bids.json``: one household's offers, or a fleet's."""

    bids: tuple[Offer, ...] = ()
    fleet: tuple[tuple[Offer, ...], ...] = ()
    source: str | None = None
    legacy: bool = False

    def for_agent(self, index: int = 0) -> tuple[Offer, ...]:
        """The offers of fleet agent ``index`` (the single list when this is not a fleet file)."""
        if self.fleet:
            return self.fleet[index % len(self.fleet)]
        return self.bids


def _reject_constant(name: str) -> Any:
    raise BidsError(f"{name} is not a number JSON allows (NaN and Infinity are rejected)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BidsError(f"field {key!r} appears twice")
        out[key] = value
    return out


def _integer(value: Any, where: str, what: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise BidsError(f"{where}: {what} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BidsError(f"{where}: {what} must be finite")
        if value > maximum:
            raise BidsError(f"{where}: {what} {value} is too large (max {maximum})")
        if value != value.to_integral_value():
            raise BidsError(f"{where}: {what} must be a whole number, got {value}")
        value = int(value)
    if value <= 0:
        raise BidsError(f"{where}: {what} must be positive, got {value}")
    if value > maximum:
        raise BidsError(f"{where}: {what} {value} is too large (max {maximum})")
    return value


def _kw_to_watts(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise BidsError(f"{where}: kW must be a number, got {type(value).__name__} {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise BidsError(f"{where}: kW must be finite")
    if number > Decimal(MAX_WATTS) / 1000:
        raise BidsError(f"{where}: kW {value} is too large (max {MAX_WATTS / 1000:.3f})")
    watts = number * 1000
    if watts != watts.to_integral_value():
        raise BidsError(f"{where}: kW {value} has more than 3 decimals (bids are in whole watts)")
    if watts <= 0:
        raise BidsError(f"{where}: kW must be positive, got {value}")
    return int(watts)


def _bid_list(items: Any, where: str, cur: Currency = MARKET_CURRENCY) -> tuple[Offer, ...]:
    if not isinstance(items, list):
        raise BidsError(f"{where} must be a list of bids, got {type(items).__name__}")
    if not items:
        raise BidsError(f"{where} is empty; give at least one bid")
    if len(items) > MAX_BIDS:
        raise BidsError(f"{where} has {len(items)} bids (max {MAX_BIDS})")
    offers = []
    for i, bid in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(bid, dict):
            raise BidsError(f"{at} must be an object like {{\"watts\": 1200, \"price_wei_per_kwh\": ...}}")
        unknown = set(bid) - _BID_KEYS
        if unknown:
            raise BidsError(f"{at}: unknown field {sorted(unknown)[0]!r} "
                            "(allowed: watts or kw, price or price_wei_per_kwh)")
        if ("watts" in bid) == ("kw" in bid):
            raise BidsError(f"{at}: give exactly one of 'watts' or 'kw'")
        if "price" in bid and "price_wei_per_kwh" in bid:
            raise BidsError(f"{at}: give exactly one of 'price' or 'price_wei_per_kwh', not both")
        if "price" not in bid and "price_wei_per_kwh" not in bid:
            raise BidsError(f"{at}: missing field 'price_wei_per_kwh' (or 'price', a decimal of "
                            f"{cur.symbol} per kWh such as \"0.0045\")")
        watts = (
            _integer(bid["watts"], at, "watts", MAX_WATTS) if "watts" in bid else _kw_to_watts(bid["kw"], at)
        )
        if "price" in bid:
            price = _decimal_price(bid["price"], at, cur)
        elif cur != ETH:
            raise BidsError(f"{at}: price_wei_per_kwh is for ETH, but this file's currency is {cur.symbol}; "
                            f"write 'price' as a decimal of {cur.symbol} per kWh such as \"0.35\"")
        else:
            price = _integer(bid["price_wei_per_kwh"], at, "price_wei_per_kwh", MAX_PRICE)
        offers.append(Offer(watts, price, cur))
    return tuple(offers)


def _decimal_price(value: Any, at: str, cur: Currency = MARKET_CURRENCY) -> int:
    """A ``price`` field: a decimal in ``cur`` per kWh, as base units per kWh."""
    if isinstance(value, (list, dict)) or value is None:
        raise BidsError(f"{at}.price must be a decimal such as \"0.0045\", got {type(value).__name__}")
    try:
        return parse_price(value, cur, what=f"{at}.price")
    except UnitError as exc:
        raise BidsError(str(exc)) from None


def _legacy(doc: dict[str, Any]) -> BidsDocument:
    energy, price = doc["energy"], doc["price"]
    for key, value in (("energy", energy), ("price", price)):
        if not isinstance(value, list):
            raise BidsError(f"legacy field {key!r} must be a list, got {type(value).__name__}")
        if not value:
            raise BidsError(f"legacy field {key!r} is empty; give at least one bid")
    if len(energy) != len(price):
        raise BidsError(f"legacy fields 'energy' ({len(energy)}) and 'price' ({len(price)}) differ in length")
    offers = tuple(
        Offer(_kw_to_watts(e, f"energy[{i}]"), _integer(p, f"price[{i}]", "price (wei per kWh)", MAX_PRICE))
        for i, (e, p) in enumerate(zip(energy, price))
    )
    return BidsDocument(bids=offers, source="legacy", legacy=True)


def parse_bids(text: str) -> BidsDocument:
    """Validate the text of a bids file (raises ``BidsError``)."""
    try:
        doc = json.loads(
            text, parse_float=Decimal, parse_int=int, parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except BidsError:
        raise
    except (ValueError, InvalidOperation) as exc:
        raise BidsError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise BidsError("JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise BidsError(f"the top level must be an object, got {type(doc).__name__}")
    if set(doc) & _LEGACY_KEYS:
        unknown = set(doc) - _LEGACY_KEYS
        if unknown:
            raise BidsError(f"unknown field {sorted(unknown)[0]!r} in a legacy {{energy, price}} file")
        if set(doc) != _LEGACY_KEYS:
            raise BidsError(f"legacy file needs both 'energy' and 'price'; missing {sorted(_LEGACY_KEYS - set(doc))[0]!r}")
        return _legacy(doc)
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise BidsError(f"unknown field {sorted(unknown)[0]!r} (allowed: version, source, currency, bids, fleet)")
    if doc.get("version") != 1 or isinstance(doc.get("version"), bool):
        raise BidsError(f"field 'version' must be 1, got {doc.get('version')!r}")
    source = doc.get("source")
    if source is not None and not isinstance(source, str):
        raise BidsError(f"field 'source' must be a string, got {type(source).__name__}")
    cur = _file_currency(doc.get("currency", MARKET_CURRENCY.symbol))
    if ("bids" in doc) == ("fleet" in doc):
        raise BidsError("give exactly one of 'bids' (one household) or 'fleet' (several)")
    if "bids" in doc:
        return BidsDocument(bids=_bid_list(doc["bids"], "bids", cur), source=source)
    fleet = doc["fleet"]
    if not isinstance(fleet, list) or not fleet:
        raise BidsError("field 'fleet' must be a non-empty list of {household, bids} entries")
    entries = []
    for i, entry in enumerate(fleet):
        if not isinstance(entry, dict):
            raise BidsError(f"fleet[{i}] must be an object with 'household' and 'bids'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise BidsError(f"fleet[{i}]: unknown field {sorted(unknown)[0]!r} (allowed: household, bids)")
        if "household" in entry:
            household = entry["household"]
            if isinstance(household, bool) or not isinstance(household, int) or household < 0:
                raise BidsError(f"fleet[{i}].household must be a non-negative integer, got {household!r}")
        entries.append(_bid_list(entry.get("bids"), f"fleet[{i}].bids", cur))
    return BidsDocument(fleet=tuple(entries), source=source)


def _file_currency(value: Any) -> Currency:
    """The top-level ``currency`` field: a known currency's symbol (``ETH``, ``USDC``...)."""
    if not isinstance(value, str):
        raise BidsError(f"field 'currency' must be a symbol such as \"USDC\", got {type(value).__name__}")
    try:
        return _currency(value)
    except UnitError as exc:
        raise BidsError(f"field 'currency': {exc}") from None


def load_bids(path: str | Path) -> BidsDocument:
    """Read and validate ``path``. Errors start with the file name; the file is not touched."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BidsError(f"{size} bytes is over the {MAX_FILE_BYTES} byte limit")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BidsError(f"{path}: file not found; create it (see docs/bids-format.md) or set BIDS_FILE") from None
    except BidsError as exc:
        raise BidsError(f"{path}: {exc}") from None
    except OSError as exc:
        raise BidsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BidsError(f"{path}: not UTF-8 text") from None
    try:
        return parse_bids(text)
    except BidsError as exc:
        raise BidsError(f"{path}: {exc}") from None


def document(offers: Iterable[Offer | tuple[int, int]], source: str | None = None) -> dict[str, Any]:
    """The canonical JSON document for ``offers``: prices in wei for ETH (and for tuples and
    offers fitted to a request); for offers in another currency, that ``currency`` and decimal
    ``price`` s (``price_wei_per_kwh`` is ETH only). Offers in two currencies: ``BidsError``."""
    offers = list(offers)
    symbols = {o.currency.symbol if isinstance(o, Offer) and o.currency is not None else ETH.symbol for o in offers}
    if len(symbols) > 1:
        raise BidsError(f"the bids are in more than one currency ({', '.join(sorted(symbols))}); "
                        "one file prices all its bids in one")
    cur = next((o.currency for o in offers if isinstance(o, Offer) and o.currency is not None), ETH)
    doc: dict[str, Any] = {"version": 1}
    if source:
        doc["source"] = source
    if cur != ETH:
        doc["currency"] = cur.symbol
        doc["bids"] = [{"watts": int(o.watts), "price": plain(int(o.price), cur)} for o in offers
                       if isinstance(o, Offer)]
        return doc
    doc["bids"] = [
        {"watts": int(o[0] if isinstance(o, tuple) else o.watts),
         "price_wei_per_kwh": int(o[1] if isinstance(o, tuple) else o.price)}
        for o in offers
    ]
    return doc


def save_bids(path: str | Path, offers: Iterable[Offer | tuple[int, int]], source: str | None = None) -> Path:
    """Validate and write ``offers`` atomically in the canonical form."""
    path = Path(path)
    text = json.dumps(document(offers, source), indent=2) + "\n"
    parse_bids(text)  # never write a file we would refuse to read
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


@dataclass(frozen=True)
class Prepared:
    """Offers ready for one request: on its price grid, within its cap."""

    submit: tuple[Offer, ...]
    skipped: tuple[tuple[Offer, str], ...]


def prepare(offers: Sequence[Offer], cap_wei_per_kwh: int, currency: Currency = ETH) -> Prepared:
    """Snap prices up to the request's grid; skip (with a reason) those above the cap
    (base units of ``currency``, the request's, per kWh)."""
    submit, skipped = [], []
    for offer in offers:
        if offer.price > cap_wei_per_kwh:
            skipped.append((offer, f"above the request's cap of {format_price(cap_wei_per_kwh, currency)}"))
            continue
        submit.append(Offer(offer.watts, snap_price_up(offer.price, cap_wei_per_kwh), offer.currency))
    return Prepared(tuple(submit), tuple(skipped))


def chunks(offers: Sequence[Offer], size: int = MAX_BIDS_PER_CALL) -> list[Sequence[Offer]]:
    """``offers`` in groups the contract accepts in one call."""
    return [offers[i : i + size] for i in range(0, len(offers), size)]


def from_pairs(pairs: Iterable[Sequence[int]], where: str = "gridsim",
               currency: Currency | None = ETH) -> tuple[Offer, ...]:
    """Offers from ``(watts, price)`` pairs (e.g. gridsim's output), validated; ``currency``
    None: prices in the currency of the request they were fitted to."""
    offers = []
    for i, pair in enumerate(pairs):
        watts, price = int(pair[0]), int(pair[1])
        if not 0 < watts <= MAX_WATTS or not 0 < price <= MAX_PRICE or math.isnan(float(price)):
            raise BidsError(f"{where}[{i}]: invalid bid ({watts} W at {price} wei/kWh)")
        offers.append(Offer(watts, price, currency))
    return tuple(offers)


#: ``BID_MARGIN`` when it is not set: an offer must pay at least 1.5 × what taking part costs.
DEFAULT_BID_MARGIN = Decimal("1.5")


def bid_margin(text: str | None) -> Decimal:
    """``BID_MARGIN`` from the settings: 0 (bid regardless of fees) or a factor of at least 1."""
    if text is None or not str(text).strip():
        return DEFAULT_BID_MARGIN
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or (value != 0 and value < 1):
        raise ConfigError(f"BID_MARGIN={text!r}: give 0 (bid regardless of fees) or a factor of at least 1 "
                          "(1.5: an offer must pay 1.5 times what taking part costs)")
    return value


def cost_warnings(offers: Sequence[Offer], cost: int, duration_s: int, margin: float | Decimal = 1,
                  currency: Currency = MARKET_CURRENCY) -> list[str]:
    """One line per offer whose payout at its own ask, over an event of ``duration_s``, is less
    than ``margin`` × ``cost`` (what taking part costs in fees, ``fees.participation_cost``):
    the daemon would skip it (``BID_MARGIN``; 0 warns about nothing)."""
    from .fees import worth_bidding

    factor = Decimal(str(margin))
    if factor <= 0:
        return []
    lines = []
    for i, offer in enumerate(offers):
        decision = worth_bidding(payout(offer.watts, duration_s, offer.price), cost, max(factor - 1, 0), currency)
        if not decision.bid:
            lines.append(f"bid {i + 1} ({format_kw(offer.watts)} at {format_price(offer.price, currency)}): "
                         f"{decision.reason}")
    return lines
