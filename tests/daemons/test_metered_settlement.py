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


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
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
    assert "waiting for the utility to meter our delivery" in a.output()
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
