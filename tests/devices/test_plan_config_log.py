"""The plan, the devices file's validation, the command log and the gridsim simulation driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demand_response.devices import (Actuator, Award, CommandLog, ConfigError, DeviceSpec, Scheduler, load_config,
                                     parse_config, plan_award)

ROOT = Path(__file__).resolve().parents[2]


def test_the_plan_sheds_by_priority_and_caps_only_what_is_still_missing():
    specs = [DeviceSpec("heater", "tasmota", 2000, priority=1),
             DeviceSpec("car", "ocpp", 6000, priority=2, max_w=7400, min_w=1400),
             DeviceSpec("dryer", "shelly", 1500, priority=3)]
    plan = plan_award(Award(1, 5000, 100, 200), specs)
    assert [(s.device, s.shed_w, s.limit_w) for s in plan.steps] == [("heater", 2000, None), ("car", 3000, 4400)]
    assert plan.shortfall_w == 0


def test_a_plan_that_cannot_cover_the_award_says_by_how_much():
    plan = plan_award(Award(1, 5000, 100, 200), [DeviceSpec("heater", "tasmota", 2000)], exclude={"x"})
    assert plan.planned_w == 2000 and plan.shortfall_w == 3000


def test_the_example_devices_file_is_valid():
    config = load_config(ROOT / "database" / "devices.example.json")
    assert {s.kind for s in config.devices} == {"tasmota", "shelly", "homeassistant", "ocpp", "sunspec", "simulation"}


def test_every_mistake_in_the_devices_file_gets_its_own_line(tmp_path):
    data = {
        "brokers": {"home": {"host": "127.0.0.1", "port": 70000}},
        "devices": [
            {"name": "heater", "kind": "tasmota", "broker": "garage", "topic": "cmnd/#", "shed_w": 2000},
            {"name": "heater", "kind": "shelly", "broker": "home", "device_id": "s1", "shed_w": True},
            {"name": "car", "kind": "ocpp", "station_id": "CP1", "max_w": 7400, "min_w": 8000, "colour": "red"},
            {"name": "ha", "kind": "homeassistant", "url": "ftp://x", "entity_id": "switch.a", "revert_timer": "switch.b",
             "token_env": "abc123-secret", "shed_w": 100},
            {"name": "bad name!", "kind": "toaster"},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "devices.json")
    lines = str(caught.value).splitlines()
    expected = ["brokers.home: port must be between 1 and 65535",
                "devices[0] (heater): broker 'garage' is not defined",
                "devices[0] (heater): topic must be a plain MQTT topic part",
                "devices[1] (heater): shed_w must be a number (got True)",
                "devices[2] (car): unknown key 'colour'",
                "devices[2] (car): min_w (8000 W) must be below the device's maximum (7400 W)",
                "devices[3] (ha): url must look like http://",
                "devices[3] (ha): revert_timer must be a timer entity",
                "devices[3] (ha): token_env names an environment variable",
                "devices[4]: name must be 1-64 letters",
                "devices[4] (#4): kind must be one of"]
    for text in expected:
        assert any(line.startswith("devices.json: ") and text in line for line in lines), text
    assert len(lines) == len(expected)


def test_a_missing_or_broken_devices_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file; copy database/devices.example.json"):
        load_config(tmp_path / "devices.json")
    (tmp_path / "devices.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as caught:
        load_config(tmp_path / "devices.json")
    assert "\n" not in str(caught.value)


def test_the_command_log_fences_off_a_record_torn_by_a_crash(tmp_path):
    log = CommandLog(tmp_path / "commands.jsonl")
    log.append({"command": "shed", "n": 1})
    with open(log.path, "a", encoding="utf-8") as handle:
        handle.write('{"command": "restore", "n"')  # power cut mid-write
    log.append({"command": "restore", "n": 2})
    assert [r["n"] for r in log.records()] == [1, 2]
    assert log.path.read_text().endswith('{"command":"restore","n":2}\n')


def _sim_config(make_config):
    return make_config([
        {"name": "hvac", "kind": "simulation", "device": "hvac", "household": 1, "shed_w": 700, "priority": 1},
        {"name": "ev", "kind": "simulation", "device": "ev", "household": 1, "max_w": 7000, "min_w": 0, "priority": 2},
    ])


def test_the_simulation_drives_the_same_schedule_and_log_as_real_devices(make_config, clock):
    config = _sim_config(make_config)
    outs = []
    with Actuator(config, clock=clock, on_opt_out=outs.append) as actuator:
        start = clock.now() + 300
        plan = actuator.plan(Award(5, 2000, int(start), int(start) + 1800))
        assert [(s.device, s.limit_w) for s in plan.steps] == [("hvac", None), ("ev", 5700)]
        Scheduler(actuator).run_until(start + 10)
        assert actuator.read_power()["hvac"] == 0.0
        assert actuator.driver("hvac").is_shed()
        Scheduler(actuator).run_until(start + 1801)
        assert actuator.read_power()["hvac"] == pytest.approx(actuator.driver("hvac").baseline_w(clock.now()))
    commands = [(r["command"], r["device"], r["ok"]) for r in actuator.commands.records()]
    assert commands == [("plan", None, True), ("shed", "hvac", True), ("shed", "ev", True),
                        ("restore", "hvac", True), ("restore", "ev", True), ("event_done", None, True)]
    assert outs == []


def test_a_restart_mid_event_keeps_the_plan_and_restores_at_the_end(make_config, clock):
    config = _sim_config(make_config)
    first = Actuator(config, clock=clock)
    start = clock.now()
    first.plan(Award(6, 500, int(start), int(start) + 600))
    first.tick()
    first.close()
    clock.advance(100)
    second = Actuator(config, clock=clock)  # mid-event: nothing to restore yet
    assert second.plans[6].steps[0].status == "shed"
    clock.advance(501)
    second.tick()
    assert second.plans == {}
    assert [r["command"] for r in second.commands.records()][-2:] == ["restore", "event_done"]
    state = json.loads(Path(config.state_file).read_text())
    assert state == {"plans": []}


def test_an_award_for_the_same_request_is_planned_once_and_overlapping_events_share_no_device(make_config, clock):
    actuator = Actuator(_sim_config(make_config), clock=clock)
    now = int(clock.now())
    first = actuator.plan(Award(7, 500, now + 60, now + 660))
    assert actuator.plan(Award(7, 500, now + 60, now + 660)) is first
    second = actuator.plan(Award(8, 500, now + 300, now + 900))
    assert [s.device for s in first.steps] == ["hvac"] and [s.device for s in second.steps] == ["ev"]
    actuator.close()


def test_an_override_of_an_unknown_device_is_refused(make_config, clock):
    actuator = Actuator(_sim_config(make_config), clock=clock)
    with pytest.raises(KeyError):
        actuator.user_override("toaster")
    actuator.close()


def test_a_cancelled_request_restores_at_once_mid_event_and_sheds_nothing_before_it(make_config, clock):
    actuator = Actuator(_sim_config(make_config), clock=clock)
    now = int(clock.now())
    actuator.plan(Award(9, 500, now, now + 600))
    actuator.plan(Award(10, 500, now + 3600, now + 4200))
    actuator.tick()
    assert actuator.driver("hvac").is_shed()
    clock.advance(60)
    actuator.cancel(9)
    actuator.cancel(10)
    assert not actuator.driver("hvac").is_shed() and actuator.plans == {}
    Scheduler(actuator).run_until(now + 4300)
    assert [c["shed"] for c in actuator.driver("hvac").commands] == [True, False]
    assert [r["command"] for r in actuator.commands.records()].count("cancel") == 2
    actuator.close()


def test_without_the_devices_extra_a_plug_fails_with_one_line_naming_the_extra(make_config, clock):
    import subprocess
    import sys

    config = make_config([{"name": "wh", "kind": "tasmota", "broker": "home", "topic": "wh", "shed_w": 2000}],
                         brokers={"home": {"host": "127.0.0.1", "port": 1}})
    code = f"""
