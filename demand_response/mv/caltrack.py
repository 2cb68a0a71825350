"""CalTRACK hourly and daily baselines through ``opendsm`` (the maintained OpenEEmeter).

Utility side only (extra ``mv``: opendsm pulls pandas, numba and scikit-learn). The
models are fitted on the meter's history before the event day with hourly outdoor
temperatures, then predict the event day:

* ``caltrack-hourly``: opendsm's CalTRACK hourly model; each hour's prediction is split
  evenly over the meter's intervals in that hour.
* ``caltrack-daily``: opendsm's CalTRACK daily model predicts the event day's energy; the
  window's share of it is the window's average share of the day on the fitting days.

Results are rounded to whole Wh per interval and returned as a
:class:`~demand_response.mv.baselines.BaselineResult`, so delivery and the fingerprint
work as for the day-matching methods (the recomputation needs the same opendsm version,
named in ``params``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Iterable, Mapping, Sequence

from .baselines import DAY, HOUR, BaselineResult, InsufficientHistory, Series, _check_event, _event_metered, day_start
from .readings import MeterDataError


def _odsm() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from opendsm import eemeter
    except ImportError:
        raise MeterDataError("CalTRACK needs opendsm: pip install 'demand-response[mv]'") from None
    logging.getLogger("eemeter").setLevel(logging.ERROR)
    return eemeter


def _frames(series: Series, temperature_c: Mapping[int, float], lo: int, hi: int) -> tuple[Any, Any]:
    import pandas as pd

    hours: dict[int, int] = {}
    for t, wh in series.wh.items():
        if lo <= t < hi:
            hours[t - t % HOUR] = hours.get(t - t % HOUR, 0) + wh
    if not hours:
        raise InsufficientHistory("no readings before the event day to fit CalTRACK on")
    idx = pd.to_datetime(sorted(hours), unit="s", utc=True)
    meter = pd.Series([hours[t] / 1000.0 for t in sorted(hours)], index=idx, name="observed")
    temps = sorted(t for t in temperature_c if lo <= t < hi + DAY)
    tidx = pd.to_datetime(temps, unit="s", utc=True)
    temp_f = pd.Series([temperature_c[t] * 9 / 5 + 32 for t in temps], index=tidx, name="temperature")
    if temp_f.empty:
        raise InsufficientHistory("no outdoor temperatures for the fitting period; CalTRACK needs hourly weather")
    return meter, temp_f


def caltrack_baseline(readings: "Series | Iterable[Sequence[int]]", temperature_c: Mapping[int, float],
                      event_start: int, event_end: int, *, granularity: str = "hourly", fit_days: int = 365,
                      utc_offset_s: int = 0) -> BaselineResult:
    """Fit CalTRACK on up to ``fit_days`` before the event day and predict the event window.

    ``temperature_c`` maps hour starts (unix s) to outdoor °C and must cover the fitting
    days and the event day.
    """
    import pandas as pd

    if granularity not in ("hourly", "daily"):
        raise MeterDataError(f"granularity {granularity!r} is not 'hourly' or 'daily'")
    em = _odsm()
    import opendsm

    series = Series.of(readings)
    _check_event(series, event_start, event_end)
    starts, metered = _event_metered(series, event_start, event_end)
    event_day = day_start(event_start, utc_offset_s)
    lo = event_day - fit_days * DAY
    first = min(t for t in series.wh if t >= lo) if any(t >= lo for t in series.wh) else event_day
    lo = day_start(first, utc_offset_s)
    meter, temp_f = _frames(series, temperature_c, lo, event_day)
    day_idx = pd.date_range(pd.Timestamp(event_day, unit="s", tz="UTC"), periods=24, freq="h")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if granularity == "hourly":
            data = em.HourlyCaltrackBaselineData.from_series(meter, temp_f, is_electricity_data=True)
            model = em.HourlyCaltrackModel().fit(data)
            rep = em.HourlyCaltrackReportingData.from_series(None, temp_f.reindex(day_idx).interpolate(
                limit_direction="both"), is_electricity_data=True)
            pred = model.predict(rep)["predicted"]
            per_hour = {int(ts.timestamp()): float(v) * 1000.0 for ts, v in pred.items()}
        else:
            daily = meter.resample("D").sum(min_count=1)
            data = em.DailyBaselineData.from_series(daily, temp_f, is_electricity_data=True)
            model = em.DailyModel().fit(data, ignore_disqualification=True)
            rep = em.DailyReportingData.from_series(None, temp_f.reindex(day_idx).interpolate(limit_direction="both"),
                                                    is_electricity_data=True)
            day_wh = float(model.predict(rep, ignore_disqualification=True)["predicted"].iloc[0]) * 1000.0
            shape = meter.groupby(meter.index.hour).mean()
            total = float(shape.sum()) or 1.0
            per_hour = {event_day + h * HOUR: day_wh * float(shape.get(h, 0.0)) / total for h in range(24)}
    split = HOUR // series.interval_s if series.interval_s < HOUR else 1
    baseline = []
    for t in starts:
        hour = t - t % HOUR
        if hour not in per_hour:
            raise InsufficientHistory(f"CalTRACK predicted nothing for {hour}; check the temperature data")
        baseline.append(int(round(per_hour[hour] / split)))
    params = {"granularity": granularity, "fit_days": fit_days, "utc_offset_s": utc_offset_s,
              "opendsm": str(getattr(opendsm, "__version__", "unknown"))}
    return BaselineResult(f"caltrack-{granularity}", params, event_start, event_end, series.interval_s, starts,
                          tuple(baseline), metered, (), "none (weather regression)", lo, event_end)


def sample_readings(sample: str = "il-electricity-cdd-hdd-hourly") -> tuple[list[tuple[int, int, int]], dict[int, float]]:
    """opendsm's bundled sample meter as hourly readings (Wh) and its temperatures (°C by hour)."""
    em = _odsm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meter, temp_f, _ = em.load_sample(sample)
    col = meter.iloc[:, 0] if hasattr(meter, "columns") else meter
    rows = [(int(ts.timestamp()), HOUR, int(round(float(v) * 1000))) for ts, v in col.dropna().items()]
    temps = {int(ts.timestamp()): (float(v) - 32) * 5 / 9 for ts, v in temp_f.dropna().items()}
    return rows, temps
