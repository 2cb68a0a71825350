"""The local calendar baselines count days in: a time zone (or fixed UTC offset) and holidays.

Baselines pick "similar days" by local date: the event day's local midnight, weekdays
against weekends, and holidays excluded from a business-day baseline. A :class:`Calendar`
turns the settings ``BASELINE_TIMEZONE`` (an IANA name such as ``America/Los_Angeles``, or a
fixed offset such as ``+01:00``; default UTC) and ``BASELINE_HOLIDAYS`` (ISO dates, comma
separated, or ``@FILE`` with one date a line and ``#`` comments) into the method parameters
``utc_offset_s`` and ``holidays``. An IANA zone gives the offset in force at the event
start; the whole baseline uses that one offset (a DST change inside the look-back shifts
those days by an hour, as CAISO's own rules accept). The parameters are published with the
figure, so a household recomputes with exactly the calendar the utility used.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .readings import MeterDataError

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})?$")


@dataclass(frozen=True)
class Calendar:
    """A time zone name or fixed offset, and holiday dates (local, ISO)."""

    timezone: str = "UTC"
    holidays: tuple[str, ...] = ()

    def utc_offset_s(self, at: int) -> int:
        """Seconds east of UTC at unix time ``at``."""
        tz = self.timezone.strip()
        if tz.upper() in ("", "UTC", "Z", "GMT"):
            return 0
        m = _OFFSET.match(tz)
        if m:
            sign, hours, minutes = m.group(1), int(m.group(2)), int(m.group(3) or 0)
            seconds = hours * 3600 + minutes * 60
            if seconds > 14 * 3600 or minutes >= 60:
                raise MeterDataError(f"time zone offset {tz!r} is beyond ±14:00; use e.g. +01:00 or Europe/Paris")
            return seconds if sign == "+" else -seconds
        try:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise MeterDataError(f"unknown time zone {tz!r}; use an IANA name (Europe/Paris) or an offset "
                                 "(+01:00)") from None
        offset = _dt.datetime.fromtimestamp(at, tz=zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def params(self, method: str, event_start: int) -> dict[str, Any]:
        """The calendar's method parameters for an event starting at ``event_start``."""
        out: dict[str, Any] = {"utc_offset_s": self.utc_offset_s(event_start)}
        if method != "meter-before-after":
            out["holidays"] = sorted(self.holidays)
        return out

    @classmethod
    def from_settings(cls, timezone: str | None = None, holidays: str | None = None) -> "Calendar":
        """From ``BASELINE_TIMEZONE`` and ``BASELINE_HOLIDAYS`` (see the module doc); one
        clear line for a bad zone, date or unreadable file."""
        dates: list[str] = []
        text = (holidays or "").strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise MeterDataError(f"cannot read the holiday file {path}: {exc.strerror}; fix BASELINE_HOLIDAYS") from None
            items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        else:
            items = [part.strip() for part in text.split(",")]
        for item in filter(None, items):
            try:
                dates.append(_dt.date.fromisoformat(item).isoformat())
            except ValueError:
                raise MeterDataError(f"holiday {item!r} is not an ISO date (YYYY-MM-DD); fix BASELINE_HOLIDAYS") from None
        cal = cls((timezone or "UTC").strip() or "UTC", tuple(sorted(set(dates))))
        cal.utc_offset_s(0)  # a bad zone is refused now, not at the first event
        return cal


UTC = Calendar()
