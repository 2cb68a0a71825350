"""Live updates for the pages: one watcher of the chain per worker, pushed as server-sent events.

``GET /api/live`` (``flaskapp/api.py``) is a ``text/event-stream``. What it says is what the
pages' live regions need to know that they are out of date, never an account's data:

* ``chain``: ``{"block": N, "kinds": [...], "requests": [ids]}`` when new blocks carried logs
  of the contract; kinds are ``request`` (a new, changed or cancelled request), ``bid``,
  ``selection``, ``payment`` (payouts, withdrawals, bonds, delivery) and ``account``
  (enrolment, a new utility); ``reorg`` when the head went back;
* ``status``: ``{"connected": bool}`` when the node stops or starts answering;
* ``daemon``: ``{"state": ...}`` when this worker's consumer daemon changes state;
* ``bye``: ``{"reason": "reconnect" | "signed-out" | "shutdown"}`` before the server ends
  a stream; heartbeats are SSE comments.

``LiveFeed`` (one per app, so one per gunicorn worker) runs one thread, only while somebody
listens: per round one ``eth_blockNumber`` and, when the head moved, one ``eth_getLogs`` for
the new blocks, whatever the number of streams. Streams are capped per worker
(``WEB_LIVE_STREAMS``): one more gets 503 and the page polls instead. A stream ends after
``WEB_LIVE_MAX_S`` (the browser reconnects and is authenticated again), at once when its
session or token is no longer valid (checked at every heartbeat, ``WEB_LIVE_HEARTBEAT_S``), and
when the worker stops (``shutdown_all``, called from gunicorn's SIGTERM).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterator

from demand_response.listener import event_topics

log = logging.getLogger("flaskapp.live")

#: Contract events by what they change on the pages.
KINDS: dict[str, tuple[str, ...]] = {
    "request": ("ReductionRequested", "RequestTerms", "RequestCancelled", "BookSponsored"),
    "bid": ("BidsSubmitted", "BidCancelled", "BidsCommitted", "BidsRevealed", "BondPosted"),
    "selection": ("WinnersSelected", "LevelPrefixProved"),
    "payment": ("PayoutCredited", "PayoutSent", "PaymentSent", "PaymentDeferred", "DustReturned", "Withdrawal", "BondsForfeited",
                "DeliveryReported", "DeliveryMetered", "DeliverySettled"),
    "account": ("EnrolmentRequested", "ConsumerEnrolled", "ConsumerUnenrolled", "UtilityTransferStarted",
                "UtilityTransferred"),
}
#: Events whose first indexed argument is the request id.
_NO_REQUEST = frozenset(KINDS["account"]) | {"Withdrawal"}
#: Blocks read in one ``eth_getLogs`` at most; a longer gap is reported as "everything changed".
MAX_RANGE = 2000
_CLOSE = object()
_FEEDS: "weakref.WeakSet[LiveFeed]" = weakref.WeakSet()


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class StreamsFull(Exception):
    """This worker already serves as many streams as it may."""


class LiveFeed:
    """The chain watcher of one app, fanned out to its streams."""

    def __init__(self, chain: Any, daemon: Any, *, interval: float = 0.5, max_streams: int = 12,
                 linger: float = 30.0) -> None:
        self.chain, self.daemon = chain, daemon
        self.interval, self.max_streams, self.linger = max(0.05, interval), max(0, max_streams), linger
        self.block: int | None = None
        self.connected: bool | None = None
        self.daemon_state: tuple[Any, ...] | None = None
        self.rounds = 0  # watcher rounds (node polls), for the tests and the docs' figures
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._subscribers: list[queue.Queue] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle_since = time.monotonic()
        self._names: dict[str, str] | None = None
        _FEEDS.add(self)

    # -- streams -----------------------------------------------------------------------------

    @property
    def streams(self) -> int:
        """Streams open now."""
        return len(self._subscribers)

    def subscribe(self) -> queue.Queue:
        """A queue of (event, data) for one stream; ``StreamsFull`` when the cap is reached."""
        inbox: queue.Queue = queue.Queue(maxsize=256)
        with self._lock:
            if len(self._subscribers) >= self.max_streams:
                raise StreamsFull(f"this worker serves {self.max_streams} live streams already")
            self._subscribers.append(inbox)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="dr-live-feed", daemon=True)
                self._thread.start()
        _streams_gauge(+1)
        return inbox

    def unsubscribe(self, inbox: queue.Queue) -> None:
        """Forget a stream (its generator ended)."""
        with self._lock:
            if inbox in self._subscribers:
                self._subscribers.remove(inbox)
                _streams_gauge(-1)
            if not self._subscribers:
                self._idle_since = time.monotonic()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send one event to every stream (a stream too slow to take it misses it)."""
        with self._lock:
            inboxes = list(self._subscribers)
        for inbox in inboxes:
            try:
                inbox.put_nowait((event, data))
            except queue.Full:
                pass

    def close(self, reason: str = "shutdown") -> None:
        """End every stream and the watcher."""
        self._stop.set()
        with self._lock:
            inboxes = list(self._subscribers)
        for inbox in inboxes:
            try:
                inbox.put_nowait((_CLOSE, {"reason": reason}))
            except queue.Full:
                pass

    def stream(self, still_valid: Callable[[], bool], *, heartbeat: float = 15.0,
               max_seconds: float = 300.0) -> Iterator[str]:
        """The text of one event stream (subscribes now; ``StreamsFull`` when the cap is reached)."""
        inbox = self.subscribe()
        if self.block is None:
            self.check()  # the first stream of a worker starts from the head, not from nothing
        return self._stream(inbox, still_valid, heartbeat, max_seconds)

    def _stream(self, inbox: queue.Queue, still_valid: Callable[[], bool], heartbeat: float,
                max_seconds: float) -> Iterator[str]:
        try:
            yield "retry: 3000\n\n" + sse("hello", {"block": self.block, "connected": self.connected})
            deadline = time.monotonic() + max_seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    yield sse("bye", {"reason": "reconnect"})
                    return
                try:
                    event, data = inbox.get(timeout=min(heartbeat, left))
                except queue.Empty:
                    if not still_valid():
                        yield sse("bye", {"reason": "signed-out"})
                        return
                    yield ": keep-alive\n\n"
                    continue
                if event is _CLOSE:
                    yield sse("bye", data)
                    return
                yield sse(event, data)
        finally:
            self.unsubscribe(inbox)

    # -- the watcher ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                idle = not self._subscribers and time.monotonic() - self._idle_since > self.linger
                if idle:
                    self._thread = None
                    return
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise; the next round tries again
                log.exception("live feed round failed")

    def check(self) -> None:
        """One round: the node's head and new logs, the daemon's state; publish what changed."""
        with self._check_lock:
            self._check()

    def _check(self) -> None:
        self.rounds += 1
        try:
            session = self.chain.session()
            reply = session.w3.provider.make_request("eth_blockNumber", [])
            head = int(reply["result"], 16)
            if self.block is not None and head != self.block:
                self._new_blocks(session, self.block, head)
            self.block = head
            connected = True
        except Exception as exc:
            log.debug("live feed: the node did not answer (%s)", type(exc).__name__)
            connected = False
        if connected != self.connected:
            if self.connected is not None:
                self.publish("status", {"connected": connected})
            self.connected = connected
        state = self._daemon_state()
        if state != self.daemon_state:
            if self.daemon_state is not None:
                self.publish("daemon", {"state": state[0]})
            self.daemon_state = state

    def _new_blocks(self, session: Any, last: int, head: int) -> None:
        if head < last:
            self.publish("chain", {"block": head, "kinds": ["reorg"], "requests": []})
            return
        if head - last > MAX_RANGE:
            self.publish("chain", {"block": head, "kinds": sorted(KINDS), "requests": []})
            return
        names = self._topic_names()
        logs = session.w3.eth.get_logs({"address": session.dr.address, "fromBlock": last + 1, "toBlock": head,
                                        "topics": [list(names)]})
        kinds, requests = set(), set()
        for raw in logs:
            topics = [t.hex() if isinstance(t, (bytes, bytearray)) else str(t) for t in raw["topics"]]
            name = names.get("0x" + topics[0].removeprefix("0x"))
            if name is None:
                continue
            kinds.add(next(kind for kind, members in KINDS.items() if name in members))
            if name not in _NO_REQUEST and len(topics) > 1:
                requests.add(int(topics[1].removeprefix("0x") or "0", 16))
        if kinds:
            self.publish("chain", {"block": head, "kinds": sorted(kinds), "requests": sorted(requests)})

    def _topic_names(self) -> dict[str, str]:
        if self._names is None:
            self._names = event_topics(*(name for members in KINDS.values() for name in members))
        return self._names

    def _daemon_state(self) -> tuple[Any, ...]:
        current = getattr(self.daemon, "current", None)
        if current is None:
            return ("stopped", None, None)
        status = current.status()
        return (status["state"], status.get("error"), status.get("poll_error"))


def shutdown_all() -> None:
    """End every stream of this process (the worker is stopping)."""
    for feed in list(_FEEDS):
        feed.close("shutdown")


def _streams_gauge(delta: int) -> None:
    """``dr_web_live_streams``: streams open, summed over live workers (flaskapp/ops.py)."""
    from .ops import live_streams_changed

    live_streams_changed(delta)
