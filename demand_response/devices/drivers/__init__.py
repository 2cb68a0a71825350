"""Device drivers, one module per protocol; each imports its library only when a device needs it."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import DevicesConfig
from ..core import DeviceError, DeviceSpec, Driver
from ._extras import require  # noqa: F401  (the drivers' one way to import their library)

def make_driver(spec: DeviceSpec, config: DevicesConfig, resources: dict[str, Any], clock: Clock) -> Driver:
    """Build the driver for ``spec``, sharing connections (an MQTT broker, the OCPP server) in ``resources``."""
    if spec.kind in ("tasmota", "shelly"):
        from .mqtt import MqttBus, ShellyPlug, TasmotaPlug

        key = f"mqtt:{spec.options['broker']}"
        bus = resources.get(key)
        if bus is None:
            bus = resources[key] = MqttBus(config.brokers[spec.options["broker"]], config.timeout_s)
        return (TasmotaPlug if spec.kind == "tasmota" else ShellyPlug)(spec, bus, config.timeout_s)
    if spec.kind == "homeassistant":
        from .homeassistant import HomeAssistantEntity

        return HomeAssistantEntity(spec, config.timeout_s)
    if spec.kind == "ocpp":
        from .charger import ChargingStationManager, OcppCharger

        server = resources.get("ocpp")
        if server is None:
            allowed = {s.options["station_id"] for s in config.devices if s.kind == "ocpp"}
            server = resources["ocpp"] = ChargingStationManager(config.ocpp_host, config.ocpp_port, allowed)
        return OcppCharger(spec, server, clock, config.timeout_s)
    if spec.kind == "sunspec":
        from .sunspec import SunSpecInverter

        return SunSpecInverter(spec, config.timeout_s)
    if spec.kind == "simulation":
        from .simulation import SimulatedDevice

        return SimulatedDevice(spec, clock)
    raise DeviceError(f"{spec.name}: no driver for kind {spec.kind!r}")
