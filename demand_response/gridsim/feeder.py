"""Utility side: load a pandapower low-voltage feeder with simulated households.

pandapower is imported lazily inside the functions (``pip install pandapower``),
so the rest of gridsim works without it.

One household is connected at each load of the network (load ``j`` gets
household ``j`` of the population), with its net baseline (non-flexible load +
HVAC + water heater + uncontrolled EV charging - PV) at a constant power factor.
A day is simulated in ``step_s`` steps (96 x 15 min by default) with a power
flow per step; the transformer loading drives the suggested request.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .bids import BidArrays
from .delivery import simulate_delivery
from .devices import baseline_components
from .population import Population, make_population
from .weather import DEFAULT_USD_PER_ETH, Request, as_request, local_midnight

#: Built-in pandapower networks usable by name.
NETWORKS = {
    "kerber_dorfnetz": "create_kerber_dorfnetz",  # 57 houses, 400 kVA
    "kerber_landnetz_kabel_1": "create_kerber_landnetz_kabel_1",  # 8 houses, 100 kVA
    "kerber_landnetz_kabel_2": "create_kerber_landnetz_kabel_2",  # 14 houses, 160 kVA
    "kerber_landnetz_freileitung_1": "create_kerber_landnetz_freileitung_1",
    "kerber_landnetz_freileitung_2": "create_kerber_landnetz_freileitung_2",
    "kerber_vorstadtnetz_kabel_1": "create_kerber_vorstadtnetz_kabel_1",  # 146 houses, 630 kVA
    "kerber_vorstadtnetz_kabel_2": "create_kerber_vorstadtnetz_kabel_2",
}
DEFAULT_NETWORK = "kerber_dorfnetz"
#: Default transformer for the (deliberately stressed) suggestion scenario: the
#: Kerber Dorfnetz ships with 400 kVA (7 kVA/house), which a realistic
#: diversified household peak (~2.5 kW) never overloads.
DEFAULT_SCENARIO_TRAFO = "0.16 MVA 10/0.4 kV"


def _pandapower() -> Any:
    try:
        import pandapower  # noqa: F401
        import pandapower.networks  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the feeder simulation needs pandapower: pip install 'pandapower>=2.13'") from exc
    return pandapower


def load_network(network: str = DEFAULT_NETWORK, trafo_std_type: str | None = None) -> Any:
    """Build a built-in pandapower network by short name (see :data:`NETWORKS`).

    ``trafo_std_type`` replaces the (first) transformer's standard type, e.g.
    ``"0.16 MVA 10/0.4 kV"``, to study an undersized transformer.
    """
    pp = _pandapower()
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose from {sorted(NETWORKS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(pp.networks, NETWORKS[network])()
    if trafo_std_type is not None:
        pp.change_std_type(net, int(net.trafo.index[0]), trafo_std_type, element="trafo")
    return net


@dataclass
class FeederDay:
    """Power-flow results of one simulated day on a feeder."""

    network: str
    trafo_sn_kva: float
    times: np.ndarray  # step start, unix s
    step_s: int
    house_w: np.ndarray  # (H, T) net household load applied to the loads, W
    loading_pct: np.ndarray  # (T,) transformer loading, %
    p_trafo_kw: np.ndarray  # (T,) active power through the transformer (HV side), kW
    min_vm_pu: np.ndarray  # (T,) lowest bus voltage
    elapsed_s: float

    @property
    def peak_loading_pct(self) -> float:
        """Highest transformer loading of the day."""
        return float(self.loading_pct.max())


def _run_powerflows(net: Any, house_w: np.ndarray, power_factor: float, steps: Sequence[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pp = _pandapower()
    n_loads = len(net.load)
    tan_phi = math.tan(math.acos(power_factor))
    cols = range(house_w.shape[1]) if steps is None else steps
    loading, p_kw, vmin = [], [], []
    load_idx = net.load.index
    first = True
    for k in cols:
        p_mw = house_w[:n_loads, k] / 1e6
        net.load.loc[load_idx, "p_mw"] = p_mw
        net.load.loc[load_idx, "q_mvar"] = p_mw * tan_phi
        # recycle: reuse the internal model, only bus P/Q change between steps
        pp.runpp(net, numba=False, recycle=None if first else dict(trafo=False, gen=False, bus_pq=True))
        first = False
        loading.append(float(net.res_trafo.loading_percent.iloc[0]))
        p_kw.append(float(net.res_trafo.p_hv_mw.iloc[0]) * 1000.0)
        vmin.append(float(net.res_bus.vm_pu.min()))
    return np.array(loading), np.array(p_kw), np.array(vmin)


def _day_request(day_start: int, outdoor_max_c: float, utc_offset_hours: float) -> Request:
    return Request(int(day_start), int(day_start) + 86400, outdoor_max_c=outdoor_max_c,
                   utc_offset_hours=utc_offset_hours)


def feeder_day(day_start: int, *, population: Population | None = None, seed: int = 0,
               network: str = DEFAULT_NETWORK, trafo_std_type: str | None = None, step_s: int = 900,
               outdoor_max_c: float = 35.0, utc_offset_hours: float = 0.0, power_factor: float = 0.95,
               reductions_w: np.ndarray | None = None,
               population_overrides: Mapping[str, Any] | None = None) -> FeederDay:
    """Simulate a day of the feeder: one power flow per ``step_s`` step from ``day_start``.

    ``reductions_w`` (H, T) is subtracted from the household baselines (e.g. a
    delivered DR response).  The population defaults to ``make_population(H, seed)``
    with H the number of loads in the network.
    """
    t0 = time.perf_counter()
    net = load_network(network, trafo_std_type)
    n_loads = len(net.load)
    pop = population if population is not None else make_population(n_loads, seed, **dict(population_overrides or {}))
    if pop.n < n_loads:
        raise ValueError(f"network {network} has {n_loads} loads but the population has {pop.n} households")
    pop = pop.subset(np.arange(n_loads))
    n_steps = int(round(86400 / step_s))
    times = int(day_start) + step_s * np.arange(n_steps)
    req = _day_request(day_start, outdoor_max_c, utc_offset_hours)
    house = baseline_components(pop, req, times + 0.5 * step_s)["net"]
    if reductions_w is not None:
        house = house - np.asarray(reductions_w, dtype=float)
    loading, p_kw, vmin = _run_powerflows(net, house, power_factor)
    return FeederDay(network=network, trafo_sn_kva=float(net.trafo.sn_mva.iloc[0]) * 1000.0, times=times,
                     step_s=int(step_s), house_w=house, loading_pct=loading, p_trafo_kw=p_kw, min_vm_pu=vmin,
                     elapsed_s=time.perf_counter() - t0)


def _overload_window(loading: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Contiguous run of steps above ``threshold`` that contains the peak (inclusive indices)."""
    k = int(np.argmax(loading))
    if loading[k] <= threshold:
        return None
    i0 = k
    while i0 > 0 and loading[i0 - 1] > threshold:
        i0 -= 1
    i1 = k
    while i1 < loading.size - 1 and loading[i1 + 1] > threshold:
        i1 += 1
    return i0, i1


