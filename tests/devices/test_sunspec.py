"""Inverter/battery over SunSpec Modbus TCP: model 704 limits against a pymodbus server."""

from __future__ import annotations

import pytest

from demand_response.devices import Actuator, Award, Scheduler
from demand_response.devices.peers import SimInverter


@pytest.fixture
def inverter():
    device = SimInverter(rated_w=5000, draw_w=4000).start()
    yield device
    device.close()


def _config(make_config, inverter):
    return make_config([{"name": "battery", "kind": "sunspec", "host": "127.0.0.1", "port": inverter.port,
                         "rated_w": 5000, "shed_w": 3000}])


def test_the_inverter_is_limited_with_a_revert_timer_and_released_at_the_end(inverter, make_config, clock):
    with Actuator(_config(make_config, inverter), clock=clock) as actuator:
        assert actuator.read_power() == {"battery": 4000.0}
        start = clock.now() + 5
        plan = actuator.plan(Award(1, 2500, int(start), int(start) + 600))
        assert plan.steps[0].limit_w == 2500
        Scheduler(actuator).run_until(start + 1)
        assert inverter.reg("WMaxLimPctEna") == 1 and inverter.reg("WMaxLimPct") == 50
        assert actuator.read_power() == {"battery": 2500.0}
        shed = next(r for r in actuator.commands.records() if r["command"] == "shed")
        assert shed["ack"]["readback"]["WMaxLimPctRvrtTms"] in (601, 602)  # what is left of the event + 2 s
        assert shed["ack"]["readback"]["WMaxLimPctEnaRvrt"] == 0
        Scheduler(actuator).run_until(start + 601)
        assert inverter.reg("WMaxLimPctEna") == 0 and inverter.power_w == 4000


def test_the_inverter_lifts_the_limit_itself_when_its_revert_timer_runs_out(inverter, make_config, clock, wait_for):
    actuator = Actuator(_config(make_config, inverter), clock=clock)
    now = clock.now()
    actuator.plan(Award(2, 3000, int(now), int(now) + 1))
    actuator.tick()
    assert inverter.power_w == 2000
    actuator.close()
    wait_for(lambda: inverter.power_w == 4000, timeout=8, what="the device's revert timer")


def test_a_modbus_link_lost_mid_event_is_retried_until_the_device_answers(inverter, make_config, clock):
    config = make_config([{"name": "battery", "kind": "sunspec", "host": "127.0.0.1", "port": inverter.port,
                           "rated_w": 5000}], revert_margin_s=600, timeout_s=1)
    actuator = Actuator(config, clock=clock)
    start = clock.now()
    actuator.plan(Award(3, 1000, int(start), int(start) + 60))
    actuator.tick()
    inverter.stop()
    clock.advance(61)
    actuator.tick()
    assert actuator.plans[3].steps[0].status == "shed"
    inverter.start()
    clock.advance(15)  # failed commands are retried every 15 s
    actuator.tick()
    assert 3 not in actuator.plans and inverter.reg("WMaxLimPctEna") == 0
    assert [r["ok"] for r in actuator.commands.records() if r["command"] == "restore"] == [False, True]
    actuator.close()


def test_a_restarted_daemon_releases_the_limit_of_an_event_that_ended(inverter, make_config, clock):
    config = make_config([{"name": "battery", "kind": "sunspec", "host": "127.0.0.1", "port": inverter.port,
                           "rated_w": 5000}], revert_margin_s=600)
    first = Actuator(config, clock=clock)
    start = clock.now()
    first.plan(Award(4, 1000, int(start), int(start) + 60))
    first.tick()
    first.close()
    assert inverter.reg("WMaxLimPctEna") == 1
    clock.advance(61)
    Actuator(config, clock=clock).close()
    assert inverter.reg("WMaxLimPctEna") == 0


def test_an_unreachable_inverter_is_a_one_line_failure_in_the_log(make_config, clock):
    device = SimInverter().start()
    device.close()  # nothing listens on its port any more
    config = make_config([{"name": "battery", "kind": "sunspec", "host": "127.0.0.1", "port": device.port,
                           "rated_w": 5000}], timeout_s=1)
    actuator = Actuator(config, clock=clock)
    now = clock.now()
    actuator.plan(Award(5, 1000, int(now), int(now) + 60))
    actuator.tick()
    record = next(r for r in actuator.commands.records() if r["command"] == "shed")
    assert not record["ok"] and "\n" not in record["error"] and "not reachable" in record["error"]
    for _ in range(14):  # ticks every second: the dead device is not asked again for 15 s
        clock.advance(1)
        actuator.tick()
    assert [r["command"] for r in actuator.commands.records()].count("shed") == 1
    clock.advance(1)
    actuator.tick()
    assert [r["command"] for r in actuator.commands.records()].count("shed") == 2
    actuator.close()
