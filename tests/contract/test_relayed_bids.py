"""Relayed bids (issue 15): households sign their bids off chain (EIP-712) and a relayer
places many households' bids in one transaction (``submitSignedBids``), paying the gas.

The households here are fresh keys that hold no ether and never send a transaction. What a
third party can void after the relayer checked an entry (a replay or front-run, enrolment,
a metered stage) is skipped; what a relayer can check up front (the signature, the bids,
the request) reverts the batch.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from conftest import CAP, Env
from demand_response import market, relay
from demand_response.chain import ChainError, Signer, TransactionFailed
from demand_response.contract import (
    MAX_SIGNED_ENTRIES, SKIP_REASONS, TX_GAS_CAP, DemandReduction, Stage, Terms, signed_bid_gas_limit,
)
from demand_response.market import MAX_BIDS_PER_CALL
from test_contract import assert_solvent

TICK = CAP // 128
BOND = 10**15


def _households(n: int, seed: str = "household") -> list[LocalAccount]:
    """``n`` deterministic fresh keys: no ether, no transactions."""
    return [Account.from_key(keccak(text=f"{seed}-{i}")) for i in range(n)]


def _sign(env: Env, who: LocalAccount, rid: int, watts: list[int], ticks: list[int], **domain) -> dict:
    return relay.sign_bids(who, domain.get("contract", env.dr.address), domain.get("chain_id", env.w3.eth.chain_id),
                           domain.get("request_id", rid), None, watts, [t * TICK for t in ticks])


def _placed(env: Env, receipt: dict) -> list[tuple[str, int, int]]:
    events = env.dr.contract.events.BidsSubmitted().process_receipt(receipt, errors=DISCARD)
    return [(e["args"]["bidder"], e["args"]["firstBidId"], e["args"]["count"]) for e in events]


def _expect_revert(env: Env, name: str, rid: int, entries: list[dict], relayer: Signer | None = None) -> tuple:
    """``submitSignedBids`` reverts with ``name``, both as a call and through the wrapper."""
    relayer = relayer or env.consumers[9]
    args = env.expect_error(name, env.dr.functions.submitSignedBids(rid, [relay.entry_tuple(e) for e in entries]),
                            {"from": relayer.address})
    with pytest.raises(TransactionFailed) as info:
        env.dr.submit_signed_bids(relayer, rid, entries)
    assert info.value.error == name
    return args


def test_a_relayer_places_every_households_bids_in_one_transaction_and_they_are_paid(env: Env) -> None:
    homes = _households(5)
    rid = env.request(target=9000, budget=10**17)
    env.dr.submit_bids(env.consumers[0], rid, [1000], [7 * TICK])  # a direct bid first: ids interleave
    entries = [_sign(env, h, rid, [1000 + 100 * i, 500], [2 + i, 9]) for i, h in enumerate(homes)]
    relayer = env.consumers[9]
    receipt = env.dr.submit_signed_bids(relayer, rid, entries)
    assert receipt["status"] == 1 and env.dr.skipped_signed_bids(receipt) == []
    assert receipt["gasUsed"] < signed_bid_gas_limit(entries)
    assert _placed(env, receipt) == [(h.address, 64 * (i + 1), 2) for i, h in enumerate(homes)]
    bids = env.dr.all_bids(rid)
    for i, h in enumerate(homes):
        mine = [b for b in bids if b.bidder == h.address]
        assert [(b.bid_id, b.watts, b.price) for b in mine] == [
            (64 * (i + 1), 1000 + 100 * i, (2 + i) * TICK), (64 * (i + 1) + 1, 500, 9 * TICK)]
        assert env.dr.signed_bids_used(h.address, rid)
    assert not env.dr.signed_bids_used(homes[0].address, rid + 1)
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    # market.py clears the relayed bids exactly as the contract did: they are ordinary bids.
    info = env.dr.get_request(rid)
    model = market.clear([market.Bid(b.bidder, b.watts, b.price) for b in bids], info.target_watts,
                         info.duration, info.max_price, info.budget, info.rule)
    assert [o.payout for o in model.outcomes] == [b.payout for b in env.dr.all_bids(rid)]
    env.dr.claim_and_pay(env.utility, rid)
    for h in homes:
        assert env.w3.eth.get_balance(h.address) == env.dr.outcome_of(rid, h.address)[1] > 0
        assert env.w3.eth.get_transaction_count(h.address) == 0  # the household sent nothing
    assert_solvent(env, [rid])


def test_the_python_signature_matches_the_contracts_domain(env: Env) -> None:
    from eth_account.messages import encode_typed_data

    message = encode_typed_data(full_message=relay.typed_data(env.dr.address, env.w3.eth.chain_id, 1,
                                                              env.utility.address, [1], [TICK]))
    assert env.dr.domain_separator() == bytes(message.header)
    assert env.dr.functions.MAX_SIGNED_ENTRIES().call() == MAX_SIGNED_ENTRIES


def test_a_replayed_entry_is_skipped_in_the_same_batch_and_in_a_later_one(env: Env) -> None:
    (home,) = _households(1)
    rid = env.request(target=5000)
    entry = _sign(env, home, rid, [1000], [3])
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, [entry, entry])
    assert [b for b, *_ in _placed(env, receipt)] == [home.address]
    assert env.dr.skipped_signed_bids(receipt) == [(home.address, 1)]
    receipt = env.dr.submit_signed_bids(env.consumers[8], rid, [entry])
    assert _placed(env, receipt) == [] and env.dr.skipped_signed_bids(receipt) == [(home.address, 1)]
    # Another signed entry of the same household for the same request is used up too.
    other = _sign(env, home, rid, [2000], [5])
    assert env.dr.skipped_signed_bids(env.dr.submit_signed_bids(env.consumers[8], rid, [other])) == [
        (home.address, 1)]
    assert len(env.dr.all_bids(rid)) == 1
    assert SKIP_REASONS[1].startswith("its signed bids")


def test_a_front_run_entry_is_skipped_and_the_relayers_batch_still_lands(env: Env) -> None:
    homes = _households(3)
    rid = env.request(target=5000)
    entries = [_sign(env, h, rid, [1000], [2 + i]) for i, h in enumerate(homes)]
    # The household itself (its fallback) or a griefer copies an entry from the mempool first.
    env.dr.submit_signed_bids(env.consumers[5], rid, [entries[1]])
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert receipt["status"] == 1
    assert [b for b, *_ in _placed(env, receipt)] == [homes[0].address, homes[2].address]
    assert env.dr.skipped_signed_bids(receipt) == [(homes[1].address, 1)]
    assert sorted(b.bidder for b in env.dr.all_bids(rid)) == sorted(h.address for h in homes)


def _bad_entries(env: Env, rid: int, other: DemandReduction) -> dict[str, dict]:
    home, stranger = _households(2, "bad")
    good = _sign(env, home, rid, [1000], [3])
    tampered_watts = {**good, "watts": [1001]}
    tampered_price = {**good, "pricesPerKWh": [4 * TICK]}
    other_bidder = {**_sign(env, stranger, rid, [1000], [3]), "bidder": home.address}
    sig = bytes.fromhex(good["signature"][2:])
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = {**good, "signature": "0x" + (r + (relay._SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])).hex()}
    return {
        "another request": _sign(env, home, rid, [1000], [3], request_id=rid + 1),
        "another contract": _sign(env, home, rid, [1000], [3], contract=other.address),
        "another chain": _sign(env, home, rid, [1000], [3], chain_id=env.w3.eth.chain_id + 1),
        "another bidder": other_bidder,
        "tampered watts": tampered_watts,
        "tampered price": tampered_price,
        "malleable high s": high_s,
        "short signature": {**good, "signature": good["signature"][:-2]},
        "zero signature": {**good, "signature": "0x" + "00" * 65},
    }


def test_every_forged_replayed_or_tampered_signature_reverts_the_batch(env: Env) -> None:
    rid = env.request(target=5000)
    other = DemandReduction.deploy(env.utility)
    (honest,) = _households(1, "honest")
    fine = _sign(env, honest, rid, [500], [2])
    for label, entry in _bad_entries(env, rid, other).items():
        args = env.expect_error("BadSignature", env.dr.functions.submitSignedBids(
            rid, [relay.entry_tuple(fine), relay.entry_tuple(entry)]), {"from": env.consumers[9].address})
        assert Web3.to_checksum_address(args[0]) == entry["bidder"], label
        # The relay-side check catches every one of them before anything is sent.
        with pytest.raises(relay.SignedBidsError):
            relay.check_entry(entry, env.dr.address, env.w3.eth.chain_id, rid)
    relay.check_entry(fine, env.dr.address, env.w3.eth.chain_id, rid)
    with pytest.raises(TransactionFailed) as info:
        env.dr.submit_signed_bids(env.consumers[9], rid, [_bad_entries(env, rid, other)["tampered watts"]])
    assert info.value.error == "BadSignature"
    assert env.dr.all_bids(rid) == []


def test_bad_bids_and_requests_revert_as_submit_bids_would(env: Env) -> None:
    (home,) = _households(1, "rules")
    rid = env.request(target=5000)
    assert _expect_revert(env, "PriceOffTick", rid, [relay.sign_bids(home, env.dr.address, env.w3.eth.chain_id,
                                                                     rid, None, [1000], [TICK + 1])]) == (0, TICK)
    assert _expect_revert(env, "ZeroWatts", rid, [_sign(env, home, rid, [0], [2])]) == (0,)
    assert _expect_revert(env, "PriceAboveCap", rid, [_sign(env, home, rid, [10], [129])]) == (0, CAP)
    too_many = _sign(env, home, rid, [10] * (MAX_BIDS_PER_CALL + 1), [2] * (MAX_BIDS_PER_CALL + 1))
    assert _expect_revert(env, "TooManyBids", rid, [too_many]) == (MAX_BIDS_PER_CALL,)
    mismatch = {**_sign(env, home, rid, [10], [2]), "pricesPerKWh": []}
    env.expect_error("BadSignature", env.dr.functions.submitSignedBids(rid, [relay.entry_tuple(mismatch)]))
    assert _expect_revert(env, "UnknownRequest", rid + 5, [_sign(env, home, rid + 5, [10], [2])]) == (rid + 5,)
    homes = _households(MAX_SIGNED_ENTRIES + 1, "many")
    many = [_sign(env, h, rid, [10], [2]) for h in homes]
    args = env.expect_error("TooManyEntries", env.dr.functions.submitSignedBids(
        rid, [relay.entry_tuple(e) for e in many]), {"from": env.consumers[9].address})
    assert args == (MAX_SIGNED_ENTRIES,)
    with pytest.raises(Exception, match="split the batch"):
        env.dr.submit_signed_bids(env.consumers[9], rid, many)
    late = _sign(env, home, rid, [10], [2])
    env.advance(301)
    _expect_revert(env, "BiddingClosed", rid, [late])
    assert env.dr.all_bids(rid) == []


def test_a_sealed_request_refuses_relayed_bids(env: Env) -> None:
    (home,) = _households(1, "sealed")
    now = env.now()
    rid, _ = env.dr.request_reduction_with_terms(env.utility, 5000, now + 1000, now + 4600, now + 300, CAP,
                                                 Terms(reveal_window=300), budget=10**17)
    assert _expect_revert(env, "SealedRequest", rid, [_sign(env, home, rid, [1000], [2])]) == (rid,)


def test_the_wrapper_refuses_a_batch_above_the_eip_7825_cap(env: Env) -> None:
    (home,) = _households(1, "cap")
    rid = env.request(target=5000)
    entries = [_sign(env, home, rid, [10] * 64, [2] * 64)] * MAX_SIGNED_ENTRIES
    assert signed_bid_gas_limit(entries) > TX_GAS_CAP
    with pytest.raises(ChainError, match="2\\^24|cap per transaction"):
        env.dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert signed_bid_gas_limit([1] * MAX_SIGNED_ENTRIES) < TX_GAS_CAP


def _metered(env: Env, bond: int) -> int:
    now = env.now()
    rid, _ = env.dr.request_reduction_with_terms(env.utility, 5000, now + 1000, now + 4600, now + 300, CAP,
                                                 Terms(report_window=600, dispute_window=600, bond_wei=bond),
                                                 budget=10**17)
    return rid


def test_a_metered_request_without_bond_takes_a_relayed_bid_once(env: Env) -> None:
    home, direct = _households(2, "metered")
    rid = _metered(env, 0)
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, [_sign(env, home, rid, [1000, 700], [2, 3])])
    assert _placed(env, receipt) == [(home.address, 0, 2)]
    p = env.dr.participant_of(rid, home.address)
    assert (p.stage, p.first_bid_id, p.bid_count) == (Stage.BID, 0, 2)
    # A household that bid directly (it had ether after all) is skipped, not reverted.
    env.utility.send({"to": direct.address, "value": 10**17})
    env.dr.submit_bids(Signer(env.w3, direct), rid, [500], [4 * TICK])
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, [_sign(env, direct, rid, [500], [5])])
    assert env.dr.skipped_signed_bids(receipt) == [(direct.address, 4)] and _placed(env, receipt) == []
    # And one that was relayed cannot then bid directly: one submission per consumer.
    env.utility.send({"to": home.address, "value": 10**17})
    with pytest.raises(TransactionFailed) as info:
        env.dr.submit_bids(Signer(env.w3, home), rid, [500], [4 * TICK])
    assert info.value.error == "WrongStage"
    assert len(env.dr.all_bids(rid)) == 3


def test_a_metered_request_with_a_bond_skips_a_household_that_has_not_posted_it(env: Env) -> None:
    bonded, unbonded = _households(2, "bond")
    rid = _metered(env, BOND)
    env.utility.send({"to": bonded.address, "value": 10**17})
    env.dr.post_bond(Signer(env.w3, bonded), rid, BOND)
    entries = [_sign(env, unbonded, rid, [1000], [2]), _sign(env, bonded, rid, [1000], [3])]
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert env.dr.skipped_signed_bids(receipt) == [(unbonded.address, 3)]
    assert _placed(env, receipt) == [(bonded.address, 0, 1)]
    assert env.dr.participant_of(rid, bonded.address).stage == Stage.BID
    assert env.dr.participant_of(rid, unbonded.address).stage == Stage.NONE
    assert not env.dr.signed_bids_used(unbonded.address, rid)  # it may still be relayed once bonded


def test_registration_skips_a_household_that_is_not_enrolled(env: Env) -> None:
    enrolled, outsider = _households(2, "enrol")
    dr = DemandReduction.deploy(env.utility, registration_required=True)
    dr.enrol(env.utility, enrolled.address)
    now = env.now()
    rid, _ = dr.request_reduction(env.utility, 5000, now + 1000, now + 4600, now + 300, CAP, 0, 10**17)
    entries = [relay.sign_bids(h, dr.address, env.w3.eth.chain_id, rid, None, [1000], [2 * TICK])
               for h in (outsider, enrolled)]
    receipt = dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert dr.skipped_signed_bids(receipt) == [(outsider.address, 2)]
    assert [e["args"]["bidder"] for e in dr.contract.events.BidsSubmitted().process_receipt(receipt, errors=DISCARD)] == [
        enrolled.address]


def test_relayed_bids_work_on_anvil_too(request: pytest.FixtureRequest, start_chain) -> None:
    """The same batch, selection and payment on anvil (the rest of this file runs on ganache)."""
    from demand_response.chain import connect

    node = start_chain(request, "anvil", accounts=3)
    w3 = connect(node.url)
    utility = Signer(w3, w3.eth.accounts[0])
    dr = DemandReduction.deploy(utility)
    now = w3.eth.get_block("latest")["timestamp"]
    rid, _ = dr.request_reduction(utility, 3000, now + 1000, now + 4600, now + 300, CAP, 0, 10**17)
    homes = _households(3, "anvil")
    entries = [relay.sign_bids(h, dr.address, w3.eth.chain_id, rid, None, [1000], [(2 + i) * TICK])
               for i, h in enumerate(homes)]
    receipt = dr.submit_signed_bids(Signer(w3, w3.eth.accounts[1]), rid, entries + entries[:1])
    assert dr.skipped_signed_bids(receipt) == [(homes[0].address, 1)]
    node.rpc("evm_increaseTime", [301])
    node.rpc("evm_mine", [])
    dr.select_winners(utility, rid)
    dr.claim_and_pay(utility, rid)
    assert [w3.eth.get_balance(h.address) for h in homes] == [dr.outcome_of(rid, h.address)[1] for h in homes]
    assert all(w3.eth.get_transaction_count(h.address) == 0 for h in homes)
