"""A hostile review of relayed bids (``submitSignedBids``, issue 15): what a household, a
relayer or a third party can do to a relayer's batch or to anyone's money.

Findings F-14 and F-15 (docs/security.md): entries the relay-side check (``relay.check_entry``)
passed while the contract refused them, so that one hostile household voided a whole batch.
The rest shows what held: a relayed metered winner is metered and paid exactly like a direct
one, a token request pays relayed bidders, the replay bitmap keeps requests apart, a relayer
may relay itself, unenrolment after the check is skipped, and the gas limit covers the worst
batch on a metered, registration-only market.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

from conftest import CAP, Env
from demand_response import market, relay
from demand_response.chain import Signer
from demand_response.contract import (
    MAX_SIGNED_ENTRIES, TX_GAS_CAP, DemandReduction, Stage, Terms, decode_revert, signed_bid_gas_limit,
)
from demand_response.market import MAX_BID_WATTS, MAX_BIDS_PER_CALL
from demand_response.token import Erc20, deploy_test_usd, mint_test_usd
from test_contract import assert_solvent

TICK = CAP // 128
BOND = 10**15


def _homes(n: int, seed: str) -> list[LocalAccount]:
    return [Account.from_key(keccak(text=f"hostile-{seed}-{i}")) for i in range(n)]


def _sign(env: Env, who: LocalAccount, rid: int, watts: list[int], prices: list[int],
          dr: DemandReduction | None = None) -> dict:
    """Sign the typed data directly, as a hostile household would: no checks of the bids."""
    dr = dr or env.dr
    message = encode_typed_data(full_message=relay.typed_data(dr.address, env.w3.eth.chain_id, rid, who.address,
                                                              watts, prices))
    return {"bidder": who.address, "watts": watts, "pricesPerKWh": prices,
            "signature": "0x" + bytes(who.sign_message(message).signature).hex()}


def _with_v(entry: dict, v: int) -> dict:
    raw = bytes.fromhex(entry["signature"][2:])
    return {**entry, "signature": "0x" + (raw[:64] + bytes([v])).hex()}


def _placed(dr: DemandReduction, receipt: dict) -> list[str]:
    return [e["args"]["bidder"] for e in dr.contract.events.BidsSubmitted().process_receipt(receipt, errors=DISCARD)]


def _batch_reverts(env: Env, rid: int, entries: list[dict], error: str) -> None:
    env.expect_error(error, env.dr.functions.submitSignedBids(rid, [relay.entry_tuple(e) for e in entries]),
                     {"from": env.consumers[9].address})


def test_f14_a_signature_with_v_0_or_1_is_refused_by_the_relay_check_as_by_the_contract(env: Env) -> None:
    """eth_account recovers the signer from v = 0/1 (and EIP-155 style v >= 35); OpenZeppelin's
    ECDSA takes only 27/28. Before the fix the relay check passed such an entry and the
    contract reverted the relayer's whole batch with ``BadSignature``."""
    honest, hostile = _homes(2, "v")
    rid = env.request(target=5000)
    fine = _sign(env, honest, rid, [500], [2 * TICK])
    good = _sign(env, hostile, rid, [500], [3 * TICK])
    v = bytes.fromhex(good["signature"][2:])[64]
    assert v in (27, 28)
    for other_v in (v - 27, v + 8, v + 10):  # 0/1, and 35/36 or 36/37 (what eth_account reads as EIP-155)
        bad = _with_v(good, other_v)
        _batch_reverts(env, rid, [fine, bad], "BadSignature")
        with pytest.raises(relay.SignedBidsError, match="v "):
            relay.check_entry(bad, env.dr.address, env.w3.eth.chain_id, rid)
    relay.check_entry(good, env.dr.address, env.w3.eth.chain_id, rid)
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, [fine, good])
    assert _placed(env.dr, receipt) == [honest.address, hostile.address]


