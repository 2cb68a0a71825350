"""EV charger over OCPP 2.0.1: the actuator's charging-station manager against an `ocpp` charge point."""

from __future__ import annotations

import asyncio

import pytest

from demand_response.devices import Actuator, Award, Scheduler
from demand_response.devices.peers import SimChargePoint, free_port


def _config(make_config, port):
    return make_config([{"name": "car", "kind": "ocpp", "station_id": "CP001", "max_w": 7400, "min_w": 1400}],
                       ocpp={"host": "127.0.0.1", "port": port})


@pytest.fixture
def station(make_config, clock):
    port = free_port()
    actuator = Actuator(_config(make_config, port), clock=clock, restore_on_start=False)
    actuator.start_all()
    charger = SimChargePoint(f"ws://127.0.0.1:{port}", "CP001", draw_w=7400).connect()
    yield actuator, charger, port
    charger.close()
    actuator.close()


def test_the_charger_is_capped_by_a_profile_with_a_duration_and_cleared_at_the_end(station, clock):
    actuator, charger, _ = station
    assert actuator.read_power() == {"car": 7400.0}
    start = clock.now()
    plan = actuator.plan(Award(1, 4000, int(start), int(start) + 900))
    assert plan.steps[0].limit_w == 3400
    Scheduler(actuator).run_until(start + 1)
    assert charger.power_w == 3400 and actuator.read_power() == {"car": 3400.0}
    name, profile = charger.received[0]
    assert name == "SetChargingProfile"
    assert profile["charging_profile_purpose"] == "TxDefaultProfile"
    schedule = profile["charging_schedule"][0]
    assert schedule["duration"] == 900 + 2 + 60  # event + margin + clock-skew allowance and schedule["charging_rate_unit"] == "W"
    assert schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 3400.0}]
    Scheduler(actuator).run_until(start + 901)
    assert charger.received[-1] == ("ClearChargingProfile", 4711) and charger.power_w == 7400
    acks = [(r["command"], r["ack"].get("status")) for r in actuator.commands.records() if r["command"] in ("shed", "restore")]
    assert acks == [("shed", "Accepted"), ("restore", "Accepted")]


def test_the_charger_drops_the_cap_by_itself_when_the_profile_duration_runs_out(station, clock, wait_for):
    actuator, charger, _ = station
    now = clock.now()
    actuator.plan(Award(2, 6000, int(now), int(now) + 1))
    actuator.tick()
    assert charger.power_w == 1400  # min_w: never below the lowest rate the car accepts
    actuator.close()
    wait_for(lambda: charger.power_w == 7400, timeout=8, what="profile expiry")


def test_a_charger_lost_mid_event_is_restored_once_it_reconnects(station, clock, wait_for):
    actuator, charger, port = station
    start = clock.now()
    actuator.plan(Award(3, 2000, int(start), int(start) + 60))
    actuator.tick()
    charger.disconnect()
    clock.advance(61)
    actuator.tick()
    step = actuator.plans[3].steps[0]
    assert step.status == "shed" and "not connected" in step.note
    charger.connect()
    clock.advance(15)  # failed commands are retried every 15 s
    actuator.tick()
    assert 3 not in actuator.plans and charger.power_w == 7400
    assert [r["ok"] for r in actuator.commands.records() if r["command"] == "restore"] == [False, True]


def test_a_restarted_manager_restores_the_charger_after_the_event(make_config, clock, wait_for):
    port = free_port()
    config = _config(make_config, port)
    first = Actuator(config, clock=clock)
    first.start_all()
    charger = SimChargePoint(f"ws://127.0.0.1:{port}", "CP001").connect()
    start = clock.now()
    first.plan(Award(4, 3000, int(start), int(start) + 30))
    first.tick()
    assert charger.power_w == 4400
    first.close()  # the daemon stops; the charger keeps its capped profile
    wait_for(lambda: not charger.connected.is_set(), what="charger to notice")
    clock.advance(31)
    second = Actuator(config, clock=clock, restore_on_start=False)
    second.start_all()
    charger.connect()
    second.restore_if_over()
    assert charger.power_w == 7400 and second.plans == {}
    charger.close()
    second.close()


def test_a_charger_with_an_unknown_station_id_is_refused(station):
    _, _, port = station
    intruder = SimChargePoint(f"ws://127.0.0.1:{port}", "EVIL-01")
    with pytest.raises(ConnectionError):
        intruder.connect(timeout=3)
    intruder.close()
