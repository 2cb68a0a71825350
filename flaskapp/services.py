"""What one app instance holds, one object per job: configuration, the chain session, the
roles' signers and the chain reads. It lives in ``app.extensions["dr"]``; ``web()`` returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from flask import current_app

from demand_response.config import Settings

from .chain import ChainLink
from .config import AppConfig
from .reads import ChainReads
from .signers import Signers
from .units import Money


@dataclass
class Services:
    """The app's configuration, chain, signers and reads."""

    config: AppConfig
    chain: ChainLink
    signers: Signers
    reads: ChainReads

    @classmethod
    def from_config(cls, overrides: Mapping[str, Any]) -> "Services":
        """Build every service from the app's config (merged over the environment and ``.env``)."""
        config = AppConfig.load(overrides)
        chain = ChainLink(config)
        return cls(config, chain, Signers(config, chain), ChainReads(config, chain))

    @property
    def settings(self) -> Settings:
        """The package's settings."""
        return self.config.settings

    @property
    def unit(self) -> Money:
        """The market's money: every price and amount the pages and the API show."""
        return self.config.unit

    @property
    def settlement_token(self) -> str | None:
        """``SETTLEMENT_TOKEN``: the ERC-20 the dashboard's requests settle in (None: ether)."""
        from web3 import Web3

        from demand_response.token import is_ether

        raw = (self.settings.get("SETTLEMENT_TOKEN") or "").strip()
        if not raw or not Web3.is_address(raw) or is_ether(raw):
            return None
        return Web3.to_checksum_address(raw)

    @property
    def bids_unit(self) -> Money:
        """The money the consumer's bids are priced in: the saved bids.json's ``currency`` (read
        each time; docs/bids-format.md), else the market's. The bid form reads and writes in it."""
        from demand_response.bids import load_bids
        from demand_response.errors import BidsError

        path = self.settings.bids_file
        try:
            offers = load_bids(path).for_agent(0) if path.exists() else ()
        except (BidsError, OSError):
            offers = ()
        cur = offers[0].currency if offers and offers[0].currency is not None else self.unit.currency
        return self.unit if cur == self.unit.currency else Money(cur, None)

    def bid_currencies(self) -> list[str]:
        """The currencies the bid form offers: the market's, the saved file's, and those of the
        recent requests in a token (with the chain down: the first two)."""
        symbols = [self.unit.symbol, self.bids_unit.symbol]
        try:
            from demand_response.token import currency_of

            w3 = self.chain.session().w3
            symbols += [currency_of(w3, info.token).symbol for info in self.reads.recent_requests() if info.in_token]
        except Exception:  # noqa: BLE001 - the chain is down or a token does not answer: fewer choices
            pass
        return list(dict.fromkeys(symbols))

    def bids_money(self, symbol: str | None) -> Money:
        """The money of bids priced in ``symbol`` (a known currency's symbol, ``units.CURRENCIES``),
        else the saved file's (``bids_unit``)."""
        from demand_response.units import UnitError, currency

        saved = self.bids_unit
        if not symbol or symbol == saved.symbol:
            return saved
        if symbol == self.unit.symbol:
            return self.unit
        try:
            return Money(currency(symbol), None)
        except UnitError:
            return saved

    @property
    def request_unit(self) -> Money:
        """The money of the requests the dashboard posts: the settlement token's currency
        (read from the chain) when ``SETTLEMENT_TOKEN`` is set, else the market's."""
        token = self.settlement_token
        if token is None:
            return self.unit
        from demand_response.token import currency_of

        cur = currency_of(self.chain.session().w3, token)
        return self.unit if cur == self.unit.currency else Money(cur, None)


def web() -> Services:
    """This app's services."""
    return current_app.extensions["dr"]
