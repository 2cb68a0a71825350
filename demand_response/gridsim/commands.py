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
                     max_price_wei_per_kwh: int | None = None, currency: str | None = None) -> dict[str, Any]:
    """``dr simulate``: generate bids for a seeded population and write them to ``out``
    (priced in ETH, or in ``currency``, a USD stablecoin's symbol: 1 token = 1 USD).

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
        write_bids(out, bids, currency=currency, usd_per_eth=usd_per_eth)
        w, p, k = bids.watts, bids.price, bids.n_steps
        valid = p > 0
    else:
        write_bids(out, bids.curve(household), currency=currency, usd_per_eth=usd_per_eth)
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
        "currency": currency or "ETH",
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


def feeder_command(seed: int = 0, outdoor_max_c: float = 38.0, day_start: int | None = None,
                   plot: str | None = None, usd_per_eth: float = DEFAULT_USD_PER_ETH,
                   utc_offset_hours: float = 0.0) -> dict[str, Any]:
    """``dr simulate --feeder``: the utility's view of one simulated day, end to end.

    Finds the feeder's overload window and the suggested request, lets the feeder's own
    households bid for it (cheapest first, as the market clears), and re-runs the day with
    the accepted reductions delivered. Returns peak loading before and after; ``plot``
    draws both curves.
    """
    from .feeder import clear_bids, feeder_delivered, suggest_request

    suggestion = suggest_request(day_start, seed=seed, outdoor_max_c=outdoor_max_c,
                                 utc_offset_hours=utc_offset_hours)
    summary: dict[str, Any] = {
        key: suggestion[key] for key in (
            "network", "n_houses", "trafo_sn_kva", "threshold_pct", "peak_loading_pct", "overloaded",
            "target_watts", "event_start", "event_end")
    }
    if not suggestion["overloaded"]:
        return summary
    req = Request(suggestion["event_start"], suggestion["event_end"], outdoor_max_c=float(outdoor_max_c),
                  utc_offset_hours=float(utc_offset_hours))
    bids = fleet_bids(make_population(int(suggestion["n_houses"]), int(seed)), req, usd_per_eth=usd_per_eth)
    accepted, clearing = clear_bids(bids, int(suggestion["target_watts"]))
    by_house = {int(h): int(w) for h, w in zip(bids.index.tolist(), accepted.tolist()) if w > 0}
    delivered = feeder_delivered(suggestion, by_house, usd_per_eth=usd_per_eth)
    summary.update(
        offered_watts=int(bids.watts.sum()), accepted_watts=int(accepted.sum()), winners=len(by_house),
        clearing_price_wei_per_kwh=int(clearing), delivered_watts=delivered["delivered_w"],
        peak_before_pct=delivered["peak_before_pct"], peak_after_pct=delivered["peak_after_pct"], plot=None,
    )
    if plot:
        from .plot import plot_feeder

        summary["plot"] = plot_feeder(delivered, plot, threshold_pct=suggestion["threshold_pct"],
                                      window=(suggestion["event_start"], suggestion["event_end"]),
                                      utc_offset_hours=utc_offset_hours)
    return summary
