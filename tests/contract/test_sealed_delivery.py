"""Sealed bids (commit-reveal), settlement on measured delivery, and bonds, on a real ganache.

Every new function's happy path, every new custom error, and the hostile cases listed in
docs/market.md ("Threats specific to sealed and metered requests"). After every step that
moves money the solvency invariant is checked to the wei:

    contract balance == Σ owed(a) over all accounts + open escrow

where a request's escrow is its budget while open, ``reserved - paidOut`` once settled
(until every accepted watt is disbursed and the dust has gone back), plus the bonds it
still holds (``unrevealedBonds + heldBonds``, which are also checked against the sum over
the participants). Clearings are checked against ``market.clear`` over the revealed bids
in reveal order, and every delivery settlement against ``market.settle_delivery``.
"""

from __future__ import annotations

import json
import secrets
import urllib.request

import pytest

from conftest import CAP, Env
from demand_response import market
from demand_response.contract import DemandReduction, Stage, Status, Terms
from demand_response.errors import UserError
from demand_response.market import GRACE_PERIOD, Bid, PricingRule

TICK = CAP // 128
BOND = 10**15
ZERO32 = b"\x00" * 32

# Default windows (seconds). Chain time on ganache follows the wall clock, so every check
# keeps at least 10 s away from a boundary.
BIDDING, REVEAL, LEAD, DURATION, REPORT, DISPUTE = 120, 120, 60, 600, 300, 300


# ------------------------------------------------------------------ helpers


def terms_request(env: Env, target: int = 10_000, *, sealed: bool = True, metered: bool = True,
                  bond: int = BOND, rule: int = 0, budget: int | None = None, bidding: int = BIDDING,
                  lead: int = LEAD, duration: int = DURATION) -> int:
    """Post a request with terms from the utility; returns its id."""
    now = env.now()
    deadline = now + bidding
    start = deadline + (REVEAL if sealed else 0) + lead
    terms = Terms(REVEAL if sealed else 0, REPORT if metered else 0, DISPUTE if metered else 0, bond)
    rid, _ = env.dr.request_reduction_with_terms(env.utility, target, start, start + duration, deadline, CAP,
                                                 terms, PricingRule(rule), budget)
    return rid


def goto(env: Env, timestamp: int) -> None:
    """Move chain time so that the latest block is at (or just after) ``timestamp``."""
    now = env.now()
    if timestamp > now:
        env.advance(timestamp - now)


def deadlines(env: Env, rid: int) -> dict[str, int]:
    r, t = env.dr.get_request(rid), env.dr.terms_of(rid)
    return {"bidding": r.bidding_deadline, "reveal": t.reveal_deadline, "start": r.event_start,
            "end": r.event_end, "report": t.report_deadline, "dispute": t.dispute_deadline}


def commit(env: Env, rid: int, who, watts: list[int], prices: list[int], bond: int = BOND,
           salt: bytes | None = None) -> bytes:
    """Commit ``who``'s bids with a fresh salt (and the bond); returns the salt."""
    salt = salt or secrets.token_bytes(32)
    c = market.commitment(env.w3.eth.chain_id, env.dr.address, rid, who.address, watts, prices, salt)
    env.dr.commit_bids(who, rid, c, bond=bond)
    return salt


