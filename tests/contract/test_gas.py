"""Exact gas figures for the main operations, pinned so that a regression fails.

Gas is deterministic for a given compiler, settings and transaction sequence, so these
are exact equalities, and ganache and anvil (both at the shanghai hardfork) must give the
same figures: every test runs on both. Every scenario starts from a fresh deployment on its own ganache,
with fixed calldata (times are constants with no zero bytes). When a contract change
moves a figure on purpose, update the pin and docs/gas.md together.

The issue's targets, checked as bounds too: a 1-bid transaction <= 65,000 gas (median
over 100 consumers at random prices), a 5-bid batch <= 35,000 gas per bid, and
settlement of 10,000 bids inside one 30M-gas block. Issue 15's: the worst settlement
<= 150,000 gas (met for a request with no withdrawal), claimAndPay of one winner <= 50,000
(met), and the 1-bid mean <= 60,000 (met on a book the utility sponsored; pinned unsponsored
too, where the first bidder at a slot writes it from zero).
"""

from __future__ import annotations

import os
import random
import statistics
from typing import Iterator

import pytest

from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.contract import TX_GAS_CAP, DemandReduction, Terms

CAP = 128 * 10**12
TICK = CAP // 128
DEADLINE = 0xF1F1F1F1  # year 2098: fixed calldata, no zero bytes
EVENT_START = 0xF2F2F2F2
EVENT_END = EVENT_START + 3600
TARGET = 50_000
BUDGET = 10**18
CONSUMERS = 100
# Sealed and metered terms: windows with no zero bytes, and a bond.
WINDOW = 0xF1F1
BOND = 10**15
SALT = bytes([0x5A] * 32)
SEALED_METERED = Terms(reveal_window=WINDOW, report_window=WINDOW, dispute_window=WINDOW, bond_wei=BOND)
METERED = Terms(report_window=WINDOW, dispute_window=WINDOW, bond_wei=BOND)
EVIDENCE = b"{" + b"e" * 445 + b"}"  # a measurement record's size, no zero bytes

