"""Simulate what one household actually delivers when some of its bid is accepted.

The accepted watts are dispatched over the household's own bid steps, cheapest
first (the same order the market used), giving a reduction per device.  Each
device is then simulated through the event on a fine grid (default 60 s):

* HVAC: exact two-node ETP stepping (:func:`~demand_response.gridsim.thermal.etp_simulate`
  discretisation) with the HVAC electric power capped at ``baseline - r`` during
  the window, then a thermostat recovery (rebound) after it,
* water heater: one-node tank, explicit energy bookkeeping, element at
  ``baseline - r`` in the window, recovery at up to rated power after it,
* EV: charging at ``rated - r`` in the window, then full power until done,
  checked against the departure deadline,
* battery: constant discharge through ``sqrt(rte)``, state-of-charge tracked.

``under_delivery`` scales all device reductions down (a household that only
partly complies) and ``noise_std`` adds Gaussian noise (fraction of the accepted
watts) to the measured average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .bids import fleet_bids
from .devices import (BATTERY, DEVICE_NAMES, EV, HVAC, WATER_HEATER, base_w, ev_session, gains_w,
                      hvac_baseline_w, pv_w, wh_baseline_w, wh_draw_l_per_s)
from .population import WATER_RHO_CP, Population
from .thermal import _phi_gamma
from .weather import DEFAULT_USD_PER_ETH, Request, as_request, outdoor_temperature, time_grid


@dataclass
class Delivery:
    """Result of :func:`simulate_delivery` for one household (powers in W, temps in deg C).

    Arrays indexed by step have length T (values over step ``k`` starting at
    ``times[k]`` and lasting ``dts[k]``); state arrays (``indoor_c``, ``tank_c``,
    ``soc``) have T+1 entries at the step boundaries.
    """

    household: int
    accepted_w: int
    offered_w: int
    dispatched_w: dict[str, float]
    physical_w: float
    delivered_w: float
    times: np.ndarray
    dts: np.ndarray
    in_window: np.ndarray
    baseline_w: np.ndarray
    actual_w: np.ndarray
    device_baseline_w: dict[str, np.ndarray]
    device_actual_w: dict[str, np.ndarray]
    hvac_mode: int
    indoor_c: np.ndarray
    comfort_limit_c: float
    tank_c: np.ndarray
    tank_min_c: float
    soc: np.ndarray
    soc_min: float
    ev_required_wh: float
    ev_delivered_wh: float
    ev_departure: float
    comfort_ok: bool
    tank_ok: bool
    ev_deadline_ok: bool
    soc_ok: bool
    energy: dict[str, float] = field(default_factory=dict)

    @property
    def constraints_ok(self) -> bool:
        """True when comfort, tank temperature, EV deadline and SOC limits all hold."""
        return self.comfort_ok and self.tank_ok and self.ev_deadline_ok and self.soc_ok


def _dispatch(bids: Any, accepted_w: int) -> dict[int, float]:
    """Allocate accepted watts over the cheapest steps of a single-row BidArrays."""
    alloc = {HVAC: 0.0, WATER_HEATER: 0.0, EV: 0.0, BATTERY: 0.0}
    left = float(accepted_w)
    for k in range(int(bids.n_steps[0])):
        take = min(left, float(bids.watts[0, k]))
        alloc[int(bids.device[0, k])] += take
        left -= take
        if left <= 0:
            break
    return alloc


def _segments(request: Request, pre_s: float, post_s: float, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s, e = int(request.event_start), int(request.event_end)
    starts, dts, win = [], [], []
    for a, b, w in ((s - pre_s, s, False), (s, e, True), (e, e + post_s, False)):
        if b - a <= 0:
            continue
        st, _, dt = time_grid(a, b, dt_s)
        starts.append(st), dts.append(np.full(st.size, dt)), win.append(np.full(st.size, w))
    return np.concatenate(starts), np.concatenate(dts), np.concatenate(win)


def simulate_delivery(pop: Population, request: "Request | Mapping[str, Any]", index: int, accepted_w: int, *,
                      under_delivery: float = 0.0, noise_std: float = 0.0,
                      rng: "np.random.Generator | int | None" = None, dt_s: float = 60.0,
                      pre_s: float = 3 * 3600, post_s: float = 3 * 3600,
                      usd_per_eth: float = DEFAULT_USD_PER_ETH) -> Delivery:
    """Simulate household at position ``index`` delivering ``accepted_w`` watts.

    ``accepted_w`` above the household's offer is capped at the offer.  Returns a
    :class:`Delivery` whose ``delivered_w`` is the window-average reduction
    (baseline minus actual net load) after ``under_delivery`` (0..1) and noise.
    """
    req = as_request(request)
    if accepted_w < 0:
        raise ValueError("accepted_w must be >= 0")
    if not 0.0 <= under_delivery <= 1.0:
        raise ValueError("under_delivery must be within [0, 1]")
    one = pop.subset([index])
    bids = fleet_bids(one, req, usd_per_eth=usd_per_eth)
    offered = int(bids.watts.sum())
    alloc = _dispatch(bids, min(int(accepted_w), offered))
    red = {k: v * (1.0 - under_delivery) for k, v in alloc.items()}

    times, dts, win = _segments(req, pre_s, post_s, dt_s)
    mids = times + 0.5 * dts
    nt = times.size
    d = float(req.duration_s)
    wdt = dts * win  # seconds of each step inside the window

    base = base_w(one, req, mids)[0]
    pv = pv_w(one, req, mids)[0]

    # HVAC ------------------------------------------------------------------
    p_hvac_base, modes = hvac_baseline_w(one, req, mids)
    p_hvac_base, modes = p_hvac_base[0], modes[0]
    wmodes = modes[win]
    mode = int(wmodes[0]) if wmodes.size and np.all(wmodes == wmodes[0]) else 0
    p_hvac = p_hvac_base.copy()
    indoor = np.full(nt + 1, np.nan)
    limit = float("nan")
    r_h = red[HVAC]
    if mode != 0:
        ua, ca = float(one.ua_w_per_k[0]), float(one.ca_j_per_k[0])
        hm, cm = float(one.hm_w_per_k[0]), float(one.cm_j_per_k[0])
        cop = float(one.cop_cool[0] if mode == 1 else one.cop_heat[0])
        tset = float(one.cool_setpoint_c[0] if mode == 1 else one.heat_setpoint_c[0])
        rated = float(one.cool_rated_w[0] if mode == 1 else one.heat_rated_w[0])
        limit = float(one.cool_max_c[0] if mode == 1 else one.heat_min_c[0])
        t_out = outdoor_temperature(req, mids)
        gains = gains_w(one, req, mids)[0]
        k0 = int(np.argmax(win))
        x = np.array([tset, tset])
        indoor[: k0 + 1] = tset
        cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        gain_k = ca / (cop * 600.0)  # recovery controller: 10 min time constant
        for k in range(k0, nt):
            if win[k]:
                p = max(p_hvac_base[k] - r_h, 0.0)
            else:  # thermostat recovery towards the setpoint (rebound)
                err = (x[0] - tset) * mode
                p = min(max(p_hvac_base[k] + gain_k * err, 0.0), rated)
            p_hvac[k] = p
            key = float(dts[k])
            if key not in cache:
                cache[key] = _phi_gamma(ua, ca, hm, cm, key)
            phi, gamma = cache[key]
            qa = gains[k] - mode * cop * p
            x = phi @ x + gamma @ np.array([t_out[k], qa, 0.0])
            indoor[k + 1] = x[0]
    wk = np.flatnonzero(win)
    if mode == 1:
        comfort_ok = bool(np.nanmax(indoor[wk[0]: wk[-1] + 2]) <= limit + 1e-9)
    elif mode == -1:
        comfort_ok = bool(np.nanmin(indoor[wk[0]: wk[-1] + 2]) >= limit - 1e-9)
    else:
        comfort_ok = True

    # water heater ----------------------------------------------------------
    p_wh_base = wh_baseline_w(one, req, mids)[0]
    p_wh = p_wh_base.copy()
    tank = np.full(nt + 1, np.nan)
    e_in = e_loss = e_draw = 0.0
    if bool(one.has_wh[0]):
        cap = float(one.wh_capacity_j_per_k[0])
        ts_w, tmin_w = float(one.wh_setpoint_c[0]), float(one.wh_min_c[0])
        ua_w, t_amb, t_in = float(one.wh_ua_w_per_k[0]), float(one.wh_ambient_c[0]), float(one.wh_inlet_c[0])
        rated_w = float(one.wh_rated_w[0])
        flow = wh_draw_l_per_s(one, req, mids)[0]
        r_wh = red[WATER_HEATER]
        temp = ts_w
        tank[0] = temp
        for k in range(nt):
            loss = ua_w * (temp - t_amb)
            draw = flow[k] * WATER_RHO_CP * (temp - t_in)
            if win[k]:
                p = max(p_wh_base[k] - r_wh, 0.0)
            else:
                p = min(max(loss + draw + cap * (ts_w - temp) / dts[k], 0.0), rated_w)
            p_wh[k] = p
            e_in += p * dts[k]
            e_loss += loss * dts[k]
            e_draw += draw * dts[k]
            temp = temp + dts[k] * (p - loss - draw) / cap
            tank[k + 1] = temp
        tank_ok = bool(np.min(tank) >= tmin_w - 1e-9)
        energy_wh = {"wh_in_j": e_in, "wh_loss_j": e_loss, "wh_draw_j": e_draw,
                     "wh_stored_j": cap * (tank[-1] - tank[0])}
    else:
        tmin_w, tank_ok, energy_wh = float("nan"), True, {}

    # EV ----------------------------------------------------------------------
    p_ev_base = np.zeros(nt)
    p_ev = np.zeros(nt)
    ev_req = ev_del = 0.0
    dep = float("nan")
    ev_ok = True
    if bool(one.has_ev[0]):
        arr, dep_a, cend = (float(v[0]) for v in ev_session(one, req, req.event_start))
        dep = dep_a
        p_max = float(one.ev_rated_w[0])
        ev_req = p_max * (cend - arr) / 3600.0
        # extend the grid to the departure time for the deadline check
        t_end = max(float(times[-1] + dts[-1]), dep)
        ext_t = np.concatenate([times, np.arange(times[-1] + dts[-1], t_end, dt_s)])
        ext_dt = np.concatenate([dts, np.full(ext_t.size - nt, dt_s)])
        ext_dt = np.minimum(ext_dt, np.maximum(t_end - ext_t, 0.0))
        ext_win = np.concatenate([win, np.zeros(ext_t.size - nt, bool)])
        r_ev = red[EV]
        for reduced, out in ((False, p_ev_base), (True, p_ev)):
            done = p_max * min(max(ext_t[0] - arr, 0.0), cend - arr) / 3600.0
            for k in range(ext_t.size):
                t0, dtk = ext_t[k], ext_dt[k]
                lo, hi = max(t0, arr), min(t0 + dtk, dep)
                if hi <= lo or done >= ev_req - 1e-9 or dtk <= 0:
                    continue
                p = p_max * (hi - lo) / dtk
                if reduced and ext_win[k]:
                    p = max(p - r_ev, 0.0)
                p = min(p, (ev_req - done) * 3600.0 / dtk)
                done += p * dtk / 3600.0
                if k < nt:
                    out[k] = p
            if reduced:
                ev_del = done
        ev_ok = bool(ev_del >= ev_req - 1e-6)

    # battery -----------------------------------------------------------------
    soc = np.full(nt + 1, np.nan)
    p_bat = np.zeros(nt)  # positive = discharge (reduces net load)
    soc_min = float(one.bat_soc_min[0])
    soc_ok = True
    energy_bat: dict[str, float] = {}
    if bool(one.has_battery[0]):
        cap_wh = float(one.bat_capacity_wh[0])
        eta = float(np.sqrt(one.bat_rte[0]))
        p_bat = np.where(win, min(red[BATTERY], float(one.bat_power_w[0])), 0.0)
        drained = np.cumsum(p_bat * dts / 3600.0 / eta)
        soc[0] = float(one.bat_soc0[0])
        soc[1:] = soc[0] - drained / cap_wh
        soc_ok = bool(np.min(soc) >= soc_min - 1e-9)
        out_wh = float(np.sum(p_bat * dts)) / 3600.0
        stored_drop = (soc[0] - soc[-1]) * cap_wh
        energy_bat = {"bat_delivered_wh": out_wh, "bat_stored_drop_wh": stored_drop,
                      "bat_loss_wh": stored_drop - out_wh}

    base_total = base + p_hvac_base + p_wh_base + p_ev_base - pv
    actual_total = base + p_hvac + p_wh + p_ev - pv - p_bat
    physical = float(np.sum((base_total - actual_total) * wdt) / d)
    delivered = physical
    if noise_std > 0:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        delivered = max(0.0, delivered + float(gen.normal(0.0, noise_std * accepted_w)))

    return Delivery(
        household=int(one.index[0]), accepted_w=int(accepted_w), offered_w=offered,
        dispatched_w={DEVICE_NAMES[k]: v for k, v in red.items()},
        physical_w=physical, delivered_w=delivered,
        times=times, dts=dts, in_window=win, baseline_w=base_total, actual_w=actual_total,
        device_baseline_w={"base": base, "pv": -pv, "hvac": p_hvac_base, "water_heater": p_wh_base,
                           "ev": p_ev_base, "battery": np.zeros(nt)},
        device_actual_w={"base": base, "pv": -pv, "hvac": p_hvac, "water_heater": p_wh, "ev": p_ev,
                         "battery": -p_bat},
        hvac_mode=mode, indoor_c=indoor, comfort_limit_c=limit, tank_c=tank, tank_min_c=tmin_w,
        soc=soc, soc_min=soc_min, ev_required_wh=ev_req, ev_delivered_wh=ev_del, ev_departure=dep,
        comfort_ok=comfort_ok, tank_ok=tank_ok, ev_deadline_ok=ev_ok, soc_ok=soc_ok,
        energy={**energy_wh, **energy_bat},
    )


def delivered_reduction(pop: Population, request: "Request | Mapping[str, Any]", index: int, accepted_w: int,
                        **kwargs: Any) -> float:
    """Window-average delivered reduction (W) of household ``index`` for ``accepted_w`` accepted watts."""
    return simulate_delivery(pop, request, index, accepted_w, **kwargs).delivered_w