def test_f15_bids_a_household_signed_wrongly_are_refused_by_the_relay_check_before_they_void_a_batch(
        env: Env) -> None:
    """A household may sign any typed data, not only what ``sign_bids`` accepts. Before the
    fix the relay check verified the signature only, so a validly signed entry with bad bids
    passed it and its revert (``ZeroWatts``, ``PriceOffTick``, ...) voided the whole batch."""
    honest, hostile = _homes(2, "bids")
    rid = env.request(target=5000)
    fine = _sign(env, honest, rid, [500], [2 * TICK])
    too_many = MAX_BIDS_PER_CALL + 1
    bad = {
        "ZeroWatts": ([0], [2 * TICK]),
        "WattsTooLarge": ([MAX_BID_WATTS + 1], [2 * TICK]),
        "PriceZero": ([10], [0]),
        "PriceOffTick": ([10], [TICK + 1]),
        "PriceAboveCap": ([10], [CAP + TICK]),
        "LengthMismatch": ([10], [2 * TICK, 3 * TICK]),
        "NoBids": ([], []),
        "TooManyBids": ([10] * too_many, [2 * TICK] * too_many),
    }
    for error, (watts, prices) in bad.items():
        entry = _sign(env, hostile, rid, watts, prices)
        _batch_reverts(env, rid, [fine, entry], error)
        with pytest.raises(relay.SignedBidsError):
            relay.check_entry(entry, env.dr.address, env.w3.eth.chain_id, rid, CAP)
    # A hostile entry with a long price list would also outrun the wrapper's gas limit, which
    # counts watts: refused by the check before anything is sent.
    long_prices = _sign(env, hostile, rid, [10], [2 * TICK] * 2000)
    with pytest.raises(relay.SignedBidsError, match="price"):
        relay.check_entry(long_prices, env.dr.address, env.w3.eth.chain_id, rid, CAP)
    relay.check_entry(fine, env.dr.address, env.w3.eth.chain_id, rid, CAP)
    assert env.dr.all_bids(rid) == []


def test_a_relayed_metered_winner_is_metered_and_paid_exactly_like_a_direct_one(env: Env) -> None:
    """Bond, stage and submission index of a relayed bidder drive ``meterDelivery``, the
    settlement of a loser and the bond's return as for a direct bidder, to the wei."""
    relayed, loser = _homes(2, "metered")
    direct = env.consumers[3]
    now = env.now()
    rid, _ = env.dr.request_reduction_with_terms(env.utility, 3000, now + 1000, now + 4600, now + 300, CAP,
                                                 Terms(report_window=600, dispute_window=600, bond_wei=BOND),
                                                 budget=10**17)
    for home in (relayed, loser):
        env.utility.send({"to": home.address, "value": 10**16})  # for the bond only
        env.dr.post_bond(Signer(env.w3, home), rid, BOND)
    env.dr.post_bond(direct, rid, BOND)
    env.dr.submit_bids(direct, rid, [1000], [2 * TICK])
    receipt = env.dr.submit_signed_bids(env.consumers[9], rid, [
        _sign(env, relayed, rid, [1500, 500], [3 * TICK, 4 * TICK]), _sign(env, loser, rid, [5000], [100 * TICK])])
    assert _placed(env.dr, receipt) == [relayed.address, loser.address]
    p = env.dr.participant_of(rid, relayed.address)
    assert (p.stage, p.has_bids, p.first_bid_id, p.bid_count, p.bond) == (Stage.BID, True, 64, 2, BOND)
    assert env.dr.participant_of(rid, loser.address).first_bid_id == 128
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    for who in (relayed.address, direct.address):
        assert env.dr.participant_of(rid, who).accepted_watts > 0
    assert env.dr.participant_of(rid, loser.address).accepted_watts == 0
    env.advance(4600 - 300 + 10)  # past the event's end
    u = env.utility.address
    for who, delivered in ((relayed.address, 2000), (direct.address, 1000)):
        p = env.dr.participant_of(rid, who)
        expected = market.settle_delivery(p.accepted_watts, p.promised_payout, delivered, BOND)
        balance, owed_u = env.w3.eth.get_balance(who), env.dr.owed(u)
        receipt = env.dr.meter_delivery(env.utility, rid, who, delivered, b"meter")
        assert env.w3.eth.get_balance(who) - balance == expected.to_consumer > BOND
        assert env.dr.owed(u) - owed_u >= expected.to_utility
        assert env.dr.participant_of(rid, who).stage == Stage.SETTLED
    balance = env.w3.eth.get_balance(loser.address)
    env.dr.settle_delivery(env.consumers[5], rid, loser.address)  # lost: the bond back, pushed
    assert env.w3.eth.get_balance(loser.address) - balance == BOND
    assert env.dr.terms_of(rid).held_bonds == 0
    assert_solvent(env, [rid])


