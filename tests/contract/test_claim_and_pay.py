"""claimAndPay (issue 15): winners are paid without sending a transaction.

Anyone claims settled winning bids and the payout goes straight to each bidder; a payment
the recipient refuses (reverts, burns gas, re-enters) falls back to its pull balance, so one
bad recipient blocks nobody; claimed and losing bids are skipped, so a front-running claim
cannot void a batch.
"""

from __future__ import annotations

import pytest

from conftest import CAP, Env
from demand_response import contract as contract_module
from demand_response.contract import Terms
from test_contract import assert_solvent

TICK = CAP // 128
ACCEPT, REVERT, BURN, REENTER, REENTER_PAY = 0, 1, 2, 3, 4


def _settled(env: Env, bids: list[tuple[int, int, int]], target: int = 5000) -> int:
    """A settled request; ``bids`` are (consumer index, watts, tick)."""
    rid = env.request(target=target, budget=10**17)
    for who, watts, tick in bids:
        env.dr.submit_bids(env.consumers[who], rid, [watts], [tick * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    return rid


def _events(env: Env, receipt: dict, name: str) -> list[dict]:
    return [dict(e["args"]) for e in getattr(env.dr.contract.events, name)().process_receipt(receipt)]


def test_a_third_party_pays_every_winner_who_sends_nothing(env: Env) -> None:
    rid = _settled(env, [(0, 2000, 2), (1, 2000, 3), (2, 3000, 4)])
    winners = [env.consumers[i].address for i in range(3)]
    before = [env.w3.eth.get_balance(a) for a in winners]
    nonces = [env.w3.eth.get_transaction_count(a) for a in winners]
    payouts = [env.dr.outcome_of(rid, a)[1] for a in winners]
    assert env.dr.unpaid_winning_bids(rid) == [0, 64, 128]
    (receipt,) = env.dr.claim_and_pay(env.consumers[9], rid)
    assert [env.w3.eth.get_balance(a) - b for a, b in zip(winners, before)] == payouts
    assert [env.w3.eth.get_transaction_count(a) for a in winners] == nonces
    # One event per payment (issue 15): PayoutSent carries the bid, its watts and the amount.
    assert [(e["bidId"], e["bidder"], e["amount"]) for e in _events(env, receipt, "PayoutSent")] == [
        (0, winners[0], payouts[0]), (64, winners[1], payouts[1]), (128, winners[2], payouts[2])]
    assert [e["acceptedWatts"] for e in _events(env, receipt, "PayoutSent")] == [2000, 2000, 1000]
    assert _events(env, receipt, "PayoutCredited") == _events(env, receipt, "PaymentSent") == []
    assert all(env.dr.owed(a) == 0 for a in winners)
    r = env.dr.get_request(rid)
    assert r.claimed_watts == r.accepted_watts == 5000 and r.paid_out == sum(payouts)
    assert env.dr.unpaid_winning_bids(rid) == []
    assert_solvent(env, [rid])


def test_claimed_losing_and_repeated_bids_are_skipped_not_reverted(env: Env) -> None:
    rid = _settled(env, [(0, 2000, 2), (1, 2000, 3), (2, 3000, 9)], target=4000)
    a, b, loser = env.consumers[:3]
    env.dr.claim(a, rid, [0])  # mined first, as a front-runner's claim would be
    before = env.w3.eth.get_balance(b.address)
    (receipt,) = env.dr.claim_and_pay(env.utility, rid, [0, 64, 64, 128])
    assert [e["bidder"] for e in _events(env, receipt, "PayoutSent")] == [b.address]
    assert env.w3.eth.get_balance(b.address) - before == env.dr.outcome_of(rid, b.address)[1]
    # The losing bid was left alone: its bidder may still close it with an ordinary claim.
    assert not env.dr.get_bids(rid)[2].claimed
    env.dr.claim(loser, rid, [128])
    # A's own claim still works as before: credited, then withdrawn.
    assert env.dr.owed(a.address) == env.dr.outcome_of(rid, a.address)[1]
    env.dr.withdraw(a)
    assert_solvent(env, [rid])


def test_a_recipient_that_re_enters_claim_and_pay_is_paid_once(env: Env, hostile: dict) -> None:
    """claimAndPay holds no lock (issue 15's gas target): the re-entry finds the bid claimed."""
    bidder = env.deploy_extra(hostile, env.dr.address, REENTER_PAY)
    rid = env.request(target=3000, budget=10**17)
    env.utility.send(bidder.functions.bid(rid, [1000], [2 * TICK]).build_transaction({"from": env.utility.address}))
    env.dr.submit_bids(env.consumers[0], rid, [2000], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    (receipt,) = env.dr.claim_and_pay(env.consumers[5], rid)
    mine = env.dr.outcome_of(rid, bidder.address)[1]
    assert [e["bidder"] for e in _events(env, receipt, "PayoutSent")] == [bidder.address, env.consumers[0].address]
    assert env.w3.eth.get_balance(bidder.address) == mine and env.dr.owed(bidder.address) == 0
    assert env.dr.get_request(rid).paid_out == mine + env.dr.outcome_of(rid, env.consumers[0].address)[1]
    assert_solvent(env, [rid])


@pytest.mark.parametrize("mode", [REVERT, BURN, REENTER])
def test_a_recipient_that_refuses_is_credited_and_blocks_nobody(env: Env, hostile: dict, mode: int) -> None:
    bidder = env.deploy_extra(hostile, env.dr.address, mode)
    rid = env.request(target=3000, budget=10**17)
    env.utility.send(bidder.functions.bid(rid, [1000], [2 * TICK]).build_transaction({"from": env.utility.address}))
    honest = env.consumers[0]
    env.dr.submit_bids(honest, rid, [2000], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    before = env.w3.eth.get_balance(honest.address)
    (receipt,) = env.dr.claim_and_pay(env.consumers[5], rid)
    assert receipt["status"] == 1
    owed = env.dr.outcome_of(rid, bidder.address)[1]
    assert _events(env, receipt, "PaymentDeferred") == [{"requestId": rid, "bidder": bidder.address, "amount": owed}]
    # The failed payment is credited as a claim would be, with the bid's figures.
    assert [(e["bidder"], e["amount"]) for e in _events(env, receipt, "PayoutCredited")] == [(bidder.address, owed)]
    assert [e["bidder"] for e in _events(env, receipt, "PayoutSent")] == [honest.address]
    assert env.dr.owed(bidder.address) == owed and env.w3.eth.get_balance(bidder.address) == 0
    assert env.w3.eth.get_balance(honest.address) - before == env.dr.outcome_of(rid, honest.address)[1]
    # A gas-burner costs the batch at most PAY_GAS plus the stipend, never the whole limit.
    assert receipt["gasUsed"] < 150_000
    # Solvent to the wei: the contract holds exactly what it owes (the utility's refund too).
    assert env.w3.eth.get_balance(env.dr.address) == owed + sum(env.dr.owed(a) for a in env.w3.eth.accounts)
    rescue = env.consumers[7].address
    start = env.w3.eth.get_balance(rescue)
    env.utility.send(bidder.functions.pullTo(rescue).build_transaction({"from": env.utility.address}))
    assert env.w3.eth.get_balance(rescue) - start == owed


def test_a_contract_wallet_that_accepts_ether_is_paid_directly(env: Env, hostile: dict) -> None:
    bidder = env.deploy_extra(hostile, env.dr.address, ACCEPT)
    rid = env.request(target=1000, budget=10**17)
    env.utility.send(bidder.functions.bid(rid, [1000], [2 * TICK]).build_transaction({"from": env.utility.address}))
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    env.dr.claim_and_pay(env.utility, rid)
    assert env.w3.eth.get_balance(bidder.address) == env.dr.outcome_of(rid, bidder.address)[1] > 0


def test_claim_and_pay_refuses_unsettled_metered_and_unknown(env: Env) -> None:
    rid = env.request(target=1000, budget=10**17)
    env.dr.submit_bids(env.consumers[0], rid, [1000], [2 * TICK])
    env.expect_error("NotSettled", env.dr.functions.claimAndPay(rid, [0]))
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    env.expect_error("UnknownBid", env.dr.functions.claimAndPay(rid, [1]))
    now = env.now()
    terms = Terms(report_window=600, dispute_window=600, bond_wei=0)
    mid, _ = env.dr.request_reduction_with_terms(env.utility, 1000, now + 400, now + 4000, now + 300, CAP, terms,
                                                 budget=10**17)
    env.dr.submit_bids(env.consumers[1], mid, [1000], [2 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, mid)
    env.expect_error("PaidOnDelivery", env.dr.functions.claimAndPay(mid, [0]))


def test_the_wrapper_sends_large_batches_in_chunks(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract_module, "CLAIM_PAY_CHUNK", 2)
    rid = _settled(env, [(i, 1000, 2 + i) for i in range(5)])
    receipts = env.dr.claim_and_pay(env.utility, rid)
    assert len(receipts) == 3 and all(r["status"] == 1 for r in receipts)
    assert sum(len(_events(env, r, "PayoutSent")) for r in receipts) == 5
    assert env.dr.unpaid_winning_bids(rid) == []
    assert_solvent(env, [rid])
