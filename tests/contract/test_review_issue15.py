"""A hostile review of issue 15's contract changes (docs/security.md, F-16 and after).

The claims' slot re-pack (slot 2 written in one assembly store at selection), the book
sponsorship marker (bit 255 of placed-book slots) and claimAndPay's one-event-per-payment,
each tried against a real anvil chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi import encode
from web3 import Web3

from conftest import CAP, Env
from demand_response import payments
from demand_response.compiler import compile_file
from demand_response.contract import ALL_BOOK_SLOTS

TICK = CAP // 128
_CONTRACTS = Path(__file__).parent.parent / "contracts"


@pytest.fixture(scope="module")
def two_faced() -> dict:
    """A bidder that accepts ether while a node estimates gas and burns it when mined."""
    return compile_file(_CONTRACTS / "TwoFaced.sol")["TwoFacedBidder"]


def _contract_bid(env: Env, bidder, rid: int, watts: int, tick: int) -> None:
    env.utility.send(bidder.functions.bid(rid, [watts], [tick * TICK]).build_transaction(
        {"from": env.utility.address}))


def test_f16_recipients_that_accept_only_while_estimated_cannot_void_the_utilitys_batch(
        env: Env, two_faced: dict) -> None:
    """Two winners whose receive() is cheap under eth_estimateGas (gas price 0) and burns its
    PAY_GAS when mined, then is credited (a zero-to-non-zero write): the batch needs ~70,000
    gas more than estimated. Before the fix the wrapper's limit (estimate + 40,000) ran out,
    the whole chunk reverted and every honest winner in it had to claim for itself."""
    rid = env.request(target=6000, budget=10**17)
    faced = [env.deploy_extra(two_faced, env.dr.address) for _ in range(2)]
    for bidder in faced:
        _contract_bid(env, bidder, rid, 1000, 2)
    honest = env.consumers[:4]
    for c in honest:
        env.dr.submit_bids(c, rid, [1000], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    before = [env.w3.eth.get_balance(c.address) for c in honest]
    paid = payments.pay_winners(env.dr, env.utility, rid)
    assert (paid.sent, paid.deferred) == (4, 2)
    assert [env.w3.eth.get_balance(c.address) - b for c, b in zip(honest, before)] == [
        env.dr.outcome_of(rid, c.address)[1] for c in honest]
    assert [env.dr.owed(f.address) for f in faced] == [env.dr.outcome_of(rid, f.address)[1] for f in faced]
    assert env.dr.unpaid_winning_bids(rid) == []


def test_f17_events_a_recipient_forges_in_the_batch_are_not_counted_as_payments(
        env: Env, two_faced: dict) -> None:
    """web3's process_receipt decodes every log of the receipt whose topics match, whatever
    contract emitted it; a paid winner contract can emit PayoutSent/PaymentDeferred lookalikes
    in its receive(). Before the fix pay_winners (the utility daemon's log line) counted them."""
    forger_artifact = compile_file(_CONTRACTS / "TwoFaced.sol")["ForgingBidder"]
    rid = env.request(target=3000, budget=10**17)
    forger = env.deploy_extra(forger_artifact, env.dr.address)
    _contract_bid(env, forger, rid, 1000, 2)
    env.dr.submit_bids(env.consumers[0], rid, [2000], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    paid = payments.pay_winners(env.dr, env.utility, rid)
    owed = sum(env.dr.outcome_of(rid, a)[1] for a in (forger.address, env.consumers[0].address))
    assert (paid.sent, paid.sent_wei, paid.deferred, paid.deferred_wei) == (2, owed, 0, 0)
