"""DemandReduction on a real ganache: every state transition, access rule and custom error."""

from __future__ import annotations

import pytest
from web3 import Web3

from conftest import CAP, Env
from demand_response.chain import TransactionFailed
from demand_response.contract import DemandReduction, Status
from demand_response.market import PricingRule

TICK = CAP // 128


def escrow_of(env: Env, request_ids: list[int]) -> int:
    """Wei the contract must still hold for these requests, beyond credited balances."""
    total = 0
    for rid in request_ids:
        r = env.dr.get_request(rid)
        if r.status == Status.OPEN:
            total += r.budget
        elif r.status == Status.SETTLED and r.claimed_watts < r.accepted_watts:
            total += r.reserved - r.paid_out
    return total


def assert_solvent(env: Env, request_ids: list[int]) -> None:
    """Contract balance == everything owed + open escrow, to the wei."""
    owed = sum(env.dr.owed(a) for a in env.w3.eth.accounts)
    assert env.w3.eth.get_balance(env.dr.address) == owed + escrow_of(env, request_ids)


# ------------------------------------------------------------------ deployment and roles


def test_deployer_is_utility_and_transfer_is_two_step(env: Env) -> None:
    dr, old, new = env.dr, env.utility, env.consumers[0]
    assert dr.utility() == old.address
    assert dr.registration_required() is False
    env.expect_error("NotUtility", dr.functions.transferUtility(new.address), {"from": new.address})
    old.send(dr.functions.transferUtility(new.address).build_transaction({"from": old.address}))
    assert dr.functions.pendingUtility().call() == new.address
    assert dr.utility() == old.address  # nothing changes until accepted
    env.expect_error("NotPendingUtility", dr.functions.acceptUtility(), {"from": env.consumers[1].address})
    receipt = new.send(dr.functions.acceptUtility().build_transaction({"from": new.address}))
    event = dr.contract.events.UtilityTransferred().process_receipt(receipt)[0]["args"]
    assert (event["previousUtility"], event["newUtility"]) == (old.address, new.address)
    assert dr.utility() == new.address
    assert dr.functions.pendingUtility().call() == "0x" + "0" * 40
    env.expect_error("NotUtility", dr.functions.requestReduction(1, 2, 3, 1, CAP, 0), {"from": old.address})


def test_registration_calls_refused_in_open_mode(env: Env) -> None:
    c = env.consumers[0].address
    env.expect_error("RegistrationDisabled", env.dr.functions.requestEnrolment(), {"from": c})
    env.expect_error("RegistrationDisabled", env.dr.functions.enrol(c))
    env.expect_error("RegistrationDisabled", env.dr.functions.unenrol(c))


def test_registered_mode_gates_bids_and_events_say_who_asked(env: Env) -> None:
    dr = DemandReduction.deploy(env.utility, registration_required=True)
    env.dr = dr
    asker, invited, outsider = env.consumers[:3]
    rid = env.request()
    env.expect_error("NotEnrolled", dr.functions.submitBids(rid, [1000], [TICK]), {"from": asker.address})

    receipt = dr.request_enrolment(asker)
    assert dr.contract.events.EnrolmentRequested().process_receipt(receipt)[0]["args"]["consumer"] == asker.address
    assert dr.functions.enrolmentOf(asker.address).call() == 1
    env.expect_error("NotUtility", dr.functions.enrol(asker.address), {"from": asker.address})
    on_request = dr.contract.events.ConsumerEnrolled().process_receipt(dr.enrol(env.utility, asker.address))
    unasked = dr.contract.events.ConsumerEnrolled().process_receipt(dr.enrol(env.utility, invited.address))
    assert on_request[0]["args"]["onRequest"] is True
    assert unasked[0]["args"]["onRequest"] is False
    env.expect_error("AlreadyEnrolled", dr.functions.enrol(asker.address))
    env.expect_error("AlreadyEnrolled", dr.functions.requestEnrolment(), {"from": asker.address})
    env.expect_error("ZeroAddress", dr.functions.enrol("0x" + "0" * 40))

    dr.submit_bids(asker, rid, [1000], [TICK])
    dr.submit_bids(invited, rid, [1000], [TICK])
    env.expect_error("NotEnrolled", dr.functions.submitBids(rid, [1000], [TICK]), {"from": outsider.address})

    env.utility.send(dr.functions.unenrol(invited.address).build_transaction({"from": env.utility.address}))
    env.expect_error("NotEnrolled", dr.functions.submitBids(rid, [1000], [TICK]), {"from": invited.address})
    env.expect_error("NotEnrolled", dr.functions.unenrol(invited.address))
    assert dr.get_request(rid).bid_count == 2  # bids placed while enrolled stand


