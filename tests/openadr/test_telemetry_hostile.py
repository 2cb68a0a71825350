"""Hostile telemetry at a real OpenLEADR VTN on loopback (a real chain, real OpenLEADR VENs, and
hand-made oadrUpdateReport messages posted over HTTP the way a hostile VEN would): a report under
another VEN's report request, a report before registering, absurd values, a resource id that
names another meter. Each is one log line and nothing reaches the meter feed."""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from functools import partial

import pytest

from demand_response import devchain
from demand_response.chain import Signer
from demand_response.openadr.ven import ConsumerVen
from demand_response.openadr.vtn import MAX_TELEMETRY_W, Telemetry, UtilityVtn

from openadr_helpers import POLL_S, REPORT_S, wait_for

_VTN_LOGGER = "demand_response.openadr.vtn"


@pytest.fixture
def rig(anvil, w3, dr, utility, keys, tmp_path):
    """A VTN whose telemetry goes to ``seen``; alice's VEN reports 1 kW, bob's VEN reports nothing."""
    alice, bob = (Signer.from_key(w3, k) for k in keys[1:3])
    for who in (alice, bob):
        dr.enrol(utility, who.address)
    seen: list[Telemetry] = []
    vtn = UtilityVtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), poll_interval=POLL_S,
                     report_interval=REPORT_S, on_telemetry=seen.append).start()
    alice_ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], read_power=lambda: 1000.0, sampling_interval=REPORT_S)
    bob_ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[2])
    try:
        alice_ven.start()
        bob_ven.start()
        wait_for(lambda: seen, timeout=15, what="alice's first reading")
        yield vtn, alice_ven, bob_ven, seen
    finally:
        alice_ven.stop()
        bob_ven.stop()
        vtn.stop()


def _request_of(vtn: UtilityVtn, ven_id: str) -> tuple[str, str]:
    """(report request id, r_id) the VTN asked of ``ven_id``."""
    callbacks = vtn._server.services["report_service"].report_callbacks
    return next(key for key, cb in callbacks.items() if isinstance(cb, partial) and cb.args[1] == ven_id)


