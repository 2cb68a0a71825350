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


# ------------------------------------------------------------------ raw storage helpers

SPONSORED = 1 << 255
U40, U48, U96 = 2**40 - 1, 2**48 - 1, 2**96 - 1


def _word(env: Env, slot: int) -> int:
    return int.from_bytes(env.w3.eth.get_storage_at(env.dr.address, slot), "big")


def _set_word(env: Env, slot: int, value: int) -> None:
    """Write a storage word of the market (ganache's call; anvil's is anvil_setStorageAt)."""
    env.chain.rpc("evm_setAccountStorageAt", [env.dr.address, hex(slot), "0x" + value.to_bytes(32, "big").hex()])


def _mapping_entry(env: Env, key: int, found) -> int:
    """The storage slot keccak(key, p) of the first mapping slot p whose entry satisfies ``found``."""
    for p in range(64):
        slot = int.from_bytes(Web3.keccak(encode(["uint256", "uint256"], [key, p])), "big")
        if found(_word(env, slot)):
            return slot
    raise AssertionError("mapping entry not found in the first 64 slots")


def _claims_slot(env: Env, rid: int) -> dict[str, int]:
    """Request slot 2, decoded at the bit offsets selection's assembly store writes."""
    deadline = env.dr.get_request(rid).bidding_deadline
    w = _word(env, _mapping_entry(env, rid, lambda word: word and word & U40 == deadline) + 2)
    return {"accepted": w & U40, "tick": w >> 40 & 0xFF, "marginal": w >> 48 & U48,
            "claimed": w >> 96 & U40, "unpaid": w >> 136 & U96, "above": w >> 232}


def _dust_events(env: Env, receipts: list[dict]) -> list[int]:
    return [e["args"]["amount"] for r in receipts for e in env.dr.events_in(r, "DustReturned")]


def test_the_claims_slot_is_written_at_solidity_offsets_and_the_dust_is_paid_once_at_the_last_watt(
        env: Env) -> None:
    """Pay-as-bid, a partly accepted marginal bid and a 7 s event (so payouts round down):
    the one-store slot decodes to what getRequest reports at every step, paidOut stays
    reserved - unpaid, and the dust goes to the utility once, with the last accepted watt."""
    rid = env.request(target=2500, duration=7, rule=1, budget=10**17)
    c = env.consumers
    for who, watts, tick in ((0, 1000, 2), (1, 1000, 2), (2, 1001, 3), (3, 777, 5)):
        env.dr.submit_bids(c[who], rid, [watts], [tick * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    info = env.dr.get_request(rid)
    slot = _claims_slot(env, rid)
    # tick 2 holds 2000 W; 500 of c2's 1001 W at tick 3 (queue positions 0..499) are accepted.
    assert slot == {"accepted": 2500, "tick": 3, "marginal": 500, "claimed": 0, "unpaid": info.reserved, "above": 0}
    assert (info.accepted_watts, info.clearing_price, info.paid_out, info.claimed_watts) == (2500, 3 * TICK, 0, 0)
    payouts = [b.payout for b in env.dr.all_bids(rid)]
    assert [b.accepted_watts for b in env.dr.all_bids(rid)] == [1000, 1000, 500, 0]
    dust = info.reserved - sum(payouts)
    assert dust > 0  # the case under test: rounding left something
    owed_before = env.dr.owed(env.utility.address)

    receipts = [env.dr.claim(c[0], rid, [0])]
    info, slot = env.dr.get_request(rid), _claims_slot(env, rid)
    assert (slot["claimed"], slot["unpaid"]) == (1000, info.reserved - payouts[0])
    assert (info.claimed_watts, info.paid_out) == (1000, payouts[0])
    receipts += env.dr.claim_and_pay(env.consumers[9], rid, [64])
    assert _dust_events(env, receipts) == []  # 500 accepted watts are still unpaid
    receipts += env.dr.claim_and_pay(env.consumers[9], rid)
    receipts += [env.dr.claim(c[3], rid, [192])]  # the loser closes its bid: no second dust
    receipts += env.dr.claim_and_pay(env.consumers[9], rid, [0, 64, 128, 192])  # all claimed: nothing
    assert _dust_events(env, receipts) == [dust]
    assert env.dr.owed(env.utility.address) - owed_before == dust
    info, slot = env.dr.get_request(rid), _claims_slot(env, rid)
    assert slot == {"accepted": 2500, "tick": 3, "marginal": 500, "claimed": 2500, "unpaid": dust, "above": 0}
    assert (info.claimed_watts, info.paid_out) == (2500, sum(payouts))
    assert env.w3.eth.get_balance(env.dr.address) == sum(env.dr.owed(a) for a in env.w3.eth.accounts)


def test_lane_4_at_its_48_bit_limit_under_the_sponsor_marker_neither_overflows_nor_moves_the_clearing(
        env: Env) -> None:
    """The marker sits right above lane 4 (tick 5 of slot 0). With that level 1,000 W short of
    2^48 - 1 (set directly: no chain takes 2^24 bids), a bid filling it exactly is placed at the
    right queue position, one more watt reverts PriceLevelFull, the marker and the lane below
    are intact, and selection (with the cancelled side read) sees the lane, not the marker."""
    rid = env.request(target=10_000, budget=10**18)
    env.dr.sponsor_book(env.consumers[8], rid, slot_mask=1)
    placed0 = _mapping_entry(env, rid, lambda word: word == SPONSORED)
    almost = U48 - 1000
    _set_word(env, placed0, SPONSORED | almost << 192)
    c = env.consumers
    env.dr.submit_bids(c[0], rid, [500], [TICK])  # tick 1, lane 0
    env.dr.submit_bids(c[1], rid, [300], [4 * TICK])  # tick 4, lane 3: right under lane 4
    env.dr.submit_bids(c[2], rid, [1000], [5 * TICK])  # fills tick 5 to 2^48 - 1 exactly
    assert env.expect_error("PriceLevelFull", env.dr.functions.submitBids(rid, [1], [5 * TICK]),
                            {"from": c[3].address}) == (5,)
    word = _word(env, placed0)
    assert word >> 255 == 1 and word >> 192 & U48 == U48 and word >> 144 & U48 == 300
    assert env.dr.book(rid)[:5] == [500, 0, 0, 300, U48]
    env.dr.submit_bids(c[3], rid, [200], [2 * TICK])
    env.dr.cancel_bids(c[3], rid, [192])  # selection now reads the cancelled side too
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    slot = _claims_slot(env, rid)
    # 500 + 300 W below tick 5, then 9,200 W of its queue: the real bid at 2^48 - 1001 gets none.
    assert (slot["accepted"], slot["tick"], slot["marginal"]) == (10_000, 5, 9_200)
    assert [b.accepted_watts for b in env.dr.all_bids(rid)] == [500, 300, 0, 0]
