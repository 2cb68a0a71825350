"""Consumer reaction latency: from a request being mined to each consumer's bid being mined.

Runs on an embedded ganache (instamine), with N consumer daemons as separate processes
(``dr consumer run``) and then one fleet process (``dr consumer fleet -n N``), each
started exactly as a user would. For every request, t0 is the moment the utility's
transaction receipt is back; a watcher calls ``getBids`` every 50 ms and stamps the
first time it sees each bidder's bid in the latest state. Writes bench/latency.json.

    .venv/bin/python bench/bench_latency.py [--consumers 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demand_response import devchain  # noqa: E402
from demand_response.bids import save_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402

CAP = 128 * 10**14


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "demand_response", *args], cwd=log.parent, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_text(log: Path, text: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {text!r} in {log}")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _measure(w3, dr: DemandReduction, utility: Signer, bidders: set[str], rounds: int) -> list[float]:
    samples: list[float] = []
    for _ in range(rounds):
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        rid, receipt = dr.request_reduction(utility, 1000, now + 60, now + 3660, now + 60, CAP)
        t0 = time.monotonic()
        seen: dict[str, float] = {}
        deadline = t0 + 20
        while len(seen) < len(bidders) and time.monotonic() < deadline:
            bids = dr.get_bids(rid)  # an eth_call on the latest state: what is mined
            stamp = time.monotonic()
            for bid in bids:
                seen.setdefault(bid.bidder, stamp)
            time.sleep(0.05)
        missing = bidders - set(seen)
        if missing:
            raise RuntimeError(f"{len(missing)} consumers did not bid on request {rid} within 20 s")
        samples += [seen[b] - t0 for b in bidders]
        time.sleep(0.5)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]  # noqa: E731
    return {"n": len(ordered), "p50_s": round(pick(0.5), 3), "p95_s": round(pick(0.95), 3),
            "max_s": round(ordered[-1], 3), "mean_s": round(statistics.fmean(ordered), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", default="1,10", help="comma-separated consumer counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chain", choices=("ganache", "anvil"), default="anvil",
                        help="anvil by default: ganache 7's instamine sometimes hides a mined bid from "
                             "eth_call until the next block under concurrent load")
    parser.add_argument("--out", default=str(ROOT / "bench" / "latency.json"))
    args = parser.parse_args()
    report: dict = {"rounds": args.rounds, "chain": f"{args.chain} (instamine)", "poll_interval_s": 0.2,
                    "machine": f"{platform.machine()} {os.cpu_count()} cpu", "python": platform.python_version(),
                    "date": time.strftime("%Y-%m-%d"),
                    "measure": "request receipt back at the utility -> bidder's bid visible via getBids (50 ms polling)"}
    for n in [int(x) for x in str(args.consumers).split(",")]:
        report[f"{n}_consumers"] = _run(n, args.rounds, args.chain)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _run(n: int, rounds: int, kind: str) -> dict:
    """Latency summaries for n consumer processes, then one fleet of n."""
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    chain = devchain.start(kind, accounts=2 * n + 1, log_path=work / f"{kind}.log")
    procs: list[subprocess.Popen] = []
    report: dict = {}
    try:
        w3 = connect(chain.url)
        utility = Signer(w3, w3.eth.accounts[0])
        dr = DemandReduction.deploy(utility)
        start = w3.eth.block_number
        save_bids(work / "bids.json", [(1000, 10 * 10**14), (500, 20 * 10**14)])
        common = ["--rpc-url", chain.url, "--contract", dr.address, "--bids-file", "bids.json",
                  "--from-block", str(start), "--results-file", "results.json"]
        for i in range(1, n + 1):
            procs.append(_spawn(["consumer", "run", "--account-index", str(i), "--state-dir", f"s{i}", *common],
                                work / f"consumer-{i}.log"))
        for i in range(1, n + 1):
            _wait_text(work / f"consumer-{i}.log", "listening for requests", 1)
        samples = _measure(w3, dr, utility, set(w3.eth.accounts[1:n + 1]), rounds)
        report["processes"] = _summary(samples)
        _stop(procs)
        common[common.index("--from-block") + 1] = str(w3.eth.block_number + 1)  # no catch-up work
        procs = [_spawn(["consumer", "fleet", "-n", str(n), "--first-account", str(n + 1), "--state-dir", "fleet",
                         *common], work / "fleet.log")]
        _wait_text(work / "fleet.log", "listening for requests", 1)
        samples = _measure(w3, dr, utility, set(w3.eth.accounts[n + 1:2 * n + 1]), rounds)
        report["fleet"] = _summary(samples)
    finally:
        _stop(procs)
        chain.stop()
    return report


if __name__ == "__main__":
    main()
