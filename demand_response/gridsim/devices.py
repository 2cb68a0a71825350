"""Vectorised device models: baselines and the feasible reduction of each device.

Device codes used in bid steps: 1 HVAC, 2 water heater, 3 EV charger, 4 battery.

Baselines (what the household would draw without an event):

* non-flexible load ``base_w_mean * base_load_shape(hour)`` minus PV,
* HVAC: an ideal thermostat holding the air at the setpoint; the electric power
  is the heat that must be removed (added) divided by the COP,
* water heater: an ideal thermostat holding the tank at its setpoint; power =
  standby loss + draw energy,
* EV: uncontrolled charging at rated power from arrival until the required
  energy is delivered,
* battery: idle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .population import WATER_RHO_CP, Population
from .thermal import air_step_response
from .weather import Request, base_load_shape, dhw_draw_fraction_per_hour, irradiance, outdoor_temperature, time_grid

HVAC, WATER_HEATER, EV, BATTERY = 1, 2, 3, 4
DEVICE_NAMES = {HVAC: "hvac", WATER_HEATER: "water_heater", EV: "ev", BATTERY: "battery"}


# --------------------------------------------------------------------------- baselines
def gains_w(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """Internal + solar heat gains into the air node, (N, T) watts.

    All non-flexible electric load ends up as heat indoors (plus occupants);
    solar gain is irradiance times an effective aperture.
    """
    hour = request.local_hour(t)
    return (pop.occupant_gain_w[:, None]
            + pop.base_w_mean[:, None] * base_load_shape(hour)[None, :]
            + pop.solar_aperture_m2[:, None] * irradiance(request, t)[None, :])


def hvac_baseline_w(pop: Population, request: Request, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HVAC electric baseline (N, T) W and mode (+1 cooling, -1 heating, 0 off)."""
    t_out = outdoor_temperature(request, t)[None, :]
    g = gains_w(pop, request, t)
    q_cool = pop.ua_w_per_k[:, None] * (t_out - pop.cool_setpoint_c[:, None]) + g
    q_heat = -(pop.ua_w_per_k[:, None] * (t_out - pop.heat_setpoint_c[:, None]) + g)
    p_cool = np.where(pop.has_ac[:, None], np.clip(q_cool, 0.0, None) / pop.cop_cool[:, None], 0.0)
    p_heat = np.where(pop.has_heat_pump[:, None], np.clip(q_heat, 0.0, None) / pop.cop_heat[:, None], 0.0)
    p_cool = np.minimum(p_cool, pop.cool_rated_w[:, None])
    p_heat = np.minimum(p_heat, pop.heat_rated_w[:, None])
    mode = np.where(p_cool > 0, 1, np.where(p_heat > 0, -1, 0)).astype(np.int8)
    return p_cool + p_heat, mode


