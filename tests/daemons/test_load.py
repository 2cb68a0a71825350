"""Load (issue 7, daemon half): one ``dr consumer fleet`` process with N agents on anvil bids on
R requests whose bidding windows overlap; a utility daemon settles them. Every bid must be
on chain exactly once, every settlement must equal ``market.clear`` and every agent's
``results.json`` record must match its outcome.

Default 100 consumers x 2 overlapping requests (the suite's time budget); ``DR_LOAD_CONSUMERS``
/ ``DR_LOAD_REQUESTS`` select the full size (200 x 5). The bidding windows grow with the
load: one fleet process places about 20-30 bids/s on this 2-core machine (docs/security.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from daemon_helpers import Daemon, dr_env, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, Status
from demand_response.market import Bid, by_bidder, clear
from demand_response.results import ResultsFile
from demand_response.utility import plan_request, send_request

CONSUMERS = int(os.environ.get("DR_LOAD_CONSUMERS", "100"))
REQUESTS = int(os.environ.get("DR_LOAD_REQUESTS", "2"))
CAP = 128 * 10**14
TICK = CAP // 128


def test_fleet_bids_on_overlapping_requests(tmp_path: Path) -> None:
    chain = devchain.start("anvil", accounts=CONSUMERS + 1, log_path=tmp_path / "anvil.log")
    try:
        w3 = connect(chain.url)
        dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
        start = w3.eth.block_number
        fleet = [{"household": i, "bids": [{"watts": 500 + 37 * (i % 50), "price_wei_per_kwh": (1 + i * 7 % 120) * TICK}]}
                 for i in range(CONSUMERS)]
        import json

        (tmp_path / "fleet.json").write_text(json.dumps({"version": 1, "fleet": fleet}))
        results = tmp_path / "results.json"
        agents = Daemon(["consumer", "fleet", "-n", str(CONSUMERS), "--rpc-url", chain.url, "--contract", dr.address,
                         "--bids-file", "fleet.json", "--results-file", str(results), "--state-dir", "state",
                         "--from-block", str(start), "--poll-interval", "0.2"], tmp_path, tmp_path / "fleet.log",
                        env=dr_env(BID_MARGIN="0"))  # tiny offers by design: no fee check
        utility = Daemon(["utility", "run", "--rpc-url", chain.url, "--contract", dr.address, "--state-dir", "ustate",
                          "--poll-interval", "0.25", "--deployments-file", str(tmp_path / "deployments.json")],
                         tmp_path, tmp_path / "utility.log", env=dr_env(START_BLOCK=str(start)))
        began = None
        try:
            agents.wait_for(f"{CONSUMERS} agents: listening", timeout=60)
            utility.wait_for("utility: watching")
            began = time.monotonic()
            rids = []
            window = 6 + CONSUMERS * REQUESTS // 15
            for r in range(REQUESTS):  # windows overlap: each opens before the previous closes
                now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
                plan = plan_request(target_kw=40 + 10 * r, now=now, bidding_window_s=window + 2 * r,
                                    event_duration_s=3600, max_price_wei_per_kwh=CAP)
                rids.append(send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)[0])
                time.sleep(0.5)
            wait_until(lambda: all(dr.get_request(r).status == Status.SETTLED for r in rids), timeout=120,
                       interval=0.5, what="every request settled")
            # Winners claim and withdraw after each settlement: two transactions each, at the
            # fleet's rate, so the wait grows with the load.
            wait_until(lambda: len(ResultsFile(results).records()) == CONSUMERS * REQUESTS,
                       timeout=30 + CONSUMERS * REQUESTS // 8, interval=0.5,
                       what=f"every agent's record ({CONSUMERS * REQUESTS})")
            elapsed = time.monotonic() - began
        finally:
            codes = [agents.stop(timeout=60), utility.stop()]
        assert codes == [0, 0]
        records = ResultsFile(results).records()
        assert len({(r["request_id"], r["account"]) for r in records}) == len(records) == CONSUMERS * REQUESTS
        accounts = w3.eth.accounts[1:CONSUMERS + 1]
        for rid in rids:
            info = dr.get_request(rid)
            bids = dr.all_bids(rid)
            assert len(bids) == info.bid_count == CONSUMERS  # every bid accounted for, once
            assert sorted(b.bidder for b in bids) == sorted(accounts)
            for b in bids:
                i = accounts.index(b.bidder)
                assert (b.watts, b.price) == (fleet[i]["bids"][0]["watts"], fleet[i]["bids"][0]["price_wei_per_kwh"])
            market = [Bid(b.bidder, b.watts, b.price, b.cancelled) for b in bids]
            expected = clear(market, info.target_watts, info.duration, info.max_price, info.budget, info.rule)
            assert (info.clearing_price, info.accepted_watts, info.reserved) == (
                expected.clearing_price, expected.accepted_watts, sum(o.payout for o in expected.outcomes))
            per = by_bidder(market, expected)
            for record in (r for r in records if r["request_id"] == rid):
                assert record["accepted_watts"] == per[record["account"]].accepted_watts
                assert record["payout_wei"] == per[record["account"]].payout
        assert "Traceback" not in agents.output() + utility.output()
        print(f"load: {CONSUMERS} consumers x {REQUESTS} requests: {CONSUMERS * REQUESTS} bids, settled and "
              f"recorded in {elapsed:.1f} s after the first request")
    finally:
        chain.stop()
