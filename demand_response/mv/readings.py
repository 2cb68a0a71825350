"""Interval readings and the one set of rules that says whether a series of them is usable.

A reading is the energy a meter measured over one interval: ``start`` (unix seconds, the
interval is ``[start, start + seconds)``), ``seconds`` (900, 1200, 1800 or 3600: 15 to 60
minutes) and ``wh`` (integer watt-hours; negative for a net meter that exported). Pure
Python: a consumer board runs this without numpy.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Sequence
from ..errors import UserError

#: Interval lengths accepted (seconds): 15, 20, 30 and 60 minutes, each dividing an hour.
INTERVALS_S = (900, 1200, 1800, 3600)
#: Largest plausible average power through one household or small business meter (W).
#: A reading above it is almost always a unit mistake (kWh read as Wh x 1000, mWh, W s).
MAX_AVERAGE_W = 200_000
_METER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")


class MeterDataError(UserError, ValueError):
    """Bad meter data a user can fix. ``str()`` is one line that names the problem and the fix."""


class Reading(NamedTuple):
    """One interval: ``[start, start + seconds)`` consumed ``wh`` watt-hours."""

    start: int
    seconds: int
    wh: int


def check_meter_id(meter_id: object) -> str:
    """The meter id if it is 1-64 characters of letters, digits and ``_ . : @ -``."""
    if not isinstance(meter_id, str) or not _METER_ID.match(meter_id):
        raise MeterDataError(f"bad meter id {meter_id!r}: use 1-64 letters, digits or _ . : @ - "
                             "(starting with a letter or digit)")
    return meter_id


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_reading(meter_id: str, reading: Sequence[object]) -> Reading:
    """One reading, type- and unit-checked; raises :class:`MeterDataError` with the fix."""
    if len(reading) != 3:
        raise MeterDataError(f"meter {meter_id}: a reading is (start, seconds, wh); got {reading!r}")
    start, seconds, wh = reading
    if not _is_int(start) or not 0 <= start < 2**40:
        raise MeterDataError(f"meter {meter_id}: interval start {start!r} is not unix seconds "
                             "(an integer, e.g. 1752537600)")
    if not _is_int(seconds) or seconds not in INTERVALS_S:
        hint = " (minutes? give seconds)" if seconds in (15, 20, 30, 60) else ""
        raise MeterDataError(f"meter {meter_id}: interval length {seconds!r} s{hint} is not one of "
                             f"{', '.join(str(s) for s in INTERVALS_S)} s (15 to 60 minutes)")
    if start % seconds:
        raise MeterDataError(f"meter {meter_id}: interval start {start} is not on a {seconds} s boundary; "
                             "intervals must start on the clock (e.g. :00, :15, :30, :45)")
    if not _is_int(wh):
        hint = " (kWh? multiply by 1000 and round)" if isinstance(wh, float) else ""
        raise MeterDataError(f"meter {meter_id}: energy {wh!r} at {start} is not whole watt-hours{hint}")
    limit = MAX_AVERAGE_W * seconds // 3600
    if abs(wh) > limit:
        raise MeterDataError(f"meter {meter_id}: {wh} Wh in {seconds // 60} min at {start} is "
                             f"{wh * 3600 // seconds / 1000:,.0f} kW on average, above {MAX_AVERAGE_W // 1000} kW; "
                             "wrong units? (readings are Wh per interval, not mWh or W s)")
    return Reading(int(start), int(seconds), int(wh))


def check_series(meter_id: str, readings: Iterable[Sequence[object]],
                 interval_s: int | None = None) -> list[Reading]:
    """Readings of one meter sorted by start, checked to form one gap-free run.

    Every reading is checked (:func:`check_reading`); all must have the same length (and
    equal ``interval_s`` when given: the meter's stored length); no start may repeat;
    consecutive intervals must touch (no gaps). Raises :class:`MeterDataError` at the first
    problem.
    """
    check_meter_id(meter_id)
    rows = sorted((check_reading(meter_id, r) for r in readings), key=lambda r: r.start)
    if not rows:
        raise MeterDataError(f"meter {meter_id}: no readings given")
    lengths = {r.seconds for r in rows}
    if len(lengths) > 1:
        raise MeterDataError(f"meter {meter_id}: mixed interval lengths {sorted(lengths)} s; "
                             "import one length per meter (resample to the longest first)")
    seconds = rows[0].seconds
    if interval_s is not None and seconds != interval_s:
        raise MeterDataError(f"meter {meter_id}: readings of {seconds} s but the store holds {interval_s} s "
                             "intervals for this meter; resample them to match")
    for prev, cur in zip(rows, rows[1:]):
        if cur.start == prev.start:
            raise MeterDataError(f"meter {meter_id}: duplicate interval at {cur.start}; "
                                 "keep one reading per interval")
        if cur.start != prev.start + seconds:
            missing = (cur.start - prev.start) // seconds - 1
            raise MeterDataError(f"meter {meter_id}: gap of {missing} interval(s) between {prev.start} and "
                                 f"{cur.start}; fill it (estimated readings) and mark an outage")
    return rows
