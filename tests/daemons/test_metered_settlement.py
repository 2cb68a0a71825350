"""Issues 15 and 17 with real daemons on a real chain (anvil, subprocesses): the utility
meters every winner from its own interval data and publishes how; each household sends
two transactions (commit with bond, reveal), is paid without withdrawing, recomputes its
own delivery from its own meter store with the published method and parameters, and
flags a utility that under-measures, with both figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, wait_until
from demand_response import devchain
from demand_response.bids import save_bids
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import Stage, Status
from demand_response.mv import MeterStore
from demand_response.mv.fingerprint import Fingerprint
from demand_response.results import ResultsFile
from demand_response.utility import deploy, plan_request, send_request

pytestmark = pytest.mark.slow

CAP = 128 * 10**14
BOND = 10**15
STEP = 900


@pytest.fixture
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    """A chain per test: each moves chain time far ahead of the wall clock."""
    return start_chain(request, "anvil", accounts=8)


def _history(start: int, before_wh: int, during_wh: int) -> list[tuple[int, int, int]]:
    """An hour of 15-minute readings before the event, then the event's interval."""
    return [(start - 3600 + i * STEP, STEP, before_wh) for i in range(4)] + [(start, STEP, during_wh)]


def _consumer(tmp: Path, url: str, contract: str, index: int, start: int, name: str, meter_db: Path) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    env = dr_env(METER_DB=str(meter_db), BID_MARGIN="0")
    return Daemon(
        ["consumer", "run", "--rpc-url", url, "--contract", contract, "--account-index", str(index),
         "--bids-file", str(tmp / f"{name}-bids.json"), "--results-file", str(tmp / "db" / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / "consumer.log", env=env,
    )


def test_the_utility_meters_households_send_two_transactions_and_catch_an_under_measurement(
        tmp_path: Path, node: devchain.DevChain) -> None:
    w3: Web3 = connect(node.url)
    utility = Signer(w3, w3.eth.accounts[0])
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    dr = deploy(settings, utility, node.chain_id)
    first_block = w3.eth.block_number
    me_a, me_b = w3.eth.accounts[5], w3.eth.accounts[6]
    save_bids(tmp_path / "a-bids.json", [(1000, 20 * 10**14)])
    save_bids(tmp_path / "b-bids.json", [(1000, 30 * 10**14)])
    homes = {name: tmp_path / f"{name}-meter.sqlite" for name in ("a", "b")}
    a, b = (_consumer(tmp_path, node.url, dr.address, i, first_block, n, homes[n]) for i, n in ((5, "a"), (6, "b")))
    (tmp_path / "ustate").mkdir()
    util = Daemon(["utility", "run", "--rpc-url", node.url, "--contract", dr.address, "--state-dir",
                   str(tmp_path / "ustate"), "--poll-interval", "0.25", "--deployments-file",
                   str(tmp_path / "deployments.json"), "--meter-db", str(tmp_path / "utility-meters.sqlite"),
                   "--baseline", "meter-before-after"], tmp_path, tmp_path / "ustate" / "utility.log",
                  env=dr_env(START_BLOCK=str(first_block)))
    nonces = {who: w3.eth.get_transaction_count(who) for who in (me_a, me_b)}
    try:
        for d in (a, b):
            d.wait_for("listening for requests")
        util.wait_for("utility: watching")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        event_start = (now + 40) // STEP * STEP + STEP
        plan = plan_request(target_kw=2, now=now, bidding_window_s=6, event_start=event_start,
                            event_duration_s=STEP, max_price_wei_per_kwh=CAP, reveal_window_s=14,
                            report_window_s=600, dispute_window_s=600, bond_wei=BOND)
        rid, _ = send_request(dr, utility, plan)
        # Each household's own meter; the utility's data agrees on A and under-measures B
        # (B's event interval reads 200 Wh higher at the utility: 0.8 kW less delivered).
        for name, during in (("a", 125), ("b", 125)):
            with MeterStore.open(homes[name]) as store:
                store.import_batches({(me_a if name == "a" else me_b): _history(event_start, 250, during)})
        with MeterStore.open(tmp_path / "utility-meters.sqlite") as store:
            store.import_batches({me_a: _history(event_start, 250, 125), me_b: _history(event_start, 250, 175)})
        for d in (a, b):
            d.wait_for(f"revealed 1 bid(s) on request {rid}", timeout=60)
        wait_until(lambda: dr.get_request(rid).status == Status.SETTLED, timeout=60, what="selection")
        assert dr.participant_of(rid, me_a).accepted_watts == dr.participant_of(rid, me_b).accepted_watts == 1000
        node.rpc("evm_increaseTime", [dr.get_request(rid).event_end - int(w3.eth.get_block("latest")["timestamp"]) + 1])
        node.rpc("evm_mine", [])
        for d in (a, b):
            d.wait_for("recorded", timeout=60)
    finally:
        codes = [d.stop() for d in (a, b, util)]
    assert codes == [0, 0, 0], util.output()[-3000:]
    # Two household transactions each: commit with bond, reveal. No report, no withdraw.
    assert {who: w3.eth.get_transaction_count(who) - n for who, n in nonces.items()} == {me_a: 2, me_b: 2}
    assert dr.owed(me_a) == dr.owed(me_b) == 0
    # On chain: the method, its parameters and the data hash, for anyone to recompute.
    (published,) = dr.deliveries_metered(rid, me_b)
    record = Fingerprint.from_evidence(published["evidence"], me_b)
    assert (record.method, record.params["before_s"], published["metered_watts"]) == ("meter-before-after", 3600, 300)
    assert me_b.lower()[2:] not in published["evidence"].decode().lower()  # no meter id on chain
    records = {r["account"]: r for r in ResultsFile(tmp_path / "db" / "results.json").records()}
    ra, rb = records[me_a], records[me_b]
    assert (ra["metered_watts"], ra["recomputed_watts"], ra["delivery_agrees"]) == (500, 500, True)
    assert ra["delivered_watts"] == 500 and ra["withdraw_tx"] is None
    assert (rb["metered_watts"], rb["recomputed_watts"], rb["difference_watts"]) == (300, 500, 200)
    assert rb["delivery_agrees"] is False and rb["same_meter_data"] is False
    assert rb["method"] == "meter-before-after" and rb["data_hash"] == record.data_hash
    assert "the utility metered 0.300 kW; our own meter data gives 0.500 kW" in b.output()
    assert "DISAGREES" in b.output()
    json.dumps(rb)  # the record stays plain JSON


def test_a_household_the_utility_does_not_meter_reports_itself_near_the_report_deadline(
        tmp_path: Path, node: devchain.DevChain) -> None:
    """REPORT_DELIVERY=fallback: no utility metering by the last quarter of the report window,
    so the household reports its meter file's reading: a third transaction, and only then."""
    from demand_response.sealed import write_readings

    w3: Web3 = connect(node.url)
    utility = Signer(w3, w3.eth.accounts[0])
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    dr = deploy(settings, utility, node.chain_id)
    me = w3.eth.accounts[7]
    save_bids(tmp_path / "c-bids.json", [(1000, 20 * 10**14)])
    c = _consumer(tmp_path, node.url, dr.address, 7, w3.eth.block_number, "c", tmp_path / "none.sqlite")
    nonce = w3.eth.get_transaction_count(me)
    try:
        c.wait_for("listening for requests")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        plan = plan_request(target_kw=1, now=now, bidding_window_s=6, event_delay_s=14 + 30, event_duration_s=STEP,
                            max_price_wei_per_kwh=CAP, reveal_window_s=14, report_window_s=400,
                            dispute_window_s=100, bond_wei=BOND)
        rid, _ = send_request(dr, utility, plan)
        c.wait_for(f"revealed 1 bid(s) on request {rid}", timeout=60)
        wait_until(lambda: time.time() > dr.terms_of(rid).reveal_deadline + 1, timeout=60, what="reveal deadline")
        node.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        write_readings(tmp_path / "db" / "meter.json", [{"account": me, "request_id": rid, "delivered_watts": 800}])
        info, terms = dr.get_request(rid), dr.terms_of(rid)
        node.rpc("evm_increaseTime", [info.event_end - int(w3.eth.get_block("latest")["timestamp"]) + 1])
        node.rpc("evm_mine", [])
        c.wait_for("waiting for the utility to meter our delivery", timeout=30)
        assert dr.participant_of(rid, me).stage == Stage.BID  # nothing sent while the utility may still meter
        node.rpc("evm_increaseTime", [terms.report_deadline - 100 - int(w3.eth.get_block("latest")["timestamp"])])
        node.rpc("evm_mine", [])
        c.wait_for(f"reported 0.800 kW delivered on request {rid}", timeout=30)
    finally:
        assert c.stop() == 0
    assert dr.participant_of(rid, me).stage == Stage.REPORTED
    assert w3.eth.get_transaction_count(me) - nonce == 3  # commit with bond, reveal, and the fallback report
