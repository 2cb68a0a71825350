"""Stateful property test of DemandReduction on a real anvil (hypothesis RuleBasedStateMachine).

Random sequences of requests (both pricing rules, two price grids), bids from several
actors (ties, 1..6 bids per call and sometimes the 64 maximum; also relayed: signed by the
consumer, sent by a stranger with ``submitSignedBids``, sometimes twice), withdrawn and replaced
bids, cancelled requests, time jumps (onto the exact deadline and grace boundaries),
selections by the utility and by strangers, claims of random subsets by anyone,
withdrawals, and a two-step utility transfer, all against a Python model built on
``market.clear``. The test runs twice: every request in ether, then every request in the
6-decimal stablecoin TestUSD (``requestReductionInToken``; balances, payouts and withdrawals
in the token), so the model matches the contract to the base unit in both currencies.

After EVERY step (``@invariant``):

* the contract balance equals Σ owed over all actors + open escrow (open budgets, and
  reserved − paidOut of settled requests not fully claimed), to the wei;
* ``owed(a)`` equals the model's figure for every actor (refunds, payouts, dust);
* every request's status and bid count agree with the model.

Inside the steps: every clearing equals ``market.clear`` (clearing price, accepted,
reserved, refund, each bid's accepted watts and payout); ``MarginalHintRequired`` is
raised exactly when the clearing level has holes and is only partly accepted, and a
hint missing a bid is refused; every withdrawal delivers exactly the amount owed
before it (balance delta + fee), and a second one is refused; every expected revert
names the right custom error. The ``stranger_rescues`` rule checks liveness: a utility
that does nothing cannot lock money, because after deadline + grace a stranger settles,
claims every bid and every actor withdraws exactly what it is owed.

Chain time is deterministic: the fixture makes each block exactly 1 s after the last
(``anvil_setBlockTimestampInterval``), so the model knows the timestamp of the next
transaction and can aim at ``deadline`` and ``deadline + GRACE_PERIOD`` to the second.

Size: DR_STATEFUL_EXAMPLES valid runs (default 20; hypothesis adds short invalid ones)
of up to DR_STATEFUL_STEPS steps (default 30): about 650 steps, about 40 s on 2
loaded cores. Hypothesis enables a random subset of the rules in each run (swarm
testing), so the mix of steps varies from session to session; DR_STATEFUL_STATS=path
writes the counts. The long run (docs/security.md):
``DR_STATEFUL_EXAMPLES=200 DR_STATEFUL_STEPS=50 .venv/bin/python -m pytest tests/contract/test_stateful.py``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector
from web3.logs import DISCARD

from demand_response import devchain, relay
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, Status, decode_revert
from demand_response.market import (GRACE_PERIOD, Bid, Clearing, PricingRule, clear, paid_by_claim_and_pay,
                                    required_budget)
from demand_response.token import Erc20, deploy_test_usd, mint_test_usd

# Hypothesis spends its first 10 examples on short "zero-extended" runs, so runs beyond
# 10 are the long random ones.
EXAMPLES = int(os.environ.get("DR_STATEFUL_EXAMPLES", "20"))
STEPS = int(os.environ.get("DR_STATEFUL_STEPS", "30"))
STATS_FILE = os.environ.get("DR_STATEFUL_STATS")  # optional: write step counts here (JSON)

CAPS = (128 * 10**12, 128 * 7)  # a realistic grid and a tiny one (tick 7 wei) that maximises rounding dust
N_CONSUMERS = 5
ZERO = "0x" + "0" * 40

STATS: dict[str, int] = {"runs": 0, "steps": 0}
OWED_SELECTOR = function_signature_to_4byte_selector("owed(address)").hex()
GET_REQUEST_SELECTOR = function_signature_to_4byte_selector("getRequest(uint256)").hex()
OWED_TOKEN_SELECTOR = function_signature_to_4byte_selector("owedToken(address,address)").hex()
BALANCE_OF_SELECTOR = function_signature_to_4byte_selector("balanceOf(address)").hex()
REQUEST_VIEW = "(uint8,uint8," + ",".join(["uint256"] * 14) + ",address)"


def _count(name: str) -> None:
    STATS[name] = STATS.get(name, 0) + 1
    STATS["steps"] += 1


@pytest.fixture(scope="module")
def stateful_chain(tmp_path_factory: pytest.TempPathFactory):
    """Its own anvil with 1-second blocks, one deployed contract and TestUSD (both utility
    accounts hold it and approved the market); runs revert to a snapshot."""
    node = devchain.start("anvil", accounts=2 + N_CONSUMERS + 1, balance_eth=10**9,
                          log_path=tmp_path_factory.mktemp("stateful") / "anvil.log")
    node.rpc("anvil_setBlockTimestampInterval", [1])
    w3 = connect(node.url)
    dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    usd = deploy_test_usd(Signer(w3, w3.eth.accounts[0]))
    for a in w3.eth.accounts[:2]:  # the utility and the account that takes the role over
        mint_test_usd(Signer(w3, w3.eth.accounts[0]), usd.address, a, 10**30)
        usd.approve(Signer(w3, a), dr.address, 2**256 - 1)
    yield node, w3, dr, usd
    node.stop()


@dataclass
class RequestModel:
    """What the model knows about one request."""

    rid: int
    target: int
    duration: int
    deadline: int
    cap: int
    rule: PricingRule
    budget: int
    status: Status = Status.OPEN
    bids: list[Bid] = field(default_factory=list)  # in bid id order
    ids: list[int] = field(default_factory=list)
    submissions: int = 0
    clearing: Clearing | None = None
    claimed: set[int] = field(default_factory=set)  # indexes into bids
    dust_returned: bool = False

    @property
    def tick(self) -> int:
        return self.cap // 128

    def clear_now(self) -> Clearing:
        return clear(self.bids, self.target, self.duration, self.cap, self.budget, self.rule)

    def escrow(self) -> int:
        if self.status == Status.OPEN:
            return self.budget
        if self.status == Status.SETTLED and not self.dust_returned:
            assert self.clearing is not None
            paid = sum(self.clearing.outcomes[i].payout for i in self.claimed)
            return self.clearing.reserved - paid
        return 0


bid_list = st.one_of(
    st.lists(st.tuples(st.integers(1, 30_000), st.integers(1, 128)), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(1, 3_000), st.integers(1, 128)), min_size=64, max_size=64),
)


class MarketMachine(RuleBasedStateMachine):
    """The contract against a model; see the module docstring."""

    def __init__(self, node: devchain.DevChain, w3, dr: DemandReduction, usd: Erc20 | None = None) -> None:
        super().__init__()
        self.node, self.w3, self.dr = node, w3, dr
        self.usd = usd  # every request in this token; None: in ether
        self.token = usd.address if usd else None
        self.snap = node.rpc("evm_snapshot")
        accounts = w3.eth.accounts
        # Fresh signers per run: the chain's nonces go back with every evm_revert.
        self.signers = {a: Signer(w3, a) for a in accounts}
        self.utility = accounts[0]
        self.spare_utility = accounts[1]  # takes over the role in transfer_utility
        self.consumers = list(accounts[2:2 + N_CONSUMERS])
        self.stranger = accounts[2 + N_CONSUMERS]
        # The consumers' keys, for relayed bids (submit_signed); (bidder, request) pairs relayed.
        self.keys = dict(zip(self.consumers, devchain.dev_private_keys(2 + N_CONSUMERS, "anvil")[2:]))
        self.relayed: set[tuple[str, int]] = set()
        self.actors = list(accounts)
        self.requests: dict[int, RequestModel] = {}
        self.owed = {a: dr.owed(a, self.token) for a in self.actors}
        self.base_balance = self.balance(dr.address)
        self.base_requests = dr.request_count()
        assert self.base_balance == sum(self.owed.values())  # the snapshot holds no open escrow
        STATS["runs"] += 1

    def teardown(self) -> None:
        if os.environ.get("DR_STATEFUL_DEBUG"):
            print("run done", STATS["steps"], self.w3.eth.block_number)
        self.node.rpc("evm_revert", [self.snap])

    # -- helpers ---------------------------------------------------------------------

    def latest(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def balance(self, account: str) -> int:
        """``account``'s balance in the run's currency."""
        return self.usd.balance_of(account) if self.usd else self.w3.eth.get_balance(account)

    def withdraw_call(self, to: str | None = None):
        """The withdrawal call in the run's currency, to the caller or to ``to``."""
        fn = self.dr.functions
        if self.usd:
            return fn.withdrawToken(self.token, to) if to else None
        return fn.withdraw() if to is None else fn.withdrawTo(to)

    def next_ts(self) -> int:
        """Timestamp of the block the next transaction lands in (blocks are 1 s apart)."""
        return self.latest() + 1

    def jump_to(self, latest: int) -> None:
        """Mine a block at ``latest``, so the next transaction runs at ``latest + 1``."""
        if latest > self.latest():
            self.node.rpc("evm_setNextBlockTimestamp", [latest])
            self.node.rpc("evm_mine", [])

    def expect_error(self, call, sender: str, name: str) -> None:
        """``call`` from ``sender`` reverts with ``name`` in the next block."""
        try:
            call.call({"from": sender}, block_identifier="pending")
        except Exception as exc:  # noqa: BLE001 - web3 raises several types for reverts
            decoded = decode_revert(exc)
            assert decoded is not None, f"expected {name}, got {exc!r}"
            assert decoded.error == name, f"expected {name}, got {decoded.error}{decoded.error_args}"
            return
        raise AssertionError(f"expected {name}, but the call succeeded")

    def events(self, receipt, name: str) -> list:
        """Decoded ``name`` events of ``receipt`` (other events skipped silently)."""
        return list(getattr(self.dr.contract.events, name)().process_receipt(receipt, errors=DISCARD))

    def credit(self, account: str, amount: int) -> None:
        self.owed[account] = self.owed.get(account, 0) + amount

    def pick_request(self, data, where=lambda r: True) -> RequestModel | None:
        choices = [r for r in self.requests.values() if where(r)]
        return data.draw(st.sampled_from(choices)) if choices else None

    def live_bids_of(self, r: RequestModel, who: str) -> list[int]:
        return [i for i, b in enumerate(r.bids) if b.bidder == who and not b.cancelled]

    def _record_submission(self, r: RequestModel, who: str, bids: list[tuple[int, int]], receipt) -> None:
        # One event per submission; the bids themselves are read back from the contract.
        first = r.submissions << 6
        assert [dict(e["args"]) for e in self.events(receipt, "BidsSubmitted")] == [
            {"requestId": r.rid, "bidder": who, "firstBidId": first, "count": len(bids)}]
        stored = self.dr.functions.submissionBids(r.rid, r.submissions).call()
        assert [(b[0], b[1], b[2], b[3]) for b in stored] == [
            (first + i, who, w, t * r.tick) for i, (w, t) in enumerate(bids)]
        for i, (w, t) in enumerate(bids):
            r.bids.append(Bid(who, w, t * r.tick))
            r.ids.append(first + i)
        r.submissions += 1

    def _bidding_error(self, r: RequestModel) -> str | None:
        if r.status != Status.OPEN:
            return "RequestNotOpen"
        if self.next_ts() > r.deadline:
            return "BiddingClosed"
        return None

    # -- rules: requests -------------------------------------------------------------

    @initialize(rule_=st.sampled_from(list(PricingRule)), bids=st.lists(
        st.tuples(st.integers(0, N_CONSUMERS - 1), st.integers(1, 20_000), st.integers(1, 3)), min_size=1, max_size=6))
    def opening_market(self, rule_, bids) -> None:
        """Every run starts with one open request and a few cheap, tied bids in it."""
        self._request(25_000, 3600, 600, 60, rule_, CAPS[0], 0)
        r = self.requests[max(self.requests)]
        for who, w, t in bids:
            receipt = self.dr.submit_bids(self.signers[self.consumers[who]], r.rid, [w], [t * r.tick])
            self._record_submission(r, self.consumers[who], [(w, t)], receipt)
            _count("submit")

    @precondition(lambda self: sum(r.status == Status.OPEN for r in self.requests.values()) < 4)
    @rule(watts=st.integers(1, 150_000), duration=st.integers(1, 6 * 3600), window=st.integers(1, 900),
          gap=st.integers(0, 600), rule_=st.sampled_from(list(PricingRule)), cap=st.sampled_from(CAPS),
          extra=st.one_of(st.just(0), st.integers(1, 10**15)))
    def request(self, watts, duration, window, gap, rule_, cap, extra) -> None:
        self._request(watts, duration, window, gap, rule_, cap, extra)

    def _request(self, target, duration, window, gap, rule_, cap, extra) -> None:
        deadline = self.next_ts() + window
        budget = required_budget(target, duration, cap) + extra
        rid, receipt = self.dr.request_reduction(self.signers[self.utility], target, deadline + gap,
                                                 deadline + gap + duration, deadline, cap, rule_, budget,
                                                 token=self.token)
        assert rid == self.base_requests + len(self.requests) + 1
        self.requests[rid] = RequestModel(rid, target, duration, deadline, cap, rule_, budget)
        _count("request")

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def cancel_request(self, data) -> None:
        r = self.pick_request(data)
        self.maybe_jump(data, r, [0, 1])
        caller = data.draw(st.sampled_from([self.utility, self.utility, self.stranger]))
        call = self.dr.functions.cancelRequest(r.rid)
        if caller != self.utility:
            self.expect_error(call, caller, "NotUtility")
        elif (error := self._bidding_error(r)) is not None:
            self.expect_error(call, caller, error)
        else:
            receipt = self.dr.cancel_request(self.signers[caller], r.rid)
            event = self.events(receipt, "RequestCancelled")[0]["args"]
            assert event["refund"] == r.budget
            r.status = Status.CANCELLED
            self.credit(caller, r.budget)
            self.expect_error(self.dr.functions.submitBids(r.rid, [1], [r.tick]), self.consumers[0],
                              "RequestNotOpen")
        _count("cancel_request")

    # -- rules: bids -------------------------------------------------------------------

    def maybe_jump(self, data, r: RequestModel, offsets: list[int]) -> None:
        """Sometimes move time first so that the next transaction lands on ``deadline + offset``."""
        offset = data.draw(st.sampled_from([None, None] + offsets))
        if offset is not None:
            self.jump_to(r.deadline + offset - 1)

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), bids=bid_list, narrow=st.booleans())
    def submit(self, data, bids, narrow) -> None:
        r = self.pick_request(data)
        self.maybe_jump(data, r, [0, 1])  # the last second of bidding, and the first one after
        who = data.draw(st.sampled_from(self.consumers))
        if narrow:  # squeeze into three adjacent ticks: ties and partly accepted levels
            bids = [(w, 1 + t % 3) for w, t in bids]
        call = self.dr.functions.submitBids(r.rid, [w for w, _ in bids], [t * r.tick for _, t in bids])
        if (error := self._bidding_error(r)) is not None:
            self.expect_error(call, who, error)
        else:
            receipt = self.dr.submit_bids(self.signers[who], r.rid, [w for w, _ in bids],
                                          [t * r.tick for _, t in bids])
            self._record_submission(r, who, bids, receipt)
        _count("submit_64" if len(bids) == 64 else "submit")

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), bids=bid_list, copies=st.integers(1, 2))
    def submit_signed(self, data, bids, copies) -> None:
        """Relayed bids (issue 15): the stranger places a consumer's signed bids, once or twice in
        one batch. The model is submitBids' own; a bidder's second relayed entry for a request is
        skipped (reason 1), whether in the same batch or a later one."""
        r = self.pick_request(data)
        self.maybe_jump(data, r, [0, 1])
        who = data.draw(st.sampled_from(self.consumers))
        entry = relay.sign_bids(self.keys[who], self.dr.address, self.w3.eth.chain_id, r.rid, who,
                                [w for w, _ in bids], [t * r.tick for _, t in bids])
        entries = [entry] * copies
        call = self.dr.functions.submitSignedBids(r.rid, [relay.entry_tuple(e) for e in entries])
        if (error := self._bidding_error(r)) is not None:
            self.expect_error(call, self.stranger, error)
        else:
            receipt = self.dr.submit_signed_bids(self.signers[self.stranger], r.rid, entries)
            placed = (who, r.rid) not in self.relayed
            assert self.dr.skipped_signed_bids(receipt) == [(who, 1)] * (copies - placed)
            if placed:
                self._record_submission(r, who, bids, receipt)
                self.relayed.add((who, r.rid))
            else:
                assert self.events(receipt, "BidsSubmitted") == []
        _count("submit_signed")

    @precondition(lambda self: any(not b.cancelled for r in self.requests.values() for b in r.bids))
    @rule(data=st.data())
    def cancel_bids(self, data) -> None:
        r = self.pick_request(data, lambda r: any(not b.cancelled for b in r.bids))
        self.maybe_jump(data, r, [0, 1])
        who = data.draw(st.sampled_from(sorted({b.bidder for b in r.bids if not b.cancelled})))
        live = self.live_bids_of(r, who)
        chosen = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=min(len(live), 8), unique=True))
        ids = sorted(r.ids[i] for i in chosen)
        call = self.dr.functions.cancelBids(r.rid, ids)
        if (error := self._bidding_error(r)) is not None:
            self.expect_error(call, who, error)
        else:
            other = next((c for c in self.consumers if c != who), None)
            self.expect_error(call, other, "NotBidder")  # nobody withdraws someone else's bid
            receipt = self.dr.cancel_bids(self.signers[who], r.rid, ids)
            events = self.events(receipt, "BidCancelled")
            assert sorted(e["args"]["bidId"] for e in events) == ids
            for i in chosen:
                r.bids[i] = replace(r.bids[i], cancelled=True)
            self.expect_error(call, who, self._bidding_error(r) or "BidAlreadyCancelled")
        _count("cancel_bids")

    @precondition(lambda self: any(r.status == Status.OPEN for r in self.requests.values()))
    @rule(data=st.data())
    def hole_at_the_margin(self, data) -> None:
        """The adversarial withdrawal: cancel a live bid queued BEFORE the marginal one at the
        current clearing level, so selection needs (and must verify) a marginal hint."""
        r = self.pick_request(data, lambda r: r.status == Status.OPEN)
        if self._bidding_error(r) is not None:
            return
        result = r.clear_now()
        level = [i for i, b in enumerate(r.bids) if b.price == result.clearing_price and not b.cancelled]
        accepted = [i for i in level if result.outcomes[i].accepted_watts]
        if not accepted:
            return
        before = [i for i in level if i < accepted[-1]]
        if not before:
            return
        i = data.draw(st.sampled_from(before))
        self.dr.cancel_bids(self.signers[r.bids[i].bidder], r.rid, [r.ids[i]])
        r.bids[i] = replace(r.bids[i], cancelled=True)
        _count("hole_at_the_margin")

    @precondition(lambda self: any(not b.cancelled for r in self.requests.values() for b in r.bids))
    @rule(data=st.data(), bids=st.lists(st.tuples(st.integers(1, 30_000), st.integers(1, 128)),
                                        min_size=1, max_size=4))
    def replace_bids(self, data, bids) -> None:
        r = self.pick_request(data, lambda r: any(not b.cancelled for b in r.bids))
        who = data.draw(st.sampled_from(sorted({b.bidder for b in r.bids if not b.cancelled})))
        live = self.live_bids_of(r, who)
        chosen = data.draw(st.lists(st.sampled_from(live), min_size=0, max_size=min(len(live), 4), unique=True))
        ids = sorted(r.ids[i] for i in chosen)
        call = self.dr.functions.replaceBids(r.rid, ids, [w for w, _ in bids], [t * r.tick for _, t in bids])
        if (error := self._bidding_error(r)) is not None:
            self.expect_error(call, who, error)
        else:
            receipt = self.dr._send(self.signers[who], call)
            for i in chosen:
                r.bids[i] = replace(r.bids[i], cancelled=True)
            self._record_submission(r, who, bids, receipt)
        _count("replace_bids")

    # -- rules: time ---------------------------------------------------------------------

    @rule(data=st.data())
    def advance(self, data) -> None:
        """Small steps, or onto a request's boundaries: the next tx runs AT deadline, just
        after it, at the end of the grace period, or just after that."""
        if self.requests and data.draw(st.booleans()):
            r = self.pick_request(data)
            offset = data.draw(st.sampled_from([-1, 0, GRACE_PERIOD - 1, GRACE_PERIOD, GRACE_PERIOD + 50]))
            self.jump_to(r.deadline + offset)
        else:
            self.jump_to(self.latest() + data.draw(st.sampled_from([1, 30, 200, 900, 4000])))
        _count("advance")

    # -- rules: selection ------------------------------------------------------------------

    def _need_hint(self, r: RequestModel, result: Clearing) -> bool:
        if not result.clearing_price:
            return False
        level = [(b, o) for b, o in zip(r.bids, result.outcomes) if b.price == result.clearing_price]
        live = sum(b.watts for b, _ in level if not b.cancelled)
        taken = sum(o.accepted_watts for _, o in level)
        return taken < live and any(b.cancelled for b, _ in level)

    def _select(self, r: RequestModel, caller: str) -> None:
        expected = r.clear_now()
        if self._need_hint(r, expected):
            self.expect_error(self.dr.functions.selectWinners(r.rid), caller, "MarginalHintRequired")
            hint = self.dr.marginal_hint(r.rid)
            if len(hint) > 1:  # a hint that leaves out a bid before the marginal one
                self.expect_error(self.dr.functions.selectWinnersWithHint(r.rid, hint[1:]), caller,
                                  "BadMarginalHint")
            _count("hint_required")
        if self.latest() > r.deadline + (0 if caller == self.utility else GRACE_PERIOD):
            receipt = self.dr.select_winners(self.signers[caller], r.rid)  # the wrapper finds the hint
        else:
            # The next block is the first one allowed to settle. Gas estimation runs on the
            # latest block, where selection is still refused, so send with a fixed limit.
            fn = self.dr.functions
            call = (fn.selectWinnersWithHint(r.rid, self.dr.marginal_hint(r.rid)) if self._need_hint(r, expected)
                    else fn.selectWinners(r.rid))
            receipt = self.dr._send(self.signers[caller], call, gas=2_000_000)
            _count("select_on_boundary")
        event = self.events(receipt, "WinnersSelected")[0]["args"]
        assert (event["clearingPriceWeiPerKWh"], event["acceptedWatts"], event["totalPayout"], event["refund"]) == (
            expected.clearing_price, expected.accepted_watts, expected.reserved, expected.refund)
        live = sum(b.watts for b in r.bids if not b.cancelled)
        assert expected.accepted_watts == min(live, r.target)  # never over-procured
        on_chain = self.dr.get_bids(r.rid)
        assert [b.bid_id for b in on_chain] == r.ids
        assert [(b.bidder, b.watts, b.price, b.cancelled) for b in on_chain] == [
            (b.bidder, b.watts, b.price, b.cancelled) for b in r.bids]
        assert [(b.accepted_watts, b.payout) for b in on_chain] == [
            (o.accepted_watts, o.payout) for o in expected.outcomes]
        r.status, r.clearing = Status.SETTLED, expected
        self.credit(self.utility, expected.refund)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def select(self, data) -> None:
        r = self.pick_request(data)
        # Often straight onto a boundary: just after the deadline (utility only), the last
        # second of the grace period (strangers refused) and the first one after it.
        self.maybe_jump(data, r, [1, 1, GRACE_PERIOD, GRACE_PERIOD + 1, GRACE_PERIOD + 1])
        caller = data.draw(st.sampled_from([self.utility, self.stranger, self.consumers[0]]))
        call = self.dr.functions.selectWinners(r.rid)
        now = self.next_ts()
        if r.status != Status.OPEN:
            self.expect_error(call, caller, "RequestNotOpen")
        elif now <= r.deadline:
            self.expect_error(call, caller, "BiddingStillOpen")
        elif caller != self.utility and now <= r.deadline + GRACE_PERIOD:
            self.expect_error(call, caller, "GracePeriodNotOver")
        else:
            self._select(r, caller)
            _count("select_by_utility" if caller == self.utility else "select_by_stranger")
            if r.bids and data.draw(st.booleans()):
                (self._claim_some if data.draw(st.booleans()) else self._pay_some)(data, r)
            return
        _count("select_refused")

    # -- rules: money ------------------------------------------------------------------------

    def _claim(self, r: RequestModel, indexes: list[int], caller: str) -> None:
        assert r.clearing is not None
        receipt = self.dr.claim(self.signers[caller], r.rid, [r.ids[i] for i in indexes])
        credited = self.events(receipt, "PayoutCredited")
        expected_events = []
        for i in indexes:
            outcome = r.clearing.outcomes[i]
            if outcome.accepted_watts:
                expected_events.append((r.ids[i], r.bids[i].bidder, outcome.accepted_watts, outcome.payout))
                self.credit(r.bids[i].bidder, outcome.payout)
        assert [(e["args"]["bidId"], e["args"]["bidder"], e["args"]["acceptedWatts"], e["args"]["amount"])
                for e in credited] == expected_events
        r.claimed.update(indexes)
        claimed_watts = sum(r.clearing.outcomes[i].accepted_watts for i in r.claimed)
        dust_events = self.events(receipt, "DustReturned")
        if r.clearing.accepted_watts and claimed_watts == r.clearing.accepted_watts and not r.dust_returned:
            r.dust_returned = True
            self.credit(self.utility, r.clearing.dust)
            assert [e["args"]["amount"] for e in dust_events] == ([r.clearing.dust] if r.clearing.dust else [])
        else:
            assert dust_events == []
        info = self.dr.get_request(r.rid)
        assert (info.claimed_watts, info.paid_out) == (
            claimed_watts, sum(r.clearing.outcomes[i].payout for i in r.claimed))

    def _claim_some(self, data, r: RequestModel) -> None:
        open_ = [i for i in range(len(r.bids)) if i not in r.claimed]
        chosen = data.draw(st.lists(st.sampled_from(open_), min_size=1, max_size=min(len(open_), 12), unique=True))
        caller = data.draw(st.sampled_from(self.actors))  # anyone may claim on a bidder's behalf
        if r.claimed and data.draw(st.booleans()):
            again = data.draw(st.sampled_from(sorted(r.claimed)))
            self.expect_error(self.dr.functions.claim(r.rid, [r.ids[i] for i in chosen] + [r.ids[again]]),
                              caller, "AlreadyClaimed")  # all or nothing: the fresh ones stay claimable
        self._claim(r, chosen, caller)
        _count("claim")

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def claim(self, data) -> None:
        r = self.pick_request(data)
        if r.status != Status.SETTLED:
            self.expect_error(self.dr.functions.claim(r.rid, [0]), self.stranger, "NotSettled")
            _count("claim_refused")
        elif len(r.claimed) == len(r.bids):
            if r.bids:
                self.expect_error(self.dr.functions.claim(r.rid, [r.ids[-1]]), self.stranger, "AlreadyClaimed")
            _count("claim_refused")
        else:
            self._claim_some(data, r)

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def claim_and_pay(self, data) -> None:
        """Anyone pays winners directly: the ids may include claimed, losing and repeated
        bids (skipped); each winner's balance grows by its payout to the wei, and nothing
        it is owed changes."""
        r = self.pick_request(data)
        if r.status != Status.SETTLED:
            self.expect_error(self.dr.functions.claimAndPay(r.rid, [0]), self.stranger, "NotSettled")
            _count("claim_and_pay_refused")
            return
        if r.bids:
            self._pay_some(data, r)

    def _pay_some(self, data, r: RequestModel) -> None:
        assert r.clearing is not None
        indexes = data.draw(st.lists(st.integers(0, len(r.bids) - 1), min_size=1, max_size=12))
        caller = data.draw(st.sampled_from(self.actors))
        paid = paid_by_claim_and_pay(r.clearing, r.claimed, indexes)
        receivers = {r.bids[i].bidder for i in paid} | {caller}
        before = {a: self.balance(a) for a in receivers}
        (receipt,) = self.dr.claim_and_pay(self.signers[caller], r.rid, [r.ids[i] for i in indexes])
        sent = [(e["args"]["bidId"], e["args"]["bidder"], e["args"]["acceptedWatts"], e["args"]["amount"])
                for e in self.events(receipt, "PayoutSent")]
        assert sent == [(r.ids[i], r.bids[i].bidder, r.clearing.outcomes[i].accepted_watts,
                         r.clearing.outcomes[i].payout) for i in paid]
        assert self.events(receipt, "PaymentDeferred") == []  # every actor is an account that accepts ether
        gain = {a: 0 for a in receivers}
        for i in paid:
            gain[r.bids[i].bidder] += r.clearing.outcomes[i].payout
        if not self.usd:
            gain[caller] -= receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert {a: self.balance(a) - before[a] for a in receivers} == gain
        r.claimed.update(paid)
        claimed_watts = sum(r.clearing.outcomes[i].accepted_watts for i in r.claimed)
        dust_events = self.events(receipt, "DustReturned")
        if paid and claimed_watts == r.clearing.accepted_watts and not r.dust_returned:
            r.dust_returned = True
            self.credit(self.utility, r.clearing.dust)
            assert [e["args"]["amount"] for e in dust_events] == ([r.clearing.dust] if r.clearing.dust else [])
        else:
            assert dust_events == []
        info = self.dr.get_request(r.rid)
        assert (info.claimed_watts, info.paid_out) == (
            claimed_watts, sum(r.clearing.outcomes[i].payout for i in r.claimed))
        _count("claim_and_pay")

    def _withdraw(self, who: str, to: str | None = None) -> None:
        amount = self.owed[who]
        receiver = to or who
        before = self.balance(receiver)
        call = self.withdraw_call(to) if not self.usd else self.withdraw_call(receiver)
        receipt = self.dr._send(self.signers[who], call)
        fee = receipt["gasUsed"] * receipt["effectiveGasPrice"] if receiver == who and not self.usd else 0
        assert self.balance(receiver) == before + amount - fee  # exactly what was owed
        event = self.events(receipt, "Withdrawal")[0]["args"]
        assert (event["account"], event["to"], event["amount"]) == (who, receiver, amount)
        self.owed[who] = 0
        self.expect_error(self.withdraw_call(who if self.usd else None), who, "NothingOwed")  # never twice

    @rule(data=st.data())
    def withdraw(self, data) -> None:
        owed = [a for a in self.actors if self.owed[a]]
        who = data.draw(st.sampled_from(owed if owed and data.draw(st.integers(0, 3)) else self.actors))
        if self.owed[who] == 0:
            self.expect_error(self.withdraw_call(who if self.usd else None), who, "NothingOwed")
            _count("withdraw_refused")
            return
        to = data.draw(st.sampled_from([None, None, self.stranger]))
        self._withdraw(who, None if to == who else to)
        _count("withdraw")

    @precondition(lambda self: any(r.status == Status.OPEN for r in self.requests.values()))
    @rule(data=st.data())
    def stranger_rescues(self, data) -> None:
        """The utility does nothing: after deadline + grace a stranger settles, claims every
        bid for the bidders, and everyone withdraws exactly what it is owed."""
        r = self.pick_request(data, lambda r: r.status == Status.OPEN)
        self.jump_to(max(self.latest(), r.deadline + GRACE_PERIOD))
        self._select(r, self.stranger)
        rest = [i for i in range(len(r.bids)) if i not in r.claimed]
        for start in range(0, len(rest), 100):
            self._claim(r, rest[start:start + 100], self.stranger)
        assert r.escrow() == 0
        for who in self.actors:
            if self.owed[who]:
                self._withdraw(who)
        _count("stranger_rescues")

    @rule(data=st.data())
    def transfer_utility(self, data) -> None:
        """Two-step hand-over to the spare account and back; refunds follow the role."""
        old, new = self.utility, self.spare_utility
        fn = self.dr.functions
        self.expect_error(fn.transferUtility(self.stranger), new, "NotUtility")
        self.dr._send(self.signers[old], fn.transferUtility(new))
        if data.draw(st.booleans()):  # a stranger cannot jump in
            self.expect_error(fn.acceptUtility(), self.stranger, "NotPendingUtility")
        self.dr._send(self.signers[new], fn.acceptUtility())
        assert self.dr.utility() == new and fn.pendingUtility().call() == ZERO
        self.utility, self.spare_utility = new, old
        self.expect_error(fn.cancelRequest(1), old, "NotUtility")
        _count("transfer_utility")

    # -- invariants ----------------------------------------------------------------------------

    def _read_state(self) -> tuple[int, dict[str, int], dict[int, tuple]]:
        """Balance, owed(a) of every actor and getRequest of every request, read in ONE
        JSON-RPC batch at one block (web3's per-call overhead would dominate the run)."""
        block = hex(self.w3.eth.block_number)
        word = lambda a: a[2:].lower().rjust(64, "0")  # noqa: E731 - an address as an ABI word
        if self.usd:
            calls = [{"method": "eth_call", "params": [
                {"to": self.token, "data": "0x" + BALANCE_OF_SELECTOR + word(self.dr.address)}, block]}]
        else:
            calls = [{"method": "eth_getBalance", "params": [self.dr.address, block]}]
        for a in self.actors:
            data = (OWED_TOKEN_SELECTOR + word(self.token) if self.usd else OWED_SELECTOR) + word(a)
            calls.append({"method": "eth_call", "params": [{"to": self.dr.address, "data": "0x" + data}, block]})
        rids = sorted(self.requests)
        for rid in rids:
            calls.append({"method": "eth_call", "params": [
                {"to": self.dr.address, "data": "0x" + GET_REQUEST_SELECTOR + f"{rid:064x}"}, block]})
        body = json.dumps([{"jsonrpc": "2.0", "id": i, **c} for i, c in enumerate(calls)]).encode()
        req = urllib.request.Request(self.node.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            replies = sorted(json.loads(response.read()), key=lambda x: x["id"])
        assert all("error" not in x for x in replies), replies
        values = [x["result"] for x in replies]
        balance = int(values[0], 16)
        owed = {a: int(v, 16) for a, v in zip(self.actors, values[1:1 + len(self.actors)])}
        views = {rid: abi_decode([REQUEST_VIEW], bytes.fromhex(v[2:]))[0]
                 for rid, v in zip(rids, values[1 + len(self.actors):])}
        return balance, owed, views

    @invariant()
    def books_balance(self) -> None:
        """Contract balance == Σ owed + open escrow, and every figure agrees with the model."""
        balance, on_chain_owed, views = self._read_state()
        assert on_chain_owed == self.owed
        escrow = 0
        for rid, v in views.items():
            r = self.requests[rid]
            (status, _, _, _, _, _, _, _, budget, submissions, bid_count, _, accepted, reserved, paid_out,
             claimed_watts, token) = v
            assert int(token, 16) == int(self.token or "0x0", 16)
            assert (status, bid_count, submissions) == (r.status, len(r.bids), r.submissions)
            if status == Status.OPEN:
                escrow += budget
            elif status == Status.SETTLED and claimed_watts < accepted:
                escrow += reserved - paid_out
        assert escrow == sum(r.escrow() for r in self.requests.values())
        assert balance == sum(on_chain_owed.values()) + escrow


@pytest.mark.parametrize("currency", ["ether", "TestUSD"])
def test_random_market_histories_keep_the_books(stateful_chain, currency: str) -> None:
    node, w3, dr, usd = stateful_chain
    for key in STATS:
        STATS[key] = 0
    run_state_machine_as_test(
        lambda: MarketMachine(node, w3, dr, usd if currency == "TestUSD" else None),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                          suppress_health_check=list(HealthCheck),
                          verbosity=Verbosity.debug if os.environ.get("DR_STATEFUL_DEBUG") else Verbosity.normal),
    )
    # The runs did real work (hypothesis disables random subsets of rules per run, so only
    # the steps every run makes are asserted; the counts are in DR_STATEFUL_STATS).
    assert STATS["steps"] > STATS["runs"] >= EXAMPLES
    assert STATS["request"] >= STATS["runs"] and STATS["submit"] >= STATS["runs"]
    if STATS_FILE:
        with open(STATS_FILE, "w") as out:
            json.dump(STATS, out, indent=2, sort_keys=True)
