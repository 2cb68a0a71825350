"""The consumer daemon, run in-process as a managed background thread.

``DaemonManager.start`` builds the package's ``ConsumerService`` (the same object
``dr consumer run`` runs) and runs it in a thread. Guarantees:

* one daemon per account: a process-wide registry refuses a second thread for the same
  (chain, contract, account), and the package's account lock (``demand_response.locks``,
  in ``STATE_DIR``, the one ``dr consumer run`` and ``dr utility run`` take) refuses a daemon
  that another process already runs; ``external`` shows such a daemon on the page;
* no orphans: the thread is a daemon thread, it is stopped and joined on ``stop()`` and at
  interpreter exit, and it holds no child processes;
* status for the page: listening or reconnecting, the last event seen, the last error and
  recent log lines (never secrets: the daemon logs addresses and amounts only).
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from demand_response import locks
from demand_response.errors import UserError
from demand_response.consumer import AgentSpec, ConsumerService
from demand_response.listener import Event

log = logging.getLogger("flaskapp.daemon")

_REGISTRY: dict[tuple[int, str, str], "DaemonHandle"] = {}
_REGISTRY_LOCK = threading.Lock()


class DaemonError(UserError):
    """The daemon cannot be started or stopped; ``str()`` is one clear line."""


class _LogBuffer(logging.Handler):
    """Keeps the last lines one daemon logged (its thread only)."""

    def __init__(self, thread_name: str, size: int = 40) -> None:
        super().__init__(logging.INFO)
        self.thread_name = thread_name
        self.lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName != self.thread_name:
            return
        try:
            self.lines.append({"at": int(record.created), "level": record.levelname.lower(),
                               "message": record.getMessage()})
        except Exception:  # a bad log call must never break the daemon
            pass


class _WatchedService(ConsumerService):
    """``ConsumerService`` that reports the events it handles and the health of its polls."""

    handle: "DaemonHandle"

    def _dispatch(self, event: Event) -> None:
        self.handle.last_event = {
            "name": event.name, "request_id": int(event.args.get("requestId", 0)),
            "block": event.block_number, "tx": event.tx_hash, "seen_at": int(time.time()),
        }
        super()._dispatch(event)


@dataclass
class DaemonHandle:
    """One running (or finished) daemon thread."""

    key: tuple[int, str, str]
    account: str
    chain_id: int
    contract: str
    bids_source: str
    thread: threading.Thread | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    started_at: int = field(default_factory=lambda: int(time.time()))
    stopped_at: int | None = None
    last_poll_ok: float | None = None
    last_poll_error: str | None = None
    last_event: dict[str, Any] | None = None
    error: str | None = None
    poll_interval: float = 0.2
    logs: _LogBuffer | None = None

    @property
    def alive(self) -> bool:
        """The thread is running."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def listening(self) -> bool:
        """Running and its last poll of the node succeeded recently."""
        if not self.alive or self.last_poll_ok is None:
            return False
        return time.monotonic() - self.last_poll_ok < max(10.0, 20 * self.poll_interval)

    def status(self) -> dict[str, Any]:
        """JSON form for the page and /api/daemon."""
        if self.alive:
            state = "listening" if self.listening else ("starting" if self.last_poll_ok is None and not self.last_poll_error else "reconnecting")
        else:
            state = "failed" if self.error else "stopped"
        return {
            "state": state, "running": self.alive, "listening": self.listening, "account": self.account,
            "chain_id": self.chain_id, "contract": self.contract, "bids_source": self.bids_source,
            "started_at": self.started_at, "stopped_at": self.stopped_at, "last_event": self.last_event,
            "error": self.error, "poll_error": self.last_poll_error,
            "log": list(self.logs.lines) if self.logs else [],
        }


