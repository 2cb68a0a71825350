"""Interval meter histories for a population: weather, weekends, events and known reductions.

:func:`simulate_history` writes what each household's meter would record over ``days``
local days at ``interval_s`` resolution (integer Wh), so baselines are tested on data
whose true reduction is known exactly:

* daily weather: a seeded AR(1) walk of the daily maximum around ``mean_max_c`` (daily
  minimum 10 °C lower), which drives the HVAC baseline through the ETP house physics of
  :func:`~demand_response.gridsim.devices.baseline_components`;
* behaviour: each home's non-flexible load varies by a day factor (log-normal, ``day_sd``)
  and an interval factor (log-normal, ``interval_sd``); weekends and ``holidays`` scale it
  by ``weekend_factor``; the HVAC load by a day factor (log-normal, ``hvac_day_sd``:
  occupancy, windows, setpoint changes); an EV is plugged in on a given evening with
  probability ``ev_plug_p``;
* events: on each of ``event_days`` every home sheds ``participation`` x its feasible
  constant reduction (:func:`~demand_response.gridsim.devices.device_flexibility`) over
  the event hours, never below zero consumption, then pays back ``rebound`` of the shed
  energy evenly over the ``rebound_h`` hours after.

``counterfactual - metered`` over an event's intervals is the true reduction, kept per
home and event in ``true_reduction_wh``. Deterministic for a given seed and size.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from ..market import delivered_watts
from .devices import baseline_components, device_flexibility
from .population import Population, make_population
from .weather import SECONDS_PER_DAY, Request

if TYPE_CHECKING:
    from ..mv.baselines import Series


@dataclass
class History:
    """Interval histories of ``n`` homes (arrays in integer Wh, one column per interval)."""

    seed: int
    interval_s: int
    day0: int  # unix time of the local midnight starting day 0
    days: int
    utc_offset_s: int
    starts: np.ndarray  # (T,) interval starts, unix s
    wh: np.ndarray  # (N, T) int32 metered energy
    outdoor_max_c: np.ndarray  # (days,)
    events: list[tuple[int, int]]  # event windows, unix s
    true_reduction_wh: np.ndarray  # (N, E) int64: sum over each event of counterfactual - metered
    counterfactual_event_wh: np.ndarray  # (N, E) int64: counterfactual energy over each event
    holidays: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.wh.shape[0])

    def day_start(self, k: int) -> int:
        """Unix time of local day ``k``'s midnight."""
        return self.day0 + k * SECONDS_PER_DAY

    def is_business_day(self, k: int) -> bool:
        """Monday to Friday and not a holiday."""
        date = _dt.datetime.fromtimestamp(self.day_start(k) + self.utc_offset_s, tz=_dt.timezone.utc).date()
        return date.weekday() < 5 and date.isoformat() not in self.holidays

    def readings(self, i: int, start: int | None = None, end: int | None = None) -> list[tuple[int, int, int]]:
        """Household ``i``'s readings ``(start, seconds, wh)`` as plain ints."""
        lo = 0 if start is None else int(np.searchsorted(self.starts, start))
        hi = self.starts.size if end is None else int(np.searchsorted(self.starts, end))
        s = self.interval_s
        return [(t, s, w) for t, w in zip(self.starts[lo:hi].tolist(), self.wh[i, lo:hi].tolist())]

    def true_delivered_watts(self, i: int, e: int) -> int:
        """The true average reduction of home ``i`` over event ``e`` (as reported on chain)."""
        a, b = self.events[e]
        cf = int(self.counterfactual_event_wh[i, e])
        return delivered_watts(cf, cf - int(self.true_reduction_wh[i, e]), b - a)

    def series(self, i: int) -> "Series":
        """Household ``i``'s readings as a :class:`demand_response.mv.Series` (fast path for baselines)."""
        from ..mv.baselines import Series

        return Series(self.interval_s, dict(zip(self.starts.tolist(), self.wh[i].tolist())))

    def meter_id(self, i: int, prefix: str = "home-") -> str:
        """The meter id used for home ``i`` in files and stores."""
        return f"{prefix}{i:05d}"

    def by_meter(self, homes: Iterable[int] | None = None, prefix: str = "home-") -> dict[str, list]:
        """``{meter_id: readings}`` for some (default all) homes."""
        idx = range(self.n) if homes is None else homes
        return {self.meter_id(i, prefix): self.readings(i) for i in idx}

    def write_csv(self, path: "str | Path", homes: Iterable[int] | None = None, prefix: str = "home-") -> None:
        """Write the homes' readings as the mv CSV (``meter_id,start,seconds,wh``), atomically."""
        from ..mv.io import write_csv

        write_csv(path, self.by_meter(homes, prefix))


def _rng(seed: int, *key: int | str) -> np.random.Generator:
    parts = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *parts])


