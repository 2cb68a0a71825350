"""gridsim interval histories: deterministic, realistic in shape, with a known true reduction."""

from __future__ import annotations

import numpy as np
import pytest

from demand_response.gridsim.history import simulate_history
from demand_response.mv import MeterStore, caiso_x_of_y, check_series, sum_results
from demand_response.mv.io import read_csv


DAY0 = 1752451200 - 30 * 86400  # 2025-06-14, a Saturday; day 30 is Monday 2025-07-14


@pytest.fixture(scope="module")
def hist():
    return simulate_history(200, 31, DAY0, seed=7, event_days=[30, 25])


def test_the_same_seed_gives_the_same_history_and_another_seed_another(hist):
    again = simulate_history(200, 31, DAY0, seed=7, event_days=[30, 25])
    assert np.array_equal(hist.wh, again.wh) and np.array_equal(hist.true_reduction_wh, again.true_reduction_wh)
    assert not np.array_equal(hist.wh, simulate_history(200, 31, DAY0, seed=8, event_days=[30, 25]).wh)


def test_every_home_has_a_gap_free_run_of_integer_watt_hours(hist):
    assert hist.wh.shape == (200, 31 * 96) and hist.wh.dtype == np.int32
    rows = check_series("home-00003", hist.readings(3))
    assert len(rows) == 31 * 96 and rows[0].start == DAY0 and {r.seconds for r in rows} == {900}


def test_loads_follow_the_weather_and_weekends_differ(hist):
    daily = hist.wh.sum(axis=0).reshape(31, 96).sum(axis=1)
    no_event = [k for k in range(31) if k not in (25, 30)]
    corr = np.corrcoef(hist.outdoor_max_c[no_event], daily[no_event])[0, 1]
    assert corr > 0.5  # hotter days, more air conditioning
    assert not hist.is_business_day(0) and hist.is_business_day(30)


def test_events_cut_load_by_exactly_the_recorded_true_reduction(hist):
    assert hist.events == [(DAY0 + 25 * 86400 + 17 * 3600, DAY0 + 25 * 86400 + 19 * 3600),
                           (DAY0 + 30 * 86400 + 17 * 3600, DAY0 + 30 * 86400 + 19 * 3600)]
    red = hist.true_reduction_wh[:, 1]
    assert (red >= 0).all() and red.sum() > 0
    i = int(np.argmax(red))
    assert hist.true_delivered_watts(i, 1) == red[i] * 3600 // 7200


def test_a_portfolio_baseline_finds_the_true_reduction_within_a_few_percent(hist):
    start, end = hist.events[1]
    results = [caiso_x_of_y(hist.readings(i), start, end, excluded=[hist.events[0]], min_days=5)
               for i in range(hist.n)]
    _, _, estimated = sum_results(results)
    true_w = int(hist.true_reduction_wh[:, 1].sum()) * 3600 // (end - start)
    assert abs(estimated - true_w) < 0.15 * true_w


def test_histories_go_to_csv_and_the_store(hist, tmp_path):
    path = tmp_path / "h.csv"
    hist.write_csv(path, homes=[0, 1])
    data = read_csv(path)
    with MeterStore.open(tmp_path / "m.sqlite") as store:
        store.import_batches(data)
        assert store.readings("home-00001") == [tuple(r) for r in hist.readings(1)]
