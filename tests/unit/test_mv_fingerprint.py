"""The published record: anyone holding the data recomputes the figure; tampering shows."""

from __future__ import annotations

import hashlib

import pytest

from demand_response.mv import Fingerprint, MeterDataError, caiso_x_of_y, canonical_text, fingerprint, recompute


D = 1752451200  # Monday
H = 3600
EVENT = (D + 14 * H, D + 16 * H)


def _rows(event_wh: int = 600) -> list[tuple[int, int, int]]:
    rows = [(D - k * 86400 + h * H, H, 1000 + (k * 7 + h) % 90) for k in range(20, 0, -1) for h in range(24)]
    return rows + [(D + h * H, H, event_wh if h in (14, 15) else 1100) for h in range(24)]


def _record() -> Fingerprint:
    rows = _rows()
    return fingerprint("home-1", caiso_x_of_y(rows, *EVENT), rows)


def test_the_record_names_method_parameters_data_range_and_a_sha256_of_the_canonical_csv():
    fp = _record()
    assert fp.method == "caiso-10in10" and fp.params["days"] == 10 and fp.params["cap_pct"] == 20
    used = [r for r in _rows() if fp.data_start <= r[0] < fp.data_end]
    assert fp.intervals == len(used)
    assert fp.data_hash == "0x" + hashlib.sha256(canonical_text("home-1", used).encode()).hexdigest()
    chain = fp.onchain()
    assert all(len(bytes.fromhex(chain[k][2:])) == 32 for k in ("method_id", "data_hash", "record_digest"))
    assert Fingerprint.from_json(fp.to_json()) == fp


def test_a_household_with_the_same_data_recomputes_the_same_figure():
    fp = _record()
    cmp = recompute(Fingerprint.from_json(fp.to_json()), _rows())
    assert cmp.agrees and cmp.same_data and cmp.difference_watts == 0
    assert cmp.message.endswith("agrees")


def test_different_meter_data_is_flagged_with_both_figures():
    fp = _record()
    cmp = recompute(fp, _rows(event_wh=200))
    assert not cmp.agrees and not cmp.same_data
    assert cmp.recomputed_watts == fp.delivered_watts + 400
    assert f"published {fp.delivered_watts} W, recomputed {fp.delivered_watts + 400} W" in cmp.message
    assert "DISAGREES" in cmp.message and "meter data differs" in cmp.message
    assert recompute(fp, _rows(event_wh=200), tolerance_watts=400).agrees


def test_a_changed_parameter_changes_the_method_id_and_the_digest():
    fp = _record()
    other = Fingerprint(**{**fp.__dict__, "params": {**fp.params, "cap_pct": 40}})
    assert other.method_id != fp.method_id and other.record_digest != fp.record_digest


def test_a_forged_or_foreign_record_gets_one_clear_line():
    with pytest.raises(MeterDataError, match="not a published measurement record"):
        Fingerprint.from_json('{"method": "caiso-10in10"}')
    with pytest.raises(MeterDataError, match="format 9"):
        Fingerprint.from_json(_record().to_json().replace('"format":1', '"format":9'))
    forged = Fingerprint(**{**_record().__dict__, "method": "magic"})
    with pytest.raises(MeterDataError, match="unknown baseline method 'magic'"):
        recompute(forged, _rows())


def test_the_on_chain_evidence_leaves_out_the_meter_id_and_reads_back_with_the_households_own():
    fp = _record()
    evidence = fp.evidence()
    assert b"home-1" not in evidence and b'"method":"caiso-10in10"' in evidence
    assert len(evidence) < 500  # about 16 gas of calldata and 8 of log per byte
    assert Fingerprint.from_evidence(evidence, "home-1") == fp
    assert recompute(Fingerprint.from_evidence(evidence, "home-1"), _rows()).agrees


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[1,2]", b"not json", b'{"method":"caiso-10in10"}', b""])
def test_evidence_that_is_not_a_record_is_one_clear_line(data: bytes):
    with pytest.raises(MeterDataError, match="not a (published )?measurement record"):
        Fingerprint.from_evidence(data, "home-1")
