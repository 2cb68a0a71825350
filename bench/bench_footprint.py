#!/usr/bin/env python3
"""Consumer footprint: cold start to "listening", peak RSS idle and while bidding.

The daemon is started as a user starts it (``python -m demand_response consumer run``)
against a local anvil with the contract deployed. Cold start is the wall time from
``Popen`` to the "listening for requests" log line. Peak RSS is the kernel's high-water
mark (``VmHWM`` in /proc/<pid>/status): after 3 s idle, then after it has heard a request
and its bid is mined.

Paired baselines, run interleaved with the daemon in the same run (median of N each), as
whole processes whose peak RSS comes from ``wait4``:
* the seed consumer's import alone: ``python -c "import brownie; from brownie import Contract, web3, accounts"``
* ``python -c "from web3 import Web3"`` and ``python -c "pass"``

    .venv/bin/python bench/bench_footprint.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, proc_status_mib, run_python_measured, write_json  # noqa: E402
from _daemons import OFFERS, consumer_args, post_request, spawn, stop, wait_for_bidders, wait_text  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.bids import save_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402

BASELINES = {
    "seed_import": "import brownie; from brownie import Contract, web3, accounts",
    "web3_import": "from web3 import Web3",
    "python_bare": "pass",
    "daemon_imports": "import demand_response.cli, demand_response.consumer, demand_response.session, "
                      "demand_response.accounts",
}
# The seed's own figures on this kind of machine (shared/reference/anchors.md).
SEED_ANCHORS = {"seed_import": {"wall_s": 0.70, "peak_mib": 90}, "web3_import": {"wall_s": 0.41, "peak_mib": 61}}


def _daemon_once(chain, dr, w3, utility, work: Path, index: int) -> dict:
    start = w3.eth.block_number + 1
    log = work / f"consumer-{index}.log"
    t0 = time.monotonic()
    proc = spawn(["consumer", "run", "--account-index", str(index),
                  *consumer_args(chain.url, dr.address, start, f"s{index}")], log, work)
    try:
        t_listen = wait_text(log, "listening for requests", procs=[proc])
        cold = t_listen - t0
        time.sleep(3.0)
        idle_hwm = proc_status_mib(proc.pid, "VmHWM")
        idle_rss = proc_status_mib(proc.pid, "VmRSS")
        first = w3.eth.block_number + 1
        rid, _, _ = post_request(w3, dr, utility)
        wait_for_bidders(dr, rid, first, {w3.eth.accounts[index]}, len(OFFERS))
        time.sleep(1.0)
        bid_hwm = proc_status_mib(proc.pid, "VmHWM")
        bid_rss = proc_status_mib(proc.pid, "VmRSS")
        cpu = None
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    finally:
        stop([proc])
    return {"cold_start_s": cold, "idle_peak_mib": idle_hwm, "idle_rss_mib": idle_rss,
            "bidding_peak_mib": bid_hwm, "bidding_rss_mib": bid_rss, "cpu_s": cpu}


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def run(repeat: int = 3, log=print) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    chain = devchain.start("anvil", accounts=repeat + 2, log_path=work / "chain.log")
    samples: dict[str, list[dict]] = {k: [] for k in BASELINES}
    daemon: list[dict] = []
    try:
        w3 = connect(chain.url)
        utility = Signer(w3, w3.eth.accounts[0])
        dr = DemandReduction.deploy(utility)
        save_bids(work / "bids.json", OFFERS)
        # Warm the page cache once so no run pays for a cold disk.
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for code in BASELINES.values():
            run_python_measured(code, cwd=work, env=env)
        for i in range(repeat):
            for name, code in BASELINES.items():  # interleaved: each round sees the same machine load
                wall, peak, rc = run_python_measured(code, cwd=work, env=env)
                samples[name].append({"wall_s": wall, "peak_mib": peak, "rc": rc})
            daemon.append(_daemon_once(chain, dr, w3, utility, work, i + 1))
            log(f"  footprint round {i + 1}/{repeat}: daemon listening after {daemon[-1]['cold_start_s']:.2f} s, "
                f"peak {daemon[-1]['bidding_peak_mib']:.1f} MiB; seed import {samples['seed_import'][-1]['wall_s']:.2f} s "
                f"{samples['seed_import'][-1]['peak_mib']:.1f} MiB")
    finally:
        chain.stop()
        shutil.rmtree(work, ignore_errors=True)
    baselines = {name: {"wall_s": _median(rows, "wall_s"), "peak_mib": _median(rows, "peak_mib"),
                        "ok": all(r["rc"] == 0 for r in rows), "command": f'python -c "{BASELINES[name]}"'}
                 for name, rows in samples.items()}
    result = {
        "repeat": repeat, "chain": "anvil 1.7.1, automine",
        "daemon": {k: _median(daemon, k) for k in daemon[0]},
        "daemon_runs": daemon,
        "baselines": baselines,
        "seed_anchors": SEED_ANCHORS,
    }
    d, s = result["daemon"], baselines["seed_import"]
    result["start_vs_seed_import"] = round(d["cold_start_s"] / s["wall_s"], 2) if s["wall_s"] else None
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "footprint.json"))
    args = ap.parse_args()
    write_json(args.out, run(args.repeat))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
