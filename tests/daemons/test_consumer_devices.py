"""``DEVICES_FILE``: a ``dr consumer run`` process that wins switches the home's plug off at the
event start and back on at its end. Real parts only: anvil, a Mosquitto broker on loopback and a
simulated Tasmota plug that is a real MQTT client (``devices.peers.SimTasmota``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest
from web3 import Web3

from daemon_helpers import Daemon, dr_env, run_dr, wait_until
from demand_response import devchain
from demand_response.chain import Signer, connect
from demand_response.config import load_settings
from demand_response.contract import DemandReduction
from demand_response.utility import deploy, plan_request, send_request

pytestmark = pytest.mark.slow

CAP = 128 * 10**14


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, start_chain) -> devchain.DevChain:
    return start_chain(request, "anvil", accounts=4)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[object]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make system-deps installs it as root)")
    from demand_response.devices.peers import Mosquitto

    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


def _devices_file(tmp: Path, port: int) -> Path:
    path = tmp / "devices.json"
    path.write_text(json.dumps({
        "revert_margin_s": 30, "command_log": str(tmp / "commands.jsonl"), "state_file": str(tmp / "devices-state.json"),
        "brokers": {"home": {"host": "127.0.0.1", "port": port, "client_id": "dr-consumer-test"}},
        "devices": [{"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": "wh", "shed_w": 2000}],
    }))
    return path


def test_a_won_open_request_switches_the_plug_off_for_the_event_and_back_on(tmp_path: Path, node: devchain.DevChain,
                                                                           broker) -> None:
    from demand_response.devices.peers import SimTasmota

    w3: Web3 = connect(node.url)
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    dr: DemandReduction = deploy(settings, Signer(w3, w3.eth.accounts[0]), node.chain_id)
    start_block = w3.eth.block_number
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 2, "price": "0.004"}]}))
    plug = SimTasmota(broker.port, "wh", load_w=2000)
    wait_until(plug.ready.is_set, timeout=10, what="the plug on the broker")
    consumer = Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", "1",
         "--bids-file", str(tmp_path / "bids.json"), "--results-file", str(tmp_path / "results.json"),
         "--state-dir", str(tmp_path), "--from-block", str(start_block), "--label", "home"],
        tmp_path, tmp_path / "consumer.log",         # a 4 s event pays less than its fees: BID_MARGIN=0 bids regardless
        env=dr_env(DEVICES_FILE=str(_devices_file(tmp_path, broker.port)), BID_MARGIN="0"))
    try:
        consumer.wait_for("devices: 1 from")
        consumer.wait_for("listening for requests")
        # Real seconds: the chain is not moved, so its clock (the actuator's) is the wall clock.
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        plan = plan_request(target_kw=2.0, now=now, bidding_window_s=3, event_delay_s=4, event_duration_s=4,
                            max_price_wei_per_kwh=CAP)
        rid = send_request(dr, Signer(w3, w3.eth.accounts[0]), plan)[0]
        info = dr.get_request(rid)
        consumer.wait_for(f"on request {rid} (tx")
        wait_until(lambda: time.time() > info.bidding_deadline + 1, timeout=30, what="bidding deadline")
        node.rpc("evm_mine", [])
        dr.select_winners(Signer(w3, w3.eth.accounts[0]), rid)
        consumer.wait_for(f"request {rid}: devices will shed water-heater 2 kW")
        assert plug.on  # planned, not yet started
        wait_until(lambda: not plug.on, timeout=30, what="the plug switched off")
        off_at = time.time()
        wait_until(lambda: plug.on, timeout=30, what="the plug back on")
        on_at = time.time()
        consumer.wait_for(f"recorded request {rid}")
    finally:
        code = consumer.stop()
        plug.close()
    assert code == 0, consumer.output()
    assert info.event_start <= off_at + 1 and on_at + 1 >= info.event_end  # in the event's window, wall time
    log = [json.loads(line) for line in (tmp_path / "commands.jsonl").read_text().splitlines()]
    assert [(r["command"], r["ok"]) for r in log if r["command"] in ("plan", "shed", "restore")] == [
        ("plan", True), ("shed", True), ("restore", True)]


def test_a_devices_file_that_is_missing_stops_the_daemon_with_one_line(tmp_path: Path, node: devchain.DevChain) -> None:
    w3 = connect(node.url)
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    dr = deploy(settings, Signer(w3, w3.eth.accounts[0]), node.chain_id)
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 2, "price": "0.004"}]}))
    out = run_dr(["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", "2",
                  "--bids-file", str(tmp_path / "bids.json"), "--state-dir", str(tmp_path)], tmp_path,
                 env=dr_env(DEVICES_FILE=str(tmp_path / "nope.json")))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "nope.json: no such file; copy database/devices.example.json there" in out.stderr


def test_the_daemon_sheds_and_restores_on_the_chain_clock_when_the_chain_is_moved_forward(
        tmp_path: Path, node: devchain.DevChain, broker) -> None:
    """A one-hour event an hour ahead of the wall clock: the dev chain's time is moved to its start
    and to its end, and the daemon's actuator follows the chain, not the machine's clock."""
    from demand_response.devices.peers import SimTasmota

    w3: Web3 = connect(node.url)
    settings = load_settings(tmp_path / ".env", environ={}, rpc_url=node.url,
                             deployments_file=tmp_path / "deployments.json")
    utility = Signer(w3, w3.eth.accounts[0])
    dr: DemandReduction = deploy(settings, utility, node.chain_id)
    start_block = w3.eth.block_number
    (tmp_path / "bids.json").write_text(json.dumps({"version": 1, "bids": [{"kw": 2, "price": "0.004"}]}))
    plug = SimTasmota(broker.port, "wh", load_w=2000)
    wait_until(plug.ready.is_set, timeout=10, what="the plug on the broker")
    consumer = Daemon(
        ["consumer", "run", "--rpc-url", node.url, "--contract", dr.address, "--account-index", "2",
         "--bids-file", str(tmp_path / "bids.json"), "--results-file", str(tmp_path / "results.json"),
         "--state-dir", str(tmp_path), "--from-block", str(start_block), "--label", "home"],
        tmp_path, tmp_path / "consumer.log", env=dr_env(DEVICES_FILE=str(_devices_file(tmp_path, broker.port))))
    try:
        consumer.wait_for("devices: 1 from")
        consumer.wait_for("listening for requests")
        now = max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))
        plan = plan_request(target_kw=2.0, now=now, bidding_window_s=3, event_delay_s=3600, event_duration_s=3600,
                            max_price_wei_per_kwh=CAP)
        rid = send_request(dr, utility, plan)[0]
        info = dr.get_request(rid)
        consumer.wait_for(f"on request {rid} (tx")
        node.rpc("evm_increaseTime", [info.bidding_deadline + 1 - int(w3.eth.get_block("latest")["timestamp"])])
        node.rpc("evm_mine", [])
        dr.select_winners(utility, rid)
        consumer.wait_for(f"request {rid}: devices will shed water-heater 2 kW")
        time.sleep(2)  # the actuator ticks every second: an hour before the event, nothing is shed
        assert plug.on
        node.rpc("anvil_setNextBlockTimestamp", [info.event_start])
        node.rpc("evm_mine", [])
        wait_until(lambda: not plug.on, timeout=30, what="the plug switched off at the event start (chain time)")
        node.rpc("anvil_setNextBlockTimestamp", [info.event_end + 1])
        node.rpc("evm_mine", [])
        wait_until(lambda: plug.on, timeout=30, what="the plug back on at the event end (chain time)")
    finally:
        consumer.stop()
        plug.close()
    log = {r["command"]: r for r in map(json.loads, (tmp_path / "commands.jsonl").read_text().splitlines())}
    assert log["shed"]["ok"] and log["restore"]["ok"]
    assert info.event_start <= log["shed"]["at"] < info.event_end  # chain time: an hour past the wall clock
    assert info.event_end <= log["restore"]["at"] < info.event_end + 60
    assert log["shed"]["at"] > time.time() + 1800
