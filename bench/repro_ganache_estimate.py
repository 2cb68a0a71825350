#!/usr/bin/env python3
"""Minimal reproducer of the ganache 7.9.2 "unanswered request" seen in issue 6.

N client threads (each its own keep-alive ``requests.Session``, or a fresh connection per
request with ``--mode fresh``, or ``Connection: close`` with ``--mode close``) send the same
RPC call at the same moment, in bursts, while another thread mines a block every
``--miner`` seconds (a plain value transfer). A request with no answer within ``--timeout``
is counted as unanswered.

What it shows on ganache 7.9.2 (automine):
* ``eth_estimateGas`` of a ``submitBids`` while blocks are mined: a large share of the
  estimates is never answered (not after 40 s either), with keep-alive, with
  ``Connection: close`` and with fresh connections alike, and even with a single client.
  So it is not HTTP keep-alive, pipelining or the client's session pool: ganache drops
  an estimate during which a block is mined.
* Without the miner (``--miner 0``) every estimate is answered, but each takes ~0.25-0.5 s
  and they run one at a time (10 concurrent: ~2-3 s each).
* ``eth_call`` of the same transaction, and ``eth_getBlockByNumber`` / ``eth_getLogs``
  polls, are always answered.

    .venv/bin/python bench/repro_ganache_estimate.py -n 10 --bursts 10 --miner 0.05
    .venv/bin/python bench/repro_ganache_estimate.py -n 10 --bursts 10 --miner 0.05 --method eth_call
    .venv/bin/python bench/repro_ganache_estimate.py -n 10 --bursts 10 --miner 0.05 --kind anvil

The consumer daemon therefore sends its bids with a fixed gas limit
(``demand_response.contract.bid_gas_limit``) and never estimates them.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from _daemons import OFFERS, post_request  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="concurrent clients")
    ap.add_argument("--bursts", type=int, default=10)
    ap.add_argument("--mode", choices=("keepalive", "close", "fresh"), default="keepalive")
    ap.add_argument("--method", choices=("eth_estimateGas", "eth_call", "eth_getLogs", "eth_getBlockByNumber"),
                    default="eth_estimateGas")
    ap.add_argument("--kind", choices=("ganache", "anvil"), default="ganache")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--miner", type=float, default=0.05, help="mine a block every X s meanwhile (0: never)")
    a = ap.parse_args()

    chain = devchain.start(a.kind, accounts=a.n + 2, balance_eth=1000)
    try:
        w3 = connect(chain.url)
        accounts = w3.eth.accounts
        utility = Signer(w3, accounts[0])
        dr = DemandReduction.deploy(utility)
        rid, _, _ = post_request(w3, dr, utility)
        data = dr.functions.submitBids(rid, [w for w, _ in OFFERS], [p for _, p in OFFERS])._encode_transaction_data()

        def body(i: int, k: int) -> dict:
            tx = {"from": accounts[i + 1], "to": dr.address, "data": data}
            params = {"eth_estimateGas": [tx], "eth_call": [tx, "latest"],
                      "eth_getLogs": [{"fromBlock": "0x0", "toBlock": "latest"}],
                      "eth_getBlockByNumber": ["latest", False]}[a.method]
            return {"jsonrpc": "2.0", "id": k, "method": a.method, "params": params}

        barrier = threading.Barrier(a.n)
        results: list[tuple[int, int, bool, float]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(i: int) -> None:
            session = requests.Session()
            if a.mode == "close":
                session.headers["Connection"] = "close"
            for k in range(a.bursts):
                barrier.wait()
                t = time.monotonic()
                try:
                    (requests if a.mode == "fresh" else session).post(chain.url, json=body(i, k), timeout=a.timeout).json()
                    ok = True
                except requests.RequestException:
                    ok = False
                with lock:
                    results.append((k, i, ok, time.monotonic() - t))
                time.sleep(0.5)

        def miner() -> None:
            session = requests.Session()
            while not stop.wait(a.miner):
                session.post(chain.url, json={"jsonrpc": "2.0", "id": 0, "method": "eth_sendTransaction", "params": [
                    {"from": accounts[0], "to": accounts[1], "value": "0x1"}]}, timeout=30)

        if a.miner:
            threading.Thread(target=miner, daemon=True).start()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
    finally:
        chain.stop()
    lost = [(k, i) for k, i, ok, _ in results if not ok]
    answered = sorted(d for _, _, ok, d in results if ok)
    med = f"{answered[len(answered) // 2]:.3f}" if answered else "-"
    print(f"{a.kind} {a.method}, {a.n} clients ({a.mode}), {a.bursts} bursts, miner every {a.miner} s: "
          f"{len(results)} requests, {len(lost)} unanswered within {a.timeout} s; answered p50 {med} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
