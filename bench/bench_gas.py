#!/usr/bin/env python3
"""Gas per operation and settlement gas against the number of bids, on anvil.

The scenarios are built exactly as in ``tests/contract/test_gas.py`` (same constants, seeds and
fill pattern), so the figures here must equal the pinned ones; the report says whether
they do. Each scenario starts from a fresh deployment (``evm_snapshot`` / ``evm_revert``).

    .venv/bin/python bench/bench_gas.py [--sizes 10,100,1000,10000,50000] [--out bench/gas.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, write_json  # noqa: E402

from demand_response import devchain  # noqa: E402
from demand_response.chain import Signer, connect  # noqa: E402
from demand_response.contract import DemandReduction, Terms  # noqa: E402
from demand_response.market import commitment  # noqa: E402

CAP = 128 * 10**12
TICK = CAP // 128
DEADLINE = 0xF1F1F1F1
EVENT_START = 0xF2F2F2F2
EVENT_END = EVENT_START + 3600
TARGET = 50_000
BUDGET = 10**18
CONSUMERS = 100
BLOCK_GAS = devchain.BLOCK_GAS_LIMIT
FILL_GAS_LIMIT = 3_000_000

# The seed's select_winners gas (shared/reference/anchors.md).
SEED_SETTLE = {1: 202_011, 10: 1_008_754, 50: 4_765_506, 100: 10_258_735, 200: 24_262_271, 400: 60_823_227}
SEED_OPS = {"request": 48_917, "bid1_median": 96_139}
SEED_MAX_BIDS_PER_BLOCK = 240

def _pinned() -> dict[str, int]:
    """The exact figures pinned in tests/contract/test_gas.py (one source of truth), read without pytest."""
    import ast

    source = (Path(__file__).resolve().parent.parent / "tests" / "contract" / "test_gas.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PINNED":
            return ast.literal_eval(node.value)
    raise RuntimeError("PINNED not found in tests/contract/test_gas.py")


# Pinned in tests/contract/test_gas.py: the bench checks it reproduces them.
PINNED = _pinned()


class Scenario:
    """A fresh deployment with request 1 open; ``close()`` reverts the chain."""

    def __init__(self, chain: devchain.DevChain) -> None:
        self.chain = chain
        self.snap = chain.rpc("evm_snapshot")
        self.w3 = connect(chain.url)
        accounts = self.w3.eth.accounts
        self.utility = Signer(self.w3, accounts[0])
        self.dr = DemandReduction.deploy(self.utility)
        block = self.w3.eth.get_block("latest", full_transactions=True)
        self.deploy_gas = self.w3.eth.get_transaction_receipt(block["transactions"][0]["hash"])["gasUsed"]
        self.rid, receipt = self.dr.request_reduction(self.utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, 0,
                                                      BUDGET)
        self.request_gas = receipt["gasUsed"]
        self.consumers = [Signer(self.w3, a) for a in accounts[1:CONSUMERS + 1]]

    def close_bidding(self) -> None:
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.chain.rpc("evm_increaseTime", [DEADLINE - now + 1])
        self.chain.rpc("evm_mine", [])

    def close(self) -> None:
        self.chain.rpc("evm_revert", [self.snap])


def _random_bids(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    return [rng.randint(500, 5000) for _ in range(n)], [rng.randint(1, 128) * TICK for _ in range(n)]


def _fill(sc: Scenario, n: int, seed: int) -> tuple[float, list[bytes]]:
    """Place n random bids in 64-bid calls (test_gas's pattern); (seconds, tx hashes)."""
    rng = random.Random(seed)
    done, hashes = 0, []
    t0 = time.perf_counter()
    while done < n:
        k = min(64, n - done)
        watts, prices = _random_bids(rng, k)
        sender = sc.consumers[(done // 64) % len(sc.consumers)]
        call = sc.dr.functions.submitBids(sc.rid, watts, prices)
        # Not waiting per transaction: anvil mines each on arrival; all are checked below.
        reply = sender.send(call.build_transaction({"from": sender.address, "gas": FILL_GAS_LIMIT}), wait=False)
        hashes.append(reply["transactionHash"])
        done += k
    last = sc.w3.eth.wait_for_transaction_receipt(hashes[-1], timeout=600, poll_latency=0.05)
    elapsed = time.perf_counter() - t0
    assert last["status"] == 1
    return elapsed, hashes


def measure_operations(chain: devchain.DevChain) -> dict:
    """Deploy, request, 1-bid and 5-bid medians, cancel, claim (1 and 64), withdraw."""
    out: dict = {}
    sc = Scenario(chain)
    out["deploy"], out["request"] = sc.deploy_gas, sc.request_gas
    rng = random.Random(1)
    gas = [sc.dr.submit_bids(c, sc.rid, *_random_bids(rng, 1))["gasUsed"] for c in sc.consumers]
    out["bid1_median"] = int(statistics.median(gas))
    # The median hides the first bid in a book slot (a new slot: ~78,000 gas): report the mean too.
    out["bid1_mean"] = int(statistics.mean(gas))
    out["bid1_min_max"] = [min(gas), max(gas)]
    sc.close()

    sc = Scenario(chain)
    rng = random.Random(5)
    gas = [sc.dr.submit_bids(c, sc.rid, *_random_bids(rng, 5))["gasUsed"] for c in sc.consumers]
    out["bid5_median_tx"] = int(statistics.median(gas))
    out["bid5_median_per_bid"] = int(statistics.median(gas)) // 5
    sc.close()

    sc = Scenario(chain)
    a, b = sc.consumers[:2]
    sc.dr.submit_bids(a, sc.rid, [4000, 3000], [2 * TICK, 3 * TICK])
    sc.dr.submit_bids(b, sc.rid, [6000], [5 * TICK])
    out["cancel1"] = sc.dr.cancel_bids(a, sc.rid, [1])["gasUsed"]
    sc.close_bidding()
    sc.dr.select_winners(sc.utility, sc.rid)
    out["claim1"] = sc.dr.claim(a, sc.rid, [0])["gasUsed"]
    out["withdraw"] = sc.dr.withdraw(a)["gasUsed"]
    sc.close()

    # 64 winning bids from one consumer, claimed in one transaction.
    sc = Scenario(chain)
    a = sc.consumers[0]
    rng = random.Random(64)
    prices = [rng.randint(1, 128) * TICK for _ in range(64)]
    receipt = sc.dr.submit_bids(a, sc.rid, [700] * 64, prices)  # 44.8 kW < target: all win
    out["bid64_tx"] = receipt["gasUsed"]
    out["bid64_per_bid"] = receipt["gasUsed"] // 64
    sc.close_bidding()
    sc.dr.select_winners(sc.utility, sc.rid)
    ids = [b.bid_id for b in sc.dr.bids_of(sc.rid, a.address)]
    receipt = sc.dr.claim(a, sc.rid, ids)
    out["claim64_tx"] = receipt["gasUsed"]
    out["claim64_per_bid"] = receipt["gasUsed"] // 64
    sc.close()
    return out


SEALED_CONSUMERS = CONSUMERS  # the crowd of the pinned medians: the same levels fill up
BOND = 10**15


def measure_terms(chain: devchain.DevChain) -> dict:
    """Open against sealed (commit + reveal) per bid, with the same random bids as the open
    medians, and the metered steps (bond, report, confirm, dispute, settle), medians over
    ``SEALED_CONSUMERS`` consumers on fresh deployments. Open figures here are each
    consumer's first submission in the same scenario, the fair comparison."""
    out: dict = {}
    for bond in (0, BOND):
        tag = "_bond" if bond else ""
        for n in (1, 5):
            sc = Scenario(chain)
            rng = random.Random(100 + n)
            bids = [_random_bids(rng, n) for _ in range(SEALED_CONSUMERS)]
            open_gas = [sc.dr.submit_bids(c, sc.rid, *b)["gasUsed"] for c, b in zip(sc.consumers, bids)]
            rid, receipt = sc.dr.request_reduction_with_terms(
                sc.utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP, Terms(reveal_window=600, bond_wei=bond),
                budget=BUDGET)
            if n == 1:
                out[f"request_sealed{tag}"] = receipt["gasUsed"]
            chain_id = sc.w3.eth.chain_id
            salts = [bytes([i + 1]) * 32 for i in range(SEALED_CONSUMERS)]
            commit_gas = []
            for c, b, salt in zip(sc.consumers, bids, salts):
                h = commitment(chain_id, sc.dr.address, rid, c.address, b[0], b[1], salt)
                commit_gas.append(sc.dr.commit_bids(c, rid, h, bond=bond)["gasUsed"])
            sc.close_bidding()
            reveal_gas = [sc.dr.reveal_bids(c, rid, b[0], b[1], salt)["gasUsed"]
                          for c, b, salt in zip(sc.consumers, bids, salts)]
            sc.close()
            o, cm, rv = (int(statistics.median(g)) for g in (open_gas, commit_gas, reveal_gas))
            out[f"open_bid{n}_tx"] = o
            out[f"open_per_bid_{n}"] = o // n
            out[f"sealed{tag}_commit{n}_tx"], out[f"sealed{tag}_reveal{n}_tx"] = cm, rv
            out[f"sealed{tag}_per_bid_{n}"] = (cm + rv) // n

    sc = Scenario(chain)
    rid, receipt = sc.dr.request_reduction_with_terms(
        sc.utility, TARGET, EVENT_START, EVENT_END, DEADLINE, CAP,
        Terms(report_window=3600, dispute_window=3600, bond_wei=BOND), budget=BUDGET)
    out["request_metered"] = receipt["gasUsed"]
    a, b, c = sc.consumers[:3]
    out["metered_post_bond"] = sc.dr.post_bond(a, rid, BOND)["gasUsed"]
    out["metered_bid1"] = sc.dr.submit_bids(a, rid, [4000], [2 * TICK])["gasUsed"]
    for who, price in ((b, 3 * TICK), (c, 4 * TICK)):
        sc.dr.post_bond(who, rid, BOND)
        sc.dr.submit_bids(who, rid, [4000], [price])
    sc.close_bidding()
    out["metered_select"] = sc.dr.select_winners(sc.utility, rid)["gasUsed"]
    now = sc.w3.eth.get_block("latest")["timestamp"]
    chain.rpc("evm_increaseTime", [EVENT_END - now + 1])
    chain.rpc("evm_mine", [])
    out["metered_report"] = sc.dr.report_delivery(a, rid, 4000)["gasUsed"]
    sc.dr.report_delivery(b, rid, 3000)
    out["metered_confirm"] = sc.dr.confirm_delivery(sc.utility, rid, a.address)["gasUsed"]
    out["metered_dispute"] = sc.dr.dispute_delivery(sc.utility, rid, b.address, 2000)["gasUsed"]
    chain.rpc("evm_increaseTime", [7300])
    chain.rpc("evm_mine", [])
    out["metered_settle_unreported"] = sc.dr.settle_delivery(a, rid, c.address)["gasUsed"]
    sc.close()
    return out


def measure_settlement(chain: devchain.DevChain, n: int) -> dict:
    """Settlement gas after n bids (test_gas's fill with seed n)."""
    sc = Scenario(chain)
    try:
        fill_s, hashes = _fill(sc, n, seed=n)
        info = sc.dr.get_request(sc.rid)
        assert info.bid_count == n, (info.bid_count, n)
        fill_gas = [int(sc.w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in hashes[:16]]
        sc.close_bidding()
        t0 = time.perf_counter()
        receipt = sc.dr.select_winners(sc.utility, sc.rid)
        settle_s = time.perf_counter() - t0
        supply = sum(sc.dr.book(sc.rid))
        accepted = sc.dr.get_request(sc.rid).accepted_watts
        assert accepted == min(TARGET, supply)
        return {
            "n": n, "gas": int(receipt["gasUsed"]), "txs": len(hashes), "fill_s": round(fill_s, 2),
            "fill_bids_per_s": round(n / fill_s, 1), "settle_wall_s": round(settle_s, 3),
            "fill_tx_gas_median": int(statistics.median(fill_gas)), "supply_w": supply, "accepted_w": accepted,
            "fraction_of_block": receipt["gasUsed"] / BLOCK_GAS,
        }
    finally:
        sc.close()


#: Issue 16's spread fill: 64 bids over all 128 levels (every other tick).
SPREAD_TICKS = list(range(2, 129, 2))
#: The worst settlement (issue 15): 100 W at the lowest level of each of the book's 26 slots of
#: five levels, short of the target: every slot is read, and the last one searched longest.
WORST_TICKS = list(range(1, 129, 5))


def measure_worst_settlement(chain: devchain.DevChain, ticks: list[int] = SPREAD_TICKS) -> int:
    """Settlement of 100 W at each of ``ticks`` (one submission), short of the target."""
    sc = Scenario(chain)
    try:
        sc.dr.submit_bids(sc.consumers[0], sc.rid, [100] * len(ticks), [t * TICK for t in ticks])
        sc.close_bidding()
        receipt = sc.dr.select_winners(sc.utility, sc.rid)
        assert sc.dr.get_request(sc.rid).accepted_watts == 100 * len(ticks) < TARGET
        return int(receipt["gasUsed"])
    finally:
        sc.close()


def run(sizes: list[int], kind: str = "anvil", log=print) -> dict:
    """All gas measurements on a fresh chain of ``kind``."""
    workdir = ROOT / "bench" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    chain = devchain.start(kind, accounts=CONSUMERS + 1, balance_eth=1_000_000, log_path=workdir / f"gas-{kind}.log")
    result: dict = {"chain": kind, "block_gas_limit": BLOCK_GAS, "seed_settle": SEED_SETTLE, "seed_ops": SEED_OPS,
                    "seed_max_bids_per_block": SEED_MAX_BIDS_PER_BLOCK, "pinned": PINNED}
    try:
        t0 = time.perf_counter()
        result["ops"] = measure_operations(chain)
        log(f"  gas: operations measured in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(f"{k}={v}" for k, v in result["ops"].items() if isinstance(v, int)))
        t0 = time.perf_counter()
        result["terms"] = measure_terms(chain)
        log(f"  gas: sealed and metered measured in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(f"{k}={v}" for k, v in result["terms"].items()))
        rows = []
        for n in sizes:
            row = measure_settlement(chain, n)
            rows.append(row)
            log(f"  gas: settle {n:>6} bids = {row['gas']:>9,} gas ({row['fill_s']:.1f} s to place them in "
                f"{row['txs']} txs, {row['fill_bids_per_s']:.0f} bids/s)")
        result["settlement"] = rows
        result["worst_settlement_spread"] = measure_worst_settlement(chain)
        log(f"  gas: settle 64 bids spread over all 128 levels, short of the target = "
            f"{result['worst_settlement_spread']:,} gas")
        result["worst_settlement_slots"] = measure_worst_settlement(chain, WORST_TICKS)
        log(f"  gas: settle 26 bids at the lowest level of every book slot (the worst case) = "
            f"{result['worst_settlement_slots']:,} gas")
    finally:
        chain.stop()
    ops = result["ops"]
    measured = dict(ops, **{f"settle_{r['n']}": r["gas"] for r in result["settlement"]},
                    settle_spread_64=result["worst_settlement_spread"], settle_worst=result["worst_settlement_slots"])
    result["pins"] = {k: {"pinned": v, "measured": measured.get(k), "equal": measured.get(k) == v}
                      for k, v in PINNED.items() if k in measured}
    fits = [r["n"] for r in result["settlement"] if r["gas"] <= BLOCK_GAS]
    result["largest_n_settled_in_one_block"] = max(fits) if fits else 0
    result["max_settlement_gas"] = max(r["gas"] for r in result["settlement"])
    result["worst_settlement_gas"] = max(result["max_settlement_gas"], result["worst_settlement_spread"],
                                         result["worst_settlement_slots"])
    # Per-bid placement gas bounds how many bids one 30M block can absorb.
    result["bids_per_block"] = {
        "1-bid txs": BLOCK_GAS // ops["bid1_median"],
        "5-bid batches": BLOCK_GAS // ops["bid5_median_per_bid"],
        "64-bid batches": BLOCK_GAS // ops["bid64_per_bid"],
    }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000,50000")
    ap.add_argument("--chain", default="anvil", choices=("anvil", "ganache"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "gas.json"))
    args = ap.parse_args()
    result = run([int(x) for x in args.sizes.split(",")], args.chain)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
