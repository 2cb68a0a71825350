"""Salt store and meter readings for sealed and metered requests (no chain)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from demand_response.market import commitment, delivered_watts, metered_delivery, settle_delivery
from demand_response.sealed import (COMMITTED, COMMITTING, MeterReadings, SaltStore, SaltStoreError, SealedEntry,
                                    write_readings)

ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _entry(rid: int = 1, stage: str = COMMITTING) -> SealedEntry:
    salt = SaltStore.new_salt()
    c = commitment(31337, CONTRACT, rid, ACCOUNT, [1000, 500], [10**12, 2 * 10**12], salt)
    return SealedEntry(rid, ACCOUNT, [1000, 500], [10**12, 2 * 10**12], salt, c, stage)


def test_salts_survive_a_restart_with_mode_600(tmp_path: Path) -> None:
    path = tmp_path / ".salts-x.json"
    store = SaltStore(path)
    entry = _entry()
    store.put(entry)  # written before the commitment is sent
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SaltStore(path).get(ACCOUNT.lower(), 1)
    assert again == entry and len(again.salt) == 32
    entry.stage = COMMITTED
    store.put(entry)
    assert [e.stage for e in SaltStore(path).pending(ACCOUNT)] == [COMMITTED]
    assert len({SaltStore.new_salt() for _ in range(64)}) == 64


def test_an_unreadable_salt_file_stops_the_daemon_instead_of_losing_salts(tmp_path: Path) -> None:
    path = tmp_path / ".salts-x.json"
    path.write_text("{not json")
    with pytest.raises(SaltStoreError, match="unreadable salt file"):
        SaltStore(path)
    assert path.read_text() == "{not json"  # left for the user to inspect


def test_commitment_binds_chain_contract_request_bidder_and_salt() -> None:
    salt = b"\x01" * 32
    base = commitment(1, CONTRACT, 1, ACCOUNT, [1000], [10**12], salt)
    assert len(base) == 32
    others = [commitment(2, CONTRACT, 1, ACCOUNT, [1000], [10**12], salt),
              commitment(1, ACCOUNT, 1, ACCOUNT, [1000], [10**12], salt),
              commitment(1, CONTRACT, 2, ACCOUNT, [1000], [10**12], salt),
              commitment(1, CONTRACT, 1, CONTRACT, [1000], [10**12], salt),
              commitment(1, CONTRACT, 1, ACCOUNT, [1001], [10**12], salt),
              commitment(1, CONTRACT, 1, ACCOUNT, [1000], [10**12], b"\x02" * 32)]
    assert base not in others and len(set(others)) == len(others)
    with pytest.raises(ValueError):
        commitment(1, CONTRACT, 1, ACCOUNT, [1000], [10**12], b"short")


def test_meter_readings_by_watts_or_energy_and_bad_rows_skipped(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    meter = MeterReadings(path)
    assert meter.delivered(ACCOUNT, 1, 3600) is None  # no file yet
    write_readings(path, [{"account": ACCOUNT, "request_id": 1, "delivered_watts": 1500},
                          {"account": ACCOUNT, "request_id": 2, "baseline_wh": 3000, "metered_wh": 1800},
                          {"account": ACCOUNT, "request_id": 3, "baseline_wh": "x"}])
    assert meter.delivered(ACCOUNT.lower(), 1, 3600) == 1500
    assert meter.delivered(ACCOUNT, 2, 1800) == 2400  # 1.2 kWh over half an hour
    assert meter.delivered(ACCOUNT, 3, 3600) is None
    write_readings(path, [{"account": ACCOUNT, "request_id": 1, "delivered_watts": 900}])  # replaces
    assert meter.delivered(ACCOUNT, 1, 3600) == 900 and meter.delivered(ACCOUNT, 2, 1800) == 2400
    path.write_text("{half")  # a torn write reads as no data, never as a crash
    assert meter.delivered(ACCOUNT, 1, 3600) is None
    assert delivered_watts(1000, 1500, 3600) == 0


def test_settle_delivery_reference() -> None:
    s = settle_delivery(1000, 3 * 10**12, 400, 10**15)
    assert (s.payout, s.penalty, s.bond_returned, s.to_utility) == (12 * 10**11, 6 * 10**14, 4 * 10**14,
                                                                     18 * 10**11 + 6 * 10**14)
    assert settle_delivery(1000, 3 * 10**12, 5000, 10**15).payout == 3 * 10**12  # capped at accepted
    assert settle_delivery(0, 0, 0, 10**15).bond_returned == 10**15


def test_a_reset_dev_chain_forgets_the_old_deployment_results_and_readings(tmp_path: Path) -> None:
    """`make demo` redeploys at the same address on a new chain: the old run's records and
    meter readings must not be taken for the new run's (other deployments are kept)."""
    from demand_response.results import ResultsFile
    from demand_response.sealed import drop_readings

    results = ResultsFile(tmp_path / "results.json")
    for contract in (CONTRACT, ACCOUNT):
        results.append({"chain_id": 1337, "contract": contract, "request_id": 1, "account": ACCOUNT})
    assert results.forget_deployment(1337, CONTRACT.lower()) == 1
    assert [r["contract"] for r in results.records()] == [ACCOUNT]
    meter = tmp_path / "meter.json"
    write_readings(meter, [{"chain_id": 1337, "contract": CONTRACT, "account": ACCOUNT, "request_id": 1,
                            "delivered_watts": 5},
                           {"chain_id": 1, "contract": CONTRACT, "account": ACCOUNT, "request_id": 2,
                            "delivered_watts": 6}])
    drop_readings(meter, 1337, CONTRACT)
    assert [r["delivered_watts"] for r in json.loads(meter.read_text())["readings"]] == [6]


def test_a_metered_figure_is_capped_by_a_report_and_stands_without_one() -> None:
    assert metered_delivery(None, 700) == 700  # no report: the utility's figure
    assert metered_delivery(500, 700) == 500  # at or above the report: the report stands
    assert metered_delivery(900, 700) == 700  # below it: a dispute