def suggest_request(day_start: int | None = None, *, seed: int = 0, network: str = DEFAULT_NETWORK,
                    trafo_std_type: str | None = DEFAULT_SCENARIO_TRAFO, threshold_pct: float = 100.0,
                    step_s: int = 900, outdoor_max_c: float = 35.0, utc_offset_hours: float = 0.0,
                    power_factor: float = 0.95, margin: float = 0.05,
                    max_price_wei_per_kwh: int | None = None, deadline_lead_s: int = 3600,
                    population_overrides: Mapping[str, Any] | None = None,
                    include_profile: bool = True) -> dict[str, Any]:
    """Suggest a demand-reduction request from a simulated feeder day (``dr utility request --from-sim``).

    Runs :func:`feeder_day`, finds the contiguous window around the peak where
    the transformer loading exceeds ``threshold_pct``, and sizes the target so
    that a uniform reduction spread over the houses brings every step of the
    window back under the threshold (verified by re-running the power flow,
    ``margin`` extra).  ``day_start`` defaults to today's local midnight.

    Returns a JSON-ready dict: ``overloaded``, ``target_watts``, ``target_kw``,
    ``event_start``, ``event_end``, ``bidding_deadline`` (``event_start - deadline_lead_s``),
    ``max_price_wei_per_kwh``, ``peak_loading_pct``, ``threshold_pct``, network
    info, and (``include_profile``) the day's ``times`` / ``loading_pct``.
    """
    if day_start is None:
        day_start = local_midnight(int(time.time()), utc_offset_hours)
    day = feeder_day(int(day_start), seed=seed, network=network, trafo_std_type=trafo_std_type, step_s=step_s,
                     outdoor_max_c=outdoor_max_c, utc_offset_hours=utc_offset_hours, power_factor=power_factor,
                     population_overrides=population_overrides)
    out: dict[str, Any] = {
        "network": network, "trafo_std_type": trafo_std_type, "trafo_sn_kva": day.trafo_sn_kva, "n_houses": int(day.house_w.shape[0]),
        "seed": int(seed), "day_start": int(day_start), "step_s": int(step_s),
        "outdoor_max_c": float(outdoor_max_c), "utc_offset_hours": float(utc_offset_hours),
        "threshold_pct": float(threshold_pct), "peak_loading_pct": round(day.peak_loading_pct, 3),
        "overloaded": False, "target_watts": 0, "target_kw": 0.0, "event_start": None, "event_end": None,
        "bidding_deadline": None, "max_price_wei_per_kwh": max_price_wei_per_kwh,
        "powerflow_s": round(day.elapsed_s, 3),
    }
    win = _overload_window(day.loading_pct, threshold_pct)
    if win is not None:
        i0, i1 = win
        steps = list(range(i0, i1 + 1))
        # first guess: P * (1 - threshold/loading) at the worst step
        need = day.p_trafo_kw[steps] * (1.0 - threshold_pct / day.loading_pct[steps])
        target_w = float(need.max()) * 1000.0 * (1.0 + margin)
        net = load_network(network, trafo_std_type)
        h = day.house_w.shape[0]
        for _ in range(20):
            cut = np.zeros_like(day.house_w)
            cut[:, steps] = target_w / h
            loading, _, _ = _run_powerflows(net, day.house_w - cut, power_factor, steps)
            if loading.max() <= threshold_pct:
                break
            target_w *= 1.05
        event_start = int(day.times[i0])
        out.update(overloaded=True, target_watts=int(math.ceil(target_w)), target_kw=round(target_w / 1000.0, 3),
                   event_start=event_start, event_end=int(day.times[i1] + step_s),
                   bidding_deadline=event_start - int(deadline_lead_s),
                   window_peak_after_pct=round(float(loading.max()), 3))
    if include_profile:
        out["times"] = [int(t) for t in day.times]
        out["loading_pct"] = [round(float(x), 3) for x in day.loading_pct]
    return out


