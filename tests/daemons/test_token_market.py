"""The daemons in a stablecoin market, on a real anvil: a request settled in the 6-decimal
TestUSD (TUSD, a USD stablecoin). The household bids in TUSD per kWh, sends exactly one
transaction (its bid), and is paid in TUSD by the utility's ``claimAndPay``; its record says
paid in TUSD, gas in ETH and, with ``USD_PER_ETH``, the net in TUSD. A household priced in ETH
never bids on it; one without a reference rate bids without the fee check and is recorded with
no net."""

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
from demand_response.contract import DemandReduction, Status
from demand_response.results import ResultsFile, money
from demand_response.token import Erc20, deploy_test_usd, mint_test_usd
from demand_response.utility import deploy

pytestmark = pytest.mark.slow

CAP = 512_000  # 0.512 TUSD/kWh (a multiple of the 128 ticks: step 0.004 TUSD/kWh)


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=6)


@pytest.fixture(scope="module")
def w3(node: devchain.DevChain) -> Web3:
    return connect(node.url)


def _consumer(tmp: Path, node: devchain.DevChain, dr: DemandReduction, index: int, start: int, name: str,
              bids: dict, **env: str) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / "bids.json").write_text(json.dumps(bids))
    return Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", str(index),
         "--bids-file", str(folder / "bids.json"), "--results-file", str(tmp / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / "consumer.log", env=dr_env(**env),
    )


def test_a_household_sends_one_transaction_in_a_usdc_open_market_and_is_paid_in_usdc(
        tmp_path: Path, node: devchain.DevChain, w3: Web3) -> None:
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    utility_signer = Signer(w3, w3.eth.accounts[0])
    dr = deploy(settings, utility_signer, node.chain_id)
    usd = deploy_test_usd(utility_signer)
    mint_test_usd(utility_signer, usd.address, utility_signer.address, 1_000 * 10**6)
    start = w3.eth.block_number
    usdc_bids = {"version": 1, "currency": "TUSD", "bids": [{"kw": 2, "price": "0.30 TUSD/kWh"}]}
    homes = {
        "rated": _consumer(tmp_path, node, dr, 1, start, "rated", usdc_bids, USD_PER_ETH="3000"),
        "unrated": _consumer(tmp_path, node, dr, 2, start, "unrated",
                             {"version": 1, "currency": "TUSD", "bids": [{"kw": 1, "price": "0.2"}]}),
        "in-eth": _consumer(tmp_path, node, dr, 3, start, "in-eth",
                            {"version": 1, "bids": [{"kw": 1, "price": "0.0001"}]}, USD_PER_ETH="3000"),
    }
    utility = Daemon(["utility", "run", "--rpc-url", node.url, "--contract", dr.address,
                      "--state-dir", str(tmp_path / "utility"), "--poll-interval", "0.25"],
                     tmp_path, tmp_path / "utility.log", env=dr_env())
    households = [w3.eth.accounts[i] for i in (1, 2, 3)]
    nonces = [w3.eth.get_transaction_count(a) for a in households]
    before = [usd.balance_of(a) for a in households]
    try:
        for home in homes.values():
            home.wait_for("listening for requests")
        utility.wait_for("utility: watching")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        rid, _ = dr.request_reduction(utility_signer, 6000, now + 8, now + 8 + 3600, now + 8, CAP,
                                      token=usd.address)
        homes["rated"].wait_for(f"on request {rid} (tx")
        homes["unrated"].wait_for(f"on request {rid} (tx")
        homes["in-eth"].wait_for(f"not bidding on request {rid}: it pays in TUSD, but our bids are priced in ETH")
        utility.wait_for(f"request {rid}: winners selected", timeout=30)
        utility.wait_for(f"request {rid}: paid 2 winning bid(s) 0.9 TUSD directly", timeout=20)
        utility.wait_for("withdrew refund", timeout=20)
        results = ResultsFile(tmp_path / "results.json")
        wait_until(lambda: len(results.records()) == 2, timeout=60, what="two results")
    finally:
        codes = [h.stop() for h in homes.values()] + [utility.stop()]
    assert codes == [0, 0, 0, 0]

    info = dr.get_request(rid)
    assert info.status == Status.SETTLED and info.in_token and info.clearing_price == 300_000
    # One transaction each (the bid) for the bidders, none for the household priced in ETH.
    assert [w3.eth.get_transaction_count(a) - n for a, n in zip(households, nonces)] == [1, 1, 0]
    assert [usd.balance_of(a) - b for a, b in zip(households, before)] == [600_000, 300_000, 0]
    assert Erc20(w3, usd.address).balance_of(dr.address) == 0  # the utility withdrew its refund
    assert usd.balance_of(utility_signer.address) == 1_000 * 10**6 - 900_000
    assert "request {} pays in TUSD but gas is paid in ETH: without USD_PER_ETH".format(rid) in homes["unrated"].output()

    records = {r["label"]: r for r in ResultsFile(tmp_path / "results.json").records()}
    rated, unrated = records["rated"], records["unrated"]
    assert rated["currency"] == "TUSD" and rated["currency_decimals"] == 6 and rated["token"] == usd.address
    assert rated["paid_units"] == 600_000 and "paid_wei" not in rated
    bid = w3.eth.get_transaction_receipt(rated["bid_txs"][0])
    assert rated["gas_wei"] == bid["gasUsed"] * bid["effectiveGasPrice"]
    # gas in TUSD at 3000 USD/ETH, rounded up to the micro-dollar; net = paid − gas
    assert rated["gas_units"] == -(-rated["gas_wei"] * 3000 * 10**6 // 10**18)
    assert rated["net_units"] == 600_000 - rated["gas_units"]
    assert unrated["paid_units"] == 300_000 and unrated["gas_wei"] > 0
    assert unrated["gas_units"] is None and unrated["net_units"] is None  # never a net that mixes currencies
    assert money(unrated).net is None and money(rated).net == rated["net_units"]
    assert "request {}: paid 0.6 TUSD, gas 0.".format(rid) in homes["rated"].output()

    shown = run_dr(["consumer", "results", "--results-file", str(tmp_path / "results.json")], tmp_path,
                   env=dr_env(USD_PER_ETH="3000"))
    assert shown.returncode == 0, shown.stderr
    assert "0.6 TUSD" in shown.stdout and "0.3 TUSD" in shown.stdout and " ETH" in shown.stdout
    assert "total TUSD" in shown.stdout
