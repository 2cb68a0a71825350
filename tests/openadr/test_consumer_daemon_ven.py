"""``VTN_URL``: a ``dr consumer run`` process is a VEN of the utility's VTN, and the user pressing
its plug's button during the event reaches the VTN as an opt-out. Real parts only: anvil, a
Mosquitto broker and a simulated Tasmota plug (a real MQTT client), an OpenLEADR VTN on loopback,
the daemon as a subprocess; the chain's clock is moved to the event."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from demand_response import devchain
from demand_response.chain import Signer
from demand_response.openadr.store import OPT_IN
from demand_response.openadr.vtn import UtilityVtn

from daemon_helpers import Daemon, dr_env
from openadr_helpers import CAP, POLL_S, REPORT_S, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[object]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make system-deps installs it as root)")
    from demand_response.devices.peers import Mosquitto

    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


def test_a_plug_turned_back_on_during_the_event_reaches_the_vtn_as_an_opt_out(anvil, w3, dr, utility, keys, tmp_path,
                                                                            broker):
    from demand_response.devices.peers import SimTasmota

    home = Signer.from_key(w3, keys[3])
    dr.enrol(utility, home.address)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 2, "price": "0.0001"}]}))
    (tmp_path / "devices.json").write_text(json.dumps({
        "revert_margin_s": 30, "command_log": str(tmp_path / "commands.jsonl"),
        "state_file": str(tmp_path / "devices-state.json"),
        "brokers": {"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-home"}},
        "devices": [{"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": "wh", "shed_w": 2000}]}))
    plug = SimTasmota(broker.port, "wh", load_w=2000)
    wait_for(plug.ready.is_set, what="the plug on the broker")
    vtn = UtilityVtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), poll_interval=POLL_S,
                     report_interval=REPORT_S).start()
    start_block = w3.eth.block_number
    consumer = Daemon(
        ["consumer", "run", "--rpc-url", anvil.url, "--contract", dr.address, "--label", "home",
         "--bids-file", str(tmp_path / "bids.json"), "--results-file", str(tmp_path / "results.json"),
         "--state-dir", str(tmp_path), "--from-block", str(start_block)],
        tmp_path, tmp_path / "consumer.log",
        env=dr_env(CONSUMER_PRIVATE_KEY=keys[3], DEVICES_FILE=str(tmp_path / "devices.json"), VTN_URL=vtn.url,
                   BID_MARGIN="0"))
    try:
        consumer.wait_for("openadr: registered at the VTN")
        consumer.wait_for("listening for requests")
        anvil.rpc("evm_mine", [])
        now = int(w3.eth.get_block("latest")["timestamp"])
        rid, _ = dr.request_reduction(utility, 2000, now + 600, now + 600 + 3600, now + 30, CAP, 0, None)
        info = dr.get_request(rid)
        consumer.wait_for(f"on request {rid} (tx")
        anvil.rpc("evm_increaseTime", [31])
        anvil.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        consumer.wait_for(f"request {rid}: devices will shed water-heater 2 kW")
        vtn.dispatch(rid)
        wait_for(lambda: [e.opt for e in vtn.store.events(rid, kind="dispatch")] == [OPT_IN], timeout=15,
                 what="the daemon's VEN opting in")

        anvil.rpc("anvil_setNextBlockTimestamp", [info.event_start])
        anvil.rpc("evm_mine", [])
        wait_for(lambda: not plug.on, timeout=30, what="the plug shed at the event start")
        consumer.wait_for("water-heater shed (off)")
        plug.press()  # the user wants hot water
        anvil.rpc("anvil_setNextBlockTimestamp", [info.event_start + 11])  # the next state poll is due
        anvil.rpc("evm_mine", [])
        wait_for(lambda: vtn.expected_under_delivery(rid) == {home.address: 2000}, timeout=30,
                 what="the opt-out recorded by the VTN")
        consumer.wait_for(f"request {rid}: openadr: opt-out acknowledged by the VTN")
    finally:
        consumer.stop()
        plug.close()
        vtn.stop()
    history = [json.loads(line) for line in (tmp_path / "commands.jsonl").read_text().splitlines()]
    assert [r["command"] for r in history if r["command"] in ("shed", "opt_out")] == ["shed", "opt_out"]
    assert next(r for r in history if r["command"] == "opt_out")["params"]["source"] == "device"


def test_vtn_url_with_an_account_the_node_unlocks_stops_the_daemon_with_one_line(anvil, w3, dr, tmp_path):
    from daemon_helpers import run_dr

    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 2, "price": "0.0001"}]}))
    out = run_dr(["consumer", "run", "--rpc-url", anvil.url, "--contract", dr.address, "--account-index", "4",
                  "--bids-file", str(tmp_path / "bids.json"), "--state-dir", str(tmp_path)], tmp_path,
                 env=dr_env(VTN_URL="http://127.0.0.1:9/OpenADR2/Simple/2.0b"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "VTN_URL: the VEN signs its registration with the account's key" in out.stderr


def test_the_daemons_ven_reports_its_plugs_power_and_the_vtn_stores_it_as_interval_energy(
        anvil, w3, dr, utility, keys, tmp_path, broker):
    """Telemetry end to end: the daemon's VEN registers a real-power report for its devices, reads
    the plug over MQTT at the interval the VTN asks for, and the VTN's feed writes Wh per 15 minutes
    into the meter store under ``<address>@devices`` (never the address's own, settling meter)."""
    from demand_response.devices.peers import SimTasmota
    from demand_response.mv import MeterStore
    from demand_response.utility import start_vtn

    home = Signer.from_key(w3, keys[4])
    dr.enrol(utility, home.address)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 1, "price": "0.0001"}]}))
    (tmp_path / "devices.json").write_text(json.dumps({
        "command_log": str(tmp_path / "commands.jsonl"), "state_file": str(tmp_path / "devices-state.json"),
        "brokers": {"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-home-tele"}},
        "devices": [{"name": "heater", "kind": "tasmota", "broker": "home", "topic": "heater", "shed_w": 1500}]}))
    plug = SimTasmota(broker.port, "heater", load_w=1500)
    wait_for(plug.ready.is_set, what="the plug on the broker")
    db = tmp_path / "meters.sqlite"
    vtn = start_vtn(dr, tmp_path / "vtn.sqlite", port=devchain.free_port(), meter_db=db, poll_interval=POLL_S,
                    report_interval=REPORT_S)
    feed, seen = vtn.on_telemetry, []
    vtn.on_telemetry = lambda reading: (seen.append(reading), feed(reading))
    consumer = Daemon(
        ["consumer", "run", "--rpc-url", anvil.url, "--contract", dr.address, "--label", "home",
         "--bids-file", str(tmp_path / "bids.json"), "--results-file", str(tmp_path / "results.json"),
         "--state-dir", str(tmp_path), "--from-block", str(w3.eth.block_number)],
        tmp_path, tmp_path / "consumer.log",
        env=dr_env(CONSUMER_PRIVATE_KEY=keys[4], DEVICES_FILE=str(tmp_path / "devices.json"), VTN_URL=vtn.url))
    try:
        consumer.wait_for("reporting the devices' real power (W) as resource devices")
        wait_for(lambda: len(seen) >= 3, timeout=30, what="three telemetry samples from the daemon's VEN")
    finally:
        consumer.stop()
        plug.close()
        vtn.stop()
        feed.flush()  # what the utility daemon does when it stops its VTN
    meter = f"{home.address}@devices"
    assert {(t.address, t.resource_id, t.meter_id, t.watts) for t in seen} == {(home.address, "devices", meter, 1500.0)}
    with MeterStore.open(db) as store:
        rows = store.readings(meter)
        assert store.span(home.address) is None  # the settlement meter is not written by telemetry
    # 1500 W for a 15-minute interval is 375 Wh (two rows if the samples straddled a boundary)
    assert rows and len(rows) <= 2 and {(r.seconds, r.wh) for r in rows} == {(900, 375)}
    assert feed.stored == {meter: len(rows)}