def events(env: Env, receipt, name: str) -> list[dict]:
    from web3.logs import DISCARD

    return [dict(e["args"]) for e in getattr(env.dr.contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def batch_read(env: Env, calls: list) -> list:
    """Contract view calls (and ``("balance", address)``) answered in ONE JSON-RPC batch at one
    block: dozens of separate eth_calls per check would dominate the test time on ganache."""
    from eth_abi import decode
    from eth_utils.abi import get_abi_output_types

    block = hex(env.w3.eth.block_number)
    payload = []
    for i, call in enumerate(calls):
        if isinstance(call, tuple):
            payload.append({"jsonrpc": "2.0", "id": i, "method": "eth_getBalance", "params": [call[1], block]})
        else:
            payload.append({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [
                {"to": env.dr.address, "data": call._encode_transaction_data()}, block]})
    request = urllib.request.Request(env.chain.url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        replies = sorted(json.loads(response.read()), key=lambda x: x["id"])
    out = []
    for call, reply in zip(calls, replies):
        assert "error" not in reply, reply
        if isinstance(call, tuple):
            out.append(int(reply["result"], 16))
        else:
            values = decode(get_abi_output_types(call.abi), bytes.fromhex(reply["result"][2:]))
            out.append(values[0] if len(values) == 1 else values)
    return out


def assert_solvent(env: Env, rids: list[int]) -> None:
    """Contract balance == Σ owed over ALL accounts + open escrow, to the wei. A request's
    escrow: its budget while open, ``reserved - paidOut`` once settled unless every accepted
    watt is disbursed, plus its bonds not yet returned or forfeited (``unrevealedBonds +
    heldBonds``), which must also equal the sum over the participants' own records."""
    fn = env.dr.functions
    accounts = env.w3.eth.accounts
    people = [c.address for c in env.consumers[:10]]
    calls: list = [("balance", env.dr.address)] + [fn.owed(a) for a in accounts]
    for rid in rids:
        calls += [fn.getRequest(rid), fn.termsOf(rid)] + [fn.participantOf(rid, a) for a in people]
    values = batch_read(env, calls)
    balance, owed = values[0], values[1:1 + len(accounts)]
    rest = values[1 + len(accounts):]
    escrow = 0
    for k, rid in enumerate(rids):
        r, t, *parts = rest[k * (2 + len(people)):(k + 1) * (2 + len(people))]
        status, budget, accepted, reserved, paid_out, claimed = r[0], r[8], r[12], r[13], r[14], r[15]
        unrevealed_bonds, held_bonds = t[6], t[7]
        if status == Status.OPEN:
            escrow += budget
        elif status == Status.SETTLED and claimed < accepted:
            escrow += reserved - paid_out
        escrow += unrevealed_bonds + held_bonds
        held = sum(p[5] for p in parts if p[0] in (Stage.BONDED, Stage.BID, Stage.REPORTED))
        unrevealed = sum(p[5] for p in parts if p[0] == Stage.COMMITTED)
        assert held_bonds == held
        # Unrevealed bonds are forfeited at selection (the forfeited records keep their figure).
        assert unrevealed_bonds == (0 if status == Status.SETTLED else unrevealed)
    assert balance == sum(owed) + escrow


def expected_clearing(env: Env, rid: int, revealed: list[tuple[str, list[int], list[int]]]):
    """``market.clear`` over the revealed bids in reveal order, and the per-bidder totals."""
    r = env.dr.get_request(rid)
    bids = [Bid(who, w, p) for who, watts, prices in revealed for w, p in zip(watts, prices)]
    result = market.clear(bids, r.target_watts, r.duration, r.max_price, r.budget, r.rule)
    return bids, result, market.by_bidder(bids, result)


def check_clearing(env: Env, rid: int, receipt, revealed) -> dict[str, market.BidOutcome]:
    """The on-chain clearing equals ``market.clear`` over the revealed bids in reveal order."""
    bids, expected, per_bidder = expected_clearing(env, rid, revealed)
    event = events(env, receipt, "WinnersSelected")[0]
    assert (event["clearingPriceWeiPerKWh"], event["acceptedWatts"], event["totalPayout"], event["refund"]) == (
        expected.clearing_price, expected.accepted_watts, expected.reserved, expected.refund)
    on_chain = env.dr.get_bids(rid)
    assert [(b.bidder, b.watts, b.price) for b in on_chain] == [(b.bidder, b.watts, b.price) for b in bids]
    assert [(b.accepted_watts, b.payout) for b in on_chain] == [(o.accepted_watts, o.payout)
                                                                for o in expected.outcomes]
    for who, outcome in per_bidder.items():
        p = env.dr.participant_of(rid, who)
        if p.has_bids:
            assert (p.accepted_watts, p.promised_payout) == (outcome.accepted_watts, outcome.payout)
    return per_bidder


def check_settlement(env: Env, rid: int, who: str, receipt, accepted: int, promised: int, delivered: int,
                     bond: int, owed_before: dict[str, int]) -> market.DeliverySettlement:
    """The settlement event and the credits equal ``market.settle_delivery`` to the wei."""
    s = market.settle_delivery(accepted, promised, delivered, bond)
    event = events(env, receipt, "DeliverySettled")[0]
    assert event == {"requestId": rid, "consumer": who, "acceptedWatts": accepted, "deliveredWatts": delivered,
                     "payout": s.payout, "penalty": s.penalty, "bondReturned": s.bond_returned,
                     "toUtility": s.to_utility}
    dust = sum(e["amount"] for e in events(env, receipt, "DustReturned"))
    # Pushed to the consumer (an account that takes ether), nothing left to withdraw.
    assert pushed(env, receipt, who) == s.to_consumer
    assert env.dr.owed(who) == owed_before[who]
    assert env.dr.owed(env.utility.address) == owed_before[env.utility.address] + s.to_utility + dust
    assert env.dr.participant_of(rid, who).stage == Stage.SETTLED
    assert env.dr.participant_of(rid, who).bond == 0
    return s


def checksum_first(args: tuple) -> tuple:
    """Error arguments with the leading address checksummed (eth_abi decodes it lower-case)."""
    from web3 import Web3

    return (Web3.to_checksum_address(args[0]), *args[1:])


def pushed(env: Env, receipt, who: str) -> int:
    """Wei the receipt's ``PaymentSent`` events sent ``who``."""
    return sum(e["amount"] for e in events(env, receipt, "PaymentSent") if e["bidder"] == who)


def owed_now(env: Env, accounts) -> dict[str, int]:
    return {a: env.dr.owed(a) for a in accounts}


# ------------------------------------------------------------------ requests with terms


def test_request_with_terms_records_terms_and_deadlines(env: Env) -> None:
    now = env.now()
    deadline, start = now + 300, now + 900
    rid, receipt = env.dr.request_reduction_with_terms(
        env.utility, 20_000, start, start + 3600, deadline, CAP, Terms(400, 500, 600, BOND), PricingRule.PAY_AS_BID)
    assert events(env, receipt, "RequestTerms") == [{
        "requestId": rid, "revealDeadline": deadline + 400, "reportDeadline": start + 3600 + 500,
        "disputeDeadline": start + 3600 + 1100, "bondWei": BOND}]
    t = env.dr.terms_of(rid)
    assert (t.sealed, t.metered, t.reveal_deadline, t.report_deadline, t.dispute_deadline, t.bond_wei,
            t.unrevealed_bonds, t.held_bonds) == (True, True, deadline + 400, start + 4100, start + 4700, BOND, 0, 0)
    assert env.dr.get_request(rid).rule == PricingRule.PAY_AS_BID

    sealed_only = env.dr.request_reduction_with_terms(env.utility, 1000, start, start + 60, deadline, CAP,
                                                      Terms(reveal_window=60))[0]
    t = env.dr.terms_of(sealed_only)
    assert (t.sealed, t.metered, t.reveal_deadline, t.report_deadline, t.dispute_deadline) == (
        True, False, deadline + 60, 0, 0)
    plain = env.request()  # a request without terms reports none
    t = env.dr.terms_of(plain)
    assert (t.sealed, t.metered, t.reveal_deadline, t.bond_wei) == (False, False, 0, 0)
    p = env.dr.participant_of(plain, env.consumers[0].address)
    assert (p.stage, p.has_bids, p.bond, p.commitment) == (Stage.NONE, False, 0, ZERO32)
    env.expect_error("UnknownRequest", env.dr.functions.termsOf(999))
    env.expect_error("UnknownRequest", env.dr.functions.participantOf(999, env.consumers[0].address))
    assert_solvent(env, [rid, sealed_only, plain])


@pytest.mark.parametrize(
    "error, terms",
    [
        ("BadTerms", (0, 0, 0, BOND, 0)),  # a bond with nothing to secure
        ("BadTerms", (60, 0, 60, 0, 0)),  # a dispute window without reports
        ("BadTerms", (2**32, 0, 0, 0, 0)),
        ("BadTerms", (0, 2**32, 0, 0, 0)),
        ("BadTerms", (0, 60, 2**32, 0, 0)),
        ("BadTerms", (60, 0, 0, 2**80, 0)),
        ("BadTerms", (60, 0, 0, BOND, 60)),  # a notice period without reports
        ("BadTerms", (0, 60, 0, BOND, 2**32)),
        ("BadTerms", (0, 60, 0, BOND, 601)),  # more notice than from the close to the start
        ("RevealAfterEventStart", (601, 0, 0, 0, 0)),  # the reveal window would run into the event
    ],
)
def test_request_with_terms_rejects_bad_terms(env: Env, error: str, terms: tuple) -> None:
    now = env.now()
    call = env.dr.functions.requestReductionWithTerms(1000, now + 900, now + 1000, now + 300, CAP, 0, terms)
    env.expect_error(error, call, {"from": env.utility.address, "value": 10**16})
    env.expect_error("NotUtility", call, {"from": env.consumers[0].address, "value": 10**16})


def test_all_zero_terms_make_an_ordinary_request(env: Env) -> None:
    rid = terms_request(env, sealed=False, metered=False, bond=0)
    c = env.consumers[0]
    env.dr.submit_bids(c, rid, [1000], [TICK])
    for call in (env.dr.functions.commitBids(rid, ZERO32), env.dr.functions.revealBids(rid, [1], [TICK], ZERO32)):
        env.expect_error("NotSealed", call, {"from": c.address})
    env.expect_error("NotMetered", env.dr.functions.postBond(rid), {"from": c.address})
    goto(env, deadlines(env, rid)["bidding"] + 10)
    env.dr.select_winners(env.utility, rid)
    env.dr.claim(c, rid, [0])  # paid on acceptance
    env.expect_error("NotMetered", env.dr.functions.reportDelivery(rid, 1000), {"from": c.address})
    env.expect_error("NotMetered", env.dr.functions.settleDelivery(rid, c.address))
    assert_solvent(env, [rid])


# ------------------------------------------------------------------ sealed bids


def test_sealed_auction_commit_reveal_select_and_claim(env: Env) -> None:
    """Sealed, paid on acceptance, with a bond: the bond comes back at reveal, is forfeited
    if the bids are never revealed, and the book is built in reveal order."""
    rid = terms_request(env, target=6500, metered=False)
    a, b, c, lazy = env.consumers[:4]
    fn = env.dr.functions
    env.expect_error("SealedRequest", fn.submitBids(rid, [1000], [TICK]), {"from": a.address})
    env.expect_error("SealedRequest", fn.postBond(rid), {"from": a.address, "value": BOND})
    env.expect_error("WrongBond", fn.commitBids(rid, ZERO32), {"from": a.address})
    assert env.expect_error("WrongBond", fn.commitBids(rid, ZERO32), {"from": a.address, "value": BOND - 1}) == (
        BOND, BOND - 1)
    env.expect_error("WrongBond", fn.commitBids(rid, ZERO32), {"from": a.address, "value": BOND + 1})

    bids = {a.address: ([2000, 1000], [3 * TICK, 5 * TICK]), b.address: ([3000], [3 * TICK]),
            c.address: ([2500], [5 * TICK]), lazy.address: ([4000], [TICK])}
    # a first commits to something else, then replaces it (the bond is not paid twice).
    first = secrets.token_bytes(32)
    receipt = env.dr.commit_bids(a, rid, market.commitment(env.w3.eth.chain_id, env.dr.address, rid, a.address,
                                                            [1], [TICK], first), bond=BOND)
    assert events(env, receipt, "BondPosted") == [{"requestId": rid, "consumer": a.address, "amount": BOND}]
    assert_solvent(env, [rid])
    salt_a = secrets.token_bytes(32)
    commitment_a = env.dr.commitment_of(rid, a.address, *bids[a.address], salt_a)
    assert commitment_a == market.commitment(env.w3.eth.chain_id, env.dr.address, rid, a.address,
                                             *bids[a.address], salt_a)
    env.expect_error("WrongBond", fn.commitBids(rid, commitment_a), {"from": a.address, "value": BOND})
    receipt = env.dr.commit_bids(a, rid, commitment_a)
    assert events(env, receipt, "BidsCommitted") == [{"requestId": rid, "bidder": a.address,
                                                       "commitment": commitment_a}]
    assert events(env, receipt, "BondPosted") == []
    p = env.dr.participant_of(rid, a.address)
    assert (p.stage, p.commitment, p.bond, p.has_bids) == (Stage.COMMITTED, commitment_a, BOND, False)
    salts = {a.address: salt_a}
    for who in (b, c, lazy):
        salts[who.address] = commit(env, rid, who, *bids[who.address])
    assert env.dr.terms_of(rid).unrevealed_bonds == 4 * BOND
    assert env.dr.get_request(rid).bid_count == 0 and sum(env.dr.book(rid)) == 0  # nothing visible
    assert_solvent(env, [rid])

    d = deadlines(env, rid)
    env.expect_error("RevealWindowClosed", fn.revealBids(rid, *bids[a.address], salt_a), {"from": a.address})
    goto(env, d["bidding"] + 10)
    env.expect_error("BiddingClosed", fn.commitBids(rid, ZERO32), {"from": env.consumers[5].address, "value": BOND})
    env.expect_error("BiddingStillOpen", fn.selectWinners(rid))  # selection waits for the reveal deadline
    env.expect_error("CommitmentMismatch", fn.revealBids(rid, *bids[a.address], first), {"from": a.address})
    env.expect_error("CommitmentMismatch", fn.revealBids(rid, [2000, 1001], [3 * TICK, 5 * TICK], salt_a),
                     {"from": a.address})
    env.expect_error("WrongStage", fn.revealBids(rid, [1], [TICK], ZERO32), {"from": env.consumers[5].address})

    # Reveal order c, b, a: c's 2500 W at 5 ticks is ahead of a's 1000 W at 5 ticks, though a committed first.
    revealed = []
    for who in (c, b, a):
        before = env.dr.owed(who.address)
        receipt = env.dr.reveal_bids(who, rid, *bids[who.address], salts[who.address])
        first_id = env.dr.get_request(rid).submissions - 1 << 6
        assert events(env, receipt, "BidsRevealed") == [{"requestId": rid, "bidder": who.address,
                                                          "firstBidId": first_id,
                                                          "count": len(bids[who.address][0])}]
        assert events(env, receipt, "BidsSubmitted") == [{"requestId": rid, "bidder": who.address,
                                                          "firstBidId": first_id,
                                                          "count": len(bids[who.address][0])}]
        stored = env.dr.functions.submissionBids(rid, first_id >> 6).call()
        assert [(b[2], b[3]) for b in stored] == list(zip(*bids[who.address]))
        assert env.dr.owed(who.address) == before + BOND  # not metered: the bond is back at reveal
        assert env.dr.participant_of(rid, who.address).stage == Stage.BID
        revealed.append((who.address, *bids[who.address]))
        assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.revealBids(rid, *bids[a.address], salt_a), {"from": a.address})
    assert env.dr.terms_of(rid).unrevealed_bonds == BOND  # lazy's

    goto(env, d["reveal"] + 10)
    env.expect_error("RevealWindowClosed", fn.revealBids(rid, *bids[lazy.address], salts[lazy.address]),
                     {"from": lazy.address})
    refund_before = env.dr.owed(env.utility.address)
    receipt = env.dr.select_winners(env.utility, rid)
    assert events(env, receipt, "BondsForfeited") == [{"requestId": rid, "amount": BOND}]
    per_bidder = check_clearing(env, rid, receipt, revealed)
    _, expected, _ = expected_clearing(env, rid, revealed)
    assert env.dr.owed(env.utility.address) == refund_before + expected.refund + BOND
    assert env.dr.terms_of(rid).unrevealed_bonds == 0
    # 3 ticks: b 3000, a 2000; 5 ticks: c (revealed before a) takes the last 1500 W, a's 1000 W lose
    # although a committed first. Uniform: everyone at 5 ticks.
    assert [(x.bidder, x.accepted_watts) for x in env.dr.get_bids(rid)] == [
        (c.address, 1500), (b.address, 3000), (a.address, 2000), (a.address, 0)]
    assert expected.clearing_price == 5 * TICK
    assert_solvent(env, [rid])
    env.expect_error("NotMetered", fn.settleDelivery(rid, lazy.address))  # the forfeited bond stays forfeited
    before = owed_now(env, [x.address for x in (a, b, c)])
    env.dr.claim(env.consumers[9], rid, [b_.bid_id for b_ in env.dr.get_bids(rid)])
    for who in (a, b, c):
        assert env.dr.owed(who.address) == before[who.address] + per_bidder[who.address].payout
    assert_solvent(env, [rid])
    env.expect_error("NothingOwed", fn.withdraw(), {"from": lazy.address})
    for who in (a, b, c, env.utility):
        env.dr.withdraw(who)
        assert_solvent(env, [rid])
    assert env.w3.eth.get_balance(env.dr.address) == 0


def test_nobody_can_reveal_someone_elses_commitment(env: Env) -> None:
    """A copier who saw the reveal transaction in the mempool, or copied the commitment,
    cannot put the bids in the book as its own: the bidder is inside the hash."""
    rid = terms_request(env, metered=False)
    owner, copier, outsider = env.consumers[:3]
    fn = env.dr.functions
    watts, prices = [3000], [2 * TICK]
    salt = commit(env, rid, owner, watts, prices)
    stolen = env.dr.participant_of(rid, owner.address).commitment
    env.dr.commit_bids(copier, rid, stolen, bond=BOND)  # the very same hash
    goto(env, deadlines(env, rid)["bidding"] + 10)
    env.expect_error("CommitmentMismatch", fn.revealBids(rid, watts, prices, salt), {"from": copier.address})
    args = env.expect_error("WrongStage", fn.revealBids(rid, watts, prices, salt), {"from": outsider.address})
    assert checksum_first(args) == (outsider.address, Stage.NONE)
    env.dr.reveal_bids(owner, rid, watts, prices, salt)
    assert [x.bidder for x in env.dr.get_bids(rid)] == [owner.address]
    env.expect_error("WrongStage", fn.revealBids(rid, watts, prices, salt), {"from": owner.address})
    goto(env, deadlines(env, rid)["reveal"] + 10)
    receipt = env.dr.select_winners(env.utility, rid)
    assert events(env, receipt, "BondsForfeited")[0]["amount"] == BOND  # the copier's bond
    check_clearing(env, rid, receipt, [(owner.address, watts, prices)])
    assert_solvent(env, [rid])


def test_a_commitment_cannot_be_replayed_on_another_request_or_contract(env: Env) -> None:
    one = terms_request(env, metered=False)
    two = terms_request(env, metered=False)
    c = env.consumers[0]
    watts, prices = [1000, 500], [TICK, 4 * TICK]
    salt = commit(env, one, c, watts, prices)
    h = env.dr.participant_of(one, c.address).commitment
    env.dr.commit_bids(c, two, h, bond=BOND)  # replay the hash on request 2
    assert env.dr.commitment_of(two, c.address, watts, prices, salt) != h  # the request id is in the hash
    other = DemandReduction.deploy(env.utility)
    assert other.commitment_of(one, c.address, watts, prices, salt) != h  # and so is the contract
    goto(env, deadlines(env, two)["bidding"] + 10)
    env.expect_error("CommitmentMismatch", env.dr.functions.revealBids(two, watts, prices, salt),
                     {"from": c.address})
    env.dr.reveal_bids(c, one, watts, prices, salt)  # where it belongs
    assert env.dr.get_request(two).bid_count == 0 and env.dr.get_request(one).bid_count == 2
    assert_solvent(env, [one, two])


def test_grace_period_counts_from_the_reveal_deadline(env: Env) -> None:
    rid = terms_request(env, metered=False, bond=0)
    c, stranger = env.consumers[0], env.consumers[8]
    fn = env.dr.functions
    salt = commit(env, rid, c, [1000], [TICK], bond=0)
    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    env.dr.reveal_bids(c, rid, [1000], [TICK], salt)
    assert env.expect_error("BiddingStillOpen", fn.selectWinners(rid)) == (d["reveal"],)
    env.expect_error("BiddingStillOpen", fn.proveLevelPrefix(rid, 1, []), {"from": stranger.address})
    # An hour after the bidding deadline, but not after the reveal deadline: strangers wait.
    goto(env, d["bidding"] + GRACE_PERIOD + 10)
    assert d["bidding"] + GRACE_PERIOD + 10 < d["reveal"] + GRACE_PERIOD - 10
    assert env.expect_error("GracePeriodNotOver", fn.selectWinners(rid), {"from": stranger.address}) == (
        d["reveal"] + GRACE_PERIOD,)
    goto(env, d["reveal"] + GRACE_PERIOD + 10)
    receipt = env.dr.select_winners(stranger, rid)
    check_clearing(env, rid, receipt, [(c.address, [1000], [TICK])])
    assert_solvent(env, [rid])


# ------------------------------------------------------------------ payment on measured delivery


def test_metered_open_request_with_bonds_full_cycle(env: Env) -> None:
    """Open bids, paid on delivery: bonds, one submission each, reports, confirm, dispute,
    settlement by anyone, each figure equal to market.settle_delivery."""
    rid = terms_request(env, target=9000, sealed=False)
    honest, over, disputed, silent, late, bonded_only, loser, outsider = env.consumers[:8]
    fn = env.dr.functions
    u = env.utility.address
    env.expect_error("WrongBond", fn.submitBids(rid, [1000], [TICK]), {"from": honest.address})  # postBond first
    for wrong in (0, BOND - 1, BOND + 1):
        assert env.expect_error("WrongBond", fn.postBond(rid), {"from": honest.address, "value": wrong}) == (
            BOND, wrong)
    env.expect_error("NotSealed", fn.commitBids(rid, ZERO32), {"from": honest.address, "value": BOND})
    bids = {honest: ([1000, 1000], [TICK, 2 * TICK]), over: ([2000], [2 * TICK]), disputed: ([2000], [3 * TICK]),
            silent: ([1500], [3 * TICK]), late: ([1500], [4 * TICK]), loser: ([5000], [100 * TICK])}
    for who in list(bids) + [bonded_only]:
        receipt = env.dr.post_bond(who, rid, BOND)
        assert events(env, receipt, "BondPosted") == [{"requestId": rid, "consumer": who.address, "amount": BOND}]
        assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.postBond(rid), {"from": honest.address, "value": BOND})
    assert env.dr.participant_of(rid, honest.address).stage == Stage.BONDED
    for who, (watts, prices) in bids.items():
        env.dr.submit_bids(who, rid, watts, prices)
    args = env.expect_error("WrongStage", fn.submitBids(rid, [1], [TICK]), {"from": honest.address})
    assert checksum_first(args) == (honest.address, Stage.BID)  # one submission per consumer
    env.expect_error("WrongStage", fn.replaceBids(rid, [0], [1], [TICK]), {"from": honest.address})
    p = env.dr.participant_of(rid, honest.address)
    assert (p.stage, p.has_bids, p.first_bid_id, p.bid_count, p.bond) == (Stage.BID, True, 0, 2, BOND)
    assert env.dr.terms_of(rid).held_bonds == 7 * BOND
    assert_solvent(env, [rid])

    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    env.expect_error("BiddingClosed", fn.postBond(rid), {"from": outsider.address, "value": BOND})
    env.expect_error("NotSettled", fn.reportDelivery(rid, 1), {"from": honest.address})
    receipt = env.dr.select_winners(env.utility, rid)
    revealed = [(who.address, *b) for who, b in bids.items()]
    per_bidder = check_clearing(env, rid, receipt, revealed)
    # 1000@1, 1000@2, 2000@2, 2000@3, 1500@3, 1500@4 = exactly 9000 W; the loser gets nothing.
    assert per_bidder[loser.address].accepted_watts == 0
    assert env.dr.terms_of(rid).held_bonds == 7 * BOND  # bonds stay until delivery is settled
    assert_solvent(env, [rid])
    env.expect_error("PaidOnDelivery", fn.claim(rid, [0]))

    # Nothing accepted: settled at once by anyone, the whole bond back.
    for who in (bonded_only, loser):
        before = owed_now(env, [who.address, u])
        receipt = env.dr.settle_delivery(outsider, rid, who.address)
        check_settlement(env, rid, who.address, receipt, 0, 0, 0, BOND, before)
        assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.settleDelivery(rid, loser.address))
    env.expect_error("WrongStage", fn.settleDelivery(rid, outsider.address))  # never took part

    assert env.expect_error("ReportWindowClosed", fn.reportDelivery(rid, 1000), {"from": honest.address}) == (
        d["end"], d["report"])
    assert env.expect_error("TooEarly", fn.settleDelivery(rid, silent.address)) == (d["report"] + 1,)
    goto(env, d["end"] + 10)
    env.expect_error("DeliveryTooLarge", fn.reportDelivery(rid, 2**64), {"from": honest.address})
    args = env.expect_error("WrongStage", fn.reportDelivery(rid, 1000), {"from": outsider.address})
    assert checksum_first(args) == (outsider.address, Stage.NONE)  # a report from a key that is not a participant
    env.expect_error("WrongStage", fn.reportDelivery(rid, 1000), {"from": loser.address})  # already settled
    reports = {honest: 1500, over: 5000, disputed: 2000, late: 1200}
    for who, watts in reports.items():
        others = {x: env.dr.participant_of(rid, x.address) for x in bids if x is not who}
        receipt = env.dr.report_delivery(who, rid, watts)
        assert events(env, receipt, "DeliveryReported") == [{"requestId": rid, "consumer": who.address,
                                                              "deliveredWatts": watts}]
        p = env.dr.participant_of(rid, who.address)
        assert (p.stage, p.delivered_watts) == (Stage.REPORTED, watts)
        # A participant's report touches its own record only.
        assert {x: env.dr.participant_of(rid, x.address) for x in others} == others
    env.expect_error("WrongStage", fn.reportDelivery(rid, 9999), {"from": honest.address})  # no second report
    assert env.dr.participant_of(rid, honest.address).delivered_watts == 1500

    env.expect_error("NotUtility", fn.meterDelivery(rid, honest.address, 1500, b""), {"from": honest.address})
    env.expect_error("NotUtility", fn.meterDelivery(rid, disputed.address, 0, b""), {"from": honest.address})
    with pytest.raises(UserError, match="has not reported"):  # the wrapper's confirm needs a report
        env.dr.confirm_delivery(env.utility, rid, silent.address)
    # honest: 1500 of 2000 delivered, confirmed; over: 5000 reported for 2000, capped at 2000.
    for who in (honest, over):
        before = owed_now(env, [who.address, u])
        receipt = env.dr.confirm_delivery(env.utility, rid, who.address)
        check_settlement(env, rid, who.address, receipt, per_bidder[who.address].accepted_watts,
                         per_bidder[who.address].payout, reports[who], BOND, before)
        assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.meterDelivery(rid, honest.address, 1500, b""))  # settled already
    # Metering below the report disputes it and settles at once, publishing the evidence.
    before = owed_now(env, [disputed.address, u])
    receipt = env.dr.dispute_delivery(env.utility, rid, disputed.address, 800, b'{"method":"x"}')
    assert events(env, receipt, "DeliveryMetered") == [{"requestId": rid, "consumer": disputed.address,
                                                        "meteredWatts": 800, "evidence": b'{"method":"x"}'}]
    check_settlement(env, rid, disputed.address, receipt, 2000, per_bidder[disputed.address].payout, 800, BOND,
                     before)
    assert_solvent(env, [rid])

    # silent never reported: after the report deadline anyone settles it at 0 delivered.
    goto(env, d["report"] + 10)
    env.expect_error("ReportWindowClosed", fn.reportDelivery(rid, 1500), {"from": silent.address})
    before = owed_now(env, [silent.address, u])
    receipt = env.dr.settle_delivery(outsider, rid, silent.address)
    s = check_settlement(env, rid, silent.address, receipt, 1500, per_bidder[silent.address].payout, 0, BOND,
                         before)
    assert (s.payout, s.bond_returned) == (0, 0)  # the whole payout and bond go to the utility
    assert_solvent(env, [rid])
    # late reported; the utility neither confirmed nor disputed in time: its report stands.
    assert env.expect_error("TooEarly", fn.settleDelivery(rid, late.address)) == (d["dispute"] + 1,)
    goto(env, d["dispute"] + 10)
    assert env.expect_error("DisputeWindowClosed", fn.meterDelivery(rid, late.address, 1, b"")) == (d["dispute"],)
    before = owed_now(env, [late.address, u])
    receipt = env.dr.settle_delivery(outsider, rid, late.address)
    check_settlement(env, rid, late.address, receipt, 1500, per_bidder[late.address].payout, 1200, BOND, before)
    r = env.dr.get_request(rid)
    assert r.claimed_watts == r.accepted_watts == 9000  # every accepted watt settled: dust went back
    assert env.dr.terms_of(rid).held_bonds == 0
    assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.settleDelivery(rid, late.address))
    for who in [env.utility] + [x for x in bids] + [bonded_only]:
        if env.dr.owed(who.address):
            env.dr.withdraw(who)
            assert_solvent(env, [rid])
    assert env.w3.eth.get_balance(env.dr.address) == 0


