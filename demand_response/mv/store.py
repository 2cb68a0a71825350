"""The interval meter data store: SQLite embedded by default, PostgreSQL for a utility.

One small layer over plain DB-API connections (``sqlite3`` from the standard library, or
``psycopg`` 3 from the ``mv`` extra), parameterised SQL only. Every write is one
transaction that checks the whole batch first, so a bad batch changes nothing stored.

Rules (docs/mv.md): a meter has one interval length for life; its readings form one
gap-free run (a batch must extend the stored run at either end or start a new meter);
an interval is stored once. Events and outages are stored as *marks* (``[start, end)``
windows) that the baselines read to exclude days.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from .readings import MeterDataError, Reading, check_meter_id, check_series
from ..errors import UserError

MARK_KINDS = ("event", "outage")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mv_meters (
        meter_id TEXT PRIMARY KEY,
        seconds INTEGER NOT NULL,
        first_start BIGINT,
        end_start BIGINT)""",
    """CREATE TABLE IF NOT EXISTS mv_readings (
        meter_id TEXT NOT NULL,
        start BIGINT NOT NULL,
        seconds INTEGER NOT NULL,
        wh BIGINT NOT NULL,
        PRIMARY KEY (meter_id, start))""",
    """CREATE TABLE IF NOT EXISTS mv_marks (
        meter_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        start BIGINT NOT NULL,
        stop BIGINT NOT NULL,
        PRIMARY KEY (meter_id, kind, start))""",
)


class StoreError(UserError, RuntimeError):
    """The store cannot be opened or used (not the data's fault); one line with the fix."""


class Mark(NamedTuple):
    """A window ``[start, stop)`` of a meter that baselines treat specially (an event, an outage)."""

    kind: str
    start: int
    stop: int


