"""``results.json``: the append-only history of what a consumer got, written atomically.

Shape::

    {"version": 1, "results": [{"request_id": 1, "account": "0x...", "contract": "0x...",
                                 "chain_id": 1337, "accepted_kw": 2.5, "paid_wei": ...,
                                 "gas_wei": ..., "net_wei": ..., ...}, ...]}

Money fields are integers in wei: ``paid_wei`` (what the request paid the household),
``gas_wei`` (what its transactions for that request cost: gas used × effective gas price,
plus any L1 data fee), ``penalty_wei`` (bond lost on a metered request) and ``net_wei`` =
paid − penalty − gas. Records written before these fields existed are read with ``money``
(gas unknown: None). ``consumer.records.result_record`` builds a record.

A request settled in a token (a stablecoin) says so: ``currency`` (``"USDC"``),
``currency_decimals`` and ``token``; its money is in the token's base units as ``paid_units``
and ``payout_units``, while ``gas_wei`` stays in ETH (gas is paid in ETH). ``gas_units`` (the
gas in the token) and ``net_units`` = paid − gas are there only when a reference rate
(``USD_PER_ETH``) was known; without one they are None: gross and gas are shown apart, never a
net that mixes currencies. A record without ``currency`` is in ETH.

A record whose bids the utility's relay placed (``RELAY_URL``) says ``"relayed": true``: the
household sent no transaction for them, and the utility paid their gas (its ``gas_wei`` counts
only transactions the household sent itself, so 0 when it was paid by ``claimAndPay``).

Records are only ever appended; one (chain id, contract, request id, account) gets at
most one record. Several processes may append to the same file: a lock file next to it
serialises them, and every write is a temp file + rename, so a reader never sees half a
file and a crash never loses the history.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ResultsError
from .files import atomic_write_text
from .units import ETH, Currency, UnitError, currency as _currency


def net_wei(paid_wei: int, gas_wei: int, penalty_wei: int = 0) -> int:
    """What a request earned after costs: paid − penalty − gas (negative: it lost money)."""
    return int(paid_wei) - int(penalty_wei) - int(gas_wei)


@dataclass(frozen=True)
class Money:
    """A record's money in base units of ``currency`` (wei for ETH); ``gas`` and ``net`` are None
    for a record from before gas was kept, or for a token record whose gas (paid in ETH, see
    ``gas_wei``) could not be converted for want of a reference rate."""

    paid: int
    gas: int | None
    net: int | None
    currency: Currency = ETH
    #: The gas in wei, whatever the request's currency (None: unknown).
    gas_wei: int | None = None


def record_currency(record: dict[str, Any]) -> Currency:
    """The currency a record's request settled in (ETH for a record without one)."""
    symbol = record.get("currency") or "ETH"
    try:
        return _currency(str(symbol), record.get("currency_decimals"))
    except (UnitError, TypeError, ValueError):
        return Currency(str(symbol)[:11] or "?", int(record.get("currency_decimals") or 18))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def money(record: dict[str, Any]) -> Money:
    """The money of one record (old ones: ``payout_wei`` for paid, gas unknown)."""
    cur = record_currency(record)
    if cur != ETH:
        paid = int(record.get("paid_units", record.get("payout_units", 0)) or 0)
        gas_wei = _int_or_none(record.get("gas_wei"))
        return Money(paid, _int_or_none(record.get("gas_units")), _int_or_none(record.get("net_units")), cur, gas_wei)
    paid = int(record.get("paid_wei", record.get("payout_wei", 0)) or 0)
    gas = record.get("gas_wei")
    if gas is None:
        return Money(paid, None, None)
    net = record.get("net_wei")
    return Money(paid, int(gas), int(net) if net is not None else net_wei(paid, gas, record.get("penalty_wei", 0) or 0),
                 ETH, int(gas))


#: What a relayed record's gas figure carries, wherever it is shown (CLI, web).
RELAYED_MARK = " (relayed)"


def relayed_mark(record: dict[str, Any] | None) -> str:
    """``RELAYED_MARK`` for a record whose bids the utility's relay placed, else ""."""
    return RELAYED_MARK if record and record.get("relayed") else ""


def totals(records: Iterable[dict[str, Any]]) -> Money:
    """The money of several records of one currency summed (gas and net over the records that
    know them; ``totals_by_currency`` for a mixed history)."""
    paid = gas = net = gas_wei = 0
    known = wei_known = False
    cur = ETH
    for record in records:
        m = money(record)
        cur = m.currency
        paid += m.paid
        if m.gas is not None and m.net is not None:
            known = True
            gas += m.gas
            net += m.net
        if m.gas_wei is not None:
            wei_known = True
            gas_wei += m.gas_wei
    return Money(paid, gas if known else None, net if known else None, cur, gas_wei if wei_known else None)


def totals_by_currency(records: Iterable[dict[str, Any]]) -> dict[str, Money]:
    """``totals`` per settlement currency (by symbol), ETH first: amounts in different
    currencies are never added together."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record_currency(record).symbol, []).append(record)
    return {symbol: totals(groups[symbol]) for symbol in sorted(groups, key=lambda s: (s != "ETH", s))}


def record_key(record: dict[str, Any]) -> tuple[int, str, int, str]:
    """The identity of a record: (chain id, contract, request id, account)."""
    return (
        int(record.get("chain_id", 0)),
        str(record.get("contract", "")).lower(),
        int(record.get("request_id", 0)),
        str(record.get("account", "")).lower(),
    )


class ResultsFile:
    """An append-only JSON history at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except ValueError as exc:
            raise ResultsError(f"{self.path} is not valid JSON ({exc}); move it aside to start a new history") from None
        if isinstance(data, list):  # tolerate a bare list
            return data
        if not isinstance(data, dict):
            raise ResultsError(f"{self.path} has an unexpected shape; move it aside to start a new history")
        return list(data.get("results", []))

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        return self._read()

    def find(self, chain_id: int, contract: str, request_id: int, account: str) -> dict[str, Any] | None:
        """The record for this request and account, if there is one."""
        key = (int(chain_id), contract.lower(), int(request_id), account.lower())
        for record in self._read():
            if record_key(record) == key:
                return record
        return None

    def append(self, record: dict[str, Any]) -> bool:
        """Append ``record`` unless one with the same key exists; True when written."""
        with self._locked():
            records = self._read()
            key = record_key(record)
            if any(record_key(r) == key for r in records):
                return False
            records.append(record)
            atomic_write_text(self.path, json.dumps({"version": 1, "results": records}, indent=2) + "\n")
            return True

    def forget_deployment(self, chain_id: int, contract: str) -> int:
        """Drop the records of one deployment (a dev chain that was reset reuses its address);
        returns how many were dropped."""
        with self._locked():
            records = self._read()
            keep = [r for r in records
                    if not (int(r.get("chain_id", -1)) == int(chain_id)
                            and str(r.get("contract", "")).lower() == contract.lower())]
            if len(keep) != len(records):
                atomic_write_text(self.path, json.dumps({"version": 1, "results": keep}, indent=2) + "\n")
            return len(records) - len(keep)