def test_sealed_and_metered_pay_as_bid_cycle(env: Env) -> None:
    """Sealed and metered: the bond moves from unrevealed to held at reveal and is settled
    with the delivery; an unrevealed commitment's bond is forfeited at selection."""
    rid = terms_request(env, target=4000, rule=1)
    a, b, ghost, outsider = env.consumers[:4]
    fn = env.dr.functions
    u = env.utility.address
    bids = {a: ([1500, 1000], [2 * TICK, 6 * TICK]), b: ([2500], [4 * TICK]), ghost: ([4000], [TICK])}
    salts = {who: commit(env, rid, who, *b_) for who, b_ in bids.items()}
    assert env.dr.terms_of(rid).unrevealed_bonds == 3 * BOND
    assert_solvent(env, [rid])
    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    for who in (b, a):
        before = env.dr.owed(who.address)
        env.dr.reveal_bids(who, rid, *bids[who], salts[who])
        assert env.dr.owed(who.address) == before  # metered: the bond stays, now at stake for delivery
        assert_solvent(env, [rid])
    t = env.dr.terms_of(rid)
    assert (t.unrevealed_bonds, t.held_bonds) == (BOND, 2 * BOND)
    goto(env, d["reveal"] + 10)
    receipt = env.dr.select_winners(env.utility, rid)
    assert events(env, receipt, "BondsForfeited") == [{"requestId": rid, "amount": BOND}]
    per_bidder = check_clearing(env, rid, receipt, [(b.address, *bids[b]), (a.address, *bids[a])])
    assert (per_bidder[a.address].accepted_watts, per_bidder[b.address].accepted_watts) == (1500, 2500)
    assert_solvent(env, [rid])
    env.expect_error("WrongStage", fn.settleDelivery(rid, ghost.address))  # its bond is gone
    goto(env, d["end"] + 10)
    env.expect_error("WrongStage", fn.reportDelivery(rid, 4000), {"from": ghost.address})  # never revealed
    env.dr.report_delivery(a, rid, 1499)  # one watt short
    env.dr.report_delivery(b, rid, 2500)
    for who, delivered in ((a, 1499), (b, 2500)):
        before = owed_now(env, [who.address, u])
        receipt = env.dr.confirm_delivery(env.utility, rid, who.address)
        s = check_settlement(env, rid, who.address, receipt, per_bidder[who.address].accepted_watts,
                             per_bidder[who.address].payout, delivered, BOND, before)
        assert_solvent(env, [rid])
    assert s.penalty == 0 and s.bond_returned == BOND
    goto(env, d["report"] + 10)
    env.expect_error("ReportWindowClosed", fn.reportDelivery(rid, 1), {"from": ghost.address})