# ------------------------------------------------------------------ requests


def test_request_escrows_budget_and_reports_fields(env: Env) -> None:
    now = env.now()
    budget = 10**18
    rid, receipt = env.dr.request_reduction(env.utility, 50_000, now + 400, now + 4000, now + 300, CAP,
                                            PricingRule.PAY_AS_BID, budget)
    event = env.dr.contract.events.ReductionRequested().process_receipt(receipt)[0]["args"]
    assert dict(event) == {
        "requestId": rid, "targetWatts": 50_000, "eventStart": now + 400, "eventEnd": now + 4000,
        "biddingDeadline": now + 300, "maxPriceWeiPerKWh": CAP, "pricingRule": 1, "budget": budget,
        "token": "0x" + "00" * 20,  # ether
    }
    r = env.dr.get_request(rid)
    assert (r.status, r.rule, r.target_watts, r.duration, r.tick_wei, r.budget, r.bid_count) == (
        Status.OPEN, PricingRule.PAY_AS_BID, 50_000, 3600, TICK, budget, 0)
    assert env.w3.eth.get_balance(env.dr.address) == budget
    assert env.dr.request_count() == rid


@pytest.mark.parametrize(
    "error, args",
    [
        ("ZeroTarget", lambda now: (0, now + 400, now + 500, now + 300, CAP)),
        ("TargetTooLarge", lambda now: (2**64, now + 400, now + 500, now + 300, CAP)),
        ("DeadlineInPast", lambda now: (1, now + 400, now + 500, now - 1, CAP)),
        ("EventBeforeDeadline", lambda now: (1, now + 200, now + 500, now + 300, CAP)),
        ("EmptyEventWindow", lambda now: (1, now + 400, now + 400, now + 300, CAP)),
        ("TimeOutOfRange", lambda now: (1, 2**40, 2**40 + 1, now + 300, CAP)),
        ("TimeOutOfRange", lambda now: (1, now + 400, now + 400 + 2**32, now + 300, CAP)),
        ("ZeroPrice", lambda now: (1, now + 400, now + 500, now + 300, 0)),
        ("CapNotOnTickGrid", lambda now: (1, now + 400, now + 500, now + 300, CAP + 1)),
        ("CapTooLarge", lambda now: (1, now + 400, now + 500, now + 300, 2**64 * 128)),
    ],
)
def test_request_rejects_inconsistent_input(env: Env, error: str, args) -> None:
    env.expect_error(error, env.dr.functions.requestReduction(*args(env.now()), 0))


def test_request_rejects_underfunded_and_oversized_budgets(env: Env) -> None:
    now = env.now()
    call = env.dr.functions.requestReduction(50_000, now + 400, now + 4000, now + 300, CAP, 0)
    required = 50_000 * 3600 * CAP // 3_600_000
    assert env.expect_error("BudgetTooLow", call, {"from": env.utility.address, "value": required - 1}) == (
        required, required - 1)
    call.call({"from": env.utility.address, "value": required})  # exactly enough is fine
    huge = 2**128
    env.chain.rpc("evm_setAccountBalance", [env.utility.address, hex(huge * 2)])
    env.expect_error("BudgetTooLarge", call, {"from": env.utility.address, "value": huge})


