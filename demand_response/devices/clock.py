"""Time sources for the actuator: the wall clock, the chain's clock (what the daemon uses: an
event's window is chain time), and a fake one that tests move by hand."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    """What the actuator and its scheduler need to know about time (unix seconds)."""

    def now(self) -> float:
        """Current unix time in seconds."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds`` (or until ``stop`` is set)."""


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        """Current unix time in seconds."""
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds``, waking early when ``stop`` is set."""
        if stop is not None:
            stop.wait(max(0.0, seconds))
        else:
            time.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told: ``sleep`` and ``advance`` add to it at once.

    Tests and the demo start it at the real time, so that devices whose own timers run on
    real time (a plug's revert timer, a charger's profile duration) agree with it.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The fake current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time."""
        with self._lock:
            self._now += max(0.0, seconds)
            return self._now

    def set(self, when: float) -> None:
        """Jump to ``when`` (never backwards)."""
        with self._lock:
            self._now = max(self._now, float(when))

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Advance by ``seconds`` without waiting (yields the thread briefly)."""
        self.advance(seconds)
        time.sleep(0)


class ChainClock:
    """The chain's clock: the event window is chain time, so the actuator schedules on it.

    ``now()`` is the latest block's timestamp plus the wall time elapsed since that block was
    first seen, re-anchored on each new head (read at most every ``refresh_s``). On a real
    chain this is the machine's clock to within a block's propagation; on a dev chain whose
    time was moved forward (``evm_increaseTime``, ``anvil_setNextBlockTimestamp``) it follows
    the chain from its first block after the jump. Before a new head has been seen (an idle
    dev chain's latest block may be old), it is never behind the machine's clock. When the
    RPC endpoint cannot be reached it keeps counting from its last anchor, so an event still
    ends on time. It never runs backwards.
    """

    def __init__(self, w3: Any, *, refresh_s: float = 1.0, wall: Clock | None = None) -> None:
        self.w3 = w3
        self.refresh_s = refresh_s
        self._wall = wall or SystemClock()
        self._lock = threading.Lock()
        self._head: int | None = None  # the block number of the anchor
        self._offset: float | None = None  # chain time minus wall time, from a head seen as it came
        self._first: tuple[float, float] | None = None  # (block timestamp, wall time seen) of the first head
        self._read_at = float("-inf")  # monotonic time of the last head read
        self._last = float("-inf")

    def observe(self, number: int, timestamp: float, seen_at: float | None = None) -> None:
        """A head: block ``number`` with ``timestamp``, seen at wall time ``seen_at`` (now)."""
        seen_at = self._wall.now() if seen_at is None else seen_at
        with self._lock:
            if self._head is None:
                self._first = (float(timestamp), seen_at)
            elif number > self._head:
                self._offset = float(timestamp) - seen_at
            else:
                return
            self._head = number

    def now(self) -> float:
        """The chain's current time in unix seconds (see the class docstring)."""
        if time.monotonic() - self._read_at >= self.refresh_s:
            self._read_at = time.monotonic()
            self._read_head()
        wall = self._wall.now()
        with self._lock:
            if self._offset is not None:
                now = wall + self._offset
            elif self._first is not None:
                now = max(wall, self._first[0] + wall - self._first[1])
            else:
                now = wall
            self._last = max(self._last, now)
            return self._last

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds`` of real time, at most ``refresh_s`` (the chain may jump meanwhile)."""
        seconds = max(0.0, min(seconds, self.refresh_s))
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    def _read_head(self) -> None:
        try:
            reply = self.w3.provider.make_request("eth_getBlockByNumber", ["latest", False])
            block = reply["result"]
            self.observe(int(block["number"], 16), int(block["timestamp"], 16))
        except Exception as exc:  # unreachable: keep counting from the last anchor
            log.debug("chain clock: cannot read the latest block: %s", exc)
