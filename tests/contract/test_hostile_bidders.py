"""Issue 16: what an independent black-box suite found, each case failing on the old contract.

F-8 (a price level closed by bidding and withdrawing) is in test_security_limits.py, which
has the big-account chain it needs.
"""

from __future__ import annotations

import secrets

import pytest

from demand_response import market
from demand_response.chain import ChainError
from demand_response.contract import (
    COMMIT_GAS, POST_BOND_GAS, PROOF_CHUNK, REPORT_GAS, REVEAL_EXTRA_GAS, TX_GAS_CAP, Terms, bid_gas_limit,
)
from demand_response.market import MAX_BIDS_PER_CALL, PricingRule

from conftest import CAP, Env

TICK = CAP // 128
BOND = 10**15
MAX_UINT = 2**256 - 1


def _goto(env: Env, timestamp: int) -> None:
    now = env.now()
    if timestamp > now:
        env.advance(timestamp - now)


def _hole_at_the_margin(env: Env) -> int:
    """Four 1,000 W bids at 4 ticks (ids 0, 64, 128, 192), 64 withdrawn, target 2,500 W:
    selection needs the hint [0, 64, 128, 192]."""
    rid = env.request(target=2500)
    a, b, c, d = env.consumers[:4]
    for who in (a, b, c, d):
        env.dr.submit_bids(who, rid, [1000], [4 * TICK])
    env.dr.submit_bids(a, rid, [100], [TICK])
    env.dr.cancel_bids(b, rid, [64])
    env.advance(301)
    return rid


def test_a_proof_mined_first_cannot_void_the_utilitys_hint(env: Env) -> None:
    """Item 5: a griefer proves the marginal level's prefix just before the utility's
    selectWinnersWithHint; the hint still lists those bids, and is accepted (they are skipped)."""
    rid = _hole_at_the_margin(env)
    griefer = env.consumers[9]
    env.utility.send(env.dr.functions.proveLevelPrefix(rid, 4, [0, 64]).build_transaction(
        {"from": griefer.address, "gas": 500_000}))
    assert list(env.dr.functions.levelProof(rid, 4).call()) == [2000, 1000, 65]
    # The same proof again, by anyone, changes nothing and does not revert either.
    env.utility.send(env.dr.functions.proveLevelPrefix(rid, 4, [0, 64]).build_transaction(
        {"from": env.utility.address, "gas": 500_000}))
    env.utility.send(env.dr.functions.selectWinnersWithHint(rid, [0, 64, 128, 192]).build_transaction(
        {"from": env.utility.address, "gas": 1_000_000}))
    a, b, c, d = env.consumers[:4]
    assert [env.dr.outcome_of(rid, x.address)[0] for x in (a, b, c, d)] == [1100, 0, 1000, 400]


def test_a_hint_that_lists_only_proved_bids_is_still_refused(env: Env) -> None:
    rid = _hole_at_the_margin(env)
    env.utility.send(env.dr.functions.proveLevelPrefix(rid, 4, [0, 64]).build_transaction(
        {"from": env.utility.address, "gas": 500_000}))
    env.expect_error("BadMarginalHint", env.dr.functions.selectWinnersWithHint(rid, [0, 64]))
    env.expect_error("BadMarginalHint", env.dr.functions.selectWinnersWithHint(rid, [0, 64, 128]))


def test_an_absurd_bid_id_is_a_named_error_not_a_panic(env: Env) -> None:
    """Item 4: selectWinnersWithHint(id, [.., 2^256 - 1]) reverted with Panic(0x11)."""
    rid = _hole_at_the_margin(env)
    env.expect_error("UnknownBid", env.dr.functions.selectWinnersWithHint(rid, [0, 64, MAX_UINT]))
    env.expect_error("UnknownBid", env.dr.functions.proveLevelPrefix(rid, 4, [0, MAX_UINT]))
    # The per-submission views and the lens answer "nothing there" instead of overflowing.
    assert tuple(env.dr.functions.submissionAt(rid, MAX_UINT).call()) == ("0x" + "0" * 40, 0)
    assert env.dr.functions.submissionBids(rid, MAX_UINT).call() == []
    assert env.dr.get_bids(rid, MAX_UINT, MAX_UINT) == []
    assert len(env.dr.get_bids(rid, 0, MAX_UINT)) == 5


def _metered(env: Env, notice: int | None, lead: int = 60) -> tuple[int, int, int]:
    """An open metered request with a bond; returns (id, bidding deadline, event start)."""
    now = env.now()
    deadline, start = now + 120, now + 120 + lead
    terms = Terms(report_window=300, dispute_window=300, bond_wei=BOND, notice_period=notice)
    rid, _ = env.dr.request_reduction(env.utility, 1000, start, start + 60, deadline, CAP, PricingRule.UNIFORM,
                                      terms=terms)
    return rid, deadline, start


