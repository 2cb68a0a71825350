"""One lock per account: at most one daemon sends from an account at a time.

Two daemons bidding for one account collide on its nonce and bid twice. Every daemon
(``dr consumer run``, ``dr consumer fleet``, the web console's daemon, ``dr utility run``)
takes an exclusive ``flock`` on ``LOCK_DIR/.lock-<chain id>-<address>.lock`` for each of
its accounts before it reads or sends anything, and holds it until it stops. The kernel
releases the lock when the process dies, so a crash leaves no stale lock. The file holds
the holder's pid and what it is, so another program (the web console) can show a daemon
it did not start: ``holder()``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

from .errors import AccountBusy

#: Tries to take a lock: ``holder`` holds a shared lock for a moment while it reads.
_ATTEMPTS = 5


@dataclass(frozen=True)
class Holder:
    """Who holds an account's lock: a process id (None if it could not be read yet) and
    what kind of daemon it is (``consumer run``, ``consumer fleet``, ``web console``...)."""

    pid: int | None
    daemon: str = ""
    started_at: int | None = None


def lock_path(lock_dir: Path | str, chain_id: int, address: str) -> Path:
    """The lock file of ``address`` on chain ``chain_id``."""
    return Path(lock_dir) / f".lock-{int(chain_id)}-{address.lower()}.lock"


def _read_holder(handle: IO[str]) -> Holder:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
        return Holder(int(data["pid"]), str(data.get("daemon", "")), data.get("started_at"))
    except (ValueError, KeyError, TypeError):
        return Holder(None)  # being written right now


def holder(lock_dir: Path | str, chain_id: int, address: str) -> Holder | None:
    """The daemon that holds ``address``'s lock on chain ``chain_id`` now, or None.

    Works across processes and within one (a lock this process holds is reported too)."""
    path = lock_path(lock_dir, chain_id, address)
    try:
        handle = open(path, "r", encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


class AccountLocks:
    """The held locks of one daemon's accounts; ``release`` (or the process ending) frees them."""

    def __init__(self, lock_dir: Path | str, chain_id: int, addresses: Iterable[str], daemon: str) -> None:
        self.lock_dir = Path(lock_dir)
        self.chain_id = int(chain_id)
        self.addresses = list(dict.fromkeys(a.lower() for a in addresses))
        self.daemon = daemon
        self._handles: list[IO[str]] = []

    @property
    def held(self) -> bool:
        """True while the locks are held."""
        return bool(self._handles)

    def acquire(self) -> "AccountLocks":
        """Take every account's lock, or none: raises ``AccountBusy`` naming the holder."""
        if self._handles:
            return self
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            for address in self.addresses:
                self._handles.append(self._take(address))
        except BaseException:
            self.release()
            raise
        return self

    def _take(self, address: str) -> IO[str]:
        path = lock_path(self.lock_dir, self.chain_id, address)
        handle = open(path, "a+", encoding="utf-8")
        for attempt in range(_ATTEMPTS):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < _ATTEMPTS - 1:  # maybe only a reader (``holder``) looking
                    time.sleep(0.05)
        else:
            other = _read_holder(handle)
            handle.close()
            who = f"{other.daemon or 'a daemon'} (pid {other.pid})" if other.pid else "another daemon"
            raise AccountBusy(f"account {address} is already used by {who} on chain {self.chain_id}; "
                              "stop that daemon first (one daemon per account)", pid=other.pid) from None
        # Written in place: replacing the file would leave the lock on the old inode.
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "daemon": self.daemon, "started_at": int(time.time())}))
        handle.flush()
        return handle

    def release(self) -> None:
        """Free every lock taken (the files stay; an unlocked file means no holder)."""
        for handle in self._handles:
            try:
                handle.seek(0)
                handle.truncate()
                handle.close()
            except OSError:
                pass
        self._handles = []

    def __enter__(self) -> "AccountLocks":
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()