class MeterStore:
    """Interval readings per meter over a DB-API connection (``sqlite3`` or ``psycopg``).

    Open one with :meth:`open`; use it as a context manager to close it.
    """

    def __init__(self, connection: Any, dialect: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError("dialect must be 'sqlite' or 'postgresql'")
        self._conn = connection
        self.dialect = dialect
        with self._transaction() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, url: "str | Path") -> "MeterStore":
        """Open ``url``: a file path or ``sqlite:///path`` (SQLite, created if missing),
        ``:memory:``, or ``postgresql://user@host:port/db`` (needs the ``mv`` extra)."""
        text = str(url)
        if text.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError:
                raise StoreError("a PostgreSQL meter store needs psycopg: pip install 'demand-response[mv]'") from None
            try:
                conn = psycopg.connect(text)
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreError(f"cannot open the meter store {_redact(text)}: {first}; "
                                 "check the URL and that the server runs") from None
            return cls(conn, "postgresql")
        path = text[len("sqlite:///"):] if text.startswith("sqlite:///") else text
        if path != ":memory:":
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open the meter store {path}: folder {parent} does not exist; create it")
            path = str(Path(path).expanduser())
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")  # readers go on while one writer writes
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the meter store {path}: {exc}; is it an SQLite file you can write?") from None
        return cls(conn, "sqlite")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> "MeterStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            if self.dialect == "sqlite":
                cur.execute("BEGIN IMMEDIATE")  # one writer at a time
            yield cur
        except BaseException:
            self._conn.rollback() if self.dialect == "postgresql" else cur.execute("ROLLBACK")
            raise
        else:
            self._conn.commit() if self.dialect == "postgresql" else cur.execute("COMMIT")
        finally:
            cur.close()

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = self._conn.cursor()
        try:
            cur.execute(self._sql(statement), tuple(params))
            rows = cur.fetchall()
        finally:
            cur.close()
        if self.dialect == "postgresql":
            self._conn.rollback()  # end the implicit read transaction
        return rows

    # -- writing --------------------------------------------------------------------------

    def add_readings(self, meter_id: str, readings: Iterable[Sequence[object]]) -> int:
        """Store one meter's batch; returns the number stored. All or nothing."""
        return self.import_batches({meter_id: readings})

    def import_batches(self, batches: Mapping[str, Iterable[Sequence[object]]]) -> int:
        """Store batches of several meters in one transaction: all of them or none.

        Raises :class:`MeterDataError` (one line: meter, problem, fix) for a bad batch:
        a gap, a duplicate interval, wrong units, mixed interval lengths, or a batch that
        neither extends the stored run nor starts a new meter.
        """
        checked = {check_meter_id(m): list(rows) for m, rows in batches.items()}
        total = 0
        try:
            with self._transaction() as cur:
                for meter_id, raw in checked.items():
                    total += len(self._add_one(cur, meter_id, raw))
        except Exception as exc:
            if type(exc).__name__ in ("IntegrityError", "UniqueViolation"):  # sqlite3 / psycopg
                raise MeterDataError(f"another writer stored readings of {', '.join(sorted(checked))} at the same "
                                     "time; nothing of this batch was stored: import it again") from None
            raise
        return total

    def _add_one(self, cur: Any, meter_id: str, raw: list) -> list[Reading]:
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        cur.execute(self._sql("SELECT seconds, first_start, end_start FROM mv_meters WHERE meter_id = ?" + lock),
                    (meter_id,))
        found = cur.fetchone()
        rows = check_series(meter_id, raw, interval_s=found[0] if found else None)
        first, end = rows[0].start, rows[-1].start + rows[0].seconds
        if found is None:
            cur.execute(self._sql("INSERT INTO mv_meters (meter_id, seconds, first_start, end_start) "
                                  "VALUES (?, ?, ?, ?)"), (meter_id, rows[0].seconds, first, end))
        else:
            _, s_first, s_end = found
            if first < s_end and end > s_first:
                raise MeterDataError(f"meter {meter_id}: readings {first}..{end} overlap the stored {s_first}..{s_end} "
                                     "(duplicate intervals); import only new intervals")
            if first != s_end and end != s_first:
                raise MeterDataError(f"meter {meter_id}: readings {first}..{end} leave a gap to the stored "
                                     f"{s_first}..{s_end}; import the intervals in between first")
            cur.execute(self._sql("UPDATE mv_meters SET first_start = ?, end_start = ? WHERE meter_id = ?"),
                        (min(first, s_first), max(end, s_end), meter_id))
        cur.executemany(self._sql("INSERT INTO mv_readings (meter_id, start, seconds, wh) VALUES (?, ?, ?, ?)"),
                        [(meter_id, r.start, r.seconds, r.wh) for r in rows])
        return rows

    def add_mark(self, meter_id: str, kind: str, start: int, stop: int) -> None:
        """Record an ``event`` or ``outage`` window ``[start, stop)`` for a meter."""
        check_meter_id(meter_id)
        if kind not in MARK_KINDS:
            raise MeterDataError(f"mark kind {kind!r} is not one of {', '.join(MARK_KINDS)}")
        if not (isinstance(start, int) and isinstance(stop, int)) or stop <= start:
            raise MeterDataError(f"meter {meter_id}: a {kind} window needs integer unix seconds start < stop; "
                                 f"got {start!r}..{stop!r}")
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT 1 FROM mv_marks WHERE meter_id = ? AND kind = ? AND start = ?"),
                        (meter_id, kind, start))
            if cur.fetchone():
                raise MeterDataError(f"meter {meter_id}: a {kind} starting at {start} is already recorded")
            cur.execute(self._sql("INSERT INTO mv_marks (meter_id, kind, start, stop) VALUES (?, ?, ?, ?)"),
                        (meter_id, kind, start, stop))

    # -- reading --------------------------------------------------------------------------

    def meters(self) -> list[str]:
        """Every meter id, sorted."""
        return [r[0] for r in self._query("SELECT meter_id FROM mv_meters ORDER BY meter_id")]

    def span(self, meter_id: str) -> tuple[int, int, int] | None:
        """``(interval_s, first_start, end)`` of a meter's stored run, or None if unknown."""
        rows = self._query("SELECT seconds, first_start, end_start FROM mv_meters WHERE meter_id = ?", (meter_id,))
        return tuple(int(v) for v in rows[0]) if rows else None  # type: ignore[return-value]

    def readings(self, meter_id: str, start: int | None = None, end: int | None = None) -> list[Reading]:
        """A meter's readings with ``start <= reading.start < end``, oldest first."""
        lo = -(2**62) if start is None else int(start)
        hi = 2**62 if end is None else int(end)
        rows = self._query("SELECT start, seconds, wh FROM mv_readings WHERE meter_id = ? AND start >= ? "
                           "AND start < ? ORDER BY start", (meter_id, lo, hi))
        return [Reading(int(a), int(b), int(c)) for a, b, c in rows]

    def marks(self, meter_id: str, kinds: Iterable[str] = MARK_KINDS) -> list[Mark]:
        """A meter's event and outage windows, oldest first."""
        wanted = set(kinds)
        rows = self._query("SELECT kind, start, stop FROM mv_marks WHERE meter_id = ? ORDER BY start, kind",
                           (meter_id,))
        return [Mark(str(k), int(a), int(b)) for k, a, b in rows if k in wanted]

    def count(self, meter_id: str | None = None) -> int:
        """Readings stored (of one meter, or all)."""
        if meter_id is None:
            return int(self._query("SELECT COUNT(*) FROM mv_readings")[0][0])
        return int(self._query("SELECT COUNT(*) FROM mv_readings WHERE meter_id = ?", (meter_id,))[0][0])


def _redact(url: str) -> str:
    """A database URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url
