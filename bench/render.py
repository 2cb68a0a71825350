"""Plots (docs/img/perf-*.png) and docs/performance.md, rendered from bench/report.json.

The document is a template in code: edit this file, not docs/performance.md.
"""

from __future__ import annotations

import os
from typing import Any

from _common import ROOT

IMG = ROOT / "docs" / "img"
DOC = ROOT / "docs" / "performance.md"

# Assumptions for the public-network section.
GAS_PRICES_GWEI = (1, 20, 50)
DEFAULT_GWEI = 20
USD_PER_ETH = 3000
SLOT_S = 12
BLOCK_GAS = 30_000_000

TARGETS = {
    "bid1": 65_000, "bid5_per_bid": 35_000, "settle_n": 10_000, "latency_p95_s": 1.0, "latency_blocks": 1,
    "peak_mib": 80, "gridsim_100k_s": 1.0,
}


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int,)) or (isinstance(v, float) and digits == 0):
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"



def _worst_settlement(g: dict) -> int:
    """The dearest settlement measured: over all n, and the 64-bids-over-128-levels case."""
    return max(g["max_settlement_gas"], g.get("worst_settlement_gas", 0), g.get("worst_settlement_spread", 0))

def _ok(cond: bool | None) -> str:
    return "n/a" if cond is None else ("**pass**" if cond else "**FAIL**")


def _sec(report: dict, name: str) -> dict | None:
    data = report.get("sections", {}).get(name)
    return None if not data or "error" in data else data


# -- plots ----------------------------------------------------------------------------------


