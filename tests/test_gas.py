"""Exact gas figures for the main operations, pinned so that a regression fails.

Gas is deterministic for a given compiler, settings and transaction sequence, so these
are exact equalities, and ganache and anvil (both at the shanghai hardfork) must give the
same figures: every test runs on both. Every scenario starts from a fresh deployment on its own ganache,
with fixed calldata (times are constants with no zero bytes). When a contract change
moves a figure on purpose, update the pin and docs/gas.md together.

The issue's targets, checked as bounds too: a 1-bid transaction <= 65,000 gas (median
over 100 consumers at random prices), a 5-bid batch <= 35,000 gas per bid, and
settlement of 10,000 bids inside one 30M-gas block.
"""

from __future__ import annotations

import os
import random
import statistics
from typing import Iterator

import pytest

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import DemandReduction

CAP = 128 * 10**12
TICK = CAP // 128
DEADLINE = 0xF1F1F1F1  # year 2098: fixed calldata, no zero bytes
EVENT_START = 0xF2F2F2F2
EVENT_END = EVENT_START + 3600
TARGET = 50_000
BUDGET = 10**18
CONSUMERS = 100

PINNED = {
    "deploy": 3_200_080,
    "request": 95_428,
    "bid1_median": 60_551,
    "bid5_median_per_bid": 28_639,
    "cancel1": 57_682,
    "settle_10": 200_218,
    "settle_100": 125_607,
    "settle_1000": 90_590,
    "settle_10000": 87_751,
    "claim1": 85_527,
    "withdraw": 32_756,
}


@pytest.fixture(scope="module", params=["ganache", "anvil"])
def gaschain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[devchain.DevChain]:
    kind = getattr(request, "param", "ganache")
    node = devchain.start(kind, accounts=CONSUMERS + 1, balance_eth=1_000_000,
                          log_path=tmp_path_factory.mktemp("gas") / f"{kind}.log")
    yield node
    node.stop()


@pytest.fixture
def fresh(gaschain: devchain.DevChain) -> Iterator[tuple]:
    """A fresh deployment with request 1 open; state (and time) reverted afterwards."""
    snap = gaschain.rpc("evm_snapshot")
    w3 = connect(gaschain.url)
    accounts = w3.eth.accounts
    utility = Signer(w3, accounts[0])
    dr = DemandReduction.deploy(utility)
    deploy_gas = w3.eth.get_transaction_receipt(
        w3.eth.get_block("latest", full_transactions=True)["transactions"][0]["hash"])["gasUsed"]
    rid, receipt = dr.request_reduction(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, 0, BUDGET)
    consumers = [Signer(w3, a) for a in accounts[1:]]
    yield gaschain, w3, dr, utility, consumers, rid, {"deploy": deploy_gas, "request": receipt["gasUsed"]}
    gaschain.rpc("evm_revert", [snap])


def _close_bidding(chain: devchain.DevChain, w3) -> None:
    now = w3.eth.get_block("latest")["timestamp"]
    chain.rpc("evm_increaseTime", [DEADLINE - now + 1])
    chain.rpc("evm_mine", [])


def _random_bids(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    return [rng.randint(500, 5000) for _ in range(n)], [rng.randint(1, 128) * TICK for _ in range(n)]


def _fill(dr: DemandReduction, consumers: list[Signer], rid: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    done = 0
    while done < n:
        k = min(64, n - done)
        watts, prices = _random_bids(rng, k)
        sender = consumers[(done // 64) % len(consumers)]
        # An explicit limit skips estimation: the fill is setup, not what is measured.
        call = dr.functions.submitBids(rid, watts, prices)
        sender.send(call.build_transaction({"from": sender.address, "gas": 3_000_000}))
        done += k


def test_request_and_deploy_gas(fresh) -> None:
    *_, first = fresh
    assert first["deploy"] == PINNED["deploy"]
    assert first["request"] == PINNED["request"]


def test_one_bid_transaction_median(fresh) -> None:
    chain, w3, dr, utility, consumers, rid, _ = fresh
    rng = random.Random(1)
    gas = [dr.submit_bids(c, rid, *_random_bids(rng, 1))["gasUsed"] for c in consumers]
    median = int(statistics.median(gas))
    assert median <= 65_000
    assert median == PINNED["bid1_median"]


def test_five_bid_batch_median_per_bid(fresh) -> None:
    chain, w3, dr, utility, consumers, rid, _ = fresh
    rng = random.Random(5)
    gas = [dr.submit_bids(c, rid, *_random_bids(rng, 5))["gasUsed"] for c in consumers]
    per_bid = int(statistics.median(gas)) // 5
    assert per_bid <= 35_000
    assert per_bid == PINNED["bid5_median_per_bid"]


def test_cancel_claim_and_withdraw_gas(fresh) -> None:
    chain, w3, dr, utility, consumers, rid, _ = fresh
    a, b = consumers[:2]
    dr.submit_bids(a, rid, [4000, 3000], [2 * TICK, 3 * TICK])
    dr.submit_bids(b, rid, [6000], [5 * TICK])
    assert dr.cancel_bids(a, rid, [1])["gasUsed"] == PINNED["cancel1"]
    _close_bidding(chain, w3)
    dr.select_winners(utility, rid)
    assert dr.claim(a, rid, [0])["gasUsed"] == PINNED["claim1"]
    assert dr.withdraw(a)["gasUsed"] == PINNED["withdraw"]


@pytest.mark.parametrize("n", [10, 100, 1000, 10_000])
def test_settlement_gas_does_not_grow_with_bids(fresh, n: int) -> None:
    chain, w3, dr, utility, consumers, rid, _ = fresh
    if n > 1000 and chain.kind == "ganache" and not os.environ.get("DR_SLOW"):
        pytest.skip("10,000 bids take ~95 s on ganache's JS EVM; the anvil run pins the same figure "
                    "(set DR_SLOW=1 to run it here too)")
    _fill(dr, consumers, rid, n, seed=n)
    _close_bidding(chain, w3)
    receipt = dr.select_winners(utility, rid)
    assert receipt["gasUsed"] < 30_000_000 // 100  # a hundredth of a block, whatever n is
    supply = sum(dr.book(rid))
    assert dr.get_request(rid).accepted_watts == min(TARGET, supply)
    assert receipt["gasUsed"] == PINNED[f"settle_{n}"]