def _post_report(vtn: UtilityVtn, ven_id: str, request_id: str, r_id: str, value: float,
                 at: datetime | None = None) -> str:
    """Post one oadrUpdateReport as ``ven_id`` and return the VTN's reply (XML)."""
    from openleadr import objects
    from openleadr.messaging import create_message

    report = objects.Report(report_specifier_id="x", report_name="TELEMETRY_USAGE", report_request_id=request_id,
                            intervals=[objects.ReportInterval(dtstart=at or datetime.now(timezone.utc),
                                                              report_payload=objects.ReportPayload(r_id=r_id,
                                                                                                   value=value))])
    body = create_message("oadrUpdateReport", ven_id=ven_id, request_id="req-1", reports=[asdict(report)])
    request = urllib.request.Request(vtn.url + "/EiReport", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/xml"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.read().decode()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == _VTN_LOGGER and text in r.getMessage()]


def test_a_hand_made_report_of_a_vens_own_request_is_taken_so_the_refusals_below_are_real(rig):
    vtn, alice, _, seen = rig
    request_id, r_id = _request_of(vtn, alice.ven_id)
    reply = _post_report(vtn, alice.ven_id, request_id, r_id, 1234.0)
    assert "oadrUpdatedReport" in reply and "<ei:responseCode>200</ei:responseCode>" in reply
    assert any(t.watts == 1234.0 and t.meter_id == f"{t.address}@meter" for t in seen)


def test_a_ven_reporting_under_another_vens_report_request_is_refused_with_one_line(rig, caplog):
    vtn, alice, bob, seen = rig
    request_id, r_id = _request_of(vtn, alice.ven_id)
    with caplog.at_level(logging.WARNING):
        reply = _post_report(vtn, bob.ven_id, request_id, r_id, 99_999.0)
    assert "<ei:responseCode>452</ei:responseCode>" in reply
    assert len(_lines(caplog, "which belongs to another VEN")) == 1
    assert not [r for r in caplog.records if r.name == "openleadr" and r.levelno >= logging.WARNING]  # no echo
    assert not any(t.watts == 99_999.0 for t in seen)


def test_a_report_before_registering_is_refused_with_one_line(rig, caplog):
    vtn, alice, bob, seen = rig
    _, r_id = _request_of(vtn, alice.ven_id)
    with caplog.at_level(logging.WARNING, logger=_VTN_LOGGER):
        # a VEN that never registered: OpenLEADR asks it to register, our lookup says why
        unknown = _post_report(vtn, "not-a-registered-ven", "made-up", r_id, 500.0)
        # a registered VEN that never registered a report: no request was made of it
        unasked = _post_report(vtn, bob.ven_id, "made-up", r_id, 500.0)
    assert "oadrRequestReregistration" in unknown
    assert len(_lines(caplog, "no VEN is registered under it")) == 1
    assert "<ei:responseCode>452</ei:responseCode>" in unasked
    assert len(_lines(caplog, "never asked of it")) == 1
    assert not any(t.watts == 500.0 for t in seen)


@pytest.mark.parametrize("value, when, line", [
    (5e9, timedelta(0), f"beyond ±{MAX_TELEMETRY_W} W"),
    (-2e6, timedelta(0), f"beyond ±{MAX_TELEMETRY_W} W"),
    (800.0, timedelta(days=1), "too far from the VTN's clock"),
    (800.0, -timedelta(days=1), "too far from the VTN's clock"),
])
def test_an_absurd_reading_of_a_vens_own_report_is_one_line_and_not_stored(rig, caplog, value, when, line):
    vtn, alice, _, seen = rig
    request_id, r_id = _request_of(vtn, alice.ven_id)
    with caplog.at_level(logging.WARNING, logger=_VTN_LOGGER):
        _post_report(vtn, alice.ven_id, request_id, r_id, value, datetime.now(timezone.utc) + when)
    assert len(_lines(caplog, line)) == 1
    assert not any(t.watts == value for t in seen)


def test_a_ven_naming_another_meter_as_its_resource_is_not_asked_for_telemetry(anvil, w3, dr, utility, keys,
                                                                              tmp_path, caplog):
    mallory, victim = (Signer.from_key(w3, k) for k in keys[3:5])
    dr.enrol(utility, mallory.address)
    seen: list[Telemetry] = []
    vtn = UtilityVtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), poll_interval=POLL_S,
                     report_interval=REPORT_S, on_telemetry=seen.append).start()
    ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[3], read_power=lambda: 1000.0, sampling_interval=REPORT_S,
                      resource_id=f"{victim.address}@devices")
    try:
        with caplog.at_level(logging.WARNING, logger=_VTN_LOGGER):
            ven.start()
            wait_for(lambda: _lines(caplog, "offered telemetry for resource"), what="the refusal")
        callbacks = vtn._server.services["report_service"].report_callbacks.values()
        assert not any(isinstance(cb, partial) and cb.args[1] == ven.ven_id for cb in callbacks)
    finally:
        ven.stop()
        vtn.stop()
    assert len(_lines(caplog, "offered telemetry for resource")) == 1
    assert seen == []


def test_a_report_without_readings_is_acknowledged_not_an_error(rig, caplog):
    """OpenLEADR's own handler fails (HTTP 500, a traceback) on a report with no intervals."""
    from openleadr.messaging import create_message

    vtn, alice, _, _ = rig
    request_id, _ = _request_of(vtn, alice.ven_id)
    body = create_message("oadrUpdateReport", ven_id=alice.ven_id, request_id="req-2", reports=[
        {"report_specifier_id": "x", "report_name": "TELEMETRY_USAGE", "report_request_id": request_id,
         "created_date_time": datetime.now(timezone.utc)}])
    request = urllib.request.Request(vtn.url + "/EiReport", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/xml"})
    with caplog.at_level(logging.WARNING), urllib.request.urlopen(request, timeout=10) as reply:
        assert "oadrUpdatedReport" in reply.read().decode()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_vtn_asking_for_a_longer_interval_than_the_vens_shortest_gets_telemetry(anvil, w3, dr, utility, keys,
                                                                                  tmp_path):
    """The VEN offers any interval from its own up to an hour; the VTN's (here 2 s, the VEN's
    shortest 1 s) is inside that range, so the VEN reports rather than refusing the request."""
    dr.enrol(utility, Signer.from_key(w3, keys[1]).address)
    seen: list[Telemetry] = []
    vtn = UtilityVtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), poll_interval=POLL_S,
                     report_interval=2 * REPORT_S, on_telemetry=seen.append).start()
    ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], read_power=lambda: 640.0, sampling_interval=REPORT_S)
    try:
        ven.start()
        wait_for(lambda: seen, timeout=15, what="a reading at the VTN's interval")
    finally:
        ven.stop()
        vtn.stop()
    assert seen[0].watts == 640.0 and ven.samples >= 1
