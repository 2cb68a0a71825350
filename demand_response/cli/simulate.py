"""``dr simulate``: household bids from the gridsim simulation, or the utility's feeder day."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ._common import UserError



def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr simulate``."""
    p = commands.add_parser(
        "simulate", help="generate bids with the household simulation (gridsim)",
        description="Simulate households on a hot day and write the bids they would offer for an event "
                    "(bids.json format), or with --feeder the utility's view of a feeder day. Prints a "
                    "summary; --json prints the figures for machines.")
    p.add_argument("--households", type=int, default=1, metavar="N",
                   help="households in the simulated population (default 1)")
    p.add_argument("--household", type=int, default=0, metavar="I",
                   help="which household's bids to write, 0 to N-1 (default 0; see --fleet)")
    p.add_argument("--seed", type=int, default=0, help="population seed: the same seed gives the same households")
    p.add_argument("--event-start", type=int, metavar="UNIX",
                   help="event start, unix seconds (default an hour from now)")
    p.add_argument("--event-end", type=int, metavar="UNIX", help="event end, unix seconds (default start + 1 h)")
    p.add_argument("--out", default="database/bids.json", help="bids file to write (default database/bids.json)")
    p.add_argument("--fleet", action="store_true", help="write every household (fleet format)")
    p.add_argument("--plot", metavar="PNG",
                   help="draw the household before/after and its bid curve (with --feeder: feeder loading)")
    p.add_argument("--outdoor-max-c", type=float,
                   help="the day's highest outdoor temperature, deg C (default 33; 38 with --feeder)")
    p.add_argument("--feeder", action="store_true",
                   help="utility view: overload window, suggested request, bids, delivered feeder loading")
    p.add_argument("--currency", metavar="SYMBOL",
                   help="price the bids in a USD stablecoin (e.g. TUSD, USDC; 1 token = 1 USD) for a market that "
                        "settles in it, instead of ETH (default ETH, at the simulation's 3,000 USD/ETH)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    p.set_defaults(func=run)


def load_gridsim() -> Any:
    """``demand_response.gridsim``, or a one-line error naming the extra to install."""
    try:
        from .. import gridsim
    except Exception as exc:
        raise UserError(f"this needs demand_response.gridsim ({type(exc).__name__}: {exc}); "
                        "install the 'sim' extra: pip install '.[sim]'") from None
    return gridsim


def _needs_grid(exc: ImportError) -> UserError:
    return UserError(f"the feeder simulation needs pandapower ({exc}); install the 'grid' extra: "
                     "pip install '.[grid]'")


def feeder_suggestion(seed: int, outdoor_max_c: float) -> dict:
    """The request the simulated feeder day suggests (``dr utility request --from-sim``)."""
    try:
        return load_gridsim().suggest_request(seed=seed, outdoor_max_c=outdoor_max_c, include_profile=False)
    except ImportError as exc:
        raise _needs_grid(exc) from None


def run(args: argparse.Namespace) -> int:
    """Simulate, then print a summary (or JSON)."""
    gridsim = load_gridsim()
    progress = sys.stderr if args.json else sys.stdout
    if args.feeder:
        print("Simulating the feeder day (power flow every 15 min)…", file=progress, flush=True)
        try:
            summary = gridsim.feeder_command(seed=args.seed, plot=args.plot,
                                             outdoor_max_c=38.0 if args.outdoor_max_c is None else args.outdoor_max_c)
        except ImportError as exc:
            raise _needs_grid(exc) from None
        print(json.dumps(summary, indent=2) if args.json else feeder_text(summary))
        return 0
    if args.households < 1:
        raise UserError("--households must be at least 1")
    if not 0 <= args.household < args.households:
        raise UserError(f"--household must be 0 to {args.households - 1} (there are {args.households} households)")
    start = args.event_start or int(time.time()) + 3600
    end = args.event_end or start + 3600
    if end <= start:
        raise UserError("--event-end must be after --event-start")
    currency = _currency(args.currency)
    summary = gridsim.simulate_command(
        households=args.households, seed=args.seed, event_start=start, event_end=end, out=args.out,
        fleet=args.fleet, plot=args.plot, household=args.household,
        outdoor_max_c=33.0 if args.outdoor_max_c is None else args.outdoor_max_c, currency=currency,
    )
    print(json.dumps(summary, indent=2) if args.json else bids_text(summary))
    return 0


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _currency(symbol: str | None) -> str | None:
    """``--currency``: None for ETH (the default), else the stablecoin's symbol as given."""
    if symbol is None or symbol.strip().upper() == "ETH":
        return None
    text = symbol.strip()
    if not text.isalnum() or len(text) > 11:
        raise UserError(f"--currency {symbol!r} is not a token symbol (e.g. TUSD or USDC)")
    return text


def _price(wei: int | None, currency: str | None = None, usd_per_eth: float = 3000.0) -> str:
    from ..units import eth

    if wei is None:
        return "-"
    if currency not in (None, "ETH"):  # a USD stablecoin: the curves' wei back in $/kWh
        return f"{wei * usd_per_eth / 10**18:.4f} {currency}/kWh"
    return f"{eth(wei)} ETH/kWh"


def bids_text(s: dict[str, Any]) -> str:
    """The household (or fleet) simulation's summary for people."""
    who = (f"{s['households']} households" if s["mode"] == "fleet"
           else f"household {s['household']} of {s['households']}")
    hours = (s["event_end"] - s["event_start"]) / 3600
    lines = [
        f"Wrote {s['n_bids']} bids of {who} (seed {s['seed']}) to {s['out']}",
        f"Event {_utc(s['event_start'])}–{time.strftime('%H:%M', time.gmtime(s['event_end']))} UTC "
        f"({hours:g} h), outdoor peak {s['outdoor_max_c']:g} °C",
    ]
    if s["n_bids"]:
        lines.append(f"Offered {s['offered_watts'] / 1000:.3f} kW from {s['households_offering']} household(s) "
                     f"at {_price(s['min_price_wei_per_kwh'], s.get('currency'), s['usd_per_eth'])} to "
                     f"{_price(s['max_price_wei_per_kwh'], s.get('currency'), s['usd_per_eth'])}")
    else:
        lines.append("No household has anything to shed in that window: no bids")
    if s.get("plot"):
        lines.append(f"Plot: {s['plot']}")
    return "\n".join(lines)


def feeder_text(s: dict[str, Any]) -> str:
    """The feeder day's summary for people."""
    head = (f"Feeder {s['network']} ({s['n_houses']} houses, {s['trafo_sn_kva']:g} kVA transformer) peaks at "
            f"{s['peak_loading_pct']:.1f} % of its rating (threshold {s['threshold_pct']:g} %)")
    if not s["overloaded"]:
        return head + "\nNo overload: no request needed"
    lines = [
        head,
        f"Suggested request: {s['target_watts'] / 1000:.3f} kW from {_utc(s['event_start'])} to "
        f"{time.strftime('%H:%M', time.gmtime(s['event_end']))} UTC",
        f"Households offered {s['offered_watts'] / 1000:.3f} kW; {s['winners']} accepted for "
        f"{s['accepted_watts'] / 1000:.3f} kW at {_price(s['clearing_price_wei_per_kwh'])}",
        f"Delivered {s['delivered_watts'] / 1000:.3f} kW: peak {s['peak_before_pct']:.1f} % -> "
        f"{s['peak_after_pct']:.1f} %",
    ]
    if s.get("plot"):
        lines.append(f"Plot: {s['plot']}")
    return "\n".join(lines)
