#!/usr/bin/env python3
"""The economics of taking part: per household, the cost of its transactions against its payout.

A gridsim population (1,000 households, a hot afternoon, a 2-hour event) bids its
flexibility; the utility asks for half of what is offered, and the market clears with the
project's reference clearing (``demand_response.market.clear``, uniform price). Each
household's payout is then set against the cost of the transactions it sends, on Ethereum
L1 at 0.5, 1 and 5 gwei and on each cheap-chain profile, twice:

* **self-claim**: bid + claim + withdraw for a winner (the gas pinned in
  tests/contract/test_gas.py), the bid alone for a household that loses: what a household
  sends when nobody pays it;
* **one transaction**: the bid only: the utility's ``claimAndPay`` pays the winners;
* **relayed**: the household signs its bids off chain and the utility's relay places them
  (``submitSignedBids``, many households per transaction): the household sends nothing and
  pays nothing; the relay's gas per entry is the programme's cost, paid by the utility, and is
  reported beside it (``RELAYED_ENTRY``).

Costs come from ``demand_response.fees`` (``participation_cost`` with a ``FeeQuote`` per
profile; the L1 data fee of OP Stack and Arbitrum included). Fee parameters and their sources
are in ``PROFILES`` and docs/economics.md. A smaller sample of the same population then goes
through the same event on a real anvil (deploy, request, one bid transaction per household
with its whole curve, settlement, claims, withdrawals): its receipts give the gas each
household really spent (``fees.gas_spent``) and its payouts must equal the reference clearing.

    .venv/bin/python bench/bench_economics.py [--households 1000] [--sample 40] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demand_response import fees, market  # noqa: E402
from demand_response.fees import FeeQuote, OpL1Params  # noqa: E402
from demand_response.networks import FeeModel  # noqa: E402
from demand_response.units import ETH, Currency  # noqa: E402

GWEI = 10**9
USD_PER_ETH = 3000  # anchors.md ("Taking part on a real chain"), also gridsim's default
USD_PER_EWT = Decimal("1.0")  # assumption, see docs/economics.md
EVENT_START = 1752598800  # 2025-07-15 17:00 UTC, as bench_gridsim.py
EVENT_S = 7200
TARGET_SHARE = 0.5  # the utility asks for half of what is offered
COST_SHARE_TARGET = 0.05  # issue 15: cost <= 5 % of payout
#: The OP Stack fee scalars used for Base and OP Mainnet (read the live ones with
#: GasPriceOracle.baseFeeScalar() / blobBaseFeeScalar(); fees.quote_fees does).
OP_SCALARS = (1368, 810_949)
#: The plans compared: what a household sends (``fees.PLANS``), and "relayed": nothing.
PLANS = ("open-self-claim", "open", "relayed")
#: One household's 1-bid entry in a relay batch (``submitSignedBids``, a batch of 100, a
#: household relayed before): the utility's gas (pinned in tests/contract/test_gas.py; 61,961
#: at a household's first relayed request, when its used-bitmap word is new). The anvil sample
#: below measures whole curves, first and later.
RELAYED_ENTRY = fees.RELAYED_BID
#: The same entry at a household's first relayed request (of 256: its bitmap word is new).
RELAYED_ENTRY_FIRST_GAS = 61_961


@dataclass(frozen=True)
class Profile:
    """A chain's fees as the benchmark assumes them, with where each figure comes from."""

    key: str
    label: str
    quote: FeeQuote
    native: Currency
    usd_per_native: Decimal
    cheap: bool  # an L2 / Energy Web profile (the 5 % target for the median household)
    source: str


