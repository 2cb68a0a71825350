"""The one unit model: money in a settlement currency, power in kW, energy in kWh, durations.

On chain everything is an integer: amounts in the currency's base units (wei for ETH, the
token's smallest unit for a stablecoin: 1 USDC = 10**6), power in watts, times in seconds.
People read the currency with its symbol (``0.35 USDC/kWh``, ``0.0001 ETH/kWh``), kW and kWh,
and every duration of one form in one unit. This module converts both ways and is the only
place that does it; it is pure Python (``decimal`` only), so a consumer board imports it in
milliseconds.

Parsing refuses anything that is not an exact amount in the currency: more decimals than
the currency has, NaN, Infinity, exponents beyond uint256, negatives, thousands separators.
Every refusal is a :class:`UnitError` whose ``str()`` is one line naming the problem and the
fix. An optional :class:`ReferenceRate` (``USD_PER_ETH=3000``) shows a fiat figure next to
an amount in a currency that is not fiat itself: ``0.00018 ETH (≈ $0.54)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Iterable, Mapping
from .errors import UserError

#: Largest integer a contract stores (uint256).
MAX_UINT256 = 2**256 - 1
#: Decimals shown by default; tiny non-zero amounts keep more (see :func:`format_amount`).
DISPLAY_DECIMALS = 6
#: Significant digits kept for a tiny non-zero amount.
_TINY_SIGNIFICANT = 3


class UnitError(UserError, ValueError):
    """An amount, price or rate a person typed that cannot be used; ``str()`` is one line."""


@dataclass(frozen=True)
class Currency:
    """A settlement currency: its symbol and how many decimals its base unit has."""

    symbol: str  # what people read: ETH, USDC
    decimals: int  # 18 for ETH (wei), 6 for USDC
    name: str = ""  # long name, e.g. "USD Coin"
    fiat: str = ""  # ISO code when the currency *is* that fiat money (a stablecoin): "USD"

    @property
    def one(self) -> int:
        """Base units in one whole unit (10**decimals)."""
        return 10**self.decimals

    def __str__(self) -> str:
        return self.symbol


ETH = Currency("ETH", 18, "Ether")
USDC = Currency("USDC", 6, "USD Coin", fiat="USD")
#: Currencies known by symbol. A token not listed here is described by its own
#: ``Currency(symbol, decimals)`` (read ``decimals()`` from the token contract).
CURRENCIES: dict[str, Currency] = {
    c.symbol: c
    for c in (
        ETH,
        USDC,
        Currency("USDT", 6, "Tether USD", fiat="USD"),
        # The 6-decimal ``TestUSD`` the tooling deploys on development chains (token.deploy_test_usd).
        Currency("TUSD", 6, "Test USD", fiat="USD"),
        Currency("DAI", 18, "Dai", fiat="USD"),
        Currency("EWT", 18, "Energy Web Token"),
        Currency("VT", 18, "Volta Token (Energy Web testnet)"),
    )
}


def currency(symbol: str, decimals: int | None = None) -> Currency:
    """The currency called ``symbol`` (case-insensitive); ``decimals`` describes an unlisted token."""
    key = (symbol or "").strip().upper()
    known = CURRENCIES.get(key)
    if known is not None and (decimals is None or decimals == known.decimals):
        return known
    if decimals is None:
        raise UnitError(f"unknown currency {symbol!r}; use one of {', '.join(CURRENCIES)} "
                        "or give the token's decimals")
    if not key.isalnum() or len(key) > 11:
        raise UnitError(f"currency symbol {symbol!r} must be 1-11 letters or digits")
    if not 0 <= int(decimals) <= 36:
        raise UnitError(f"{key}: decimals must be 0-36, got {decimals}")
    return Currency(key, int(decimals))


# -- parsing --------------------------------------------------------------------------------


def _decimal(value: object, what: str) -> Decimal:
    """``value`` as a finite Decimal, or one clear UnitError."""
    if isinstance(value, bool):
        raise UnitError(f"{what} {value!r} is not a number; write a decimal such as 0.35")
    if isinstance(value, float):
        value = repr(value)  # 0.35 -> "0.35", never the binary expansion
    text = str(value).strip()
    if "," in text:
        raise UnitError(f"{what} {text!r}: no thousands separators or decimal commas; write 1234.5")
    try:
        number = Decimal(text.replace("_", ""))
    except InvalidOperation:
        raise UnitError(f"{what} {text!r} is not a number; write a decimal such as 0.35") from None
    if not number.is_finite():
        raise UnitError(f"{what} {text!r} is not a finite number; write a decimal such as 0.35")
    return number


def _split_unit(text: object, expected: str, what: str) -> object:
    """Strip an optional unit suffix (``0.35 USDC/kWh``); a different unit is refused."""
    if not isinstance(text, str) or " " not in text.strip():
        return text
    number, _, unit = text.strip().partition(" ")
    if unit.strip().lower() != expected.lower():
        raise UnitError(f"{what} {text.strip()!r} is in {unit.strip()}, but this market uses {expected}")
    return number


def parse_amount(value: object, cur: Currency, *, what: str = "amount", allow_zero: bool = True) -> int:
    """A decimal amount of ``cur`` (``"0.35"``, ``"0.35 USDC"``) as integer base units."""
    number = _decimal(_split_unit(value, cur.symbol, what), what)
    if number < 0:
        raise UnitError(f"{what} {value!s} must not be negative")
    if number == 0 and not allow_zero:
        raise UnitError(f"{what} must be more than 0 {cur.symbol}")
    if number and number.adjusted() > 80:  # far beyond uint256 (about 1.2e77 base units)
        raise UnitError(f"{what} {value!s} is far too large")
    base, places = _scaled(number, cur.decimals)
    if places > cur.decimals:
        smallest = format(Decimal(1).scaleb(-cur.decimals), "f")
        raise UnitError(f"{what} {value!s} has {places} decimals; {cur.symbol} has at most "
                        f"{cur.decimals} (its smallest unit is {smallest} {cur.symbol})")
    if base > MAX_UINT256:
        raise UnitError(f"{what} {value!s} is too large for a contract (above 2^256-1 base units)")
    return base


def _scaled(number: Decimal, decimals: int) -> tuple[int, int]:
    """(``number`` × 10**decimals as an exact integer, decimals ``number`` really has).

    Integer arithmetic on the digits: Decimal operations round to the context's precision
    (28 digits), which would silently drop a 19th decimal of a large amount. The integer is
    only meaningful when the second value is at most ``decimals`` (then it is exact); call
    after checking ``number.adjusted()`` so the digits are bounded.
    """
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = 0
    while trailing < len(digits) and digits[len(digits) - 1 - trailing] == 0:
        trailing += 1
    significant = digits[:len(digits) - trailing]
    exponent += trailing
    places = max(0, -exponent)
    if not significant or places > decimals:
        return 0, (places if significant else 0)
    return int("".join(map(str, significant))) * 10 ** (exponent + decimals), places


def parse_price(value: object, cur: Currency, *, what: str = "price") -> int:
    """A price in ``cur`` per kWh (``"0.35"``, ``"0.35 USDC/kWh"``) as base units per kWh (> 0)."""
    return parse_amount(_split_unit(value, f"{cur.symbol}/kWh", what), cur, what=what, allow_zero=False)


def parse_kw(value: object, *, what: str = "power") -> int:
    """Power in kW (at most 3 decimals: whole watts) as integer watts (> 0)."""
    number = _decimal(_split_unit(value, "kW", what), what)
    if number <= 0:
        raise UnitError(f"{what} {value!s} kW must be positive")
    if number.adjusted() > 9:
        raise UnitError(f"{what} {value!s} kW is too large (at most 4,294,967.295 kW)")
    watts, places = _scaled(number, 3)
    if places > 3:
        raise UnitError(f"{what} {value!s} kW has more than 3 decimals (whole watts)")
    if watts > 2**32 - 1:
        raise UnitError(f"{what} {value!s} kW is too large (at most 4,294,967.295 kW)")
    return watts


# -- formatting -----------------------------------------------------------------------------


def to_decimal(base_units: int, cur: Currency) -> Decimal:
    """Base units as an exact Decimal amount of ``cur``."""
    with localcontext() as ctx:
        ctx.prec = 100
        return Decimal(int(base_units)).scaleb(-cur.decimals)


def plain(base_units: int, cur: Currency) -> str:
    """The exact amount for a form field or a file: no grouping, no unit, no trailing zeros.

    ``parse_amount(plain(n, cur), cur) == n`` for every n.
    """
    value = to_decimal(base_units, cur)
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _display(value: Decimal, decimals: int, max_decimals: int) -> str:
    """``value`` rounded for reading: ``max_decimals`` decimals, more for a tiny non-zero value."""
    places = min(decimals, max_decimals)
    if value and abs(value) < Decimal(1).scaleb(-places):
        # keep 3 significant digits of a tiny amount instead of showing 0
        places = min(decimals, -value.adjusted() + _TINY_SIGNIFICANT - 1)
    with localcontext() as ctx:
        ctx.prec = 100
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{rounded:,.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_amount(base_units: int | None, cur: Currency, *, max_decimals: int = DISPLAY_DECIMALS,
                  rate: "ReferenceRate | None" = None, symbol: bool = True) -> str:
    """An amount for people: ``1,234.5 USDC``, ``0.000183 ETH (≈ $0.55)``; ``—`` for None.

    At most ``max_decimals`` decimals (the currency's own if fewer), rounded half to even;
    a tiny non-zero amount keeps 3 significant digits rather than reading as 0.
    """
    if base_units is None:
        return "—"
    text = _display(to_decimal(base_units, cur), cur.decimals, max_decimals)
    text = f"{text} {cur.symbol}" if symbol else text
    if rate is not None and rate.applies_to(cur):
        text += f" (≈ {rate.format_fiat(base_units)})"
    return text


def format_price(base_per_kwh: int | None, cur: Currency, *, max_decimals: int = DISPLAY_DECIMALS,
                 rate: "ReferenceRate | None" = None) -> str:
    """A price for people: ``0.35 USDC/kWh``, ``0.0001 ETH/kWh (≈ $0.30/kWh)``."""
    if base_per_kwh is None:
        return "—"
    text = f"{_display(to_decimal(base_per_kwh, cur), cur.decimals, max_decimals)} {cur.symbol}/kWh"
    if rate is not None and rate.applies_to(cur):
        text += f" (≈ {rate.format_fiat(base_per_kwh)}/kWh)"
    return text


def format_kw(watts: int | None, *, unit: bool = True) -> str:
    """Watts as kW, up to 3 decimals (whole watts): ``0.13 kW``, ``1,250 kW``."""
    if watts is None:
        return "—"
    text = _display(Decimal(int(watts)).scaleb(-3), 3, 3)
    return f"{text} kW" if unit else text


def format_kwh(watt_seconds: int | None, *, unit: bool = True) -> str:
    """Energy given in watt-seconds (W × s) as kWh, up to 3 decimals: ``0.26 kWh``."""
    if watt_seconds is None:
        return "—"
    text = _display(Decimal(int(watt_seconds)) / Decimal(3_600_000), 12, 3)
    return f"{text} kWh" if unit else text


def energy_ws(watts: int, seconds: int) -> int:
    """Watt-seconds of ``watts`` held for ``seconds`` (the unit payouts are computed in)."""
    return int(watts) * int(seconds)


#: Duration units, largest first: (name, seconds).
DURATION_UNITS: tuple[tuple[str, int], ...] = (("h", 3600), ("min", 60), ("s", 1))


def duration_unit(seconds: Iterable[int]) -> str:
    """The one unit for a set of durations (a form, a table): the largest that shows all of them
    in whole numbers; ``s`` when any is not a whole minute."""
    values = [int(s) for s in seconds]
    for name, size in DURATION_UNITS:
        if all(v % size == 0 for v in values):
            return name
    return "s"


def format_duration(seconds: int | None, unit: str | None = None) -> str:
    """``seconds`` in ``unit`` (``h``, ``min`` or ``s``; by default the largest whole one): ``90 min``."""
    if seconds is None:
        return "—"
    name = unit or duration_unit([seconds])
    size = dict(DURATION_UNITS).get(name)
    if size is None:
        raise UnitError(f"duration unit {unit!r}: use h, min or s")
    value = _display(Decimal(int(seconds)) / Decimal(size), 6, 2)
    return f"{value} {name}"


# -- reference rate -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceRate:
    """How many units of a fiat money one whole unit of a currency is worth (``USD_PER_ETH``).

    Only for display: a fiat figure beside an amount (``≈ $0.54``), never for settlement.
    """

    fiat: str  # ISO code: USD, EUR
    currency_symbol: str  # the currency it prices: ETH
    per_unit: Decimal  # fiat per one whole unit of the currency

    def applies_to(self, cur: Currency) -> bool:
        """True when ``cur`` is the currency this rate prices (and is not that fiat itself)."""
        return cur.symbol == self.currency_symbol and cur.fiat != self.fiat

    def fiat_value(self, base_units: int, cur: Currency | None = None) -> Decimal:
        """``base_units`` of the priced currency in fiat (exact)."""
        cur = cur or CURRENCIES.get(self.currency_symbol) or Currency(self.currency_symbol, 18)
        return to_decimal(base_units, cur) * self.per_unit

    def format_fiat(self, base_units: int, cur: Currency | None = None) -> str:
        """The fiat figure for people: ``$0.54``, ``€0.0012``, ``12.5 CHF``."""
        value = self.fiat_value(base_units, cur)
        size = abs(value)
        text = f"{size:,.2f}" if size >= Decimal("0.01") or not size else _display(size, 12, 2)
        minus = "-" if value < 0 and text.strip("0.,") else ""
        symbol = _FIAT_SIGNS.get(self.fiat)
        return f"{minus}{symbol}{text}" if symbol else f"{minus}{text} {self.fiat}"


_FIAT_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£"}


def parse_rate(value: object, *, fiat: str = "USD", currency_symbol: str = "ETH") -> ReferenceRate:
    """A reference rate from text such as ``USD_PER_ETH=3000`` (``"3000"``, ``"2999.5"``)."""
    key = f"{fiat}_PER_{currency_symbol}"
    number = _decimal(value, key)
    if number <= 0:
        raise UnitError(f"{key}={value!s} must be positive")
    return ReferenceRate(fiat.upper(), currency_symbol.upper(), number)


def reference_rate(values: Mapping[str, str], cur: Currency) -> ReferenceRate | None:
    """The rate for ``cur`` from settings (``.env``/environment): ``USD_PER_ETH``, ``EUR_PER_ETH``...

    None when none is set, or when ``cur`` is itself fiat money (a USD stablecoin needs none).
    """
    if cur.fiat:
        return None
    for fiat in ("USD", "EUR", "GBP"):
        raw = values.get(f"{fiat}_PER_{cur.symbol}")
        if raw not in (None, ""):
            return parse_rate(raw, fiat=fiat, currency_symbol=cur.symbol)
    return None


#: Wei per ETH.
WEI_PER_ETH = 10**18


def eth(wei: int) -> str:
    """Wei as a short ETH figure with six decimals (``0.000001`` is the smallest shown): the CLI's
    and the daemons' log lines. ``format_amount(wei, ETH)`` is the unit model's form with a symbol."""
    return f"{wei / WEI_PER_ETH:.6f}"
