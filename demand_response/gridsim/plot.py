"""Plot one household's response (matplotlib imported lazily; Agg canvas, pyplot untouched)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from .bids import fleet_bids
from .delivery import simulate_delivery
from .devices import DEVICE_NAMES
from .population import Population
from .weather import DEFAULT_USD_PER_ETH, Request, as_request, wei_to_usd

_COLORS = {1: "tab:blue", 2: "tab:orange", 3: "tab:green", 4: "tab:purple"}


def plot_household(pop: Population, request: "Request | Mapping[str, Any]", index: int,
                   path: "str | os.PathLike[str]", *, usd_per_eth: float = DEFAULT_USD_PER_ETH,
                   dpi: int = 110) -> str:
    """Draw household ``index``'s load before/after a full acceptance of its bid, and its bid curve.

    Panels: net load (baseline vs. with the whole offer accepted, event window
    shaded, rebound visible after it); indoor air temperature vs. the comfort
    limit (and tank temperature when there is a water heater); the bid curve
    (cumulative watts vs. price, coloured by device).  Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    req = as_request(request)
    bids = fleet_bids(pop.subset([index]), req, usd_per_eth=usd_per_eth)
    offered = int(bids.watts.sum())
    dv = simulate_delivery(pop, req, index, offered, usd_per_eth=usd_per_eth)
    hours = (dv.times - req.event_start) / 3600.0
    edges = np.append(hours, hours[-1] + dv.dts[-1] / 3600.0)
    win_h = req.duration_s / 3600.0

    fig = Figure(figsize=(8.5, 9.5))
    FigureCanvasAgg(fig)  # Agg canvas without touching pyplot's global backend
    axes = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 2, 3]})
    ax = axes[0]
    ax.axvspan(0.0, win_h, color="gold", alpha=0.25, label="event window")
    ax.step(edges, np.append(dv.baseline_w, dv.baseline_w[-1]) / 1000.0, where="post", color="k", label="baseline")
    ax.step(edges, np.append(dv.actual_w, dv.actual_w[-1]) / 1000.0, where="post", color="tab:red",
            label=f"offer fully accepted ({offered} W)")
    ax.set_ylabel("net load (kW)")
    ax.set_title(f"household {int(pop.index[index])}: delivered {dv.physical_w:.0f} W average over the window")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    ax.axvspan(0.0, win_h, color="gold", alpha=0.25)
    if dv.hvac_mode != 0:
        ax.plot(edges, dv.indoor_c, color="tab:blue", label="indoor air")
        ax.axhline(dv.comfort_limit_c, color="tab:blue", ls="--", lw=1, label="comfort limit")
        ax.margins(y=0.2)
    ax.set_ylabel("indoor (deg C)")
    ax.grid(alpha=0.3)
    if np.isfinite(dv.tank_c).any():
        ax2 = ax.twinx()
        ax2.plot(edges, dv.tank_c, color="tab:orange", label="tank")
        ax2.axhline(dv.tank_min_c, color="tab:orange", ls="--", lw=1, label="tank minimum")
        ax2.set_ylabel("tank (deg C)")
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("hours from event start")

    ax = axes[2]
    k = int(bids.n_steps[0])
    cum = 0
    for j in range(k):
        w, p, dev = int(bids.watts[0, j]), int(bids.price[0, j]), int(bids.device[0, j])
        usd = float(wei_to_usd(p, usd_per_eth))
        ax.bar(cum, usd, width=w, align="edge", color=_COLORS[dev], edgecolor="k", lw=0.5,
               label=DEVICE_NAMES[dev])
        cum += w
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=8)
    if req.max_price_wei_per_kwh:
        ax.axhline(float(wei_to_usd(req.max_price_wei_per_kwh, usd_per_eth)), color="r", ls=":", label="cap")
    ax.set_xlabel("cumulative reduction offered (W)")
    ax.set_ylabel(f"price (\\$/kWh at {usd_per_eth:g} \\$/ETH)")
    ax.set_title("bid curve (cheapest first)")
    ax.set_xlim(0, max(cum, 1))
    ax.grid(alpha=0.3)
    sec = ax.secondary_yaxis("right", functions=(lambda u: u / usd_per_eth * 1e5, lambda v: v * usd_per_eth / 1e5))
    sec.set_ylabel("1e13 wei/kWh")

    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_feeder(result: Mapping[str, Any], path: "str | os.PathLike[str]", *, threshold_pct: float | None = None,
                window: tuple[int, int] | None = None, utc_offset_hours: float = 0.0, dpi: int = 110) -> str:
    """Plot transformer loading over the day.

    ``result`` is the dict from :func:`~demand_response.gridsim.feeder.feeder_delivered`
    (before/after curves) or from :func:`~demand_response.gridsim.feeder.suggest_request`
    (one curve; its threshold and window are used by default).  Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = np.asarray(result["times"], dtype=float)
    hours = ((times + utc_offset_hours * 3600.0) % 86400.0) / 3600.0
    step_h = float(hours[1] - hours[0]) if hours.size > 1 else 0.25
    edges = np.append(hours, hours[-1] + step_h)
    fig = Figure(figsize=(8.5, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    thr = threshold_pct if threshold_pct is not None else result.get("threshold_pct", 100.0)
    if window is None and result.get("event_start") is not None:
        window = (int(result["event_start"]), int(result["event_end"]))
    if window is not None:
        w0 = ((window[0] + utc_offset_hours * 3600.0) % 86400.0) / 3600.0
        ax.axvspan(w0, w0 + (window[1] - window[0]) / 3600.0, color="gold", alpha=0.3, label="event window")
    if "loading_before_pct" in result:
        before = np.asarray(result["loading_before_pct"])
        after = np.asarray(result["loading_after_pct"])
        ax.step(edges, np.append(before, before[-1]), where="post", color="k", label="baseline")
        ax.step(edges, np.append(after, after[-1]), where="post", color="tab:red", label="with delivered DR")
    else:
        load = np.asarray(result["loading_pct"])
        ax.step(edges, np.append(load, load[-1]), where="post", color="k", label="baseline")
    ax.axhline(thr, color="r", ls="--", lw=1, label=f"threshold {thr:g} %")
    ax.set_xlim(0, 24)
    ax.set_xlabel("local hour")
    ax.set_ylabel("transformer loading (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
