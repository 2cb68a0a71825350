"""Crash safety across processes: a daemon killed mid-event, a new process restores after the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demand_response.devices.peers import SimTasmota

ROOT = Path(__file__).resolve().parents[2]

_DAEMON = """
import json, sys, time
from demand_response.devices import Actuator, Award, load_config
actuator = Actuator(load_config(sys.argv[1]))
if sys.argv[2] == "shed":
    now = int(time.time())
    actuator.plan(Award(21, 2000, now, now + 2))
    actuator.tick()
    print("shed", flush=True)
    time.sleep(600)  # killed here, mid-event
print(json.dumps({d: s.status for p in actuator.plans.values() for s in p.steps}), flush=True)
actuator.close()
"""


def test_a_killed_daemon_leaves_the_plug_to_a_new_process_that_restores_it_after_the_event(broker, tmp_path, wait_for):
    plug = SimTasmota(broker.port, "wh", load_w=2000)
    wait_for(plug.ready.is_set)
    config = {"revert_margin_s": 600, "command_log": str(tmp_path / "commands.jsonl"),
              "state_file": str(tmp_path / "state.json"),
              "brokers": {"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-crash"}},
              "devices": [{"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": "wh", "shed_w": 2000}]}
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", _DAEMON, str(path), "shed"], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=tmp_path)
    try:
        assert first.stdout.readline().strip() == "shed"
        assert not plug.on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    time.sleep(2.1)  # the event (2 s) ends while no daemon runs; the plug's own timer is 10 minutes away
    assert not plug.on
    second = subprocess.run([sys.executable, "-c", _DAEMON, str(path), "start"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1]) == {}  # nothing left to do
    assert plug.on
    records = [json.loads(line) for line in (tmp_path / "commands.jsonl").read_text().splitlines()]
    assert [(r["command"], r["ok"]) for r in records] == [("plan", True), ("shed", True), ("restore", True),
                                                           ("event_done", True)]
    plug.close()
