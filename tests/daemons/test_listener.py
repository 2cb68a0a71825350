"""The log poller on a real anvil: catch-up in ranges, exactly-once across restarts, and reorgs
(``anvil_reorg``), both for the bare poller and for a consumer that must bid again."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from daemon_helpers import wait_until
from demand_response import devchain
from demand_response.bids import save_bids
from demand_response.chain import Signer, connect
from demand_response.consumer import AgentSpec, ConsumerService, file_bids
from demand_response.contract import DemandReduction
from demand_response.listener import LogPoller, StateFile, is_connection_error
from demand_response.results import ResultsFile

CAP = 128 * 10**12


@pytest.fixture(scope="module")
def anvil(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=5)


@pytest.fixture
def deployed(anvil: devchain.DevChain) -> tuple[Web3, DemandReduction, int]:
    w3 = connect(anvil.url)
    dr = DemandReduction.deploy(Signer(w3, w3.eth.accounts[0]))
    return w3, dr, w3.eth.block_number


def _request(w3: Web3, dr: DemandReduction, window: int = 60) -> tuple[int, dict]:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    utility = Signer(w3, w3.eth.accounts[0])  # fresh signer: a reorg may have rewound its nonce
    return dr.request_reduction(utility, 1000, now + window, now + window + 3600, now + window, CAP)


def _drain(poller: LogPoller) -> list:
    events, removed = poller.poll()
    for event in events:
        poller.mark(event)
    poller.commit()
    return events


def test_catch_up_in_small_ranges_and_exactly_once_across_restart(tmp_path: Path, deployed) -> None:
    w3, dr, start = deployed
    hashes = [_request(w3, dr)[1]["transactionHash"] for _ in range(5)]  # five blocks
    state_path = tmp_path / "cursor.json"
    poller = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(state_path), start_block=start, max_range=2)
    events = _drain(poller)
    assert [e.args["requestId"] for e in events] == [1, 2, 3, 4, 5]
    assert [e.tx_hash for e in events] == ["0x" + bytes(h).hex().removeprefix("0x") for h in hashes]
    assert _drain(poller) == []
    restarted = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(state_path), start_block=start)
    assert _drain(restarted) == []  # nothing is handed over twice after a restart
    _request(w3, dr)
    assert [e.args["requestId"] for e in _drain(restarted)] == [6]
    assert restarted.next_block == w3.eth.block_number + 1


def test_reorg_removes_event_and_new_one_is_delivered_once(tmp_path: Path, anvil: devchain.DevChain, deployed,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    w3, dr, start = deployed
    poller = LogPoller(w3, dr.address, ["ReductionRequested"], StateFile(tmp_path / "c.json"), start_block=start)
    _, receipt = _request(w3, dr)
    (first,) = _drain(poller)
    assert first.block_number == receipt["blockNumber"]
    anvil.rpc("anvil_reorg", [1, []])  # the request's block is replaced by an empty one
    assert dr.request_count() == 0
    with caplog.at_level(logging.WARNING):
        events, removed = poller.poll()
    assert events == [] and [key for key, _ in removed] == [first.key]
    assert "chain reorganised" in caplog.text
    for key, _ in removed:
        poller.forget(key)
    poller.commit()
    _, again = _request(w3, dr)  # the utility posts again on the new chain
    (second,) = _drain(poller)
    assert second.key != first.key and second.args["requestId"] == 1
    assert second.block_number == again["blockNumber"]
    assert _drain(poller) == []


def test_consumer_bids_again_when_its_request_and_bid_are_reorganised_away(tmp_path: Path, anvil: devchain.DevChain,
                                                                           deployed) -> None:
    w3, dr, start = deployed
    me = w3.eth.accounts[3]
    save_bids(tmp_path / "bids.json", [(1500, 3 * CAP // 128)])
    service = ConsumerService(
        dr, anvil.chain_id, [AgentSpec(Signer(w3, me), file_bids(tmp_path / "bids.json"), "c")],
        state_path=tmp_path / "state.json", results=ResultsFile(tmp_path / "results.json"), start_block=start,
        poll_interval=0.05, bid_margin=0,  # a tiny bid (under its fees) on purpose
    )
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _request(w3, dr)
        wait_until(lambda: dr.bids_of(1, me), timeout=20, what="first bid")
        depth = w3.eth.block_number - start  # request and bid blocks
        anvil.rpc("anvil_reorg", [depth, []])
        assert dr.request_count() == 0
        time.sleep(0.5)  # the consumer notices the reorg
        _request(w3, dr)
        bids = wait_until(lambda: dr.bids_of(1, me), timeout=20, what="bid on the re-posted request")
        time.sleep(0.5)
        assert len(dr.bids_of(1, me)) == len(bids) == 1  # exactly one bid on the new chain
        assert dr.get_request(1).submissions == 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_connection_errors_are_recognised() -> None:
    import requests

    assert is_connection_error(requests.exceptions.ConnectionError("refused"))
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = ConnectionRefusedError()
    assert is_connection_error(wrapped)
    assert not is_connection_error(ValueError("a bad argument"))
