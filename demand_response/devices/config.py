"""The devices file (``database/devices.json``): brokers, the charger server and the devices.

:func:`load_config` checks the whole file and raises :class:`ConfigError` with one line per
mistake, each naming the place (``devices[2] (car): max_w ...``) and what to write instead.
docs/devices.md documents every key; ``database/devices.example.json`` is a complete example.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import CAP_KINDS, KINDS, DeviceSpec
from .. import errors

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOPIC = re.compile(r"^[^\s/#+\x00][^\s#+\x00]{0,199}$")
_ENTITY = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z0-9_]+$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SIM_DEVICES = ("hvac", "water_heater", "ev", "battery")

_TOP_KEYS = {"revert_margin_s", "timeout_s", "command_log", "state_file", "brokers", "ocpp", "devices"}
_BROKER_KEYS = {"host", "port", "username", "password_env", "client_id", "keepalive", "status_topic"}
_OCPP_KEYS = {"host", "port"}
_COMMON = {"name", "kind", "shed_w", "priority"}
_KIND_KEYS: dict[str, tuple[set[str], set[str]]] = {  # kind: (required, optional)
    "tasmota": ({"broker", "topic"}, {"relay", "rule"}),
    "shelly": ({"broker", "device_id"}, {"switch_id"}),
    "homeassistant": ({"url", "entity_id", "revert_timer"}, {"token_env", "power_entity_id"}),
    "ocpp": ({"station_id", "max_w"}, {"min_w", "evse_id", "purpose", "stack_level", "profile_id"}),
    "sunspec": ({"host", "rated_w"}, {"port", "unit_id", "min_w"}),
    "simulation": ({"device"}, {"household", "seed", "households", "max_w", "min_w", "outdoor_max_c"}),
}


class ConfigError(errors.ConfigError):
    """The devices file is wrong; ``str()`` is one line per mistake."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class BrokerConfig:
    """An MQTT broker the drivers share."""

    name: str
    host: str
    port: int = 1883
    username: str | None = None
    password_env: str | None = None
    client_id: str = "dr-consumer"
    keepalive: int = 30
    status_topic: str = "dr/dr-consumer"


@dataclass(frozen=True)
class DevicesConfig:
    """The whole validated file."""

    devices: list[DeviceSpec]
    brokers: dict[str, BrokerConfig] = field(default_factory=dict)
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = 9000
    revert_margin_s: int = 300
    timeout_s: float = 5.0
    command_log: Path = Path("database/device-commands.jsonl")
    state_file: Path = Path("database/devices-state.json")

    def spec(self, name: str) -> DeviceSpec:
        """The device called ``name``."""
        for spec in self.devices:
            if spec.name == name:
                return spec
        raise KeyError(name)


def load_config(path: str | Path) -> DevicesConfig:
    """Read and validate the devices file (raises :class:`ConfigError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["no such file; copy database/devices.example.json there and edit it "
                                 "(docs/devices.md)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read it ({exc.__class__.__name__}: {exc})"]) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(path, [f"not valid JSON: {exc}"]) from None
    return parse_config(data, path)


def parse_config(data: Any, path: str | Path = "devices.json") -> DevicesConfig:
    """Validate already-parsed JSON (raises :class:`ConfigError` listing every mistake)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a JSON object with a \"devices\" list"])
    for key in sorted(set(data) - _TOP_KEYS):
        problems.append(f"unknown key {key!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    margin = _number(data, "revert_margin_s", "", problems, default=300, low=0, integer=True)
    timeout = _number(data, "timeout_s", "", problems, default=5.0, low=0.1)
    command_log = _string(data, "command_log", "", problems, default="database/device-commands.jsonl")
    state_file = _string(data, "state_file", "", problems, default="database/devices-state.json")

    brokers: dict[str, BrokerConfig] = {}
    raw_brokers = data.get("brokers", {})
    if not isinstance(raw_brokers, dict):
        problems.append("brokers: must be an object of name -> {\"host\": ..., \"port\": ...}")
        raw_brokers = {}
    for bname, raw in raw_brokers.items():
        where = f"brokers.{bname}: "
        if not isinstance(raw, dict):
            problems.append(f"{where}must be an object with at least \"host\"")
            continue
        for key in sorted(set(raw) - _BROKER_KEYS):
            problems.append(f"{where}unknown key {key!r} (allowed: {', '.join(sorted(_BROKER_KEYS))})")
        host = _string(raw, "host", where, problems)
        port = _number(raw, "port", where, problems, default=1883, low=1, high=65535, integer=True)
        client_id = _string(raw, "client_id", where, problems, default="dr-consumer")
        brokers[bname] = BrokerConfig(
            name=bname, host=host or "", port=int(port or 1883),
            username=_string(raw, "username", where, problems, default=None),
            password_env=_env_name(raw, "password_env", where, problems),
            client_id=client_id or "dr-consumer",
            keepalive=int(_number(raw, "keepalive", where, problems, default=30, low=5, high=3600, integer=True) or 30),
            status_topic=_topic(raw, "status_topic", where, problems, default=f"dr/{client_id or 'dr-consumer'}") or "",
        )

    ocpp = data.get("ocpp", {})
    if not isinstance(ocpp, dict):
        problems.append("ocpp: must be an object {\"host\": \"127.0.0.1\", \"port\": 9000}")
        ocpp = {}
    for key in sorted(set(ocpp) - _OCPP_KEYS):
        problems.append(f"ocpp: unknown key {key!r} (allowed: host, port)")
    ocpp_host = _string(ocpp, "host", "ocpp: ", problems, default="127.0.0.1")
    ocpp_port = _number(ocpp, "port", "ocpp: ", problems, default=9000, low=0, high=65535, integer=True)

    devices: list[DeviceSpec] = []
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, list):
        problems.append("devices: missing or not a list; write \"devices\": [ {\"name\": ..., \"kind\": ...}, ... ]")
        raw_devices = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_devices):
        spec = _device(i, raw, brokers, problems)
        if spec is None:
            continue
        if spec.name in seen:
            problems.append(f"devices[{i}] ({spec.name}): name used twice; give each device its own name")
            continue
        seen.add(spec.name)
        devices.append(spec)
    if problems:
        raise ConfigError(path, problems)
    return DevicesConfig(devices=devices, brokers=brokers, ocpp_host=ocpp_host or "127.0.0.1",
                         ocpp_port=int(ocpp_port), revert_margin_s=int(margin), timeout_s=float(timeout),
                         command_log=Path(command_log or ""), state_file=Path(state_file or ""))


