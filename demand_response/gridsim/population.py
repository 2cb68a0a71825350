"""Seeded, vectorised household population (struct of arrays).

Every per-household attribute is drawn from its own random stream
``numpy.random.default_rng([seed, crc32(field_name)])``.  Household ``i`` therefore
has the same parameters whatever the population size ``n`` (a population of 10
is a prefix of a population of 100 000 with the same seed), and adding a field
does not perturb the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np

# Physical constants / unit conversions (SI).
_AIR_RHO_CP = 1.2 * 1006.0  # J/(m3 K), air density x specific heat
_CEILING_M = 2.44  # 8 ft ceiling, GridLAB-D default
_BTU_F_FT2_TO_J_K_M2 = 1899.1 / 0.092903  # 1 Btu/(degF ft2) in J/(K m2)
_BTUH_F_FT2_TO_W_K_M2 = 5.678  # 1 Btu/(h degF ft2) in W/(K m2)
WATER_RHO_CP = 4186.0  # J/(L K) for water (1 kg/L)


@dataclass(frozen=True)
class PopulationParams:
    """Distribution parameters of the synthetic population (defaults documented in docs/gridsim.md).

    ``(lo, hi)`` tuples are uniform ranges; ``*_share`` are ownership probabilities.
    """

    floor_area_m2: tuple[float, float] = (100.0, 250.0)
    ua_per_m2: tuple[float, float] = (0.9, 2.0)  # W/K per m2 floor (good..poor insulation)
    mass_btu_per_f_ft2: tuple[float, float] = (1.7, 2.4)  # GridLAB-D total_thermal_mass_per_floor_area=2
    interior_h_btu: float = 1.46  # Btu/(h degF ft2), GridLAB-D/TESP interior_surface_heat_transfer_coeff
    interior_area_ratio: float = 2.5  # interior heat-transfer surface / floor area
    air_capacity_multiplier: float = 3.0  # GridLAB-D: air_thermal_mass = 3 * cp * air mass
    solar_aperture_per_m2: tuple[float, float] = (0.006, 0.012)  # effective m2 per m2 floor
    occupant_gain_w: tuple[float, float] = (100.0, 300.0)
    base_kwh_per_day: tuple[float, float] = (5.0, 12.0)
    ac_share: float = 0.85
    cop_cool: tuple[float, float] = (3.0, 4.0)  # GridLAB-D default cooling_COP 3.5
    cool_setpoint_c: tuple[float, float] = (22.0, 25.5)
    cool_band_c: tuple[float, float] = (1.0, 3.0)  # comfort max = setpoint + band
    heat_pump_share: float = 0.5  # electric (heat pump) heating, else non-electric
    cop_heat: tuple[float, float] = (2.5, 3.5)
    heat_setpoint_c: tuple[float, float] = (19.0, 21.5)
    heat_band_c: tuple[float, float] = (1.0, 3.0)  # comfort min = setpoint - band
    design_cool_out_c: float = 40.0
    design_heat_out_c: float = -12.0
    hvac_oversize: float = 1.3
    comfort_price_mean_usd: tuple[float, float] = (0.08, 0.12)  # TESP hvac_agent "mean"
    comfort_price_std_usd: tuple[float, float] = (0.03, 0.06)  # TESP "std_dev"
    comfort_ramp: tuple[float, float] = (1.0, 3.0)  # TESP "ramp"
    pv_share: float = 0.3
    pv_kwp: tuple[float, float] = (3.0, 8.0)
    pv_derate: float = 0.85
    wh_share: float = 0.6  # electric resistance tank water heater
    wh_volume_l: tuple[float, float] = (150.0, 300.0)
    wh_setpoint_c: tuple[float, float] = (50.0, 60.0)
    wh_min_c: tuple[float, float] = (42.0, 46.0)
    wh_ua_w_per_k: tuple[float, float] = (1.5, 3.0)
    wh_rated_w: float = 4500.0
    wh_inlet_c: tuple[float, float] = (12.0, 18.0)
    wh_ambient_c: float = 20.0
    wh_draw_l_per_day: tuple[float, float] = (120.0, 250.0)
    wh_price_usd: tuple[float, float] = (0.03, 0.08)
    ev_share: float = 0.3
    ev_rated_w: tuple[float, ...] = (3700.0, 7200.0, 11000.0)
    ev_rated_p: tuple[float, ...] = (0.2, 0.6, 0.2)
    ev_arrival_h: tuple[float, float] = (18.0, 1.5)  # normal(mean, sd), clipped to [14, 23]
    ev_departure_h: tuple[float, float] = (7.5, 0.75)  # normal(mean, sd), clipped to [5, 10]
    ev_energy_kwh: tuple[float, float] = (4.0, 15.0)
    ev_price_usd: tuple[float, float] = (0.02, 0.06)
    battery_share: float = 0.15
    bat_capacity_kwh: tuple[float, float] = (5.0, 13.5)
    bat_power_w: tuple[float, float] = (2500.0, 5000.0)
    bat_soc0: tuple[float, float] = (0.4, 1.0)
    bat_soc_min: tuple[float, float] = (0.1, 0.2)
    bat_rte: tuple[float, float] = (0.85, 0.92)
    bat_degradation_usd: tuple[float, float] = (0.04, 0.10)
    retail_price_usd: tuple[float, float] = (0.12, 0.20)


@dataclass
class Population:
    """Struct of arrays, one entry per household (all arrays have length ``n``)."""

    seed: int
    index: np.ndarray  # original household index
    floor_area_m2: np.ndarray
    ua_w_per_k: np.ndarray
    ca_j_per_k: np.ndarray
    hm_w_per_k: np.ndarray
    cm_j_per_k: np.ndarray
    solar_aperture_m2: np.ndarray
    occupant_gain_w: np.ndarray
    base_w_mean: np.ndarray  # mean non-flexible load (W)
    has_ac: np.ndarray
    cop_cool: np.ndarray
    cool_setpoint_c: np.ndarray
    cool_max_c: np.ndarray
    cool_rated_w: np.ndarray  # electric
    has_heat_pump: np.ndarray
    cop_heat: np.ndarray
    heat_setpoint_c: np.ndarray
    heat_min_c: np.ndarray
    heat_rated_w: np.ndarray  # electric
    comfort_price_mean_usd: np.ndarray
    comfort_price_std_usd: np.ndarray
    comfort_ramp: np.ndarray
    has_pv: np.ndarray
    pv_w_peak: np.ndarray  # W at 1000 W/m2, after derate
    has_wh: np.ndarray
    wh_capacity_j_per_k: np.ndarray
    wh_setpoint_c: np.ndarray
    wh_min_c: np.ndarray
    wh_ua_w_per_k: np.ndarray
    wh_rated_w: np.ndarray
    wh_inlet_c: np.ndarray
    wh_ambient_c: np.ndarray
    wh_draw_l_per_day: np.ndarray
    wh_price_usd: np.ndarray
    has_ev: np.ndarray
    ev_rated_w: np.ndarray
    ev_arrival_h: np.ndarray
    ev_departure_h: np.ndarray
    ev_energy_wh: np.ndarray
    ev_price_usd: np.ndarray
    has_battery: np.ndarray
    bat_capacity_wh: np.ndarray
    bat_power_w: np.ndarray
    bat_soc0: np.ndarray
    bat_soc_min: np.ndarray
    bat_rte: np.ndarray
    bat_degradation_usd: np.ndarray
    retail_price_usd: np.ndarray

    @property
    def n(self) -> int:
        """Number of households."""
        return int(self.index.shape[0])

    def __len__(self) -> int:
        return self.n

    def subset(self, idx: "int | Sequence[int] | np.ndarray") -> "Population":
        """Population restricted to positions ``idx`` (keeps the original ``index``)."""
        sel = np.atleast_1d(np.asarray(idx))
        if sel.dtype != bool and sel.size and (sel.min() < -self.n or sel.max() >= self.n):
            raise IndexError("household index out of range")
        kw = {f.name: (getattr(self, f.name)[sel] if f.name != "seed" else self.seed) for f in fields(self)}
        return Population(**kw)

    def household(self, i: int) -> dict[str, float | bool | int]:
        """Parameters of household at position ``i`` as plain Python values."""
        out: dict[str, float | bool | int] = {}
        for f in fields(self):
            if f.name == "seed":
                continue
            v = getattr(self, f.name)[i]
            out[f.name] = v.item() if hasattr(v, "item") else v
        return out


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(name.encode())])


def _uniform(seed: int, name: str, rng_range: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = rng_range
    return _rng(seed, name).uniform(lo, hi, size=n)


def _bernoulli(seed: int, name: str, p: float, n: int) -> np.ndarray:
    return _rng(seed, name).random(n) < p


def make_population(n: int, seed: int = 0, **overrides: Any) -> Population:
    """Draw ``n`` households with a seeded :class:`numpy.random.Generator`.

    ``overrides`` may name any :class:`PopulationParams` field (changes the
    distribution, e.g. ``ev_share=0.6`` or ``cool_setpoint_c=(23.0, 26.0)``) or any
    :class:`Population` array field (scalar or length-``n`` array applied after
    drawing, e.g. ``cool_setpoint_c=24.0``;
    derived quantities such as HVAC sizing are *not* recomputed for array
    overrides).  Unknown names raise ``TypeError``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    p_names = {f.name for f in fields(PopulationParams)}
    a_names = {f.name for f in fields(Population)} - {"seed", "index"}
    bad = set(overrides) - p_names - a_names
    if bad:
        raise TypeError(f"unknown population override(s): {sorted(bad)}")
    # a name that is both a distribution parameter and an array field (e.g.
    # ``cool_setpoint_c``) is a distribution override when given a tuple range
    dist = {k: v for k, v in overrides.items() if k in p_names and (k not in a_names or isinstance(v, tuple))}
    arrays = {k: v for k, v in overrides.items() if k not in dist}
    params = replace(PopulationParams(), **dist)
    s = int(seed)
    u = lambda name: _uniform(s, name, getattr(params, name), n)  # noqa: E731

    area = u("floor_area_m2")
    ua = area * u("ua_per_m2")
    ca = params.air_capacity_multiplier * _AIR_RHO_CP * _CEILING_M * area
    cm = area * u("mass_btu_per_f_ft2") * _BTU_F_FT2_TO_J_K_M2
    hm = area * params.interior_area_ratio * params.interior_h_btu * _BTUH_F_FT2_TO_W_K_M2
    aperture = area * u("solar_aperture_per_m2")
    occ = u("occupant_gain_w")
    base_mean = u("base_kwh_per_day") * 1000.0 / 24.0

    has_ac = _bernoulli(s, "ac_share", params.ac_share, n)
    cop_c = u("cop_cool")
    ts_c = u("cool_setpoint_c")
    tmax_c = ts_c + u("cool_band_c")
    base_peak = 1.6 * base_mean  # evening peak of the non-flexible shape
    q_design_c = (ua * (params.design_cool_out_c - ts_c) + aperture * 1000.0 + occ + base_peak)
    cool_rated = params.hvac_oversize * q_design_c / cop_c
    has_hp = _bernoulli(s, "heat_pump_share", params.heat_pump_share, n)
    cop_h = u("cop_heat")
    ts_h = u("heat_setpoint_c")
    tmin_h = ts_h - u("heat_band_c")
    heat_rated = params.hvac_oversize * ua * (ts_h - params.design_heat_out_c) / cop_h

    has_pv = _bernoulli(s, "pv_share", params.pv_share, n)
    pv_peak = np.where(has_pv, u("pv_kwp") * 1000.0 * params.pv_derate, 0.0)

    has_wh = _bernoulli(s, "wh_share", params.wh_share, n)
    wh_ts = u("wh_setpoint_c")
    wh_min = np.minimum(u("wh_min_c"), wh_ts - 1.0)

    has_ev = _bernoulli(s, "ev_share", params.ev_share, n)
    rated_choices = np.asarray(params.ev_rated_w, dtype=float)
    probs = np.asarray(params.ev_rated_p, dtype=float)
    ev_rated = _rng(s, "ev_rated_w").choice(rated_choices, size=n, p=probs / probs.sum())
    mu, sd = params.ev_arrival_h
    ev_arr = np.clip(_rng(s, "ev_arrival_h").normal(mu, sd, size=n), 14.0, 23.0)
    mu, sd = params.ev_departure_h
    ev_dep = np.clip(_rng(s, "ev_departure_h").normal(mu, sd, size=n), 5.0, 10.0)

    has_bat = _bernoulli(s, "battery_share", params.battery_share, n)
    pop = Population(
        seed=s,
        index=np.arange(n, dtype=np.int64),
        floor_area_m2=area, ua_w_per_k=ua, ca_j_per_k=ca, hm_w_per_k=hm, cm_j_per_k=cm,
        solar_aperture_m2=aperture, occupant_gain_w=occ, base_w_mean=base_mean,
        has_ac=has_ac, cop_cool=cop_c, cool_setpoint_c=ts_c, cool_max_c=tmax_c, cool_rated_w=cool_rated,
        has_heat_pump=has_hp, cop_heat=cop_h, heat_setpoint_c=ts_h, heat_min_c=tmin_h, heat_rated_w=heat_rated,
        comfort_price_mean_usd=u("comfort_price_mean_usd"),
        comfort_price_std_usd=u("comfort_price_std_usd"),
        comfort_ramp=u("comfort_ramp"),
        has_pv=has_pv, pv_w_peak=pv_peak,
        has_wh=has_wh,
        wh_capacity_j_per_k=u("wh_volume_l") * WATER_RHO_CP,
        wh_setpoint_c=wh_ts, wh_min_c=wh_min, wh_ua_w_per_k=u("wh_ua_w_per_k"),
        wh_rated_w=np.full(n, float(params.wh_rated_w)), wh_inlet_c=u("wh_inlet_c"),
        wh_ambient_c=np.full(n, float(params.wh_ambient_c)), wh_draw_l_per_day=u("wh_draw_l_per_day"),
        wh_price_usd=u("wh_price_usd"),
        has_ev=has_ev, ev_rated_w=ev_rated, ev_arrival_h=ev_arr, ev_departure_h=ev_dep,
        ev_energy_wh=u("ev_energy_kwh") * 1000.0, ev_price_usd=u("ev_price_usd"),
        has_battery=has_bat, bat_capacity_wh=u("bat_capacity_kwh") * 1000.0, bat_power_w=u("bat_power_w"),
        bat_soc0=u("bat_soc0"), bat_soc_min=u("bat_soc_min"), bat_rte=u("bat_rte"),
        bat_degradation_usd=u("bat_degradation_usd"), retail_price_usd=u("retail_price_usd"),
    )
    for name, value in arrays.items():
        if name in a_names:
            cur = getattr(pop, name)
            arr = np.broadcast_to(np.asarray(value, dtype=cur.dtype), cur.shape).copy()
            setattr(pop, name, arr)
    return pop
