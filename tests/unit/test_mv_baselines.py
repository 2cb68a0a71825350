"""Baselines against hand-computed fixtures (docs/mv.md has the rules).

The fixture: hourly readings, UTC, event on Monday 2025-07-14 14:00-16:00. Every hour of a
past day reads that day's value below; days that must never be used (weekends, the
2025-07-04 holiday, an earlier event on 07-09, days older than the ten chosen) read 5000 or
3000 Wh, so using one by mistake changes every figure.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demand_response import market
from demand_response.mv import (InsufficientHistory, MeterDataError, caiso_x_of_y, compute, meter_before_after,
                                pjm_high_x_of_y, sum_results)


D = 1752451200  # 2025-07-14 00:00 UTC, a Monday
H = 3600
EVENT = (D + 14 * H, D + 16 * H)
EARLIER_EVENT = (D - 5 * 86400 + 14 * H, D - 5 * 86400 + 16 * H)  # Wednesday 07-09
HOLIDAYS = ["2025-07-04"]
DAYS = {"2025-06-26": 900, "2025-06-27": 1100, "2025-06-30": 1000, "2025-07-01": 1000, "2025-07-02": 800,
        "2025-07-03": 1200, "2025-07-07": 1000, "2025-07-08": 900, "2025-07-10": 1100, "2025-07-11": 1000}
WEEKEND = {"2025-07-05": 400, "2025-07-06": 600, "2025-06-29": 500, "2025-07-04": 300}


def _history(days: dict[str, int] = DAYS, event_day: list[int] | None = None, back: int = 25) -> list[tuple]:
    rows = []
    for k in range(back, 0, -1):
        d = D - k * 86400
        iso = dt.datetime.fromtimestamp(d, tz=dt.timezone.utc).date().isoformat()
        value = days.get(iso, WEEKEND.get(iso, 5000 if k < 19 else 3000))
        rows += [(d + h * H, H, value) for h in range(24)]
    today = event_day or [1100] * 24
    if event_day is None:
        today = list(today)
        today[14] = today[15] = 600
    rows += [(D + h * H, H, v) for h, v in enumerate(today)]
    return rows


def _today(window: int, event: int = 600, before: int | None = None) -> list[int]:
    day = [1100] * 24
    day[10] = day[11] = day[12] = window
    day[13] = window if before is None else before
    day[14] = day[15] = event
    return day


def test_caiso_averages_the_ten_latest_eligible_weekdays_and_applies_the_day_of_ratio():
    r = caiso_x_of_y(_history(), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    # ten days sum to 10,000 Wh per hour: average 1000. Window 10:00-13:00 actual 3 x 1100 = 3300
    # against 3000: ratio 1.1, so the baseline is 1100 per event hour.
    assert r.days_used == tuple(sorted(DAYS))
    assert r.baseline_wh == (1100, 1100)
    assert r.metered_wh == (600, 600)
    assert r.reduction_wh == 1000
    assert r.delivered_watts == 500 == market.delivered_watts(2200, 1200, 7200)
    assert r.adjustment == "ratio 33000/30000 = 1.1000"


def test_caiso_ratio_is_capped_at_plus_and_minus_twenty_percent():
    up = caiso_x_of_y(_history(event_day=_today(1500)), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    down = caiso_x_of_y(_history(event_day=_today(700)), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert up.baseline_wh == (1200, 1200) and up.adjustment == "ratio capped at 1.20"
    assert up.delivered_watts == (2400 - 1200) * 3600 // 7200 == 600
    assert down.baseline_wh == (800, 800) and down.adjustment == "ratio capped at 0.80"


def test_caiso_rounds_once_half_up_after_the_exact_ratio():
    day = _today(1100)
    day[12] = 1101  # window 3301 Wh: 10,000 x 33010 / (10 x 30000) = 1100.33 -> 1100
    r = caiso_x_of_y(_history(event_day=day), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert r.baseline_wh == (1100, 1100)
    day[10] = day[11] = day[12] = 1115  # 3345: 1115.0 exactly
    r = caiso_x_of_y(_history(event_day=day), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert r.baseline_wh == (1115, 1115)


def test_caiso_without_the_holiday_and_the_earlier_event_excluded_uses_wrong_days():
    r = caiso_x_of_y(_history(), *EVENT)  # 07-09 (5000) and 07-04 (300) now count
    assert "2025-07-09" in r.days_used and "2025-07-04" in r.days_used
    # 07-09 (5000) and 07-04 (300) push out 06-26 and 06-27: 13,300 per hour over ten days, and
    # the flat profile makes the ratio undo it exactly, which the adjustment shows.
    assert r.adjustment == "ratio 33000/39900 = 0.8271"


def test_caiso_weekend_event_uses_four_weekend_or_holiday_days():
    sat = D - 2 * 86400  # Saturday 2025-07-12
    rows = [r for r in _history() if r[0] < sat] + [(sat + h * H, H, 500) for h in range(24)]
    r = caiso_x_of_y(rows, sat + 14 * H, sat + 16 * H, holidays=HOLIDAYS)
    # 07-06 (600), 07-05 (400), the 07-04 holiday (300), 06-29 (500): average 450; window 1500/1350
    assert r.days_used == ("2025-06-29", "2025-07-04", "2025-07-05", "2025-07-06")
    assert r.baseline_wh == (500, 500)  # ratio 1.111 (under the cap): 450 x 1.111 = 500


def test_caiso_with_too_little_history_says_how_many_days_it_found():
    rows = [r for r in _history() if r[0] >= D - 13 * 86400]
    with pytest.raises(InsufficientHistory, match=r"only 7 eligible business day\(s\).*needs 10.*import more history"):
        caiso_x_of_y(rows, *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    r = caiso_x_of_y(rows, *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT], min_days=5)
    assert len(r.days_used) == 7


def test_a_day_with_a_missing_reading_is_not_eligible():
    rows = [r for r in _history() if r[0] != D - 3 * 86400 + 5 * H]  # 07-11 05:00 missing
    r = caiso_x_of_y(rows, *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT], min_days=9)
    assert "2025-07-11" not in r.days_used and "2025-06-25" in r.days_used


def test_pjm_takes_the_four_highest_of_the_five_latest_days_plus_the_additive_adjustment():
    r = pjm_high_x_of_y(_history(), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    # five latest: 07-11 1000, 07-10 1100, 07-08 900, 07-07 1000, 07-03 1200; drop 900: average 1075.
    # window actual 3300 vs 3225: +25 Wh per interval -> 1100.
    assert r.days_used == ("2025-07-03", "2025-07-07", "2025-07-10", "2025-07-11")
    assert r.baseline_wh == (1100, 1100)
    assert r.delivered_watts == 500
    down = pjm_high_x_of_y(_history(event_day=_today(700)), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert down.baseline_wh == (700, 700)  # 1075 + (2100 - 3225) / 3 = 700: additive, no cap


def test_pjm_breaks_ties_towards_the_more_recent_day():
    days = dict(DAYS, **{"2025-07-08": 1000})
    r = pjm_high_x_of_y(_history(days), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert r.days_used == ("2025-07-03", "2025-07-08", "2025-07-10", "2025-07-11")


def test_pjm_replaces_a_low_usage_day_by_the_next_older_one():
    days = dict(DAYS, **{"2025-07-08": 100})  # 200 Wh in the window, under 25 % of the pool's 1760
    r = pjm_high_x_of_y(_history(days), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    assert r.notes == ("low-usage day 2025-07-08 replaced by 2025-07-02",)
    assert r.baseline_wh == (1100, 1100)


def test_meter_before_after_holds_the_hour_before_flat_and_rounds_half_up():
    r = meter_before_after(_history(), *EVENT)
    assert r.baseline_wh == (1100, 1100) and r.delivered_watts == 500
    q = 900

    def rows(before: list[int]) -> list[tuple[int, int, int]]:
        return ([(EVENT[0] - (4 - i) * q, q, w) for i, w in enumerate(before)]
                + [(EVENT[0] + i * q, q, 150) for i in range(8)])

    assert meter_before_after(rows([270, 270, 270, 271]), *EVENT).baseline_wh == (270,) * 8  # 270.25
    assert meter_before_after(rows([270, 270, 270, 272]), *EVENT).baseline_wh == (271,) * 8  # 270.5 up
    r = meter_before_after(rows([270, 270, 270, 272]), *EVENT)
    assert r.reduction_wh == 8 * (271 - 150) and r.delivered_watts == 968 * 3600 // 7200


def test_meter_before_after_refuses_an_outage_in_the_hour_before():
    with pytest.raises(InsufficientHistory, match="overlaps an excluded window"):
        meter_before_after(_history(), *EVENT, excluded=[(EVENT[0] - 1800, EVENT[0])])


def test_an_event_off_the_interval_grid_or_without_readings_gets_one_clear_line():
    with pytest.raises(MeterDataError, match="does not fall on the meter's 3600 s intervals"):
        caiso_x_of_y(_history(), EVENT[0] + 900, EVENT[1])
    rows = [r for r in _history() if r[0] != EVENT[0]]
    with pytest.raises(InsufficientHistory, match="no readings for 1 of the 2 event intervals"):
        pjm_high_x_of_y(rows, *EVENT)


def test_compute_names_the_methods_and_rejects_unknown_ones_and_parameters():
    assert compute("caiso-10in10", _history(), *EVENT, holidays=HOLIDAYS,
                   excluded=[EARLIER_EVENT]).baseline_wh == (1100, 1100)
    with pytest.raises(MeterDataError, match="unknown baseline method 'x'; choose one of caiso-10in10"):
        compute("x", _history(), *EVENT)
    with pytest.raises(MeterDataError, match="bad parameters for pjm-high4of5"):
        compute("pjm-high4of5", _history(), *EVENT, bogus=1)
    with pytest.raises(MeterDataError, match="not an ISO date"):
        compute("caiso-10in10", _history(), *EVENT, holidays=["July 4"])


def test_a_portfolio_is_settled_on_its_summed_energies():
    a = caiso_x_of_y(_history(), *EVENT, holidays=HOLIDAYS, excluded=[EARLIER_EVENT])
    b = caiso_x_of_y(_history(event_day=_today(1100, event=1300)), *EVENT, holidays=HOLIDAYS,
                     excluded=[EARLIER_EVENT])
    assert b.delivered_watts == 0  # consumed more than its baseline alone
    assert sum_results([a, b]) == (4400, 3800, 300)  # (4400 - 3800) Wh over 2 h


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.integers(0, 4000), min_size=25 * 24, max_size=25 * 24), st.integers(0, 4000), st.randoms())
def test_any_history_gives_an_order_free_bounded_exact_baseline(values, event_wh, rnd):
    rows = [(D - 25 * 86400 + i * H, H, v) for i, v in enumerate(values)]
    rows += [(D + h * H, H, event_wh) for h in range(24)]
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    for method in ("caiso-10in10", "pjm-high4of5", "meter-before-after"):
        try:
            r = compute(method, rows, *EVENT)
        except InsufficientHistory:
            continue
        assert compute(method, shuffled, *EVENT) == r  # the order readings arrive in changes nothing
        assert r.delivered_watts == market.delivered_watts(r.baseline_total_wh, r.metered_total_wh, 7200)
        if method == "caiso-10in10":
            used = {iso: [v for (t, _, v) in rows if dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)
                          .date().isoformat() == iso] for iso in r.days_used}
            for k, b in enumerate(r.baseline_wh):
                hour = 14 + k
                lo = min(day[hour] for day in used.values())
                hi = max(day[hour] for day in used.values())
                assert lo * 8 // 10 - 1 <= b <= hi * 12 // 10 + 1  # an average, times a ratio within ±20 %