def _device(i: int, raw: Any, brokers: dict[str, BrokerConfig], problems: list[str]) -> DeviceSpec | None:
    where = f"devices[{i}]: "
    if not isinstance(raw, dict):
        problems.append(f"{where}must be an object with \"name\" and \"kind\"")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}name must be 1-64 letters, digits, '.', '_' or '-' (got {name!r})")
        name = f"#{i}"
    where = f"devices[{i}] ({name}): "
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}kind must be one of {', '.join(KINDS)} (got {kind!r})")
        return None
    required, optional = _KIND_KEYS[kind]
    for key in sorted(required - set(raw)):
        problems.append(f"{where}missing {key!r} (a {kind} device needs {', '.join(sorted(required))})")
    for key in sorted(set(raw) - required - optional - _COMMON):
        problems.append(f"{where}unknown key {key!r} for a {kind} device "
                        f"(allowed: {', '.join(sorted(required | optional | _COMMON))})")
    before = len(problems)
    priority = _number(raw, "priority", where, problems, default=100, low=0, high=10_000, integer=True)
    options: dict[str, Any] = {}
    max_w: float | None = None
    min_w = 0.0
    if kind in ("tasmota", "shelly"):
        broker = raw.get("broker")
        if "broker" in raw and broker not in brokers:
            problems.append(f"{where}broker {broker!r} is not defined under \"brokers\" "
                            f"(defined: {', '.join(sorted(brokers)) or 'none'})")
        options["broker"] = broker
    if kind == "tasmota":
        options["topic"] = _topic(raw, "topic", where, problems)
        options["relay"] = int(_number(raw, "relay", where, problems, default=1, low=1, high=32, integer=True) or 1)
        options["rule"] = int(_number(raw, "rule", where, problems, default=3, low=1, high=3, integer=True) or 3)
    elif kind == "shelly":
        options["device_id"] = _topic(raw, "device_id", where, problems)
        options["switch_id"] = int(_number(raw, "switch_id", where, problems, default=0, low=0, high=15, integer=True) or 0)
    elif kind == "homeassistant":
        url = _string(raw, "url", where, problems)
        if url and not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", url):
            problems.append(f"{where}url must look like http://homeassistant.local:8123 (got {url!r})")
        options["url"] = (url or "").rstrip("/")
        for key in ("entity_id", "revert_timer", "power_entity_id"):
            value = _string(raw, key, where, problems, default=None)
            if value is not None and not _ENTITY.match(value):
                problems.append(f"{where}{key} must be an entity id like switch.water_heater (got {value!r})")
            options[key] = value
        if options.get("revert_timer") and not str(options["revert_timer"]).startswith("timer."):
            problems.append(f"{where}revert_timer must be a timer entity (timer.something); see docs/devices.md")
        options["token_env"] = _env_name(raw, "token_env", where, problems) or "HA_TOKEN"
    elif kind == "ocpp":
        options["station_id"] = _topic(raw, "station_id", where, problems)
        max_w = _number(raw, "max_w", where, problems, low=1)
        min_w = _number(raw, "min_w", where, problems, default=0, low=0) or 0.0
        options["evse_id"] = int(_number(raw, "evse_id", where, problems, default=0, low=0, high=64, integer=True) or 0)
        options["stack_level"] = int(_number(raw, "stack_level", where, problems, default=9, low=0, high=99, integer=True) or 0)
        options["profile_id"] = int(_number(raw, "profile_id", where, problems, default=4711, low=1,
                                            high=2**31 - 1, integer=True) or 4711)
        purpose = raw.get("purpose", "TxDefaultProfile")
        if purpose not in ("TxDefaultProfile", "ChargingStationMaxProfile"):
            problems.append(f"{where}purpose must be TxDefaultProfile or ChargingStationMaxProfile (got {purpose!r})")
        options["purpose"] = purpose
    elif kind == "sunspec":
        options["host"] = _string(raw, "host", where, problems)
        options["port"] = int(_number(raw, "port", where, problems, default=502, low=1, high=65535, integer=True) or 502)
        options["unit_id"] = int(_number(raw, "unit_id", where, problems, default=1, low=1, high=247, integer=True) or 1)
        max_w = _number(raw, "rated_w", where, problems, low=1)
        min_w = _number(raw, "min_w", where, problems, default=0, low=0) or 0.0
    elif kind == "simulation":
        device = raw.get("device")
        if device not in _SIM_DEVICES:
            problems.append(f"{where}device must be one of {', '.join(_SIM_DEVICES)} (got {device!r})")
        options["device"] = device
        options["household"] = int(_number(raw, "household", where, problems, default=0, low=0, integer=True) or 0)
        options["households"] = int(_number(raw, "households", where, problems, default=20, low=1, high=100_000,
                                            integer=True) or 20)
        options["seed"] = int(_number(raw, "seed", where, problems, default=0, low=0, integer=True) or 0)
        options["outdoor_max_c"] = float(_number(raw, "outdoor_max_c", where, problems, default=33.0, low=-50,
                                                 high=60) or 33.0)
        if options["household"] >= options["households"]:
            problems.append(f"{where}household must be below households ({options['households']})")
        max_w = _number(raw, "max_w", where, problems, default=None, low=1)
        min_w = _number(raw, "min_w", where, problems, default=0, low=0) or 0.0
    if max_w is not None and min_w >= max_w:
        problems.append(f"{where}min_w ({min_w:g} W) must be below the device's maximum ({max_w:g} W)")
    cappable = kind in CAP_KINDS or max_w is not None
    default_shed = (max_w - min_w) if (cappable and max_w is not None and min_w < max_w) else None
    shed_w = _number(raw, "shed_w", where, problems, default=default_shed, low=1, high=1_000_000)
    if shed_w is None and not cappable and "shed_w" not in raw:
        problems.append(f"{where}missing 'shed_w': the watts this device stops drawing when switched off")
    if len(problems) > before:
        return None
    return DeviceSpec(name=name, kind=kind, shed_w=float(shed_w or 0.0), priority=int(priority),
                      max_w=float(max_w) if max_w is not None else None, min_w=float(min_w), options=options)