def clear_bids(bids: BidArrays, target_watts: int, max_price_wei_per_kwh: int | None = None
               ) -> tuple[np.ndarray, int]:
    """Mirror of the market rule for simulations: cheapest steps first until the target is met.

    Whole steps are accepted (the last one may overshoot the target).  Returns
    (accepted watts per household row, clearing price = highest accepted price,
    0 if nothing accepted).  The on-chain contract stays authoritative.
    """
    n, s = bids.watts.shape
    valid = np.arange(s)[None, :] < bids.n_steps[:, None]
    if max_price_wei_per_kwh is not None:
        valid &= bids.price <= int(max_price_wei_per_kwh)
    rows, cols = np.nonzero(valid)
    price = bids.price[rows, cols]
    order = np.lexsort((rows, price))
    w = bids.watts[rows, cols][order]
    cum = np.cumsum(w)
    n_take = int(np.searchsorted(cum, int(target_watts), side="left")) + 1 if target_watts > 0 else 0
    n_take = min(n_take, w.size)
    accepted = np.zeros(n, dtype=np.int64)
    np.add.at(accepted, rows[order][:n_take], w[:n_take])
    clearing = int(price[order][n_take - 1]) if n_take else 0
    return accepted, clearing


def feeder_delivered(suggestion: Mapping[str, Any], accepted_w: "Mapping[int, int] | Sequence[int] | np.ndarray",
                     *, under_delivery: float = 0.0, noise_std: float = 0.0, rng_seed: int | None = None,
                     usd_per_eth: float = DEFAULT_USD_PER_ETH,
                     population_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Re-run the suggested day with the accepted reductions actually delivered.

    ``suggestion`` is the dict from :func:`suggest_request` (or any mapping with
    ``day_start``, ``event_start``, ``event_end``, ``seed``, ``network``,
    ``trafo_std_type`` optional, ``outdoor_max_c``, ``utc_offset_hours``, ``step_s``).
    ``accepted_w`` maps house index -> accepted watts.  Each house is simulated
    with :func:`~demand_response.gridsim.delivery.simulate_delivery` (including
    rebound after the window) and its load change is averaged onto the feeder
    steps.  Returns before/after loading profiles and peaks.
    """
    s = dict(suggestion)
    if s.get("event_start") is None:
        raise ValueError("suggestion has no event window (feeder not overloaded?)")
    network = s.get("network", DEFAULT_NETWORK)
    if "trafo_std_type" in s:
        trafo = s["trafo_std_type"]
    elif "trafo_sn_kva" in s:
        trafo = _trafo_type_for(network, float(s["trafo_sn_kva"]))
    else:
        trafo = None
    step_s = int(s.get("step_s", 900))
    outdoor = float(s.get("outdoor_max_c", 35.0))
    utc = float(s.get("utc_offset_hours", 0.0))
    seed = int(s.get("seed", 0))
    day_start = int(s["day_start"])
    req = as_request({"event_start": s["event_start"], "event_end": s["event_end"]},
                     outdoor_max_c=outdoor, utc_offset_hours=utc)
    before = feeder_day(day_start, seed=seed, network=network, trafo_std_type=trafo, step_s=step_s,
                        outdoor_max_c=outdoor, utc_offset_hours=utc, population_overrides=population_overrides)
    h, nt = before.house_w.shape
    pop = make_population(h, seed, **dict(population_overrides or {}))
    if isinstance(accepted_w, Mapping):
        items = [(int(k), int(v)) for k, v in accepted_w.items()]
    else:
        items = [(i, int(v)) for i, v in enumerate(np.asarray(accepted_w).tolist())]
    rng = np.random.default_rng(rng_seed)
    cut = np.zeros((h, nt))
    delivered: dict[int, float] = {}
    for house, acc in items:
        if acc <= 0 or house >= h:
            continue
        dv = simulate_delivery(pop, req, house, acc, under_delivery=under_delivery, noise_std=noise_std, rng=rng,
                               usd_per_eth=usd_per_eth)
        delivered[house] = dv.delivered_w
        diff = dv.baseline_w - dv.actual_w
        if noise_std > 0 and dv.physical_w > 0:
            diff = diff * np.where(dv.in_window, dv.delivered_w / dv.physical_w, 1.0)
        k = ((dv.times - day_start) // step_s).astype(int)
        ok = (k >= 0) & (k < nt)
        np.add.at(cut[house], k[ok], diff[ok] * dv.dts[ok] / step_s)
    after = feeder_day(day_start, seed=seed, network=network, trafo_std_type=trafo, step_s=step_s,
                       outdoor_max_c=outdoor, utc_offset_hours=utc, reductions_w=cut,
                       population_overrides=population_overrides)
    return {
        "times": [int(t) for t in before.times],
        "loading_before_pct": [round(float(x), 3) for x in before.loading_pct],
        "loading_after_pct": [round(float(x), 3) for x in after.loading_pct],
        "peak_before_pct": round(before.peak_loading_pct, 3),
        "peak_after_pct": round(after.peak_loading_pct, 3),
        "accepted_w": int(sum(a for _, a in items)),
        "delivered_w": round(float(sum(delivered.values())), 1),
        "delivered_by_house": {int(k): round(v, 1) for k, v in delivered.items()},
    }


def _trafo_type_for(network: str, sn_kva: float) -> str | None:
    """Standard type matching a rating when re-running a suggestion (None = network default)."""
    net = load_network(network)
    if abs(float(net.trafo.sn_mva.iloc[0]) * 1000.0 - sn_kva) < 1e-6:
        return None
    hv = float(net.trafo.vn_hv_kv.iloc[0])
    return f"{sn_kva / 1000.0:g} MVA {hv:g}/0.4 kV"
