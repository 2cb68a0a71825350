"""Push: new heads and the contract's logs from the node over a WebSocket (``eth_subscribe``).

A ``PushFeed`` keeps two subscriptions (``newHeads``, and ``logs`` of one contract) on a
socket of its own, in a thread, and sets ``wake`` on every notification. The listener
(``listener.LogPoller``) waits on ``wake`` instead of sleeping its poll interval, then reads
the logs from its cursor as always: a push only says *when* to look, never *what* to
handle, so the exactly-once keys and the reorg checks stay the polling path's.

While the socket is up the listener still polls every ``PUSH_IDLE_POLL`` seconds (a lost
notification costs at most that); when the socket drops it polls at its own interval and
the feed reconnects with a backoff (0.5 s doubling to 30 s), one log line per state change.
A node that refuses ``eth_subscribe`` is told once and left to polling.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from . import metrics

log = logging.getLogger(__name__)

#: Seconds between safety-net polls while pushes arrive.
PUSH_IDLE_POLL = 1.0
#: Shortest time between two pushed rounds (seconds): a node flooding notifications costs
#: at most 20 rounds a second.
PUSH_MIN_GAP = 0.05
#: Longest wait between reconnection attempts (seconds).
MAX_BACKOFF = 30.0


class PushFeed:
    """A thread subscribed to new heads and one contract's logs; ``wake`` is set on each push."""

    def __init__(self, url: str, address: str, label: str = "listener", timeout: float = 5.0,
                 optional: bool = False) -> None:
        """``optional``: the URL is a guess (the HTTP node's port): if the first attempt finds
        no WebSocket there, give up and leave the listener to polling."""
        self.url = url
        self.optional = optional
        self.address = address
        self.label = label
        self.timeout = timeout
        #: Set on every notification, on (re)connection and on a drop; the listener clears it.
        self.wake = threading.Event()
        #: True while both subscriptions are up.
        self.live = False
        #: False once the node refused ``eth_subscribe`` (polling only from then on).
        self.offered = True
        #: The last head pushed (block number), and how many notifications arrived.
        self.head: int | None = None
        self.notifications = 0
        #: Times the socket came back after a drop.
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: Any = None

    def start(self) -> "PushFeed":
        """Connect and subscribe in a background thread."""
        self._thread = threading.Thread(target=self._run, name=f"push {self.label}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Unsubscribe (by closing the socket) and end the thread."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(5)
        self._set_live(False)

    def _set_live(self, live: bool) -> None:
        self.live = live
        metrics.set_push(self.label, live)

    def _run(self) -> None:
        from .chain.connection import redact_url

        where = redact_url(self.url)
        backoff = 0.0
        down_since: float | None = None
        ever_up = False
        while not self._stop.is_set():
            try:
                self._session(where, down_since, ever_up)
                return  # stopped, or subscriptions not offered
            except Exception as exc:  # a node answering nonsense is handled like a dropped socket
                if not isinstance(exc, ConnectionError):
                    log.warning("%s: push feed from %s failed (%s: %s); reconnecting", self.label, where,
                                type(exc).__name__, str(exc)[:200])
                    exc = ConnectionError(type(exc).__name__)
                if self.live or down_since is None:
                    down_since = time.monotonic()
                    if self.live:
                        log.warning("%s: push socket to %s dropped (%s); polling until it is back",
                                    self.label, where, exc.__cause__.__class__.__name__ if exc.__cause__ else exc)
                        metrics.rpc_error("connection")
                    elif not ever_up:
                        log.info("%s: no WebSocket at %s (%s); polling", self.label, where, exc)
                        if self.optional:
                            self.offered = False
                            return
                if self.live:
                    ever_up = True
                    backoff = 0.0  # it was up: the backoff starts over
                    self._set_live(False)
                    self.wake.set()  # the listener polls now, and on its interval from here on
                backoff = min(MAX_BACKOFF, backoff * 2 or 0.5)
                if self._stop.wait(backoff):
                    return
                metrics.rpc_retry("push")

    def _session(self, where: str, down_since: float | None, ever_up: bool) -> None:
        """One connection: subscribe, then set ``wake`` per notification until it drops."""
        from websockets.exceptions import ConnectionClosed

        from .chain.wsrpc import open_socket

        ws = open_socket(self.url, self.timeout)
        self._ws = ws
        try:
            subscriptions = {}
            for params in (["newHeads"], ["logs", {"address": self.address}]):
                reply = self._call(ws, "eth_subscribe", params)
                if "error" in reply or not isinstance(reply.get("result"), str):
                    self.offered = False
                    error = reply.get("error")
                    log.info("%s: the node at %s offers no eth_subscribe %s (%s); polling", self.label, where,
                             params[0], str(error.get("message") if isinstance(error, dict) else "no result")[:200])
                    return
                subscriptions[reply["result"]] = params[0]
            if ever_up:
                self.reconnects += 1
                log.warning("%s: push socket to %s is back after %.1f s; catching up from the cursor", self.label,
                            where, time.monotonic() - (down_since or time.monotonic()))
            else:
                log.info("%s: push on %s: subscribed to new heads and the contract's logs", self.label, where)
            self._set_live(True)
            self.wake.set()  # catch up on what happened while the socket was down
            while not self._stop.is_set():
                try:
                    raw = ws.recv(timeout=1.0)
                except TimeoutError:
                    continue
                self._notified(raw, subscriptions)
        except (ConnectionClosed, OSError) as exc:
            if self._stop.is_set():
                return
            raise ConnectionError(type(exc).__name__) from exc
        finally:
            self._ws = None
            try:
                ws.close()
            except Exception:
                pass

    def _call(self, ws: Any, method: str, params: list[Any]) -> dict[str, Any]:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                reply = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            except TimeoutError:
                return {"error": {"message": "no answer"}}
            except ValueError:
                continue  # not JSON: not the answer
            if isinstance(reply, dict) and reply.get("id") == 1:
                return reply

    def _notified(self, raw: Any, subscriptions: dict[str, str]) -> None:
        try:
            message = json.loads(raw)
            params = message["params"]
            kind = subscriptions.get(params["subscription"])
        except (ValueError, KeyError, TypeError):
            return  # not a notification of ours: nothing to wake for
        if kind is None:
            return
        if kind == "newHeads":
            try:
                self.head = int(params["result"]["number"], 16)
            except (KeyError, TypeError, ValueError):
                pass
        self.notifications += 1
        self.wake.set()

    def pause(self, stop: threading.Event, interval: float) -> None:
        """The listener's wait between rounds: until ``wake`` (a push, the socket coming up or
        dropping) or ``stop``; at most ``max(interval, PUSH_IDLE_POLL)`` while live, ``interval``
        while the socket is down."""
        if stop.wait(PUSH_MIN_GAP):
            return
        deadline = time.monotonic() + (max(interval, PUSH_IDLE_POLL) if self.live else interval) - PUSH_MIN_GAP
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.wake.wait(min(0.25, left)):
                return
