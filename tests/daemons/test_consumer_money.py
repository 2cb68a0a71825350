"""The consumer daemon and money: offers that cannot pay for their fees are skipped, decimal
prices are bid, and what each request cost in gas is kept across a restart and recorded."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, run_dr, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import DemandReduction
from demand_response.results import ResultsFile
from demand_response.utility import deploy, plan_request, send_request
from demand_response import fees

CAP = 128 * 10**14  # 0.0128 ETH/kWh, tick 0.0001 ETH/kWh


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=6)


@pytest.fixture(scope="module")
def w3(node: devchain.DevChain) -> Web3:
    return connect(node.url)


def _deploy(w3: Web3, node: devchain.DevChain, folder: Path) -> tuple[DemandReduction, int]:
    settings = load_settings(folder / ".env", environ={}, rpc_url=node.url, deployments_file=folder / "deployments.json")
    return deploy(settings, Signer(w3, w3.eth.accounts[0]), node.chain_id), w3.eth.block_number


def _request(w3: Web3, dr: DemandReduction, window: int, duration: int = 3600) -> int:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    plan = plan_request(target_kw=4.0, now=now, bidding_window_s=window, event_duration_s=duration,
                        max_price_wei_per_kwh=CAP)
    return send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)[0]


def _consumer(tmp: Path, node: devchain.DevChain, dr: DemandReduction, index: int, start: int,
              **env: str) -> Daemon:
    folder = tmp / "state"
    folder.mkdir(exist_ok=True)
    return Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", str(index),
         "--bids-file", str(tmp / "bids.json"), "--results-file", str(tmp / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", "home"],
        tmp, folder / f"consumer-{len(list(folder.glob('consumer-*.log')))}.log", env=dr_env(**env),
    )


def test_an_offer_too_small_to_pay_its_fees_is_skipped_with_a_reason_and_the_rest_is_bid(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr, start = _deploy(w3, node, tmp_path)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [
        {"kw": 2, "price": "0.004"},  # 0.008 ETH over the hour: pays
        {"watts": 1, "price": "0.0001 ETH/kWh"},  # 0.0000001 ETH: cannot pay ~0.0002 ETH of fees
    ]}))
    consumer = _consumer(tmp_path, node, dr, 1, start)
    try:
        consumer.wait_for("listening for requests")
        rid = _request(w3, dr, window=30)
        consumer.wait_for(f"on request {rid} (tx")
    finally:
        assert consumer.stop() == 0
    out = consumer.output()
    assert f"request {rid}: skipping 0.001 kW at 0.0001 ETH/kWh: skip: pays 0.0000001 ETH at its ask, " \
           "but taking part costs" in out
    assert "with a 50 % margin (raise the price or offer more kW)" in out
    assert f"request {rid}: taking part costs 1 transaction, {fees.plan_gas('open'):,} gas:" in out
    assert [(b.watts, b.price) for b in dr.bids_of(rid, w3.eth.accounts[1])] == [(2000, 40 * 10**14)]


def test_with_no_margin_every_offer_is_bid(tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr, start = _deploy(w3, node, tmp_path)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"watts": 1, "price": "0.0001"}]}))
    consumer = _consumer(tmp_path, node, dr, 2, start, BID_MARGIN="0")
    try:
        consumer.wait_for("listening for requests")
        rid = _request(w3, dr, window=30)
        consumer.wait_for(f"on request {rid} (tx")
    finally:
        assert consumer.stop() == 0
    assert "skipping" not in consumer.output()
    assert len(dr.bids_of(rid, w3.eth.accounts[2])) == 1


def test_when_no_offer_pays_nothing_is_sent(tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr, start = _deploy(w3, node, tmp_path)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"watts": 1, "price": "0.0001"}]}))
    consumer = _consumer(tmp_path, node, dr, 3, start)
    try:
        consumer.wait_for("listening for requests")
        rid = _request(w3, dr, window=30)
        consumer.wait_for(f"no offer pays for taking part in request {rid}; not bidding")
    finally:
        assert consumer.stop() == 0
    assert dr.bids_of(rid, w3.eth.accounts[3]) == []
    assert w3.eth.get_transaction_count(w3.eth.accounts[3]) == 0


def test_a_bad_bid_margin_is_one_line(tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr, start = _deploy(w3, node, tmp_path)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"watts": 1000, "price": "0.004"}]}))
    out = run_dr(["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", "1",
                  "--bids-file", str(tmp_path / "bids.json"), "--state-dir", str(tmp_path)], tmp_path,
                 env=dr_env(BID_MARGIN="0.5"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "BID_MARGIN='0.5': give 0 (bid regardless of fees) or a factor of at least 1" in out.stderr


def test_the_gas_of_a_request_survives_a_restart_and_lands_in_its_record(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    dr, start = _deploy(w3, node, tmp_path)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 1.5, "price": "0.002"}]}))
    first = _consumer(tmp_path, node, dr, 4, start)
    first.wait_for("listening for requests")
    rid = _request(w3, dr, window=8)
    first.wait_for(f"on request {rid} (tx")
    cursor = next((tmp_path / "state").glob(".cursor-consumer-*.json"))
    wait_until(lambda: '"spent"' in cursor.read_text(), what="the bid's cost in the notes")
    first.kill()
    bid_tx = json.loads(cursor.read_text())["agents"][w3.eth.accounts[4]]["requests"][str(rid)]["bid_txs"][0]

    second = _consumer(tmp_path, node, dr, 4, start)
    try:
        second.wait_for("listening for requests")  # past the request: its notes say what was sent
        deadline = dr.get_request(rid).bidding_deadline
        wait_until(lambda: time.time() > deadline + 1, timeout=60, what="bidding deadline")
        node.rpc("evm_mine", [])
        dr.select_winners(Signer(w3, w3.eth.accounts[0]), rid)
        second.wait_for(f"recorded request {rid}")
    finally:
        assert second.stop() == 0
    (record,) = ResultsFile(tmp_path / "results.json").records()
    sent = [bid_tx, record["claim_tx"], record["withdraw_tx"]]
    receipts = [w3.eth.get_transaction_receipt(tx) for tx in sent]
    assert record["gas_wei"] == sum(r["gasUsed"] * r["effectiveGasPrice"] for r in receipts)
    assert record["net_wei"] == record["paid_wei"] - record["gas_wei"] and record["paid_wei"] == 3 * 10**15
    assert f"request {rid}: paid 0.003 ETH, gas " in second.output()
    shown = run_dr(["consumer", "results", "--results-file", str(tmp_path / "results.json")], tmp_path)
    assert shown.returncode == 0 and "1.5 kW" in shown.stdout and "0.003 ETH" in shown.stdout
