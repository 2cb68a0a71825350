"""``devices.ChainClock``: the consumer daemon's actuator runs on the chain's time, which a dev chain
can move ahead of the wall clock. Against a real anvil."""

from __future__ import annotations

import time

import pytest
from web3 import Web3

from demand_response import devchain
from demand_response.chain import connect
from demand_response.devices import ChainClock


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=1)


def _latest(w3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def test_the_chain_clock_follows_the_chain_when_its_time_is_moved_forward(node: devchain.DevChain) -> None:
    w3 = connect(node.url)
    clock = ChainClock(w3, refresh_s=0)
    before = clock.now()
    assert abs(before - time.time()) < 5  # a fresh anvil runs on the wall clock
    node.rpc("evm_increaseTime", [3600])
    node.rpc("evm_mine", [])
    jumped = clock.now()
    assert jumped >= _latest(w3) and jumped - time.time() > 3500
    target = _latest(w3) + 7200
    node.rpc("anvil_setNextBlockTimestamp", [target])
    node.rpc("evm_mine", [])
    assert clock.now() >= target


def test_the_chain_clock_keeps_counting_and_never_goes_back_when_the_node_is_unreachable(
        node: devchain.DevChain) -> None:
    w3 = connect(node.url)
    clock = ChainClock(w3, refresh_s=0)
    node.rpc("evm_increaseTime", [600])
    node.rpc("evm_mine", [])
    seen = clock.now()
    clock.w3 = Web3(Web3.HTTPProvider("http://127.0.0.1:9"))  # nothing listens there
    later = clock.now()
    assert later >= seen and later - time.time() > 500

