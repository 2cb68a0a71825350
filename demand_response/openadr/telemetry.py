"""Telemetry into interval meter data: power samples from VENs → energy per interval.

OpenADR telemetry is instantaneous real power (W) at the VEN's sampling rate; a meter data
store (``demand_response.mv.MeterStore``, issue 13) holds energy per fixed interval (Wh).
``IntervalFeed`` sits between them: pass it as ``UtilityVtn(on_telemetry=feed)`` and it
writes one ``(start, seconds, wh)`` reading per meter and completed interval to
``sink.add_readings(meter_id, rows)``. The meter id is ``<address>@<resource>``
(``Telemetry.meter_id``): a VEN's self-reported power is a series of its own, never the
address's meter, whose interval data the utility imports and settles metered requests on.
An interval's energy is the mean of its samples (W) × its length (s) / 3600, rounded to
whole Wh (samples are assumed evenly spaced).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, Sequence

from ..errors import UserError
from .vtn import Telemetry

log = logging.getLogger(__name__)


class ReadingSink(Protocol):
    """Anything with the meter data store's ``add_readings``."""

    def add_readings(self, meter_id: str, readings: Sequence[Sequence[object]]) -> Any: ...


class IntervalFeed:
    """Accumulates ``Telemetry`` per address into ``interval_s`` intervals and writes closed ones."""

    def __init__(self, sink: ReadingSink, interval_s: int = 900) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self._open: dict[str, tuple[int, float, int]] = {}  # meter id -> (interval start, sum W, samples)
        self._lock = threading.Lock()
        #: Samples taken in, and interval readings the sink stored, per meter id (for reports).
        self.samples: dict[str, int] = {}
        self.stored: dict[str, int] = {}

    def __call__(self, reading: Telemetry) -> None:
        start = int(reading.time.timestamp()) // self.interval_s * self.interval_s
        meter = reading.meter_id
        with self._lock:
            current = self._open.get(meter)
            if current is not None and start < current[0]:
                log.warning("telemetry of meter %s at %s is older than its open interval; ignored",
                            meter, reading.time.isoformat())
                return
            if current is not None and start > current[0]:
                self._write(meter, current)
                current = None
            if current is None:
                current = (start, 0.0, 0)
            self._open[meter] = (current[0], current[1] + reading.watts, current[2] + 1)
            self.samples[meter] = self.samples.get(meter, 0) + 1

    def flush(self) -> None:
        """Write every open interval now (at shutdown); their energy covers the whole interval."""
        with self._lock:
            for meter, current in self._open.items():
                self._write(meter, current)
            self._open.clear()

    def _write(self, meter: str, current: tuple[int, float, int]) -> None:
        start, total, count = current
        wh = round(total / count * self.interval_s / 3600)  # mean W over the interval -> Wh
        try:
            self.sink.add_readings(meter, [(start, self.interval_s, wh)])
        except (ValueError, UserError) as exc:  # the store's one-line MeterDataError / StoreError
            log.warning("telemetry interval of %s not stored: %s", meter, exc)
            return
        self.stored[meter] = self.stored.get(meter, 0) + 1