def test_a_token_request_pays_relayed_bidders_in_the_token(env: Env) -> None:
    cap, tick = 128_000, 1000
    usd = deploy_test_usd(env.utility)
    budget = market.required_budget(3000, 3600, cap)
    mint_test_usd(env.utility, usd.address, env.utility.address, budget)
    now = env.now()
    rid, _ = env.dr.request_reduction(env.utility, 3000, now + 360, now + 3960, now + 300, cap, 0, budget,
                                      token=usd.address)
    homes = _homes(2, "token")
    entries = [_sign(env, h, rid, [1500], [(5 + i) * tick]) for i, h in enumerate(homes)]
    for entry in entries:
        relay.check_entry(entry, env.dr.address, env.w3.eth.chain_id, rid, cap)
    env.dr.submit_signed_bids(env.consumers[9], rid, entries)
    env.advance(301)
    env.dr.select_winners(env.utility, rid)
    env.dr.claim_and_pay(env.utility, rid)
    token = Erc20(env.w3, usd.address)
    paid = [token.balance_of(h.address) for h in homes]
    assert paid == [env.dr.outcome_of(rid, h.address)[1] for h in homes] and all(paid)
    assert paid == [market.payout(1500, 3600, 6 * tick)] * 2  # uniform price: the highest accepted


def test_the_replay_bitmap_keeps_every_request_apart_and_odd_ids_revert(env: Env) -> None:
    """Bit ``requestId & 255`` of word ``requestId >> 8``: placing on one request marks only it,
    and request 0 or 2^256 - 1 is refused as unknown, never skipped or marked."""
    (home,) = _homes(1, "bitmap")
    rid = env.request(target=5000)
    env.dr.submit_signed_bids(env.consumers[9], rid, [_sign(env, home, rid, [500], [2 * TICK])])
    used = env.dr.signed_bids_used
    assert used(home.address, rid)
    top = 2**256 - 1
    for other in {rid - 1, rid + 1, rid + 256, rid ^ 255, 0, top}:
        assert not used(home.address, other), other
    for odd in (0, top):
        _batch_reverts(env, odd, [_sign(env, home, odd, [500], [2 * TICK])], "UnknownRequest")


def test_a_relayer_may_relay_its_own_entry_and_a_second_entry_of_a_bidder_is_skipped(env: Env) -> None:
    home = _homes(1, "self")[0]
    relayer = env.consumers[9]
    rid = env.request(target=5000)
    key = Account.from_key(keccak(text="hostile-relayer"))
    env.utility.send({"to": key.address, "value": 10**17})
    me = Signer(env.w3, key)
    own = _sign(env, key, rid, [700], [2 * TICK])
    receipt = env.dr.submit_signed_bids(me, rid, [own, _sign(env, home, rid, [500], [3 * TICK]),
                                                  _sign(env, key, rid, [9000], [1 * TICK])])
    assert _placed(env.dr, receipt) == [key.address, home.address]
    assert env.dr.skipped_signed_bids(receipt) == [(key.address, 1)]
    assert [(b.bidder, b.watts) for b in env.dr.all_bids(rid)] == [(key.address, 700), (home.address, 500)]
    assert relayer.address != key.address


def test_unenrolment_after_the_relayers_check_skips_the_entry_and_the_batch_lands(env: Env) -> None:
    homes = _homes(3, "unenrol")
    dr = DemandReduction.deploy(env.utility, registration_required=True)
    for h in homes:
        dr.enrol(env.utility, h.address)
    now = env.now()
    rid, _ = dr.request_reduction(env.utility, 5000, now + 1000, now + 4600, now + 300, CAP, 0, 10**17)
    entries = [_sign(env, h, rid, [1000], [(2 + i) * TICK], dr) for i, h in enumerate(homes)]
    for entry in entries:
        relay.check_entry(entry, dr.address, env.w3.eth.chain_id, rid, CAP)
    dr._send(env.utility, dr.functions.unenrol(homes[1].address))  # the utility, after the check
    receipt = dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert _placed(dr, receipt) == [homes[0].address, homes[2].address]
    assert dr.skipped_signed_bids(receipt) == [(homes[1].address, 2)]
    assert not dr.signed_bids_used(homes[1].address, rid)  # re-enrolled, it may still be relayed