def _profiles() -> list[Profile]:
    eth = Decimal(USD_PER_ETH)
    ewt = Currency("EWT", 18)
    op_l1 = OpL1Params(l1_base_fee=GWEI, blob_base_fee=1, base_fee_scalar=OP_SCALARS[0],
                       blob_base_fee_scalar=OP_SCALARS[1])
    rows = [Profile(f"l1-{g}", f"Ethereum L1, {g} gwei", FeeQuote(FeeModel.L1, int(g * GWEI)), ETH, eth, False,
                    "gas price assumed, the issue's three points") for g in (0.5, 1, 5)]
    rows += [
        Profile("base", "Base", FeeQuote(FeeModel.OP_STACK, 6_000_000, op=op_l1), ETH, eth, True,
                "L2: 0.005 gwei minimum base fee (Base configuration changelog, 2026-02-19) + 0.001 gwei tip; "
                "L1 data fee: Fjord formula, L1 base fee 1 gwei, blob base fee 1 wei, scalars 1368 / 810,949"),
        Profile("optimism", "OP Mainnet", FeeQuote(FeeModel.OP_STACK, 6_000_000, op=op_l1), ETH, eth, True,
                "assumed equal to Base (same OP Stack fee formula; its own scalars are on chain)"),
        Profile("arbitrum", "Arbitrum One", FeeQuote(FeeModel.ARBITRUM, 20_000_000, l1_per_byte=16 * GWEI), ETH,
                eth, True, "L2: 0.02 gwei floor (anchors.md); L1 share: every byte priced as calldata at 1 gwei "
                "(16 gas/byte, no compression, no blobs: an upper bound)"),
        Profile("arbitrum-blobs", "Arbitrum One, L1 estimate 0.05 gwei", FeeQuote(
            FeeModel.ARBITRUM, 20_000_000, l1_per_byte=16 * GWEI // 20), ETH, eth, True,
            "as above with ArbOS's L1 price estimate at 0.05 gwei (an assumption: blob posting is cheaper "
            "than calldata; read it live with ArbGasInfo.getPricesInWei())"),
        Profile("ewc", "Energy Web Chain", FeeQuote(FeeModel.L1, GWEI), ewt, USD_PER_EWT, True,
                "1 gwei legacy gas price and 1 USD per EWT, both assumptions (read eth_gasPrice live)"),
    ]
    return rows


PROFILES = _profiles()


def _usd(native_units: int, profile: Profile) -> float:
    return float(Decimal(native_units) * profile.usd_per_native / Decimal(profile.native.one))


def _population(households: int, seed: int) -> tuple[Any, Any]:
    from demand_response.gridsim import Request, fleet_bids, make_population

    request = Request(EVENT_START, EVENT_START + EVENT_S, outdoor_max_c=35.0)
    population = make_population(households, seed)
    return population, fleet_bids(population, request, usd_per_eth=USD_PER_ETH)


def _market(curves: list[list[tuple[int, int]]]) -> dict[str, Any]:
    """Clear the households' curves with the reference clearing; payouts per household in wei."""
    top = max((p for c in curves for _, p in c), default=market.TICKS)
    cap = -(-top // market.TICKS) * market.TICKS  # smallest valid cap at or above every ask
    bids, owner = [], []
    for h, curve in enumerate(curves):
        for watts, price in curve:
            bids.append(market.Bid(f"h{h}", int(watts), market.snap_price_up(int(price), cap)))
            owner.append(h)
    offered = sum(b.watts for b in bids)
    target = max(1, int(offered * TARGET_SHARE))
    budget = market.required_budget(target, EVENT_S, cap)
    result = market.clear(bids, target, EVENT_S, cap, budget)
    payout = [0] * len(curves)
    accepted = [0] * len(curves)
    for h, outcome in zip(owner, result.outcomes):
        payout[h] += outcome.payout
        accepted[h] += outcome.accepted_watts
    return {"cap": cap, "target": target, "offered": offered, "clearing_price": result.clearing_price,
            "payout_wei": payout, "accepted_w": accepted, "bids": bids, "owner": owner, "budget": budget}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _economics(offered_w: list[int], payout_usd: list[float], plan_cost: Callable[[Profile, str, bool], float],
               ) -> list[dict[str, Any]]:
    """Per profile and plan: cost shares of the winners, medians, the issue's targets."""
    rows = []
    winners = [i for i, p in enumerate(payout_usd) if p > 0]
    big = [i for i in winners if offered_w[i] >= 1000]
    for profile in PROFILES:
        for plan in PLANS:
            cost = {i: plan_cost(profile, plan, payout_usd[i] > 0) for i in range(len(payout_usd))}
            share = {i: cost[i] / payout_usd[i] for i in winners}
            net = sum(payout_usd) - sum(cost[i] for i in range(len(payout_usd)) if offered_w[i] > 0)
            row = {
                "profile": profile.key, "label": profile.label, "plan": plan, "cheap": profile.cheap,
                "winner_cost_usd": round(cost[winners[0]], 6) if winners else None,
                "loser_cost_usd": round(plan_cost(profile, plan, False), 6),
                "median_share": _median([share[i] for i in winners]),
                "median_share_1kw": _median([share[i] for i in big]),
                "winners_under_target": sum(1 for i in winners if share[i] <= COST_SHARE_TARGET),
                "winners": len(winners),
                "population_net_usd": round(net, 2),
            }
            if plan == "relayed":
                # The programme's cost: the relay's gas for every household's entry, winner or not.
                entry = _relay_entry_cost(profile)
                per_winner = entry * len(payout_usd) / max(1, len(winners))
                row.update({"relay_gas_per_entry": RELAYED_ENTRY.gas, "relay_cost_per_entry_usd": round(entry, 6),
                            "relay_cost_per_winner_usd": round(per_winner, 6),
                            "relay_share_of_median_payout": per_winner / _median([payout_usd[i] for i in winners])
                            if winners else None,
                            "relay_share_of_payouts": entry * len(payout_usd) / sum(payout_usd) if sum(payout_usd) else None})
            if profile.cheap:
                row["target_met"] = row["median_share"] is not None and row["median_share"] <= COST_SHARE_TARGET
            elif profile.key == "l1-1":
                row["target_met"] = row["median_share_1kw"] is not None and row["median_share_1kw"] <= COST_SHARE_TARGET
            rows.append(row)
    return rows


def _relay_entry_cost(profile: Profile) -> float:
    """USD the utility pays to relay one household's entry (its share of a batch: the entry's
    gas and, on an L2, the L1 fee of its calldata with a whole envelope: an upper bound)."""
    cost = fees.participation_cost((RELAYED_ENTRY,), profile.quote, native=profile.native, settlement=profile.native)
    return _usd(cost.native_cost, profile)


def _fixed_plan_cost(profile: Profile, plan: str, won: bool) -> float:
    """USD a household pays: the plan's transactions if it won, its bid alone if it lost;
    nothing when its bids are relayed."""
    if plan == "relayed":
        return 0.0
    steps = fees.PLANS[plan] if won else (fees.BID,)
    cost = fees.participation_cost(steps, profile.quote, native=profile.native, settlement=profile.native)
    return _usd(cost.native_cost, profile)


def _shares(data: list[float]) -> dict[str, float]:
    return {"p10": round(float(_pct(data, 10)), 4), "median": round(float(_pct(data, 50)), 4),
            "p90": round(float(_pct(data, 90)), 4)}


def _pct(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))] if ordered else 0.0