import sys
sys.modules["paho"] = None  # as if paho-mqtt were not installed (the consumer's light install)
from demand_response.devices import Actuator, Award, load_config
actuator = Actuator(load_config({str(Path(config.state_file).parent / 'devices.json')!r}))
actuator.plan(Award(1, 1000, 0, 10**10))
actuator.tick()
print([r["error"] for r in actuator.commands.records() if r["command"] == "shed"][0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("the paho-mqtt package is missing; install the 'devices' extra: "
                                  "pip install 'demand-response[devices]'")


def test_an_override_until_tonight_keeps_the_device_out_of_events_planned_later_even_after_a_restart(make_config,
                                                                                                     clock):
    config = _sim_config(make_config)
    outs = []
    actuator = Actuator(config, clock=clock, on_opt_out=outs.append)
    now = int(clock.now())
    actuator.plan(Award(11, 500, now + 60, now + 660))
    actuator.user_override("hvac", until=now + 7200)
    assert [(o.request_id, o.before_event) for o in outs] == [(11, True)]
    actuator.close()
    again = Actuator(config, clock=clock)
    later = again.plan(Award(12, 500, now + 3600, now + 4200))
    assert [s.device for s in later.steps] == ["ev"]
    after = again.plan(Award(13, 500, now + 7200, now + 7800))
    assert [s.device for s in after.steps] == ["hvac"]
    again.close()


def test_a_corrupt_state_file_stops_the_actuator_with_one_line_that_says_what_to_do(make_config, clock):
    from demand_response.devices import DeviceError

    config = _sim_config(make_config)
    Path(config.state_file).write_text('{"plans": [{"award": ', encoding="utf-8")
    with pytest.raises(DeviceError, match="unreadable actuator state") as caught:
        Actuator(config, clock=clock)
    assert "\n" not in str(caught.value) and "move it aside" in str(caught.value)
