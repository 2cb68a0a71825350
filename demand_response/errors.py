"""Every error the package raises on purpose, and how to tell them apart by type.

A foundation module: it imports nothing of the package, so every layer can import it.
One base, ``DRError``; ``str()`` of any of them is one clear line that names the problem
and the fix, so a command or a web page shows it as it is, never a traceback. Callers
classify by kind, never by matching message text::

    DRError
    ├── UserError            input, files or configuration the user fixes
    │   ├── ConfigError        .env, environment, flags, deployments.json
    │   ├── PlanError          a request that cannot be posted as given (target, windows, budget)
    │   ├── BidsError          bids.json / bids from a form
    │   ├── ResultsError       results.json unreadable
    │   ├── SaltStoreError     the sealed-bid salt file unreadable
    │   ├── AccountError       keystores, passwords, private keys
    │   └── AccountBusy        another daemon holds the account's lock
    ├── ChainError           the chain or the node said no, or cannot be reached
    │   ├── ConnectionProblem  the RPC endpoint is unreachable (retry later)
    │   │   └── ReceiptTimeout   no receipt in time: the node may be down, or fees too low
    │   ├── WrongChain         the endpoint's chain id is not the one expected
    │   ├── ContractNotFound   no (or the wrong) contract at the address
    │   ├── InsufficientFunds  the account cannot pay for the transaction
    │   ├── TransactionRejected the node refused a transaction
    │   ├── TransactionFailed  a transaction reverted (``.error``: the contract's error name)
    │   └── Retry              this work should be done again later (daemons keep the event)
    │       ├── WaitInterrupted  the daemon is stopping; a receipt wait gave up
    │       ├── TransactionDropped a sent transaction will never be mined
    │       └── RetryLater       a handler leaves its event for the next round
    └── ToolError            a local tool failed (dev chain, compiler)
        ├── DevChainError
        └── CompilerError

Some classes keep the builtin base they had (``ValueError``, ``RuntimeError``) so that
older ``except`` clauses still catch them. ``is_connection_error``, ``disk_error`` and
``retry_cause`` classify any exception (also those of web3, requests and the OS) by type.
"""

from __future__ import annotations

import errno
from typing import Iterable


class DRError(Exception):
    """Base of every error of this package; ``str()`` is one clear line."""


# -- the user's input, files and configuration ---------------------------------------------


class UserError(DRError):
    """A problem with the input, a file or the configuration, which the user fixes."""


class ConfigError(UserError, ValueError):
    """A configuration problem (``.env``, environment, flags, ``deployments.json``)."""


class PlanError(UserError, ValueError):
    """A reduction request that cannot be posted as given (target, windows, cap, budget)."""


class BidsError(UserError, ValueError):
    """A bids file or a set of offers that cannot be used."""


class ResultsError(UserError, ValueError):
    """The results file is unreadable."""


class SaltStoreError(UserError, RuntimeError):
    """The salt file is unreadable: refuse to go on rather than lose track of salts."""


class AccountBusy(UserError):
    """Another daemon (``pid``) holds the lock of this account: two daemons would collide."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


# -- the chain ------------------------------------------------------------------------------


class ChainError(DRError, RuntimeError):
    """A problem with the chain or the node a user can act on."""


class AccountError(UserError, ChainError):
    """A keystore, password or key problem. (Also a ``ChainError``, its historical base, so
    that callers that caught ``ChainError`` for it keep working.)"""


class ConnectionProblem(ChainError):
    """The RPC endpoint could not be reached; the same work may succeed later."""


class ReceiptTimeout(ConnectionProblem):
    """No receipt arrived in time: the node may be down, or the fees too low."""


class WrongChain(ChainError):
    """The endpoint reports another chain id than the network, ``CHAIN_ID`` or the deployment."""


class ContractNotFound(ChainError):
    """No contract (or not ours) at the configured address."""


class InsufficientFunds(ChainError):
    """The account cannot pay for the transaction (gas and value)."""


class TransactionRejected(ChainError):
    """The node refused to accept a transaction."""


class TransactionFailed(ChainError):
    """A transaction reverted; ``error`` is the decoded custom error name, if any, and
    ``error_args`` its arguments."""

    def __init__(self, message: str, error: str | None = None, args: tuple = ()) -> None:
        super().__init__(message)
        self.error = error
        self.error_args = args


class Retry(ChainError):
    """The work this was for should be retried later (the daemons keep the event)."""


class WaitInterrupted(Retry):
    """The daemon is stopping; a receipt wait gave up (the transaction may still be mined)."""


class TransactionDropped(Retry):
    """A sent transaction will never be mined: the node no longer knows it (dropped from its
    pool, or reorganised away), or another transaction used its nonce."""


class RetryLater(Retry):
    """Raised by an event handler to leave its event unprocessed and retry after a backoff."""


# -- local tools -----------------------------------------------------------------------------


class ToolError(DRError, RuntimeError):
    """A local tool failed: the dev chain, the compiler."""


class DevChainError(ToolError):
    """A local dev chain could not be started or stopped."""


class CompilerError(ToolError):
    """solc could not be found or the contract did not compile."""


# -- classification of any exception ----------------------------------------------------------

#: errno values of a local file that cannot be written (full or read-only disk, limits).
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what caused it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_error(exc: BaseException) -> OSError | None:
    """The local file-system error behind ``exc`` (a full disk, a read-only folder), if any."""
    for current in causes(exc):
        if isinstance(current, OSError) and not isinstance(current, (ConnectionError, TimeoutError)) and (
                current.errno in _DISK_ERRNOS or current.filename is not None):
            return current
    return None


def describe_disk_error(exc: OSError) -> str:
    """``cannot write FILE: REASON`` in one line."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means the RPC endpoint could not be reached, or
    the work should simply be retried (``ConnectionProblem``, ``Retry``, socket errors)."""
    import requests

    if disk_error(exc) is not None:
        return False
    for current in causes(exc):
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                                ConnectionError, TimeoutError, ConnectionProblem, Retry)):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
    return False


def retry_cause(exc: BaseException) -> Retry | None:
    """The ``Retry`` in ``exc``'s chain, if there is one."""
    return next((c for c in causes(exc) if isinstance(c, Retry)), None)
