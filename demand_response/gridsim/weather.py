"""Requests, time-of-day helpers, weather shapes and money conversion.

Everything here is pure numpy (or pure Python) and has no side effects.

Conventions used throughout :mod:`demand_response.gridsim`:

* power in watts (bids: integer watts),
* prices in wei per kWh (integers) at the public API, US dollars per kWh inside
  the models,
* times as unix seconds; local time of day is ``(t + utc_offset_hours*3600) mod 86400``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

#: Default fiat/ETH conversion used to turn $/kWh into wei/kWh.
DEFAULT_USD_PER_ETH = 3000.0
WEI_PER_ETH = 10**18
SECONDS_PER_DAY = 86400

# Non-flexible (plug, lighting, cooking...) residential load, relative hourly
# shape, hour h means [h, h+1) local time.  Typical double-peaked residential
# profile (morning and evening peaks); normalised to mean 1 below.
_BASE_SHAPE_24 = np.array(
    [0.55, 0.48, 0.45, 0.44, 0.45, 0.52, 0.75, 0.95, 0.90, 0.80, 0.75, 0.75,
     0.78, 0.75, 0.75, 0.80, 0.95, 1.20, 1.45, 1.55, 1.45, 1.25, 0.95, 0.70]
)
_BASE_SHAPE_24 = _BASE_SHAPE_24 / _BASE_SHAPE_24.mean()

# Domestic hot water draw, fraction of the daily volume drawn in each local hour
# (morning and evening peaks, after the shape of the NREL Building America
# House Simulation Protocols hot-water schedule).  Normalised to sum 1 below.
_DHW_SHAPE_24 = np.array(
    [0.011, 0.005, 0.003, 0.005, 0.014, 0.052, 0.084, 0.083, 0.075, 0.062, 0.052, 0.045,
     0.037, 0.033, 0.029, 0.031, 0.039, 0.053, 0.066, 0.069, 0.066, 0.058, 0.045, 0.028]
)
_DHW_SHAPE_24 = _DHW_SHAPE_24 / _DHW_SHAPE_24.sum()


def usd_to_wei(usd_per_kwh: Any, usd_per_eth: float = DEFAULT_USD_PER_ETH) -> Any:
    """Convert a price in $/kWh to integer wei/kWh.

    ``wei = round(usd_per_kwh / usd_per_eth * 1e18)``.  Works on scalars (returns
    ``int``) and numpy arrays (returns ``int64``; fine up to ~9e18 wei, i.e.
    ~27,000 $/kWh at 3000 $/ETH).
    """
    if usd_per_eth <= 0:
        raise ValueError("usd_per_eth must be > 0")
    if np.isscalar(usd_per_kwh):
        return int(round(float(usd_per_kwh) / usd_per_eth * WEI_PER_ETH))
    return np.rint(np.asarray(usd_per_kwh, dtype=float) * (WEI_PER_ETH / usd_per_eth)).astype(np.int64)


def wei_to_usd(wei_per_kwh: Any, usd_per_eth: float = DEFAULT_USD_PER_ETH) -> Any:
    """Inverse of :func:`usd_to_wei` (float $/kWh)."""
    return np.asarray(wei_per_kwh, dtype=float) * (usd_per_eth / WEI_PER_ETH)


@dataclass(frozen=True)
class Request:
    """A demand-reduction request as seen by gridsim.

    Attributes:
        event_start: start of the event window, unix seconds (inclusive).
        event_end: end of the event window, unix seconds (exclusive).
        target_watts: requested total reduction (informational for bids).
        max_price_wei_per_kwh: price cap; bid steps above it are dropped.
        outdoor_max_c: daily maximum outdoor dry-bulb temperature, deg C.
        outdoor_min_c: daily minimum; defaults to ``outdoor_max_c - 10``.
        utc_offset_hours: local time = UTC + offset (assume UTC when 0).
        peak_irradiance_w_m2: clear-sky global horizontal irradiance at solar noon.
        sunrise_h, sunset_h: local solar day (irradiance is zero outside).
    """

    event_start: int
    event_end: int
    target_watts: int | None = None
    max_price_wei_per_kwh: int | None = None
    outdoor_max_c: float = 33.0
    outdoor_min_c: float | None = None
    utc_offset_hours: float = 0.0
    peak_irradiance_w_m2: float = 900.0
    sunrise_h: float = 6.0
    sunset_h: float = 20.0

    def __post_init__(self) -> None:
        if int(self.event_end) <= int(self.event_start):
            raise ValueError("event_end must be after event_start")
        if self.max_price_wei_per_kwh is not None and self.max_price_wei_per_kwh <= 0:
            raise ValueError("max_price_wei_per_kwh must be positive")
        if not (0.0 <= self.sunrise_h < self.sunset_h <= 24.0):
            raise ValueError("need 0 <= sunrise_h < sunset_h <= 24")

    @property
    def duration_s(self) -> int:
        """Length of the event window in seconds."""
        return int(self.event_end) - int(self.event_start)

    @property
    def t_min_c(self) -> float:
        """Daily minimum outdoor temperature actually used."""
        return self.outdoor_max_c - 10.0 if self.outdoor_min_c is None else float(self.outdoor_min_c)

    def local_hour(self, t: Any) -> Any:
        """Local clock hour in [0, 24) of unix time(s) ``t``."""
        return local_hour(t, self.utc_offset_hours)

    def with_window(self, event_start: int, event_end: int) -> "Request":
        """Copy of the request with another event window."""
        return replace(self, event_start=int(event_start), event_end=int(event_end))


_REQUEST_ALIASES = {
    "start": "event_start", "eventStart": "event_start",
    "end": "event_end", "eventEnd": "event_end",
    "target": "target_watts", "targetWatts": "target_watts", "target_w": "target_watts",
    "max_price": "max_price_wei_per_kwh", "maxPrice": "max_price_wei_per_kwh",
    "price_cap": "max_price_wei_per_kwh", "priceCap": "max_price_wei_per_kwh",
    "maxPriceWeiPerKwh": "max_price_wei_per_kwh",
}


def as_request(request: "Request | Mapping[str, Any]", **overrides: Any) -> Request:
    """Coerce a :class:`Request` or a mapping (e.g. decoded contract event) to a Request.

    Mapping keys may use the field names or the aliases ``start``/``end``,
    ``eventStart``/``eventEnd``, ``target``/``targetWatts``, ``max_price``/``maxPrice``/
    ``price_cap``.  Unknown keys are ignored.  ``overrides`` (non-None values) win.
    """
    if isinstance(request, Request):
        req = request
    else:
        fields = set(Request.__dataclass_fields__)
        kw: dict[str, Any] = {}
        for key, value in dict(request).items():
            name = _REQUEST_ALIASES.get(key, key)
            if name in fields and value is not None:
                kw[name] = value
        for name in ("event_start", "event_end", "target_watts", "max_price_wei_per_kwh"):
            if name in kw:
                kw[name] = int(kw[name])
        req = Request(**kw)
    clean = {k: v for k, v in overrides.items() if v is not None}
    return replace(req, **clean) if clean else req


def local_hour(t: Any, utc_offset_hours: float = 0.0) -> Any:
    """Local clock hour in [0, 24) for unix time(s) ``t``."""
    return ((np.asarray(t, dtype=float) + utc_offset_hours * 3600.0) % SECONDS_PER_DAY) / 3600.0


def local_midnight(t: int, utc_offset_hours: float = 0.0) -> int:
    """Unix time of the local midnight starting the day that contains ``t``."""
    off = int(round(utc_offset_hours * 3600))
    return int(t) - ((int(t) + off) % SECONDS_PER_DAY)


def _hourly_interp(shape24: np.ndarray, hour: Any) -> np.ndarray:
    """Periodic linear interpolation of an hourly table (value h at h+0.5)."""
    h = np.asarray(hour, dtype=float)
    xp = np.arange(-0.5, 25.0, 1.0)  # 26 knots covering the wrap-around
    fp = np.concatenate([shape24[-1:], shape24, shape24[:1]])
    return np.interp(h % 24.0, xp, fp)


def base_load_shape(hour: Any) -> np.ndarray:
    """Relative non-flexible load at local hour(s) (daily mean 1)."""
    return _hourly_interp(_BASE_SHAPE_24, hour)


def dhw_draw_fraction_per_hour(hour: Any) -> np.ndarray:
    """Fraction of the daily hot-water volume drawn per hour at local hour(s)."""
    return _hourly_interp(_DHW_SHAPE_24, hour)


def outdoor_temperature(request: Request, t: Any) -> np.ndarray:
    """Outdoor temperature (deg C) at unix time(s) ``t``.

    Cosine diurnal cycle between ``t_min_c`` (03:00 local) and ``outdoor_max_c``
    (15:00 local).
    """
    h = request.local_hour(t)
    tmax, tmin = request.outdoor_max_c, request.t_min_c
    return tmin + (tmax - tmin) * 0.5 * (1.0 + np.cos(2.0 * np.pi * (h - 15.0) / 24.0))


def irradiance(request: Request, t: Any) -> np.ndarray:
    """Clear-sky global horizontal irradiance (W/m2): a half-sine over the solar day."""
    h = request.local_hour(t)
    x = (h - request.sunrise_h) / (request.sunset_h - request.sunrise_h)
    s = np.where((x > 0.0) & (x < 1.0), np.sin(np.pi * np.clip(x, 0.0, 1.0)), 0.0)
    return request.peak_irradiance_w_m2 * s


def time_grid(start: int, end: int, dt_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Uniform grid over [start, end): returns (step_starts, step_midpoints, dt).

    The number of steps is ``ceil((end-start)/dt_s)`` and the step is shrunk so
    that the steps exactly tile the window.
    """
    dur = float(end - start)
    n = max(1, int(np.ceil(dur / float(dt_s) - 1e-9)))
    dt = dur / n
    starts = start + dt * np.arange(n)
    return starts, starts + 0.5 * dt, dt
