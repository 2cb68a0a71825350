#!/usr/bin/env python3
"""`make bench`: run every benchmark in bench/, write bench/report.json, the plots
docs/img/perf-*.png and docs/performance.md (rendered from the JSON, never edited by hand).

    .venv/bin/python bench/run.py [--full] [--only gas,latency,throughput,footprint,gridsim,compile,economics,mv]
    .venv/bin/python bench/run.py --render-only      # re-render the doc and plots from report.json

The default run takes a few minutes; --full adds 100,000 bids, more rounds and the slower
ganache throughput run. With --only, the other sections of an existing report are kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, write_json  # noqa: E402

REPORT = ROOT / "bench" / "report.json"
WORK = ROOT / "bench" / ".work"
SECTIONS = ("calibration", "gas", "latency", "throughput", "footprint", "gridsim", "compile", "economics", "mv")


def log(msg: str) -> None:
    print(msg, flush=True)


# -- sections -------------------------------------------------------------------------------


def calibration(full: bool) -> dict:
    """Fixed workloads timed in this run, so readers can compare machines and loads."""
    import statistics

    import numpy as np

    def med(fn, n=5):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return round(statistics.median(ts), 4)

    rng = np.random.default_rng(0)
    data = rng.random(1_000_000)
    out = {"numpy_sort_1m_s": med(lambda: np.sort(data)),
           "python_loop_1m_s": med(lambda: sum(i * i for i in range(1_000_000)))}
    log(f"  calibration: numpy sort 1M {out['numpy_sort_1m_s']} s, python loop 1M {out['python_loop_1m_s']} s")
    return out


def gas(full: bool) -> dict:
    import bench_gas

    sizes = [10, 100, 1000, 10_000, 50_000] + ([100_000] if full else [])
    return bench_gas.run(sizes, "anvil", log)


def latency(full: bool) -> dict:
    import bench_reaction

    out = bench_reaction.run(bench_reaction.FULL_ROUNDS if full else bench_reaction.DEFAULT_ROUNDS, log=log)
    if full and (ROOT / "bench" / "bench_latency.py").exists():
        # The daemon author's own probe (getBids polling), run in this run too.
        target = WORK / "latency-probe.json"
        cmd = [sys.executable, str(ROOT / "bench" / "bench_latency.py"), "--consumers", "10", "--rounds", "3",
               "--out", str(target)]
        try:
            subprocess.run(cmd, check=True, timeout=900, capture_output=True)
            out["bench_latency_py"] = json.loads(target.read_text())
        except Exception as exc:  # it is someone else's script; report, do not fail
            out["bench_latency_py"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def throughput(full: bool) -> dict:
    import bench_throughput

    return bench_throughput.run(200, ("anvil", "ganache") if full else ("anvil",), log)


def footprint(full: bool) -> dict:
    import bench_footprint

    return bench_footprint.run(5 if full else 3, log)


def gridsim(full: bool) -> dict:
    target = WORK / "gridsim.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_gridsim.py"), "--out", str(target),
           "--repeat", "7" if full else "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_gridsim.py failed: {proc.stderr.strip()[-500:]}")
    data = json.loads(target.read_text())
    for row in data["results"]:
        log(f"  gridsim: {row['households']:>7,} households: bids in {row['bids_s']:.4f} s "
            f"({row['households_per_s']:,}/s), end to end {row['end_to_end_s']:.3f} s")
    return data


def compile_(full: bool) -> dict:
    import bench_compile

    return bench_compile.run(3 if full else 1, log)


def economics(full: bool) -> dict:
    import bench_economics

    return bench_economics.run(10_000 if full else 1_000, 100 if full else 40, log=log)


def mv(full: bool) -> dict:
    import bench_mv

    return bench_mv.run(1000, 10_000, log=log)


RUNNERS = {"calibration": calibration, "gas": gas, "latency": latency, "throughput": throughput,
           "footprint": footprint, "gridsim": gridsim, "compile": compile_, "economics": economics, "mv": mv}


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="larger sizes and more rounds (slower)")
    ap.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--render-only", action="store_true", help="only re-render plots and docs from report.json")
    ap.add_argument("--report", default=str(REPORT))
    args = ap.parse_args()
    report_path = Path(args.report)
    WORK.mkdir(parents=True, exist_ok=True)

    import render

    if args.render_only:
        report = json.loads(report_path.read_text())
        render.render_all(report, log)
        return 0

    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    report: dict = {}
    if args.only and report_path.exists():
        report = json.loads(report_path.read_text())
    report.setdefault("sections", {})
    t_all = time.perf_counter()
    run_info = {"machine": machine(), "mode": "full" if args.full else "default", "sections": chosen,
                "command": " ".join([Path(sys.executable).name, *sys.argv])}
    log(f"bench: {run_info['machine']['date']} on {run_info['machine']['host']} "
        f"({run_info['machine']['cpus']} cpu, load {run_info['machine']['load_average_at_start']}), "
        f"mode {run_info['mode']}")
    failed = []
    for name in chosen:
        log(f"[{name}] …")
        t0 = time.perf_counter()
        try:
            data = RUNNERS[name](args.full)
            data["elapsed_s"] = round(time.perf_counter() - t0, 1)
            data["measured_at"] = run_info["machine"]["date"]
            data["mode"] = run_info["mode"]
            report["sections"][name] = data
            log(f"[{name}] done in {data['elapsed_s']} s")
        except Exception as exc:
            failed.append(name)
            traceback.print_exc()
            report["sections"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                        "measured_at": run_info["machine"]["date"]}
            log(f"[{name}] FAILED after {time.perf_counter() - t0:.1f} s: {exc}")
        write_json(report_path, report)  # keep what we have if a later section dies
    run_info["elapsed_s"] = round(time.perf_counter() - t_all, 1)
    run_info["machine"]["load_average_at_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    report["run"] = run_info
    write_json(report_path, report)
    log(f"wrote {report_path.relative_to(ROOT)} ({run_info['elapsed_s']} s)")
    render.render_all(report, log)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
