"""Helpers for benchmarks that run the real consumer daemon (``python -m demand_response consumer ...``).

* ``BlockWatcher`` stamps the wall time at which each block number is first seen (raw
  ``eth_blockNumber`` every 10 ms), so "request block -> bid block" latencies are
  differences of two stamps taken by the same observer.
* ``spawn`` starts a daemon exactly as a user would (``-m demand_response``), output in a log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from _common import ROOT

from demand_response.contract import DemandReduction, submitted_bid_ids

CAP = 128 * 10**14  # wei/kWh; the offers below sit well under it
OFFERS = [(1000, 10 * 10**14), (500, 20 * 10**14)]  # 2 bids per consumer, one transaction


def _rpc(url: str, method: str, params: list | None = None, session: Any = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    if session is not None:  # keep-alive: the watcher should cost the node as little as possible
        return session.post(url, json=body, timeout=10).json()["result"]
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["result"]


class BlockWatcher(threading.Thread):
    """Records ``first_seen[block_number] = time.monotonic()`` for every block."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        import requests

        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.first_seen: dict[int, float] = {}
        self._stop_event = threading.Event()
        self._session = requests.Session()
        self._last = int(_rpc(url, "eth_blockNumber"), 16)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                head = int(_rpc(self.url, "eth_blockNumber", session=self._session), 16)
            except Exception:
                time.sleep(self.interval)
                continue
            now = time.monotonic()
            for number in range(self._last + 1, head + 1):
                self.first_seen.setdefault(number, now)
            self._last = max(self._last, head)
            self._stop_event.wait(self.interval)

    def seen(self, number: int, timeout: float = 30) -> float:
        """The stamp of block ``number`` (waits for the watcher to get there)."""
        deadline = time.monotonic() + timeout
        while number not in self.first_seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"block {number} not seen")
            time.sleep(0.005)
        return self.first_seen[number]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def spawn(args: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``python -m demand_response ARGS`` in its own session, output to ``log``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "demand_response", *args], cwd=cwd, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def wait_text(log: Path, text: str, count: int = 1, timeout: float = 120,
              procs: Sequence[subprocess.Popen] = ()) -> float:
    """Wait until ``text`` appears ``count`` times in ``log``; returns the monotonic time seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return time.monotonic()
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"daemon exited with {p.returncode}; see {log}:\n"
                                   + log.read_text(errors="replace")[-2000:])
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {text!r} in {log}")


def stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGINT each daemon's process group; SIGKILL what is still there after 15 s."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def consumer_args(url: str, address: str, start_block: int, state_dir: str) -> list[str]:
    """The connection and file flags every daemon in a benchmark gets."""
    return ["--rpc-url", url, "--contract", address, "--bids-file", "bids.json", "--from-block", str(start_block),
            "--results-file", "results.json", "--state-dir", state_dir, "--no-withdraw"]


def post_request(w3: Any, dr: DemandReduction, utility: Any, window: int = 120) -> tuple[int, int, float]:
    """Post a request; (request id, its block, monotonic time the receipt came back)."""
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    rid, receipt = dr.request_reduction(utility, 1000, now + window, now + window + 3600, now + window, CAP)
    return rid, int(receipt["blockNumber"]), time.monotonic()


def bids_by_bidder(dr: DemandReduction, rid: int, from_block: int) -> dict[str, list[dict]]:
    """{bidder: [{'block', 'bid_id', 'tx'}]} from the BidsSubmitted logs of request ``rid``."""
    logs = dr.contract.events.BidsSubmitted().get_logs(from_block=from_block, argument_filters={"requestId": rid})
    out: dict[str, list[dict]] = {}
    for entry in logs:
        out.setdefault(entry["args"]["bidder"], []).extend(
            {"block": int(entry["blockNumber"]), "bid_id": bid_id, "tx": entry["transactionHash"].hex()}
            for bid_id in submitted_bid_ids(entry))
    return out


def wait_for_bidders(dr: DemandReduction, rid: int, from_block: int, bidders: set[str], bids_each: int,
                     timeout: float = 120) -> dict[str, list[dict]]:
    """Wait until every bidder's bids are mined; returns ``bids_by_bidder``."""
    deadline = time.monotonic() + timeout
    while True:
        found = bids_by_bidder(dr, rid, from_block)
        if all(len(found.get(b, [])) >= bids_each for b in bidders):
            return found
        if time.monotonic() > deadline:
            missing = [b for b in bidders if len(found.get(b, [])) < bids_each]
            raise RuntimeError(f"{len(missing)} of {len(bidders)} consumers did not bid on request {rid} "
                               f"within {timeout:.0f} s")
        # Latencies come from the watcher's block stamps, not from this loop; polling slowly
        # keeps this process (decoding every bid log each time) from taking CPU the daemons need.
        time.sleep(0.5)
