"""The hostile review of the facet, ERC-20 and book changes, on a real anvil: findings F-12 and
F-13 of docs/security.md, and the facet's direct-call safety that the review relies on.

A counter that would take 2^32 transactions to reach is set near its limit with
``anvil_setStorageAt`` (the request's header slot is found by matching its known deadline),
so the boundary is exercised exactly without placing billions of bids.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from eth_abi import encode
from web3 import Web3

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction, decode_revert
from demand_response.market import required_budget

CAP = 128 * 10**12
TICK = CAP // 128
U32 = 2**32 - 1
#: Bit offset of `Request.submissions` in the request's slot 0 (contracts/base/MarketState.sol):
#: biddingDeadline (40 bits), eventStart (40), duration (32), then submissions (32).
SUBMISSIONS_SHIFT = 112
#: Gas the GasHungry winner's `receive` needs: a push forwards 10,000 + the 2,300 stipend, and
#: the call itself uses a little of that before the check (at 12,290 it can never be paid).
NEED = 12_200


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    """An anvil of this module's own."""
    return start_chain(request, "anvil", accounts=5)


@pytest.fixture
def market(node: devchain.DevChain) -> Iterator[tuple[devchain.DevChain, Web3, DemandReduction]]:
    """A fresh market; the chain reverts after the test."""
    snap = node.rpc("evm_snapshot")
    w3 = connect(node.url)
    yield node, w3, DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    node.rpc("evm_revert", [snap])


def _send(w3: Web3, call: Any, sender: str, value: int = 0) -> dict[str, Any]:
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value, "gas": 5_000_000}))
    assert receipt["status"] == 1
    return receipt


def _error(call: Any, sender: str) -> str:
    with pytest.raises(Exception) as info:
        call.call({"from": sender}, block_identifier="pending")
    decoded = decode_revert(info.value)
    assert decoded is not None, repr(info.value)
    return decoded.error


def _header_slot(w3: Web3, market: str, request_id: int, deadline: int) -> int:
    """Storage slot of request ``request_id``'s slot 0: keccak(id, p) for the mapping's slot p,
    found as the one whose low 40 bits are the request's bidding deadline."""
    for p in range(64):
        slot = int.from_bytes(Web3.keccak(encode(["uint256", "uint256"], [request_id, p])), "big")
        word = int.from_bytes(w3.eth.get_storage_at(market, slot), "big")
        if word and word & (2**40 - 1) == deadline:
            return slot
    raise AssertionError("request header not found in the first 64 mapping slots")


def test_the_submission_counter_refuses_to_wrap_instead_of_orphaning_every_bid(market) -> None:
    node, w3, dr = market
    utility, honest, mallory = w3.eth.accounts[:3]
    fn = dr.functions
    deadline = w3.eth.get_block("latest")["timestamp"] + 600
    budget = required_budget(1000, 3600, CAP)
    receipt = _send(w3, fn.requestReduction(1000, deadline + 60, deadline + 3660, deadline, CAP, 0), utility, budget)
    rid = dr.contract.events.ReductionRequested().process_receipt(receipt)[0]["args"]["requestId"]
    _send(w3, fn.submitBids(rid, [1000], [TICK]), honest)  # submission 0, bid id 0

    # As if 2^32 - 2 more submissions had been made: the next one would be number 2^32 - 1.
    slot = _header_slot(w3, dr.address, rid, deadline)
    word = int.from_bytes(w3.eth.get_storage_at(dr.address, slot), "big")
    word = word & ~(U32 << SUBMISSIONS_SHIFT) | (U32 << SUBMISSIONS_SHIFT)
    node.rpc("anvil_setStorageAt", [dr.address, hex(slot), "0x" + word.to_bytes(32, "big").hex()])

    # Before the fix the counter wrapped to 0: every bid became UnknownBid (the reserve locked
    # for good) and the next submission overwrote the honest bidder's header and bids.
    assert _error(fn.submitBids(rid, [1000], [TICK]), mallory) == "TooManySubmissions"
    assert fn.submissionAt(rid, 0).call() == [honest, 1]
    assert dr.get_request(rid).bid_count == 1


def test_the_facet_carries_the_markets_registration_mode(market) -> None:
    # `registrationRequired` is an immutable: in the facet's code, not in the shared storage.
    # Built with `false`, any facet code that checked enrolment would have let anyone through
    # in a registered market (F-13); the facet now gets the market's own flag.
    _, w3, _ = market
    utility = Signer(w3, w3.eth.accounts[0])
    for required in (True, False):
        dr = DemandReduction.deploy(utility, registration_required=required)
        facet = w3.eth.contract(address=dr.functions.facet().call(), abi=dr.contract.abi)
        assert facet.functions.registrationRequired().call() is required