def test_cancelled_requests_return_bonds_through_settle_delivery(env: Env) -> None:
    sealed = terms_request(env)
    metered = terms_request(env, sealed=False)
    a, b, stranger = env.consumers[:3]
    fn = env.dr.functions
    commit(env, sealed, a, [1000], [TICK])
    commit(env, sealed, b, [2000], [TICK])
    env.dr.post_bond(a, metered, BOND)
    env.dr.post_bond(b, metered, BOND)
    env.dr.submit_bids(b, metered, [1000], [TICK])
    env.expect_error("NotSettled", fn.settleDelivery(sealed, a.address))  # open: nothing to settle yet
    for rid in (sealed, metered):
        env.dr.cancel_request(env.utility, rid)
        assert_solvent(env, [sealed, metered])
    env.expect_error("RequestNotOpen", fn.commitBids(sealed, ZERO32), {"from": stranger.address, "value": BOND})
    env.expect_error("RequestNotOpen", fn.postBond(metered), {"from": stranger.address, "value": BOND})
    for rid in (sealed, metered):
        for who in (a, b):
            before = env.dr.owed(who.address)
            receipt = env.dr.settle_delivery(stranger, rid, who.address)
            assert events(env, receipt, "DeliverySettled") == [{
                "requestId": rid, "consumer": who.address, "acceptedWatts": 0, "deliveredWatts": 0, "payout": 0,
                "penalty": 0, "bondReturned": BOND, "toUtility": 0}]
            assert pushed(env, receipt, who.address) == BOND  # pushed back, nothing to withdraw
            assert env.dr.owed(who.address) == before
            assert_solvent(env, [sealed, metered])
            env.expect_error("WrongStage", fn.settleDelivery(rid, who.address))  # once
        env.expect_error("WrongStage", fn.settleDelivery(rid, stranger.address))  # no bond to return
    t1, t2 = env.dr.terms_of(sealed), env.dr.terms_of(metered)
    assert (t1.unrevealed_bonds, t1.held_bonds, t2.unrevealed_bonds, t2.held_bonds) == (0, 0, 0, 0)
    assert env.dr.owed(a.address) == env.dr.owed(b.address) == 0  # nothing for the households to withdraw
    env.dr.withdraw(env.utility)  # the cancelled budgets
    assert env.w3.eth.get_balance(env.dr.address) == 0