# -- the same event on a real chain ---------------------------------------------------------


def _on_chain(curves: list[list[tuple[int, int]]], log: Callable[[str], None]) -> dict[str, Any]:
    """Run the sample through one event on anvil; gas and payouts per household from receipts."""
    from demand_response import devchain
    from demand_response.chain import Signer, connect
    from demand_response.contract import DemandReduction

    cleared = _market(curves)
    node = devchain.start("anvil", accounts=len(curves) + 1, balance_eth=1_000)
    try:
        w3 = connect(node.url)
        utility = Signer(w3, w3.eth.accounts[0])
        homes = [Signer(w3, a) for a in w3.eth.accounts[1:len(curves) + 1]]
        dr = DemandReduction.deploy(utility)
        now = w3.eth.get_block("latest")["timestamp"]
        deadline = now + 600
        rid, _ = dr.request_reduction(utility, cleared["target"], deadline + 60, deadline + 60 + EVENT_S, deadline,
                                      cleared["cap"], budget=cleared["budget"])
        receipts: list[dict[str, list]] = [{"bid": [], "claim": [], "withdraw": []} for _ in curves]
        for h, curve in enumerate(curves):
            mine = [b for b, o in zip(cleared["bids"], cleared["owner"]) if o == h]
            receipts[h]["bid"].append(dr.submit_bids(homes[h], rid, [b.watts for b in mine], [b.price for b in mine]))
            if (h + 1) % 10 == 0:
                log(f"  economics: {h + 1}/{len(curves)} households bid on anvil")
        node.rpc("evm_increaseTime", [601])
        node.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        for h, home in enumerate(homes):
            won = [b.bid_id for b in dr.bids_of(rid, home.address) if b.accepted_watts > 0]
            if won:
                receipts[h]["claim"].append(dr.claim(home, rid, won))
                receipts[h]["withdraw"].append(dr.withdraw(home))
        paid = [dr.outcome_of(rid, home.address)[1] for home in homes]
        relayed = _relayed_on_chain(node, dr, utility, cleared, len(curves), log)
        sizes = {}
        for h in range(len(curves)):
            for kind, rs in receipts[h].items():
                for r in rs:
                    tx = w3.eth.get_transaction(r["transactionHash"])
                    sizes[bytes(r["transactionHash"])] = len(fees.unsigned_tx_bytes(dict(tx)))
    finally:
        node.stop()
    households = []
    for h, rs in enumerate(receipts):
        every = [r for kind in rs.values() for r in kind]
        households.append({
            "offered_w": sum(w for w, _ in curves[h]), "steps": len(curves[h]),
            "accepted_w": cleared["accepted_w"][h], "payout_wei": paid[h],
            "gas": {kind: sum(int(r["gasUsed"]) for r in kind_rs) for kind, kind_rs in rs.items()},
            "gas_spent_wei_anvil": fees.gas_spent(every),
            "txs": [(int(r["gasUsed"]), sizes[bytes(r["transactionHash"])], kind)
                    for kind, kind_rs in rs.items() for r in kind_rs],
        })
    matches = paid == cleared["payout_wei"]
    costs = {}
    for profile in PROFILES:
        for plan in ("open-self-claim", "open"):
            shares, totals = [], []
            for hh in households:
                txs = [t for t in hh["txs"] if plan == "open-self-claim" or t[2] == "bid"]
                usd = _usd(sum(profile.quote.tx_cost(g, s) for g, s, _ in txs), profile)
                totals.append(usd)
                if hh["payout_wei"]:
                    shares.append(usd / (hh["payout_wei"] * USD_PER_ETH / 1e18))
            costs[f"{profile.key}/{plan}"] = {"median_cost_usd": round(statistics.median(totals), 6),
                                              "median_share_winners": _median(shares)}
    winners = [hh for hh in households if hh["payout_wei"]]
    return {
        "households": len(curves), "winners": len(winners), "payouts_match_reference": matches,
        "median_gas": {kind: int(statistics.median([hh["gas"][kind] for hh in winners])) if winners else 0
                       for kind in ("bid", "claim", "withdraw")},
        "median_bid_gas_all": int(statistics.median([hh["gas"]["bid"] for hh in households])),
        "median_steps": statistics.median([hh["steps"] for hh in households]),
        "median_winner_gas_total": int(statistics.median([sum(hh["gas"].values()) for hh in winners])) if winners else 0,
        "costs": costs,
        "relayed": relayed,
    }


