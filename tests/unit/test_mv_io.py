"""CSV and Green Button (ESPI) import/export round trips, and their bad inputs."""

from __future__ import annotations

import hashlib

import pytest

from demand_response.mv import MeterDataError, MeterStore, canonical_text, data_hash
from demand_response.mv.io import csv_text, read_any, read_csv, read_green_button, write_csv, write_green_button


T0 = 1752451200
DATA = {"home-00001": [(T0 + i * 900, 900, 200 + (i * 37) % 311 - 60) for i in range(3 * 96)],
        "home-00002": [(T0 + i * 3600, 3600, 1500 + i) for i in range(30)]}


def test_csv_round_trips_exactly_and_matches_the_canonical_text(tmp_path):
    path = tmp_path / "m.csv"
    write_csv(path, DATA)
    assert read_csv(path) == {k: [tuple(r) for r in v] for k, v in DATA.items()}
    one = tmp_path / "one.csv"
    write_csv(one, {"home-00002": DATA["home-00002"]})
    assert one.read_text() == canonical_text("home-00002", DATA["home-00002"])
    assert data_hash("home-00002", DATA["home-00002"]) == "0x" + hashlib.sha256(one.read_bytes()).hexdigest()


def test_green_button_round_trips_through_greenbutton_objects(tmp_path):
    pytest.importorskip("greenbutton_objects")
    path = tmp_path / "gb.xml"
    write_green_button(path, DATA)
    assert "http://naesb.org/espi" in path.read_text()
    back = read_green_button(path)
    assert back == {k: [tuple(r) for r in v] for k, v in DATA.items()}
    assert read_any(path) == back
    with MeterStore.open(":memory:") as store:
        store.import_batches(back)
        assert csv_text({m: store.readings(m) for m in store.meters()}) == csv_text(DATA)


def test_green_button_in_kilowatt_hours_scaled_by_the_multiplier_or_in_watts_is_handled(tmp_path):
    pytest.importorskip("greenbutton_objects")
    path = tmp_path / "gb.xml"
    write_green_button(path, {"m1": [(T0, 3600, 2), (T0 + 3600, 3600, 3)]})
    text = path.read_text()
    path.write_text(text.replace("<espi:powerOfTenMultiplier>0<", "<espi:powerOfTenMultiplier>3<"))
    assert read_green_button(path) == {"m1": [(T0, 3600, 2000), (T0 + 3600, 3600, 3000)]}
    path.write_text(text.replace("<espi:powerOfTenMultiplier>0<", "<espi:powerOfTenMultiplier>-1<"))
    with pytest.raises(MeterDataError, match="not whole watt-hours"):
        read_green_button(path)
    path.write_text(text.replace("<espi:uom>72<", "<espi:uom>38<"))  # watts
    with pytest.raises(MeterDataError, match="reads in W, not watt-hours|reads in .* not watt-hours"):
        read_green_button(path)


@pytest.mark.parametrize("content, message", [
    ("meter,when,kwh\nm,1,2\n", "first line must be the header meter_id,start,seconds,wh"),
    ("meter_id,start,seconds,wh\nm,1752451200,900\n", "line 2: expected 4 fields"),
    ("meter_id,start,seconds,wh\nm,1752451200,900,0.4\n", r"line 2: meter m: energy 0.4 .*kWh\?"),
    ("meter_id,start,seconds,wh\nm,1752451200,60,4\n", "line 2: .*interval length 60 s"),
    ("meter_id,start,seconds,wh\n", "no readings after the header"),
    ("meter_id,start,seconds,wh\nbad id,1752451200,900,4\n", "line 2: bad meter id"),
])
def test_bad_csv_gets_one_line_that_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(MeterDataError, match=message) as info:
        read_any(path)
    assert "\n" not in str(info.value)


def test_hostile_or_foreign_xml_is_refused_with_one_line(tmp_path):
    pytest.importorskip("greenbutton_objects")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
                    '&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><feed>&c;</feed>')
    with pytest.raises(MeterDataError):
        read_green_button(bomb)
    broken = tmp_path / "broken.xml"
    broken.write_text("<feed><entry>")
    with pytest.raises(MeterDataError, match="not well-formed XML"):
        read_green_button(broken)
    with pytest.raises(MeterDataError, match="no such file"):
        read_any(tmp_path / "missing.xml")
