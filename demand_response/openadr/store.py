"""The VTN's own store (SQLite): VEN registrations and the events sent to them.

OpenLEADR keeps nothing across restarts; this store is what makes a restarted VTN still
know which VEN speaks for which enrolled Ethereum address, which events it sent, and who
opted in or out. Every write is one transaction; SQLite's journal makes it atomic on disk.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ._sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vens (
    ven_id          TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL UNIQUE,
    address         TEXT NOT NULL UNIQUE,
    registered_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id     TEXT PRIMARY KEY,
    ven_id       TEXT NOT NULL,
    address      TEXT NOT NULL,
    request_id   INTEGER NOT NULL,
    context      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('notice', 'dispatch')),
    watts        INTEGER NOT NULL,
    start        INTEGER NOT NULL,
    end          INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    modification INTEGER NOT NULL DEFAULT 0,
    opt          TEXT CHECK (opt IN ('optIn', 'optOut')),
    opt_at       INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_request ON events (request_id, kind);
CREATE TABLE IF NOT EXISTS opts (
    event_id   TEXT NOT NULL,
    ven_id     TEXT NOT NULL,
    opt        TEXT NOT NULL CHECK (opt IN ('optIn', 'optOut')),
    reason     TEXT,
    resources  TEXT NOT NULL DEFAULT '',
    at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS opts_by_event ON opts (event_id);
"""

NOTICE, DISPATCH = "notice", "dispatch"


def vtn_store_path(state_dir: Path | str, chain_id: int, contract: str) -> Path:
    """The VTN store of ``dr utility run --vtn-port`` (``STATE_DIR/vtn-CHAIN-CONTRACT8.sqlite``);
    the web app reads its opt-outs from the same file."""
    return Path(state_dir) / f"vtn-{chain_id}-{contract[2:10].lower()}.sqlite"
OPT_IN, OPT_OUT = "optIn", "optOut"


@dataclass(frozen=True)
class Ven:
    """A registered VEN and the enrolled address it speaks for."""

    ven_id: str
    registration_id: str
    address: str
    registered_at: int


@dataclass(frozen=True)
class EventRecord:
    """An OpenADR event the VTN sent: an advance notice or a winner's load dispatch."""

    event_id: str
    ven_id: str
    address: str
    request_id: int
    context: str
    kind: str
    watts: int
    start: int
    end: int
    status: str = "active"
    modification: int = 0
    opt: str | None = None
    opt_at: int | None = None


class VtnStore(SqliteStore):
    """Registrations and events in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    # -- registrations -------------------------------------------------------------------

    def register(self, address: str) -> Ven:
        """The VEN for ``address``: its existing registration, or a new one.

        The ven_id is an unguessable token: on plain HTTP it is what identifies the VEN.
        """
        existing = self.ven_by_address(address)
        if existing:
            return existing
        ven = Ven(secrets.token_urlsafe(16), secrets.token_urlsafe(12), address, int(time.time()))
        self._write("INSERT INTO vens VALUES (?, ?, ?, ?)",
                    (ven.ven_id, ven.registration_id, ven.address, ven.registered_at))
        return ven

    def unregister(self, ven_id: str) -> bool:
        """Forget a VEN (its events stay as history); True when it was registered."""
        return self._write("DELETE FROM vens WHERE ven_id = ?", (ven_id,)) > 0

    def ven(self, ven_id: str) -> Ven | None:
        """The VEN with ``ven_id``, if registered."""
        rows = self._rows("SELECT * FROM vens WHERE ven_id = ?", (ven_id,))
        return Ven(**dict(rows[0])) if rows else None

    def ven_by_address(self, address: str) -> Ven | None:
        """The VEN registered for ``address`` (checksummed), if any."""
        rows = self._rows("SELECT * FROM vens WHERE address = ?", (address,))
        return Ven(**dict(rows[0])) if rows else None

    def vens(self) -> list[Ven]:
        """Every registered VEN, oldest first."""
        return [Ven(**dict(r)) for r in self._rows("SELECT * FROM vens ORDER BY registered_at, ven_id")]

    # -- events --------------------------------------------------------------------------

    def add_event(self, event: EventRecord) -> None:
        """Record an event sent (or about to be sent) to a VEN."""
        self._write(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.event_id, event.ven_id, event.address, event.request_id, event.context, event.kind,
             event.watts, event.start, event.end, event.status, event.modification, event.opt, event.opt_at),
        )

    def record_opt(self, ven_id: str, event_id: str, opt: str, *, reason: str | None = None,
                   resources: list[str] | None = None) -> bool:
        """Record a VEN's opt-in or opt-out of one of its own events (its answer, or a later
        oadrCreateOpt with ``reason`` and the ``resources`` it names); False if it is not its
        event. Every opt is kept in ``opts`` as history; the event holds the latest."""
        if opt not in (OPT_IN, OPT_OUT):
            return False
        now = int(time.time())
        if self._write("UPDATE events SET opt = ?, opt_at = ? WHERE event_id = ? AND ven_id = ?",
                       (opt, now, event_id, ven_id)) == 0:
            return False
        self._write("INSERT INTO opts VALUES (?, ?, ?, ?, ?, ?)",
                    (event_id, ven_id, opt, reason, ",".join(resources or []), now))
        return True

    def opt_history(self, event_id: str) -> list[dict[str, object]]:
        """Every opt recorded for an event, oldest first (``opt``, ``reason``, ``resources``, ``at``)."""
        return [{"opt": r["opt"], "reason": r["reason"], "resources": [x for x in r["resources"].split(",") if x],
                 "at": r["at"]} for r in self._rows("SELECT * FROM opts WHERE event_id = ? ORDER BY rowid", (event_id,))]

    def cancel_request(self, request_id: int) -> list[EventRecord]:
        """Mark every active event of ``request_id`` cancelled; returns them as they were."""
        active = self.events(request_id, status="active")
        self._write("UPDATE events SET status = 'cancelled', modification = modification + 1 "
                    "WHERE request_id = ? AND status = 'active'", (request_id,))
        return active

    def events(self, request_id: int | None = None, *, kind: str | None = None,
               status: str | None = None) -> list[EventRecord]:
        """Events, optionally of one request, kind and status, in the order they were sent."""
        clauses, args = [], []
        for column, value in (("request_id", request_id), ("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [EventRecord(**dict(r)) for r in self._rows(f"SELECT * FROM events {where} ORDER BY rowid", tuple(args))]

    def event(self, event_id: str) -> EventRecord | None:
        """One event by id."""
        rows = self._rows("SELECT * FROM events WHERE event_id = ?", (event_id,))
        return EventRecord(**dict(rows[0])) if rows else None

    def expected_under_delivery(self, request_id: int) -> dict[str, int]:
        """Watts each winner opted out of for ``request_id`` (address → W): expected under-delivery."""
        out: dict[str, int] = {}
        for event in self.events(request_id, kind=DISPATCH, status="active"):
            if event.opt == OPT_OUT:
                out[event.address] = out.get(event.address, 0) + event.watts
        return out

    def __iter__(self) -> Iterator[Ven]:
        return iter(self.vens())
