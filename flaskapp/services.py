"""The web app's view of the system: configuration, the chain session and the accounts.

One ``Gateway`` lives in ``app.extensions["dr"]``. It merges the app config over the
environment and ``.env`` (the same keys ``dr`` reads; see ``.env.template``), opens the
chain lazily (pages that do not need the chain work while it is down), reconnects after a
failure, and resolves the signer of each role without ever prompting on a terminal: a
keystore without a configured password is unlocked from a password field on the page and
kept in memory only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from web3 import Web3

from demand_response.accounts import AccountError, keystore_path, load_keystore, resolve_signer
from demand_response.bids import BidsError
from demand_response.chain import ChainError, Signer, connect, redact_url
from demand_response.config import DEV_CHAIN_IDS, KEYS, ConfigError, Settings, load_settings
from demand_response.contract import DemandReduction, RequestInfo, Status, TermsInfo
from demand_response.results import ResultsError
from demand_response.session import Session, resolve_address

from .units import PriceUnit, price_unit

log = logging.getLogger("flaskapp")

#: Errors a user can cause or fix; pages show their one-line message, never a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ChainError, ConfigError, BidsError, ResultsError)

#: App-only settings (besides demand_response.config.KEYS), with their defaults.
APP_KEYS: dict[str, str] = {
    "DR_ROLE": "auto",  # auto | consumer | utility | both
    "DR_PRICE_UNIT": "gwei",  # wei | gwei | eth
    "DR_CONSUMER_INDEX": "1",  # dev chains only: the node's unlocked account for the consumer
    "DR_UTILITY_INDEX": "0",  # dev chains only: the node's unlocked account for the utility
    "DR_HOUSEHOLD": "0",  # gridsim household index for "fill from simulation"
    "DR_GRIDSIM_SEED": "0",
    "DR_RPC_TIMEOUT": "5",  # seconds per JSON-RPC call made for a page
    "DR_REFRESH_MS": "2000",  # how often pages poll the JSON API
    "DR_HISTORY": "50",  # how many recent requests pages list
}


#: Request terms by (chain id, contract, request id, bidding deadline, event start): they
#: never change once posted, so every app in the process shares them.
_TERMS_CACHE: dict[tuple[int, str, int, int, int, int], TermsInfo] = {}
_TERMS_LOCK = threading.Lock()


class NeedsPassword(AccountError):
    """The role's keystore is configured without a password: ask for it on the page."""

    def __init__(self, role: str, name: str) -> None:
        super().__init__(f"the {role} keystore {name!r} is locked; enter its password to unlock it")
        self.role = role
        self.name = name


class RoleDisabled(Exception):
    """A page of a role this app is not configured for."""


