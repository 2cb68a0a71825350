"""Customer baselines from interval data, in exact integer arithmetic (no numpy).

Three day-matching methods, each a function returning a :class:`BaselineResult`:

* :func:`caiso_x_of_y` (``caiso-10in10``): per interval, the average of the ``days`` (10)
  most recent eligible similar days within ``lookback_days`` (45), times a day-of ratio:
  the event day's actual load over the baseline's in the adjustment window (by default
  the three hours ending one hour before the event), capped to ``1 ± cap_pct/100`` (20 %).
  Weekend and holiday events use 4 of 4 weekend/holiday days.
* :func:`pjm_high_x_of_y` (``pjm-high4of5``): of the ``pool`` (5) most recent eligible
  similar days (low-usage days replaced), the ``days`` (4) with the highest event-window
  usage; plus a symmetric additive adjustment: the average per-interval difference between
  actual and baseline in the same adjustment window. Weekends: high 2 of 3.
* :func:`meter_before_after` (``meter-before-after``): the average load of the hour before
  the event, held flat through it.

Eligibility (the same for both day-matching methods; docs/mv.md): a candidate day is a
local day strictly before the event day, of the same kind (business day, or weekend/
holiday), inside the lookback, with every reading present, and not touched by any
``excluded`` window (past events of this meter, outages). Everything is rounded once, at
the end, half up: ``baseline = floor(exact + 1/2)`` Wh per interval.

Delivered reduction = sum over event intervals of (baseline - metered), converted to
average watts by :func:`demand_response.market.delivered_watts`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..market import delivered_watts as _delivered_watts
from .readings import INTERVALS_S, MeterDataError

DAY = 86400
HOUR = 3600


class InsufficientHistory(MeterDataError):
    """Too few eligible days (or readings) before the event for the method asked for."""


@dataclass(frozen=True)
class Series:
    """One meter's readings as ``{start: wh}`` with one interval length (built once, reused)."""

    interval_s: int
    wh: Mapping[int, int]

    @classmethod
    def of(cls, readings: "Series | Iterable[Sequence[int]]") -> "Series":
        """A Series from readings ``(start, seconds, wh)`` (or the Series itself)."""
        if isinstance(readings, Series):
            return readings
        wh: dict[int, int] = {}
        interval = None
        for start, seconds, value in readings:
            if interval is None:
                interval = seconds
            elif seconds != interval:
                raise MeterDataError(f"mixed interval lengths ({interval} s and {seconds} s) in one meter's data")
            wh[start] = value
        if interval is None:
            raise InsufficientHistory("no readings for this meter; import its interval data first")
        if interval not in INTERVALS_S:
            raise MeterDataError(f"interval length {interval} s is not one of {INTERVALS_S}")
        return cls(interval, wh)