def test_metered_without_bond_and_misdirected_calls(env: Env) -> None:
    rid = terms_request(env, target=1000, sealed=False, bond=0)
    c, other = env.consumers[:2]
    fn = env.dr.functions
    assert env.expect_error("WrongBond", fn.postBond(rid), {"from": c.address}) == (0, 0)  # no bond to post
    env.dr.submit_bids(c, rid, [1000], [TICK])  # no bond needed
    env.expect_error("UnknownRequest", fn.settleDelivery(999, c.address))
    env.expect_error("NotSettled", fn.meterDelivery(rid, c.address, 1000, b""))
    goto(env, deadlines(env, rid)["bidding"] + 10)
    env.dr.select_winners(env.utility, rid)
    goto(env, deadlines(env, rid)["end"] + 10)
    env.dr.report_delivery(c, rid, 600)
    args = env.expect_error("WrongStage", fn.meterDelivery(rid, other.address, 0, b""))  # other never took part
    assert checksum_first(args) == (other.address, Stage.NONE)
    before = owed_now(env, [c.address, env.utility.address])
    receipt = env.dr.dispute_delivery(env.utility, rid, c.address, 0)  # the utility's word is final
    promised = market.payout(1000, DURATION, TICK)
    s = check_settlement(env, rid, c.address, receipt, 1000, promised, 0, 0, before)
    assert (s.payout, s.to_utility) == (0, promised)
    assert_solvent(env, [rid])