def one_line(exc: BaseException) -> str:
    """An exception as one line a person can act on (no traceback, no secrets)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:400]


def _env_file_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


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


class Gateway:
    """Configuration, chain session and signers of one app instance."""

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        env_file = overrides.get("DR_ENV_FILE") or os.environ.get("DR_ENV_FILE") or ".env"
        self.env_file = Path(str(env_file))
        file_values = _env_file_values(self.env_file)
        environ = {k: v for k, v in os.environ.items()}
        for key in list(KEYS) + list(APP_KEYS):
            if key in overrides and overrides[key] is not None:
                environ[key] = str(overrides[key])
        self.environ = environ

        def lookup(key: str) -> str:
            value = environ.get(key)
            if value in (None, ""):
                value = file_values.get(key)
            return value if value not in (None, "") else APP_KEYS[key]

        self.options = {key: lookup(key) for key in APP_KEYS}
        self.config_error: str | None = None
        try:
            self.settings: Settings = load_settings(self.env_file, environ=environ)
        except ConfigError as exc:
            self.config_error = one_line(exc)
            self.settings = Settings()
        try:
            self.unit: PriceUnit = price_unit(self.options["DR_PRICE_UNIT"])
        except ValueError as exc:
            self.config_error = self.config_error or one_line(exc)
            self.unit = price_unit("gwei")
        self.rpc_timeout = self._number("DR_RPC_TIMEOUT", 5.0)
        self.refresh_ms = int(self._number("DR_REFRESH_MS", 2000))
        self.history = int(self._number("DR_HISTORY", 50))
        self.household = int(self._number("DR_HOUSEHOLD", 0))
        self.gridsim_seed = int(self._number("DR_GRIDSIM_SEED", 0))
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._session_error: tuple[float, str] | None = None
        self._signers: dict[str, Signer] = {}
        self._unlocked: dict[str, Any] = {}  # role -> LocalAccount (password-unlocked keystores)
        self._bid_tx_cache: dict[tuple[int, str], dict[int, str]] = {}

    def _number(self, key: str, default: float) -> float:
        try:
            return float(self.options[key])
        except ValueError:
            self.config_error = self.config_error or f"{key}={self.options[key]!r} is not a number"
            return default

    # -- roles ---------------------------------------------------------------------------

    def _configured(self, role: str) -> bool:
        prefix = role.upper()
        return bool(self.environ.get(f"{prefix}_PRIVATE_KEY") or self.settings.get(f"{prefix}_ACCOUNT"))

    @property
    def role(self) -> str:
        """The configured role setting (auto, consumer, utility or both)."""
        return self.options["DR_ROLE"].strip().lower()

    @property
    def utility_enabled(self) -> bool:
        """Utility pages: DR_ROLE utility/both, or auto with a utility account configured."""
        if self.role in ("utility", "both"):
            return True
        return self.role == "auto" and self._configured("utility")

    @property
    def consumer_enabled(self) -> bool:
        """Consumer pages: everything except DR_ROLE=utility."""
        return self.role != "utility"

    # -- chain ---------------------------------------------------------------------------

    def session(self) -> Session:
        """The connected, checked session; ``ChainError``/``ConfigError`` with one line if not.

        A failure is remembered for two seconds, so a page with many chain reads answers
        quickly while the node is down.
        """
        if self.config_error:
            raise ConfigError(self.config_error)
        with self._lock:
            if self._session is not None:
                return self._session
            if self._session_error and time.monotonic() - self._session_error[0] < 2.0:
                raise ChainError(self._session_error[1])
            try:
                w3 = connect(self.settings.rpc_url, timeout=self.rpc_timeout)
                chain_id = int(w3.eth.chain_id)
                expected = self.settings.expected_chain_id
                if expected is not None and chain_id != expected:
                    raise ChainError(
                        f"wrong chain: network {self.settings.network!r} expects chain id {expected} but "
                        f"{redact_url(self.settings.rpc_url)} reports {chain_id}; fix NETWORK / RPC_URL / CHAIN_ID"
                    )
                address, deployment = resolve_address(self.settings, chain_id)
                dr = DemandReduction.at(w3, address)
            except USER_ERRORS as exc:
                self._session_error = (time.monotonic(), one_line(exc))
                raise
            except Exception as exc:  # anything else from the node is still "chain unavailable"
                message = f"the chain at {redact_url(self.settings.rpc_url)} is not answering ({type(exc).__name__}); check RPC_URL and that the node is running"
                self._session_error = (time.monotonic(), message)
                raise ChainError(message) from exc
            self._session = Session(self.settings, w3, chain_id, dr, deployment)
            self._session_error = None
            return self._session

    def drop_session(self) -> None:
        """Forget the session (after a connection failure) so the next call reconnects."""
        with self._lock:
            self._session = None
            self._signers.clear()

    def chain_status(self) -> ChainStatus:
        """Chain id, block and contract, or the reason there are none."""
        status = ChainStatus(False, self.settings.network, redact_url(self.settings.rpc_url))
        try:
            session = self.session()
            latest = session.w3.eth.get_block("latest")
        except USER_ERRORS as exc:
            status.error = one_line(exc)
            return status
        except Exception as exc:
            self.drop_session()
            status.error = f"the chain stopped answering ({type(exc).__name__}); check that the node is running"
            return status
        status.connected = True
        status.chain_id = session.chain_id
        status.block = int(latest["number"])
        status.block_time = int(latest["timestamp"])
        status.contract = session.dr.address
        return status

    def is_dev_chain(self) -> bool:
        """True on ganache/anvil-style chain ids."""
        return self.session().chain_id in DEV_CHAIN_IDS

    # -- accounts ------------------------------------------------------------------------

    def _index(self, role: str) -> int:
        return int(self._number(f"DR_{role.upper()}_INDEX", 1 if role == "consumer" else 0))

    def needs_password(self, role: str) -> bool:
        """True when the role uses a keystore whose password is neither configured nor entered."""
        prefix = role.upper()
        if self.environ.get(f"{prefix}_PRIVATE_KEY") or role in self._unlocked:
            return False
        return bool(self.settings.get(f"{prefix}_ACCOUNT")) and self.settings.get(f"{prefix}_ACCOUNT_PASS") is None

    def account(self, role: str) -> str | None:
        """The role's address, without unlocking anything; None when it cannot be known."""
        prefix = role.upper()
        key = self.environ.get(f"{prefix}_PRIVATE_KEY")
        try:
            if key:
                from eth_account import Account

                return Account.from_key(key).address
            if role in self._unlocked:
                return self._unlocked[role].address
            name = self.settings.get(f"{prefix}_ACCOUNT")
            if name:
                data = json.loads(keystore_path(name, self.settings).read_text(encoding="utf-8"))
                return Web3.to_checksum_address(data["address"])
            session = self.session()
            if session.chain_id in DEV_CHAIN_IDS:
                accounts = session.w3.eth.accounts
                index = self._index(role)
                return accounts[index] if index < len(accounts) else None
        except Exception:
            return None
        return None

    def unlock(self, role: str, password: str) -> str:
        """Decrypt the role's keystore with ``password`` (kept in memory only); returns the address."""
        name = self.settings.get(f"{role.upper()}_ACCOUNT")
        if not name:
            raise AccountError(f"no {role.upper()}_ACCOUNT keystore is configured; nothing to unlock")
        account = load_keystore(name, password, self.settings)
        with self._lock:
            self._unlocked[role] = account
            self._signers.pop(role, None)
        return account.address

    def signer(self, role: str) -> Signer:
        """The role's signer (cached per session, so its nonce counter is shared)."""
        session = self.session()
        with self._lock:
            cached = self._signers.get(role)
            if cached is not None and cached.w3 is session.w3:
                return cached
            kwargs = {"receipt_timeout": self.settings.receipt_timeout}
            if role in self._unlocked:
                account = self._unlocked[role]
                signer = Signer(session.w3, account, label=f"{role} {self.settings.get(role.upper() + '_ACCOUNT')}", **kwargs)
            else:
                name = self.settings.get(f"{role.upper()}_ACCOUNT")
                if not self.environ.get(f"{role.upper()}_PRIVATE_KEY") and name and self.needs_password(role):
                    raise NeedsPassword(role, name)
                signer = resolve_signer(session.w3, role, self.settings, account_index=self._index(role),
                                        environ=self.environ)
            self._signers[role] = signer
            return signer

    def check_utility(self) -> Signer:
        """The utility signer, checked against the contract's utility address."""
        signer = self.signer("utility")
        owner = self.session().dr.utility()
        if owner.lower() != signer.address.lower():
            raise AccountError(
                f"the configured utility account {signer.address} is not this contract's utility ({owner}); "
                "fix UTILITY_ACCOUNT or CONTRACT_ADDRESS"
            )
        return signer

    # -- reads used by several pages -----------------------------------------------------

    def recent_requests(self, limit: int | None = None) -> list[RequestInfo]:
        """The most recent requests, newest first."""
        dr = self.session().dr
        count = dr.request_count()
        low = max(1, count - (limit or self.history) + 1)
        return [dr.get_request(rid) for rid in range(count, low - 1, -1)]

    def chain_time(self) -> int:
        """The chain's clock as the next transaction would see it: the later of the latest
        block's timestamp and the wall clock (an idle dev chain makes no blocks, so its latest
        block lags; a chain moved forward with ``evm_increaseTime`` runs ahead)."""
        latest = int(self.session().w3.eth.get_block("latest")["timestamp"])
        return max(latest, int(time.time()))

    def terms(self, info: RequestInfo, fresh: bool = False) -> TermsInfo:
        """The request's terms (``termsOf``). They only change at selection, so lists use a
        copy cached per status; ``fresh`` reads the bonds held now. A contract without
        ``termsOf`` (deployed before terms existed) has plain requests only."""
        session = self.session()
        dr = session.dr
        # The status is part of the key: a metered request's report and dispute deadlines run
        # from the selection when it came after the event, so they are final once settled.
        key = (session.chain_id, dr.address, info.request_id, info.bidding_deadline, info.event_start,
               int(info.status))
        cached = _TERMS_CACHE.get(key)
        if cached is not None and not fresh:
            return cached
        from web3.exceptions import BadFunctionCallOutput, ContractLogicError

        try:
            terms = dr.terms_of(info.request_id)
        except (BadFunctionCallOutput, ContractLogicError):
            terms = TermsInfo(False, False, 0, 0, 0, 0, 0, 0)
        with _TERMS_LOCK:
            if len(_TERMS_CACHE) > 4096:
                _TERMS_CACHE.clear()
            _TERMS_CACHE[key] = terms
        return terms

    def bid_txs(self, request_id: int, bidder: str) -> dict[int, str]:
        """``{bid id: transaction hash}`` of ``bidder``'s bids in ``request_id`` (from BidSubmitted logs)."""
        key = (request_id, bidder.lower())
        cached = self._bid_tx_cache.get(key)
        session = self.session()
        if cached is None or not cached:
            start = session.start_block()
            logs = session.dr.contract.events.BidSubmitted().get_logs(
                argument_filters={"requestId": request_id, "bidder": Web3.to_checksum_address(bidder)},
                from_block=start,
            )
            cached = {int(e["args"]["bidId"]): "0x" + bytes(e["transactionHash"]).hex().removeprefix("0x") for e in logs}
            info = session.dr.get_request(request_id)
            if info.status != Status.OPEN or int(time.time()) > info.bidding_deadline:
                self._bid_tx_cache[key] = cached  # no more bids can come
        return cached


def wall_now() -> int:
    """Unix seconds now."""
    return int(time.time())


def is_connection_problem(exc: BaseException) -> bool:
    """True when ``exc`` means the node could not be reached."""
    from demand_response.listener import is_connection_error

    return is_connection_error(exc)


def attempt(gw: Gateway, fn: Any, default: Any = None) -> tuple[Any, str | None]:
    """``(fn(), None)``, or ``(default, one-line reason)`` for a user-fixable or chain problem."""
    try:
        return fn(), None
    except USER_ERRORS as exc:
        if is_connection_problem(exc):
            gw.drop_session()
        return default, one_line(exc)
    except Exception as exc:
        if is_connection_problem(exc):
            gw.drop_session()
            return default, "the chain stopped answering; check that the node is running (this page retries)"
        raise
