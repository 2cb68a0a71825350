"""The web's view of the one unit model (``demand_response.units``): the market's money.

Every price on the pages, the forms and the API's display strings is in the settlement
currency per kWh (``0.0001 ETH/kWh``; ``0.35 USDC/kWh`` for a token market), every amount
with the currency's symbol, power in kW and energy in kWh, exactly as ``dr`` prints them.
An optional reference rate (``USD_PER_ETH=3000`` in ``.env``) adds a fiat figure
(``0.000179 ETH (≈ $0.54)``). This module only binds ``demand_response.units`` to one
market's currency and rate; the conversions themselves live there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from demand_response import units as _u
from demand_response.units import ETH, Currency, ReferenceRate, UnitError


@dataclass(frozen=True)
class Money:
    """The market's settlement currency and optional reference rate, for people."""

    currency: Currency = ETH
    rate: ReferenceRate | None = None

    @classmethod
    def for_market(cls, network: str | None, values: Mapping[str, str]) -> "Money":
        """The currency a market on ``network`` settles in (its native currency: ETH, or EWT on
        Energy Web) and the reference rate from settings (``USD_PER_ETH``…); a bad rate is a
        ``UnitError`` with one line."""
        from demand_response.networks import NETWORKS

        profile = NETWORKS.get(network or "")
        cur = profile.native if profile is not None else ETH
        return cls(cur, _u.reference_rate(values, cur))

    @property
    def symbol(self) -> str:
        """``ETH``, ``USDC``…"""
        return self.currency.symbol

    @property
    def label(self) -> str:
        """The price unit: ``ETH/kWh``."""
        return f"{self.currency.symbol}/kWh"

    @property
    def decimals(self) -> int:
        """Decimals of the currency (18 for ETH, 6 for USDC)."""
        return self.currency.decimals

    @property
    def example_price(self) -> str:
        """A plausible price per kWh to show as a form's placeholder."""
        return "0.35" if self.currency.fiat else "0.0001"

    def format(self, base_per_kwh: int | None) -> str:
        """A price for people: ``0.0001 ETH/kWh (≈ $0.30/kWh)``; ``—`` for None."""
        return _u.format_price(None if base_per_kwh is None else int(base_per_kwh), self.currency, rate=self.rate)

    def amount(self, base_units: int | str | None) -> str:
        """An amount for people: ``0.000179 ETH (≈ $0.54)``; ``—`` for None (unknown, never 0)."""
        return _u.format_amount(None if base_units is None else int(base_units), self.currency, rate=self.rate)

    def plain(self, base_units: int) -> str:
        """The exact decimal for a form field: ``0.0001``."""
        return _u.plain(int(base_units), self.currency)

    def parse_price(self, value: object, what: str = "price") -> int:
        """A decimal price in the currency per kWh (``0.0001``) as base units per kWh (> 0);
        ``UnitError`` (a ``ValueError``) with one line otherwise."""
        return _u.parse_price(value, self.currency, what=what)

    def parse_amount(self, value: object, what: str = "amount") -> int:
        """A decimal amount of the currency as base units (≥ 0)."""
        return _u.parse_amount(value, self.currency, what=what)

    def from_base(self, base_units: int) -> Decimal:
        """Base units as an exact Decimal amount of the currency (for a chart's scale)."""
        return _u.to_decimal(int(base_units), self.currency)


#: An ETH market without a reference rate: what a presenter shows when it is given nothing else.
DEFAULT_MONEY = Money()

__all__ = ["DEFAULT_MONEY", "Money", "UnitError", "fmt_kw", "fmt_kwh", "short_hex"]


def fmt_kw(watts: int | None) -> str:
    """Watts as kW (``0.13 kW``); ``—`` for None."""
    return _u.format_kw(watts)


def fmt_kwh(watt_seconds: int | None) -> str:
    """Watt-seconds as kWh (``0.26 kWh``); ``—`` for None."""
    return _u.format_kwh(watt_seconds)


def short_hex(value: str | None, keep: int = 10) -> str:
    """``0x1234abcd…`` for long hashes and addresses."""
    if not value:
        return "—"
    return value if len(value) <= keep + 4 else f"{value[:keep]}…{value[-4:]}"