# ------------------------------------------------------------------ late selection


def test_a_late_selection_cannot_cost_winners_their_bonds(env: Env) -> None:
    """When the event ends within GRACE_PERIOD of bidding closing, only the utility can
    select in time; if it selects after the event, winners learn they won too late. The
    report window then runs from the selection, and a winner selected after the event
    started is not penalised for a shortfall (it could not plan its reduction)."""
    rid = terms_request(env, target=1000, sealed=False, lead=10, duration=60)
    c, d_ = env.consumers[0], env.consumers[1]
    env.dr.post_bond(c, rid, BOND)
    env.dr.submit_bids(c, rid, [1000], [TICK])
    env.dr.post_bond(d_, rid, BOND)
    env.dr.submit_bids(d_, rid, [500], [2 * TICK])
    before = deadlines(env, rid)
    assert before["report"] < before["bidding"] + GRACE_PERIOD  # nobody but the utility can select in time
    goto(env, before["report"] + 10)
    receipt = env.dr.select_winners(env.utility, rid)
    selected = env.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    after = deadlines(env, rid)
    assert (after["report"], after["dispute"]) == (selected + REPORT, selected + REPORT + DISPUTE)
    env.dr.report_delivery(c, rid, 400)  # still possible: the window counts from the selection
    assert_solvent(env, [rid])
    goto(env, after["dispute"] + 10)
    promised = market.payout(1000, 60, TICK)
    owed = owed_now(env, [c.address, d_.address, env.utility.address])
    receipt = env.dr.settle_delivery(env.consumers[5], rid, c.address)
    assert events(env, receipt, "DeliverySettled")[0]["penalty"] == 0
    assert pushed(env, receipt, c.address) == promised * 400 // 1000 + BOND  # whole bond back
    receipt = env.dr.settle_delivery(env.consumers[5], rid, d_.address)  # lost the auction: bond back at once
    assert pushed(env, receipt, d_.address) == BOND
    assert env.dr.owed(c.address) == owed[c.address] and env.dr.owed(d_.address) == owed[d_.address]
    assert_solvent(env, [rid])