def _number(raw: dict, key: str, where: str, problems: list[str], *, default: Any = ..., low: float | None = None,
            high: float | None = None, integer: bool = False) -> Any:
    if key not in raw:
        return None if default is ... else default
    value = raw[key]
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        problems.append(f"{where}{key} must be {kind} (got {value!r})")
        return None
    if integer and value != int(value):
        problems.append(f"{where}{key} must be {kind} (got {value!r})")
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        problems.append(f"{where}{key} must be {span} (got {value!r})")
        return None
    return int(value) if integer else float(value)


def _string(raw: dict, key: str, where: str, problems: list[str], *, default: Any = ...) -> Any:
    if key not in raw:
        return None if default is ... else default
    value = raw[key]
    if not isinstance(value, str) or not value.strip() or len(value) > 500 or "\x00" in value:
        problems.append(f"{where}{key} must be a non-empty text (got {value!r})")
        return None
    return value


def _topic(raw: dict, key: str, where: str, problems: list[str], *, default: Any = ...) -> Any:
    value = _string(raw, key, where, problems, default=default)
    if value is not None and not _TOPIC.match(value):
        problems.append(f"{where}{key} must be a plain MQTT topic part: no spaces, '+', '#' or leading '/' "
                        f"(got {value!r})")
        return None
    return value


def _env_name(raw: dict, key: str, where: str, problems: list[str]) -> str | None:
    value = _string(raw, key, where, problems, default=None)
    if value is not None and not _ENV.match(value):
        problems.append(f"{where}{key} names an environment variable (like HA_TOKEN), not the secret itself")
        return None
    return value