def test_nobody_can_drive_the_facet_at_its_own_address_or_send_the_market_stray_ether(market) -> None:
    # The facet's utility is the market, which only delegatecalls it: the request functions,
    # cancel and the role transfer cannot run on the facet's own storage, for the real utility
    # or anyone else. The market refuses plain ether, and ether sent with a non-payable facet
    # function (the value survives the delegatecall).
    _, w3, dr = market
    utility, stranger = w3.eth.accounts[:2]
    facet = w3.eth.contract(address=dr.functions.facet().call(), abi=dr.contract.abi)
    assert facet.functions.utility().call() == dr.address
    deadline = w3.eth.get_block("latest")["timestamp"] + 600
    for who in (utility, stranger):
        assert _error(facet.functions.requestReduction(1000, deadline + 60, deadline + 3660, deadline, CAP, 0),
                      who) == "NotUtility"
        assert _error(facet.functions.transferUtility(who), who) == "NotUtility"
        assert _error(facet.functions.cancelRequest(1), who) == "NotUtility"
    for params in ({"to": dr.address, "value": 1}, {"to": facet.address, "value": 1}):
        with pytest.raises(Exception):
            w3.eth.call({"from": stranger, **params})
    terms = (0, 0, 0, 0, 0)
    data = dr.contract.encode_abi("requestReductionInToken", args=[
        w3.eth.accounts[4], 0, 1000, deadline + 60, deadline + 3660, deadline, CAP, 0, terms])
    # Raw calls, so that no client-side check stands in for the contract's: without value the
    # call reaches the facet's own checks (NotAToken: the token has no code); with value it
    # is refused before them.
    with pytest.raises(Exception) as info:
        w3.eth.call({"from": utility, "to": dr.address, "data": data})
    assert decode_revert(info.value).error == "NotAToken"
    with pytest.raises(Exception) as info:
        w3.eth.call({"from": utility, "to": dr.address, "data": data, "value": 1})
    assert decode_revert(info.value) is None


@pytest.fixture(scope="module")
def gas_hungry() -> dict:
    """The compiled test-only GasHungry bidder (tests/contracts/GasHungry.sol)."""
    from pathlib import Path

    from demand_response.compiler import compile_file

    return compile_file(Path(__file__).parents[1] / "contracts" / "GasHungry.sol")["GasHungry"]


def test_no_gas_limit_starves_a_pushed_ether_payout_into_the_fallback(market, gas_hungry: dict) -> None:
    # A winner whose receive needs nearly all the 10,000 + 2,300 gas a push forwards. Whatever
    # gas limit the caller picks, claimAndPay either pays it or reverts: never mined with the
    # payout deferred (the review's check of `_PAY_OVERHEAD`: the cold account and the value
    # transfer fit in it with the 1/64 EIP-150 keeps back).
    node, w3, dr = market
    utility = w3.eth.accounts[0]
    factory = w3.eth.contract(abi=gas_hungry["abi"], bytecode=gas_hungry["bytecode"])
    receipt = _send(w3, factory.constructor(NEED), utility)
    winner = w3.eth.contract(address=receipt["contractAddress"], abi=gas_hungry["abi"])
    deadline = w3.eth.get_block("latest")["timestamp"] + 600
    budget = required_budget(1000, 3600, CAP)
    receipt = _send(w3, dr.functions.requestReduction(1000, deadline + 60, deadline + 3660, deadline, CAP, 0),
                    utility, budget)
    rid = dr.contract.events.ReductionRequested().process_receipt(receipt)[0]["args"]["requestId"]
    _send(w3, winner.functions.bid(dr.address, rid, [1000], [4 * TICK]), utility)
    node.rpc("evm_setNextBlockTimestamp", [deadline + 1])
    _send(w3, dr.functions.selectWinners(rid), utility)
    call = dr.functions.claimAndPay(rid, [0])
    enough = call.estimate_gas({"from": utility})
    outcomes = set()
    for limit in range(enough - 20_000, enough + 2_000, 250):
        snap = node.rpc("evm_snapshot")
        tx = call.transact({"from": utility, "gas": limit})
        mined = w3.eth.wait_for_transaction_receipt(tx)
        if mined["status"] == 1:
            sent = dr.contract.events.PayoutSent().process_receipt(mined)
            outcomes.add("paid" if sent else "deferred")
        else:
            outcomes.add("reverted")
        node.rpc("evm_revert", [snap])
    assert outcomes == {"paid", "reverted"}
