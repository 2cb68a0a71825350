"""The SQLite meter store: bad batches get one clear line and change nothing stored."""

from __future__ import annotations

import pytest

from demand_response.mv import MeterDataError, MeterStore, Reading, StoreError


T0 = 1752451200
Q = 900


def _run(n: int, start: int = T0, wh: int = 250) -> list[tuple[int, int, int]]:
    return [(start + i * Q, Q, wh + i) for i in range(n)]


@pytest.fixture()
def store(tmp_path):
    with MeterStore.open(tmp_path / "meters.sqlite") as s:
        yield s


def test_a_batch_is_stored_and_read_back_in_order(store):
    assert store.add_readings("home-1", list(reversed(_run(8)))) == 8
    assert store.readings("home-1") == [Reading(*r) for r in _run(8)]
    assert store.readings("home-1", T0 + 2 * Q, T0 + 4 * Q) == [Reading(*r) for r in _run(8)[2:4]]
    assert store.span("home-1") == (Q, T0, T0 + 8 * Q)
    assert store.meters() == ["home-1"] and store.count() == 8


def test_batches_extend_the_run_at_either_end(store):
    store.add_readings("m", _run(4, T0 + 4 * Q))
    store.add_readings("m", _run(4, T0 + 8 * Q))
    store.add_readings("m", _run(4, T0))
    assert [r.start for r in store.readings("m")] == [T0 + i * Q for i in range(12)]


@pytest.mark.parametrize("batch, message", [
    (_run(3) + [(T0 + 5 * Q, Q, 1)], r"gap of 2 interval\(s\) between"),
    (_run(3) + [(T0 + Q, Q, 9)], "duplicate interval at"),
    ([(T0, Q, 0.25)], r"not whole watt-hours \(kWh\? multiply by 1000"),
    ([(T0, Q, 900_000)], "wrong units"),
    ([(T0, 15, 10)], r"interval length 15 s \(minutes\? give seconds\)"),
    ([(T0, Q, 1), (T0 + 2 * Q, 1800, 1)], r"mixed interval lengths \[900, 1800\]"),
    ([(T0 + 60, Q, 1)], "not on a 900 s boundary"),
    ([("yesterday", Q, 1)], "is not unix seconds"),
    ([], "no readings given"),
])
def test_a_bad_batch_gets_one_line_and_stores_nothing(store, batch, message):
    store.add_readings("keep", _run(2))
    with pytest.raises(MeterDataError, match=message) as info:
        store.import_batches({"ok-meter": _run(4), "bad": batch})
    assert "\n" not in str(info.value)
    assert store.meters() == ["keep"] and store.count() == 2  # the good meter of the batch was rolled back


def test_overlapping_gapped_or_resampled_batches_against_the_stored_run_are_refused(store):
    store.add_readings("m", _run(4))
    with pytest.raises(MeterDataError, match="overlap the stored"):
        store.add_readings("m", _run(4, T0 + 2 * Q))
    with pytest.raises(MeterDataError, match="leave a gap to the stored"):
        store.add_readings("m", _run(4, T0 + 6 * Q))
    with pytest.raises(MeterDataError, match="the store holds 900 s intervals"):
        store.add_readings("m", [(T0 + 4 * Q, 1800, 5)])
    assert store.count("m") == 4


def test_hostile_meter_ids_are_refused_and_sql_stays_parameterised(store):
    for bad in ("", "x'; DROP TABLE mv_readings; --", "a" * 65, "../etc", None):
        with pytest.raises(MeterDataError, match="bad meter id"):
            store.add_readings(bad, _run(1))  # type: ignore[arg-type]
    assert store.readings("x' OR '1'='1") == []
    assert store.count() == 0


def test_event_and_outage_marks_are_kept_per_meter(store):
    store.add_mark("m", "event", T0, T0 + 7200)
    store.add_mark("m", "outage", T0 - 86400, T0 - 80000)
    assert [m.kind for m in store.marks("m")] == ["outage", "event"]
    assert store.marks("m", ["event"])[0].stop == T0 + 7200
    with pytest.raises(MeterDataError, match="already recorded"):
        store.add_mark("m", "event", T0, T0 + 60)
    with pytest.raises(MeterDataError, match="kind 'holiday'"):
        store.add_mark("m", "holiday", T0, T0 + 60)


def test_opening_a_store_in_a_missing_folder_or_postgres_without_a_server_says_so(tmp_path):
    with pytest.raises(StoreError, match="does not exist; create it"):
        MeterStore.open(tmp_path / "nope" / "m.sqlite")
    with pytest.raises(StoreError, match="cannot open the meter store postgresql://u@127.0.0.1:1/x"):
        MeterStore.open("postgresql://u:secret@127.0.0.1:1/x?connect_timeout=2")


def test_a_second_connection_sees_committed_data_only(tmp_path):
    path = tmp_path / "m.sqlite"
    with MeterStore.open(path) as a, MeterStore.open(f"sqlite:///{path}") as b:
        a.add_readings("m", _run(3))
        with pytest.raises(MeterDataError):
            a.add_readings("m", _run(2, T0 + 3 * Q) + [(T0 + 9 * Q, Q, 1)])
        assert b.count("m") == 3


def test_the_mv_core_imports_without_numpy_or_pandas():
    import subprocess
    import sys

    code = ("import sys, demand_response.mv, demand_response.mv.io, demand_response.mv.commands; "
            "print(sorted(m for m in ('numpy', 'pandas', 'psycopg', 'opendsm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
