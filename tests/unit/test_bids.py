"""bids.json: every accepted and rejected shape, atomic save, grid snapping and chunking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from demand_response.bids import (
    MAX_FILE_BYTES, BidsError, Offer, chunks, load_bids, parse_bids, prepare, save_bids,
)
from demand_response.market import snap_price_up

CAP = 128 * 10**12


def test_canonical_form_with_watts_and_kw() -> None:
    doc = parse_bids(json.dumps({"version": 1, "source": "manual", "bids": [
        {"watts": 1200, "price_wei_per_kwh": 40 * 10**12},
        {"kw": 0.8, "price_wei_per_kwh": 55 * 10**12},
    ]}))
    assert doc.bids == (Offer(1200, 40 * 10**12), Offer(800, 55 * 10**12))
    assert doc.source == "manual" and not doc.legacy


def test_legacy_seed_format_is_kw_and_wei_per_kwh() -> None:
    doc = parse_bids('{"energy": [1, 2.5], "price": [100, 200]}')
    assert doc.legacy
    assert doc.bids == (Offer(1000, 100), Offer(2500, 200))


def test_fleet_form_cycles_entries() -> None:
    doc = parse_bids(json.dumps({"version": 1, "fleet": [
        {"household": 0, "bids": [{"watts": 1, "price_wei_per_kwh": 5}]},
        {"household": 1, "bids": [{"watts": 2, "price_wei_per_kwh": 6}]},
    ]}))
    assert doc.for_agent(0) == (Offer(1, 5),)
    assert doc.for_agent(1) == (Offer(2, 6),)
    assert doc.for_agent(2) == (Offer(1, 5),)


def test_integral_exponent_price_is_accepted() -> None:
    assert parse_bids('{"version": 1, "bids": [{"watts": 5, "price_wei_per_kwh": 4e13}]}').bids[0].price == 4 * 10**13


BAD = {
    "malformed json": ('{"version": 1, "bids": [', "not valid JSON"),
    "top level list": ("[]", "top level must be an object"),
    "NaN": ('{"version": 1, "bids": [{"watts": NaN, "price_wei_per_kwh": 1}]}', "NaN"),
    "Infinity": ('{"version": 1, "bids": [{"watts": 1, "price_wei_per_kwh": Infinity}]}', "Infinity"),
    "negative watts": ('{"version": 1, "bids": [{"watts": -5, "price_wei_per_kwh": 1}]}', "bids[0]: watts must be positive"),
    "zero price": ('{"version": 1, "bids": [{"watts": 5, "price_wei_per_kwh": 0}]}', "bids[0]: price_wei_per_kwh must be positive"),
    "zero kw": ('{"version": 1, "bids": [{"kw": 0, "price_wei_per_kwh": 3}]}', "bids[0]: kW must be positive"),
    "string watts": ('{"version": 1, "bids": [{"watts": "5", "price_wei_per_kwh": 1}]}', "bids[0]: watts must be a number"),
    "bool watts": ('{"version": 1, "bids": [{"watts": true, "price_wei_per_kwh": 1}]}', "bids[0]: watts must be a number"),
    "fractional wei": ('{"version": 1, "bids": [{"watts": 5, "price_wei_per_kwh": 1.5}]}', "whole number"),
    "sub-watt kw": ('{"version": 1, "bids": [{"kw": 1.0005, "price_wei_per_kwh": 1}]}', "more than 3 decimals"),
    "huge watts": ('{"version": 1, "bids": [{"watts": 4294967296, "price_wei_per_kwh": 1}]}', "too large"),
    "huge exponent": ('{"version": 1, "bids": [{"watts": 1e999999, "price_wei_per_kwh": 1}]}', "too large"),
    "huge price": ('{"version": 1, "bids": [{"watts": 1, "price_wei_per_kwh": %d}]}' % 2**256, "too large"),
    "empty bids": ('{"version": 1, "bids": []}', "bids is empty"),
    "bids not list": ('{"version": 1, "bids": {}}', "must be a list"),
    "unknown top field": ('{"version": 1, "bids": [], "extra": 1}', "unknown field 'extra'"),
    "unknown bid field": ('{"version": 1, "bids": [{"watts": 1, "price_wei_per_kwh": 1, "colour": 2}]}', "unknown field 'colour'"),
    "watts and kw": ('{"version": 1, "bids": [{"watts": 1, "kw": 1, "price_wei_per_kwh": 1}]}', "exactly one of 'watts' or 'kw'"),
    "missing price": ('{"version": 1, "bids": [{"watts": 1}]}', "missing field 'price_wei_per_kwh'"),
    "bad version": ('{"version": 2, "bids": [{"watts": 1, "price_wei_per_kwh": 1}]}', "'version' must be 1"),
    "no version": ('{"bids": [{"watts": 1, "price_wei_per_kwh": 1}]}', "'version' must be 1"),
    "bids and fleet": ('{"version": 1, "bids": [], "fleet": []}', "exactly one of 'bids'"),
    "duplicate key": ('{"version": 1, "version": 1, "bids": []}', "appears twice"),
    "source not string": ('{"version": 1, "source": 5, "bids": [{"watts": 1, "price_wei_per_kwh": 1}]}', "'source' must be a string"),
    "legacy mismatched": ('{"energy": [1, 2], "price": [1]}', "differ in length"),
    "legacy empty": ('{"energy": [], "price": []}', "is empty"),
    "legacy negative": ('{"energy": [-1], "price": [1]}', "energy[0]: kW must be positive"),
    "legacy missing price": ('{"energy": [1]}', "missing 'price'"),
    "legacy unknown": ('{"energy": [1], "price": [1], "x": 1}', "unknown field 'x'"),
    "fleet empty": ('{"version": 1, "fleet": []}', "non-empty list"),
    "fleet entry bad": ('{"version": 1, "fleet": [{"household": -1, "bids": []}]}', "fleet[0].household"),
    "fleet bid bad": ('{"version": 1, "fleet": [{"household": 0, "bids": [{"watts": 0, "price_wei_per_kwh": 1}]}]}',
                      "fleet[0].bids[0]: watts must be positive"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_shape_is_one_line_naming_the_problem_and_file_is_untouched(tmp_path: Path, name: str) -> None:
    text, expected = BAD[name]
    path = tmp_path / "bids.json"
    path.write_text(text, encoding="utf-8")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with pytest.raises(BidsError) as info:
        load_bids(path)
    message = str(info.value)
    assert expected in message
    assert message.startswith(str(path)) and "\n" not in message
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_oversized_file_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "bids.json"
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(BidsError, match="byte limit"):
        load_bids(path)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(BidsError, match="file not found"):
        load_bids(tmp_path / "nope.json")
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(BidsError, match="not UTF-8"):
        load_bids(path)


def test_save_is_canonical_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bids.json"
    save_bids(path, [Offer(1500, 7), (2000, 9)], source="test")
    assert json.loads(path.read_text()) == {"version": 1, "source": "test", "bids": [
        {"watts": 1500, "price_wei_per_kwh": 7}, {"watts": 2000, "price_wei_per_kwh": 9}]}
    assert load_bids(path).bids == (Offer(1500, 7), Offer(2000, 9))
    assert [p.name for p in path.parent.iterdir()] == ["bids.json"]  # no temp files left
    with pytest.raises(BidsError):
        save_bids(path, [Offer(0, 7)])
    assert load_bids(path).bids == (Offer(1500, 7), Offer(2000, 9))  # previous content kept


def test_prepare_snaps_up_and_skips_above_cap() -> None:
    tick = CAP // 128
    ready = prepare([Offer(10, tick + 1), Offer(20, 3 * tick), Offer(30, CAP + 1), Offer(40, CAP)], CAP)
    assert ready.submit == (Offer(10, 2 * tick), Offer(20, 3 * tick), Offer(40, CAP))
    assert [o for o, _ in ready.skipped] == [Offer(30, CAP + 1)]
    assert "above the request's cap" in ready.skipped[0][1]
    for offer in ready.submit:
        assert offer.price % tick == 0 and offer.price >= snap_price_up(offer.price, CAP) - 0


def test_chunks_of_64() -> None:
    offers = [Offer(i + 1, 1) for i in range(130)]
    groups = chunks(offers)
    assert [len(g) for g in groups] == [64, 64, 2]
    assert [o for g in groups for o in g] == offers


def test_bids_file_never_written_by_loading(tmp_path: Path) -> None:
    path = tmp_path / "bids.json"
    path.write_text('{"energy": [1], "price": [5]}')
    os.chmod(path, 0o444)
    assert load_bids(path).bids == (Offer(1000, 5),)
    assert path.read_text() == '{"energy": [1], "price": [5]}'
