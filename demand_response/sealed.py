"""What a consumer keeps on disk for sealed bids and metered requests.

``SaltStore``: the salts of sealed bids. A salt is written (fsynced, mode 600) *before*
the commitment is sent, and its entry is kept until the reveal is mined. If the file is
lost, the commitment cannot be revealed: the bids do not take part and the request's bond,
if any, is forfeited (docs/market.md); nothing else is at risk. Revealed entries stay as
an audit trail (their salts are public on chain by then).

``MeterReadings``: the household meter's figures per request (``database/meter.json``),
written by a meter integration or by gridsim. A reading is either ``delivered_watts``
(reduction as average W over the event window) or ``baseline_wh`` and ``metered_wh``
(energy over the window), from which the delivered W are derived.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SaltStoreError
from .files import atomic_write_text
from .market import delivered_watts

#: Stages of a sealed entry: the salt is on disk (commit maybe sent), the commit is mined,
#: the reveal is mined. An entry whose request no longer exists (a reset dev chain) is "gone".
COMMITTING, COMMITTED, REVEALED = "committing", "committed", "revealed"


@dataclass
class SealedEntry:
    """Sealed bids of one account on one request."""

    request_id: int
    account: str
    watts: list[int]
    prices: list[int]
    salt: bytes
    commitment: bytes
    stage: str = COMMITTING
    commit_tx: str | None = None
    reveal_tx: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "account": self.account, "watts": self.watts,
                "prices": [str(p) for p in self.prices], "salt": "0x" + self.salt.hex(),
                "commitment": "0x" + self.commitment.hex(), "stage": self.stage,
                "commit_tx": self.commit_tx, "reveal_tx": self.reveal_tx}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SealedEntry":
        return cls(int(data["request_id"]), str(data["account"]), [int(w) for w in data["watts"]],
                   [int(p) for p in data["prices"]], bytes.fromhex(data["salt"][2:]),
                   bytes.fromhex(data["commitment"][2:]), str(data["stage"]),
                   data.get("commit_tx"), data.get("reveal_tx"))


class SaltStore:
    """Sealed entries of one contract, keyed by (account, request), in one JSON file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], SealedEntry] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                for item in data["entries"]:
                    entry = SealedEntry.from_json(item)
                    self._entries[(entry.account.lower(), entry.request_id)] = entry
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SaltStoreError(f"{self.path}: unreadable salt file ({exc}); fix or move it aside") from exc

    @staticmethod
    def new_salt() -> bytes:
        return secrets.token_bytes(32)

    def get(self, account: str, request_id: int) -> SealedEntry | None:
        with self._lock:
            return self._entries.get((account.lower(), request_id))

    def pending(self, account: str) -> list[SealedEntry]:
        """Entries of ``account`` still to be committed or revealed."""
        with self._lock:
            return [e for (a, _), e in sorted(self._entries.items())
                    if a == account.lower() and e.stage in (COMMITTING, COMMITTED)]

    def put(self, entry: SealedEntry) -> None:
        """Store (or update) an entry durably before returning."""
        with self._lock:
            self._entries[(entry.account.lower(), entry.request_id)] = entry
            text = json.dumps({"version": 1, "entries": [e.to_json() for _, e in sorted(self._entries.items())]},
                              indent=1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, text + "\n", mode=0o600)


class MeterReadings:
    """Delivered reductions per (account, request) from a meter JSON file, re-read when it changes.

    Format: ``{"readings": [{"account": "0x…", "request_id": 3, "delivered_watts": 1200}, …]}``
    or, instead of ``delivered_watts``, ``"baseline_wh"`` and ``"metered_wh"``. ``chain_id``
    and ``contract`` may be given to tell deployments apart.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._rows: list[dict[str, Any]] = []

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            self._rows, self._mtime = [], None
            return
        if mtime == self._mtime:
            return
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8")).get("readings", [])
            self._rows = [r for r in rows if isinstance(r, dict)]
        except (OSError, ValueError, AttributeError):
            self._rows = []  # half-written or bad: try again when it changes
        self._mtime = mtime

    def delivered(self, account: str, request_id: int, duration_s: int, *, chain_id: int | None = None,
                  contract: str | None = None) -> int | None:
        """Delivered W for ``account`` in ``request_id``, or None if the meter has no reading."""
        self._load()
        for row in self._rows:
            try:
                if str(row.get("account", "")).lower() != account.lower() or int(row["request_id"]) != request_id:
                    continue
                if chain_id is not None and "chain_id" in row and int(row["chain_id"]) != chain_id:
                    continue
                if contract is not None and "contract" in row and str(row["contract"]).lower() != contract.lower():
                    continue
                if "delivered_watts" in row:
                    return max(0, int(row["delivered_watts"]))
                return delivered_watts(float(row["baseline_wh"]), float(row["metered_wh"]), duration_s)
            except (KeyError, TypeError, ValueError):
                continue
        return None


def write_readings(path: Path | str, readings: list[dict[str, Any]]) -> None:
    """Merge ``readings`` into a meter file (same account and request replaced), atomically."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    if path.exists():
        try:
            rows = json.loads(path.read_text(encoding="utf-8")).get("readings", [])
        except (OSError, ValueError, AttributeError):
            rows = []
    keys = {(str(r["account"]).lower(), int(r["request_id"])) for r in readings}
    rows = [r for r in rows if (str(r.get("account", "")).lower(), int(r.get("request_id", -1))) not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"version": 1, "readings": rows + list(readings)}, indent=1) + "\n")


def drop_readings(path: Path | str, chain_id: int, contract: str) -> None:
    """Remove the readings of one deployment from a meter file (a reset dev chain reuses addresses)."""
    path = Path(path)
    if not path.exists():
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("readings", [])
    except (OSError, ValueError, AttributeError):
        return
    keep = [r for r in rows if not (str(r.get("contract", "")).lower() == contract.lower()
                                    and int(r.get("chain_id", chain_id)) == chain_id)]
    if len(keep) != len(rows):
        atomic_write_text(path, json.dumps({"version": 1, "readings": keep}, indent=1) + "\n")