def simulate_history(n: "int | Population", days: int, day0: int, *, seed: int = 0, interval_s: int = 900,
                     event_days: Sequence[int] = (), event_hours: tuple[float, float] = (17.0, 19.0),
                     utc_offset_hours: float = 0.0, mean_max_c: float = 31.0, weather_sd_c: float = 3.0,
                     weather_ar: float = 0.7, day_sd: float = 0.10, interval_sd: float = 0.30,
                     weekend_factor: float = 1.15, holidays: Sequence[str] = (), participation: float = 0.9,
                     hvac_day_sd: float = 0.15, ev_plug_p: float = 0.8,
                     rebound: float = 0.5, rebound_h: float = 2.0, **population: Any) -> History:
    """Simulate ``days`` days of interval data for ``n`` homes (or a given population).

    ``day0`` is any time on the first day; the history starts at its local midnight.
    ``event_days`` are day indices (0-based) with an event over ``event_hours`` local.
    """
    if interval_s not in (900, 1200, 1800, 3600):
        raise ValueError("interval_s must be 900, 1200, 1800 or 3600")
    if days < 1:
        raise ValueError("days must be >= 1")
    pop = n if isinstance(n, Population) else make_population(int(n), seed, **population)
    off = int(round(utc_offset_hours * 3600))
    d0 = int(day0) - (int(day0) + off) % SECONDS_PER_DAY
    per_day = SECONDS_PER_DAY // interval_s
    starts = d0 + interval_s * np.arange(days * per_day, dtype=np.int64)
    wrng = _rng(seed, "weather")
    anomaly = np.empty(days)
    a = 0.0
    for k in range(days):
        a = weather_ar * a + np.sqrt(1 - weather_ar**2) * weather_sd_c * wrng.standard_normal()
        anomaly[k] = a
    tmax = mean_max_c + anomaly
    hol = sorted(set(holidays))
    ev_set = sorted({int(k) for k in event_days if 0 <= int(k) < days})
    e_lo, e_hi = (int(round(h * 3600)) for h in event_hours)
    if not 0 <= e_lo < e_hi <= SECONDS_PER_DAY or e_lo % interval_s or e_hi % interval_s:
        raise ValueError("event_hours must lie within a day and on interval boundaries")
    wh = np.empty((pop.n, starts.size), dtype=np.int32)
    events: list[tuple[int, int]] = []
    red_cols: list[np.ndarray] = []
    cf_cols: list[np.ndarray] = []
    rb_n = int(round(rebound_h * 3600)) // interval_s
    for k in range(days):
        ds = d0 + k * SECONDS_PER_DAY
        date = _dt.datetime.fromtimestamp(ds + off, tz=_dt.timezone.utc).date()
        business = date.weekday() < 5 and date.isoformat() not in hol
        req = Request(ds + e_lo, ds + e_hi, outdoor_max_c=float(tmax[k]), utc_offset_hours=utc_offset_hours)
        mids = starts[k * per_day:(k + 1) * per_day] + interval_s / 2.0
        comp = baseline_components(pop, req, mids)
        r = _rng(seed, "behaviour", k)
        factor = np.exp(day_sd * r.standard_normal((pop.n, 1)) + interval_sd * r.standard_normal((pop.n, per_day))
                        - 0.5 * (day_sd**2 + interval_sd**2))
        flexible_base = comp["base"] * factor * (1.0 if business else weekend_factor)
        hvac = comp["hvac"] * np.exp(hvac_day_sd * r.standard_normal((pop.n, 1)) - 0.5 * hvac_day_sd**2)
        plugged = r.random((pop.n, 1)) < ev_plug_p
        net_w = flexible_base + hvac + comp["water_heater"] + comp["ev"] * plugged - comp["pv"]
        cf = np.rint(net_w * (interval_s / 3600.0)).astype(np.int64)
        day_wh = cf.copy()
        if k in ev_set:
            flex = device_flexibility(pop, req)
            shed_w = participation * (flex.hvac_w + flex.wh_w + flex.ev_w * plugged[:, 0] + flex.bat_w)
            lo, hi = e_lo // interval_s, e_hi // interval_s
            want = np.rint(shed_w * (interval_s / 3600.0)).astype(np.int64)[:, None]
            cut = np.minimum(want, np.maximum(cf[:, lo:hi], 0))
            day_wh[:, lo:hi] -= cut
            shed = cut.sum(axis=1)
            if rebound > 0 and rb_n > 0:
                back = np.rint(rebound * shed / rb_n).astype(np.int64)[:, None]
                end = min(hi + rb_n, per_day)
                day_wh[:, hi:end] += back
            events.append((ds + e_lo, ds + e_hi))
            red_cols.append(shed)
            cf_cols.append(cf[:, lo:hi].sum(axis=1))
        wh[:, k * per_day:(k + 1) * per_day] = day_wh
    zeros = np.zeros((pop.n, 0), dtype=np.int64)
    return History(seed=int(seed), interval_s=interval_s, day0=d0, days=days, utc_offset_s=off, starts=starts, wh=wh,
                   outdoor_max_c=tmax, events=events,
                   true_reduction_wh=np.stack(red_cols, axis=1) if red_cols else zeros,
                   counterfactual_event_wh=np.stack(cf_cols, axis=1) if cf_cols else zeros, holidays=hol)
