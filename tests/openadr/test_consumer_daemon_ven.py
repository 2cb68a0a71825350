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
