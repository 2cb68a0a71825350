"""The meter store on a real PostgreSQL server: a throwaway cluster per module.

initdb runs in a temporary folder on a free port (as ``nobody`` when the tests run as
root, since the server refuses root). Skips, with the reason, only when Debian's
postgresql binaries or psycopg are missing (`make test` installs both).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from demand_response.devchain import free_port
from demand_response.mv import MeterDataError, MeterStore, Reading, caiso_x_of_y, fingerprint
from demand_response.mv.io import csv_text


T0 = 1752451200
Q = 900


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="psycopg is not installed (extra 'mv')")
    bindir = _bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix="mv-pg-"))
    data = tmp / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(tmp, "nobody")
        os.chmod(tmp, 0o700)
        as_user = ["runuser", "-u", "nobody", "--"]
    port = free_port()
    log = tmp / "server.log"
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "mv", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr.decode()[-400:]}") from None
    try:
        yield f"postgresql://mv@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture()
def store(pg_url: str) -> Iterator[MeterStore]:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("mv_readings", "mv_meters", "mv_marks"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    with MeterStore.open(pg_url) as s:
        yield s


def _run(n: int, start: int = T0) -> list[tuple[int, int, int]]:
    return [(start + i * Q, Q, 300 + i % 7) for i in range(n)]


def test_postgres_stores_and_reads_back_what_sqlite_does(store, tmp_path):
    assert store.dialect == "postgresql"
    store.import_batches({"a": _run(96), "b": _run(10)})
    store.add_readings("a", _run(96, T0 + 96 * Q))
    store.add_mark("a", "outage", T0, T0 + Q)
    with MeterStore.open(tmp_path / "m.sqlite") as lite:
        lite.import_batches({"a": _run(96) + _run(96, T0 + 96 * Q), "b": _run(10)})
        lite.add_mark("a", "outage", T0, T0 + Q)
        assert csv_text({m: store.readings(m) for m in store.meters()}) == \
            csv_text({m: lite.readings(m) for m in lite.meters()})
        assert store.marks("a") == lite.marks("a")
        assert store.span("a") == lite.span("a") == (Q, T0, T0 + 192 * Q)


def test_postgres_rolls_back_a_whole_bad_batch(store):
    store.add_readings("a", _run(4))
    for batch, message in (({"new": _run(3), "a": _run(2, T0 + 2 * Q)}, "overlap the stored"),
                           ({"new": _run(3), "b": _run(2) + [(T0 + 5 * Q, Q, 1)]}, "gap of"),
                           ({"new": _run(3), "c": [(T0, Q, 1.5)]}, "not whole watt-hours")):
        with pytest.raises(MeterDataError, match=message):
            store.import_batches(batch)
    assert store.meters() == ["a"] and store.count() == 4
    assert store.readings("a") == [Reading(*r) for r in _run(4)]


def test_postgres_keeps_sql_parameterised_against_hostile_ids(store):
    store.add_readings("a", _run(2))
    assert store.readings("a' OR '1'='1") == []
    with pytest.raises(MeterDataError, match="bad meter id"):
        store.add_readings("a'); DROP TABLE mv_readings; --", _run(1))
    assert store.count() == 2


def test_a_baseline_from_postgres_hashes_the_same_as_from_sqlite(store, tmp_path):
    day = 86400
    event_day = T0 + 14 * day  # a Monday two weeks on
    rows = [(T0 + i * Q, Q, 250 + (i * 13) % 50) for i in range(15 * 96)]
    store.add_readings("home", rows)
    event = (event_day + 17 * 3600, event_day + 19 * 3600)
    pg_result = caiso_x_of_y(store.readings("home"), *event, min_days=5)
    with MeterStore.open(tmp_path / "m.sqlite") as lite:
        lite.add_readings("home", rows)
        lite_result = caiso_x_of_y(lite.readings("home"), *event, min_days=5)
    assert pg_result == lite_result
    assert fingerprint("home", pg_result, rows).data_hash == fingerprint("home", lite_result, rows).data_hash


def test_concurrent_writers_to_one_meter_cannot_both_extend_it(pg_url, store):
    store.add_readings("a", _run(4))
    with MeterStore.open(pg_url) as other:
        other.add_readings("a", _run(4, T0 + 4 * Q))
        with pytest.raises(MeterDataError, match="overlap the stored"):
            store.add_readings("a", _run(4, T0 + 4 * Q))
    assert store.count("a") == 8


def test_two_writers_racing_to_create_one_meter_store_it_once(pg_url, store):
    import threading

    errors: list[str] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        with MeterStore.open(pg_url) as mine:
            barrier.wait()
            try:
                mine.add_readings("race", _run(96))
            except MeterDataError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 3 and all("another writer" in e or "overlap the stored" in e for e in errors)
    assert store.count("race") == 96
