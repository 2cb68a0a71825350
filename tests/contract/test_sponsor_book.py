"""sponsorBook (issue 15): the utility (or anyone) pays ahead for the first write of a request's
book slots, so that no bidder pays 22,100 gas for being the first at its slot.

The sentinel it writes is no volume: a sponsored book must settle exactly like an unsponsored
one (the same bids on both, and market.py agrees), `book()` and queue positions never show
it, and sponsoring is refused once bidding is closed.
"""

from __future__ import annotations

import random

import pytest

from conftest import CAP, Env
from demand_response import market
from demand_response.contract import ALL_BOOK_SLOTS, RequestInfo

TICK = CAP // 128


def _request(env: Env, target: int, rule: int = 0) -> int:
    return env.request(target=target, rule=rule, budget=10**18)


def _place(env: Env, rid: int, plan: list[tuple[int, list[int], list[int]]], cancel: list[tuple[int, list[int]]]) -> None:
    for who, watts, ticks in plan:
        env.dr.submit_bids(env.consumers[who], rid, watts, [t * TICK for t in ticks])
    for who, ids in cancel:
        env.dr.cancel_bids(env.consumers[who], rid, ids)


def _outcome(env: Env, rid: int) -> tuple:
    r = env.dr.get_request(rid)
    figures = (r.clearing_price, r.accepted_watts, r.reserved, r.paid_out, r.claimed_watts, r.bid_count)
    bids = [(b.bid_id, b.bidder, b.watts, b.price, b.cancelled, b.claimed, b.accepted_watts, b.payout)
            for b in env.dr.all_bids(rid)]
    return figures, bids


def _random_plan(seed: int) -> tuple[list[tuple[int, list[int], list[int]]], list[tuple[int, list[int]]]]:
    """Bids of 6 consumers at ticks over the whole book (lanes 0 and 4 included), two withdrawn."""
    rng = random.Random(seed)
    plan = []
    for who in range(6):
        n = rng.randint(1, 5)
        plan.append((who, [rng.randint(100, 3000) for _ in range(n)],
                     [rng.choice([1, 5, 6, 10, 64, 125, 126, 128, rng.randint(1, 128)]) for _ in range(n)]))
    return plan, [(0, [0]), (3, [3 * 64])]


@pytest.mark.parametrize(("rule", "target"), [(0, 4_000), (1, 1_000_000)],
                         ids=["uniform, target met", "pay-as-bid, short of the target"])
def test_a_sponsored_book_settles_exactly_like_an_unsponsored_one(env: Env, rule: int, target: int) -> None:
    plan, cancel = _random_plan(seed=target + rule)
    plain, sponsored = _request(env, target, rule), _request(env, target, rule)
    env.dr.sponsor_book(env.utility, sponsored)
    for rid in (plain, sponsored):
        _place(env, rid, plan, cancel)
    assert env.dr.book(sponsored) == env.dr.book(plain)
    env.advance(301)
    for rid in (plain, sponsored):
        env.dr.select_winners(env.utility, rid)
        env.dr.claim_and_pay(env.utility, rid)
    assert _outcome(env, sponsored) == _outcome(env, plain)

    # market.py, the reference, agrees with the sponsored contract to the wei.
    info: RequestInfo = env.dr.get_request(sponsored)
    bids = [market.Bid(b.bidder, b.watts, b.price, b.cancelled) for b in env.dr.all_bids(sponsored)]
    cleared = market.clear(bids, target, info.event_end - info.event_start, CAP, info.budget, market.PricingRule(rule))
    assert (info.clearing_price, info.accepted_watts, info.reserved) == (
        cleared.clearing_price, cleared.accepted_watts, cleared.reserved)
    assert [(b.accepted_watts, b.payout) for b in env.dr.all_bids(sponsored)] == [
        (o.accepted_watts, o.payout) for o in cleared.outcomes]
    assert info.claimed_watts == info.accepted_watts and info.paid_out == cleared.total_payout


