"""Time sources for the actuator: the wall clock, and a fake one that tests move by hand."""

from __future__ import annotations

import threading
import time
from typing import Protocol


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
