"""The web app's chain session: opened lazily with the package's ``open_session``,
remembered, dropped after a failure and reopened on the next request.

Pages that do not need the chain work while it is down; a failure is remembered for two
seconds, so a page with many chain reads answers quickly while the node is down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from demand_response.chain import redact_url
from demand_response.config import DEV_CHAIN_IDS
from demand_response.errors import ConfigError, ConnectionProblem
from demand_response.session import Session, open_session

from .config import AppConfig
from .errors import USER_ERRORS, is_unavailable, one_line

#: How long a failed connection is remembered before the next attempt (s).
RETRY_AFTER = 2.0


@dataclass
class ChainStatus:
    """What the header and /api/status show about the chain."""

    connected: bool
    network: str
    rpc: str
    chain_id: int | None = None
    block: int | None = None
    block_time: int | None = None
    contract: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


class ChainLink:
    """The connected, checked session of one app, reopened after a failure."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._failure: tuple[float, Exception] | None = None
        self.on_drop: list[Any] = []  # callbacks run when the session is dropped

    def session(self) -> Session:
        """The session; ``ConnectionProblem``/``ChainError``/``ConfigError`` with one line if none."""
        if self.config.error:
            raise ConfigError(self.config.error)
        with self._lock:
            if self._session is not None:
                return self._session
            if self._failure and time.monotonic() - self._failure[0] < RETRY_AFTER:
                raise self._failure[1]
            settings = self.config.settings
            try:
                self._session = open_session(settings)
            except Exception as exc:
                if isinstance(exc, USER_ERRORS) and is_unavailable(exc):
                    problem: Exception = ConnectionProblem(one_line(exc))
                elif not isinstance(exc, USER_ERRORS):  # anything else from the node: "not answering"
                    problem = ConnectionProblem(
                        f"the chain at {redact_url(settings.rpc_url)} is not answering ({type(exc).__name__}); "
                        "check RPC_URL and that the node is running")
                else:
                    problem = exc
                self._failure = (time.monotonic(), problem)
                raise problem from exc
            self._failure = None
            return self._session

    def drop(self) -> None:
        """Forget the session (after a connection failure) so the next call reconnects."""
        with self._lock:
            self._session = None
            for callback in self.on_drop:
                callback()

    def status(self) -> ChainStatus:
        """Chain id, block and contract, or the reason there are none."""
        settings = self.config.settings
        status = ChainStatus(False, settings.network, redact_url(settings.rpc_url))
        try:
            session = self.session()
            latest = session.w3.eth.get_block("latest")
        except Exception as exc:  # whatever the node did, the header says it and the page renders
            if isinstance(exc, USER_ERRORS) and not isinstance(exc, ConnectionProblem):
                status.error = one_line(exc)
                return status
            self.drop()
            status.error = one_line(exc) if isinstance(exc, ConnectionProblem) else \
                f"the chain stopped answering ({type(exc).__name__}); check that the node is running"
            return status
        status.connected = True
        status.chain_id = session.chain_id
        status.block = int(latest["number"])
        status.block_time = int(latest["timestamp"])
        status.contract = session.dr.address
        return status

    def now(self) -> int:
        """The chain's clock as the next transaction would see it: the later of the latest
        block's timestamp and the wall clock (an idle dev chain makes no blocks, so its latest
        block lags; a chain moved forward with ``evm_increaseTime`` runs ahead)."""
        latest = int(self.session().w3.eth.get_block("latest")["timestamp"])
        return max(latest, int(time.time()))

    def is_dev(self) -> bool:
        """True on ganache/anvil-style chain ids."""
        return self.session().chain_id in DEV_CHAIN_IDS

    def nudge(self, deadline: int) -> None:
        """An idle instamine dev chain makes no blocks: mine one so its clock passes ``deadline``."""
        session = self.session()
        latest = int(session.w3.eth.get_block("latest")["timestamp"])
        if latest <= deadline and session.chain_id in DEV_CHAIN_IDS:
            session.w3.provider.make_request("evm_mine", [])
