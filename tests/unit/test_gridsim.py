"""Tests for demand_response.gridsim (household models, bids, delivery, CLI helper)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import demand_response.gridsim as gs
from demand_response.gridsim.devices import BATTERY, HVAC, WATER_HEATER
from demand_response.gridsim.thermal import air_step_response, etp_simulate, single_node_response

# 2025-07-15 17:00 UTC, a summer afternoon event of two hours
T0 = 1752598800
SUMMER = gs.Request(T0, T0 + 7200, outdoor_max_c=35.0)

# a typical 180 m2 house (SI, GridLAB-D-like values)
UA, CA, HM, CM = 250.0, 1.6e6, 3700.0, 7.4e6


def _rk4(ua, ca, hm, cm, q, t_end, dt):
    def f(x):
        ta, tm = x
        return np.array([(ua * (0.0 - ta) + hm * (tm - ta) + q) / ca, hm * (ta - tm) / cm])

    x = np.zeros(2)
    out = [x[0]]
    for _ in range(int(round(t_end / dt))):
        k1 = f(x)
        k2 = f(x + 0.5 * dt * k1)
        k3 = f(x + 0.5 * dt * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(x[0])
    return np.array(out)


# ---------------------------------------------------------------- thermal model
def test_two_node_closed_form_matches_exact_stepper():
    q, dt, k = 3000.0, 60.0, 240
    ta, _ = etp_simulate(UA, CA, HM, CM, 0.0, 0.0, np.zeros(k), np.full(k, q), np.zeros(k), dt)
    closed = q * air_step_response(UA, CA, HM, CM, dt * np.arange(k + 1))
    np.testing.assert_allclose(ta, closed, rtol=1e-9, atol=1e-9)


def test_two_node_closed_form_matches_rk4_integration():
    q, t_end = 3000.0, 4 * 3600.0
    ref = _rk4(UA, CA, HM, CM, q, t_end, 1.0)
    closed = q * air_step_response(UA, CA, HM, CM, np.arange(ref.size) * 1.0)
    np.testing.assert_allclose(closed, ref, atol=1e-6)
    # the fast mode makes the first minutes jump by ~q/(UA+HM)
    assert closed[600] == pytest.approx(q / (UA + HM), rel=0.25)


def test_single_node_limit_matches_exponential():
    t = np.linspace(0, 20000, 50)
    g = air_step_response(UA, CA, 0.0, CM, t)
    np.testing.assert_allclose(g, (1 - np.exp(-UA * t / CA)) / UA, rtol=1e-10, atol=1e-14)
    ta, _ = etp_simulate(UA, CA, 0.0, CM, 20.0, 20.0, np.full(49, 30.0), np.full(49, 500.0), np.zeros(49),
                         float(t[1] - t[0]))
    np.testing.assert_allclose(ta, single_node_response(UA, CA, t, 20.0, 30.0, 500.0), rtol=1e-10)


def test_step_response_is_monotone_towards_one_over_ua():
    t = np.linspace(0, 30 * 86400, 2000)
    g = air_step_response(UA, CA, HM, CM, t)
    assert g[0] == 0.0
    assert np.all(np.diff(g) >= 0)
    assert np.all(np.diff(g[t < 2 * 86400]) > 0)
    assert g[-1] == pytest.approx(1 / UA, rel=1e-6)


# ---------------------------------------------------------------- energy balances
def _first(pop, mask):
    idx = np.flatnonzero(mask)
    assert idx.size, "population has no such household"
    return int(idx[0])


def test_water_heater_energy_balance():
    pop = gs.make_population(60, 3)
    bids = gs.fleet_bids(pop, SUMMER)
    i = _first(pop, pop.has_wh & (bids.device == WATER_HEATER).any(axis=1))
    dv = gs.simulate_delivery(pop, SUMMER, i, int(bids.watts[i].sum()))
    e = dv.energy
    assert e["wh_in_j"] == pytest.approx(e["wh_stored_j"] + e["wh_loss_j"] + e["wh_draw_j"], rel=1e-9)
    assert dv.dispatched_w["water_heater"] > 0
    assert dv.tank_ok and np.nanmin(dv.tank_c) < pop.wh_setpoint_c[i] - 0.1  # the tank really cooled


def test_water_heater_standby_decay_matches_analytic():
    """No draws and the element cut to zero: the tank decays as Tamb + (T0-Tamb) exp(-UA t / C)."""
    pop = gs.make_population(40, 5, wh_draw_l_per_day=0.0, wh_share=1.0, ev_share=0.0, battery_share=0.0,
                             ac_share=0.0, heat_pump_share=0.0)
    req = gs.Request(T0, T0 + 3600, outdoor_max_c=35.0)
    i = 0
    standby = pop.wh_ua_w_per_k[i] * (pop.wh_setpoint_c[i] - pop.wh_ambient_c[i])
    offered = int(gs.fleet_bids(pop, req).watts[i].sum())
    assert offered == pytest.approx(0.98 * standby, abs=1.0)
    dv = gs.simulate_delivery(pop, req, i, offered, pre_s=0, post_s=0)
    # element at standby - r; compare with the exact one-node solution
    p = standby - offered
    ua, c, ta = pop.wh_ua_w_per_k[i], pop.wh_capacity_j_per_k[i], pop.wh_ambient_c[i]
    t_eq = ta + p / ua
    t = np.append(0.0, np.cumsum(dv.dts))
    exact = t_eq + (pop.wh_setpoint_c[i] - t_eq) * np.exp(-ua * t / c)
    np.testing.assert_allclose(dv.tank_c, exact, atol=1e-4)


def test_battery_energy_balance_and_soc():
    pop = gs.make_population(200, 11, battery_share=1.0)
    bids = gs.fleet_bids(pop, SUMMER)
    i = _first(pop, (bids.device == BATTERY).any(axis=1))
    dv = gs.simulate_delivery(pop, SUMMER, i, int(bids.watts[i].sum()))
    e = dv.energy
    assert e["bat_stored_drop_wh"] == pytest.approx(e["bat_delivered_wh"] + e["bat_loss_wh"], rel=1e-12)
    eta = np.sqrt(pop.bat_rte[i])
    assert e["bat_loss_wh"] == pytest.approx(e["bat_delivered_wh"] * (1 / eta - 1), rel=1e-9)
    assert e["bat_delivered_wh"] == pytest.approx(dv.dispatched_w["battery"] * 2.0, rel=1e-9)
    assert dv.soc_ok and np.nanmin(dv.soc) >= pop.bat_soc_min[i]


# ---------------------------------------------------------------- bids
def _check_curve(curve):
    assert all(isinstance(w, int) and isinstance(p, int) for w, p in curve)
    assert all(w > 0 and p > 0 for w, p in curve)
    prices = [p for _, p in curve]
    assert prices == sorted(prices) and len(set(prices)) == len(prices)


@pytest.mark.parametrize("hour,tmax", [(17, 35.0), (13, 40.0), (20, 30.0), (7, 25.0), (18, 3.0)])
def test_curves_monotone_positive_and_within_flexibility(hour, tmax):
    start = T0 - 17 * 3600 + hour * 3600
    req = gs.Request(start, start + 5400, outdoor_max_c=tmax)
    pop = gs.make_population(500, hour)
    curves = gs.household_bids(pop, req)
    flex = gs.device_flexibility(pop, req)
    assert sum(len(c) for c in curves) > 0
    for i, c in enumerate(curves):
        _check_curve(c)
        assert sum(w for w, _ in c) <= flex.total_w[i] + 1e-9


def test_hvac_slices_priced_by_tesp_ramp():
    pop = gs.make_population(100, 2)
    bids = gs.fleet_bids(pop, SUMMER)
    flex = gs.device_flexibility(pop, SUMMER)
    i = _first(pop, (bids.device == HVAC).sum(axis=1) == 4)
    cols = np.flatnonzero(bids.device[i] == HVAC)
    cum = np.cumsum(bids.watts[i, cols])
    dtemp = flex.hvac_cop[i] * cum * flex.hvac_g[i]
    usd = pop.comfort_price_mean_usd[i] + dtemp * pop.comfort_ramp[i] * pop.comfort_price_std_usd[i] \
        / flex.hvac_range_c[i]
    np.testing.assert_allclose(bids.price[i, cols], gs.usd_to_wei(usd), atol=len(cols))
    # the last slice pushes the air to (almost) the comfort limit or to zero HVAC power
    assert dtemp[-1] <= flex.hvac_range_c[i] + 1e-9


def test_same_seed_same_bids_and_different_seed_differs():
    a = gs.household_bids(gs.make_population(300, 42), SUMMER)
    b = gs.household_bids(gs.make_population(300, 42), SUMMER)
    c = gs.household_bids(gs.make_population(300, 43), SUMMER)
    assert a == b
    assert a != c


def test_household_parameters_do_not_depend_on_population_size():
    small, big = gs.make_population(10, 7), gs.make_population(1000, 7)
    for name in ("ua_w_per_k", "cool_setpoint_c", "has_ev", "ev_rated_w", "bat_soc0", "wh_capacity_j_per_k"):
        np.testing.assert_array_equal(getattr(small, name), getattr(big, name)[:10])
    assert gs.household_bids(small, SUMMER) == gs.household_bids(big, SUMMER)[:10]


def test_population_overrides():
    pop = gs.make_population(200, 1, ev_share=1.0, cool_setpoint_c=24.0)
    assert pop.has_ev.all() and np.all(pop.cool_setpoint_c == 24.0)
    with pytest.raises(TypeError):
        gs.make_population(3, 1, no_such_field=1)


def test_price_cap_drops_expensive_steps():
    pop = gs.make_population(300, 9)
    cap = gs.usd_to_wei(0.10)
    capped = gs.fleet_bids(pop, gs.Request(T0, T0 + 7200, outdoor_max_c=35.0, max_price_wei_per_kwh=cap))
    full = gs.fleet_bids(pop, SUMMER)
    assert capped.price.max() <= cap
    assert 0 < capped.watts.sum() < full.watts.sum()


def test_usd_per_eth_conversion():
    assert gs.usd_to_wei(0.12, 3000.0) == 40_000_000_000_000
    assert gs.usd_to_wei(0.12, 1500.0) == 80_000_000_000_000
    pop = gs.make_population(50, 4)
    a = gs.fleet_bids(pop, SUMMER, usd_per_eth=3000.0)
    b = gs.fleet_bids(pop, SUMMER, usd_per_eth=1500.0)
    np.testing.assert_array_equal(a.watts, b.watts)
    valid = a.price > 0
    np.testing.assert_allclose(b.price[valid], 2 * a.price[valid], atol=32)


def test_bids_for_request_matches_population_and_accepts_mappings():
    pop = gs.make_population(20, 5)
    ref = gs.household_bids(pop, SUMMER)[7]
    got = gs.bids_for_request({"start": T0, "end": T0 + 7200, "unknown": 1}, household_index=7, seed=5,
                              n_households=20, outdoor_max_c=35.0)
    assert got == ref
    _check_curve(got)
    with pytest.raises(ValueError):
        gs.bids_for_request(SUMMER, household_index=20, n_households=20)


def test_fleet_bids_100k_households_under_one_second():
    pop = gs.make_population(100_000, 1)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        bids = gs.fleet_bids(pop, SUMMER)
        best = min(best, time.perf_counter() - t)
    assert bids.n_steps.sum() > 100_000
    assert best < 1.0, f"100k households took {best:.3f}s"


# ---------------------------------------------------------------- JSON output
def test_write_bids_single_and_fleet(tmp_path):
    pop = gs.make_population(5, 1)
    bids = gs.fleet_bids(pop, SUMMER)
    single = tmp_path / "one.json"
    gs.write_bids(single, bids.curve(2))
    doc = json.loads(single.read_text())
    assert doc == {"version": 1, "source": "gridsim",
                   "bids": [{"watts": w, "price_wei_per_kwh": p} for w, p in bids.curve(2)]}
    fleet = tmp_path / "sub" / "fleet.json"
    gs.write_bids(fleet, bids)
    doc = json.loads(fleet.read_text())
    assert doc["version"] == 1 and doc["source"] == "gridsim"
    assert [h["household"] for h in doc["fleet"]] == [0, 1, 2, 3, 4]
    assert doc["fleet"][3]["bids"] == [{"watts": w, "price_wei_per_kwh": p} for w, p in bids.curve(3)]
    picked = tmp_path / "picked.json"
    gs.write_bids(picked, bids.to_lists(), household=2)
    assert json.loads(picked.read_text()) == json.loads(single.read_text())
    assert sorted(os.listdir(tmp_path)) == ["one.json", "picked.json", "sub"]  # no temp files left
    with pytest.raises(ValueError):
        gs.write_bids(tmp_path / "bad.json", [(0, 5)])
    assert not (tmp_path / "bad.json").exists()


# ---------------------------------------------------------------- delivery
def test_partial_acceptance_follows_bid_order_and_under_delivery():
    pop = gs.make_population(80, 8)
    bids = gs.fleet_bids(pop, SUMMER)
    i = int(np.argmax(bids.n_steps))
    first = int(bids.watts[i, 0])
    dv = gs.simulate_delivery(pop, SUMMER, i, first)
    cheapest_dev = {1: "hvac", 2: "water_heater", 3: "ev", 4: "battery"}[int(bids.device[i, 0])]
    assert dv.dispatched_w[cheapest_dev] == pytest.approx(first)
    assert dv.delivered_w == pytest.approx(first, rel=0.01)
    half = gs.simulate_delivery(pop, SUMMER, i, first, under_delivery=0.5)
    assert half.delivered_w == pytest.approx(first / 2, rel=0.02)
    n1 = gs.simulate_delivery(pop, SUMMER, i, first, noise_std=0.1, rng=3).delivered_w
    n2 = gs.simulate_delivery(pop, SUMMER, i, first, noise_std=0.1, rng=3).delivered_w
    assert n1 == n2 != dv.delivered_w
    over = gs.simulate_delivery(pop, SUMMER, i, 10 * int(bids.watts[i].sum()))
    assert over.physical_w <= bids.watts[i].sum() + 1


def test_heating_mode_keeps_comfort_minimum():
    req = gs.Request(T0 - 10 * 3600, T0 - 8 * 3600, outdoor_max_c=2.0)  # 07:00-09:00 on a cold day
    pop = gs.make_population(60, 12)
    flex = gs.device_flexibility(pop, req)
    heat = np.flatnonzero((flex.hvac_mode == -1) & (flex.hvac_w > 50))
    assert heat.size > 0
    bids = gs.fleet_bids(pop, req)
    for i in heat[:5]:
        dv = gs.simulate_delivery(pop, req, int(i), int(bids.watts[i].sum()))
        assert dv.hvac_mode == -1 and dv.comfort_ok
        win = np.flatnonzero(dv.in_window)
        temps = dv.indoor_c[win[0]: win[-1] + 2]
        assert temps.min() >= pop.heat_min_c[i] - 1e-9
        assert temps.min() < pop.heat_setpoint_c[i] - 0.1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), start_min=st.integers(0, 24 * 4 - 1), dur_min=st.integers(1, 16),
       tmax=st.floats(-5.0, 42.0), frac=st.floats(0.0, 1.5))
def test_accepted_reductions_never_break_constraints(seed, start_min, dur_min, tmax, frac):
    start = T0 - 17 * 3600 + start_min * 900
    req = gs.Request(start, start + dur_min * 900, outdoor_max_c=tmax)
    pop = gs.make_population(6, seed)
    bids = gs.fleet_bids(pop, req)
    for i in range(pop.n):
        offered = int(bids.watts[i].sum())
        dv = gs.simulate_delivery(pop, req, i, int(frac * offered), pre_s=0, post_s=900)
        assert dv.comfort_ok, "indoor temperature left the comfort band"
        assert dv.tank_ok, "tank fell below its minimum"
        assert dv.ev_deadline_ok, "EV misses its departure energy"
        assert dv.soc_ok, "battery below its minimum SOC"
        assert dv.physical_w == pytest.approx(min(int(frac * offered), offered), abs=0.02 * offered + 2)


# ---------------------------------------------------------------- CLI helper and plot
def test_simulate_command_writes_bids_and_plot(tmp_path):
    out = tmp_path / "bids.json"
    png = tmp_path / "hh.png"
    summary = gs.simulate_command(30, 4, T0, T0 + 7200, str(out), False, str(png), household=3,
                                  outdoor_max_c=35.0)
    doc = json.loads(out.read_text())
    assert summary["mode"] == "household" and summary["household"] == 3
    assert summary["n_bids"] == len(doc["bids"]) > 0
    assert summary["offered_watts"] == sum(b["watts"] for b in doc["bids"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    fleet = tmp_path / "fleet.json"
    s2 = gs.simulate_command(30, 4, T0, T0 + 7200, str(fleet), True, None, outdoor_max_c=35.0)
    doc = json.loads(fleet.read_text())
    assert len(doc["fleet"]) == 30 and s2["plot"] is None
    assert s2["offered_watts"] == sum(b["watts"] for h in doc["fleet"] for b in h["bids"])
