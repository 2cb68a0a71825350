"""An agent's own record in the consumer's state file: what it did per request.

The state file (``listener.StateFile``) holds one typed record per writer: the listener's
``Cursor`` and, for each agent, its ``AgentNotes`` (at ``agents/<address>``). An agent
writes only its own notes; the JSON layout is the one earlier versions wrote, so a
restarted daemon reads its old file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

#: Values of ``RequestNote.terms``.
SEALED, METERED = "sealed", "metered"


@dataclass
class RequestNote:
    """What an agent noted about one request."""

    #: Block of the ``ReductionRequested`` event (where to look for our bids).
    requested_block: int | None = None
    #: ``sealed`` or ``metered`` when the request has terms (then ``tick`` drives it on).
    terms: str | None = None
    #: Our bid (or commitment) transactions, 0x-hex.
    bid_txs: list[str] = field(default_factory=list)
    bid_at: int | None = None
    #: [[watts, wei per kWh], ...] as sent.
    offers: list[list[int]] = field(default_factory=list)
    #: Offers left out (above the cap, invalid).
    skipped: int | None = None
    #: Nothing more to do for this request (recorded, or gone).
    done: bool = False
    #: What each of our transactions for this request cost (0x-hex hash → wei: gas used ×
    #: effective gas price + any L1 fee, ``fees.receipt_cost``), failed ones included: the
    #: results record's ``gas_wei``. Kept here so that a restart does not lose it.
    spent: dict[str, int] = field(default_factory=dict)
    #: The contract shows us taking part (found on a restart whose notes missed our bid).
    joined: bool = False
    #: Our signed open bids handed to the utility's relay and not yet seen on chain:
    #: ``{"deadline": bidding deadline, "signature": 0x-hex}`` (``consumer.relayed``).
    relay: dict[str, Any] | None = None
    #: Our bids were placed by the utility's relay: we sent no transaction for them.
    relayed: bool = False

    @property
    def gas_wei(self) -> int:
        """Wei our transactions for this request cost so far."""
        return sum(self.spent.values())

    @classmethod
    def from_json(cls, data: Any) -> "RequestNote":
        if not isinstance(data, dict):
            return cls()
        return cls(data.get("requested_block"), data.get("terms"), list(data.get("bid_txs") or []),
                   data.get("bid_at"), [list(o) for o in data.get("offers") or []], data.get("skipped"),
                   bool(data.get("done", False)), _spent(data.get("spent")), bool(data.get("joined", False)),
                   data.get("relay") if isinstance(data.get("relay"), dict) else None,
                   bool(data.get("relayed", False)))

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items()
                if not (value is None or value is False or (isinstance(value, (list, dict)) and not value))}


def _spent(data: Any) -> dict[str, int]:
    """``spent`` as read back: hash → wei, anything malformed left out."""
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


class AgentNotes:
    """One agent's ``RequestNote`` per request id."""

    def __init__(self, notes: dict[int, RequestNote] | None = None) -> None:
        self._notes: dict[int, RequestNote] = dict(notes or {})

    @classmethod
    def from_json(cls, data: Any) -> "AgentNotes":
        """From ``{"requests": {"<id>": {...}}}`` (None: empty)."""
        requests = data.get("requests") if isinstance(data, dict) else None
        notes = {}
        for key, value in (requests or {}).items():
            try:
                notes[int(key)] = RequestNote.from_json(value)
            except ValueError:
                continue
        return cls(notes)

    def to_json(self) -> dict[str, Any]:
        return {"requests": {str(rid): note.to_json() for rid, note in sorted(dict(self._notes).items())}}

    def note(self, rid: int) -> RequestNote:
        """The note of ``rid``, created empty if there is none."""
        return self._notes.setdefault(int(rid), RequestNote())

    def get(self, rid: int) -> RequestNote | None:
        """The note of ``rid``, or None."""
        return self._notes.get(int(rid))

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, int) and rid in self._notes

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._notes))

    def items(self) -> list[tuple[int, RequestNote]]:
        """(request id, note) pairs, a snapshot."""
        return list(self._notes.items())
