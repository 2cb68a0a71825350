"""A sealed (commit–reveal) request settled in the 6-decimal TestUSD, end to end with the
tools a utility and its households run, on a real anvil.

The utility posts it with ``dr utility request --token ... --reveal-window`` (no bond: bonds
are ether only), three household daemons with bids.json priced in TUSD/kWh commit and reveal
(two transactions each, nothing else; a fourth, priced in ETH, says in one line why it takes
no part and sends nothing), ``dr utility run`` selects the winners after the
reveals and pays them in TUSD, and withdraws its refund. Checked to the base unit against
``demand_response.market.clear``: every TUSD balance, the utility's refund, no ether moving
but gas (each account's ether fell by exactly the gas of the transactions it sent), and the
households' results records and ``dr consumer results`` in TUSD.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, run_dr, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import DemandReduction, Status
from demand_response.market import Bid, PricingRule, clear
from demand_response.results import ResultsFile
from demand_response.token import deploy_test_usd, mint_test_usd
from demand_response.utility import deploy

pytestmark = pytest.mark.slow

MINTED = 100 * 10**6  # 100 TUSD
#: (account index, kW, ask): two winners (the second in part) and one loser above the clearing price.
HOMES = {"cheap": (1, 2, "0.20 TUSD/kWh"), "middle": (2, 1.5, "0.30 TUSD/kWh"), "dear": (3, 2, "0.44 TUSD/kWh")}


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=5)


def _consumer(tmp: Path, node: devchain.DevChain, dr: DemandReduction, index: int, start: int, name: str,
              kw: float, price: str) -> Daemon:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    doc = {"version": 1, "bids": [{"kw": kw, "price": price}]}
    if "TUSD" in price:
        doc["currency"] = "TUSD"
    (folder / "bids.json").write_text(json.dumps(doc))
    return Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", str(index),
         "--bids-file", str(folder / "bids.json"), "--results-file", str(tmp / "results.json"),
         "--state-dir", str(folder), "--from-block", str(start), "--label", name],
        tmp, folder / "consumer.log", env=dr_env(USD_PER_ETH="3000", BID_MARGIN="0"),
    )


def _gas_spent(w3: Web3, account: str, first_block: int) -> int:
    """Wei ``account`` paid in gas for every transaction it sent from ``first_block`` on."""
    spent = 0
    for number in range(first_block, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == account:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                spent += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return spent


def test_a_sealed_request_in_tusd_is_committed_revealed_and_paid_in_tusd_to_the_base_unit(
        tmp_path: Path, node: devchain.DevChain) -> None:
    w3 = connect(node.url)
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    utility = Signer(w3, w3.eth.accounts[0])
    dr = deploy(settings, utility, node.chain_id)
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, MINTED)
    start = w3.eth.block_number + 1
    accounts = [utility.address] + [w3.eth.accounts[i] for i, _, _ in HOMES.values()]
    ether_before = {a: w3.eth.get_balance(a) for a in accounts}
    nonces = {a: w3.eth.get_transaction_count(a) for a in accounts}
    homes = {name: _consumer(tmp_path, node, dr, i, start, name, kw, price) for name, (i, kw, price) in HOMES.items()}
    in_eth = _consumer(tmp_path, node, dr, 4, start, "in-eth", 1, "0.0001")  # priced in ETH: no part
    daemon = Daemon(["utility", "run", "--rpc-url", node.url, "--contract", dr.address,
                     "--state-dir", str(tmp_path / "utility"), "--poll-interval", "0.25"],
                    tmp_path, tmp_path / "utility.log", env=dr_env())
    try:
        for home in [*homes.values(), in_eth]:
            home.wait_for("listening for requests")
        daemon.wait_for("utility: watching")
        posted = run_dr(["utility", "request", "--rpc-url", node.url, "--contract", dr.address, "--token", usd.address,
                         "--target-kw", "3", "--bidding-window", "10", "--reveal-window", "12", "--event-delay", "12",
                         "--event-duration", "3600", "--max-price", "0.512 TUSD/kWh", "--budget", "5 TUSD"],
                        tmp_path)
        assert posted.returncode == 0, posted.stderr
        assert "Budget escrowed 5 TUSD" in posted.stdout and " ETH" not in posted.stdout, posted.stdout
        rid = int(re.search(r"request (\d+) posted", posted.stdout).group(1))
        for home in homes.values():
            home.wait_for(f"revealed 1 bid(s) on request {rid}", timeout=60)
        in_eth.wait_for(f"not bidding on request {rid}: it pays in TUSD, but our bids are priced in ETH")
        daemon.wait_for(f"request {rid}: winners selected", timeout=60)
        daemon.wait_for(f"request {rid}: paid 2 winning bid(s) 0.9 TUSD directly", timeout=60)
        daemon.wait_for("withdrew refund 4.1 TUSD", timeout=60)
        results = ResultsFile(tmp_path / "results.json")
        wait_until(lambda: len(results.records()) == 3, timeout=60, what="three results records")
    finally:
        codes = [h.stop() for h in [*homes.values(), in_eth]] + [daemon.stop()]
    assert codes == [0, 0, 0, 0, 0]

    info = dr.get_request(rid)
    terms = dr.terms_of(rid)
    assert info.status == Status.SETTLED and info.in_token and info.token == usd.address
    assert terms.sealed and terms.bond_wei == 0 and info.budget == 5 * 10**6
    # The reference clearing on the revealed bids, in TUSD base units.
    revealed = [Bid(w3.eth.accounts[i], int(kw * 1000), price) for i, kw, price in
                ((1, 2, 200_000), (2, 1.5, 300_000), (3, 2, 440_000))]
    expected = clear(revealed, 3000, 3600, 512_000, 5 * 10**6, PricingRule.UNIFORM)
    assert info.clearing_price == expected.clearing_price == 300_000
    paid = {bid.bidder: outcome.payout for bid, outcome in zip(revealed, expected.outcomes)}
    assert list(paid.values()) == [600_000, 300_000, 0]
    for name, (i, _, _) in HOMES.items():
        who = w3.eth.accounts[i]
        assert usd.balance_of(who) == paid[who], name
    # The utility has its budget back but what it paid; the market holds nothing.
    assert usd.balance_of(utility.address) == MINTED - expected.total_payout
    assert (expected.refund, expected.dust) == (4_100_000, 0)  # the "withdrew refund 4.1 TUSD" above
    assert usd.balance_of(dr.address) == 0 and w3.eth.get_balance(dr.address) == 0
    # No ether moved but gas: every account is poorer by exactly the gas it paid.
    for account in accounts:
        assert ether_before[account] - w3.eth.get_balance(account) == _gas_spent(w3, account, start), account
    # A household sends two transactions on a sealed event (commit, reveal), and nothing more.
    assert [w3.eth.get_transaction_count(a) - nonces[a] for a in accounts[1:]] == [2, 2, 2]

    # The household priced in ETH: one line saying why, no transaction, no record, no figure.
    eth_home = w3.eth.accounts[4]
    assert in_eth.output().count(f"not bidding on request {rid}") == 1
    assert w3.eth.get_transaction_count(eth_home) == 0 and usd.balance_of(eth_home) == 0

    records = {r["label"]: r for r in ResultsFile(tmp_path / "results.json").records()}
    assert sorted(records) == sorted(HOMES)
    for name, (i, _, _) in HOMES.items():
        record, who = records[name], w3.eth.accounts[i]
        assert record["request_id"] == rid and record["currency"] == "TUSD" and record["currency_decimals"] == 6
        assert record["token"] == usd.address and record["paid_units"] == paid[who] and "paid_wei" not in record
        assert record["gas_wei"] == _gas_spent(w3, who, start), name
        assert record["net_units"] == paid[who] - record["gas_units"], name
    shown = run_dr(["consumer", "results", "--results-file", str(tmp_path / "results.json")], tmp_path,
                   env=dr_env(USD_PER_ETH="3000"))
    assert shown.returncode == 0, shown.stderr
    assert "request {}: paid 0.6 TUSD directly by claimAndPay".format(rid) in homes["cheap"].output()
    assert "0.6 TUSD" in shown.stdout and "0.3 TUSD" in shown.stdout and "total TUSD" in shown.stdout, shown.stdout
    assert "in-eth" not in shown.stdout