def _relayed_on_chain(node: Any, dr: Any, utility: Any, cleared: dict[str, Any], households: int,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """The same households' curves signed (EIP-712) and placed by the utility in one
    ``submitSignedBids`` batch, twice: the first relayed request of each household (its
    used-bitmap word is new) and a later one. Gas per entry from the receipts; the
    households' nonces must not move."""
    from demand_response import devchain
    from demand_response.relay import sign_bids

    keys = devchain.dev_private_keys(households + 1, "anvil")[1:]
    w3 = dr.w3
    nonces = [w3.eth.get_transaction_count(w3.eth.account.from_key(k).address) for k in keys]
    out: dict[str, Any] = {"households": households}
    for which in ("first", "later"):
        now = w3.eth.get_block("latest")["timestamp"]
        rid, _ = dr.request_reduction(utility, cleared["target"], now + 660, now + 660 + EVENT_S, now + 600,
                                      cleared["cap"], budget=cleared["budget"])
        entries = []
        for h, key in enumerate(keys):
            mine = [b for b, o in zip(cleared["bids"], cleared["owner"]) if o == h]
            entries.append(sign_bids(key, dr.address, node.chain_id, rid, None, [b.watts for b in mine],
                                     [b.price for b in mine]))
        receipt = dr.submit_signed_bids(utility, rid, entries)
        out[which] = {"gas": int(receipt["gasUsed"]), "per_entry": int(receipt["gasUsed"]) // len(entries),
                      "skipped": len(dr.skipped_signed_bids(receipt))}
        log(f"  economics: relayed {len(entries)} households' curves in one batch ({which} time): "
            f"{out[which]['per_entry']:,} gas per entry")
    out["household_txs"] = sum(w3.eth.get_transaction_count(w3.eth.account.from_key(k).address) - n
                               for k, n in zip(keys, nonces))
    return out


# -- entry points ---------------------------------------------------------------------------


def run(households: int = 1000, sample: int = 40, seed: int = 1, log: Callable[[str], None] = print) -> dict:
    """The benchmark section: the population's economics, plus the sample measured on anvil."""
    _, bids = _population(households, seed)
    curves = [c for c in bids.to_lists()]
    offered_w = [sum(w for w, _ in c) for c in curves]
    bidders = [i for i, c in enumerate(curves) if c]
    cleared = _market([curves[i] for i in bidders])
    payout_usd = [0.0] * households
    for j, i in enumerate(bidders):
        payout_usd[i] = cleared["payout_wei"][j] * USD_PER_ETH / 1e18
    rows = _economics([offered_w[i] for i in bidders], [payout_usd[i] for i in bidders], _fixed_plan_cost)
    winners = [i for i in bidders if payout_usd[i] > 0]
    log(f"  economics: {households:,} households, {len(bidders):,} bid, {len(winners):,} win; clearing "
        f"{cleared['clearing_price'] * USD_PER_ETH / 1e18:.3f} USD/kWh; median winner payout "
        f"{statistics.median([payout_usd[i] for i in winners]):.3f} USD")
    for r in rows:
        ms = r["median_share"]
        log(f"  economics: {r['label']:<38} {r['plan']:<12} median cost/payout "
            f"{'n/a' if ms is None else f'{ms * 100:.2f} %'}")
    measured = _on_chain([curves[i] for i in bidders[:sample]], log) if sample else None
    return {
        "households": households, "seed": seed, "bidders": len(bidders), "winners": len(winners),
        "event_s": EVENT_S, "target_share": TARGET_SHARE, "usd_per_eth": USD_PER_ETH,
        "usd_per_ewt": float(USD_PER_EWT),
        "clearing_usd_per_kwh": round(cleared["clearing_price"] * USD_PER_ETH / 1e18, 4),
        "cap_usd_per_kwh": round(cleared["cap"] * USD_PER_ETH / 1e18, 4),
        "offered_kw": _shares([offered_w[i] / 1000 for i in bidders]),
        "winner_payout_usd": _shares([payout_usd[i] for i in winners]),
        "winners_1kw": sum(1 for i in winners if offered_w[i] >= 1000),
        "gas": {"bid": fees.BID.gas, "claim": fees.CLAIM.gas, "withdraw": fees.WITHDRAW.gas},
        "profiles": [{"key": p.key, "label": p.label, "model": p.quote.model.value,
                      "gas_price_gwei": p.quote.gas_price / GWEI, "native": p.native.symbol,
                      "usd_per_native": float(p.usd_per_native), "source": p.source,
                      "bid_l1_fee_wei": p.quote.l1_fee(fees.BID.unsigned_size)} for p in PROFILES],
        "rows": rows,
        "scatter": {"offered_kw": [offered_w[i] / 1000 for i in winners],
                    "payout_usd": [round(payout_usd[i], 6) for i in winners]},
        "measured": measured,
    }


# -- rendering (called by bench/render.py) --------------------------------------------------


def _plan_label(plan: str) -> str:
    return {"open-self-claim": "3 tx (self-claim)", "open": "one tx (claimAndPay)",
            "relayed": "relayed: 0 tx (utility pays)"}[plan]


def _pct_text(v: float | None) -> str:
    return "n/a" if v is None else "0 %" if v == 0 else (f"{v * 100:,.1f} %" if v >= 0.001 else f"{v * 100:.3f} %")


def plot(data: dict, img_dir: Path) -> str:
    """docs/img/perf-economics.png: median cost share per profile, and cost share by household size."""
    import matplotlib.pyplot as plt

    rows = data["rows"]
    labels = [p["label"].replace(", L1 estimate", "\nL1 est.").replace("Ethereum L1, ", "L1 ") for p in data["profiles"]]
    today = [next(r["median_share"] for r in rows if r["profile"] == p["key"] and r["plan"] == "open-self-claim") * 100
             for p in data["profiles"]]
    target = [next(r["median_share"] for r in rows if r["profile"] == p["key"] and r["plan"] == "open") * 100
              for p in data["profiles"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    x = range(len(labels))
    a1.bar([i - 0.2 for i in x], today, 0.4, label="bid + claim + withdraw (self-claim)", color="tab:red")
    a1.bar([i + 0.2 for i in x], target, 0.4, label="one transaction: bid only", color="tab:blue")
    a1.axhline(COST_SHARE_TARGET * 100, color="k", ls="--", lw=1)
    a1.text(-0.4, COST_SHARE_TARGET * 100 * 1.15, "5 % target", fontsize=8)
    a1.set_yscale("log")
    a1.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=7)
    a1.set_ylabel("median winner's cost / payout, %")
    a1.set_title(f"{data['households']:,} gridsim households, {data['event_s'] // 3600} h event", fontsize=9)
    a1.legend(fontsize=7)
    kw = data["scatter"]["offered_kw"]
    pay = data["scatter"]["payout_usd"]
    by_key = {p["key"]: p for p in data["profiles"]}
    for key, plan, color in (("l1-1", "open-self-claim", "tab:red"), ("l1-1", "open", "tab:orange"),
                             ("base", "open", "tab:blue"), ("ewc", "open", "tab:green")):
        row = next(r for r in rows if r["profile"] == key and r["plan"] == plan)
        cost = row["winner_cost_usd"]
        a2.scatter(kw, [cost / p * 100 for p in pay], s=5, color=color, alpha=0.5,
                   label=f"{by_key[key]['label']}, {'bid + claim + withdraw' if plan == 'open-self-claim' else 'bid only'}")
    a2.axhline(COST_SHARE_TARGET * 100, color="k", ls="--", lw=1)
    a2.axvline(1.0, color="grey", ls=":", lw=1)
    a2.set_yscale("log")
    a2.set_xlabel("offered kW")
    a2.set_ylabel("cost / payout, % (winners)")
    a2.set_title("Cost share by household size", fontsize=9)
    a2.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    name = "perf-economics.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return name


def section(data: dict, number: str = "7") -> list[str]:
    """The markdown section of docs/performance.md."""
    off, pay = data["offered_kw"], data["winner_payout_usd"]
    L = [f"## {number}. Economics: what taking part costs a household", "",
         f"`bench/bench_economics.py`: {data['households']:,} gridsim households (seed {data['seed']}, 35 °C "
         f"afternoon) bid for a {data['event_s'] // 3600}-hour event; the utility asks for "
         f"{data['target_share']:.0%} of what is offered and the reference clearing (`market.clear`, uniform "
         f"price) settles it. {data['bidders']:,} households bid, {data['winners']:,} win "
         f"({data['winners_1kw']:,} of them offering 1 kW or more). Offered: median {off['median']} kW "
         f"(p10 {off['p10']}, p90 {off['p90']}). Clearing price {data['clearing_usd_per_kwh']} USD/kWh. "
         f"A winner's payout: median {pay['median']:.3f} USD (p10 {pay['p10']:.3f}, p90 {pay['p90']:.3f}). "
         f"Amounts in USD at {data['usd_per_eth']:,} USD/ETH; in a USDC market they are the same figures in USDC.",
         "",
         f"Cost = the household's transactions at each profile's fees (`fees.participation_cost`, L1 data fee "
         f"included): with **self-claim** a winner sends bid + claim + withdraw ({data['gas']['bid']:,} + "
         f"{data['gas']['claim']:,} + {data['gas']['withdraw']:,} gas) and a loser its bid; with **one "
         "transaction** (the utility's `claimAndPay` pays the winners, as the daemons now do) every household sends only its bid. Target: a winner's cost ≤ 5 % of "
         "its payout, for the median winner on the L2 and Energy Web profiles, and for the median winner offering "
         "1 kW or more on L1 at 1 gwei.", "",
         "| profile | plan | cost per winner, USD | median cost / payout | same, winners ≥ 1 kW | winners ≤ 5 % | "
         "population net, USD | target |",
         "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in data["rows"]:
        tgt = r.get("target_met")
        verdict = "" if tgt is None else ("**pass**" if tgt else "**FAIL**")
        L.append(f"| {r['label']} | {_plan_label(r['plan'])} | {r['winner_cost_usd']:.6f} | "
                 f"{_pct_text(r['median_share'])} | {_pct_text(r['median_share_1kw'])} | "
                 f"{r['winners_under_target']:,} / {r['winners']:,} | {r['population_net_usd']:,.2f} | {verdict} |")
    relayed = [r for r in data["rows"] if r["plan"] == "relayed"]
    if relayed:
        L += ["", f"**Relayed bids: who pays.** With the relay (`RELAY_LISTEN` on the utility daemon, `RELAY_URL` on "
              "the consumer's) a household signs its bids (EIP-712) and sends nothing: its cost is 0 and its payout "
              "is all net. The gas moves to the utility, which places every household's entry in batches "
              f"(`submitSignedBids`, {relayed[0]['relay_gas_per_entry']:,} gas per 1-bid entry in a batch of 100 "
              f"from a household relayed before, `fees.RELAYED_BID`; {RELAYED_ENTRY_FIRST_GAS:,} at its first "
              "relayed request) and pays the "
              "winners with `claimAndPay`. That gas is the programme's cost: per entry, per winner (the losers' "
              "entries are paid for too), and against the payouts:", "",
              "| profile | relay gas per entry | USD per entry | USD per winner | vs median winner's payout | "
              "vs all payouts |", "|---|---:|---:|---:|---:|---:|"]
        for r in relayed:
            L.append(f"| {r['label']} | {r['relay_gas_per_entry']:,} | {r['relay_cost_per_entry_usd']:.6f} | "
                     f"{r['relay_cost_per_winner_usd']:.6f} | {_pct_text(r['relay_share_of_median_payout'])} | "
                     f"{_pct_text(r['relay_share_of_payouts'])} |")
        l1 = next((r for r in relayed if r["profile"] == "l1-1"), None)
        L += ["", "The relayed household's cost is 0 on every chain, so its side of the target passes everywhere; "
              "the utility's bill is the table above. Relaying moves the cost to the utility and spares each "
              "household transaction's fixed 21,000 gas, which the signature check and the used-bitmap write "
              "partly spend again: it does not make the gas go away."
              + (f" On L1 at 1 gwei the utility would spend {_pct_text(l1['relay_share_of_payouts'])} of what it "
                 "pays out on relay gas alone: there the household passes only because the utility absorbs a "
                 "cost as large as the payouts." if l1 else "")
              + " The utility's relay gas stays within 5 % of the payouts on: "
              + (", ".join(r["label"] for r in relayed if (r["relay_share_of_payouts"] or 1) <= COST_SHARE_TARGET)
                 or "none of the profiles") + "."]
    L += ["", "Fee parameters (stated, not measured: no public chain is reachable from here; the code reads the live "
          "ones with `fees.quote_fees`):", "", "| profile | fee model | L2 gas price | L1 data fee of a 1-bid tx | "
          "native | source |", "|---|---|---:|---:|---|---|"]
    for p in data["profiles"]:
        L.append(f"| {p['label']} | {p['model']} | {p['gas_price_gwei']:g} gwei | "
                 f"{p['bid_l1_fee_wei'] / GWEI:,.1f} gwei | {p['native']} ({p['usd_per_native']:g} USD) | {p['source']} |")
    m = data.get("measured")
    if m:
        g = m["median_gas"]
        L += ["", f"**Measured on anvil.** The first {m['households']} of these households went through the same "
              f"event on a real anvil (each sends its whole curve, median {m['median_steps']:g} steps, in one "
              f"`submitBids`): {m['winners']} won; payouts equal the reference clearing to the wei: "
              f"{'yes' if m['payouts_match_reference'] else '**NO**'}. Median gas from the receipts: a household's "
              f"bid {m['median_bid_gas_all']:,} (winners: bid {g['bid']:,}, claim {g['claim']:,}, withdraw "
              f"{g['withdraw']:,}; {m['median_winner_gas_total']:,} in all). A curve of several steps costs more "
              "than the 1-bid figure above, so the table is the lower bound for households that send curves.", "",
              "| profile | median cost with self-claim, USD | median cost/payout with self-claim | median cost, bid only, USD | "
              "median cost/payout, bid only |", "|---|---:|---:|---:|---:|"]
        for p in data["profiles"]:
            t, o = m["costs"][f"{p['key']}/open-self-claim"], m["costs"][f"{p['key']}/open"]
            L.append(f"| {p['label']} | {t['median_cost_usd']:.6f} | {_pct_text(t['median_share_winners'])} | "
                     f"{o['median_cost_usd']:.6f} | {_pct_text(o['median_share_winners'])} |")
    rm = (m or {}).get("relayed")
    if rm:
        L += ["", f"**Relayed, measured on anvil.** The same {rm['households']} households signed their whole curves "
              "and the utility placed them in one `submitSignedBids` batch: "
              f"{rm['first']['per_entry']:,} gas per entry the first time a household is relayed (its used-bitmap "
              f"word is new), {rm['later']['per_entry']:,} on a later request (their own `submitBids` of the same "
              f"curves, above: median {m['median_bid_gas_all']:,} each); the households sent "
              f"{rm['household_txs']} transactions. So relaying does not make bids much cheaper in gas: it moves "
              "the bill from the household to the utility and saves the fixed 21,000 gas of each household's "
              "own transaction, which the signature check and the used-bitmap write partly spend again."]
    L += ["", "![economics](img/perf-economics.png)", ""]
    return L


def summary_rows(data: dict) -> list[str]:
    """Rows for the summary table of docs/performance.md."""
    out = []
    for r in data["rows"]:
        if r.get("target_met") is None or r["plan"] != "open" and r["profile"] != "l1-1":
            continue
        which = "median winner ≥ 1 kW" if r["profile"] == "l1-1" else "median winner"
        share = r["median_share_1kw"] if r["profile"] == "l1-1" else r["median_share"]
        paid_by_utility = (f"; the utility pays {_pct_text(r['relay_share_of_payouts'])} of the payouts in relay gas"
                           if r["plan"] == "relayed" else "")
        out.append(f"| household cost / payout, {r['label']}, {_plan_label(r['plan'])} "
                   f"({which}{paid_by_utility}) | | **{_pct_text(share)}** | ≤ 5 % | "
                   f"{'**pass**' if r['target_met'] else '**FAIL**'} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=40, help="households also run on anvil (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    data = run(args.households, args.sample, args.seed)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
