#!/usr/bin/env python3
"""Benchmark gridsim bid generation (and optionally the feeder power flow).

Usage::

    python bench/bench_gridsim.py [--out bench/gridsim.json] [--repeat 7] [--feeder]

Times, for 1k / 10k / 100k households, the vectorised bid generation
(``fleet_bids``: flexibility + slicing + pricing + sorting) as the median of
``--repeat`` runs, plus population creation and conversion to Python lists.
Prints a short table and, with ``--out``, writes the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from demand_response.gridsim import Request, fleet_bids, make_population  # noqa: E402

EVENT_START = 1752598800  # 2025-07-15 17:00 UTC
REQUEST = Request(EVENT_START, EVENT_START + 7200, outdoor_max_c=35.0)


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_bids(sizes: list[int], repeat: int, seed: int) -> list[dict]:
    rows = []
    for n in sizes:
        t_pop = _median_time(lambda: make_population(n, seed), repeat)
        pop = make_population(n, seed)
        fleet_bids(pop, REQUEST)  # warm-up
        t_bids = _median_time(lambda: fleet_bids(pop, REQUEST), repeat)
        bids = fleet_bids(pop, REQUEST)
        t_lists = _median_time(bids.to_lists, max(1, repeat // 2))
        rows.append({
            "households": n,
            "repeat": repeat,
            "population_s": round(t_pop, 5),
            "bids_s": round(t_bids, 5),
            "to_lists_s": round(t_lists, 5),
            "households_per_s": round(n / t_bids),
            "end_to_end_s": round(t_pop + t_bids + t_lists, 5),
            "steps": int(bids.n_steps.sum()),
            "offered_mw": round(float(bids.watts.sum()) / 1e6, 3),
        })
    return rows


def bench_feeder(seed: int) -> dict:
    from demand_response.gridsim import feeder_day

    day = 1752537600
    feeder_day(day, seed=seed)  # warm-up (pandapower import, network build)
    t = time.perf_counter()
    res = feeder_day(day, seed=seed)
    return {"network": res.network, "steps": int(res.times.size), "houses": int(res.house_w.shape[0]),
            "day_s": round(time.perf_counter() - t, 3), "peak_loading_pct": round(res.peak_loading_pct, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write results as JSON to this path")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--feeder", action="store_true", help="also time a 96-step pandapower day")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = bench_bids(sizes, args.repeat, args.seed)
    result = {
        "benchmark": "gridsim.fleet_bids",
        "request": {"event_start": REQUEST.event_start, "event_end": REQUEST.event_end,
                    "outdoor_max_c": REQUEST.outdoor_max_c},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": rows,
    }
    if args.feeder:
        result["feeder"] = bench_feeder(args.seed)
    print(f"{'households':>10} {'bids median s':>14} {'households/s':>14} {'population s':>13} {'to_lists s':>11}")
    for r in rows:
        print(f"{r['households']:>10} {r['bids_s']:>14.4f} {r['households_per_s']:>14,} "
              f"{r['population_s']:>13.4f} {r['to_lists_s']:>11.4f}")
    if "feeder" in result:
        f = result["feeder"]
        print(f"feeder {f['network']}: {f['steps']} power flows for {f['houses']} houses in {f['day_s']} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
