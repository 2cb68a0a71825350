"""Feeder-side tests (pandapower power flow); skipped when pandapower is not installed."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("pandapower")

import demand_response.gridsim as gs  # noqa: E402

DAY = 1752537600  # 2025-07-15 00:00 UTC


@pytest.fixture(scope="module")
def hot_suggestion():
    return gs.suggest_request(DAY, seed=0, outdoor_max_c=38.0)


def test_package_import_does_not_need_pandapower_or_matplotlib():
    import subprocess

    code = ("import sys, demand_response.gridsim as g; "
            "assert 'pandapower' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_overloaded_feeder_gives_positive_target_and_window(hot_suggestion):
    s = hot_suggestion
    assert s["overloaded"] is True
    assert s["peak_loading_pct"] > s["threshold_pct"]
    assert s["target_watts"] > 0 and s["target_kw"] == pytest.approx(s["target_watts"] / 1000, abs=0.01)
    assert DAY <= s["event_start"] < s["event_end"] <= DAY + 86400
    assert s["bidding_deadline"] < s["event_start"]
    # the window covers exactly the over-threshold steps around the peak
    times, loading = np.array(s["times"]), np.array(s["loading_pct"])
    inside = (times >= s["event_start"]) & (times < s["event_end"])
    assert np.all(loading[inside] > s["threshold_pct"])
    assert loading.argmax() in np.flatnonzero(inside)
    # the sized target really brings the window back under the threshold (uniform spread)
    assert s["window_peak_after_pct"] <= s["threshold_pct"]


def test_delivered_run_reduces_peak_loading(hot_suggestion):
    s = hot_suggestion
    pop = gs.make_population(s["n_houses"], s["seed"])
    req = gs.Request(s["event_start"], s["event_end"], outdoor_max_c=s["outdoor_max_c"])
    bids = gs.fleet_bids(pop, req)
    assert bids.watts.sum() >= s["target_watts"], "the fleet cannot cover the target"
    accepted, clearing = gs.clear_bids(bids, s["target_watts"])
    assert accepted.sum() >= s["target_watts"] and clearing > 0
    res = gs.feeder_delivered(s, accepted)
    assert res["peak_before_pct"] == pytest.approx(s["peak_loading_pct"], abs=0.002)
    assert res["peak_after_pct"] < res["peak_before_pct"]
    times = np.array(res["times"])
    inside = (times >= s["event_start"]) & (times < s["event_end"])
    after = np.array(res["loading_after_pct"])
    assert after[inside].max() <= s["threshold_pct"] + 1.0
    assert res["delivered_w"] == pytest.approx(accepted.sum(), rel=0.02)


def test_not_overloaded_feeder_has_no_request():
    s = gs.suggest_request(DAY, seed=0, trafo_std_type=None, outdoor_max_c=30.0, include_profile=False)
    assert s["overloaded"] is False and s["target_watts"] == 0 and s["event_start"] is None
    assert 0 < s["peak_loading_pct"] < 100 and s["trafo_sn_kva"] == pytest.approx(400.0)
    assert "loading_pct" not in s


def test_recycled_power_flow_matches_fresh_run():
    from demand_response.gridsim.feeder import _run_powerflows, load_network

    day = gs.feeder_day(DAY, seed=1, trafo_std_type="0.16 MVA 10/0.4 kV")
    k = int(np.argmax(day.loading_pct))
    fresh, _, _ = _run_powerflows(load_network("kerber_dorfnetz", "0.16 MVA 10/0.4 kV"), day.house_w, 0.95, [k])
    assert fresh[0] == pytest.approx(day.loading_pct[k], rel=1e-4)
    assert day.elapsed_s < 30.0
