"""Tasmota and Shelly plugs over a real Mosquitto broker: shed, restore, evidence, faults."""

from __future__ import annotations

import json
import time

from demand_response.devices import Actuator, Award, Scheduler
from demand_response.devices.peers import SimShelly, SimTasmota


def _mqtt_config(make_config, broker, **top):
    return make_config([
        {"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": "wh", "shed_w": 2000, "priority": 1},
        {"name": "dryer", "kind": "shelly", "broker": "home", "device_id": "shellyplusplugs-a1", "shed_w": 1500,
         "priority": 2},
    ], brokers={"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-test"}}, **top)


def _peers(broker, wait_for):
    plug = SimTasmota(broker.port, "wh", load_w=2000)
    shelly = SimShelly(broker.port, "shellyplusplugs-a1", load_w=1500)
    wait_for(lambda: plug.ready.is_set() and shelly.ready.is_set(), what="simulated plugs online")
    return plug, shelly


def test_a_won_event_sheds_both_plugs_at_the_start_and_restores_them_at_the_end(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    config = _mqtt_config(make_config, broker)
    with Actuator(config, clock=clock) as actuator:
        actuator.start_all()
        start = clock.now() + 60
        plan = actuator.plan(Award(7, 3200, int(start), int(start) + 600))
        assert [s.device for s in plan.steps] == ["water-heater", "dryer"] and plan.shortfall_w == 0
        assert actuator.read_power() == {"water-heater": 2000.0, "dryer": 1500.0}
        Scheduler(actuator).run_until(start + 1)
        assert not plug.on and not shelly.output
        assert actuator.read_power() == {"water-heater": 0.0, "dryer": 0.0}
        Scheduler(actuator).run_until(start + 601)
        assert plug.on and shelly.output
        assert actuator.plans == {}
    records = list(actuator.commands.records())
    sheds = [r for r in records if r["command"] == "shed"]
    assert {r["device"] for r in sheds} == {"water-heater", "dryer"} and all(r["ok"] for r in sheds)
    tasmota = next(r for r in sheds if r["device"] == "water-heater")
    assert any(json.loads(m["payload"]) == {"POWER": "OFF"} for m in tasmota["ack"]["replies"]
               if m["topic"] == "stat/wh/RESULT")
    assert "RuleTimer3 602" in tasmota["ack"]["command"]  # 600 s left + 2 s margin, on the plug itself
    shelly_ack = next(r for r in sheds if r["device"] == "dryer")["ack"]
    assert shelly_ack["request"]["params"] == {"id": 0, "on": False, "toggle_after": 602}
    assert shelly_ack["reply"]["result"] == {"was_on": True}
    assert [r["command"] for r in records].count("restore") == 2
    assert records[-1]["command"] == "event_done"
    plug.close()
    shelly.close()


def test_the_plugs_switch_back_on_by_themselves_when_the_daemon_is_gone(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    config = _mqtt_config(make_config, broker)
    actuator = Actuator(config, clock=clock)
    now = clock.now()
    actuator.plan(Award(8, 3500, int(now) - 1, int(now) + 1))
    actuator.tick()
    assert not plug.on and not shelly.output
    actuator.close()  # the daemon dies: nobody will send a restore
    wait_for(lambda: plug.on and shelly.output, timeout=8, what="device-side revert timers")


def test_a_restarted_daemon_restores_the_plugs_of_an_event_that_ended_while_it_was_down(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    config = _mqtt_config(make_config, broker, revert_margin_s=600)
    first = Actuator(config, clock=clock)
    start = clock.now()
    first.plan(Award(9, 3500, int(start), int(start) + 30))
    first.tick()
    assert not plug.on and not shelly.output
    first.close()
    clock.advance(31)
    second = Actuator(config, clock=clock)  # restores on start: the event is over
    assert plug.on and shelly.output
    assert second.plans == {}
    restores = [r for r in second.commands.records() if r["command"] == "restore"]
    assert {r["device"] for r in restores} == {"water-heater", "dryer"} and all(r["ok"] for r in restores)
    second.close()


def test_a_broker_lost_mid_event_delays_the_restore_until_it_is_back(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    config = _mqtt_config(make_config, broker, revert_margin_s=600)
    actuator = Actuator(config, clock=clock)
    start = clock.now()
    actuator.plan(Award(10, 2000, int(start), int(start) + 30))
    actuator.tick()
    assert not plug.on
    broker.stop()
    wait_for(lambda: not actuator.driver("water-heater").bus.connected.is_set(), timeout=10,
             what="the client to notice the broker is gone")
    clock.advance(31)
    actuator.tick()  # the end: the broker is down
    step = actuator.plans[10].steps[0]
    assert step.status == "shed" and "not reachable" in step.note
    broker.start()
    wait_for(lambda: actuator.driver("water-heater").bus.connected.is_set() and plug.ready.is_set(), timeout=10,
             what="reconnection")
    wait_for(lambda: (clock.advance(15), actuator.tick(), plug.on)[2], timeout=10,
             what="restore after reconnection (retried every 15 s)")
    oks = [r["ok"] for r in actuator.commands.records() if r["command"] == "restore"]
    assert oks[0] is False and oks[-1] is True  # failed while the broker was down, done once it was back
    actuator.close()


def test_a_button_pressed_during_the_event_is_reported_as_an_opt_out(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    outs = []
    config = _mqtt_config(make_config, broker)
    actuator = Actuator(config, clock=clock, on_opt_out=outs.append)
    start = clock.now()
    actuator.plan(Award(11, 3500, int(start), int(start) + 300))
    actuator.tick()
    shelly.press()
    wait_for(lambda: (clock.advance(10), actuator.tick(), outs)[2], what="the override to be noticed")
    assert [(o.device, o.before_event, o.source, o.shed_w) for o in outs] == [("dryer", False, "device", 1500)]
    assert actuator.plans[11].step("dryer").status == "overridden"
    clock.advance(301)
    actuator.tick()
    assert plug.on and shelly.output  # the override stays; the plug is restored
    assert [r["device"] for r in actuator.commands.records() if r["command"] == "restore"] == ["water-heater"]
    actuator.close()


def test_a_user_override_before_the_event_is_an_opt_out_and_the_device_is_never_switched(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    outs = []
    actuator = Actuator(_mqtt_config(make_config, broker), clock=clock, on_opt_out=outs.append)
    start = clock.now() + 120
    actuator.plan(Award(12, 3500, int(start), int(start) + 60))
    assert [(o.device, o.before_event, o.source) for o in actuator.user_override("water-heater")] == \
        [("water-heater", True, "user")]
    assert len(outs) == 1
    Scheduler(actuator).run_until(start + 1)
    assert plug.on and not shelly.output
    assert not any(r["command"] == "shed" and r["device"] == "water-heater" for r in actuator.commands.records())
    actuator.close()


def test_the_daemon_announces_itself_retained_with_a_last_will_and_keeps_commanded_state(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    config = _mqtt_config(make_config, broker)
    actuator = Actuator(config, clock=clock)
    actuator.start_all()
    watcher = SimTasmota(broker.port, "watcher")  # any MQTT client: reads what is retained
    seen: dict[str, str] = {}
    watcher.client.on_message = lambda c, u, m: seen.__setitem__(m.topic, m.payload.decode())
    wait_for(watcher.ready.is_set)
    watcher.client.subscribe("dr/dr-test/#", qos=1)
    wait_for(lambda: seen.get("dr/dr-test/online") == "online", what="online flag")
    now = clock.now()
    actuator.plan(Award(13, 2000, int(now), int(now) + 60))
    actuator.tick()
    wait_for(lambda: "dr/dr-test/devices/water-heater" in seen, what="retained state")
    assert json.loads(seen["dr/dr-test/devices/water-heater"])["shed"] is True
    bus = actuator.driver("water-heater").bus
    bus.client.loop_stop()
    bus.client.socket().close()  # the daemon's link dies without a goodbye: the broker sends the will
    wait_for(lambda: seen.get("dr/dr-test/online") == "offline", timeout=25, what="last will")
    watcher.close()


def test_garbage_and_hostile_payloads_on_the_plug_topics_change_nothing(broker, clock, make_config, wait_for):
    plug, shelly = _peers(broker, wait_for)
    actuator = Actuator(_mqtt_config(make_config, broker), clock=clock)
    actuator.start_all()
    now = clock.now()
    actuator.plan(Award(14, 3500, int(now), int(now) + 60))
    actuator.tick()
    for topic, payload in (("stat/wh/RESULT", b"\xff\xfe{"), ("stat/wh/RESULT", b'{"POWER": ["ON"]}'),
                           ("tele/wh/SENSOR", b'{"ENERGY": {"Power": "9e99"}}'), ("stat/wh/POWER", b"MAYBE"),
                           ("shellyplusplugs-a1/events/rpc", b'{"method": "NotifyStatus", "params": 5}'),
                           ("dr/dr-test/dryer/rpc", b'{"id": 999999, "result": {"was_on": true}}')):
        plug.client.publish(topic, payload, qos=1)
    time.sleep(0.3)
    actuator.tick()
    assert {s.device: s.status for s in actuator.plans[14].steps} == {"water-heater": "shed", "dryer": "shed"}
    assert actuator.driver("water-heater").read_power() == 0.0
    actuator.close()
