"""The contract and market.py agree to the wei on random markets (hypothesis, real anvil).

It runs on anvil for speed; ganache gives the same EVM results (tests/contract/test_gas.py pins
identical gas on both, and tests/contract/test_contract.py runs on ganache). Each example posts a request, places random bids from several consumers (with ties and
withdrawals), settles, claims everything and withdraws, then compares every bid's
accepted watts and payout, the clearing price, the reserve, the refund and the dust with
the reference clearing, and checks that no wei was created or lost.

CI runs DR_MARKET_EXAMPLES (default 100) examples; the long run is documented in
docs/contract.md (DR_MARKET_EXAMPLES=5000).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CAP
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction
from demand_response.market import Bid, PricingRule, clear, required_budget

TICK = CAP // 128
EXAMPLES = int(os.environ.get("DR_MARKET_EXAMPLES", "100"))

bid_strategy = st.tuples(st.integers(1, 20_000), st.integers(1, 128))
submission = st.tuples(
    st.integers(0, 5),  # which consumer
    st.lists(bid_strategy, min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=6, max_size=6),  # which of these bids get withdrawn
)
market_case = st.fixed_dictionaries(
    {
        "target": st.integers(1, 60_000),
        "duration": st.integers(1, 4 * 3600),
        "rule": st.sampled_from([PricingRule.UNIFORM, PricingRule.PAY_AS_BID]),
        "extra_budget": st.integers(0, 10**15),
        "submissions": st.lists(submission, min_size=0, max_size=7),
        "narrow_prices": st.booleans(),  # squeeze prices into 3 ticks to force ties
    }
)


@pytest.fixture(scope="module")
def anvil_market(tmp_path_factory: pytest.TempPathFactory):
    """Its own anvil: same EVM results as ganache (test_gas pins both), about 5x faster."""
    node = devchain.start("anvil", accounts=8, balance_eth=1_000_000,
                          log_path=tmp_path_factory.mktemp("prop") / "anvil.log")
    w3 = connect(node.url)
    dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    yield node, w3, dr
    node.stop()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=market_case)
def test_contract_matches_reference_clearing(anvil_market, case: dict) -> None:
    chain, w3, dr = anvil_market
    snap = chain.rpc("evm_snapshot")
    try:
        _run_case(chain, w3, dr, case)
    finally:
        chain.rpc("evm_revert", [snap])


def _run_case(chain, w3, dr: DemandReduction, case: dict) -> None:
    accounts = w3.eth.accounts
    utility = Signer(w3, accounts[0])
    consumers = [Signer(w3, a) for a in accounts[1:7]]
    chain.rpc("evm_mine", [])  # after evm_revert the latest block can lag wall-clock time
    now = w3.eth.get_block("latest")["timestamp"]
    duration = case["duration"]
    budget = required_budget(case["target"], duration, CAP) + case["extra_budget"]
    rid, _ = dr.request_reduction(utility, case["target"], now + 400, now + 400 + duration, now + 300, CAP,
                                  case["rule"], budget)

    reference: list[Bid] = []  # in bid id order
    ids: list[int] = []
    for who, bids, withdraw in case["submissions"]:
        signer = consumers[who]
        ticks = [1 + t % 3 if case["narrow_prices"] else t for _, t in bids]
        receipt = dr.submit_bids(signer, rid, [w for w, _ in bids], [t * TICK for t in ticks])
        first = dr.contract.events.BidsSubmitted().process_receipt(receipt)[0]["args"]["firstBidId"]
        gone = [first + i for i in range(len(bids)) if withdraw[i]]
        if gone:
            dr.cancel_bids(signer, rid, gone)
        for i, ((w, _), t) in enumerate(zip(bids, ticks)):
            reference.append(Bid(signer.address, w, t * TICK, cancelled=withdraw[i]))
            ids.append(first + i)

    expected = clear(reference, case["target"], duration, CAP, budget, case["rule"])
    chain.rpc("evm_increaseTime", [301])
    chain.rpc("evm_mine", [])
    receipt = dr.select_winners(utility, rid)
    event = dr.contract.events.WinnersSelected().process_receipt(receipt)[0]["args"]
    assert (event["clearingPriceWeiPerKWh"], event["acceptedWatts"], event["totalPayout"], event["refund"]) == (
        expected.clearing_price, expected.accepted_watts, expected.reserved, expected.refund)
    if sum(b.watts for b in reference if not b.cancelled) >= case["target"]:
        assert expected.accepted_watts == case["target"]  # never under- or over-procured

    on_chain = dr.get_bids(rid)
    assert [b.bid_id for b in on_chain] == ids
    assert [(b.accepted_watts, b.payout) for b in on_chain] == [
        (o.accepted_watts, o.payout) for o in expected.outcomes]

    owed_before = {c.address: dr.owed(c.address) for c in consumers}
    if ids:
        dr.claim(utility, rid, ids)
    utility_owed = dr.owed(utility.address)
    assert utility_owed == expected.refund + (expected.dust if expected.accepted_watts else 0)
    for c in consumers:
        mine = sum(o.payout for b, o in zip(reference, expected.outcomes) if b.bidder == c.address)
        assert dr.owed(c.address) - owed_before[c.address] == mine
    # Nothing created or lost: after everyone withdraws, the request leaves no wei behind.
    for signer in consumers + [utility]:
        if dr.owed(signer.address):
            dr.withdraw(signer)
    assert w3.eth.get_balance(dr.address) == 0