# ------------------------------------------------------------------ the utility meters (issue 17)


def test_the_utility_meters_a_winner_without_its_report_and_pushes_the_money(env: Env) -> None:
    """Sealed and metered, two household transactions: commit with bond, reveal. The
    utility settles from its own meter, publishing its evidence; payout and bond arrive
    without the household sending anything. Hostile cases: metering before selection,
    before the event ends, twice, a non-winner, a stranger; a report after metering; a
    metering after the dispute deadline."""
    rid = terms_request(env, target=3000)
    a, b, loser, stranger = env.consumers[:4]
    fn = env.dr.functions
    bids = {a: ([2000], [2 * TICK]), b: ([1000], [3 * TICK]), loser: ([5000], [100 * TICK])}
    salts = {who: commit(env, rid, who, *bid) for who, bid in bids.items()}
    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    for who, bid in bids.items():
        env.dr.reveal_bids(who, rid, *bid, salts[who])
    env.expect_error("NotSettled", fn.meterDelivery(rid, a.address, 2000, b""))  # before selection
    goto(env, d["reveal"] + 10)
    receipt = env.dr.select_winners(env.utility, rid)
    per_bidder = check_clearing(env, rid, receipt, [(w.address, *bid) for w, bid in bids.items()])
    assert env.expect_error("TooEarly", fn.meterDelivery(rid, a.address, 2000, b"")) == (d["end"],)  # event on
    goto(env, d["end"] + 10)
    assert checksum_first(env.expect_error("NotAWinner", fn.meterDelivery(rid, loser.address, 0, b""))) == (
        loser.address,)
    env.expect_error("NotUtility", fn.meterDelivery(rid, a.address, 2000, b""), {"from": a.address})
    evidence = b'{"data_hash":"0x' + b"ab" * 32 + b'","method":"caiso-10in10"}'
    nonces = {w.address: env.w3.eth.get_transaction_count(w.address) for w in (a, b)}
    balances = {w.address: env.w3.eth.get_balance(w.address) for w in (a, b)}
    u = env.utility.address
    for who, metered in ((a, 1500), (b, 1000)):
        before = owed_now(env, [who.address, u])
        receipt = env.dr.meter_delivery(env.utility, rid, who.address, metered, evidence)
        assert events(env, receipt, "DeliveryMetered") == [{"requestId": rid, "consumer": who.address,
                                                            "meteredWatts": metered, "evidence": evidence}]
        s = check_settlement(env, rid, who.address, receipt, per_bidder[who.address].accepted_watts,
                             per_bidder[who.address].payout, metered, BOND, before)
        assert env.w3.eth.get_balance(who.address) - balances[who.address] == s.to_consumer
        assert_solvent(env, [rid])
    assert {w.address: env.w3.eth.get_transaction_count(w.address) for w in (a, b)} == nonces
    assert [(e["consumer"], e["metered_watts"], e["evidence"]) for e in env.dr.deliveries_metered(rid)] == [
        (a.address, 1500, evidence), (b.address, 1000, evidence)]
    assert env.dr.deliveries_metered(rid, b.address)[0]["metered_watts"] == 1000
    # Twice: the winner is settled; its late report is refused too.
    env.expect_error("WrongStage", fn.meterDelivery(rid, a.address, 2000, b""))
    env.expect_error("WrongStage", fn.reportDelivery(rid, 2000), {"from": a.address})
    env.expect_error("WrongStage", fn.meterDelivery(rid, stranger.address, 0, b""))
    env.expect_error("DeliveryTooLarge", fn.meterDelivery(rid, loser.address, 2**64, b""))
    # The loser's bond comes back by anyone's settleDelivery, pushed.
    receipt = env.dr.settle_delivery(env.utility, rid, loser.address)
    assert pushed(env, receipt, loser.address) == BOND
    assert env.dr.terms_of(rid).held_bonds == 0
    assert_solvent(env, [rid])


