"""The Home Assistant driver against a real Home Assistant core (optional).

HA needs Python 3.13 and would downgrade the project's pinned packages, so it lives in a side
venv: ``make ha-core`` builds ``.ha-venv`` (or set ``HA_PYTHON`` to an interpreter that has
``homeassistant``). Without one these tests are skipped with that reason; the loopback stand-in
in test_homeassistant.py always runs. The HA here is configured from files alone (an
``input_boolean`` device, a ``timer`` and the revert automation of docs/devices.md, a template
power sensor) with a long-lived access token written to its auth store, never through its UI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from demand_response.devices import Actuator, Award, Scheduler

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENTITY, TIMER, POWER = "input_boolean.water_heater", "timer.dr_water_heater", "sensor.water_heater_power"


def _ha_python() -> str | None:
    python = os.environ.get("HA_PYTHON") or str(ROOT / ".ha-venv" / "bin" / "python")
    if not Path(python).exists():
        return None
    found = subprocess.run([python, "-c", "import homeassistant"], capture_output=True, timeout=60)
    return python if found.returncode == 0 else None


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    python = _ha_python()
    if python is None:
        pytest.skip("no Home Assistant core: run `make ha-core` (a Python 3.13 side venv, .ha-venv) "
                    "or set HA_PYTHON to a python that has homeassistant")
    from demand_response.devices.peers import HomeAssistantCore

    core = HomeAssistantCore(python, tmp_path_factory.mktemp("home-assistant")).start()
    yield core
    core.stop()


@pytest.fixture
def config(ha, make_config, monkeypatch):
    monkeypatch.setenv("HA_TOKEN", ha.token)
    ha.call("timer", "cancel", entity_id=TIMER)
    ha.call("input_boolean", "turn_on", entity_id=ENTITY)

    def build(**top):
        return make_config([{"name": "water-heater", "kind": "homeassistant", "url": ha.url, "entity_id": ENTITY,
                             "power_entity_id": POWER, "revert_timer": TIMER, "shed_w": 2000}], **top)

    return build


def test_a_real_home_assistant_turns_the_entity_off_with_its_timer_running_and_back_on_at_the_end(
        ha, config, clock, wait_for):
    with Actuator(config(), clock=clock) as actuator:
        assert actuator.read_power() == {"water-heater": 2000.0}
        start = clock.now()
        actuator.plan(Award(1, 2000, int(start), int(start) + 3600))
        actuator.tick()
        assert ha.state(ENTITY)["state"] == "off" and ha.state(TIMER)["state"] == "active"
        assert ha.state(TIMER)["attributes"]["duration"] == "1:00:02"  # the event and the 2 s margin
        wait_for(lambda: actuator.read_power() == {"water-heater": 0.0}, what="the template sensor at 0 W")
        Scheduler(actuator).run_until(start + 3601)
        assert ha.state(ENTITY)["state"] == "on" and ha.state(TIMER)["state"] == "idle"
    shed = next(r for r in actuator.commands.records() if r["command"] == "shed")
    assert shed["ok"] and shed["ack"]["state"]["state"] == "off"  # HA's own state object is the evidence


def test_home_assistants_timer_and_automation_turn_it_back_on_when_the_daemon_is_gone(ha, config, clock, wait_for):
    actuator = Actuator(config(revert_margin_s=1), clock=clock)
    now = clock.now()
    actuator.plan(Award(2, 2000, int(now), int(now) + 1))
    actuator.tick()
    assert ha.state(ENTITY)["state"] == "off"
    actuator.close()  # the daemon is gone; HA's timer finishes and its automation turns it on
    wait_for(lambda: ha.state(ENTITY)["state"] == "on", timeout=15, what="HA's revert automation")


def test_switching_it_on_in_home_assistant_during_the_event_is_an_opt_out(ha, config, clock):
    outs = []
    with Actuator(config(), clock=clock, on_opt_out=outs.append) as actuator:
        now = clock.now()
        actuator.plan(Award(3, 2000, int(now), int(now) + 600))
        actuator.tick()
        ha.call("input_boolean", "turn_on", entity_id=ENTITY)  # the user, in HA's app
        clock.advance(10)  # the actuator polls a shed device's state every 10 s
        actuator.tick()
    assert [(o.device, o.source, o.before_event) for o in outs] == [("water-heater", "device", False)]