PINNED = {
    "deploy": 7_373_627,
    "request": 99_510,
    "bid1_median": 59_696,
    "bid1_mean": 64_141,  # the same 100 consumers' mean, on an unsponsored book (26 are first at their slot)
    # Issue 15's target for the mean, <= 60,000: met when the utility sponsors the book first
    # (sponsorBook of all 26 slots, on the same request before any bid).
    "sponsor_book_all": 608_072,
    "bid1_mean_sponsored": 59_695,
    "bid5_median_per_bid": 25_708,
    "cancel1": 60_396,
    "settle_10": 142_650,
    "settle_100": 96_262,
    "settle_1000": 86_330,
    "settle_10000": 85_541,
    # The most selection work the book allows: 64 bids spread over all 128 levels, short of the target.
    "settle_spread_64": 147_707,
    # The worst settlement (issue 15): 26 bids, one at the lowest level of each book slot, short of
    # the target; and the same after one of them was withdrawn (the cancelled book is read too).
    "settle_worst": 147_835,
    "settle_worst_withdrawn": 203_618,
    "claim1": 61_971,
    "withdraw": 33_196,
    # claimAndPay (issue 15): one winner paid by the utility; a batch of 100 winners, per winner.
    "claim_and_pay1": 49_164,
    "claim_and_pay100_per_winner": 19_700,
    # Sealed and metered requests (test_sealed_and_metered_gas), each on a fresh deployment.
    "sealed_request_terms": 126_079,
    "sealed_commit_first": 98_039,
    "sealed_reveal1": 94_644,
    "sealed_reveal5": 149_189,
    "sealed_select": 147_845,
    "metered_report": 34_805,
    "metered_confirm": 81_738,
    "metered_meter_unreported": 92_789,
    "metered_settle": 104_753,
    "metered_post_bond": 73_276,
    "metered_bid1": 82_352,
    "open_bid1_first": 76_796,
    "open_bid5_first": 131_244,
    # Relayed bids (issue 15, submitSignedBids): one household's signed 1-bid entry alone; and
    # per entry in a batch of 100 one-bid entries, with each household at its first request of
    # 256 (its replay bitmap word written from zero) and at a later one.
    "relayed1": 106_867,
    "relayed100_first_per_entry": 61_961,
    "relayed100_later_per_entry": 44_861,
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


def _medians_on_anvil_only(chain) -> None:
    if chain.kind == "ganache" and not os.environ.get("DR_SLOW"):
        pytest.skip("100 transactions take ~30 s each way on ganache's JS EVM; the anvil run pins the same "
                    "figures, and every other pin is checked on both (set DR_SLOW=1 to run it here too)")


def test_one_bid_transaction_median_and_mean(fresh) -> None:
    """On an unsponsored book a bidder that is the first at its book slot writes the slot from
    zero (+17,100), and 26 of these 100 are: the mean is above issue 15's 60,000, which a
    sponsored book meets (next test)."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    _medians_on_anvil_only(chain)
    rng = random.Random(1)
    gas = [dr.submit_bids(c, rid, *_random_bids(rng, 1))["gasUsed"] for c in consumers]
    median = int(statistics.median(gas))
    assert median <= 65_000
    assert median == PINNED["bid1_median"]
    assert sum(gas) // len(gas) == PINNED["bid1_mean"]


def test_a_sponsored_book_brings_the_one_bid_mean_to_the_median(fresh) -> None:
    """Issue 15's target for the mean, <= 60,000: the utility's `sponsorBook` writes a marker
    into the 26 empty book slots first, so the same 100 bidders all rewrite a non-zero slot."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    _medians_on_anvil_only(chain)
    assert dr.sponsor_book(utility, rid)["gasUsed"] == PINNED["sponsor_book_all"]
    rng = random.Random(1)
    gas = [dr.submit_bids(c, rid, *_random_bids(rng, 1))["gasUsed"] for c in consumers]
    mean = sum(gas) // len(gas)
    assert mean <= 60_000
    assert mean == PINNED["bid1_mean_sponsored"]
    assert int(statistics.median(gas)) == PINNED["bid1_median"]


def test_five_bid_batch_median_per_bid(fresh) -> None:
    chain, w3, dr, utility, consumers, rid, _ = fresh
    _medians_on_anvil_only(chain)
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


def test_claim_and_pay_one_winner(fresh) -> None:
    """Issue 15's target: a winner is paid, without sending anything, for <= 50,000 gas."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    dr.submit_bids(consumers[0], rid, [4000], [2 * TICK])
    _close_bidding(chain, w3)
    dr.select_winners(utility, rid)
    (receipt,) = dr.claim_and_pay(utility, rid, [0])
    # `paidOut` now shares the slot claims write (77,013 -> 55,224), claimAndPay holds no lock
    # (-> 52,845) and checks each payment can get its whole gas cap (-> 53,063); the claims' own
    # request slot (-> 50,930) and one event per payment, `PayoutSent` (-> 49,154): docs/gas.md.
    assert receipt["gasUsed"] <= 50_000
    assert receipt["gasUsed"] == PINNED["claim_and_pay1"]


def test_claim_and_pay_a_batch_of_100_winners(fresh) -> None:
    """Issue 15's target: <= 25,000 gas per winner in a batch of 100 to accounts that
    already hold a balance (a cold empty account's first ether would add the EVM's 25,000)."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    _medians_on_anvil_only(chain)
    for i, c in enumerate(consumers):
        dr.submit_bids(c, rid, [400], [(1 + i % 128) * TICK])
    _close_bidding(chain, w3)
    dr.select_winners(utility, rid)
    ids = dr.unpaid_winning_bids(rid)
    assert len(ids) == CONSUMERS
    (receipt,) = dr.claim_and_pay(utility, rid, ids)
    per_winner = receipt["gasUsed"] // CONSUMERS
    assert per_winner <= 25_000
    assert per_winner == PINNED["claim_and_pay100_per_winner"]


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


def _settle_fill(fresh, ticks: list[int], withdraw: int | None = None) -> int:
    """Gas of selecting a request holding 100 W at each of ``ticks`` (short of the target),
    after withdrawing bid ``withdraw`` if given."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    for start in range(0, len(ticks), 64):
        chunk = ticks[start:start + 64]
        dr.submit_bids(consumers[start // 64], rid, [100] * len(chunk), [t * TICK for t in chunk])
    if withdraw is not None:
        dr.cancel_bids(consumers[0], rid, [withdraw])
    _close_bidding(chain, w3)
    gas = dr.select_winners(utility, rid)["gasUsed"]
    assert dr.get_request(rid).accepted_watts == 100 * (len(ticks) - (withdraw is not None)) < TARGET
    return gas


#: 100 W at the lowest level of each of the book's 26 slots (ticks 1, 6, ..., 126).
EVERY_SLOT_LOWEST_LEVEL = list(range(1, 129, 5))


def test_the_worst_settlement_is_the_lowest_level_of_every_book_slot(fresh) -> None:
    """Issue 15's target, <= 150,000 gas, for the worst settlement of a request none of whose
    bids was withdrawn. What drives it: one cold read per non-empty book slot (all 26 here)
    and the same arithmetic per slot whatever its five levels hold; short of the target the
    scan reads every slot and then searches the last one for its highest live level, which
    takes longest when that is its lowest level. Everything else selection does is fixed."""
    gas = _settle_fill(fresh, EVERY_SLOT_LOWEST_LEVEL)
    assert gas <= 150_000
    assert gas == PINNED["settle_worst"]


def test_the_spread_fill_of_issue_16_costs_about_the_same(fresh) -> None:
    """Issue 16's worst case (64 bids spread over all 128 levels), kept for comparison."""
    assert _settle_fill(fresh, list(range(2, 129, 2))) == PINNED["settle_spread_64"]


@pytest.mark.parametrize("ticks", [list(range(1, 129)), list(range(5, 129, 5)) + [128], [1, 126]],
                         ids=["every level", "highest level of every slot", "two slots"])
def test_no_other_fill_settles_above_the_worst_case(fresh, ticks: list[int]) -> None:
    """Other fills of the book, each short of the target, cost no more (fewer slots cost
    ~2,200 gas less each; meeting the target stops the scan early)."""
    assert _settle_fill(fresh, ticks) <= PINNED["settle_worst"]


@pytest.mark.parametrize("ticks", [EVERY_SLOT_LOWEST_LEVEL, [1, 126]], ids=["every slot", "two slots"])
def test_a_sponsored_book_settles_at_no_more_than_the_worst_case(fresh, ticks: list[int]) -> None:
    """The sponsorship marker is no volume, but a sponsored slot without bids is no longer
    zero: the scan does its ~400 gas of arithmetic there too. Live volume in every slot stays
    the worst case (a sponsored book with bids in two slots costs less)."""
    chain, w3, dr, utility, *_ = fresh
    dr.sponsor_book(utility, fresh[5])
    assert _settle_fill(fresh, ticks) <= PINNED["settle_worst"]


def test_a_withdrawal_adds_the_cancelled_side_of_the_book_to_settlement(fresh) -> None:
    """The first withdrawal flags the request, and selection then reads the cancelled side of
    the book too: 26 more cold reads (54,600 gas). A withdrawn bid at a partly accepted level
    also needs the marginal hint (~2,500 gas per bid of that level it lists, docs/gas.md)."""
    assert _settle_fill(fresh, EVERY_SLOT_LOWEST_LEVEL, withdraw=1) == PINNED["settle_worst_withdrawn"]


def _to(chain: devchain.DevChain, w3, timestamp: int) -> None:
    """Move chain time to just after ``timestamp``."""
    now = w3.eth.get_block("latest")["timestamp"]
    chain.rpc("evm_increaseTime", [timestamp - now + 1])
    chain.rpc("evm_mine", [])


def _salt_without_zero_bytes_in_commitment(dr: DemandReduction, rid: int, bidder: str, bids: tuple) -> bytes:
    """The first salt SALT, SALT+1, ... whose commitment has no zero byte (the salt has none either)."""
    for k in range(200):
        salt = SALT[:-1] + bytes([SALT[-1] + k])
        if 0 not in dr.commitment_of(rid, bidder, *bids, salt):
            return salt
    raise AssertionError("no salt found")


def test_sealed_and_metered_gas(fresh) -> None:
    """A sealed, metered request with a bond on a fresh deployment: request, commits (the
    first with its bond), reveals of 1 and 5 bids, selection, report, confirm, dispute and
    settlement by a third party; then an open metered request: postBond and a 1-bid
    submission. For the open-vs-sealed comparison, the same 1 and 5 bids are also placed as
    the first submissions of the plain request of ``fresh``."""
    chain, w3, plain, utility, consumers, plain_rid, _ = fresh
    # Calldata holds addresses and commitments, which differ between ganache and anvil
    # (accounts, chain id): use addresses, and salts giving commitments, without zero bytes,
    # so that calldata costs, and so the pins, are the same on both.
    a, b, c, d = [x for x in consumers if 0 not in bytes.fromhex(x.address[2:])][:4]
    one = ([4000], [2 * TICK])
    five = ([3000, 2500, 2000, 1500, 1000], [TICK, 3 * TICK, 5 * TICK, 7 * TICK, 9 * TICK])
    gas = {"open_bid1_first": plain.submit_bids(a, plain_rid, *one)["gasUsed"],
           "open_bid5_first": plain.submit_bids(b, plain_rid, *five)["gasUsed"]}

    dr = DemandReduction.deploy(utility)
    rid, receipt = dr.request_reduction_with_terms(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP,
                                                   SEALED_METERED, budget=BUDGET)
    gas["sealed_request_terms"] = receipt["gasUsed"]
    mid, _ = dr.request_reduction_with_terms(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, METERED,
                                             budget=BUDGET)
    plan = {a: one, b: five, c: ([6000], [4 * TICK])}
    salts = {}
    for i, (who, bids) in enumerate(plan.items()):
        salts[who] = salt = _salt_without_zero_bytes_in_commitment(dr, rid, who.address, bids)
        receipt = dr.commit_bids(who, rid, dr.commitment_of(rid, who.address, *bids, salt), bond=BOND)
        if i == 0:
            gas["sealed_commit_first"] = receipt["gasUsed"]
    gas["metered_post_bond"] = dr.post_bond(d, mid, BOND)["gasUsed"]
    gas["metered_bid1"] = dr.submit_bids(d, mid, *one)["gasUsed"]

    _to(chain, w3, DEADLINE)
    gas["sealed_reveal1"] = dr.reveal_bids(a, rid, *one, salts[a])["gasUsed"]
    gas["sealed_reveal5"] = dr.reveal_bids(b, rid, *five, salts[b])["gasUsed"]
    dr.reveal_bids(c, rid, *plan[c], salts[c])
    _to(chain, w3, DEADLINE + WINDOW)
    gas["sealed_select"] = dr.select_winners(utility, rid)["gasUsed"]
    _to(chain, w3, EVENT_END)
    gas["metered_report"] = dr.report_delivery(a, rid, 3900)["gasUsed"]
    dr.report_delivery(b, rid, 9000)
    gas["metered_confirm"] = dr.confirm_delivery(utility, rid, a.address)["gasUsed"]
    # Issue 17: the utility meters c without a report, publishing a measurement record of
    # the usual size (mv.Fingerprint.evidence, 447 bytes for caiso-10in10), and pushes the
    # payout and the bond to c.
    gas["metered_meter_unreported"] = dr.meter_delivery(utility, rid, c.address, 4500, EVIDENCE)["gasUsed"]
    _to(chain, w3, EVENT_END + 2 * WINDOW)
    gas["metered_settle"] = dr.settle_delivery(d, rid, b.address)["gasUsed"]
    assert dr.terms_of(rid).held_bonds == 0
    assert gas == {k: PINNED[k] for k in gas}, f"{gas}"  # the message lists every figure, for re-pinning


#: Requests in the 6-decimal test stablecoin (issue 15): a request escrowing its budget by
#: transferFrom, one winner paid by claimAndPay, and a claim then withdrawToken. The token's
#: address is in the calldata of the withdrawal and differs between the two chains (their
#: accounts differ), so that pin is per chain.
TOKEN_PINNED = {
    "token_claim_and_pay1": 57_198,
    "token_claim1": 64_257,
    "token_request": 150_958,
    "token_withdraw": {"anvil": 42_571, "ganache": 42_583},
}


def test_token_request_payout_and_withdrawal_gas(fresh) -> None:
    from demand_response.token import deploy_test_usd, mint_test_usd

    chain, w3, dr, utility, consumers, _, _ = fresh
    usd = deploy_test_usd(utility)
    mint_test_usd(utility, usd.address, utility.address, 10**12)
    for c in consumers[:2]:
        mint_test_usd(utility, usd.address, c.address, 1)  # winners already hold some, like the batch pin
    usd.approve(utility, dr.address, 10**12)
    cap = 128 * 3_906
    gas = {}
    rid, receipt = dr.request_reduction(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, cap, 0, 10**11,
                                        token=usd.address)
    gas["token_request"] = receipt["gasUsed"]
    rid2, _ = dr.request_reduction(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, cap, 0, 10**11,
                                   token=usd.address)
    a, b = consumers[:2]
    dr.submit_bids(a, rid, [4000], [2 * 3_906])
    dr.submit_bids(b, rid2, [4000], [2 * 3_906])
    _close_bidding(chain, w3)
    dr.select_winners(utility, rid)
    dr.select_winners(utility, rid2)
    (receipt,) = dr.claim_and_pay(utility, rid, [0])
    gas["token_claim_and_pay1"] = receipt["gasUsed"]
    gas["token_claim1"] = dr.claim(b, rid2, [0])["gasUsed"]
    gas["token_withdraw"] = dr.withdraw(b, usd.address)["gasUsed"]
    assert gas["token_claim_and_pay1"] <= 80_000
    expected = {k: v[chain.kind] if isinstance(v, dict) else v for k, v in TOKEN_PINNED.items()}
    assert gas == expected, f"{gas}"


def _zero_free_households(dr: DemandReduction, chain_id: int, rids: list[int], bids: list[tuple]) -> list:
    """Deterministic household keys whose address and signatures (one per request in ``rids``,
    household i signing ``bids[i]``) have no zero byte, so that calldata, and the pins, are
    the same on ganache and anvil, whose chain ids and market addresses differ."""
    from eth_account import Account
    from eth_utils import keccak

    from demand_response import relay

    found: list = []
    seed = 0
    while len(found) < len(bids):
        key = Account.from_key(keccak(text=f"gas-household-{seed}"))
        seed += 1
        watts, prices = bids[len(found)]
        entries = [relay.sign_bids(key, dr.address, chain_id, rid, None, watts, prices) for rid in rids]
        if 0 in bytes.fromhex(key.address[2:]) or any(0 in bytes.fromhex(e["signature"][2:]) for e in entries):
            continue
        found.append((key, entries))
    return found


def test_relayed_bids_gas(fresh) -> None:
    """Issue 15: the household sends nothing; the relayer pays per entry about what the
    household's own 1-bid transaction would cost less the 21,000 base and the cold access to
    the market, plus the signature check (ecrecover 3,000 and hashing) and the replay bit (a
    word written from zero at a household's first request of each 256, else 5,000)."""
    chain, w3, dr, utility, consumers, rid, _ = fresh
    rid2, _ = dr.request_reduction(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, 0, BUDGET)
    rid3, _ = dr.request_reduction(utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, 0, BUDGET)
    bids = [([400], [(1 + i % 128) * TICK]) for i in range(CONSUMERS + 1)]
    homes = _zero_free_households(dr, w3.eth.chain_id, [rid, rid2, rid3], bids)
    relayer = consumers[0]
    gas = {"relayed1": dr.submit_signed_bids(relayer, rid, [homes[-1][1][0]])["gasUsed"]}
    first = dr.submit_signed_bids(relayer, rid2, [entries[1] for _, entries in homes[:CONSUMERS]])
    later = dr.submit_signed_bids(relayer, rid3, [entries[2] for _, entries in homes[:CONSUMERS]])
    assert dr.skipped_signed_bids(first) == dr.skipped_signed_bids(later) == []
    gas["relayed100_first_per_entry"] = first["gasUsed"] // CONSUMERS
    gas["relayed100_later_per_entry"] = later["gasUsed"] // CONSUMERS
    assert gas["relayed100_first_per_entry"] - gas["relayed100_later_per_entry"] == 17_100  # the bitmap word
    assert first["gasUsed"] < TX_GAS_CAP // 2
    assert all(w3.eth.get_transaction_count(key.address) == 0 for key, _ in homes)
    assert gas == {k: PINNED[k] for k in gas}, f"{gas}"
