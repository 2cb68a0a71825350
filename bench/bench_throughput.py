#!/usr/bin/env python3
"""Throughput: bids per second absorbed when 200 consumers bid on one request.

One ``python -m demand_response consumer fleet -n 200`` process (each agent its own
account, two offers in one transaction) hears one request; the rate is the number of bids
divided by the time from the request's block to the block holding the last bid (both
stamped by the same block watcher). Every bid is then accounted for: 200 distinct
bidders, ``bidCount`` = 400, and the book's total = the watts offered.

Paired baseline in the same run: the same 200 transactions sent straight from this
process, pre-built, without waiting for receipts (the chain's own ceiling for this load).

    .venv/bin/python bench/bench_throughput.py [--consumers 200] [--chains anvil,ganache]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, summary, write_json  # noqa: E402
from _daemons import (  # noqa: E402
    OFFERS, BlockWatcher, consumer_args, post_request, spawn, stop, wait_for_bidders, wait_text,
)

from demand_response import devchain  # noqa: E402
from demand_response.bids import save_bids  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction  # noqa: E402

LABELS = {"anvil": "anvil 1.7.1, automine", "ganache": "ganache 7.9.2, automine"}


def _account(dr, rid, found: dict, bidders: list[str]) -> dict:
    info = dr.get_request(rid)
    offered = sum(w for w, _ in OFFERS) * len(bidders)
    ok = (set(found) == set(bidders) and all(len(found[b]) == len(OFFERS) for b in bidders)
          and info.bid_count == len(bidders) * len(OFFERS) and sum(dr.book(rid)) == offered)
    return {"bidders": len(found), "bid_count": info.bid_count, "book_watts": sum(dr.book(rid)),
            "offered_watts": offered, "all_accounted": ok}


def run_chain(kind: str, n: int, log=print) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-throughput-{kind}-"))
    chain = devchain.start(kind, accounts=2 * n + 1, balance_eth=10_000, log_path=work / "chain.log")
    watcher = BlockWatcher(chain.url)
    watcher.start()
    procs = []
    out: dict = {"label": LABELS[kind], "consumers": n, "bids": n * len(OFFERS)}
    try:
        w3 = connect(chain.url)
        accounts = w3.eth.accounts
        utility = Signer(w3, accounts[0])
        dr = DemandReduction.deploy(utility)
        save_bids(work / "bids.json", OFFERS)

        # Baseline: the same load straight from here.
        bidders = accounts[n + 1:2 * n + 1]
        first = w3.eth.block_number + 1
        rid, req_block, _ = post_request(w3, dr, utility)
        signers = [Signer(w3, a) for a in bidders]
        txs = [dr.functions.submitBids(rid, [w for w, _ in OFFERS], [p for _, p in OFFERS])
               .build_transaction({"from": s.address, "gas": 300_000}) for s in signers]
        t_req = watcher.seen(req_block)
        for s, tx in zip(signers, txs):
            s.send(tx, wait=False)
        found = wait_for_bidders(dr, rid, first, set(bidders), len(OFFERS), timeout=600)
        last = max(x["block"] for v in found.values() for x in v)
        span = watcher.seen(last) - t_req
        out["baseline_direct"] = {"span_s": round(span, 3), "bids_per_s": round(out["bids"] / span, 1),
                                  **_account(dr, rid, found, bidders)}
        log(f"  throughput/{kind}: direct sends (baseline) {out['baseline_direct']['bids_per_s']} bids/s")

        # The daemon: one fleet of n.
        bidders = accounts[1:n + 1]
        start = w3.eth.block_number + 1
        log_path = work / "fleet.log"
        t0 = time.monotonic()
        procs = [spawn(["consumer", "fleet", "-n", str(n), "--first-account", "1",
                        *consumer_args(chain.url, dr.address, start, "fleet")], log_path, work)]
        wait_text(log_path, "listening for requests", procs=procs, timeout=300)
        out["fleet_startup_s"] = round(time.monotonic() - t0, 2)
        first = w3.eth.block_number + 1
        rid, req_block, _ = post_request(w3, dr, utility, window=900)
        found = wait_for_bidders(dr, rid, first, set(bidders), len(OFFERS), timeout=600)
        t_req = watcher.seen(req_block)
        blocks = sorted(x["block"] for v in found.values() for x in v)
        span = watcher.seen(blocks[-1]) - t_req
        per = [watcher.seen(min(x["block"] for x in found[b])) - t_req for b in bidders]
        out["fleet"] = {"span_s": round(span, 3), "bids_per_s": round(out["bids"] / span, 1),
                        "first_bid_s": round(watcher.seen(blocks[0]) - t_req, 3), "latency": summary(per),
                        **_account(dr, rid, found, bidders)}
        log(f"  throughput/{kind}: fleet of {n}: {out['bids']} bids in {span:.1f} s = "
            f"{out['fleet']['bids_per_s']} bids/s, all accounted: {out['fleet']['all_accounted']}")
    finally:
        stop(procs)
        watcher.stop()
        chain.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def run(n: int = 200, chains: tuple[str, ...] = ("anvil",), log=print) -> dict:
    return {"offers_per_consumer": len(OFFERS), "chains": {k: run_chain(k, n, log) for k in chains}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--consumers", type=int, default=200)
    ap.add_argument("--chains", default="anvil")
    ap.add_argument("--out", default=str(ROOT / "bench" / "throughput.json"))
    args = ap.parse_args()
    write_json(args.out, run(args.consumers, tuple(args.chains.split(","))))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
