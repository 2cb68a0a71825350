"""Simulated devices that speak the real protocols, for the tests and the demo.

Each one is a real protocol peer on loopback: a Mosquitto broker process, Tasmota and
Shelly plugs as MQTT clients that answer the way the firmware does, an OCPP 2.0.1 charging
station (an ``ocpp`` ChargePoint over websockets), a SunSpec inverter (a pymodbus TCP server
holding a model 1/701/704 map built from pysunspec2's model definitions) and a Home
Assistant REST server (aiohttp; the real endpoints, JSON shapes and bearer-token check).
Their revert timers run on real time, like the devices'.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .drivers import require


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class Mosquitto:
    """A Mosquitto broker on loopback with its own config file; stop/start keep the port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto; make system-deps)")
        self.binary, self.workdir = binary, Path(workdir)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"log_dest file {self.workdir / 'mosquitto.log'}\n", encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Mosquitto":
        """Start the broker and wait until it accepts connections."""
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop the broker (every client loses its connection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class _MqttPeer:
    def __init__(self, port: int, client_id: str, will: tuple[str, str]) -> None:
        mqtt = require("paho.mqtt.client")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected()
        self.client.on_message = lambda c, u, m: self._message(m.topic, m.payload.decode("utf-8", "replace"))
        # ready once the broker has confirmed the subscription: commands sent before would be lost
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.ready.set()
        self.ready = threading.Event()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _connected(self) -> None:
        """Subclasses subscribe here; ``ready`` is set when the broker acknowledges."""

    def _message(self, topic: str, payload: str) -> None:
        raise NotImplementedError

    def publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        self.client.publish(topic, payload if isinstance(payload, str) else json.dumps(payload), qos=1, retain=retain)

    def close(self) -> None:
        """Disconnect cleanly."""
        self.client.disconnect()
        self.client.loop_stop()

    def crash(self) -> None:
        """Drop off the network without a clean disconnect (the broker sends the last will)."""
        self.client.loop_stop()
        try:
            self.client.socket().close()
        except Exception:
            pass


class SimTasmota(_MqttPeer):
    """A Tasmota plug with an energy meter: Power, Backlog, Rule, RuleTimer and Status 10."""

    def __init__(self, port: int, topic: str, load_w: float = 2000.0) -> None:
        self.topic, self.load_w, self.on = topic, load_w, True
        self.rules: dict[int, dict[str, Any]] = {}
        self.timers: dict[int, threading.Timer] = {}
        self.received: list[str] = []
        self._lock = threading.RLock()
        super().__init__(port, f"tasmota-{topic}", (f"tele/{topic}/LWT", "Offline"))

    def _connected(self) -> None:
        self.client.subscribe(f"cmnd/{self.topic}/#", qos=1)
        self.publish(f"tele/{self.topic}/LWT", "Online", retain=True)
        super()._connected()

    @property
    def power_w(self) -> float:
        return self.load_w if self.on else 0.0

    def _result(self, data: dict[str, Any]) -> None:
        self.publish(f"stat/{self.topic}/RESULT", data)

    def _set_power(self, on: bool) -> None:
        self.on = on
        state = "ON" if on else "OFF"
        self._result({"POWER": state})
        self.publish(f"stat/{self.topic}/POWER", state)

    def _message(self, topic: str, payload: str) -> None:
        command = topic.rsplit("/", 1)[-1]
        with self._lock:
            self.received.append(f"{command} {payload}".strip())
            if command.lower() == "backlog":
                for part in payload.split(";"):
                    part = part.strip()
                    if part:
                        name, _, arg = part.partition(" ")
                        self.command(name, arg.strip())
            else:
                self.command(command, payload.strip())

    def command(self, name: str, arg: str) -> None:
        """Run one Tasmota command and publish its answer."""
        low = name.lower()
        if low in ("power", "power1"):
            if arg.upper() in ("ON", "1", "TRUE"):
                self._set_power(True)
            elif arg.upper() in ("OFF", "0", "FALSE"):
                self._set_power(False)
            elif arg.upper() in ("TOGGLE", "2"):
                self._set_power(not self.on)
            else:
                self._result({"POWER": "ON" if self.on else "OFF"})
        elif low.startswith("ruletimer"):
            n = int(low[len("ruletimer"):] or 1)
            if n in self.timers:
                self.timers.pop(n).cancel()
            seconds = float(arg or 0)
            if seconds > 0:
                timer = threading.Timer(seconds, self._timer_fired, args=(n,))
                timer.daemon = True
                self.timers[n] = timer
                timer.start()
            self._result({f"T{i}": int(seconds) if i == n else 0 for i in range(1, 9)})
        elif low.startswith("rule"):
            n = int(low[len("rule"):] or 1)
            rule = self.rules.setdefault(n, {"State": "OFF", "Rules": ""})
            if arg in ("1", "ON"):
                rule["State"] = "ON"
            elif arg in ("0", "OFF"):
                rule["State"] = "OFF"
            elif arg:
                rule["Rules"] = arg
            self._result({f"Rule{n}": {"State": rule["State"], "Once": "OFF", "StopOnError": "OFF",
                                       "Length": len(rule["Rules"]), "Free": 511 - len(rule["Rules"]),
                                       "Rules": rule["Rules"]}})
        elif low == "status" and arg == "10":
            self.publish(f"stat/{self.topic}/STATUS10", {"StatusSNS": self._sensor()})
        else:
            self._result({"Command": "Unknown"})

    def _sensor(self) -> dict[str, Any]:
        return {"Time": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
                "ENERGY": {"TotalStartTime": "2026-01-01T00:00:00", "Total": 12.345, "Yesterday": 1.2, "Today": 0.4,
                           "Power": round(self.power_w), "ApparentPower": round(self.power_w), "ReactivePower": 0,
                           "Factor": 1.0, "Voltage": 230, "Current": round(self.power_w / 230, 3)}}

    def _timer_fired(self, n: int) -> None:
        with self._lock:
            self.timers.pop(n, None)
            for rule in self.rules.values():
                if rule["State"] != "ON":
                    continue
                text = rule["Rules"]
                marker = f"ON Rules#Timer={n} DO "
                if marker in text:
                    action = text.split(marker, 1)[1].split(" ENDON", 1)[0].strip()
                    name, _, arg = action.partition(" ")
                    self.command(name, arg)

    def press(self) -> None:
        """The button on the plug: toggles the relay."""
        with self._lock:
            self._set_power(not self.on)

    def tele(self) -> None:
        """The periodic telemetry message."""
        self.publish(f"tele/{self.topic}/SENSOR", self._sensor())


class SimShelly(_MqttPeer):
    """A Shelly Plus plug (Gen2 RPC over MQTT): Switch.Set with toggle_after, Switch.GetStatus."""

    def __init__(self, port: int, device_id: str, load_w: float = 1500.0) -> None:
        self.device_id, self.load_w, self.output = device_id, load_w, True
        self.timer: threading.Timer | None = None
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        super().__init__(port, device_id, (f"{device_id}/online", "false"))

    def _connected(self) -> None:
        self.client.subscribe(f"{self.device_id}/rpc", qos=1)
        self.publish(f"{self.device_id}/online", "true", retain=True)
        super()._connected()

    def status(self) -> dict[str, Any]:
        power = self.load_w if self.output else 0.0
        return {"id": 0, "source": "MQTT", "output": self.output, "apower": power, "voltage": 230.1,
                "current": round(power / 230.1, 3), "aenergy": {"total": 1234.5}, "temperature": {"tC": 41.2}}

    def _set(self, on: bool, source: str) -> bool:
        was = self.output
        self.output = on
        self.publish(f"{self.device_id}/events/rpc", {"src": self.device_id, "dst": f"{self.device_id}/events",
                                                      "method": "NotifyStatus",
                                                      "params": {"ts": time.time(),
                                                                 "switch:0": {"id": 0, "output": on, "source": source}}})
        return was

    def _message(self, topic: str, payload: str) -> None:
        try:
            frame = json.loads(payload)
            src, rid, method = frame["src"], frame["id"], frame["method"]
        except (ValueError, KeyError, TypeError):
            return  # the firmware drops frames it cannot parse
        params = frame.get("params") or {}
        with self._lock:
            self.requests.append(frame)
            reply: dict[str, Any] = {"id": rid, "src": self.device_id, "dst": src}
            if method == "Switch.Set" and params.get("id", 0) == 0 and isinstance(params.get("on"), bool):
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
                was = self._set(params["on"], "MQTT")
                after = params.get("toggle_after")
                if isinstance(after, (int, float)) and after > 0:
                    self.timer = threading.Timer(float(after), self._flip_back)
                    self.timer.daemon = True
                    self.timer.start()
                reply["result"] = {"was_on": was}
            elif method == "Switch.GetStatus" and params.get("id", 0) == 0:
                reply["result"] = self.status()
            elif method.startswith("Switch."):
                reply["error"] = {"code": -103, "message": "Invalid argument 'id'!"}
            else:
                reply["error"] = {"code": 404, "message": f"No handler for {method}"}
        self.publish(f"{src}/rpc", reply)

    def _flip_back(self) -> None:
        with self._lock:
            self.timer = None
            self._set(not self.output, "timer")

    def press(self) -> None:
        """The button: toggles the output."""
        with self._lock:
            self._set(not self.output, "button")


class SimChargePoint:
    """An OCPP 2.0.1 charging station (an ``ocpp`` ChargePoint over websockets) that obeys profiles."""

    def __init__(self, url: str, station_id: str, draw_w: float = 7400.0) -> None:
        self.url, self.station_id, self.draw_w = url.rstrip("/"), station_id, draw_w
        self.profiles: dict[int, dict[str, Any]] = {}
        self.received: list[tuple[str, Any]] = []
        self.connected = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=f"cp-{station_id}")
        self._thread.start()
        self._task: Any = None

    def _now(self) -> float:
        return time.time()

    def limit_w(self) -> float | None:
        """The cap the charger applies now (the lowest of its valid profiles), or None."""
        now, limits = self._now(), []
        for profile in self.profiles.values():
            for sched in profile.get("charging_schedule", []):
                start = datetime.fromisoformat(sched["start_schedule"].replace("Z", "+00:00")).timestamp()
                if start <= now < start + float(sched.get("duration", 1e12)):
                    limits.append(float(sched["charging_schedule_period"][0]["limit"]))
        return min(limits) if limits else None

    @property
    def power_w(self) -> float:
        limit = self.limit_w()
        return self.draw_w if limit is None else min(self.draw_w, limit)

    def _class(self) -> type:
        v201 = require("ocpp.v201")
        on = require("ocpp.routing").on
        peer = self

        class _CP(v201.ChargePoint):
            @on("SetChargingProfile")
            async def set_profile(self, evse_id: int, charging_profile: dict, **_: Any) -> Any:
                peer.received.append(("SetChargingProfile", charging_profile))
                peer.profiles[int(charging_profile["id"])] = charging_profile
                return v201.call_result.SetChargingProfile(status="Accepted")

            @on("ClearChargingProfile")
            async def clear_profile(self, charging_profile_id: int | None = None, **_: Any) -> Any:
                peer.received.append(("ClearChargingProfile", charging_profile_id))
                if charging_profile_id in peer.profiles:
                    del peer.profiles[charging_profile_id]
                    return v201.call_result.ClearChargingProfile(status="Accepted")
                return v201.call_result.ClearChargingProfile(status="Unknown")

            @on("TriggerMessage")
            async def trigger(self, requested_message: str, **_: Any) -> Any:
                if requested_message == "MeterValues":
                    asyncio.get_running_loop().create_task(peer._send_meter_values())
                    return v201.call_result.TriggerMessage(status="Accepted")
                return v201.call_result.TriggerMessage(status="NotImplemented")

        return _CP

    async def _send_meter_values(self) -> None:
        v201 = require("ocpp.v201")
        await self.cp.call(v201.call.MeterValues(evse_id=1, meter_value=[{
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "sampled_value": [{"value": self.power_w, "measurand": "Power.Active.Import",
                               "unit_of_measure": {"unit": "W"}}]}]))

    async def _run(self) -> None:
        ws = require("websockets.asyncio.client")
        v201 = require("ocpp.v201")
        async with ws.connect(f"{self.url}/{self.station_id}", subprotocols=["ocpp2.0.1"]) as conn:
            self.cp = self._class()(self.station_id, conn)
            task = asyncio.get_running_loop().create_task(self.cp.start())
            await self.cp.call(v201.call.BootNotification(
                charging_station={"model": "SimCharger", "vendor_name": "demand-response"}, reason="PowerUp"))
            self.connected.set()
            try:
                await task
            finally:
                self.connected.clear()

    def connect(self, timeout: float = 10.0) -> "SimChargePoint":
        """Connect and boot (BootNotification); returns when the manager accepted it."""
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        deadline = time.monotonic() + timeout
        while not self.connected.wait(0.02):
            if self._task.done() or time.monotonic() > deadline:
                exc = self._task.exception(timeout=0.1) if self._task.done() else "timed out"
                raise ConnectionError(f"charger {self.station_id} could not connect to {self.url}: {exc}")
        return self

    def disconnect(self) -> None:
        """Drop the websocket (the charger keeps its profiles, as a real one does)."""
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
            deadline = time.monotonic() + 5
            while self.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._task = None

    def close(self) -> None:
        """Disconnect and stop the loop."""
        self.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


