"""One SQLite file shared by a server's threads: the base of the VTN's and the 3.0 API's stores."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class SqliteStore:
    """A SQLite connection in WAL mode behind one lock; ``schema`` is created if missing.

    Each ``_write`` is one statement in autocommit mode, so it is atomic on its own.
    """

    def __init__(self, path: Path | str, schema: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(schema)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount
