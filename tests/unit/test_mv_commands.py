"""The plain functions behind `dr meter import|baseline|check`, on gridsim data through files."""

from __future__ import annotations

import json

import pytest

from demand_response.gridsim.history import simulate_history
from demand_response.mv import MeterDataError, MeterStore
from demand_response.mv.commands import baseline_command, check_command, import_command


DAY0 = 1752451200 - 20 * 86400


def test_import_then_baseline_then_a_household_check(tmp_path):
    hist = simulate_history(3, 21, DAY0, seed=2, event_days=[20, 13])
    csv = tmp_path / "h.csv"
    hist.write_csv(csv)
    db = tmp_path / "m.sqlite"
    out = import_command(db, csv)
    assert out["stored"] == 3 * 21 * 96 and set(out["meters"]) == {"home-00000", "home-00001", "home-00002"}
    with MeterStore.open(db) as store:
        store.add_mark("home-00001", "event", *hist.events[0])
        store.add_mark("home-00001", "event", *hist.events[1])
    start, end = hist.events[1]
    report = baseline_command(db, "home-00001", start, end, params={"min_days": 5})
    assert report["method"] == "caiso-10in10" and len(report["intervals"]) == 8
    assert report["params"]["excluded"] == [list(hist.events[0])]  # the earlier event, not this one
    assert report["delivered_watts"] == max(0, report["reduction_wh"] * 3600 // 7200)
    check = check_command(db, report["record"])
    assert check["agrees"] and check["same_data"]
    assert json.loads(report["record"])["data_hash"] == report["onchain"]["data_hash"]


def test_commands_fail_with_one_line_for_an_unknown_meter_method_or_a_repeat_import(tmp_path):
    hist = simulate_history(1, 3, DAY0, seed=2)
    csv = tmp_path / "h.csv"
    hist.write_csv(csv)
    db = tmp_path / "m.sqlite"
    import_command(db, csv)
    with pytest.raises(MeterDataError, match="overlap the stored"):
        import_command(db, csv)
    with pytest.raises(MeterDataError, match="meter nope is not in"):
        baseline_command(db, "nope", DAY0, DAY0 + 3600)
    with pytest.raises(MeterDataError, match="unknown baseline method"):
        baseline_command(db, "home-00000", DAY0, DAY0 + 3600, method="guess")
