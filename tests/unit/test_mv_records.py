"""Delivery records: one place on disk per (chain, contract, request, winner), written atomically."""

from __future__ import annotations

import json

import pytest

from demand_response.config import Settings, load_settings
from demand_response.mv import MeterDataError, compute, fingerprint
from demand_response.mv.records import (build_record, fingerprint_of, read_records, record_path, series_of,
                                        write_record)

CONTRACT = "0x" + "Ab" * 20
ALICE = "0x" + "11" * 20
BOB = "0x" + "2C" * 20
DAY = 86400
T0 = 1752451200  # Monday 2025-07-14 00:00 UTC


def _readings() -> list[tuple[int, int, int]]:
    """Two flat hours of 15-minute data, then a 1-hour event with half the load."""
    rows = [(T0 + i * 900, 900, 250) for i in range(8)]
    return rows + [(T0 + 8 * 900 + i * 900, 900, 125) for i in range(4)]


def _record(address: str) -> dict:
    rows = _readings()
    result = compute("meter-before-after", rows, T0 + 7200, T0 + 10800)
    fp = fingerprint(address, result, rows)
    return build_record(fp, series_of(result), chain_id=31337, contract=CONTRACT, request_id=4, address=address)


def test_a_record_holds_the_fingerprint_figures_and_the_per_interval_series() -> None:
    record = _record(ALICE)
    assert record["baseline_wh"] == 1000 and record["metered_wh"] == 500 and record["delivered_watts"] == 500
    assert record["intervals"][0] == [T0 + 7200, 900, 250, 125] and len(record["intervals"]) == 4
    assert record["method"] == "meter-before-after" and record["data_hash"].startswith("0x")
    assert fingerprint_of(record).record_digest == record["record_digest"]


def test_written_records_are_read_back_per_request_sorted_by_address(tmp_path) -> None:
    for who in (BOB, ALICE):
        write_record(tmp_path, 31337, CONTRACT, 4, who, _record(who))
    got = read_records(tmp_path, 31337, CONTRACT, 4)
    assert [r["address"] for r in got] == [ALICE, BOB]
    assert read_records(tmp_path, 31337, CONTRACT, 5) == []
    assert record_path(tmp_path, 31337, CONTRACT, 4, BOB).name == BOB.lower() + ".json"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_corrupt_record_file_is_skipped_not_fatal(tmp_path) -> None:
    write_record(tmp_path, 1, CONTRACT, 0, ALICE, _record(ALICE))
    record_path(tmp_path, 1, CONTRACT, 0, BOB).write_text("{not json")
    assert [r["address"] for r in read_records(tmp_path, 1, CONTRACT, 0)] == [ALICE]


@pytest.mark.parametrize("contract, request_id, address", [
    ("../../etc", 1, ALICE), (CONTRACT, -1, ALICE), (CONTRACT, "1/../2", ALICE), (CONTRACT, 1, "0x../../x"),
    (CONTRACT, True, ALICE),
])
def test_hostile_path_parts_are_refused_with_one_line(tmp_path, contract, request_id, address) -> None:
    with pytest.raises(MeterDataError, match="delivery record"):
        record_path(tmp_path, 1, contract, request_id, address)


def test_records_dir_defaults_under_the_state_dir_and_follows_records_dir(tmp_path) -> None:
    assert Settings(state_dir=tmp_path).records_dir == tmp_path / "delivery-records"
    env = tmp_path / "none.env"
    s = load_settings(env, environ={"RECORDS_DIR": str(tmp_path / "r"), "STATE_DIR": str(tmp_path)})
    assert s.records_dir == tmp_path / "r"
    json.dumps(_record(ALICE))  # the record is plain JSON
