"""A user override reported over OpenADR 2.0b: the consumer's actuator hears the user turn a device
back on, its VEN tells the utility's VTN (an oadrCreateOpt for the event, or an optOut answer when
the override came before the dispatch), the VTN records it and the utility's dashboard and API
show the winner opted out with its expected under-delivery. A real OpenLEADR VTN and VENs on
loopback, a real chain (anvil), the Flask app through its test client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demand_response import devchain
from demand_response.devices import Actuator, Award, FakeClock, parse_config
from demand_response.openadr.context import OpenAdrError
from demand_response.openadr.store import OPT_IN, OPT_OUT, vtn_store_path
from demand_response.openadr.ven import ConsumerVen
from demand_response.openadr.vtn import UtilityVtn

from openadr_helpers import POLL_S, REPORT_S, wait_for
from test_openadr2 import _enrol, _request


def _actuator(tmp_path: Path, clock: FakeClock) -> Actuator:
    config = parse_config({
        "command_log": str(tmp_path / "commands.jsonl"), "state_file": str(tmp_path / "devices-state.json"),
        "devices": [{"name": "water-heater", "kind": "simulation", "device": "water_heater", "household": 1,
                     "shed_w": 2000, "priority": 1}],
    }, tmp_path / "devices.json")
    return Actuator(config, clock=clock)


def _selected(anvil, w3, dr, utility, bids: dict) -> tuple[int, object]:
    rid = _request(anvil, w3, dr, utility, target=sum(bids.values()))
    for signer, watts in bids.items():
        dr.submit_bids(signer, rid, [watts], [10**12])
    anvil.rpc("evm_increaseTime", [31])
    anvil.rpc("evm_mine", [])
    dr.select_winners(utility, rid)
    return rid, dr.get_request(rid)


def _app(anvil, dr, keys, state_dir: Path):
    from flaskapp import create_app

    return create_app({
        "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "t", "RPC_URL": anvil.url,
        "CONTRACT_ADDRESS": dr.address, "UTILITY_PRIVATE_KEY": keys[0], "STATE_DIR": str(state_dir),
        "BIDS_FILE": str(state_dir / "bids.json"), "RESULTS_FILE": str(state_dir / "results.json"),
        "DR_ENV_FILE": str(state_dir / "missing.env"), "DEPLOYMENTS_FILE": str(state_dir / "deployments.json"),
        "START_BLOCK": "0", "WEB_AUTH": "off"})


def test_a_device_override_during_the_event_is_an_opt_out_the_dashboard_shows_as_expected_under_delivery(
        anvil, w3, dr, utility, keys, tmp_path):
    alice, bob = _enrol(dr, utility, keys[1:3])
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    vtn = UtilityVtn(dr, vtn_store_path(state_dir, w3.eth.chain_id, dr.address), port=devchain.free_port(),
                     poll_interval=POLL_S, report_interval=REPORT_S).start()
    ven_a = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], programme=vtn.programme()).start()
    ven_b = ConsumerVen(vtn.url, vtn.vtn_id, keys[2], programme=vtn.programme()).start()
    try:
        rid, info = _selected(anvil, w3, dr, utility, {alice: 2000, bob: 1000})
        vtn.dispatch(rid)
        award = ven_a.next_award(kind="dispatch")
        assert ven_b.next_award(kind="dispatch").request_id == rid
        wait_for(lambda: all(e.opt == OPT_IN for e in vtn.store.events(rid, kind="dispatch")), what="both opt-ins")
        assert vtn.expected_under_delivery(rid) == {}

        # alice's home: the award is planned on the water heater, shed at the start, and the user
        # turns it back on during the event; the actuator's opt-out goes to the VTN through the VEN.
        clock = FakeClock(info.event_start + 60)
        with _actuator(tmp_path, clock) as actuator:
            actuator.on_opt_out = lambda out: ven_a.opt_out(out.request_id, [out.device])
            actuator.plan(Award(rid, award.watts, info.event_start, info.event_end))
            assert [s.status for s in actuator.shed()] == ["shed"]
            outs = actuator.user_override("water-heater")
        assert [(o.device, o.before_event) for o in outs] == [("water-heater", False)]
        assert vtn.expected_under_delivery(rid) == {alice.address: 2000}
        (event,) = [e for e in vtn.store.events(rid, kind="dispatch") if e.address == alice.address]
        assert event.opt == OPT_OUT
        assert [(h["opt"], h["reason"], h["resources"]) for h in vtn.store.opt_history(event.event_id)] == [
            (OPT_IN, None, []), (OPT_OUT, "overrideStatus", ["water-heater"])]

        # A hostile VEN cannot opt out of someone else's event: the VTN refuses, nothing changes.
        ven_b._dispatches[rid] = award  # bob forges alice's event id into his own opt
        with pytest.raises(OpenAdrError, match="refused the opt-out"):
            ven_b.opt_out(rid, ["dryer"])
        assert vtn.expected_under_delivery(rid) == {alice.address: 2000}
    finally:
        ven_a.stop()
        ven_b.stop()
        vtn.stop()

    # The utility's dashboard and API (the same VTN store, read through STATE_DIR).
    client = _app(anvil, dr, keys, state_dir).test_client()
    page = client.get(f"/utility/requests/{rid}").get_data(as_text=True)
    rows = {who: page[page.find(f'data-testid="openadr-{who}"'):].split("</tr>")[0] for who in (alice.address,
                                                                                               bob.address)}
    assert 'data-testid="openadr"' in page
    assert ">opted out<" in rows[alice.address] and "override: water-heater" in rows[alice.address]
    assert 'data-testid="under">2 kW<' in rows[alice.address]
    assert ">opted in<" in rows[bob.address] and 'data-testid="under">0 kW<' in rows[bob.address]
    assert 'data-testid="under-total">2 kW<' in page
    data = client.get(f"/api/requests/{rid}").get_json()["openadr"]
    assert data["expected_under_watts"] == 2000
    assert {(w["consumer"], w["opt"], w["expected_under_watts"]) for w in data["winners"]} == {
        (alice.address, OPT_OUT, 2000), (bob.address, OPT_IN, 0)}


def test_an_override_before_the_dispatch_arrives_answers_the_dispatch_opt_out(anvil, w3, dr, utility, keys, tmp_path):
    (alice,) = _enrol(dr, utility, keys[1:2])
    vtn = UtilityVtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), poll_interval=POLL_S,
                     report_interval=REPORT_S).start()
    ven = ConsumerVen(vtn.url, vtn.vtn_id, keys[1], programme=vtn.programme()).start()
    try:
        rid, info = _selected(anvil, w3, dr, utility, {alice: 1500})
        clock = FakeClock(info.event_start - 600)
        with _actuator(tmp_path, clock) as actuator:
            actuator.on_opt_out = lambda out: ven.opt_out(out.request_id, [out.device])
            actuator.plan(Award(rid, 1500, info.event_start, info.event_end))
            (out,) = actuator.user_override("water-heater")
        assert out.before_event
        vtn.dispatch(rid)
        assert ven.next_award(kind="dispatch").request_id == rid
        wait_for(lambda: vtn.expected_under_delivery(rid) == {alice.address: 1500}, what="the opt-out recorded")
    finally:
        ven.stop()
        vtn.stop()
    assert json.loads((tmp_path / "commands.jsonl").read_text().splitlines()[-1])["command"] == "opt_out"