#: Base register of the SunSpec map ("SunS" marker), the common default.
SUNSPEC_BASE = 40000


class SimInverter:
    """A SunSpec inverter/battery: pymodbus TCP server with models 1, 701 and 704 that honours the
    WMaxLimPct limit and its reversion timer (WMaxLimPctRvrtTms counts down on real time)."""

    def __init__(self, rated_w: float = 5000.0, draw_w: float = 4000.0, port: int | None = None) -> None:
        device = require("sunspec2.device")
        self.rated_w, self.draw_w = rated_w, draw_w
        self.port = port or free_port()
        self.models: dict[int, Any] = {}
        regs = [0x5375, 0x6E53]  # "SunS"
        self.offsets: dict[int, int] = {}
        for mid in (1, 701, 704):
            model = device.Model(mid)
            length = len(model.get_mb()) // 2
            model.points["ID"].value, model.points["L"].value = mid, length - 2
            if mid == 1:
                for key, value in (("Mn", "demand-response"), ("Md", "SimInverter"), ("SN", "SIM-0001"),
                                   ("Vr", "1.0"), ("DA", 1)):
                    model.points[key].value = value
            elif mid == 701:
                model.points["W_SF"].value = 0
                model.points["W"].value = int(draw_w)
            else:
                for key, value in (("WMaxLimPctEna", 0), ("WMaxLimPct", 100), ("WMaxLimPctRvrt", 100),
                                   ("WMaxLimPctEnaRvrt", 0), ("WMaxLimPctRvrtTms", 0), ("WMaxLimPctRvrtRem", 0),
                                   ("WMaxLimPct_SF", 0)):
                    model.points[key].value = value
            self.offsets[mid] = SUNSPEC_BASE + len(regs)
            regs.extend(int.from_bytes(model.get_mb()[i:i + 2], "big") for i in range(0, length * 2, 2))
            self.models[mid] = model
        regs.extend([0xFFFF, 0])
        self.registers = regs
        self.revert_deadline: float | None = None
        self.writes: list[tuple[int, list[int]]] = []
        self._server: Any = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="sunspec-sim")
        self._thread.start()

    def _point_addr(self, name: str) -> int:
        model = self.models[704]
        return self.offsets[704] + model.points[name].offset

    def reg(self, name: str) -> int:
        """The current value of a model 704 register (one-register points), timer applied."""
        self._update()
        return self._reg(name)

    def _reg(self, name: str) -> int:
        return self.registers[self._point_addr(name) - SUNSPEC_BASE]

    def _set_reg(self, name: str, value: int, size: int = 1) -> None:
        addr = self._point_addr(name) - SUNSPEC_BASE
        if size == 2:
            self.registers[addr], self.registers[addr + 1] = (value >> 16) & 0xFFFF, value & 0xFFFF
        else:
            self.registers[addr] = value & 0xFFFF

    def _update(self) -> None:
        now = time.time()
        if self.revert_deadline is not None:
            remaining = max(0, int(self.revert_deadline - now + 0.999))
            self._set_reg("WMaxLimPctRvrtRem", remaining, 2)
            if now >= self.revert_deadline:
                self._set_reg("WMaxLimPctEna", self._reg("WMaxLimPctEnaRvrt"))
                self._set_reg("WMaxLimPct", self._reg("WMaxLimPctRvrt"))
                self.revert_deadline = None
        w_addr = self.offsets[701] + self.models[701].points["W"].offset - SUNSPEC_BASE
        self.registers[w_addr] = int(round(self._power())) & 0xFFFF

    def _power(self) -> float:
        if self._reg("WMaxLimPctEna") == 1:
            return min(self.draw_w, self.rated_w * self._reg("WMaxLimPct") / 100.0)
        return self.draw_w

    @property
    def power_w(self) -> float:
        """What the device draws now, under its limit (its revert timer applied)."""
        self._update()
        return self._power()

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current_registers: list[int], set_values: Any) -> None:
        if set_values is None:
            self._update()
            current_registers[:] = self.registers[start_address - SUNSPEC_BASE:][:len(current_registers)]
            return
        self.writes.append((address, list(set_values)))
        base = address - SUNSPEC_BASE
        for i, value in enumerate(set_values):
            self.registers[base + i] = int(value)
        tms_addr = self._point_addr("WMaxLimPctRvrtTms")
        if address <= tms_addr + 1 and address + len(set_values) > tms_addr:
            tms = (self.registers[tms_addr - SUNSPEC_BASE] << 16) | self.registers[tms_addr - SUNSPEC_BASE + 1]
            self.revert_deadline = time.time() + tms if tms and self._reg("WMaxLimPctEna") == 1 else None
        self._update()
        current_registers[:] = self.registers[start_address - SUNSPEC_BASE:][:len(current_registers)]

    def start(self) -> "SimInverter":
        """Listen on 127.0.0.1:port."""
        server_mod = require("pymodbus.server")
        sim = require("pymodbus.simulator")
        from pymodbus.simulator.simdata import DataType

        async def serve() -> Any:
            block = sim.SimData(SUNSPEC_BASE, values=list(self.registers), datatype=DataType.REGISTERS)
            device = sim.SimDevice(id=1, simdata=[block], action=self._action)
            server = server_mod.ModbusTcpServer(device, address=("127.0.0.1", self.port))
            self.loop.create_task(server.serve_forever())
            return server

        self._server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop serving (the device keeps its registers and timer)."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self.loop).result(10)
            self._server = None

    def close(self) -> None:
        """Stop serving and end the loop."""
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class SimHomeAssistant:
    """Home Assistant's REST API on loopback (aiohttp): states, services, bearer token, timers.

    It holds switch, sensor and timer entities, and one automation per timer: when a timer
    finishes it turns its switch on (the automation docs/devices.md asks users to add).
    """

    def __init__(self, token: str, port: int | None = None) -> None:
        self.token, self.port = token, port or free_port()
        self.states: dict[str, dict[str, Any]] = {}
        self.automations: dict[str, str] = {}  # timer -> switch to turn on when it finishes
        self.timers: dict[str, threading.Timer] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="ha-sim")
        self._thread.start()
        self._runner: Any = None
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_switch(self, entity_id: str, on: bool = True, power_entity: str | None = None, load_w: float = 0.0,
                   timer: str | None = None) -> None:
        """A switch, its power sensor and its revert timer with the automation."""
        self._set(entity_id, "on" if on else "off", {"friendly_name": entity_id})
        if power_entity:
            self._set(power_entity, str(load_w if on else 0.0), {"unit_of_measurement": "W", "device_class": "power"})
            self.states[entity_id]["_power"] = (power_entity, load_w)
        if timer:
            self._set(timer, "idle", {"duration": "0:00:00", "editable": False})
            self.automations[timer] = entity_id

    def _set(self, entity_id: str, state: str, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        now = datetime.now(timezone.utc).isoformat()
        old = self.states.get(entity_id, {})
        entry = {"entity_id": entity_id, "state": state,
                 "attributes": attributes if attributes is not None else old.get("attributes", {}),
                 "last_changed": now if old.get("state") != state else old.get("last_changed", now),
                 "last_reported": now, "last_updated": now,
                 "context": {"id": f"01J{int(time.time() * 1000):X}", "parent_id": None, "user_id": None}}
        if "_power" in old:
            entry["_power"] = old["_power"]
            sensor, load = old["_power"]
            self.states[sensor]["state"] = str(load if state == "on" else 0.0)
        self.states[entity_id] = entry
        return entry

    def public(self, entity_id: str) -> dict[str, Any]:
        """An entity's state object as the API returns it."""
        return {k: v for k, v in self.states[entity_id].items() if not k.startswith("_")}

    def set_state(self, entity_id: str, state: str) -> None:
        """A change made in Home Assistant itself (its UI, a wall switch)."""
        with self._lock:
            self._set(entity_id, state)

    def _timer_done(self, timer: str) -> None:
        with self._lock:
            self.timers.pop(timer, None)
            self._set(timer, "idle")
            target = self.automations.get(timer)
            if target:
                self._set(target, "on")

    def _service(self, domain: str, service: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        entity_ids = data.get("entity_id")
        ids = [entity_ids] if isinstance(entity_ids, str) else list(entity_ids or [])
        changed = []
        with self._lock:
            for entity_id in ids:
                if entity_id not in self.states:
                    continue
                if domain == "timer" and service == "start":
                    parts = [int(p) for p in str(data.get("duration", "0:0:0")).split(":")]
                    seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
                    if entity_id in self.timers:
                        self.timers.pop(entity_id).cancel()
                    timer = threading.Timer(seconds, self._timer_done, args=(entity_id,))
                    timer.daemon = True
                    self.timers[entity_id] = timer
                    timer.start()
                    changed.append(self._set(entity_id, "active", {"duration": data.get("duration"),
                                                                   "remaining": data.get("duration")}))
                elif domain == "timer" and service == "cancel":
                    if entity_id in self.timers:
                        self.timers.pop(entity_id).cancel()
                    changed.append(self._set(entity_id, "idle"))
                elif service in ("turn_on", "turn_off"):
                    changed.append(self._set(entity_id, "on" if service == "turn_on" else "off"))
        return [{k: v for k, v in c.items() if not k.startswith("_")} for c in changed]

    def start(self) -> "SimHomeAssistant":
        """Serve the API on 127.0.0.1."""
        web = require("aiohttp.web")

        def authorised(request: Any) -> bool:
            return request.headers.get("Authorization", "") == f"Bearer {self.token}"

        async def api_root(request: Any) -> Any:
            if not authorised(request):
                return web.Response(status=401, text="401: Unauthorized")
            return web.json_response({"message": "API running."})

        async def get_state(request: Any) -> Any:
            if not authorised(request):
                return web.Response(status=401, text="401: Unauthorized")
            entity_id = request.match_info["entity_id"]
            with self._lock:
                if entity_id not in self.states:
                    return web.json_response({"message": "Entity not found."}, status=404)
                return web.json_response(self.public(entity_id))

        async def call_service(request: Any) -> Any:
            if not authorised(request):
                return web.Response(status=401, text="401: Unauthorized")
            try:
                data = await request.json()
            except ValueError:
                return web.json_response({"message": "Data should be valid JSON."}, status=400)
            domain, service = request.match_info["domain"], request.match_info["service"]
            self.calls.append((f"{domain}.{service}", data))
            return web.json_response(self._service(domain, service, data if isinstance(data, dict) else {}))

        async def serve() -> Any:
            app = web.Application()
            app.router.add_get("/api/", api_root)
            app.router.add_get("/api/states/{entity_id}", get_state)
            app.router.add_post("/api/services/{domain}/{service}", call_service)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        """Stop serving (Home Assistant restarting)."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
            self._runner = None

    def close(self) -> None:
        """Stop serving, cancel timers, end the loop."""
        self.stop()
        for timer in self.timers.values():
            timer.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


#: The Home Assistant core release ``make ha-core`` installs (the Makefile's HA_CORE pins it), written
#: into the token's record as HA itself would.
HA_CORE_VERSION = "2025.4.4"


def _jwt_hs256(claims: dict[str, Any], key: str) -> str:
    """A JSON Web Token signed with HMAC-SHA256 (what HA's long-lived access tokens are)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


class HomeAssistantCore:
    """A real Home Assistant core (``python -m homeassistant``) on loopback, for the optional test.

    ``python`` is an interpreter with ``homeassistant`` installed (``make ha-core``: a side venv,
    since HA needs Python 3.13 and would downgrade the project's pinned packages). The config
    holds the one device the driver needs: ``input_boolean.water_heater``, its revert timer
    ``timer.dr_water_heater``, the revert automation of docs/devices.md, and a template power
    sensor ``sensor.water_heater_power`` (2000 W when on). A long-lived access token is created
    without the UI: an owner and a ``long_lived_access_token`` refresh token are written to
    ``.storage/auth`` before the first start, and the token is the JWT HA itself would issue.
    """

    LOAD_W = 2000

    def __init__(self, python: str, workdir: Path, port: int | None = None) -> None:
        import secrets
        import uuid

        self.python, self.workdir = python, Path(workdir)
        self.port = port or free_port()
        storage = self.workdir / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        (self.workdir / "configuration.yaml").write_text(f"""homeassistant:
  name: dr-test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {self.port}
api:
input_boolean:
  water_heater:
    name: Water heater
    initial: true
timer:
  dr_water_heater:
    name: Water heater revert
automation:
  - alias: dr revert water heater
    trigger: {{platform: event, event_type: timer.finished, event_data: {{entity_id: timer.dr_water_heater}}}}
    action: {{service: input_boolean.turn_on, target: {{entity_id: input_boolean.water_heater}}}}
template:
  - sensor:
      - name: Water heater power
        unique_id: water_heater_power
        unit_of_measurement: W
        state: "{{{{ {self.LOAD_W} if is_state('input_boolean.water_heater', 'on') else 0 }}}}"
""", encoding="utf-8")
        user, refresh, key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        auth = {"version": 1, "minor_version": 1, "key": "auth", "data": {
            "users": [{"id": user, "group_ids": ["system-admin"], "is_owner": True, "is_active": True, "name": "dr",
                       "system_generated": False, "local_only": False}],
            "groups": [{"id": "system-admin", "name": "Administrators"}, {"id": "system-users", "name": "Users"},
                       {"id": "system-read-only", "name": "Read Only"}],
            "credentials": [],
            "refresh_tokens": [{
                "id": refresh, "user_id": user, "client_id": None, "client_name": "demand-response",
                "client_icon": None, "token_type": "long_lived_access_token",
                "created_at": datetime.now(timezone.utc).isoformat(), "access_token_expiration": 10 * 365 * 86400.0,
                "token": secrets.token_hex(64), "jwt_key": key, "last_used_at": None, "last_used_ip": None,
                "expire_at": None, "credential_id": None, "version": HA_CORE_VERSION}]}}
        (storage / "auth").write_text(json.dumps(auth), encoding="utf-8")
        now = int(time.time())
        self.token = _jwt_hs256({"iss": refresh, "iat": now, "exp": now + 10 * 365 * 86400}, key)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The base URL of its REST API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> "HomeAssistantCore":
        """Start HA and wait until ``/api/`` answers with the token (its first start takes seconds)."""
        import requests

        log = open(self.workdir / "home-assistant.out", "ab")
        self.proc = subprocess.Popen([self.python, "-m", "homeassistant", "--config", str(self.workdir), "--skip-pip"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited ({self.proc.returncode}); see {self.workdir}/home-assistant.out")
            try:
                if requests.get(f"{self.url}/api/states/sensor.water_heater_power", timeout=2,
                                headers={"Authorization": f"Bearer {self.token}"}).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Home Assistant did not answer on {self.url} within {timeout:g} s")

    def state(self, entity_id: str) -> dict[str, Any]:
        """An entity's state object, read through the REST API."""
        import requests

        return requests.get(f"{self.url}/api/states/{entity_id}", timeout=5,
                            headers={"Authorization": f"Bearer {self.token}"}).json()

    def call(self, domain: str, service: str, **data: Any) -> None:
        """Call a service as a person would from HA's UI (an override)."""
        import requests

        requests.post(f"{self.url}/api/services/{domain}/{service}", json=data, timeout=5,
                      headers={"Authorization": f"Bearer {self.token}"}).raise_for_status()

    def stop(self) -> None:
        """Stop HA (SIGTERM, then SIGKILL after 20 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
