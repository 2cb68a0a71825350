"""Units shown in the web front end: power in kW, prices per kWh in one configurable unit.

The contract works in integer watts and wei per kWh. People read kW and a price unit the
utility chooses (``DR_PRICE_UNIT``: ``gwei`` by default, ``wei`` or ``eth``); both the
consumer's bid form and the utility's request form use the same one, so a bid can be
compared with a cap at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ETH = 10**18


@dataclass(frozen=True)
class PriceUnit:
    """A price unit for wei per kWh."""

    name: str  # short key: wei, gwei, eth
    label: str  # what pages show, e.g. "gwei/kWh"
    wei: int  # wei in one unit
    decimals: int  # decimals that still make whole wei

    def to_wei(self, value: Decimal | int | str) -> int:
        """``value`` in this unit as integer wei; ``ValueError`` if it is not whole wei."""
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("not a number") from None
        if not number.is_finite():
            raise ValueError("not a finite number")
        try:
            wei = number * self.wei
        except ArithmeticError:  # beyond Decimal's exponent range
            raise ValueError("a number far too large") from None
        if wei != wei.to_integral_value():
            raise ValueError(f"at most {self.decimals} decimals in {self.label} (whole wei)")
        return int(wei)

    def from_wei(self, wei: int) -> Decimal:
        """Integer wei as a Decimal in this unit (exact)."""
        return Decimal(int(wei)) / Decimal(self.wei)

    def plain(self, wei: int) -> str:
        """Exact value for a form field (no grouping, no trailing zeros)."""
        value = self.from_wei(wei)
        text = format(value.normalize(), "f") if value else "0"
        return text

    def format(self, wei: int | None, unit: bool = True) -> str:
        """Human-readable price, e.g. ``40,000 gwei/kWh``."""
        if wei is None:
            return "—"
        value = self.from_wei(wei)
        if value == value.to_integral_value():
            text = f"{int(value):,}"
        else:
            text = f"{value:,.{min(self.decimals, 6)}f}".rstrip("0").rstrip(".")
            if text in ("0", "-0"):
                text = f"{value:.{self.decimals}f}".rstrip("0")
        return f"{text} {self.label}" if unit else text


UNITS = {
    "wei": PriceUnit("wei", "wei/kWh", 1, 0),
    "gwei": PriceUnit("gwei", "gwei/kWh", 10**9, 9),
    "eth": PriceUnit("eth", "ETH/kWh", ETH, 18),
}


def price_unit(name: str | None) -> PriceUnit:
    """The unit called ``name`` (``ValueError`` for an unknown one)."""
    key = (name or "gwei").strip().lower()
    if key not in UNITS:
        raise ValueError(f"DR_PRICE_UNIT={name!r}: use one of {', '.join(UNITS)}")
    return UNITS[key]


def fmt_kw(watts: int | None) -> str:
    """Watts as kW with three decimals."""
    if watts is None:
        return "—"
    return f"{int(watts) / 1000:,.3f} kW"


def fmt_eth(wei: int | None, digits: int = 6) -> str:
    """Wei as ETH, e.g. ``0.001234 ETH``; tiny non-zero amounts keep their significant digits."""
    if wei is None:
        return "—"
    value = Decimal(int(wei)) / Decimal(ETH)
    text = f"{value:,.{digits}f}"
    if wei and Decimal(text.replace(",", "")) == 0:
        text = format(value.normalize(), "f")
    return f"{text} ETH"


def short_hex(value: str | None, keep: int = 10) -> str:
    """``0x1234abcd…`` for long hashes and addresses."""
    if not value:
        return "—"
    return value if len(value) <= keep + 4 else f"{value[:keep]}…{value[-4:]}"
