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


def web() -> Services:
    """This app's services."""
    return current_app.extensions["dr"]