def test_cancel_request_refunds_and_closes_bidding(env: Env) -> None:
    rid = env.request(budget=10**17)
    c = env.consumers[0]
    env.dr.submit_bids(c, rid, [1000], [TICK])
    env.expect_error("NotUtility", env.dr.functions.cancelRequest(rid), {"from": c.address})
    receipt = env.dr.cancel_request(env.utility, rid)
    assert env.dr.contract.events.RequestCancelled().process_receipt(receipt)[0]["args"]["refund"] == 10**17
    assert env.dr.get_request(rid).status == Status.CANCELLED
    assert env.dr.owed(env.utility.address) == 10**17
    env.expect_error("RequestNotOpen", env.dr.functions.cancelRequest(rid))
    env.expect_error("RequestNotOpen", env.dr.functions.submitBids(rid, [1], [TICK]), {"from": c.address})
    env.expect_error("RequestNotOpen", env.dr.functions.selectWinners(rid))
    env.expect_error("NotSettled", env.dr.functions.claim(rid, [0]))
    assert_solvent(env, [rid])


def test_cancel_request_after_deadline_is_refused(env: Env) -> None:
    rid = env.request(bidding=30)
    env.advance(31)
    env.expect_error("BiddingClosed", env.dr.functions.cancelRequest(rid))


def test_several_requests_keep_their_own_bids_and_money(env: Env) -> None:
    a = env.request(target=1000, budget=10**16)
    b = env.request(target=2000, budget=2 * 10**16)
    c1, c2 = env.consumers[:2]
    env.dr.submit_bids(c1, a, [600, 600], [TICK, 2 * TICK])
    env.dr.submit_bids(c2, b, [5000], [3 * TICK])
    assert [x.bidder for x in env.dr.get_bids(a)] == [c1.address, c1.address]
    assert [x.bidder for x in env.dr.get_bids(b)] == [c2.address]
    assert env.dr.book(a)[0:2] == [600, 600] and env.dr.book(b)[2] == 5000
    env.advance(400)
    env.dr.select_winners(env.utility, a)
    assert env.dr.get_request(b).status == Status.OPEN
    assert env.dr.get_request(a).accepted_watts == 1000
    assert_solvent(env, [a, b])


# ------------------------------------------------------------------ bids


@pytest.mark.parametrize(
    "error, watts, prices",
    [
        ("LengthMismatch", [1, 2], [TICK]),
        ("NoBids", [], []),
        ("TooManyBids", [1] * 65, [TICK] * 65),
        ("ZeroWatts", [1, 0], [TICK, TICK]),
        ("WattsTooLarge", [2**32], [TICK]),
        ("PriceZero", [1], [0]),
        ("PriceAboveCap", [1], [CAP + TICK]),
        ("PriceOffTick", [1], [TICK + 1]),
    ],
)
def test_submit_rejects_bad_bids(env: Env, error: str, watts: list[int], prices: list[int]) -> None:
    rid = env.request()
    env.expect_error(error, env.dr.functions.submitBids(rid, watts, prices), {"from": env.consumers[0].address})


def test_error_arguments_name_the_offending_bid(env: Env) -> None:
    rid = env.request()
    args = env.expect_error("PriceAboveCap", env.dr.functions.submitBids(rid, [1, 1, 1], [TICK, CAP, 2 * CAP]),
                            {"from": env.consumers[0].address})
    assert args == (2, CAP)


def test_submit_to_unknown_request_and_after_deadline(env: Env) -> None:
    c = env.consumers[0].address
    env.expect_error("UnknownRequest", env.dr.functions.submitBids(99, [1], [TICK]), {"from": c})
    rid = env.request(bidding=30)
    env.advance(31)
    env.expect_error("BiddingClosed", env.dr.functions.submitBids(rid, [1], [TICK]), {"from": c})


def test_max_bids_per_call_is_accepted(env: Env) -> None:
    rid = env.request()
    receipt = env.dr.submit_bids(env.consumers[0], rid, [100] * 64, [TICK * (1 + i % 128) for i in range(64)])
    (event,) = env.dr.contract.events.BidsSubmitted().process_receipt(receipt)  # one per submission
    assert (event["args"]["firstBidId"], event["args"]["count"]) == (0, 64)
    assert env.dr.get_request(rid).bid_count == 64


