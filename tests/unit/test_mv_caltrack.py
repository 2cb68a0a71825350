"""CalTRACK hourly and daily through opendsm: on its own sample meter and on a gridsim portfolio.

Skips when opendsm (extra 'mv') is missing. Slow: opendsm's import takes seconds and an
hourly fit about a minute on a shared machine.
"""

from __future__ import annotations

import pytest

pytest.importorskip("opendsm", reason="opendsm is not installed (extra 'mv')")

from demand_response.gridsim.history import simulate_history  # noqa: E402
from demand_response.gridsim.weather import Request, outdoor_temperature  # noqa: E402
from demand_response.mv import MeterDataError  # noqa: E402
from demand_response.mv.caltrack import caltrack_baseline, sample_readings  # noqa: E402

pytestmark = pytest.mark.slow


def _temperatures(hist) -> dict[int, float]:
    """Hourly outdoor °C of the history's weather (the same model the homes saw)."""
    hours = hist.starts[:: 3600 // hist.interval_s]
    out: dict[int, float] = {}
    for k in range(hist.days):
        sel = hours[(hours >= hist.day_start(k)) & (hours < hist.day_start(k + 1))]
        req = Request(hist.day_start(k) + 1, hist.day_start(k) + 2, outdoor_max_c=float(hist.outdoor_max_c[k]))
        out.update({int(t): float(c) for t, c in zip(sel, outdoor_temperature(req, sel + 1800.0))})
    return out


def test_caltrack_daily_on_opendsm_sample_data_predicts_close_to_the_meter():
    rows, temps = sample_readings("il-electricity-cdd-hdd-hourly")
    rows = [r for r in rows if r[0] >= rows[-1][0] - 150 * 86400]
    last_day = rows[-1][0] - rows[-1][0] % 86400 - 86400
    r = caltrack_baseline(rows, temps, last_day, last_day + 86400, granularity="daily")
    assert r.method == "caltrack-daily" and len(r.baseline_wh) == 24
    # no event on the sample: the day's prediction is within 40 % of what the meter read
    assert abs(r.baseline_total_wh - r.metered_total_wh) < 0.4 * r.metered_total_wh


def test_caltrack_hourly_finds_a_portfolios_known_reduction():
    hist = simulate_history(50, 46, 1752451200 - 45 * 86400, seed=4, event_days=[45])
    rows = [(t, hist.interval_s, w) for t, w in zip(hist.starts.tolist(), hist.wh.sum(axis=0).tolist())]
    start, end = hist.events[0]
    true = int(hist.true_reduction_wh[:, 0].sum())
    temps = _temperatures(hist)
    hourly = caltrack_baseline(rows, temps, start, end, granularity="hourly")
    assert abs(hourly.reduction_wh - true) < 0.15 * true  # measured: 50.0 vs 51.2 kWh
    daily = caltrack_baseline(rows, temps, start, end, granularity="daily")
    assert 0 < daily.reduction_wh < 1.5 * true  # the daily model spreads a day: coarser (35.5 kWh)
    assert hourly.params["granularity"] == "hourly" and "opendsm" in hourly.params


def test_caltrack_without_weather_or_with_a_bad_granularity_says_so():
    rows = [(1752451200 + i * 3600, 3600, 500) for i in range(24 * 20)]
    with pytest.raises(MeterDataError, match="no outdoor temperatures"):
        caltrack_baseline(rows, {}, 1752451200 + 19 * 86400, 1752451200 + 19 * 86400 + 7200)
    with pytest.raises(MeterDataError, match="granularity 'weekly'"):
        caltrack_baseline(rows, {}, 1752451200, 1752451200 + 3600, granularity="weekly")