def test_metering_at_or_above_a_report_confirms_it_and_after_the_deadline_is_refused(env: Env) -> None:
    rid = terms_request(env, target=3000, sealed=False)
    a, b, c = env.consumers[:3]
    fn = env.dr.functions
    for who, w in ((a, 1000), (b, 1000), (c, 1000)):
        env.dr.post_bond(who, rid, BOND)
        env.dr.submit_bids(who, rid, [w], [TICK])
    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    env.dr.select_winners(env.utility, rid)
    goto(env, d["end"] + 10)
    env.dr.report_delivery(a, rid, 700)
    env.dr.report_delivery(c, rid, 900)
    receipt = env.dr.meter_delivery(env.utility, rid, a.address, 950, b"")  # above the report: the report stands
    assert events(env, receipt, "DeliverySettled")[0]["deliveredWatts"] == 700
    # Without a report, the utility may still meter after the report deadline, until the dispute deadline.
    goto(env, d["report"] + 10)
    receipt = env.dr.meter_delivery(env.utility, rid, b.address, 800, b"")
    assert events(env, receipt, "DeliverySettled")[0]["deliveredWatts"] == 800
    goto(env, d["dispute"] + 10)
    assert env.expect_error("DisputeWindowClosed", fn.meterDelivery(rid, c.address, 100, b"")) == (d["dispute"],)
    receipt = env.dr.settle_delivery(env.consumers[5], rid, c.address)  # its report stands
    assert events(env, receipt, "DeliverySettled")[0]["deliveredWatts"] == 900
    assert_solvent(env, [rid])


@pytest.mark.parametrize("mode", [1, 2])  # REVERT, BURN (tests/contract/test_claim_and_pay.py)
def test_a_metered_winner_that_refuses_ether_is_credited_instead(env: Env, hostile: dict, mode: int) -> None:
    rid = terms_request(env, target=1000, sealed=False, bond=0)
    bidder = env.deploy_extra(hostile, env.dr.address, mode)
    env.utility.send(bidder.functions.bid(rid, [1000], [TICK]).build_transaction({"from": env.utility.address}))
    d = deadlines(env, rid)
    goto(env, d["bidding"] + 10)
    env.dr.select_winners(env.utility, rid)
    goto(env, d["end"] + 10)
    receipt = env.dr.meter_delivery(env.utility, rid, bidder.address, 1000, b"")
    promised = market.payout(1000, DURATION, TICK)
    assert events(env, receipt, "PaymentDeferred") == [{"requestId": rid, "bidder": bidder.address,
                                                        "amount": promised}]
    assert env.dr.owed(bidder.address) == promised
    owed = sum(env.dr.owed(a) for a in env.w3.eth.accounts)
    assert env.w3.eth.get_balance(env.dr.address) == promised + owed  # solvent to the wei