def _winner_that_delivers_nothing(env: Env, rid: int, select_at: int) -> int:
    """One consumer wins 1,000 W, is selected at ``select_at`` and never reports; returns the
    penalty of its settlement."""
    c = env.consumers[0]
    env.dr.post_bond(c, rid, BOND)
    env.dr.submit_bids(c, rid, [1000], [TICK])
    _goto(env, select_at)
    env.dr.select_winners(env.utility, rid)
    _goto(env, env.dr.terms_of(rid).report_deadline + 5)
    receipt = env.dr.settle_delivery(env.consumers[5], rid, c.address)
    events = env.dr.contract.events.DeliverySettled().process_receipt(receipt)
    return events[0]["args"]["penalty"]


def test_a_winner_selected_inside_the_notice_period_keeps_its_bond(env: Env) -> None:
    """Item 3: a selection one second before the event start took the whole bond."""
    rid, deadline, start = _metered(env, notice=40)
    assert env.dr.terms_of(rid).notice_period == 40
    assert _winner_that_delivers_nothing(env, rid, start - 20) == 0  # 20 s of notice < 40


def test_a_winner_selected_with_notice_pays_the_penalty(env: Env) -> None:
    rid, deadline, start = _metered(env, notice=20)
    assert _winner_that_delivers_nothing(env, rid, deadline + 10) == BOND  # ~50 s of notice >= 20
    assert market.had_notice(env.dr.terms_of(rid).selected_at, start, 20)


def test_no_notice_period_means_no_penalty(env: Env) -> None:
    rid, deadline, _ = _metered(env, notice=0)
    assert _winner_that_delivers_nothing(env, rid, deadline + 10) == 0


def test_the_wrapper_gives_half_the_lead_as_notice_by_default(env: Env) -> None:
    rid, _, _ = _metered(env, notice=None, lead=60)
    assert env.dr.terms_of(rid).notice_period == 30


def test_griefers_cannot_make_an_honest_reveal_lose_its_bond(env: Env) -> None:
    """Item 2: four attackers revealed 64 bids of 2^32 - 1 W at the top tick first; the honest
    5,000 W reveal was refused with PriceLevelFull and its bond forfeited. Bids that large are
    refused now (a level takes 2^48 - 1 W), so the honest reveal lands and its bond returns."""
    now = env.now()
    deadline = now + 120
    start = deadline + 120 + 60
    terms = Terms(reveal_window=120, bond_wei=BOND)
    rid, _ = env.dr.request_reduction(env.utility, 10_000, start, start + 60, deadline, CAP, terms=terms)
    attackers, honest = env.consumers[:4], env.consumers[4]
    plans = {a.address: ([2**32 - 1] * 64, [CAP] * 64) for a in attackers}
    plans[honest.address] = ([5000], [CAP])
    salts = {}
    for who in (*attackers, honest):
        watts, prices = plans[who.address]
        salts[who.address] = secrets.token_bytes(32)
        env.dr.commit_bids(who, rid, market.commitment(env.w3.eth.chain_id, env.dr.address, rid, who.address,
                                                        watts, prices, salts[who.address]), bond=BOND)
    _goto(env, deadline + 5)
    for who in attackers:
        with pytest.raises(Exception, match="WattsTooLarge"):
            env.dr.reveal_bids(who, rid, *plans[who.address], salts[who.address])
    owed = env.dr.owed(honest.address)
    env.dr.reveal_bids(honest, rid, *plans[honest.address], salts[honest.address])
    assert env.dr.owed(honest.address) == owed + BOND  # the bond is back at the reveal
    assert env.dr.book(rid)[127] == 5000


def test_the_wrapper_never_sends_a_transaction_above_the_eip_7825_cap(env: Env) -> None:
    """anvil and ganache do not enforce the 2^24-gas cap per transaction; the wrapper does."""
    rid = env.request()
    c = env.consumers[0]
    nonce = env.w3.eth.get_transaction_count(c.address)
    with pytest.raises(ChainError, match="16,777,216-gas cap"):
        env.dr.submit_bids(c, rid, [1000], [TICK], gas=TX_GAS_CAP + 1)
    assert env.w3.eth.get_transaction_count(c.address) == nonce  # nothing was sent
    # The fixed limits the daemons use all fit, with the largest batches.
    worst = (bid_gas_limit(MAX_BIDS_PER_CALL), bid_gas_limit(MAX_BIDS_PER_CALL) + REVEAL_EXTRA_GAS, COMMIT_GAS,
             POST_BOND_GAS, REPORT_GAS, PROOF_CHUNK * 10_000)
    assert max(worst) < TX_GAS_CAP
