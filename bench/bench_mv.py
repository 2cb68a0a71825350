#!/usr/bin/env python3
"""Baseline accuracy on placebo event days, single homes and portfolios, plus baseline speed.

    python bench/bench_mv.py [--out bench/.work/mv.json] [--homes 1000] [--timing-meters 10000]

A gridsim history (15-min intervals, weather, weekends, two real events) for ``--homes``
homes. On each placebo day (a recent business day with no event, 17:00-19:00) every
method's baseline is compared with what the meter recorded, so the true reduction is 0
and the whole difference is baseline error (the approach of CAISO's baseline accuracy
assessment). Reported per method, for single homes and for disjoint portfolios of 10, 100
and 1,000 homes (errors summed over the portfolio first):

* bias % = mean error / mean actual load x 100 (positive: the baseline over-pays),
* precision = relative RMSE % = sqrt(mean error^2) / mean actual x 100,
* single homes also the median absolute % error.

It also compares each method's portfolio estimate with the known true reduction of the
last real event, and times baselining ``--timing-meters`` meters for one event.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from demand_response.gridsim.history import simulate_history  # noqa: E402
from demand_response.mv import METHODS, compute  # noqa: E402

DAY0 = 1752451200 - 45 * 86400  # 46 days ending Monday 2025-07-14
DAYS = 46
EVENT_DAYS = (24, 31)  # real events (excluded from everyone's baselines)
PARAMS = {"caiso-10in10": {"min_days": 5}, "pjm-high4of5": {}, "meter-before-after": {}}
SIZES = (1, 10, 100, 1000)


def _stats(errors: list[int], actuals: list[int]) -> dict:
    mean_actual = statistics.fmean(actuals)
    bias = statistics.fmean(errors) / mean_actual * 100
    rrmse = math.sqrt(statistics.fmean(e * e for e in errors)) / mean_actual * 100
    return {"n": len(errors), "bias_pct": round(bias, 2), "rel_rmse_pct": round(rrmse, 2)}


def accuracy(homes: int, seed: int, log=print) -> dict:
    hist = simulate_history(homes, DAYS, DAY0, seed=seed, event_days=EVENT_DAYS)
    events = hist.events
    placebo = [k for k in range(DAYS - 16, DAYS) if hist.is_business_day(k) and k not in EVENT_DAYS]
    series = [hist.series(i) for i in range(homes)]
    out: dict = {"homes": homes, "days": DAYS, "interval_s": hist.interval_s, "placebo_days": len(placebo),
                 "window": "17:00-19:00 UTC", "methods": {}}
    for method in METHODS:
        t0 = time.perf_counter()
        err = [[0] * len(placebo) for _ in range(homes)]
        act = [[0] * len(placebo) for _ in range(homes)]
        skipped = 0
        for j, k in enumerate(placebo):
            start = hist.day_start(k) + 17 * 3600
            for i in range(homes):
                try:
                    r = compute(method, series[i], start, start + 7200, excluded=events, **PARAMS[method])
                except Exception:
                    skipped += 1
                    continue
                err[i][j] = r.baseline_total_wh - r.metered_total_wh
                act[i][j] = r.metered_total_wh
        row: dict = {"skipped": skipped}
        single_abs = [abs(err[i][j]) / act[i][j] * 100 for i in range(homes) for j in range(len(placebo))
                      if act[i][j] > 0]
        for size in SIZES:
            if size > homes:
                continue
            e, a = [], []
            for g in range(homes // size):
                members = range(g * size, (g + 1) * size)
                for j in range(len(placebo)):
                    e.append(sum(err[i][j] for i in members))
                    a.append(sum(act[i][j] for i in members))
            row[str(size)] = _stats(e, a)
        row["single_median_abs_pct"] = round(statistics.median(single_abs), 1) if single_abs else None
        # the last real event: portfolio estimate against the known true reduction
        ev_start, ev_end = events[-1]
        est = 0
        for i in range(homes):
            r = compute(method, series[i], ev_start, ev_end, excluded=events[:-1], **PARAMS[method])
            est += r.reduction_wh
        true = int(hist.true_reduction_wh[:, -1].sum())
        row["event"] = {"true_kwh": round(true / 1000, 1), "estimated_kwh": round(est / 1000, 1),
                        "error_pct": round((est - true) / true * 100, 1) if true else None}
        row["elapsed_s"] = round(time.perf_counter() - t0, 2)
        out["methods"][method] = row
        log(f"  mv: {method}: single home bias {row['1']['bias_pct']} % rRMSE {row['1']['rel_rmse_pct']} %; "
            f"{max(s for s in SIZES if s <= homes):,} homes rRMSE {row[str(max(s for s in SIZES if s <= homes))]['rel_rmse_pct']} %; "
            f"event {row['event']['estimated_kwh']} vs true {row['event']['true_kwh']} kWh")
    # one home's event figures, as the issue quotes them
    ev_start, ev_end = events[-1]
    i = max(range(min(homes, 50)), key=lambda h: int(hist.true_reduction_wh[h, -1]))
    out["one_home"] = {"household": i, "true_kwh": round(int(hist.true_reduction_wh[i, -1]) / 1000, 2),
                       **{m: round(compute(m, series[i], ev_start, ev_end, excluded=events[:-1],
                                           **PARAMS[m]).reduction_wh / 1000, 2) for m in METHODS}}
    return out


def timing(meters: int, seed: int, log=print) -> dict:
    t0 = time.perf_counter()
    hist = simulate_history(meters, DAYS, DAY0, seed=seed, event_days=EVENT_DAYS)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    series = [hist.series(i) for i in range(meters)]
    t_load = time.perf_counter() - t0
    ev_start, ev_end = hist.events[-1]
    per: dict = {}
    for method in METHODS:
        t0 = time.perf_counter()
        for s in series:
            compute(method, s, ev_start, ev_end, excluded=hist.events[:-1], **PARAMS[method])
        per[method] = round(time.perf_counter() - t0, 2)
        log(f"  mv: {meters:,} meters, {method}: {per[method]} s")
    return {"meters": meters, "simulate_s": round(t_sim, 2), "load_series_s": round(t_load, 2), "baseline_s": per}


def run(homes: int = 1000, timing_meters: int = 10_000, seed: int = 1, log=print) -> dict:
    """Both parts, JSON-ready (bench/run.py's ``mv`` section)."""
    return {"accuracy": accuracy(homes, seed, log), "timing": timing(timing_meters, seed + 1, log)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--homes", type=int, default=1000)
    ap.add_argument("--timing-meters", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    data = run(args.homes, args.timing_meters, args.seed)
    text = json.dumps(data, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
