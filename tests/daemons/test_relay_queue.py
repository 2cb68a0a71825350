"""The relay's queue against a real chain (anvil and ganache), driven directly: a failed send
keeps every entry for the next round, an entry whose request closed is dropped with one
line, a big queue goes out in batches (one line each, with gas per entry), and an entry the
contract refuses by the time it is sent is weeded out without holding back the others."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from eth_account import Account
from web3 import Web3

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import TX_GAS_CAP, DemandReduction
from demand_response.relay import sign_bids
from demand_response.relayer import BidRelay, RelayRefused, parse_entry

CAP = 128 * 10**12


@pytest.fixture(scope="module", params=["anvil", "ganache"])
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, request.param, accounts=3)


@pytest.fixture(scope="module")
def w3(node: devchain.DevChain) -> Web3:
    return connect(node.url)


def _market(w3: Web3) -> tuple[DemandReduction, Signer]:
    utility = Signer(w3, w3.eth.accounts[0])
    return DemandReduction.deploy(utility), utility


def _request(w3: Web3, dr: DemandReduction, utility: Signer, window: int) -> int:
    now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
    rid, _ = dr.request_reduction(utility, 10**6, now + window, now + window + 3600, now + window, CAP)
    return rid


def _offer(relay: BidRelay, dr: DemandReduction, chain_id: int, rid: int, seed: int) -> str:
    household = Account.from_key(seed.to_bytes(32, "big"))
    signed = sign_bids(household, dr.address, chain_id, rid, None, [1000], [CAP // 128 * (1 + seed % 128)])
    relay.offer(parse_entry(json.dumps({"requestId": rid, **signed}).encode()))
    return household.address


def _placed(dr: DemandReduction, rid: int) -> set[str]:
    return {e["args"]["bidder"] for e in dr.contract.events.BidsSubmitted().get_logs(
        argument_filters={"requestId": rid}, from_block=0)}


def test_a_failed_send_keeps_every_entry_and_the_next_round_places_them(
        node: devchain.DevChain, w3: Web3, caplog: pytest.LogCaptureFixture) -> None:
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 600)
    broke = Signer.from_key(w3, "0x" + "5e" * 32, label="relayer")  # no ether: its send fails
    relay = BidRelay(dr, broke.address, node.chain_id)
    households = {_offer(relay, dr, node.chain_id, rid, 1000 + i) for i in range(3)}
    with caplog.at_level(logging.INFO, logger="demand_response.relay"):
        assert relay.flush(broke) == []
        assert relay.pending() == 3 and "kept for the next round" in caplog.text
        utility.send({"to": broke.address, "value": 10**18})
        done = relay.flush(broke)
    assert [(b.entries, b.placed, b.skipped) for b in done] == [(3, 3, 0)] and relay.pending() == 0
    assert _placed(dr, rid) == households
    assert re.search(rf"relay: request {rid}: sent 3 entries: 3 placed, 0 skipped, [\d,]+ gas \([\d,]+ gas per "
                     r"entry\)", caplog.text)


def test_an_entry_whose_request_closed_is_dropped_with_one_line(
        node: devchain.DevChain, w3: Web3, caplog: pytest.LogCaptureFixture) -> None:
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 30)
    relay = BidRelay(dr, utility.address, node.chain_id)
    who = _offer(relay, dr, node.chain_id, rid, 2000)
    node.rpc("evm_increaseTime", [60])
    node.rpc("evm_mine", [])
    with caplog.at_level(logging.INFO, logger="demand_response.relay"):
        assert relay.flush(utility) == []
    assert relay.pending() == 0 and _placed(dr, rid) == set()
    assert f"relay: request {rid}: bidding closed before 1 queued entry could be sent; dropped ({who[:10]})" \
        in caplog.text


def test_a_big_queue_goes_out_in_batches_and_a_refused_entry_does_not_hold_back_the_others(
        node: devchain.DevChain, w3: Web3, caplog: pytest.LogCaptureFixture) -> None:
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 600)
    relay = BidRelay(dr, utility.address, node.chain_id, max_entries=3)
    households = {_offer(relay, dr, node.chain_id, rid, 3000 + i) for i in range(7)}
    with caplog.at_level(logging.INFO, logger="demand_response.relay"):
        done = relay.flush(utility)
        assert [b.entries for b in done] == [3, 3, 1] and sum(b.placed for b in done) == 7
        assert _placed(dr, rid) == households
        # A request cancelled after an entry was queued: the contract refuses the entry now.
        late = _request(w3, dr, utility, 600)
        _offer(relay, dr, node.chain_id, late, 4000)
        dr.cancel_request(utility, late)
        assert relay.flush(utility) == [] and relay.pending() == 0
    assert len(re.findall(rf"relay: request {rid}: sent \d entr(?:y|ies): \d placed", caplog.text)) == 3
    assert f"relay: request {late}: dropped" in caplog.text and "the contract refuses it now" in caplog.text


def test_entries_of_64_bids_go_out_in_batches_each_under_the_gas_cap(
        node: devchain.DevChain, w3: Web3, caplog: pytest.LogCaptureFixture) -> None:
    if node.kind != "anvil":
        pytest.skip("the batching rule is the same on every chain; ganache takes ~15 s for this batch")
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 600)
    relay = BidRelay(dr, utility.address, node.chain_id)
    step = CAP // 128
    for seed in range(5000, 5024):  # 24 households of 64 bids: about 16M gas in one batch, above the cap
        household = Account.from_key(seed.to_bytes(32, "big"))
        signed = sign_bids(household, dr.address, node.chain_id, rid, None, [100 + i for i in range(64)],
                           [step * (1 + (seed + i) % 128) for i in range(64)])
        relay.offer(parse_entry(json.dumps({"requestId": rid, **signed}).encode()))
    done = relay.flush(utility)
    assert len(done) >= 2 and sum(b.placed for b in done) == 24 and relay.pending() == 0
    receipts = [w3.eth.get_transaction_receipt(b.tx) for b in done]
    assert all(r["status"] == 1 and r["gasUsed"] < TX_GAS_CAP for r in receipts)
    assert all(w3.eth.get_transaction(b.tx)["gas"] <= TX_GAS_CAP for b in done)


def test_a_bidder_off_the_relays_list_is_refused_403_and_nothing_is_queued(w3: Web3, node: devchain.DevChain) -> None:
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 60)
    listed = Account.from_key((7).to_bytes(32, "big")).address
    relay = BidRelay(dr, utility.address, node.chain_id, allow=frozenset({listed}))
    assert _offer(relay, dr, node.chain_id, rid, 7) == listed
    with pytest.raises(RelayRefused, match="RELAY_ALLOW") as refused:
        _offer(relay, dr, node.chain_id, rid, 8)
    assert refused.value.status == 403
    assert relay.pending() == 1
    relay.flush(utility)
    assert _placed(dr, rid) == {listed}


def test_an_entry_the_household_placed_itself_is_not_sent_again(
        node: devchain.DevChain, w3: Web3, caplog: pytest.LogCaptureFixture) -> None:
    dr, utility = _market(w3)
    rid = _request(w3, dr, utility, 600)
    relay = BidRelay(dr, utility.address, node.chain_id)
    other = _offer(relay, dr, node.chain_id, rid, 5001)
    household = Account.from_key((5000).to_bytes(32, "big"))
    signed = sign_bids(household, dr.address, node.chain_id, rid, None, [1000], [CAP // 128])
    relay.offer(parse_entry(json.dumps({"requestId": rid, **signed}).encode()))
    # Short of time, the household (here: anyone) places its own signed entry first.
    dr.submit_signed_bids(utility, rid, [signed])
    with caplog.at_level(logging.INFO, logger="demand_response.relay"):
        done = relay.flush(utility)
    assert [(b.entries, b.placed, b.skipped) for b in done] == [(1, 1, 0)] and relay.pending() == 0
    assert _placed(dr, rid) == {household.address, other}
    assert f"relay: request {rid}: {household.address[:10]} already on chain (placed by the household itself); " \
           "not sent" in caplog.text