def test_the_sentinel_never_shows_in_the_book_or_in_queue_positions(env: Env) -> None:
    rid = _request(env, target=2_500)
    receipt = env.dr.sponsor_book(env.utility, rid)
    event = env.dr.contract.events.BookSponsored().process_receipt(receipt)[0]["args"]
    assert (event["requestId"], event["sponsor"], event["slotMask"]) == (rid, env.utility.address, ALL_BOOK_SLOTS)
    assert env.dr.book(rid) == [0] * 128
    # Lane 4 of a slot (ticks 5, 10, ..., 125) sits just under the sentinel's bits.
    a, b, c = env.consumers[:3]
    env.dr.submit_bids(a, rid, [1000], [5 * TICK])
    env.dr.submit_bids(b, rid, [2000], [5 * TICK])  # queued after a's 1000 W
    env.dr.submit_bids(c, rid, [700], [125 * TICK])
    book = env.dr.book(rid)
    assert book[4] == 3000 and book[124] == 700 and sum(book) == 3700
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    info = env.dr.get_request(rid)
    assert (info.clearing_price, info.accepted_watts) == (5 * TICK, 2500)
    # b's bid starts at queue position 1000 (not 2^255 + 1000): 1500 of its 2000 W are accepted.
    assert [x.accepted_watts for x in env.dr.all_bids(rid)] == [1000, 1500, 0]


def test_the_first_bidder_at_a_sponsored_slot_pays_what_a_later_one_does(env: Env) -> None:
    rid = _request(env, target=50_000)
    env.dr.sponsor_book(env.utility, rid, slot_mask=1)  # slot 0 only: ticks 1..5
    a, b, c = env.consumers[:3]
    first_sponsored = env.dr.submit_bids(a, rid, [1000], [2 * TICK])["gasUsed"]
    first_unsponsored = env.dr.submit_bids(b, rid, [1000], [7 * TICK])["gasUsed"]  # slot 1, from zero
    later = env.dr.submit_bids(c, rid, [1000], [8 * TICK])["gasUsed"]  # slot 1, now non-zero
    assert first_unsponsored - first_sponsored == 17_100  # a zero-to-non-zero write vs a rewrite
    assert abs(first_sponsored - later) < 100  # the same work but for the calldata and queue


def test_sponsoring_is_refused_once_bidding_is_closed_or_the_request_is_not_open(env: Env) -> None:
    fn = env.dr.functions
    rid = _request(env, target=1_000)
    assert env.expect_error("UnknownRequest", fn.sponsorBook(rid + 1, ALL_BOOK_SLOTS)) == (rid + 1,)
    assert env.expect_error("BadSlotMask", fn.sponsorBook(rid, 0)) == (0,)
    assert env.expect_error("BadSlotMask", fn.sponsorBook(rid, 1 << 26)) == (1 << 26,)
    cancelled = _request(env, target=1_000)
    env.dr.cancel_request(env.utility, cancelled)
    assert env.expect_error("RequestNotOpen", fn.sponsorBook(cancelled, 1)) == (cancelled,)
    env.dr.submit_bids(env.consumers[0], rid, [1000], [TICK])
    env.advance(301)
    deadline = env.dr.get_request(rid).bidding_deadline
    assert env.expect_error("BiddingClosed", fn.sponsorBook(rid, ALL_BOOK_SLOTS)) == (deadline,)
    env.dr.select_winners(env.utility, rid)
    assert env.expect_error("RequestNotOpen", fn.sponsorBook(rid, ALL_BOOK_SLOTS)) == (rid,)


def test_sponsoring_twice_or_by_anyone_is_harmless(env: Env) -> None:
    rid = _request(env, target=3_000)
    stranger = env.consumers[9]
    env.dr.submit_bids(env.consumers[0], rid, [1200], [3 * TICK])
    first = env.dr.sponsor_book(stranger, rid)["gasUsed"]
    again = env.dr.sponsor_book(env.utility, rid)["gasUsed"]
    assert again < first - 24 * 19_000  # only reads: every empty slot was written the first time
    assert env.dr.book(rid)[2] == 1200 and sum(env.dr.book(rid)) == 1200
    env.dr.submit_bids(env.consumers[1], rid, [2500], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    assert [x.accepted_watts for x in env.dr.all_bids(rid)] == [1200, 1800]
    assert env.w3.eth.get_balance(env.dr.address) >= env.dr.get_request(rid).reserved
