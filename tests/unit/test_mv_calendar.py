"""The baselines' local calendar (``mv.calendar``): a time zone or offset and holidays,
from settings or the CLI, into the published method parameters. Fixtures: flat hourly
history with one value per local day, so the days chosen show in the figure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from demand_response.mv import MeterDataError, caiso_x_of_y
from demand_response.mv.calendar import UTC, Calendar

D = 1752451200  # 2025-07-14 00:00 UTC, a Monday
H = 3600


def _flat(days_back: int = 30, value: int = 1000, special: dict[str, int] | None = None,
          offset_s: int = 0) -> list[tuple[int, int, int]]:
    """Hourly readings from ``days_back`` days before D to D + 2 days; ``special`` local dates
    (at ``offset_s``) read their own value."""
    rows = []
    for t in range(D - days_back * 86400, D + 2 * 86400, H):
        iso = dt.datetime.fromtimestamp(t + offset_s, tz=dt.timezone.utc).date().isoformat()
        rows.append((t, H, (special or {}).get(iso, value)))
    return rows


def test_a_holiday_from_the_calendar_is_not_a_similar_day_for_a_business_day_event() -> None:
    # Friday 2025-07-11 reads 5000 Wh an hour: averaged in, it would move the baseline.
    rows = _flat(special={"2025-07-11": 5000})
    event = (D + 14 * H, D + 16 * H)
    plain = caiso_x_of_y(rows, *event, **UTC.params("caiso-10in10", event[0]))
    holiday = Calendar(holidays=("2025-07-11",))
    with_holiday = caiso_x_of_y(rows, *event, **holiday.params("caiso-10in10", event[0]))
    assert "2025-07-11" in plain.days_used and "2025-07-11" not in with_holiday.days_used
    assert len(with_holiday.days_used) == 10 and with_holiday.baseline_total_wh < plain.baseline_total_wh
    assert with_holiday.params["holidays"] == ["2025-07-11"]  # published with the figure


def test_a_non_utc_day_boundary_makes_a_monday_utc_event_a_sunday_one_in_los_angeles() -> None:
    # 2025-07-14 03:00 UTC is Sunday 2025-07-13 20:00 in Los Angeles (UTC-7 in July):
    # a weekend event there, averaged over 4 weekend days, not 10 business days.
    event = (D + 3 * H, D + 4 * H)
    la = Calendar("America/Los_Angeles")
    assert la.utc_offset_s(event[0]) == -7 * H
    assert Calendar("America/Los_Angeles").utc_offset_s(D - 180 * 86400) == -8 * H  # January: PST
    rows = _flat(offset_s=-7 * H)
    utc_result = caiso_x_of_y(rows, *event, **UTC.params("caiso-10in10", event[0]))
    la_result = caiso_x_of_y(rows, *event, **la.params("caiso-10in10", event[0]))
    assert len(utc_result.days_used) == 10 and len(la_result.days_used) == 4
    assert "2025-07-12" in la_result.days_used  # the Saturday before, a local date
    assert all(dt.date.fromisoformat(d).weekday() >= 5 for d in la_result.days_used)
    assert la_result.params["utc_offset_s"] == -7 * H
    assert Calendar("+10:00").utc_offset_s(0) == 10 * H and Calendar("UTC-05:30").utc_offset_s(0) == -(5 * H + 1800)


def test_calendar_settings_read_dates_and_files_and_refuse_bad_ones_in_one_line(tmp_path: Path) -> None:
    assert Calendar.from_settings(None, None) == UTC
    assert Calendar.from_settings("Europe/Paris", "2025-12-25, 2025-01-01").holidays == ("2025-01-01", "2025-12-25")
    listed = tmp_path / "holidays.txt"
    listed.write_text("# national\n2025-07-04  # Independence Day\n\n2025-09-01\n", encoding="utf-8")
    assert Calendar.from_settings("", f"@{listed}").holidays == ("2025-07-04", "2025-09-01")
    for zone, dates, message in (("Mars/Olympus", None, "unknown time zone 'Mars/Olympus'"),
                                 ("+15:00", None, "beyond ±14:00"),
                                 (None, "2025-13-01", "holiday '2025-13-01' is not an ISO date"),
                                 (None, f"@{tmp_path / 'missing.txt'}", "cannot read the holiday file")):
        with pytest.raises(MeterDataError, match=message):
            Calendar.from_settings(zone, dates)
    assert "holidays" not in UTC.params("meter-before-after", D)  # that method has no day matching