def _plots(report: dict, log) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    made = []
    g = _sec(report, "gas")
    if g:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ns = [r["n"] for r in g["settlement"]]
        ax.loglog(ns, [r["gas"] for r in g["settlement"]], "o-", color="tab:blue", label="DemandReduction (measured)")
        seed = sorted((int(k), v) for k, v in g["seed_settle"].items())
        ax.loglog([n for n, _ in seed], [v for _, v in seed], "s-", color="tab:red", label="seed (anchors.md)")
        # The seed's per-bid cost only grows: extend its last point linearly to show where it would go.
        n_last, v_last = seed[-1]
        ext = [n for n in ns if n > n_last]
        if ext:
            ax.loglog([n_last] + ext, [v_last] + [v_last * n / n_last for n in ext], ":", color="tab:red",
                      label="seed, linear lower bound beyond 400 bids")
        ax.axhline(BLOCK_GAS, color="k", ls="--", lw=1)
        ax.text(ns[0], BLOCK_GAS * 1.15, "30M-gas block limit", fontsize=8)
        ax.set_xlabel("bids in the event")
        ax.set_ylabel("settlement gas (select winners)")
        ax.set_title("Settlement gas against the number of bids")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
        fig.tight_layout()
        fig.savefig(IMG / "perf-gas-vs-bids.png", dpi=110)
        plt.close(fig)
        made.append("perf-gas-vs-bids.png")

        ops = g["ops"]
        labels = ["request", "1-bid tx", "5-bid batch\nper bid", "64-bid batch\nper bid", "cancel 1", "claim 1",
                  "claim 64\nper bid", "withdraw"]
        ours = [ops["request"], ops["bid1_median"], ops["bid5_median_per_bid"], ops["bid64_per_bid"], ops["cancel1"],
                ops["claim1"], ops["claim64_per_bid"], ops["withdraw"]]
        seed_v = [g["seed_ops"]["request"], g["seed_ops"]["bid1_median"], None, None, None, None, None, None]
        fig, ax = plt.subplots(figsize=(8, 4))
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], ours, 0.4, label="DemandReduction", color="tab:blue")
        ax.bar([i + 0.2 for i in x], [v or 0 for v in seed_v], 0.4, label="seed", color="tab:red")
        for i, v in enumerate(ours):
            ax.text(i - 0.2, v, f"{v / 1000:.1f}k", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_ylabel("gas")
        ax.set_title("Gas per operation (the seed had no batch, cancel, claim or withdraw)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(IMG / "perf-gas-ops.png", dpi=110)
        plt.close(fig)
        made.append("perf-gas-ops.png")

    lat = _sec(report, "latency")
    if lat:
        fig, axes = plt.subplots(1, len(lat["chains"]), figsize=(4.5 * len(lat["chains"]), 4), sharey=False)
        axes = axes if hasattr(axes, "__len__") else [axes]
        for ax, (kind, data) in zip(axes, lat["chains"].items()):
            keys = [k for k in data if isinstance(data[k], dict) and "p50_s" in data[k]]
            names = [k.replace("_", " ") for k in keys]
            p50 = [data[k]["p50_s"] for k in keys]
            p95 = [data[k]["p95_s"] for k in keys]
            x = range(len(keys))
            colors = ["tab:gray" if k.startswith(("floor", "seed")) else "tab:blue" for k in keys]
            ax.bar([i - 0.2 for i in x], p50, 0.4, color=colors, alpha=0.6, label="p50")
            ax.bar([i + 0.2 for i in x], p95, 0.4, color=colors, label="p95")
            ax.set_yscale("log")
            ax.axhline(1.0, color="k", ls="--", lw=1)
            ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
            ax.set_title(data["label"], fontsize=9)
            ax.set_ylabel("request block -> bid block, s")
            ax.legend(fontsize=7)
        fig.suptitle("Reaction latency (grey: baselines measured in the same run)", fontsize=10)
        fig.tight_layout()
        fig.savefig(IMG / "perf-latency.png", dpi=110)
        plt.close(fig)
        made.append("perf-latency.png")

    fp = _sec(report, "footprint")
    if fp:
        b = fp["baselines"]
        names = ["consumer daemon\n(cold start to listening)", "seed consumer\n(import only)", "web3 import", "python -c pass"]
        walls = [fp["daemon"]["cold_start_s"], b["seed_import"]["wall_s"], b["web3_import"]["wall_s"],
                 b["python_bare"]["wall_s"]]
        peaks = [fp["daemon"]["bidding_peak_mib"], b["seed_import"]["peak_mib"], b["web3_import"]["peak_mib"],
                 b["python_bare"]["peak_mib"]]
        colors = ["tab:blue", "tab:red", "tab:gray", "tab:gray"]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
        a1.bar(range(4), walls, color=colors)
        a1.set_xticks(range(4), names, fontsize=7)
        a1.set_ylabel("wall time, s")
        a1.set_title("Start (median, same run)", fontsize=9)
        a2.bar(range(4), peaks, color=colors)
        a2.axhline(TARGETS["peak_mib"], color="k", ls="--", lw=1)
        a2.text(2.5, TARGETS["peak_mib"] + 1, "80 MiB target", fontsize=7)
        a2.set_xticks(range(4), names, fontsize=7)
        a2.set_ylabel("peak RSS, MiB")
        a2.set_title("Peak RSS (daemon: while bidding)", fontsize=9)
        fig.tight_layout()
        fig.savefig(IMG / "perf-footprint.png", dpi=110)
        plt.close(fig)
        made.append("perf-footprint.png")

    gs = _sec(report, "gridsim")
    if gs:
        rows = gs["results"]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.loglog([r["households"] for r in rows], [r["bids_s"] for r in rows], "o-", label="bid generation")
        ax.loglog([r["households"] for r in rows], [r["end_to_end_s"] for r in rows], "s--",
                  label="population + bids + lists")
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.text(rows[0]["households"], 1.1, "1 s target for 100,000", fontsize=8)
        ax.set_xlabel("households")
        ax.set_ylabel("seconds (median)")
        ax.set_title("gridsim bid generation")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(IMG / "perf-gridsim.png", dpi=110)
        plt.close(fig)
        made.append("perf-gridsim.png")
    econ = _sec(report, "economics")
    if econ:
        import bench_economics

        made.append(bench_economics.plot(econ, IMG))
    for m in made:
        log(f"  wrote docs/img/{m}")
    return made


# -- document -------------------------------------------------------------------------------


def _gas_section(g: dict) -> list[str]:
    ops, seed = g["ops"], g["seed_ops"]
    L = ["## 1. Gas", "",
         f"Measured on {g['chain']} (shanghai; identical to ganache, see `tests/contract/test_gas.py`), scenarios built "
         "exactly as in the pinned tests: fresh deployment per scenario, target 50 kW, one-hour event, cap "
         "128 × 10^12 wei/kWh, random grid prices and 500–5,000 W bids (seeded). Gas is deterministic, so these "
         "are exact figures, not samples.", "",
         "| operation | seed | target | DemandReduction | vs seed | |", "|---|---:|---:|---:|---:|---|"]

    def pct(ours: int, theirs: int | None) -> str:
        return f"{(ours - theirs) / theirs:+.0%}" if theirs else ""

    rows = [
        ("request (first on a new contract)", ops["request"], seed["request"], None, None),
        ("1-bid transaction (median of 100 consumers)", ops["bid1_median"], seed["bid1_median"], TARGETS["bid1"],
         ops["bid1_median"] <= TARGETS["bid1"]),
        *([("1-bid transaction (mean: the first bid in a book slot pays more)", ops["bid1_mean"],
            seed["bid1_median"], None, None)] if "bid1_mean" in ops else []),
        ("5-bid batch, per bid (median of 100)", ops["bid5_median_per_bid"], seed["bid1_median"],
         TARGETS["bid5_per_bid"], ops["bid5_median_per_bid"] <= TARGETS["bid5_per_bid"]),
        ("64-bid batch, per bid", ops["bid64_per_bid"], seed["bid1_median"], None, None),
        ("cancel one bid", ops["cancel1"], None, None, None),
        ("claim one winning bid", ops["claim1"], None, None, None),
        ("claim 64 winning bids, per bid", ops["claim64_per_bid"], None, None, None),
        ("withdraw", ops["withdraw"], None, None, None),
        ("deploy", ops["deploy"], None, None, None),
    ]
    for name, ours, theirs, target, ok in rows:
        L.append(f"| {name} | {_fmt(theirs) if theirs else '—'} | {('≤ ' + _fmt(target)) if target else ''} | "
                 f"**{_fmt(ours)}** | {pct(ours, theirs)} | {_ok(ok) if ok is not None else ''} |")
    L += ["", "The seed had no batches: its \"vs seed\" for batches compares against its single-bid transaction. "
          "Its settlement also paid every winner by push transfer, so claim and withdraw have no seed counterpart. "
          "The request is the one figure that is higher than the seed's: it escrows the budget and stores the price "
          "grid, window and settlement results (see `docs/gas.md`).", "",
          "### Settlement against the number of bids", "",
          "| bids | seed | DemandReduction | share of a 30M block | bids placed in | placing rate |",
          "|---:|---:|---:|---:|---:|---:|"]
    seed_settle = {int(k): v for k, v in g["seed_settle"].items()}
    for r in g["settlement"]:
        s = seed_settle.get(r["n"])
        seed_txt = _fmt(s) if s else ("does not fit in a block" if r["n"] > g["seed_max_bids_per_block"] else "—")
        L.append(f"| {r['n']:,} | {seed_txt} | **{r['gas']:,}** | {r['fraction_of_block']:.2%} | "
                 f"{r['txs']:,} txs of ≤ 64 | {r['fill_bids_per_s']:,.0f} bids/s |")
    largest = g["largest_n_settled_in_one_block"]
    L += ["", f"* **Largest n settled in one 30M-gas block: {largest:,} bids, the largest size measured**; the most "
          f"expensive settlement in the run was {g['max_settlement_gas']:,} gas "
          f"({g['max_settlement_gas'] / BLOCK_GAS:.2%} of a block); the most selection work the book allows (64 bids "
          f"spread over all 128 levels, short of the target) costs {_worst_settlement(g):,} gas. Settlement scans a fixed "
          "book of 128 price levels, "
          "so its cost does not grow with n (it falls slightly: a fuller book meets the target in fewer levels; a "
          "short-supplied request reads all 128 levels and is the dearest case). Target: independent of n, or at least "
          f"10,000 bids: {_ok(largest >= TARGETS['settle_n'])}.",
          f"* The seed settles at most about {g['seed_max_bids_per_block']} bids in a block; past that, its escrow is "
          "stuck. Its dotted line in the plot is a linear lower bound (its real cost grows faster than linearly).",
          "* The pinned figures in `tests/contract/test_gas.py` were reproduced: "
          + ", ".join(f"{k} {'=' if v['equal'] else '≠'} {v['pinned']:,}" for k, v in g["pins"].items()) + ".",
          "", "![settlement gas against bids](img/perf-gas-vs-bids.png)", "",
          "![gas per operation](img/perf-gas-ops.png)", ""]
    if "terms" in g:
        L += _terms_gas(g["terms"])
    return L


def _terms_gas(t: dict) -> list[str]:
    """Sealed bids against open bids, and the metered steps (docs/market.md)."""
    L = ["### Sealed bids against open bids, and payment on delivery", "",
         "Medians over 100 consumers on fresh deployments, with the same random bids in both modes. A sealed "
         "bid costs a commitment (one transaction, any number of bids) and a reveal (the bids enter the book "
         "then); with a bond, the commitment also escrows it and the reveal credits it back.", "",
         "| bids per consumer | open | sealed, no bond | sealed, with bond | sealed ÷ open |", "|---:|---:|---:|---:|---:|"]
    for n in (1, 5):
        o, s_, b = t[f"open_per_bid_{n}"], t[f"sealed_per_bid_{n}"], t[f"sealed_bond_per_bid_{n}"]
        L.append(f"| {n} (gas per bid) | {_fmt(o)} | {_fmt(s_)} (commit {_fmt(t[f'sealed_commit{n}_tx'])} + reveal "
                 f"{_fmt(t[f'sealed_reveal{n}_tx'])}) | {_fmt(b)} | {s_ / o:.2f}× / {b / o:.2f}× |")
    L += ["", "| metered step | gas |", "|---|---:|",
          f"| request with terms (sealed / metered) | {_fmt(t['request_sealed'])} / {_fmt(t['request_metered'])} |",
          f"| post a bond (open, metered) | {_fmt(t['metered_post_bond'])} |",
          f"| first 1-bid submission on a metered request | {_fmt(t['metered_bid1'])} |",
          f"| select winners (3 consumers) | {_fmt(t['metered_select'])} |",
          f"| report delivery | {_fmt(t['metered_report'])} |",
          f"| meterDelivery at the report: confirms (settles, pays) | {_fmt(t['metered_confirm'])} |",
          f"| meterDelivery below the report: disputes (settles, pays) | {_fmt(t['metered_dispute'])} |",
          f"| settle a consumer that did not report | {_fmt(t['metered_settle_unreported'])} |", "",
          "Sealing roughly doubles or triples the cost of a 1-bid offer and adds about 60–85 % to a 5-bid curve, "
          "because the reveal repeats the bids in calldata and the commitment is a second transaction; a household "
          "that offers its whole curve in one commitment pays the commitment once. Exact pins for these operations "
          "are in `tests/contract/test_gas.py` (`sealed_*`, `metered_*`).", ""]
    return L


def _latency_section(lat: dict) -> list[str]:
    L = ["## 2. Reaction latency", "",
         "From the block holding the request to the block holding each consumer's first bid, as wall time: a watcher "
         "in the benchmark stamps the moment each block number is first seen (`eth_blockNumber` every 20 ms), and a "
         "consumer's latency is the difference of the two stamps. The daemons run as users run them "
         "(`python -m demand_response consumer run` per process, or `consumer fleet -n N` in one process), polling "
         f"every {lat['poll_interval_s']} s, with {lat['offers_per_consumer']} offers (one transaction) each. "
         f"Requests per configuration: {', '.join(f'{k} {v}' for k, v in lat['rounds'].items())}.", "",
         "Baselines measured in the same run on the same chain: **floor** is one bare `submitBids` round trip "
         "(send, mined, seen) with nothing to listen for, sent as the daemon sends it (fixed gas limit, no estimate); **floor direct N** is the chain's own limit for N "
         "consumers: the benchmark sends N pre-built `submitBids` transactions from the same N accounts at once "
         "(raw `eth_sendTransaction`, gas given, 16 connections) and times each from the first send to its block; "
         "**seed-style** is 10 in-process consumers that poll an "
         f"event filter every {lat['seed_poll_s']:.0f} s like the seed's brownie consumer, then bid.", "",
         "| chain | configuration | samples | p50 s | p95 s | max s | delay in blocks p50 / p95 | target | |",
         "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for kind, data in lat["chains"].items():
        block_time = data.get("block_time_s")
        for key, v in data.items():
            if not (isinstance(v, dict) and "p50_s" in v):
                continue
            is_base = key.startswith(("floor", "seed"))
            blocks = f"{v['blocks_p50']} / {v.get('blocks_p95', v.get('blocks_max'))}" if "blocks_p50" in v and block_time else ""
            if is_base:
                target, ok = "baseline", None
            elif block_time:
                target, ok = f"≤ {TARGETS['latency_blocks']} block", v.get("blocks_p95", 99) <= TARGETS["latency_blocks"]
            else:
                target, ok = f"p95 ≤ {TARGETS['latency_p95_s']:.0f} s", v["p95_s"] <= TARGETS["latency_p95_s"]
            name = key.replace("_", " ")
            if "startup_all_s" in v:
                name += f" (all {key.split('_')[-1]} listening {v['startup_all_s']} s after launch)"
            L.append(f"| {data['label']} | {'*' + name + '*' if is_base else name} | {v['n']} | {v['p50_s']} | "
                     f"{v['p95_s']} | {v['max_s']} | {blocks} | {target} | "
                     f"{_verdict(ok, data, key.split('_')[-1]) if ok is not None else ''} |")
    L += ["", "A bid cannot be in the request's own block, so one block is the least possible delay with block times.",
          ""]
    L += _latency_verdicts(lat)
    L += ["![reaction latency](img/perf-latency.png)", ""]
    L += _latency_fixes()
    probe = lat.get("bench_latency_py")
    if probe and "error" not in probe:
        L += ["`bench/bench_latency.py` (the daemon author's probe, `getBids` polled every 50 ms from the request's "
              "receipt; run in this run with --full):", "", "```", *[
                  f"{k}: {v}" for k, v in probe.items() if k.endswith("_consumers")], "```", ""]
    return L


def _chain_bound(data: dict, n: str) -> bool:
    """True when the chain itself misses the target for ``n`` consumers: the benchmark's own
    direct sends (no daemon involved) take longer than the target on it."""
    floor = data.get(f"floor_direct_{n}")
    if not floor:
        return False
    if data.get("block_time_s"):
        return floor.get("blocks_p95", 0) > TARGETS["latency_blocks"]
    return floor["p95_s"] > TARGETS["latency_p95_s"]


def _verdict(ok: bool, data: dict, n: str) -> str:
    if ok:
        return "**pass**"
    return "**FAIL** (chain-bound)" if _chain_bound(data, n) else "**FAIL**"


def _latency_verdicts(lat: dict) -> list[str]:
    """One plain line per configuration: pass or fail, with the figures and, for a failure, what limits it."""
    L = ["**Targets, in plain words** (p95 ≤ 1 s on an automining chain; at most one block of delay with block "
         "times):", ""]
    for kind, data in lat["chains"].items():
        for key in [k for k in data if k.startswith(("processes", "fleet"))]:
            v, n = data[key], key.split("_")[-1]
            floor = data.get(f"floor_direct_{n}")
            if data.get("block_time_s"):
                ok = v.get("blocks_p95", 99) <= TARGETS["latency_blocks"]
                fig = f"p50 {v['p50_s']} s / p95 {v['p95_s']} s, {v.get('blocks_p50')} / {v.get('blocks_p95')} blocks"
            else:
                ok = v["p95_s"] <= TARGETS["latency_p95_s"]
                fig = f"p50 {v['p50_s']} s / p95 {v['p95_s']} s"
            line = f"* {data['label']}, {key.replace('_', ' ')}: {_verdict(ok, data, n)}, {fig}."
            if not ok and floor:
                limit = floor.get("blocks_p95") if data.get("block_time_s") else floor["p95_s"]
                if _chain_bound(data, n):
                    line += (f" The chain itself cannot do it: {n} transactions sent straight from the benchmark take "
                             f"p95 {floor['p95_s']} s" + (f" ({limit} blocks)" if data.get("block_time_s") else "")
                             + " to be mined on this chain (ganache mines one block per transaction, one at a time).")
                    twin = _automine_twin(lat, kind, key)
                    if twin:
                        line += f" On {twin}."
                else:
                    line += (f" The chain could: {n} direct sends reach p95 {floor['p95_s']} s; the rest is the "
                             "client (and the machine's load in this run).")
            L.append(line)
    return L + [""]


def _automine_twin(lat: dict, kind: str, key: str) -> str:
    """'anvil 1.7.1, automine, the same fleet of 100: **pass**, p95 0.4 s' for another automining chain."""
    for other, data in lat["chains"].items():
        v = data.get(key)
        if other != kind and not data.get("block_time_s") and v:
            ok = v["p95_s"] <= TARGETS["latency_p95_s"]
            return (f"{data['label']}, the same {key.replace('_', ' ')} gets {'**pass**' if ok else '**FAIL**'}: "
                    f"p50 {v['p50_s']} s / p95 {v['p95_s']} s")
    return ""


def _latency_fixes() -> list[str]:
    """Root causes found in issue 6 and the before/after measurement (bench/latency_fixes.json)."""
    import json

    path = ROOT / "bench" / "latency_fixes.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    L = ["### Latency: causes and fixes", "", *data["summary"], ""]
    L += _before_after(data, "unanswered requests before / after",
                       lambda b, a: f"{b.get('unanswered_requests', 0)} / {a.get('unanswered_requests', 0)}")
    for more in data.get("followups", []):
        L += [f"#### {more['title']}", "", *more["summary"], ""]
        L += _before_after(more, "fleet CPU per bid before / after, ms",
                           lambda b, a: f"{b['fleet_cpu_ms_per_bid_tx']} / **{a['fleet_cpu_ms_per_bid_tx']}**")
    return L


def _before_after(data: dict, last_header: str, last_cell) -> list[str]:
    """One before/after latency table (bench/latency_fixes.json), with its notes."""
    L = [f"Before/after, measured {data['measured']['date']} (load average {data['measured']['load']}): "
         f"{data['measured']['method']}", "",
         "| chain | configuration | before p50 / p95 s | after p50 / p95 s | before / after blocks p95 | "
         f"{last_header} |", "|---|---|---:|---:|---:|---:|"]
    for row in data["rows"]:
        b, a = row["before"], row["after"]
        blocks = f"{b.get('blocks_p95', '')} / {a.get('blocks_p95', '')}" if row.get("block_time") else ""
        L.append(f"| {row['chain']} | {row['config']} | {b.get('p50_s', '?')} / {b.get('p95_s', '?')} | "
                 f"**{a.get('p50_s', '?')} / {a.get('p95_s', '?')}** | {blocks} | {last_cell(b, a)} |")
    return L + ["", *data.get("notes", []), ""]


def _throughput_section(tp: dict) -> list[str]:
    L = ["## 3. Throughput", "",
         "200 consumers (one `consumer fleet -n 200` process, each agent its own account, "
         f"{tp['offers_per_consumer']} bids in one transaction) hear one request. Rate = bids / (time from the "
         "request's block to the block holding the last bid). Afterwards every bid is accounted for: 200 distinct "
         "bidders with all their bids in `BidsSubmitted` logs, the request's `bidCount`, and the book's total watts "
         "equal to what was offered. Baseline in the same run: the same 200 transactions sent straight from the "
         "benchmark, pre-built, without waiting for receipts.", "",
         "| chain | who sends | bids | span s | bids/s | latency p50 / p95 s | all accounted |",
         "|---|---|---:|---:|---:|---:|---|"]
    for kind, d in tp["chains"].items():
        f, b = d["fleet"], d["baseline_direct"]
        L.append(f"| {d['label']} | consumer fleet of {d['consumers']} | {d['bids']} | {f['span_s']} | "
                 f"**{f['bids_per_s']}** | {f['latency']['p50_s']} / {f['latency']['p95_s']} | "
                 f"{'yes' if f['all_accounted'] else '**NO**'} ({f['bid_count']} bids, {f['bidders']} bidders) |")
        L.append(f"| {d['label']} | *baseline: direct sends* | {d['bids']} | {b['span_s']} | {b['bids_per_s']} | | "
                 f"{'yes' if b['all_accounted'] else '**NO**'} |")
    L += ["", "On a public chain the block, not the client, is the limit: see the last section.", ""]
    return L


def _footprint_section(fp: dict) -> list[str]:
    d, b, anchors = fp["daemon"], fp["baselines"], fp["seed_anchors"]
    start_ok = d["cold_start_s"] < b["seed_import"]["wall_s"]
    peak_ok = d["bidding_peak_mib"] <= TARGETS["peak_mib"]
    L = ["## 4. Consumer footprint", "",
         f"Median of {fp['repeat']} runs, interleaved with the baselines so that each round sees the same machine "
         "load. Cold start: from launching `python -m demand_response consumer run` (against a local anvil with the "
         "contract deployed) to its \"listening for requests\" log line. Peak RSS is the kernel's high-water mark "
         "(`VmHWM`): after 3 s idle, and after the daemon has heard a request and its bid is mined. The baselines "
         "are whole processes (`python -c ...`); their peak is their own `VmHWM`.", "",
         "| process | start s (this run) | peak RSS MiB (this run) | anchors.md | target | |",
         "|---|---:|---:|---|---|---|",
         f"| consumer daemon, idle | {d['cold_start_s']:.2f} | {d['idle_peak_mib']:.1f} | | | |",
         f"| consumer daemon, after bidding | | **{d['bidding_peak_mib']:.1f}** | | ≤ {TARGETS['peak_mib']} MiB | "
         f"{_ok(peak_ok)} |",
         f"| seed consumer import: `{b['seed_import']['command']}` | {b['seed_import']['wall_s']:.2f} | "
         f"{b['seed_import']['peak_mib']:.1f} | {anchors['seed_import']['wall_s']} s, {anchors['seed_import']['peak_mib']} MiB | "
         f"daemon starts faster | {_ok(start_ok)} ({fp['start_vs_seed_import']}×) |",
         f"| `{b['web3_import']['command']}` | {b['web3_import']['wall_s']:.2f} | {b['web3_import']['peak_mib']:.1f} | "
         f"{anchors['web3_import']['wall_s']} s, {anchors['web3_import']['peak_mib']} MiB | | |",
         f"| `{b['daemon_imports']['command']}` | {b['daemon_imports']['wall_s']:.2f} | "
         f"{b['daemon_imports']['peak_mib']:.1f} | | | |",
         f"| `python -c \"pass\"` | {b['python_bare']['wall_s']:.2f} | {b['python_bare']['peak_mib']:.1f} | | | |",
         "", f"The daemon used {d['cpu_s']} s of CPU from launch to the end of its first bid (median).",
         "The daemon's whole start, connection and contract checks included, is compared with the seed consumer's "
         "*import alone*; the ratio is what carries over between machines, since the absolute times here include "
         "the load of other jobs on the machine (see the method notes).", "",
         "![footprint](img/perf-footprint.png)", ""]
    return L


def _gridsim_section(gs: dict) -> list[str]:
    L = ["## 5. gridsim", "",
         f"`bench/bench_gridsim.py`: median of {gs['results'][0]['repeat']} runs of the vectorised bid generation "
         "(`fleet_bids`: flexibility, slicing, pricing, sorting) for a fixed population, plus creating the population "
         "and converting the bids to Python lists.", "",
         "| households | bid generation s | households/s | population s | to lists s | end to end s | bids (steps) |",
         "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in gs["results"]:
        L.append(f"| {r['households']:,} | {r['bids_s']:.4f} | **{r['households_per_s']:,}** | {r['population_s']:.4f} | "
                 f"{r['to_lists_s']:.4f} | {r['end_to_end_s']:.3f} | {r['steps']:,} |")
    big = [r for r in gs["results"] if r["households"] == 100_000]
    if big:
        r = big[0]
        L += ["", f"100,000 households: bids in {r['bids_s']:.3f} s, end to end {r['end_to_end_s']:.3f} s. "
              f"Target 100,000 in ≤ 1 s: {_ok(r['bids_s'] <= TARGETS['gridsim_100k_s'])} (bid generation), "
              f"{_ok(r['end_to_end_s'] <= TARGETS['gridsim_100k_s'])} (end to end)."]
    L += ["", "![gridsim](img/perf-gridsim.png)", ""]
    return L


def _mv_section(mv: dict) -> list[str]:
    acc, tm = mv["accuracy"], mv["timing"]
    sizes = [k for k in ("1", "10", "100", "1000") if k in next(iter(acc["methods"].values()))]
    L = ["## 7. Measurement and verification (baselines)", "",
         f"`bench/bench_mv.py`: {acc['homes']:,} gridsim homes, {acc['days']} days of "
         f"{acc['interval_s'] // 60}-min data, {acc['placebo_days']} placebo event days ({acc['window']}, no event: "
         "any difference is baseline error). Bias % = mean error / mean load; precision = relative RMSE %. "
         "Portfolios: errors summed over disjoint groups first. docs/mv.md discusses the figures.", "",
         "| method | " + " | ".join(f"{int(k):,} home{'s' if k != '1' else ''}: bias / rRMSE %" for k in sizes)
         + " | single home median abs % | last event: estimated vs true kWh |",
         "|---|" + "---:|" * (len(sizes) + 2)]
    for name, row in acc["methods"].items():
        L.append(f"| {name} | " + " | ".join(f"{row[k]['bias_pct']} / **{row[k]['rel_rmse_pct']}**" for k in sizes)
                 + f" | {row['single_median_abs_pct']} | {row['event']['estimated_kwh']} vs {row['event']['true_kwh']} |")
    L += ["", f"Time to baseline {tm['meters']:,} meters for one event (pure Python, one core): "
          + ", ".join(f"{m} {s} s" for m, s in tm["baseline_s"].items())
          + f"; reading them into memory {tm['load_series_s']} s.", ""]
    return L


def _compile_section(c: dict) -> list[str]:
    s = c["solcjs"]
    native = c.get("native")
    L = ["## 6. Compile time", "",
         f"`demand_response.compiler.compile_project` of `{c['contract']}` into a temporary directory (solc "
         f"{c['settings']['solc']}, {c['settings']['evm']}, optimizer {c['settings']['optimizer_runs']} runs, via IR), "
         "brownie and py-solc-x already imported.", "",
         "| compiler | compile s | |", "|---|---:|---|",
         f"| solcjs {s['version']} through `{s['adapter']}` (WebAssembly under Node) | **{s['compile_s']}** | "
         f"runs: {', '.join(str(x) for x in s['runs_s'])}; `--version` alone takes {s['version_call_s']} s |",
         f"| native solc {c['settings']['solc']} | {native['compile_s'] if native else 'n/a'} | "
         f"{('speed-up ' + str(c['speedup_native']) + '×') if native else 'no native binary on this machine (downloads are blocked); a prebuilt one in ~/.solcx or SOLC_BINARY is picked up and timed'} |",
         "", f"`dr compile` resolves to: {c['resolved_by_default']}. Consumers never compile: the artifacts are committed.",
         ""]
    return L


def _public_section(g: dict | None) -> list[str]:
    if not g:
        return []
    ops = g["ops"]
    per_bid = {"1-bid transaction": ops["bid1_median"], "5-bid batch, per bid": ops["bid5_median_per_bid"],
               "64-bid batch, per bid": ops["bid64_per_bid"]}
    worst_settle = _worst_settlement(g)
    eth = lambda gas, gwei: gas * gwei * 1e-9  # noqa: E731
    L = ["## Scaling to a public network", "",
         f"Cost = gas × gas price. Assumptions: {DEFAULT_GWEI} gwei (also shown at "
         f"{', '.join(str(x) for x in GAS_PRICES_GWEI if x != DEFAULT_GWEI)} gwei), {USD_PER_ETH:,} USD/ETH, "
         f"{BLOCK_GAS / 1e6:.0f}M gas per block, one block every {SLOT_S} s. Gas figures from section 1; the price "
         "assumptions are stated, not measured: scale linearly for today's prices (an L2 is often well under 1 gwei).",
         "", "| item | gas | " + " | ".join(f"ETH at {p} gwei" for p in GAS_PRICES_GWEI)
         + f" | USD at {DEFAULT_GWEI} gwei |", "|---|---:|" + "---:|" * len(GAS_PRICES_GWEI) + "---:|"]
    items = [("seed: one bid", g["seed_ops"]["bid1_median"])] + list(per_bid.items()) + [
        ("claim, per bid (64 in one claim)", ops["claim64_per_bid"]),
        ("withdraw", ops["withdraw"]),
        ("request (utility, once per event)", ops["request"]),
        ("settlement, any number of bids (worst measured)", worst_settle),
        ("seed: settlement of 100 bids", g["seed_settle"]["100"] if "100" in g["seed_settle"] else g["seed_settle"][100]),
    ]
    for name, gas in items:
        L.append(f"| {name} | {gas:,} | " + " | ".join(f"{eth(gas, p):.6f}" for p in GAS_PRICES_GWEI)
                 + f" | {eth(gas, DEFAULT_GWEI) * USD_PER_ETH:,.2f} |")
    one = ops["bid1_median"] + ops["claim1"] + ops["withdraw"]
    L += ["", f"A household that bids once, wins and withdraws spends {one:,} gas "
          f"({eth(one, DEFAULT_GWEI) * USD_PER_ETH:,.2f} USD at {DEFAULT_GWEI} gwei); a losing bid costs only the bid. "
          "A payout must exceed that to be worth it, which favours an L2 or a sidechain for residential bids, or "
          "aggregators bidding for many households in one batch.", "",
          "**How many households one event can serve.** Settlement does not limit it (its gas is flat). Placing the "
          "bids does: a block holds 30M / per-bid gas bids, and the bidding window spans window / 12 s blocks, of "
          "which the market gets some share.", "",
          "| bids sent as | bids per full 30M block | households per event, 15-min window, 10 % of block space | "
          "same, 1-hour window, 10 % |", "|---|---:|---:|---:|"]
    for name, gas in per_bid.items():
        per_block = BLOCK_GAS // gas
        h15 = int(per_block * (900 / SLOT_S) * 0.10)
        h60 = int(per_block * (3600 / SLOT_S) * 0.10)
        L.append(f"| {name} | {per_block:,} | {h15:,} | {h60:,} |")
    seed_bid = g["seed_ops"]["bid1_median"]
    L += [f"| seed (1-bid txs, but settlement caps an event) | {BLOCK_GAS // seed_bid:,} | "
          f"≤ {g['seed_max_bids_per_block']} | ≤ {g['seed_max_bids_per_block']} |", "",
          "(With batches, \"households\" reads as bids: a household offering 5 slices places 5 bids.) "
          "Settlement itself stays under 1 % of a block whatever the count.", ""]
    return L


def render_doc(report: dict, images: list[str]) -> str:
    run = report.get("run", {})
    m = run.get("machine", {})
    g, lat, tp, fp, gs, c = (_sec(report, s) for s in ("gas", "latency", "throughput", "footprint", "gridsim", "compile"))
    cal = _sec(report, "calibration")
    L = ["# Performance", "",
         "<!-- Generated by bench/run.py from bench/report.json. Do not edit: change bench/render.py and re-run. -->", "",
         f"Measured {m.get('date', '?')} on `{m.get('host', '?')}`: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
         f"{m.get('memory_gib', '?')} GiB, {m.get('platform', '?')}, Python {m.get('python', '?')}. "
         f"Run: `{run.get('command', 'bench/run.py')}` ({run.get('mode', '?')} mode), {run.get('elapsed_s', '?')} s in all. "
         f"Load average {m.get('load_average_at_start', '?')} at the start and {m.get('load_average_at_end', '?')} at "
         "the end: the machine was shared with other jobs, so every timing below is paired with a baseline measured "
         "in the same run, and the ratios carry over better than the absolute seconds.", ""]
    if cal:
        L += [f"Machine calibration in this run: numpy sort of 1M floats {cal['numpy_sort_1m_s']} s, a 1M-step "
              f"Python loop {cal['python_loop_1m_s']} s.", ""]
    # Headline table.
    L += ["## Summary", "", "| what | seed / baseline | this project | target | |", "|---|---|---|---|---|"]
    if g:
        ops = g["ops"]
        L.append(f"| gas, 1-bid transaction | {g['seed_ops']['bid1_median']:,} | **{ops['bid1_median']:,}** | ≤ 65,000 | "
                 f"{_ok(ops['bid1_median'] <= 65_000)} |")
        L.append(f"| gas per bid, 5-bid batch | — | **{ops['bid5_median_per_bid']:,}** | ≤ 35,000 | "
                 f"{_ok(ops['bid5_median_per_bid'] <= 35_000)} |")
        big = g["settlement"][-1]
        L.append(f"| settlement gas at {big['n']:,} bids | does not fit (≈ 240 bids max) | **{big['gas']:,}** "
                 f"(max {g['max_settlement_gas']:,} over all n; worst case {_worst_settlement(g):,}) | "
                 "flat in n, or ≥ 10,000 bids | "
                 f"{_ok(g['largest_n_settled_in_one_block'] >= 10_000)} |")
        L.append(f"| largest event settled in one 30M block | ≈ {g['seed_max_bids_per_block']} bids | "
                 f"**{g['largest_n_settled_in_one_block']:,}** bids (largest measured; not limited by n) | ≥ 10,000 | "
                 f"{_ok(g['largest_n_settled_in_one_block'] >= 10_000)} |")
    if lat:
        for kind, data in lat["chains"].items():
            seed_key = next((k for k in data if k.startswith("seed_style")), None)
            for key in [k for k in data if k.startswith(("processes", "fleet"))]:
                v = data[key]
                if data.get("block_time_s"):
                    ok = v.get("blocks_p95", v.get("blocks_max", 99)) <= 1
                    ours = f"p50 {v['p50_s']} s / p95 {v['p95_s']} s, {v.get('blocks_p95', v.get('blocks_max'))} blocks at p95"
                    tgt = "≤ 1 block"
                else:
                    ok = v["p95_s"] <= 1.0
                    ours = f"p50 {v['p50_s']} s / p95 {v['p95_s']} s"
                    tgt = "p95 ≤ 1 s"
                base = f"seed-style p95 {data[seed_key]['p95_s']} s" if seed_key else ""
                n = key.split("_")[-1]
                floor = data.get(f"floor_direct_{n}")
                if floor:
                    base += (f"; chain floor, {n} direct sends: p95 {floor['p95_s']} s"
                             + (f" ({floor.get('blocks_p95')} blocks)" if data.get("block_time_s") else ""))
                L.append(f"| latency, {key.replace('_', ' ')}, {data['label']} | {base} | {ours} | {tgt} | "
                         f"{_verdict(ok, data, n)} |")
    if tp:
        for kind, d in tp["chains"].items():
            L.append(f"| throughput, 200 consumers, {d['label']} | direct sends {d['baseline_direct']['bids_per_s']} bids/s | "
                     f"**{d['fleet']['bids_per_s']} bids/s**, all accounted: {'yes' if d['fleet']['all_accounted'] else 'NO'} | "
                     f"every bid accounted | {_ok(d['fleet']['all_accounted'])} |")
    if fp:
        d, b = fp["daemon"], fp["baselines"]
        L.append(f"| consumer cold start to listening | seed import alone {b['seed_import']['wall_s']:.2f} s (same run) | "
                 f"**{d['cold_start_s']:.2f} s** ({fp['start_vs_seed_import']}×) | faster than the seed import | "
                 f"{_ok(d['cold_start_s'] < b['seed_import']['wall_s'])} |")
        L.append(f"| consumer peak RSS (idle / bidding) | seed import {b['seed_import']['peak_mib']:.1f} MiB | "
                 f"**{d['idle_peak_mib']:.1f} / {d['bidding_peak_mib']:.1f} MiB** | ≤ 80 MiB | "
                 f"{_ok(d['bidding_peak_mib'] <= 80)} |")
    if gs:
        big = [r for r in gs["results"] if r["households"] == 100_000]
        if big:
            L.append(f"| gridsim, 100,000 households | | **{big[0]['bids_s']:.3f} s** "
                     f"({big[0]['households_per_s']:,}/s) | ≤ 1 s | {_ok(big[0]['bids_s'] <= 1.0)} |")
    if c:
        L.append(f"| compile (solcjs via adapter) | native: {c['native']['compile_s'] if c.get('native') else 'n/a'} | "
                 f"**{c['solcjs']['compile_s']} s** | | |")
    econ = _sec(report, "economics")
    if econ:
        import bench_economics

        L += bench_economics.summary_rows(econ)
    L.append("")
    errors = {k: v["error"] for k, v in report.get("sections", {}).items() if "error" in v}
    if errors:
        L += ["**Sections that failed in this run:** " + "; ".join(f"{k}: {v}" for k, v in errors.items()), ""]
    for sec, fn in ((g, _gas_section), (lat, _latency_section), (tp, _throughput_section), (fp, _footprint_section),
                    (gs, _gridsim_section), (c, _compile_section), (_sec(report, "mv"), _mv_section)):
        if sec:
            L += fn(sec)
    if econ:
        L += bench_economics.section(econ, "7")
    L += _public_section(g)
    L += ["## Method notes", "",
          "* Chains are started fresh by each benchmark on free ports (`demand_response.devchain`): ganache 7.9.2 and "
          "anvil 1.7.1 from `node_modules`, shanghai, 30M block gas limit, node-unlocked dev accounts.",
          "* Gas comes from receipts; it is exact and machine-independent. Everything measured in seconds depends on "
          "the machine and on what else runs on it. These runs shared 2 CPUs with other engineers' test suites, so "
          "each timing has its baseline from the same run: the seed-style consumer and a bare transaction for "
          "latency, direct sends for throughput, the seed's import and `from web3 import Web3` for start-up, and the "
          "calibration loops above.",
          "* Latency and throughput use the consumer daemon's real command line; the consumers use the chain's "
          "unlocked accounts (the node signs), which costs the node a little more than local signing with keystores.",
          "* Percentiles are nearest-rank over all consumers × requests of a configuration.",
          "* Per-section wall times: " + ", ".join(f"{k} {v.get('elapsed_s', '?')} s" for k, v in
                                                     report.get("sections", {}).items()) + ".", "",
          "## Reproduce", "", "```sh",
          "make bench                                   # = .venv/bin/python bench/run.py (a few minutes)",
          ".venv/bin/python bench/run.py --full         # + 100,000 bids, more rounds, ganache throughput",
          ".venv/bin/python bench/run.py --only gas,footprint   # some sections; the rest of report.json is kept",
          ".venv/bin/python bench/run.py --render-only  # re-render this page and the plots from report.json",
          "```", "",
          "Each benchmark also runs alone (`bench/bench_gas.py`, `bench_reaction.py`, `bench_throughput.py`, "
          "`bench_footprint.py`, `bench_compile.py`, `bench_gridsim.py`, `bench_economics.py`) and writes its own JSON. Raw numbers: "
          "`bench/report.json`. Exact gas is also pinned by the test suite (`tests/contract/test_gas.py`).", ""]
    return "\n".join(L)


def render_all(report: dict, log=print) -> None:
    images = _plots(report, log)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(render_doc(report, images), encoding="utf-8")
    os.replace(tmp, DOC)
    log(f"  wrote {DOC.relative_to(ROOT)}")