def test_logged_bid_ids_are_read_from_one_event_per_submission(env: Env) -> None:
    """The wrapper's log readers expand each BidsSubmitted into its ids and drop withdrawn ones."""
    rid = env.request()
    a, b = env.consumers[:2]
    env.dr.submit_bids(a, rid, [100, 200, 300], [TICK, 2 * TICK, 3 * TICK])
    env.dr.submit_bids(b, rid, [400], [TICK])
    call = env.dr.functions.replaceBids(rid, [1], [500, 600], [TICK, 4 * TICK])
    receipt = a.send(call.build_transaction({"from": a.address, "gas": 500_000}))
    (event,) = env.dr.contract.events.BidsSubmitted().process_receipt(receipt)
    assert (event["args"]["bidder"], event["args"]["firstBidId"], event["args"]["count"]) == (a.address, 128, 2)
    env.dr.cancel_bids(a, rid, [128])
    assert env.dr.bid_ids_logged(rid, a.address) == [0, 2, 129]
    assert env.dr.bid_ids_logged_by_bidder(rid) == {a.address: [0, 2, 129], b.address: [64]}


def test_bids_are_readable_by_page_and_by_consumer(env: Env) -> None:
    rid = env.request()
    c1, c2 = env.consumers[:2]
    env.dr.submit_bids(c1, rid, [100, 200, 300, 400, 500], [TICK, 2 * TICK, 3 * TICK, 4 * TICK, 5 * TICK])
    env.dr.submit_bids(c2, rid, [700], [TICK])
    env.dr.submit_bids(c1, rid, [800], [9 * TICK])
    every = env.dr.get_bids(rid)
    assert [(b.bid_id, b.watts, b.price) for b in every] == [
        (0, 100, TICK), (1, 200, 2 * TICK), (2, 300, 3 * TICK), (3, 400, 4 * TICK), (4, 500, 5 * TICK),
        (64, 700, TICK), (128, 800, 9 * TICK)]
    assert [b.bid_id for b in env.dr.get_bids(rid, 1, 1)] == [64]
    assert env.dr.get_bids(rid, 3, 10) == []
    assert [b.bid_id for b in env.dr.bids_of(rid, c1.address)] == [0, 1, 2, 3, 4, 128]
    assert [b.bid_id for b in env.dr.bids_of(rid, c2.address)] == [64]
    env.expect_error("ZeroAddress", env.dr.lens.functions.bidsOf(rid, "0x" + "0" * 40, 0, 10))
    env.expect_error("UnknownRequest", env.dr.lens.functions.getBids(77, 0, 10))


def test_withdraw_and_replace_bids_before_deadline(env: Env) -> None:
    rid = env.request(bidding=60)
    c1, c2 = env.consumers[:2]
    env.dr.submit_bids(c1, rid, [1000, 2000], [TICK, 2 * TICK])
    env.expect_error("NotBidder", env.dr.functions.cancelBids(rid, [0]), {"from": c2.address})
    env.expect_error("UnknownBid", env.dr.functions.cancelBids(rid, [2]), {"from": c1.address})
    env.expect_error("UnknownBid", env.dr.functions.cancelBids(rid, [64]), {"from": c1.address})
    receipt = env.dr.cancel_bids(c1, rid, [0])
    assert env.dr.contract.events.BidCancelled().process_receipt(receipt)[0]["args"]["bidId"] == 0
    env.expect_error("BidAlreadyCancelled", env.dr.functions.cancelBids(rid, [0]), {"from": c1.address})
    assert env.dr.book(rid)[:2] == [0, 2000]
    c1.send(env.dr.functions.replaceBids(rid, [1], [1500], [3 * TICK]).build_transaction({"from": c1.address}))
    assert env.dr.book(rid)[:3] == [0, 0, 1500]
    assert [(b.bid_id, b.cancelled) for b in env.dr.bids_of(rid, c1.address)] == [(0, True), (1, True), (64, False)]
    env.advance(61)
    env.expect_error("BiddingClosed", env.dr.functions.cancelBids(rid, [64]), {"from": c1.address})


# A price level's queue is bounded (2^40 - 1 W): test_security_limits.py fills one to exactly
# that on anvil, refuses the next bid with PriceLevelFull, shows the next level unaffected and
# settles the full level (the same check here on ganache took ~30 s of the suite's budget).


