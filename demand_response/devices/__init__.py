"""Actuation: the devices in a home that shed load when the consumer wins an event.

The daemon's entry point is :class:`Actuator` (docs/devices.md)::

    actuator = Actuator(load_config("database/devices.json"), on_opt_out=report)
    actuator.plan(Award(request_id, accepted_watts, event_start, event_end))
    Scheduler(actuator).run(stop)      # or call actuator.tick() from the daemon's own loop

Drivers (MQTT Tasmota/Shelly, Home Assistant, OCPP 2.0.1 chargers, SunSpec Modbus, gridsim
simulation) are imported only when a configured device needs them; their libraries are the
``devices`` extra.
"""

from __future__ import annotations

from .actuator import Actuator, Scheduler
from .clock import ChainClock, Clock, FakeClock, SystemClock
from .config import ConfigError, DevicesConfig, load_config, parse_config
from .core import Ack, Award, DeviceError, DeviceSpec, Driver, OptOut, Plan, Step, plan_award
from .log import CommandLog

__all__ = [
    "Ack", "Actuator", "Award", "ChainClock", "Clock", "CommandLog", "ConfigError", "DeviceError", "DeviceSpec", "DevicesConfig",
    "Driver", "FakeClock", "OptOut", "Plan", "Scheduler", "Step", "SystemClock", "load_config", "parse_config",
    "plan_award",
]
