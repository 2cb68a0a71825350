"""Home Assistant's REST API (a loopback server with HA's endpoints, JSON shapes and token check).

No real Home Assistant runs here: `homeassistant` on Python 3.11 resolves to 2024.3 and would
downgrade pinned packages (aiohttp, PyYAML, requests, urllib3...). docs/devices.md says so.
"""

from __future__ import annotations

import pytest

from demand_response.devices import Actuator, Award, Scheduler
from demand_response.devices.peers import SimHomeAssistant

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.test-long-lived-token"


@pytest.fixture
def ha(monkeypatch):
    server = SimHomeAssistant(TOKEN)
    server.add_switch("switch.aircon", power_entity="sensor.aircon_power", load_w=1200, timer="timer.dr_aircon")
    server.start()
    monkeypatch.setenv("HA_TOKEN", TOKEN)
    yield server
    server.close()


def _config(make_config, ha, **top):
    return make_config([{"name": "aircon", "kind": "homeassistant", "url": ha.url, "entity_id": "switch.aircon",
                         "power_entity_id": "sensor.aircon_power", "revert_timer": "timer.dr_aircon",
                         "shed_w": 1200}], **top)


def test_the_entity_is_turned_off_with_a_revert_timer_and_back_on_at_the_end(ha, make_config, clock):
    with Actuator(_config(make_config, ha), clock=clock) as actuator:
        assert actuator.read_power() == {"aircon": 1200.0}
        start = clock.now()
        actuator.plan(Award(1, 1000, int(start), int(start) + 3600))
        actuator.tick()
        assert ha.public("switch.aircon")["state"] == "off" and ha.public("timer.dr_aircon")["state"] == "active"
        assert ("timer.start", {"entity_id": "timer.dr_aircon", "duration": "01:00:02"}) in ha.calls
        assert actuator.read_power() == {"aircon": 0.0}
        Scheduler(actuator).run_until(start + 3601)
        assert ha.public("switch.aircon")["state"] == "on" and ha.public("timer.dr_aircon")["state"] == "idle"
        shed = next(r for r in actuator.commands.records() if r["command"] == "shed")
        assert shed["ack"]["state"]["state"] == "off" and shed["ack"]["changed"][0]["entity_id"] == "switch.aircon"


def test_the_timer_automation_turns_it_back_on_when_the_daemon_is_gone(ha, make_config, clock, wait_for):
    actuator = Actuator(_config(make_config, ha), clock=clock)
    now = clock.now()
    actuator.plan(Award(2, 1000, int(now), int(now) + 1))
    actuator.tick()
    actuator.close()
    wait_for(lambda: ha.public("switch.aircon")["state"] == "on", timeout=8, what="the revert automation")


def test_a_wrong_token_is_one_line_that_says_what_to_do(ha, make_config, clock, monkeypatch):
    monkeypatch.setenv("HA_TOKEN", "stolen")
    actuator = Actuator(_config(make_config, ha), clock=clock)
    now = clock.now()
    actuator.plan(Award(3, 1000, int(now), int(now) + 60))
    actuator.tick()
    record = next(r for r in actuator.commands.records() if r["command"] == "shed")
    assert not record["ok"] and "rejected the token in HA_TOKEN" in record["error"] and "\n" not in record["error"]
    assert ha.public("switch.aircon")["state"] == "on"
    actuator.close()


def test_switching_it_on_in_home_assistant_during_the_event_is_an_opt_out(ha, make_config, clock):
    outs = []
    actuator = Actuator(_config(make_config, ha), clock=clock, on_opt_out=outs.append)
    now = clock.now()
    actuator.plan(Award(4, 1000, int(now), int(now) + 60))
    actuator.tick()
    ha.set_state("switch.aircon", "on")
    clock.advance(10)  # the actuator polls a shed device's state every 10 s
    actuator.tick()
    assert [(o.device, o.source, o.before_event) for o in outs] == [("aircon", "device", False)]
    actuator.close()


def test_home_assistant_down_at_the_end_is_retried_until_it_answers(ha, make_config, clock):
    actuator = Actuator(_config(make_config, ha, revert_margin_s=600, timeout_s=1), clock=clock)
    now = clock.now()
    actuator.plan(Award(5, 1000, int(now), int(now) + 60))
    actuator.tick()
    ha.stop()
    clock.advance(61)
    actuator.tick()
    assert "not reachable" in actuator.plans[5].steps[0].note
    ha.start()
    clock.advance(15)  # failed commands are retried every 15 s
    actuator.tick()
    assert 5 not in actuator.plans and ha.public("switch.aircon")["state"] == "on"
    actuator.close()
