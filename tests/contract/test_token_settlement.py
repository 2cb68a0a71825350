"""Requests in an ERC-20 token (issue 15, "Money people use"), on anvil and ganache.

A 6-decimal OpenZeppelin ERC-20 like USDC (contracts/test/TestUSD.sol) carries the budget,
the payouts, the refunds and the dust; hostile tokens (contracts/test/HostileTokens.sol) check
that a fee-on-transfer token is refused, that a blacklisted, false-returning or hooked
recipient blocks nobody, and that a hook re-entering the market changes no balance it should
not. After every step the market is solvent in both currencies: its token balance is what it
owes in the token plus the escrow of the token's requests, and the same in ether.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from web3 import Web3
from web3.logs import DISCARD

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, Status, Terms, decode_revert
from demand_response.market import Bid, PricingRule, clear, required_budget
from demand_response.token import ZERO_ADDRESS, Erc20, deploy_test_usd, mint_test_usd
from demand_response.units import USDC

ROOT = Path(__file__).resolve().parents[2]
#: 0.499968 TUSD per kWh: a cap on the 128-tick grid (tick = 3,906 base units).
CAP = 128 * 3_906
TICK = CAP // 128
USD = 10**6  # base units in one TUSD
NOTHING, REENTER, BURN, REVERT = 0, 1, 2, 3


def _artifact(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "build" / "contracts" / f"{name}.json").read_text())


class Market:
    """A market, its tokens and accounts on one chain; chain state reverts after each test."""

    def __init__(self, node: devchain.DevChain) -> None:
        self.node = node
        self.w3 = connect(node.url)
        accounts = self.w3.eth.accounts
        self.utility = Signer(self.w3, accounts[0])
        self.consumers = [Signer(self.w3, a) for a in accounts[1:8]]
        self.dr = DemandReduction.deploy(self.utility)
        self.usd = deploy_test_usd(self.utility)
        mint_test_usd(self.utility, self.usd.address, self.utility.address, 10**6 * USD)
        self.tokens: dict[str, Any] = {}
        self.requests: list[int] = []

    def deploy(self, name: str, *args: Any) -> Any:
        """Deploy a test contract from build/contracts (the hostile tokens and receivers)."""
        artifact = _artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self.utility.send(factory.constructor(*args).build_transaction({"from": self.utility.address}))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])

    def hostile_token(self, name: str) -> Any:
        """A hostile token with a million units minted to the utility."""
        token = self.deploy(name)
        self.send(token.functions.mint(self.utility.address, 10**6 * USD))
        return token

    def send(self, call: Any, sender: Signer | None = None) -> dict[str, Any]:
        sender = sender or self.utility
        return sender.send(call.build_transaction({"from": sender.address}))

    def now(self) -> int:
        self.node.rpc("evm_mine", [])
        return self.w3.eth.get_block("latest")["timestamp"]

    def advance(self, seconds: int) -> None:
        self.node.rpc("evm_increaseTime", [seconds])
        self.node.rpc("evm_mine", [])

    def request(self, token: str, target: int = 5000, budget: int | None = None,
                rule: PricingRule = PricingRule.UNIFORM, terms: Terms | None = None) -> int:
        """A request in ``token`` (ZERO_ADDRESS: ether), bidding for 300 s, a 1 h event."""
        now = self.now()
        cap = CAP if token != ZERO_ADDRESS else 128 * 10**12
        rid, _ = self.dr.request_reduction(self.utility, target, now + 360, now + 3960, now + 300, cap, rule,
                                           budget, terms=terms, token=None if token == ZERO_ADDRESS else token)
        self.requests.append(rid)
        return rid

    def expect_error(self, name: str, call: Any, sender: str | None = None) -> tuple:
        with pytest.raises(Exception) as info:
            call.call({"from": sender or self.utility.address})
        decoded = decode_revert(info.value)
        assert decoded is not None, f"expected {name}, got {info.value!r}"
        assert decoded.error == name, f"expected {name}, got {decoded.error}{decoded.error_args}"
        return decoded.error_args

    def events(self, receipt: dict, name: str) -> list[dict]:
        return [dict(e["args"]) for e in getattr(self.dr.contract.events, name)().process_receipt(receipt, errors=DISCARD)]

    def holders(self, extra: tuple[str, ...] = ()) -> list[str]:
        return [self.utility.address, *(c.address for c in self.consumers), *extra]

    def assert_solvent(self, extra: tuple[str, ...] = ()) -> None:
        """In every currency: the market holds exactly what it owes plus the open escrow."""
        currencies = {ZERO_ADDRESS}
        for rid in self.requests:
            currencies.add(self.dr.get_request(rid).token)
        for token in currencies:
            owed = sum(self.dr.owed(a, token) for a in self.holders(extra))
            escrow = 0
            for rid in self.requests:
                r = self.dr.get_request(rid)
                if r.token != token:
                    continue
                if r.status == Status.OPEN:
                    escrow += r.budget
                elif r.status == Status.SETTLED and r.claimed_watts < r.accepted_watts:
                    escrow += r.reserved - r.paid_out
            held = (self.w3.eth.get_balance(self.dr.address) if token == ZERO_ADDRESS
                    else Erc20(self.w3, token).balance_of(self.dr.address))
            assert held == owed + escrow, f"{token}: holds {held}, owes {owed} + escrow {escrow}"


@pytest.fixture(scope="module", params=["anvil", "ganache"])
def market(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    node = devchain.start(request.param, accounts=10, balance_eth=1_000_000,
                          log_path=tmp_path_factory.mktemp("token") / f"{request.param}.log")
    try:
        yield Market(node)
    finally:
        node.stop()


@pytest.fixture
def m(market: Market) -> Iterator[Market]:
    snap = market.node.rpc("evm_snapshot")
    market.requests = []
    accounts = market.w3.eth.accounts  # fresh signers: a reverted chain forgets their nonces
    market.utility = Signer(market.w3, accounts[0])
    market.consumers = [Signer(market.w3, a) for a in accounts[1:8]]
    yield market
    market.node.rpc("evm_revert", [snap])


def _settle(m: Market, rid: int, bids: list[tuple[int, int, int]]) -> list[Bid]:
    """Place (consumer, watts, tick) bids, close and select; returns them as market.py bids."""
    reference = []
    for who, watts, tick in bids:
        m.dr.submit_bids(m.consumers[who], rid, [watts], [tick * TICK])
        reference.append(Bid(m.consumers[who].address, watts, tick * TICK))
    m.assert_solvent()
    m.advance(301)
    m.dr.select_winners(m.utility, rid)
    m.assert_solvent()
    return reference


def test_a_request_in_a_6_decimal_stablecoin_settles_to_the_base_unit_like_market_py(m: Market) -> None:
    usd = m.usd
    assert usd.currency().decimals == USDC.decimals == 6
    budget = required_budget(5000, 3600, CAP) + 123  # odd on purpose: refund and dust stay exact
    before = usd.balance_of(m.utility.address)
    rid = m.request(usd.address, budget=budget)
    info = m.dr.get_request(rid)
    assert (info.token, info.budget, info.in_token) == (usd.address, budget, True)
    assert m.dr.currency_of(rid).decimals == 6
    assert usd.balance_of(m.dr.address) == budget and usd.balance_of(m.utility.address) == before - budget
    assert m.w3.eth.get_balance(m.dr.address) == 0  # no ether moved
    reference = _settle(m, rid, [(0, 2000, 2), (1, 2500, 5), (2, 3000, 9)])
    expected = clear(reference, 5000, 3600, CAP, budget, PricingRule.UNIFORM)
    bids = m.dr.get_bids(rid)
    assert [(b.accepted_watts, b.payout) for b in bids] == [(o.accepted_watts, o.payout) for o in expected.outcomes]
    assert m.dr.owed(m.utility.address, usd.address) == expected.refund
    assert m.dr.owed(m.utility.address) == 0  # nothing in ether
    # One winner claims (credited in the token), the other is paid by claimAndPay.
    m.dr.claim(m.consumers[0], rid, [0])
    assert m.dr.owed(m.consumers[0].address, usd.address) == expected.outcomes[0].payout
    m.assert_solvent()
    wallets = [usd.balance_of(m.consumers[i].address) for i in (1, 2)]
    (receipt,) = m.dr.claim_and_pay(m.utility, rid)
    assert [(e["requestId"], e["bidder"], e["amount"]) for e in m.events(receipt, "PayoutSent")] == [
        (rid, m.consumers[i].address, expected.outcomes[i].payout) for i in (1, 2)]
    assert [usd.balance_of(m.consumers[i].address) - w for i, w in zip((1, 2), wallets)] == [
        expected.outcomes[1].payout, expected.outcomes[2].payout]
    assert m.dr.owed(m.utility.address, usd.address) == expected.refund + expected.dust
    m.assert_solvent()
    receipt = m.dr.withdraw(m.consumers[0], usd.address)
    assert m.events(receipt, "Withdrawal") == [{"account": m.consumers[0].address, "to": m.consumers[0].address,
                                                "token": usd.address, "amount": expected.outcomes[0].payout}]
    m.dr.withdraw(m.utility, usd.address)
    assert usd.balance_of(m.dr.address) == 0  # nothing created or lost
    m.assert_solvent()
    m.expect_error("NothingOwed", m.dr.functions.withdrawToken(usd.address, m.utility.address))


def test_pay_as_bid_in_the_token_and_ether_requests_side_by_side_stay_apart(m: Market) -> None:
    usd = m.usd
    tid = m.request(usd.address, target=4000, rule=PricingRule.PAY_AS_BID)
    eid = m.request(ZERO_ADDRESS, target=4000)
    for rid, tick in ((tid, TICK), (eid, 10**12)):
        m.dr.submit_bids(m.consumers[0], rid, [1500, 3000], [3 * tick, 7 * tick])
    m.assert_solvent()
    m.advance(301)
    m.dr.select_winners(m.utility, tid)
    m.dr.select_winners(m.utility, eid)
    m.dr.claim(m.consumers[0], tid, [0, 1])
    m.dr.claim(m.consumers[0], eid, [0, 1])
    info = m.dr.get_request(tid)
    expected = clear([Bid("a", 1500, 3 * TICK), Bid("a", 3000, 7 * TICK)], 4000, 3600, CAP, info.budget,
                     PricingRule.PAY_AS_BID)
    assert m.dr.owed(m.consumers[0].address, usd.address) == expected.total_payout == info.paid_out
    assert m.dr.owed(m.consumers[0].address) == m.dr.get_request(eid).paid_out  # ether, apart
    m.assert_solvent()


def test_cancelling_a_token_request_credits_the_budget_back_in_the_token(m: Market) -> None:
    rid = m.request(m.usd.address, budget=7 * USD)
    m.dr.cancel_request(m.utility, rid)
    assert m.dr.owed(m.utility.address, m.usd.address) == 7 * USD and m.dr.owed(m.utility.address) == 0
    m.assert_solvent()
    other = m.consumers[6].address
    m.dr.withdraw(m.utility, m.usd.address, to=other)
    assert m.usd.balance_of(other) == 7 * USD


def test_a_fee_on_transfer_token_is_refused_with_what_it_delivered(m: Market) -> None:
    fee = m.hostile_token("FeeOnTransferToken")
    m.send(fee.functions.approve(m.dr.address, 10 * USD))
    now = m.now()
    call = m.dr.functions.requestReductionInToken(fee.address, 10 * USD, 1000, now + 400, now + 4000, now + 300, CAP,
                                                  0, (0, 0, 0, 0, 0))
    token, sent, received = m.expect_error("FeeOnTransfer", call)
    assert (Web3.to_checksum_address(token), sent, received) == (fee.address, 10 * USD, 10 * USD - USD // 10)
    assert m.dr.request_count() == 0


def test_token_requests_refuse_bonds_ether_and_a_token_that_is_not_one(m: Market) -> None:
    now = m.now()
    args = (1000, now + 400, now + 4000, now + 300, CAP, 0)
    fn = m.dr.functions
    assert m.expect_error("BondInEtherOnly", fn.requestReductionInToken(m.usd.address, USD, *args,
                                                                        (0, 600, 0, 1, 0))) == ()
    m.expect_error("ZeroAddress", fn.requestReductionInToken(ZERO_ADDRESS, USD, *args, (0, 0, 0, 0, 0)))
    m.expect_error("NotUtility", fn.requestReductionInToken(m.usd.address, USD, *args, (0, 0, 0, 0, 0)),
                   m.consumers[0].address)
    # An account without code is no token.
    m.expect_error("NotAToken", fn.requestReductionInToken(m.consumers[3].address, USD, *args, (0, 0, 0, 0, 0)))
    # Without an approval the escrow fails and nothing is recorded.
    with pytest.raises(Exception):
        fn.requestReductionInToken(m.usd.address, USD, *args, (0, 0, 0, 0, 0)).call({"from": m.utility.address})
    # Plain ether sent to the market is refused (its fallback serves the facet only).
    with pytest.raises(Exception):
        m.utility.send({"to": m.dr.address, "value": 1, "gas": 100_000})
    assert m.w3.eth.get_balance(m.dr.address) == 0


@pytest.mark.parametrize("token_name", ["BlacklistToken", "FalseReturningToken"])
def test_a_recipient_the_token_refuses_is_credited_and_blocks_nobody(m: Market, token_name: str) -> None:
    token = m.hostile_token(token_name)
    banned, honest = m.consumers[0], m.consumers[1]
    m.send(token.functions.setBlacklisted(banned.address, True) if token_name == "BlacklistToken"
           else token.functions.setRefused(banned.address, True))
    rid = m.request(token.address, target=4000)
    _settle(m, rid, [(0, 2000, 2), (1, 2000, 3)])
    (receipt,) = m.dr.claim_and_pay(m.consumers[5], rid)
    owed = m.dr.outcome_of(rid, banned.address)[1]
    assert m.events(receipt, "PaymentDeferred") == [{"requestId": rid, "bidder": banned.address, "amount": owed}]
    assert [e["bidder"] for e in m.events(receipt, "PayoutSent")] == [honest.address]
    assert Erc20(m.w3, token.address).balance_of(honest.address) == m.dr.outcome_of(rid, honest.address)[1]
    assert m.dr.owed(banned.address, token.address) == owed
    m.assert_solvent()
    if token_name == "BlacklistToken":  # its own address stays refused: it names another
        with pytest.raises(Exception):
            m.dr.functions.withdrawToken(token.address, banned.address).call({"from": banned.address})
    rescue = m.consumers[6].address
    m.dr.withdraw(banned, token.address, to=rescue)
    assert Erc20(m.w3, token.address).balance_of(rescue) == owed
    m.assert_solvent()


def _hooked_winner(m: Market) -> tuple[Any, Any, int]:
    """A HookToken request won by a HookReceiver contract (and an honest consumer)."""
    token = m.hostile_token("HookToken")
    receiver = m.deploy("HookReceiver")
    m.send(receiver.functions.exec(token.address, token.functions.registerHook().build_transaction(
        {"from": m.utility.address, "gas": 100_000})["data"]))
    m.send(token.functions.mint(receiver.address, 1))  # a holder already: the hook's cost is the re-entry
    rid = m.request(token.address, target=4000)
    data = m.dr.functions.submitBids(rid, [2000], [2 * TICK]).build_transaction(
        {"from": m.utility.address, "gas": 500_000})["data"]
    m.send(receiver.functions.exec(m.dr.address, data))
    m.dr.submit_bids(m.consumers[1], rid, [2000], [3 * TICK])
    m.advance(301)
    m.dr.select_winners(m.utility, rid)
    return token, receiver, rid


@pytest.mark.parametrize("reentry", ["claimAndPay", "withdrawToken", "claim"])
def test_a_token_hook_that_re_enters_the_market_changes_nothing_it_should_not(m: Market, reentry: str) -> None:
    token, receiver, rid = _hooked_winner(m)
    fn = m.dr.functions
    payload = {
        "claimAndPay": fn.claimAndPay(rid, [0, 64]),
        "withdrawToken": fn.withdrawToken(token.address, receiver.address),
        "claim": fn.claim(rid, [64]),  # the honest bid, claimed in the middle of the batch
    }[reentry].build_transaction({"from": m.utility.address, "gas": 500_000})["data"]
    m.send(receiver.functions.setMode(REENTER, m.dr.address, payload))
    (receipt,) = m.dr.claim_and_pay(m.utility, rid, [0, 64])
    mine = m.dr.outcome_of(rid, receiver.address)[1]
    # The hooked payment went through. A re-entrant withdrawal found nothing owed (the
    # payment is not credited, it is sent); a re-entrant claim or claimAndPay, if its gas
    # sufficed, settled the other bid once, and the batch then skipped it.
    assert Erc20(m.w3, token.address).balance_of(receiver.address) == 1 + mine
    assert receiver.functions.reentry().call() == 2 or reentry != "withdrawToken"
    honest = m.consumers[1].address
    paid_honest = Erc20(m.w3, token.address).balance_of(honest) + m.dr.owed(honest, token.address)
    assert paid_honest == m.dr.outcome_of(rid, honest)[1]
    r = m.dr.get_request(rid)
    assert r.claimed_watts == r.accepted_watts == 4000
    assert r.paid_out == mine + m.dr.outcome_of(rid, honest)[1]
    m.assert_solvent(extra=(receiver.address,))
    assert receipt["status"] == 1


@pytest.mark.parametrize("mode", [BURN, REVERT])
def test_a_token_hook_that_burns_gas_or_reverts_is_deferred_at_a_bounded_cost(m: Market, mode: int) -> None:
    token, receiver, rid = _hooked_winner(m)
    m.send(receiver.functions.setMode(mode, ZERO_ADDRESS, b""))
    # A fixed limit: ganache's estimate would run the burner's loop once per bisection step.
    call = m.dr.functions.claimAndPay(rid, [0, 64])
    receipt = m.utility.send(call.build_transaction({"from": m.utility.address, "gas": 1_000_000}))
    mine = m.dr.outcome_of(rid, receiver.address)[1]
    assert m.events(receipt, "PaymentDeferred") == [{"requestId": rid, "bidder": receiver.address, "amount": mine}]
    assert Erc20(m.w3, token.address).balance_of(receiver.address) == 1  # what it held before
    assert m.dr.owed(receiver.address, token.address) == mine
    assert receipt["gasUsed"] < 300_000  # TOKEN_PAY_GAS caps what the burner takes
    m.assert_solvent(extra=(receiver.address,))


def test_a_sealed_and_metered_request_without_bond_settles_in_the_token(m: Market) -> None:
    rid = m.request(m.usd.address, target=2000, terms=Terms(report_window=600, dispute_window=600))
    c = m.consumers[0]
    m.dr.submit_bids(c, rid, [2000], [4 * TICK])
    m.advance(301)
    m.dr.select_winners(m.utility, rid)
    m.advance(3700)
    m.dr.report_delivery(c, rid, 1500)  # delivered 3/4 of what was accepted
    usd = Erc20(m.w3, m.usd.address)
    before = usd.balance_of(c.address)
    m.dr.confirm_delivery(m.utility, rid, c.address)
    promised = m.dr.outcome_of(rid, c.address)[1]
    # Settlement pushes the payout in the token (meterDelivery): nothing is left to withdraw.
    assert usd.balance_of(c.address) - before == promised * 1500 // 2000
    assert m.dr.owed(c.address, m.usd.address) == 0
    assert m.dr.owed(c.address) == 0
    m.assert_solvent()


def test_a_caller_cannot_starve_a_payment_into_the_fallback(m: Market) -> None:
    """With too little gas for a payment's whole cap, claimAndPay reverts instead of deferring
    it (a griefer would make winners send a withdrawal; an estimate would stop right there)."""
    rid = m.request(m.usd.address, target=2000)
    _settle(m, rid, [(0, 2000, 2)])
    call = m.dr.functions.claimAndPay(rid, [0])
    with pytest.raises(Exception) as info:
        call.call({"from": m.consumers[4].address, "gas": 120_000})
    assert decode_revert(info.value).error == "PaymentGasTooLow"
    (receipt,) = m.dr.claim_and_pay(m.consumers[4], rid)  # the wrapper's estimate covers the cap
    assert [e["bidder"] for e in m.events(receipt, "PayoutSent")] == [m.consumers[0].address]
    assert m.events(receipt, "PaymentDeferred") == []
    m.assert_solvent()
