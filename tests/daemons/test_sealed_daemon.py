"""Sealed, metered requests with the consumer daemon as a user runs it (subprocesses, anvil).

One request, two consumers, both killed with SIGKILL right after committing:
* A restarts with its salt file: it reveals, reports its meter reading, settles and
  records promised against delivered against paid;
* B's salt file is lost with it: it cannot reveal, so it takes no part and loses its
  bond, and nothing else (the documented rule).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, wait_until
from demand_response import devchain
from demand_response.bids import save_bids
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import Stage
from demand_response.market import settle_delivery
from demand_response.results import ResultsFile
from demand_response.sealed import write_readings
from demand_response.utility import deploy, plan_request, send_request

CAP = 128 * 10**14
BOND = 10**15


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=8)


def _consumer(tmp: Path, url: str, contract: str, index: int, start: int, name: str) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    return Daemon(
        ["consumer", "run", "--rpc-url", url, "--contract", contract, "--account-index", str(index),
         "--bids-file", str(tmp / f"{name}-bids.json"), "--results-file", str(tmp / "db" / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / f"consumer-{len(list(folder.glob('consumer-*.log')))}.log",
        env=dr_env(REPORT_DELIVERY="always"),  # this test covers the household's own report
    )


def test_salts_on_disk_survive_sigkill_and_a_lost_salt_costs_only_the_bond(tmp_path: Path,
                                                                           node: devchain.DevChain) -> None:
    w3: Web3 = connect(node.url)
    utility = Signer(w3, w3.eth.accounts[0])
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    dr = deploy(settings, utility, node.chain_id)
    start = w3.eth.block_number
    save_bids(tmp_path / "a-bids.json", [(1500, 20 * 10**14), (500, 25 * 10**14)])
    save_bids(tmp_path / "b-bids.json", [(1000, 10 * 10**14)])
    a, b = (_consumer(tmp_path, node.url, dr.address, i, start, n) for i, n in ((5, "a"), (6, "b")))
    a.wait_for("listening for requests")
    b.wait_for("listening for requests")
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=3, now=now, bidding_window_s=6, event_delay_s=14 + 60, event_duration_s=3600,
                        max_price_wei_per_kwh=CAP, reveal_window_s=14, report_window_s=120, dispute_window_s=0,
                        bond_wei=BOND)
    rid, _ = send_request(dr, utility, plan)
    for d in (a, b):
        d.wait_for(f"on request {rid}, bond 0.001000 ETH")
        d.kill()  # between commit and reveal
    me_a, me_b = w3.eth.accounts[5], w3.eth.accounts[6]
    assert dr.participant_of(rid, me_a).stage == Stage.COMMITTED == dr.participant_of(rid, me_b).stage
    (salts_b,) = (tmp_path / "b").glob(".salts-*.json")
    salts_b.unlink()  # B's disk is lost

    a2 = _consumer(tmp_path, node.url, dr.address, 5, start, "a")
    b2 = _consumer(tmp_path, node.url, dr.address, 6, start, "b")
    try:
        a2.wait_for(f"revealed 2 bid(s) on request {rid}", timeout=40)
        terms = dr.terms_of(rid)
        wait_until(lambda: time.time() > terms.reveal_deadline + 1, timeout=60, what="reveal deadline")
        node.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        assert dr.participant_of(rid, me_b).stage == Stage.COMMITTED  # never revealed
        p = dr.participant_of(rid, me_a)
        assert p.accepted_watts == 2000
        write_readings(tmp_path / "db" / "meter.json",
                       [{"account": me_a, "request_id": rid, "delivered_watts": 1500}])
        info = dr.get_request(rid)
        node.rpc("evm_increaseTime", [info.event_end - int(w3.eth.get_block("latest")["timestamp"]) + 1])
        node.rpc("evm_mine", [])
        a2.wait_for(f"reported 1.500 kW delivered on request {rid}", timeout=30)
        node.rpc("evm_increaseTime", [130])  # past the report deadline; no dispute window
        node.rpc("evm_mine", [])
        a2.wait_for(f"recorded", timeout=30)
        b2.wait_for(f"recorded", timeout=30)
    finally:
        assert a2.stop() == 0 and b2.stop() == 0
    records = {r["account"]: r for r in ResultsFile(tmp_path / "db" / "results.json").records()}
    expect = settle_delivery(2000, p.promised_payout, 1500, BOND)
    ra, rb = records[me_a], records[me_b]
    assert (ra["paid_wei"], ra["penalty_wei"], ra["bond_returned_wei"]) == (expect.payout, expect.penalty,
                                                                           expect.bond_returned)
    assert ra["promised_payout_wei"] == p.promised_payout and ra["delivered_watts"] == 1500
    assert ra["withdraw_tx"] is None  # payout and bond were pushed: nothing to withdraw
    assert rb["accepted_watts"] == 0 and rb["penalty_wei"] == BOND and rb["paid_wei"] == 0  # only the bond
    assert dr.owed(me_a) == 0 and dr.owed(me_b) == 0
    assert "missed the reveal window" not in a2.output()
