"""CLI-ready entry points (the ``dr`` CLI prints what these return; they print nothing)."""

from __future__ import annotations

import time
from typing import Any

from .bids import fleet_bids, write_bids
from .population import make_population
from .weather import DEFAULT_USD_PER_ETH, Request


def simulate_command(households: int, seed: int, event_start: int, event_end: int, out: str, fleet: bool,
                     plot: str | None, household: int = 0, usd_per_eth: float = DEFAULT_USD_PER_ETH,
                     outdoor_max_c: float = 33.0, utc_offset_hours: float = 0.0,
                     max_price_wei_per_kwh: int | None = None) -> dict[str, Any]:
    """``dr simulate``: generate bids for a seeded population and write them to ``out``.

    ``fleet=True`` writes every household (fleet format), otherwise only
    ``household``.  ``plot`` (a .png path) draws ``household``'s response.
    Returns a JSON-ready summary.
    """
    if households < 1:
        raise ValueError("households must be >= 1")
    if not 0 <= household < households:
        raise ValueError(f"household must be within [0, {households})")
    t0 = time.perf_counter()
    req = Request(int(event_start), int(event_end), max_price_wei_per_kwh=max_price_wei_per_kwh,
                  outdoor_max_c=float(outdoor_max_c), utc_offset_hours=float(utc_offset_hours))
    pop = make_population(int(households), int(seed))
    bids = fleet_bids(pop, req, usd_per_eth=usd_per_eth)
    t_bids = time.perf_counter() - t0
    if fleet:
        write_bids(out, bids)
        w, p, k = bids.watts, bids.price, bids.n_steps
        valid = p > 0
    else:
        write_bids(out, bids.curve(household))
        w, p, k = bids.watts[household:household + 1], bids.price[household:household + 1], \
            bids.n_steps[household:household + 1]
        valid = p > 0
    summary: dict[str, Any] = {
        "out": out,
        "mode": "fleet" if fleet else "household",
        "households": int(households),
        "household": None if fleet else int(household),
        "seed": int(seed),
        "event_start": int(event_start),
        "event_end": int(event_end),
        "outdoor_max_c": float(outdoor_max_c),
        "usd_per_eth": float(usd_per_eth),
        "n_bids": int(k.sum()),
        "households_offering": int((k > 0).sum()),
        "offered_watts": int(w.sum()),
        "min_price_wei_per_kwh": int(p[valid].min()) if valid.any() else None,
        "max_price_wei_per_kwh": int(p[valid].max()) if valid.any() else None,
        "bid_generation_s": round(t_bids, 4),
        "plot": None,
    }
    if plot:
        from .plot import plot_household

        summary["plot"] = plot_household(pop, req, household, plot, usd_per_eth=usd_per_eth)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 4)
    return summary