class DaemonManager:
    """Starts, stops and reports the consumer daemon of one app."""

    def __init__(self) -> None:
        self.current: DaemonHandle | None = None

    def status(self, external: locks.Holder | None = None) -> dict[str, Any]:
        """The current daemon's status; else, with ``external`` (the holder of the account's
        lock, ``locks.holder``), a daemon this server did not start; else a stopped one."""
        if self.current is not None and (self.current.alive or external is None):
            return self.current.status()
        if external is not None:
            return {"state": "external", "running": True, "listening": False, "last_event": None,
                    "error": None, "log": [], "account": None, "external": {
                        "pid": external.pid, "daemon": external.daemon or "a daemon",
                        "started_at": external.started_at}}
        return {"state": "stopped", "running": False, "listening": False, "last_event": None,
                "error": None, "log": [], "account": None}

    def holder(self, settings: Any, chain_id: int, account: str) -> locks.Holder | None:
        """Who else holds ``account``'s lock (None when this server's daemon does, or nobody)."""
        if self.current is not None and self.current.alive and self.current.account.lower() == account.lower():
            return None
        return locks.holder(settings.lock_dir, chain_id, account)

    def start(
        self, session: Any, signer: Any, bids: Callable, bids_source: str, settings: Any, rpc_name: str,
    ) -> DaemonHandle:
        """Start the daemon for ``signer`` (one per account, process-wide and across processes)."""
        key = (int(session.chain_id), session.dr.address.lower(), signer.address.lower())
        with _REGISTRY_LOCK:
            running = _REGISTRY.get(key)
            if running is not None and running.alive:
                if running is self.current:
                    raise DaemonError(f"the daemon for {signer.address} is already running")
                raise DaemonError(f"a consumer daemon for {signer.address} is already running in this server")
            handle = DaemonHandle(key, signer.address, int(session.chain_id), session.dr.address, bids_source,
                                  poll_interval=settings.poll_interval)
            service = _WatchedService.from_settings(
                session, settings, [AgentSpec(signer, bids, f"consumer {signer.address[:10]}")],
                daemon="web console", rpc_name=rpc_name)
            service.acquire_locks()  # AccountBusy (one line naming the holder) before any thread starts
            service.handle = handle
            poll = service.poller.poll

            def watched_poll() -> Any:
                try:
                    result = poll()
                except Exception as exc:
                    handle.last_poll_error = f"{type(exc).__name__}: the node is not answering; retrying"
                    raise
                handle.last_poll_ok = time.monotonic()
                handle.last_poll_error = None
                return result

            service.poller.poll = watched_poll  # type: ignore[method-assign]
            name = f"dr-consumer-{signer.address[:10]}"
            handle.logs = _LogBuffer(name)
            logging.getLogger("demand_response").addHandler(handle.logs)
            if logging.getLogger("demand_response").level == logging.NOTSET:
                logging.getLogger("demand_response").setLevel(logging.INFO)
            handle.thread = threading.Thread(target=self._run, args=(handle, service), name=name, daemon=True)
            _REGISTRY[key] = handle
            self.current = handle
            handle.thread.start()
        return handle

    @staticmethod
    def _run(handle: DaemonHandle, service: ConsumerService) -> None:
        try:
            service.run(handle.stop_event)
        except Exception as exc:
            handle.error = f"the daemon stopped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            log.error("consumer daemon for %s failed: %s", handle.account, handle.error)
        finally:
            handle.stopped_at = int(time.time())
            with _REGISTRY_LOCK:
                if _REGISTRY.get(handle.key) is handle:
                    del _REGISTRY[handle.key]

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the daemon and wait for its thread; False when none was running."""
        handle = self.current
        if handle is None or not handle.alive:
            return False
        handle.stop_event.set()
        handle.thread.join(timeout)
        if handle.logs is not None:
            logging.getLogger("demand_response").removeHandler(handle.logs)
        return True


def stop_all(timeout: float = 10.0) -> None:
    """Stop every daemon thread of this process (registered with atexit)."""
    with _REGISTRY_LOCK:
        handles = list(_REGISTRY.values())
    for handle in handles:
        handle.stop_event.set()
    for handle in handles:
        if handle.thread is not None:
            handle.thread.join(timeout)


atexit.register(stop_all)