# ------------------------------------------------------------------ selection and payouts


def test_uniform_clearing_accepts_cheapest_and_marginal_in_part(env: Env) -> None:
    rid = env.request(target=5000, duration=3600, budget=10**18)
    a, b, c, d = env.consumers[:4]
    env.dr.submit_bids(a, rid, [2000], [5 * TICK])
    env.dr.submit_bids(b, rid, [2000], [2 * TICK])
    env.dr.submit_bids(c, rid, [2000], [7 * TICK])
    env.dr.submit_bids(d, rid, [2000], [9 * TICK])
    env.expect_error("BiddingStillOpen", env.dr.functions.selectWinners(rid))
    env.advance(301)
    receipt = env.dr.select_winners(env.utility, rid)
    event = env.dr.contract.events.WinnersSelected().process_receipt(receipt)[0]["args"]
    # b (2 ticks) and a (5 ticks) in full, c (7 ticks) for 1000 W; d loses. Clearing = 7 ticks.
    clearing = 7 * TICK
    reserved = 5000 * 3600 * clearing // 3_600_000
    assert (event["clearingPriceWeiPerKWh"], event["acceptedWatts"], event["totalPayout"], event["refund"]) == (
        clearing, 5000, reserved, 10**18 - reserved)
    assert [env.dr.outcome_of(rid, x.address) for x in (a, b, c, d)] == [
        (2000, 2000 * clearing // 1000), (2000, 2000 * clearing // 1000), (1000, 1000 * clearing // 1000), (0, 0)]
    assert env.dr.owed(env.utility.address) == 10**18 - reserved
    env.expect_error("RequestNotOpen", env.dr.functions.selectWinners(rid))
    assert_solvent(env, [rid])


def test_pay_as_bid_pays_each_its_own_price(env: Env) -> None:
    rid = env.request(target=3000, duration=1800, rule=1, budget=10**18)
    a, b = env.consumers[:2]
    env.dr.submit_bids(a, rid, [2000], [3 * TICK])
    env.dr.submit_bids(b, rid, [2000], [8 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    assert env.dr.outcome_of(rid, a.address) == (2000, 2000 * 1800 * 3 * TICK // 3_600_000)
    assert env.dr.outcome_of(rid, b.address) == (1000, 1000 * 1800 * 8 * TICK // 3_600_000)
    r = env.dr.get_request(rid)
    assert r.clearing_price == 8 * TICK
    assert r.reserved == (2000 * 3 + 1000 * 8) * TICK * 1800 // 3_600_000


def test_equal_prices_are_first_come_first_served(env: Env) -> None:
    rid = env.request(target=2500)
    first, second, third = env.consumers[:3]
    for who in (first, second, third):
        env.dr.submit_bids(who, rid, [1000], [4 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    assert [env.dr.outcome_of(rid, x.address)[0] for x in (first, second, third)] == [1000, 1000, 500]


def test_short_supply_accepts_everything_and_no_bids_refunds_all(env: Env) -> None:
    short = env.request(target=10_000, budget=10**17)
    empty = env.request(target=10_000, budget=10**17)
    env.dr.submit_bids(env.consumers[0], short, [3000], [2 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, short)
    env.dr.select_winners(env.utility, empty)
    assert env.dr.get_request(short).accepted_watts == 3000
    r = env.dr.get_request(empty)
    assert (r.accepted_watts, r.clearing_price, r.reserved) == (0, 0, 0)
    assert env.dr.owed(env.utility.address) == 2 * 10**17 - 3000 * 3600 * 2 * TICK // 3_600_000
    assert_solvent(env, [short, empty])


def test_anyone_may_settle_after_the_grace_period(env: Env) -> None:
    rid = env.request(bidding=30)
    stranger = env.consumers[5]
    env.dr.submit_bids(env.consumers[0], rid, [1000], [TICK])
    env.advance(31)
    args = env.expect_error("GracePeriodNotOver", env.dr.functions.selectWinners(rid), {"from": stranger.address})
    assert args[0] == env.dr.get_request(rid).bidding_deadline + 3600
    env.advance(3600)
    env.dr.select_winners(stranger, rid)
    assert env.dr.get_request(rid).status == Status.SETTLED
    assert env.dr.owed(env.utility.address) > 0  # the refund still goes to the utility


def test_withdrawn_bid_at_the_margin_needs_and_checks_a_hint(env: Env) -> None:
    rid = env.request(target=2500)
    a, b, c, d = env.consumers[:4]
    env.dr.submit_bids(a, rid, [1000], [4 * TICK])
    env.dr.submit_bids(b, rid, [1000], [4 * TICK])  # id 64, withdrawn below
    env.dr.submit_bids(c, rid, [1000], [4 * TICK])  # id 128
    env.dr.submit_bids(d, rid, [1000], [4 * TICK])  # id 192
    env.dr.submit_bids(a, rid, [100], [TICK])  # id 256, another level
    env.dr.cancel_bids(b, rid, [64])
    env.advance(301)
    env.expect_error("MarginalHintRequired", env.dr.functions.selectWinners(rid))
    # Missing a bid before the marginal one, wrong order, wrong level, or a marginal bid
    # that cannot hold the remainder: all refused.
    for bad in ([128], [0, 128], [64, 128], [0, 64, 192], [0, 64, 128], [128, 64, 0], [0, 64, 256]):
        env.expect_error("BadMarginalHint", env.dr.functions.selectWinnersWithHint(rid, bad))
    env.expect_error("UnknownBid", env.dr.functions.selectWinnersWithHint(rid, [0, 99999]))
    assert env.dr.marginal_hint(rid) == [0, 64, 128, 192]
    env.dr.select_winners(env.utility, rid)  # the wrapper computes the hint
    # 100 W at 1 tick, then a (1000) and c (1000) in full, d gets the last 400 W; b withdrew.
    assert [env.dr.outcome_of(rid, x.address)[0] for x in (a, b, c, d)] == [1100, 0, 1000, 400]


def test_claims_credit_winners_once_and_return_dust(env: Env) -> None:
    rid = env.request(target=1000, duration=7, budget=10**18)
    winners = env.consumers[:3]
    for who in winners:
        env.dr.submit_bids(who, rid, [331], [3 * TICK])  # 993 W, all accepted
    marginal = env.consumers[3]
    env.dr.submit_bids(marginal, rid, [10], [4 * TICK])  # 7 W of it accepted; clears at 4 ticks
    env.advance(301)
    env.expect_error("NotSettled", env.dr.functions.claim(rid, [0]))
    env.dr.select_winners(env.utility, rid)
    r = env.dr.get_request(rid)
    per_watt_num = 7 * 4 * TICK  # W * s * wei/kWh, before / 3.6e6
    each, last = 331 * per_watt_num // 3_600_000, 7 * per_watt_num // 3_600_000
    assert r.reserved == 1000 * per_watt_num // 3_600_000
    expected_dust = r.reserved - 3 * each - last
    assert expected_dust > 0  # per-bid rounding leaves dust behind
    refund = env.dr.owed(env.utility.address)
    stranger = env.consumers[9]
    env.dr.claim(stranger, rid, [0, 64])  # anyone may claim on the bidders' behalf
    assert [env.dr.owed(w.address) for w in winners[:2]] == [each, each]
    env.expect_error("AlreadyClaimed", env.dr.functions.claim(rid, [64]))
    env.expect_error("UnknownBid", env.dr.functions.claim(rid, [5]))
    assert env.dr.owed(env.utility.address) == refund  # no dust until every accepted watt is claimed
    receipt = env.dr.claim(stranger, rid, [128, 192])
    dust = env.dr.contract.events.DustReturned().process_receipt(receipt)[0]["args"]["amount"]
    assert dust == expected_dust
    assert env.dr.owed(marginal.address) == last
    assert env.dr.owed(env.utility.address) == refund + dust
    assert_solvent(env, [rid])


def test_withdraw_pays_exactly_what_is_owed(env: Env) -> None:
    rid = env.request(target=1000, budget=10**17)
    winner = env.consumers[0]
    env.dr.submit_bids(winner, rid, [1000], [6 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    env.dr.claim(winner, rid, [0])
    owed = env.dr.owed(winner.address)
    before = env.w3.eth.get_balance(winner.address)
    receipt = env.dr.withdraw(winner)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert env.w3.eth.get_balance(winner.address) == before + owed - fee
    assert env.dr.owed(winner.address) == 0
    env.expect_error("NothingOwed", env.dr.functions.withdraw(), {"from": winner.address})
    env.expect_error("ZeroAddress", env.dr.functions.withdrawTo("0x" + "0" * 40), {"from": winner.address})
    env.dr.withdraw(env.utility)
    assert env.w3.eth.get_balance(env.dr.address) == 0  # nothing created, nothing lost


def test_full_cycle_keeps_the_books_balanced_at_every_step(env: Env) -> None:
    ids = []
    bidders = env.consumers[:6]
    ids.append(env.request(target=4000, budget=10**17))
    ids.append(env.request(target=3000, rule=1, budget=10**17))
    assert_solvent(env, ids)
    for i, who in enumerate(bidders):
        env.dr.submit_bids(who, ids[i % 2], [700 + 100 * i, 300], [(1 + i) * TICK, (10 + i) * TICK])
        assert_solvent(env, ids)
    env.advance(301)
    for rid in ids:
        env.dr.select_winners(env.utility, rid)
        assert_solvent(env, ids)
        env.dr.claim(env.utility, rid, [b.bid_id for b in env.dr.get_bids(rid)])
        assert_solvent(env, ids)
    for who in bidders + [env.utility]:
        if env.dr.owed(who.address):
            env.dr.withdraw(who)
        assert_solvent(env, ids)
    assert env.w3.eth.get_balance(env.dr.address) == 0


# ------------------------------------------------------------------ hostile participants

ACCEPT, REVERT, BURN, REENTER = 0, 1, 2, 3


def _hostile_winner(env: Env, hostile: dict, mode: int):
    """A request in which a hostile contract and an honest EOA both win."""
    bidder = env.deploy_extra(hostile, env.dr.address, mode)
    rid = env.request(target=2000, budget=10**17)
    env.utility.send(bidder.functions.bid(rid, [1000], [2 * TICK]).build_transaction({"from": env.utility.address}))
    honest = env.consumers[0]
    env.dr.submit_bids(honest, rid, [1000], [3 * TICK])
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    env.dr.claim(honest, rid, [b.bid_id for b in env.dr.get_bids(rid)])
    return bidder, honest, rid


def _send_raw(env: Env, fn) -> dict:
    """Send with a fixed gas limit and return the receipt even when the call reverts."""
    tx = fn.build_transaction({"from": env.utility.address, "gas": 3_000_000})
    tx_hash = env.w3.eth.send_transaction(tx)
    return env.w3.eth.wait_for_transaction_receipt(tx_hash)


@pytest.mark.parametrize("mode", [REVERT, BURN])
def test_a_winner_that_cannot_receive_blocks_nobody(env: Env, hostile: dict, mode: int) -> None:
    bidder, honest, rid = _hostile_winner(env, hostile, mode)
    owed = env.dr.owed(bidder.address)
    assert owed > 0 and env.dr.owed(honest.address) > 0
    failed = _send_raw(env, bidder.functions.pull())
    assert failed["status"] == 0  # its own withdrawal fails ...
    assert env.dr.owed(bidder.address) == owed  # ... and loses nothing
    env.dr.withdraw(honest)  # everyone else is paid
    env.dr.withdraw(env.utility)
    rescue = env.consumers[7].address
    before = env.w3.eth.get_balance(rescue)
    assert _send_raw(env, bidder.functions.pullTo(rescue))["status"] == 1  # and it can be paid elsewhere
    assert env.w3.eth.get_balance(rescue) == before + owed
    assert env.w3.eth.get_balance(env.dr.address) == 0


def test_reentrant_withdraw_is_refused_and_pays_once(env: Env, hostile: dict) -> None:
    bidder, honest, rid = _hostile_winner(env, hostile, REENTER)
    owed = env.dr.owed(bidder.address)
    receipt = _send_raw(env, bidder.functions.pull())
    assert receipt["status"] == 1
    assert bidder.functions.reentryAttempts().call() == 1  # it tried, and the inner call failed
    reason = bidder.functions.lastReentryError().call()
    assert reason[:4] == Web3.keccak(text="Reentrancy()")[:4]
    assert env.w3.eth.get_balance(bidder.address) == owed
    assert env.dr.owed(bidder.address) == 0
    assert_solvent(env, [rid])


def test_contract_bidders_are_ordinary_participants(env: Env, hostile: dict) -> None:
    bidder, honest, rid = _hostile_winner(env, hostile, ACCEPT)
    assert env.dr.outcome_of(rid, bidder.address)[0] == 1000
    assert _send_raw(env, bidder.functions.pull())["status"] == 1
    assert env.w3.eth.get_balance(bidder.address) == env.dr.outcome_of(rid, bidder.address)[1]


def test_reverting_transaction_surfaces_the_custom_error(env: Env) -> None:
    with pytest.raises(TransactionFailed) as info:
        env.dr.submit_bids(env.consumers[0], 42, [1], [TICK])
    assert info.value.error == "UnknownRequest" and info.value.error_args == (42,)


# ------------------------------------------------------------------ the book scan's edges (issue 15)

# (target, [(watts, tick, withdrawn)], pay-as-bid): the five-level slots' edges, against market.py.
SCAN_EDGES = {
    "target met exactly at the last level of a slot": (3000, [(1000, 4, False), (2000, 5, False), (500, 6, False)], 0),
    "target met at the first level of the next slot": (3500, [(1000, 4, False), (2000, 5, False), (900, 6, False)], 1),
    "a slot withdrawn whole is skipped": (
        9000, [(700, t, True) for t in range(1, 6)] + [(800, 7, False), (900, 12, False)], 1),
    "short of the target, last live level below withdrawn ones in its slot": (
        9000, [(300, 3, False), (400, 126, False), (500, 127, True), (600, 128, True)], 0),
    "met past a withdrawn level of the same slot, no hint needed": (
        1000, [(600, 11, True), (1500, 12, False), (200, 13, False)], 1),
    "met in a slot after whole slots, pay-as-bid": (
        2500, [(400, t, False) for t in (2, 9, 14, 23, 24, 31)] + [(300, 33, False)], 1),
    "a withdrawn bid in the marginal level needs the hint": (
        1200, [(500, 40, False), (400, 41, False), (300, 41, True), (900, 41, False)], 0),
}


@pytest.mark.parametrize("case", list(SCAN_EDGES), ids=list(SCAN_EDGES))
def test_selection_at_the_edges_of_book_slots_matches_the_model(env: Env, case: str) -> None:
    from demand_response.market import Bid, clear, required_budget

    target, bids, rule = SCAN_EDGES[case]
    budget = required_budget(target, 3600, CAP) + 12_345
    rid = env.request(target, rule=rule, budget=budget)
    who = env.consumers[0]
    env.dr.submit_bids(who, rid, [w for w, _, _ in bids], [t * TICK for _, t, _ in bids])
    gone = [i for i, (_, _, withdrawn) in enumerate(bids) if withdrawn]
    if gone:
        env.dr.cancel_bids(who, rid, gone)
    expected = clear([Bid(who.address, w, t * TICK, withdrawn) for w, t, withdrawn in bids], target, 3600, CAP,
                     budget, PricingRule(rule))
    env.advance(301)
    receipt = env.dr.select_winners(env.utility, rid)
    (event,) = env.dr.contract.events.WinnersSelected().process_receipt(receipt)
    assert (event["args"]["clearingPriceWeiPerKWh"], event["args"]["acceptedWatts"], event["args"]["totalPayout"],
            event["args"]["refund"]) == (expected.clearing_price, expected.accepted_watts, expected.reserved,
                                         expected.refund)
    assert [(b.accepted_watts, b.payout) for b in env.dr.get_bids(rid)] == [
        (o.accepted_watts, o.payout) for o in expected.outcomes]