def test_the_gas_limit_covers_the_worst_full_batch_on_a_metered_registration_only_market(env: Env) -> None:
    """100 fresh households (their bitmap word written from zero), each 1 bid on a new price
    level, metered, registration required: the wrapper's limit covers it and stays under the
    2^24 cap; so does the largest batch of 64-bid entries the wrapper sends."""
    homes = _homes(MAX_SIGNED_ENTRIES, "gas")
    dr = DemandReduction.deploy(env.utility, registration_required=True)
    for h in homes:
        dr.enrol(env.utility, h.address)
    now = env.now()
    rid, _ = dr.request_reduction_with_terms(env.utility, 100_000, now + 1000, now + 4600, now + 300, CAP,
                                             Terms(report_window=600, dispute_window=600), budget=13 * 10**18)
    entries = [_sign(env, h, rid, [1000 + i], [(1 + i) * TICK], dr) for i, h in enumerate(homes)]
    limit = signed_bid_gas_limit(entries)
    assert limit < TX_GAS_CAP
    receipt = dr.submit_signed_bids(env.consumers[9], rid, entries)
    assert dr.skipped_signed_bids(receipt) == [] and len(_placed(dr, receipt)) == MAX_SIGNED_ENTRIES
    assert receipt["gasUsed"] < limit
    # The largest batch of 64-bid entries under the cap: every bid of the first on a new level.
    rid2, _ = dr.request_reduction_with_terms(env.utility, 100_000, now + 1000, now + 4600, now + 300, CAP,
                                              Terms(report_window=600, dispute_window=600), budget=13 * 10**18)
    fit = max(k for k in range(1, MAX_SIGNED_ENTRIES) if signed_bid_gas_limit([64] * k) < TX_GAS_CAP)
    big = [_sign(env, h, rid2, [1000] * 64, [((j + 64 * i) % 128 + 1) * TICK for j in range(64)], dr)
           for i, h in enumerate(homes[:fit])]
    receipt = dr.submit_signed_bids(env.consumers[9], rid2, big)
    assert len(_placed(dr, receipt)) == fit and receipt["gasUsed"] < signed_bid_gas_limit(big) < TX_GAS_CAP


def test_after_a_fork_changes_the_chain_id_only_signatures_for_the_new_chain_count(
        request: pytest.FixtureRequest, start_chain) -> None:
    """The cached domain separator is recomputed once ``block.chainid`` differs (anvil_setChainId
    stands in for a fork); the facet's view, called through the market, names the market, and
    the facet's own address is another domain that the market never accepts."""
    from demand_response.chain import connect

    node = start_chain(request, "anvil", accounts=3)
    w3 = connect(node.url)
    utility = Signer(w3, w3.eth.accounts[0])
    key = Account.from_key(keccak(text="hostile-fork-relayer"))  # signs its transactions itself
    utility.send({"to": key.address, "value": 10**18})
    dr = DemandReduction.deploy(utility)
    now = w3.eth.get_block("latest")["timestamp"]
    rid, _ = dr.request_reduction(utility, 3000, now + 1000, now + 4600, now + 300, CAP, 0, 10**17)
    old_home, new_home, facet_home = _homes(3, "fork")
    old_id, new_id = w3.eth.chain_id, w3.eth.chain_id + 1000

    def domain(chain_id: int, contract: str) -> bytes:
        return bytes(encode_typed_data(full_message=relay.typed_data(contract, chain_id, rid, old_home.address,
                                                                     [1], [TICK])).header)

    def signed(who: LocalAccount, chain_id: int, contract: str) -> dict:
        return relay.sign_bids(who, contract, chain_id, rid, None, [1000], [2 * TICK])

    facet = dr.functions.facet().call()
    assert dr.domain_separator() == domain(old_id, dr.address)
    assert bytes(w3.eth.contract(facet, abi=dr.contract.abi).functions.DOMAIN_SEPARATOR().call()) == domain(
        old_id, facet)
    stale = signed(old_home, old_id, dr.address)
    node.rpc("anvil_setChainId", [new_id])
    assert int(node.rpc("eth_chainId", []), 16) == new_id
    assert dr.domain_separator() == domain(new_id, dr.address)
    for entry in (stale, signed(facet_home, new_id, facet)):
        with pytest.raises(Exception) as info:
            dr.functions.submitSignedBids(rid, [relay.entry_tuple(entry)]).call({"from": key.address})
        assert decode_revert(info.value).error == "BadSignature"
    forked = connect(node.url)  # a fresh connection: web3 caches the chain id
    dr = DemandReduction.at(forked, dr.address)
    receipt = dr.submit_signed_bids(Signer(forked, key), rid, [signed(new_home, new_id, dr.address)])
    assert _placed(dr, receipt) == [new_home.address]