@dataclass(frozen=True)
class BaselineResult:
    """A baseline over an event and what it says was delivered (energies in Wh)."""

    method: str
    params: dict[str, Any]
    event_start: int
    event_end: int
    interval_s: int
    starts: tuple[int, ...]
    baseline_wh: tuple[int, ...]
    metered_wh: tuple[int, ...]
    days_used: tuple[str, ...]  # local ISO dates of the days averaged (day matching)
    adjustment: str  # what the day-of adjustment did, for people
    data_start: int  # the readings read lie in [data_start, data_end)
    data_end: int
    notes: tuple[str, ...] = field(default=())

    @property
    def baseline_total_wh(self) -> int:
        return sum(self.baseline_wh)

    @property
    def metered_total_wh(self) -> int:
        return sum(self.metered_wh)

    @property
    def reduction_wh(self) -> int:
        """Sum over event intervals of baseline - metered (negative: consumed more)."""
        return self.baseline_total_wh - self.metered_total_wh

    @property
    def delivered_watts(self) -> int:
        """Average delivered W over the event, as reported on chain (never negative)."""
        return _delivered_watts(self.baseline_total_wh, self.metered_total_wh, self.event_end - self.event_start)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for people and reports."""
        return {"method": self.method, "params": self.params, "event_start": self.event_start,
                "event_end": self.event_end, "interval_s": self.interval_s,
                "baseline_wh": self.baseline_total_wh, "metered_wh": self.metered_total_wh,
                "reduction_wh": self.reduction_wh, "delivered_watts": self.delivered_watts,
                "days_used": list(self.days_used), "adjustment": self.adjustment,
                "intervals": [{"start": s, "baseline_wh": b, "metered_wh": m}
                              for s, b, m in zip(self.starts, self.baseline_wh, self.metered_wh)]}


# -- shared rules ---------------------------------------------------------------------------


def _round_div(a: int, b: int) -> int:
    """``a / b`` rounded half up (``b > 0``), exactly."""
    return (2 * a + b) // (2 * b)


def day_start(t: int, utc_offset_s: int = 0) -> int:
    """Unix time of the local midnight that starts the day containing ``t``."""
    return t - (t + utc_offset_s) % DAY


def iso_date(day: int, utc_offset_s: int = 0) -> str:
    """Local ISO date of a day start."""
    return _dt.datetime.fromtimestamp(day + utc_offset_s, tz=_dt.timezone.utc).date().isoformat()


def is_business_day(day: int, utc_offset_s: int, holidays: frozenset[str]) -> bool:
    """Monday to Friday and not a listed holiday (local dates)."""
    weekday = ((day + utc_offset_s) // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return weekday < 5 and iso_date(day, utc_offset_s) not in holidays


def _check_event(series: Series, event_start: int, event_end: int) -> None:
    step = series.interval_s
    if not (isinstance(event_start, int) and isinstance(event_end, int)) or event_end <= event_start:
        raise MeterDataError(f"event window {event_start!r}..{event_end!r} is not unix seconds start < end")
    if event_start % step or event_end % step:
        raise MeterDataError(f"event window {event_start}..{event_end} does not fall on the meter's {step} s "
                             "intervals; settle on interval boundaries")


def _event_metered(series: Series, event_start: int, event_end: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    starts = tuple(range(event_start, event_end, series.interval_s))
    missing = [t for t in starts if t not in series.wh]
    if missing:
        raise InsufficientHistory(f"no readings for {len(missing)} of the {len(starts)} event intervals "
                                  f"(first missing at {missing[0]}); import the event's interval data")
    return starts, tuple(series.wh[t] for t in starts)


def _window_actual(series: Series, lo: int, hi: int, what: str) -> tuple[list[int], int]:
    starts = list(range(lo, hi, series.interval_s))
    missing = [t for t in starts if t not in series.wh]
    if missing:
        raise InsufficientHistory(f"no readings in the {what} {lo}..{hi} (first missing at {missing[0]}); "
                                  "import them or choose another method")
    return starts, sum(series.wh[t] for t in starts)


@dataclass(frozen=True)
class _Eligibility:
    utc_offset_s: int
    holidays: frozenset[str]
    excluded: tuple[tuple[int, int], ...]
    lookback_days: int

    def candidates(self, series: Series, event_start: int, offsets: Sequence[int]) -> Iterable[int]:
        """Eligible similar days, newest first, that have readings at every ``offsets``."""
        event_day = day_start(event_start, self.utc_offset_s)
        business = is_business_day(event_day, self.utc_offset_s, self.holidays)
        per_day = range(0, DAY, series.interval_s)
        for k in range(1, self.lookback_days + 1):
            d = event_day - k * DAY
            if is_business_day(d, self.utc_offset_s, self.holidays) != business:
                continue
            if any(lo < d + DAY and hi > d for lo, hi in self.excluded):
                continue
            wh = series.wh
            if any(d + o not in wh for o in per_day) or any(d + o not in wh for o in offsets):
                continue
            yield d


def _eligibility(utc_offset_s: int, holidays: Iterable[str], excluded: Iterable[Sequence[int]],
                 lookback_days: int) -> tuple[_Eligibility, dict[str, Any]]:
    hol = sorted({str(h) for h in holidays})
    for h in hol:
        try:
            _dt.date.fromisoformat(h)
        except ValueError:
            raise MeterDataError(f"holiday {h!r} is not an ISO date (YYYY-MM-DD)") from None
    exc = sorted((int(a), int(b)) for a, b in excluded)
    if not isinstance(utc_offset_s, int) or abs(utc_offset_s) > 14 * HOUR:
        raise MeterDataError(f"utc offset {utc_offset_s!r} s is not a whole number of seconds within ±14 h")
    params = {"utc_offset_s": utc_offset_s, "holidays": hol, "excluded": [list(w) for w in exc],
              "lookback_days": lookback_days}
    return _Eligibility(utc_offset_s, frozenset(hol), tuple(exc), lookback_days), params


def _adjustment_window(event_start: int, adj_start_h: int, adj_end_h: int) -> tuple[int, int]:
    if not 0 <= adj_end_h < adj_start_h <= 24:
        raise MeterDataError("adjustment window must be hours before the event with start > end >= 0 "
                             f"(got {adj_start_h}..{adj_end_h})")
    return event_start - adj_start_h * HOUR, event_start - adj_end_h * HOUR


# -- methods --------------------------------------------------------------------------------


def caiso_x_of_y(readings: "Series | Iterable[Sequence[int]]", event_start: int, event_end: int, *,
                 days: int = 10, weekend_days: int = 4, min_days: int | None = None, lookback_days: int = 45,
                 cap_pct: int = 20, adj_start_h: int = 4, adj_end_h: int = 1, utc_offset_s: int = 0,
                 holidays: Iterable[str] = (), excluded: Iterable[Sequence[int]] = ()) -> BaselineResult:
    """CAISO-style X-of-Y baseline (10 in 10; 4 in 4 on weekends/holidays), capped day-of ratio.

    ``min_days`` (default: all of them) is the fewest eligible days accepted; fewer raises
    :class:`InsufficientHistory`. ``cap_pct`` bounds the ratio to ``[1 - c, 1 + c]``.
    """
    series = Series.of(readings)
    _check_event(series, event_start, event_end)
    starts, metered = _event_metered(series, event_start, event_end)
    elig, eparams = _eligibility(utc_offset_s, holidays, excluded, lookback_days)
    adj_lo, adj_hi = _adjustment_window(event_start, adj_start_h, adj_end_h)
    adj_starts, actual_adj = _window_actual(series, adj_lo, adj_hi, "adjustment window")
    event_day = day_start(event_start, utc_offset_s)
    business = is_business_day(event_day, utc_offset_s, elig.holidays)
    want = days if business else weekend_days
    need = want if min_days is None else min(min_days, want)
    offsets = [t - event_day for t in (*starts, *adj_starts)]
    chosen: list[int] = []
    for d in elig.candidates(series, event_start, offsets):
        chosen.append(d)
        if len(chosen) == want:
            break
    if len(chosen) < need:
        raise InsufficientHistory(
            f"only {len(chosen)} eligible {'business' if business else 'weekend/holiday'} day(s) in the "
            f"{lookback_days} days before {iso_date(event_day, utc_offset_s)}; caiso-10in10 needs {need}: "
            "import more history, or use meter-before-after")
    n = len(chosen)
    sums = {o: sum(series.wh[d + o] for d in chosen) for o in offsets}
    sw = sum(sums[t - event_day] for t in adj_starts)  # n x baseline energy in the window
    lo, hi = 100 - cap_pct, 100 + cap_pct
    if sw <= 0:
        num, den, how = 1, 1, "none (baseline adjustment window is not positive)"
    elif actual_adj * n * 100 > sw * hi:
        num, den, how = hi, 100, f"ratio capped at {hi / 100:.2f}"
    elif actual_adj * n * 100 < sw * lo:
        num, den, how = lo, 100, f"ratio capped at {lo / 100:.2f}"
    else:
        num, den = actual_adj * n, sw
        how = f"ratio {actual_adj * n}/{sw} = {num / den:.4f}"
    baseline = tuple(_round_div(sums[t - event_day] * num, n * den) for t in starts)
    params = {"days": days, "weekend_days": weekend_days, "min_days": need if min_days is not None else None,
              "cap_pct": cap_pct, "adj_start_h": adj_start_h, "adj_end_h": adj_end_h, **eparams}
    first = min(min(chosen) + min(offsets), adj_lo)
    return BaselineResult("caiso-10in10", params, event_start, event_end, series.interval_s, starts, baseline,
                          metered, tuple(iso_date(d, utc_offset_s) for d in sorted(chosen)), how,
                          day_start(first, utc_offset_s), event_end)


def pjm_high_x_of_y(readings: "Series | Iterable[Sequence[int]]", event_start: int, event_end: int, *,
                    days: int = 4, pool: int = 5, weekend_days: int = 2, weekend_pool: int = 3,
                    low_usage_pct: int = 25, lookback_days: int = 45, adj_start_h: int = 4, adj_end_h: int = 1,
                    utc_offset_s: int = 0, holidays: Iterable[str] = (),
                    excluded: Iterable[Sequence[int]] = ()) -> BaselineResult:
    """PJM-style high X of Y (high 4 of 5; weekends high 2 of 3) with a symmetric additive adjustment.

    Of the ``pool`` most recent eligible days, a day whose event-window usage is below
    ``low_usage_pct`` % of the pool's average is replaced once by the next older eligible
    day; the ``days`` highest-usage days (ties: the more recent) are averaged. The additive
    adjustment is ``(actual - baseline)`` energy in the adjustment window divided by its
    interval count, added to every event interval.
    """
    series = Series.of(readings)
    _check_event(series, event_start, event_end)
    starts, metered = _event_metered(series, event_start, event_end)
    elig, eparams = _eligibility(utc_offset_s, holidays, excluded, lookback_days)
    adj_lo, adj_hi = _adjustment_window(event_start, adj_start_h, adj_end_h)
    adj_starts, actual_adj = _window_actual(series, adj_lo, adj_hi, "adjustment window")
    event_day = day_start(event_start, utc_offset_s)
    business = is_business_day(event_day, utc_offset_s, elig.holidays)
    want, size = (days, pool) if business else (weekend_days, weekend_pool)
    offsets = [t - event_day for t in (*starts, *adj_starts)]
    event_offsets = [t - event_day for t in starts]
    candidates = list(elig.candidates(series, event_start, offsets))
    usage = {d: sum(series.wh[d + o] for o in event_offsets) for d in candidates}
    picked = candidates[:size]
    notes: list[str] = []
    if len(picked) == size:
        total = sum(usage[d] for d in picked)
        low = [d for d in picked if usage[d] * size * 100 < total * low_usage_pct]
        spare = iter(candidates[size:])
        for d in low:
            nxt = next(spare, None)
            if nxt is None:
                break
            picked[picked.index(d)] = nxt
            notes.append(f"low-usage day {iso_date(d, utc_offset_s)} replaced by {iso_date(nxt, utc_offset_s)}")
    if len(picked) < size:
        raise InsufficientHistory(
            f"only {len(picked)} eligible {'business' if business else 'weekend/holiday'} day(s) in the "
            f"{lookback_days} days before {iso_date(event_day, utc_offset_s)}; pjm-high4of5 needs {size}: "
            "import more history, or use meter-before-after")
    chosen = sorted(picked, key=lambda d: (-usage[d], -d))[:want]
    n = len(chosen)
    sums = {o: sum(series.wh[d + o] for d in chosen) for o in offsets}
    sw = sum(sums[t - event_day] for t in adj_starts)
    count = len(adj_starts)
    shift_num = actual_adj * n - sw  # n x (actual - baseline) energy over the window
    baseline = tuple(_round_div(sums[t - event_day] * count + shift_num, n * count) for t in starts)
    how = f"{'+' if shift_num >= 0 else ''}{shift_num / (n * count):.2f} Wh per interval (additive)"
    params = {"days": days, "pool": pool, "weekend_days": weekend_days, "weekend_pool": weekend_pool,
              "low_usage_pct": low_usage_pct, "adj_start_h": adj_start_h, "adj_end_h": adj_end_h, **eparams}
    first = min(min(picked) + min(offsets), adj_lo)
    return BaselineResult("pjm-high4of5", params, event_start, event_end, series.interval_s, starts, baseline,
                          metered, tuple(iso_date(d, utc_offset_s) for d in sorted(chosen)), how,
                          day_start(first, utc_offset_s), event_end, tuple(notes))


def meter_before_after(readings: "Series | Iterable[Sequence[int]]", event_start: int, event_end: int, *,
                       before_s: int = HOUR, utc_offset_s: int = 0, excluded: Iterable[Sequence[int]] = (),
                       **_ignored: Any) -> BaselineResult:
    """Meter before / meter after: the average load over ``before_s`` before the event, held flat.

    The window must have readings and must not overlap an ``excluded`` window (outage).
    """
    series = Series.of(readings)
    _check_event(series, event_start, event_end)
    if not isinstance(before_s, int) or before_s <= 0 or before_s % series.interval_s:
        raise MeterDataError(f"before_s {before_s!r} must be a positive multiple of the {series.interval_s} s interval")
    starts, metered = _event_metered(series, event_start, event_end)
    lo = event_start - before_s
    exc = sorted((int(a), int(b)) for a, b in excluded)
    if any(a < event_start and b > lo for a, b in exc):
        raise InsufficientHistory(f"the hour before the event ({lo}..{event_start}) overlaps an excluded window "
                                  "(outage or earlier event); use a day-matching method")
    window, total = _window_actual(series, lo, event_start, "meter-before window")
    per = _round_div(total, len(window))
    params = {"before_s": before_s, "utc_offset_s": utc_offset_s, "excluded": [list(w) for w in exc]}
    return BaselineResult("meter-before-after", params, event_start, event_end, series.interval_s, starts,
                          tuple(per for _ in starts), metered, (), f"flat at {per} Wh per interval", lo, event_end)


#: The methods by published name.
METHODS: dict[str, Callable[..., BaselineResult]] = {
    "caiso-10in10": caiso_x_of_y,
    "pjm-high4of5": pjm_high_x_of_y,
    "meter-before-after": meter_before_after,
}


def compute(method: str, readings: "Series | Iterable[Sequence[int]]", event_start: int, event_end: int,
            **params: Any) -> BaselineResult:
    """Run a method by its published name (``METHODS``); unknown names get one clear line."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise MeterDataError(f"unknown baseline method {method!r}; choose one of {', '.join(METHODS)}") from None
    try:
        return fn(readings, event_start, event_end, **params)
    except TypeError as exc:
        raise MeterDataError(f"bad parameters for {method}: {exc}") from None


def sum_results(results: Sequence[BaselineResult]) -> tuple[int, int, int]:
    """A portfolio's ``(baseline_wh, metered_wh, delivered_watts)``: summed over homes, then converted."""
    if not results:
        raise MeterDataError("an empty portfolio has no delivery")
    duration = results[0].event_end - results[0].event_start
    base = sum(r.baseline_total_wh for r in results)
    met = sum(r.metered_total_wh for r in results)
    return base, met, _delivered_watts(base, met, duration)
