"""The contract and market.py agree to the base unit on random markets (hypothesis, real
anvil), in ether and in a 6-decimal stablecoin (TestUSD).

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
from demand_response.token import Erc20, deploy_test_usd, mint_test_usd

TICK = CAP // 128
#: In the stablecoin: 0.499968 TUSD per kWh (a tick of 3,906 base units).
TOKEN_CAP = 128 * 3_906
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
    utility = Signer(w3, w3.eth.accounts[0])
    dr = DemandReduction.deploy(utility)
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, 10**15)
    usd.approve(utility, dr.address, 10**15)
    yield node, w3, dr, usd
    node.stop()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=market_case, in_token=st.booleans())
def test_contract_matches_reference_clearing(anvil_market, case: dict, in_token: bool) -> None:
    chain, w3, dr, usd = anvil_market
    snap = chain.rpc("evm_snapshot")
    try:
        _run_case(chain, w3, dr, case, usd if in_token else None)
    finally:
        chain.rpc("evm_revert", [snap])


def _run_case(chain, w3, dr: DemandReduction, case: dict, usd: Erc20 | None = None) -> None:
    """One market in ether, or (``usd``) in the stablecoin: the same checks, to the base unit."""
    cap = TOKEN_CAP if usd else CAP
    tick = cap // 128
    token = usd.address if usd else None
    accounts = w3.eth.accounts
    utility = Signer(w3, accounts[0])
    consumers = [Signer(w3, a) for a in accounts[1:7]]
    chain.rpc("evm_mine", [])  # after evm_revert the latest block can lag wall-clock time
    now = w3.eth.get_block("latest")["timestamp"]
    duration = case["duration"]
    budget = required_budget(case["target"], duration, cap) + case["extra_budget"] // (10**9 if usd else 1)
    rid, _ = dr.request_reduction(utility, case["target"], now + 400, now + 400 + duration, now + 300, cap,
                                  case["rule"], budget, token=token)

    reference: list[Bid] = []  # in bid id order
    ids: list[int] = []
    for who, bids, withdraw in case["submissions"]:
        signer = consumers[who]
        ticks = [1 + t % 3 if case["narrow_prices"] else t for _, t in bids]
        receipt = dr.submit_bids(signer, rid, [w for w, _ in bids], [t * tick for t in ticks])
        first = dr.contract.events.BidsSubmitted().process_receipt(receipt)[0]["args"]["firstBidId"]
        gone = [first + i for i in range(len(bids)) if withdraw[i]]
        if gone:
            dr.cancel_bids(signer, rid, gone)
        for i, ((w, _), t) in enumerate(zip(bids, ticks)):
            reference.append(Bid(signer.address, w, t * tick, cancelled=withdraw[i]))
            ids.append(first + i)

    expected = clear(reference, case["target"], duration, cap, budget, case["rule"])
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

    owed_before = {c.address: dr.owed(c.address, token) for c in consumers}
    if ids:
        dr.claim(utility, rid, ids)
    utility_owed = dr.owed(utility.address, token)
    assert utility_owed == expected.refund + (expected.dust if expected.accepted_watts else 0)
    for c in consumers:
        mine = sum(o.payout for b, o in zip(reference, expected.outcomes) if b.bidder == c.address)
        assert dr.owed(c.address, token) - owed_before[c.address] == mine
    # Nothing created or lost: after everyone withdraws, the request leaves no base unit behind.
    for signer in consumers + [utility]:
        if dr.owed(signer.address, token):
            dr.withdraw(signer, token)
    assert w3.eth.get_balance(dr.address) == 0
    if usd:
        assert usd.balance_of(dr.address) == 0