def wh_draw_l_per_s(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """Hot-water draw flow (N, T) in litres per second."""
    frac = dhw_draw_fraction_per_hour(request.local_hour(t))
    return pop.wh_draw_l_per_day[:, None] * frac[None, :] / 3600.0


def wh_baseline_w(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """Water-heater element power (N, T) W holding the tank at its setpoint (capped at rating)."""
    flow = wh_draw_l_per_s(pop, request, t)
    p = (pop.wh_ua_w_per_k * (pop.wh_setpoint_c - pop.wh_ambient_c))[:, None] \
        + flow * WATER_RHO_CP * (pop.wh_setpoint_c - pop.wh_inlet_c)[:, None]
    return np.where(pop.has_wh[:, None], np.minimum(p, pop.wh_rated_w[:, None]), 0.0)


def ev_session(pop: Population, request: Request, t_ref: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plug-in session relevant at unix time ``t_ref``: (arrival, departure, charge_end) unix s.

    If the car is plugged in at ``t_ref`` the current session is returned,
    otherwise the next one.  The required energy is capped at what the charger
    can deliver while plugged in.
    """
    h0 = request.local_hour(t_ref)
    tau = (h0 - pop.ev_arrival_h) % 24.0  # hours since the last arrival
    plugged_h = (pop.ev_departure_h - pop.ev_arrival_h) % 24.0
    arrival = np.where(tau < plugged_h, t_ref - tau * 3600.0, t_ref + (24.0 - tau) * 3600.0)
    departure = arrival + plugged_h * 3600.0
    charge_s = np.minimum(pop.ev_energy_wh / pop.ev_rated_w * 3600.0, plugged_h * 3600.0)
    return arrival, departure, arrival + charge_s


def ev_baseline_w(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """Uncontrolled EV charging power (N, T) W (daily repeating plug-in sessions)."""
    hour = request.local_hour(np.asarray(t, dtype=float))
    tau = (hour[None, :] - pop.ev_arrival_h[:, None]) % 24.0  # hours since last arrival
    plugged_h = (pop.ev_departure_h - pop.ev_arrival_h) % 24.0
    charge_h = np.minimum(pop.ev_energy_wh / pop.ev_rated_w, plugged_h)
    on = (tau < plugged_h[:, None]) & (tau < charge_h[:, None]) & pop.has_ev[:, None]
    return np.where(on, pop.ev_rated_w[:, None], 0.0)


def base_w(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """Non-flexible load (N, T) W."""
    return pop.base_w_mean[:, None] * base_load_shape(request.local_hour(t))[None, :]


def pv_w(pop: Population, request: Request, t: np.ndarray) -> np.ndarray:
    """PV output (N, T) W."""
    return pop.pv_w_peak[:, None] * (irradiance(request, t) / 1000.0)[None, :]


def baseline_components(pop: Population, request: Request, t: np.ndarray) -> dict[str, np.ndarray]:
    """All baseline components at times ``t`` (N, T) W, plus ``net`` = loads - PV."""
    comp = {
        "base": base_w(pop, request, t),
        "hvac": hvac_baseline_w(pop, request, t)[0],
        "water_heater": wh_baseline_w(pop, request, t),
        "ev": ev_baseline_w(pop, request, t),
        "pv": pv_w(pop, request, t),
    }
    comp["net"] = comp["base"] + comp["hvac"] + comp["water_heater"] + comp["ev"] - comp["pv"]
    return comp


# --------------------------------------------------------------------------- flexibility
@dataclass
class Flexibility:
    """Feasible whole-window reduction per device (W, float) and what prices depend on.

    Each ``*_w`` is the largest *constant* reduction (the same watts at every
    instant of the window) that can be held over the entire window without
    violating that device's constraint.
    """

    duration_s: float
    hvac_w: np.ndarray
    hvac_mode: np.ndarray  # +1 cooling, -1 heating, 0 none
    hvac_cop: np.ndarray
    hvac_g: np.ndarray  # K per W of air heat, at the window end
    hvac_range_c: np.ndarray  # comfort room: |limit - setpoint|
    wh_w: np.ndarray
    wh_energy_wh: np.ndarray  # baseline element energy in window
    ev_w: np.ndarray
    ev_window_wh: np.ndarray  # baseline charging energy in window
    ev_slack_wh: np.ndarray  # energy that can be charged after the window
    ev_remaining_wh: np.ndarray  # baseline energy still to charge after the window
    bat_w: np.ndarray
    bat_usable_wh: np.ndarray  # (soc0 - soc_min) * capacity

    @property
    def total_w(self) -> np.ndarray:
        """Sum of the device reductions (W)."""
        return self.hvac_w + self.wh_w + self.ev_w + self.bat_w


def device_flexibility(pop: Population, request: Request, *, dt_s: float = 300.0,
                       safety: float = 0.98) -> Flexibility:
    """Per-device feasible reduction over the whole event window (vectorised).

    * HVAC: a constant cut ``r`` of the electric power adds ``COP*r`` W of heat
      (cooling) and, by linearity of the ETP model, raises the air temperature
      by ``COP*r*g(t)`` above the setpoint, with ``g`` the monotone step response
      (:func:`~demand_response.gridsim.thermal.air_step_response`).  So
      ``r <= (T_max - T_set) / (COP*g(D))`` keeps the band at every instant, and
      ``r <= min_t P_base(t)``.  Households whose HVAC is off or saturated at any
      sample in the window, or switches mode, offer nothing.
    * water heater: element power cut by ``r`` at every instant, so
      ``r <= min_t P_base(t)``; the tank temperature drop is at most ``r*t/C``
      (lower tank temperature only reduces losses and draw energy), so
      ``r <= C (T_set - T_min) / D``.
    * EV: only a car charging through the whole window can cut a constant ``r``
      (``r <= P_rated``); feasible iff the energy still missing after the
      window, ``remaining + r*D``, can be charged at rated power before departure.
    * battery: discharge ``r <= P_max``, ``r*D/sqrt(rte) <= (soc0-soc_min)*E``,
      and no export: ``r <= min_t (base - PV)``.

    ``safety`` (< 1) shrinks every limit slightly.
    """
    d = float(request.duration_s)
    _, tm, dt = time_grid(request.event_start, request.event_end, dt_s)
    # include both window edges in the min/max sampling
    ts = np.concatenate([[float(request.event_start)], tm, [float(request.event_end)]])
    n = pop.n

    # HVAC ---------------------------------------------------------------
    t_out = outdoor_temperature(request, ts)[None, :]
    g_air = gains_w(pop, request, ts)
    q_cool = pop.ua_w_per_k[:, None] * (t_out - pop.cool_setpoint_c[:, None]) + g_air
    qc_min, qc_max = q_cool.min(axis=1), q_cool.max(axis=1)
    shift = pop.ua_w_per_k * (pop.cool_setpoint_c - pop.heat_setpoint_c)
    qh_min, qh_max = -(qc_max + shift), -(qc_min + shift)
    cool_ok = pop.has_ac & (qc_min > 0) & (qc_max / pop.cop_cool < pop.cool_rated_w)
    heat_ok = pop.has_heat_pump & (qh_min > 0) & (qh_max / pop.cop_heat < pop.heat_rated_w)
    g = air_step_response(pop.ua_w_per_k, pop.ca_j_per_k, pop.hm_w_per_k, pop.cm_j_per_k, d)
    mode = np.where(cool_ok, 1, np.where(heat_ok, -1, 0)).astype(np.int8)
    cop = np.where(mode == 1, pop.cop_cool, pop.cop_heat)
    rng_c = np.where(mode == 1, pop.cool_max_c - pop.cool_setpoint_c, pop.heat_setpoint_c - pop.heat_min_c)
    p_min = np.where(mode == 1, qc_min, qh_min) / cop
    hvac = np.where(mode != 0, np.minimum(p_min, rng_c / (cop * g)) * safety, 0.0)

    # water heater -------------------------------------------------------
    frac_h = dhw_draw_fraction_per_hour(request.local_hour(ts))
    vol_frac = float(np.sum(dhw_draw_fraction_per_hour(request.local_hour(tm))) * dt / 3600.0)
    dtemp_draw = pop.wh_setpoint_c - pop.wh_inlet_c
    standby = pop.wh_ua_w_per_k * (pop.wh_setpoint_c - pop.wh_ambient_c)
    draw_w_per_frac = WATER_RHO_CP * dtemp_draw * pop.wh_draw_l_per_day / 3600.0  # W per (fraction/h)
    e_wh = standby * d + WATER_RHO_CP * dtemp_draw * pop.wh_draw_l_per_day * vol_frac  # J
    p_wh_min = standby + draw_w_per_frac * frac_h.min()
    p_wh_max = standby + draw_w_per_frac * frac_h.max()
    wh_ok = pop.has_wh & (p_wh_max < pop.wh_rated_w)
    room = pop.wh_capacity_j_per_k * (pop.wh_setpoint_c - pop.wh_min_c)  # J above the minimum
    wh = np.where(wh_ok, np.minimum(p_wh_min, room / d) * safety, 0.0)

    # EV -----------------------------------------------------------------
    s, e = float(request.event_start), float(request.event_end)
    arr, dep, cend = ev_session(pop, request, request.event_start)
    p_ev = pop.ev_rated_w
    in_win_s = np.clip(np.minimum(cend, e) - np.maximum(arr, s), 0.0, None)
    e_win = p_ev * in_win_s / 3600.0  # Wh charged in the window (baseline)
    charged_by_end = p_ev * np.clip(np.minimum(cend, e) - arr, 0.0, None) / 3600.0
    needed = p_ev * (cend - arr) / 3600.0
    remaining = np.clip(needed - charged_by_end, 0.0, None)  # still to charge after the window
    slack = p_ev * np.clip(dep - np.maximum(e, arr), 0.0, None) / 3600.0  # chargeable after it
    whole = pop.has_ev & (arr <= s) & (cend >= e)  # charging through the whole window
    ev_lim = np.minimum(p_ev, (slack - remaining) * 3600.0 / d)
    ev = np.where(whole, np.clip(ev_lim, 0.0, None) * safety, 0.0)

    # battery ------------------------------------------------------------
    usable = np.clip(pop.bat_soc0 - pop.bat_soc_min, 0.0, None) * pop.bat_capacity_wh
    eta_d = np.sqrt(pop.bat_rte)
    bat = np.zeros(n)
    idx = np.flatnonzero(pop.has_battery)
    if idx.size:
        hour = request.local_hour(ts)
        net = (pop.base_w_mean[idx, None] * base_load_shape(hour)[None, :]
               - pop.pv_w_peak[idx, None] * (irradiance(request, ts) / 1000.0)[None, :])
        cover = np.clip(net.min(axis=1), 0.0, None)
        lim = np.minimum.reduce([pop.bat_power_w[idx], usable[idx] * eta_d[idx] * 3600.0 / d, cover])
        bat[idx] = lim * safety

    return Flexibility(
        duration_s=d, hvac_w=hvac, hvac_mode=mode, hvac_cop=cop, hvac_g=g, hvac_range_c=rng_c,
        wh_w=wh, wh_energy_wh=np.where(wh_ok, e_wh / 3600.0, 0.0),
        ev_w=ev, ev_window_wh=np.where(pop.has_ev, e_win, 0.0), ev_slack_wh=slack, ev_remaining_wh=remaining,
        bat_w=bat, bat_usable_wh=np.where(pop.has_battery, usable, 0.0),
    )
