"""A self-contained actuation demo: a Mosquitto broker, two simulated plugs, one award.

``run_demo`` is what ``python -m demand_response.devices demo`` runs, and what the project
demo can call once the consumer daemon hands awards to the actuator: the same Actuator,
Scheduler, drivers and command log as a real home, against real MQTT.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from .actuator import Actuator, Scheduler
from .clock import Clock, FakeClock
from .config import parse_config
from .core import Award
from .log import describe


def run_demo(workdir: Path | None = None, *, accepted_w: int = 3000, lead_s: int = 30, duration_s: int = 300,
             clock: Clock | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Win ``accepted_w`` watts, shed two MQTT plugs at the start, restore them at the end.

    The clock defaults to a fake one, so the whole event runs in about a second while the
    plugs, the broker and the command log are real. Returns the plugs' states and the log.
    """
    from .peers import Mosquitto, SimShelly, SimTasmota

    workdir = Path(workdir or tempfile.mkdtemp(prefix="dr-devices-demo-"))
    clock = clock or FakeClock()
    broker = Mosquitto(workdir / "mosquitto").start()
    plug = shelly = None
    try:
        plug = SimTasmota(broker.port, "water_heater", load_w=2000)
        shelly = SimShelly(broker.port, "shellyplusplugs-demo", load_w=1500)
        if not (plug.ready.wait(10) and shelly.ready.wait(10)):
            raise TimeoutError("the simulated plugs did not reach the broker")
        data = {
            "revert_margin_s": 120, "command_log": str(workdir / "device-commands.jsonl"),
            "state_file": str(workdir / "devices-state.json"),
            "brokers": {"home": {"host": "127.0.0.1", "port": broker.port, "client_id": "dr-demo"}},
            "devices": [
                {"name": "water-heater", "kind": "tasmota", "broker": "home", "topic": "water_heater", "shed_w": 2000,
                 "priority": 1},
                {"name": "dryer", "kind": "shelly", "broker": "home", "device_id": "shellyplusplugs-demo",
                 "shed_w": 1500, "priority": 2},
            ],
        }
        (workdir / "devices.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
        config = parse_config(data, workdir / "devices.json")
        say(f"devices: Mosquitto on 127.0.0.1:{broker.port}; a Tasmota water heater (2 kW) and a Shelly dryer "
            "(1.5 kW) on it")
        with Actuator(config, clock=clock) as actuator:
            actuator.start_all()
            start = int(clock.now()) + lead_s
            award = Award(1, accepted_w, start, start + duration_s)
            actuator.plan(award)
            scheduler = Scheduler(actuator, clock)
            scheduler.run_until(start + 1)
            during = {"water-heater": plug.on, "dryer": shelly.output, "power_w": actuator.read_power()}
            say(f"devices: event running: water heater {'on' if plug.on else 'off'}, dryer "
                f"{'on' if shelly.output else 'off'}")
            scheduler.run_until(award.end + 1)
            after = {"water-heater": plug.on, "dryer": shelly.output}
            say(f"devices: event over: water heater {'on' if plug.on else 'off'}, dryer "
                f"{'on' if shelly.output else 'off'}")
            records = list(actuator.commands.records())
        say(f"devices: command log {config.command_log}:")
        for record in records:
            say("  " + describe(record))
        return {"during": during, "after": after, "records": records, "command_log": str(config.command_log)}
    finally:
        for peer in (plug, shelly):
            if peer is not None:
                peer.close()
        broker.stop()
