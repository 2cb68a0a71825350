"""MQTT relays and plugs: Tasmota (``cmnd``/``stat``/``tele`` topics) and Shelly Gen2 (RPC over MQTT).

One :class:`MqttBus` (a paho-mqtt client) per broker serves every plug on it. It announces
the daemon with a retained ``<status_topic>/online`` = ``online`` and leaves a last will that
sets it to ``offline``, and it keeps each device's commanded state retained under
``<status_topic>/devices/<name>``, so anything watching the broker (or a restarted daemon)
sees what was asked and whether the daemon is alive. Commands themselves are never retained:
a plug that reconnects must not replay an old shed.

Device-side revert: Tasmota gets a rule timer that switches the relay back on
(``Rule<n> ON Rules#Timer=<n> DO Power<r> ON ENDON`` + ``RuleTimer<n> <s>``); Shelly gets
``toggle_after`` on ``Switch.Set``.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import BrokerConfig
from ..core import Ack, DeviceError, DeviceSpec, Driver
from ._extras import require

log = logging.getLogger(__name__)

#: Tasmota's RuleTimer accepts at most this many seconds.
TASMOTA_MAX_TIMER_S = 32766

Handler = Callable[[str, bytes], None]


@dataclass
class _Waiter:
    topic_filter: str
    match: Callable[[str, bytes], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    seen: list[dict[str, Any]] = field(default_factory=list)


class MqttBus:
    """A paho-mqtt client for one broker: subscriptions, request/response waits, last will."""

    def __init__(self, broker: BrokerConfig, timeout_s: float = 5.0) -> None:
        mqtt = require("paho.mqtt.client")
        self.broker = broker
        self.timeout_s = timeout_s
        self.status_topic = broker.status_topic
        self._mqtt = mqtt
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Handler]] = []
        self._waiters: list[_Waiter] = []
        self.connected = threading.Event()
        self._closing = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=broker.client_id, clean_session=True)
        if broker.username:
            import os

            password = os.environ.get(broker.password_env) if broker.password_env else None
            self.client.username_pw_set(broker.username, password)
        self.client.will_set(f"{self.status_topic}/online", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=broker.keepalive)
        self.client.loop_start()

    # paho callbacks run on paho's network thread: never block there.
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.broker.host, self.broker.port, reason_code)
            return
        with self._lock:
            filters = {f for f, _ in self._handlers} | {w.topic_filter for w in self._waiters}
        for topic_filter in filters:
            client.subscribe(topic_filter, qos=1)
        client.publish(f"{self.status_topic}/online", "online", qos=1, retain=True)
        self.connected.set()
        log.info("MQTT connected to %s:%d", self.broker.host, self.broker.port)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected.is_set() and not self._closing:
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.broker.host, self.broker.port,
                        reason_code)
        self.connected.clear()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic, payload = message.topic, bytes(message.payload)
        with self._lock:
            handlers = [h for f, h in self._handlers if self._mqtt.topic_matches_sub(f, topic)]
            waiters = [w for w in self._waiters if not w.done.is_set() and self._mqtt.topic_matches_sub(w.topic_filter, topic)]
        for handler in handlers:
            try:
                handler(topic, payload)
            except Exception as exc:  # a hostile or garbled message must not kill paho's thread
                log.debug("MQTT message on %s ignored: %s", topic, exc)
        for waiter in waiters:
            waiter.seen.append({"topic": topic, "payload": payload.decode("utf-8", "replace")[:2000]})
            try:
                result = waiter.match(topic, payload)
            except Exception:
                result = None
            if result is not None:
                waiter.result = result
                waiter.done.set()

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for every message matching ``topic_filter``."""
        with self._lock:
            self._handlers.append((topic_filter, handler))
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos=1)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until connected (True) or ``timeout`` passes (False)."""
        return self.connected.wait(self.timeout_s if timeout is None else timeout)

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        """Publish at QoS 1; raises DeviceError when the broker is not reachable."""
        if not self.wait_connected():
            raise DeviceError(f"MQTT broker {self.broker.host}:{self.broker.port} is not reachable")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise DeviceError(f"MQTT publish to {topic} failed ({self._mqtt.error_string(info.rc)})")

    def request(self, topic: str, payload: str, reply_filter: str, match: Callable[[str, bytes], Any],
                timeout: float | None = None) -> tuple[Any, list[dict[str, Any]]]:
        """Publish and wait for a reply on ``reply_filter`` that ``match`` accepts (returns non-None).

        Returns ``(result, messages seen)``; result is None after ``timeout``.
        """
        waiter = _Waiter(reply_filter, match)
        with self._lock:
            new_filter = all(w.topic_filter != reply_filter for w in self._waiters) and \
                all(f != reply_filter for f, _ in self._handlers)
            self._waiters.append(waiter)
        try:
            if new_filter and self.connected.is_set():
                self.client.subscribe(reply_filter, qos=1)
            self.publish(topic, payload)
            waiter.done.wait(self.timeout_s if timeout is None else timeout)
            return waiter.result, waiter.seen
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def publish_state(self, device: str, state: dict[str, Any]) -> None:
        """Keep the commanded state of ``device`` retained on the broker (best effort)."""
        try:
            self.publish(f"{self.status_topic}/devices/{device}", json.dumps(state, sort_keys=True), retain=True)
        except DeviceError as exc:
            log.debug("retained state of %s not published: %s", device, exc)

    def close(self) -> None:
        """Say ``offline`` (retained), disconnect and stop the network thread."""
        self._closing = True
        if self.connected.is_set():
            info = self.client.publish(f"{self.status_topic}/online", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class TasmotaPlug(Driver):
    """A Tasmota relay or plug: ``cmnd/<topic>/...`` commands, ``stat/<topic>/...`` answers."""

    def __init__(self, spec: DeviceSpec, bus: MqttBus, timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.bus = bus
        self.timeout_s = timeout_s
        self.topic = spec.options["topic"]
        self.relay = int(spec.options.get("relay", 1))
        self.rule = int(spec.options.get("rule", 3))
        self.power_state: str | None = None  # last ON/OFF the plug reported
        self.power_w: float | None = None  # last ENERGY.Power from tele/<topic>/SENSOR
        self.online: bool | None = None
        self._shed = False

    def start(self) -> None:
        """Follow the plug's state, telemetry and last will."""
        self.bus.subscribe(f"stat/{self.topic}/+", self._on_stat)
        self.bus.subscribe(f"tele/{self.topic}/+", self._on_tele)

    def _power_of(self, topic: str, payload: bytes) -> str | None:
        key = topic.rsplit("/", 1)[-1]
        names = {f"POWER{self.relay}"} | ({"POWER"} if self.relay == 1 else set())
        if key in names:
            text = payload.decode("utf-8", "replace").strip().upper()
            return text if text in ("ON", "OFF") else None
        if key == "RESULT":
            data = _json(payload)
            if isinstance(data, dict):
                for name in names:
                    if data.get(name) in ("ON", "OFF"):
                        return data[name]
        return None

    def _on_stat(self, topic: str, payload: bytes) -> None:
        state = self._power_of(topic, payload)
        if state is not None:
            self.power_state = state

    def _on_tele(self, topic: str, payload: bytes) -> None:
        key = topic.rsplit("/", 1)[-1]
        if key == "LWT":
            self.online = payload.decode("utf-8", "replace").strip() == "Online"
        elif key == "SENSOR":
            power = _energy_power(_json(payload))
            if power is not None:
                self.power_w = power
        elif key == "STATE":
            data = _json(payload)
            if isinstance(data, dict):
                state = data.get(f"POWER{self.relay}", data.get("POWER") if self.relay == 1 else None)
                if state in ("ON", "OFF"):
                    self.power_state = state

    def _switch(self, backlog: str, want: str, state: dict[str, Any]) -> Ack:
        def match(topic: str, payload: bytes) -> str | None:
            return "ok" if self._power_of(topic, payload) == want else None

        try:
            result, seen = self.bus.request(f"cmnd/{self.topic}/Backlog", backlog, f"stat/{self.topic}/+", match,
                                            self.timeout_s)
        except DeviceError as exc:
            return Ack(False, {"command": backlog}, str(exc))
        evidence = {"topic": f"cmnd/{self.topic}/Backlog", "command": backlog, "replies": seen}
        if result is None:
            return Ack(False, evidence, f"Tasmota {self.topic} did not confirm POWER {want} within {self.timeout_s:g} s")
        self.power_state = want
        self.bus.publish_state(self.name, state)
        return Ack(True, evidence)

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Relay off, with a rule timer on the plug that switches it back on after ``revert_after_s``."""
        seconds = max(1, min(int(revert_after_s), TASMOTA_MAX_TIMER_S))
        n, r = self.rule, self.relay
        backlog = (f"Rule{n} ON Rules#Timer={n} DO Power{r} ON ENDON; Rule{n} 1; RuleTimer{n} {seconds}; "
                   f"Power{r} OFF")
        ack = self._switch(backlog, "OFF", {"shed": True, "revert_after_s": seconds, "at": time.time()})
        self._shed = ack.ok or self._shed
        return ack

    def restore(self) -> Ack:
        """Stop the rule timer and switch the relay back on."""
        ack = self._switch(f"RuleTimer{self.rule} 0; Power{self.relay} ON", "ON", {"shed": False, "at": time.time()})
        if ack.ok:
            self._shed = False
        return ack

    def read_power(self) -> float | None:
        """ENERGY.Power from ``Status 10`` (asked now), else the last ``tele/<topic>/SENSOR``."""
        def match(topic: str, payload: bytes) -> float | None:
            data = _json(payload)
            if isinstance(data, dict):
                return _energy_power(data.get("StatusSNS"))
            return None

        try:
            power, _ = self.bus.request(f"cmnd/{self.topic}/Status", "10", f"stat/{self.topic}/+", match,
                                        min(self.timeout_s, 2.0))
        except DeviceError:
            power = None
        return power if power is not None else self.power_w

    def is_shed(self) -> bool | None:
        """False once the plug reports ON while we hold it off (button, app or another controller)."""
        if not self._shed or self.power_state is None:
            return None
        return self.power_state == "OFF"


def _energy_power(data: Any) -> float | None:
    if isinstance(data, dict) and isinstance(data.get("ENERGY"), dict):
        power = data["ENERGY"].get("Power")
        if isinstance(power, list):  # multi-channel meters report a list
            power = sum(p for p in power if isinstance(p, (int, float)))
        if isinstance(power, (int, float)) and not isinstance(power, bool):
            return float(power)
    return None


class ShellyPlug(Driver):
    """A Shelly Gen2+ switch over MQTT RPC: requests on ``<device_id>/rpc``, replies on ``<src>/rpc``."""

    _ids = itertools.count(1)

    def __init__(self, spec: DeviceSpec, bus: MqttBus, timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.bus = bus
        self.timeout_s = timeout_s
        self.device_id = spec.options["device_id"]
        self.switch_id = int(spec.options.get("switch_id", 0))
        self.src = f"{bus.status_topic}/{spec.name}"
        self.output: bool | None = None
        self._shed = False

    def start(self) -> None:
        """Follow the switch's status notifications."""
        self.bus.subscribe(f"{self.device_id}/events/rpc", self._on_event)
        self.bus.subscribe(f"{self.device_id}/status/switch:{self.switch_id}", self._on_status)

    def _on_event(self, topic: str, payload: bytes) -> None:
        data = _json(payload)
        if isinstance(data, dict) and data.get("method") in ("NotifyStatus", "NotifyFullStatus"):
            status = (data.get("params") or {}).get(f"switch:{self.switch_id}")
            if isinstance(status, dict) and isinstance(status.get("output"), bool):
                self.output = status["output"]

    def _on_status(self, topic: str, payload: bytes) -> None:
        data = _json(payload)
        if isinstance(data, dict) and isinstance(data.get("output"), bool):
            self.output = data["output"]

    def rpc(self, method: str, params: dict[str, Any], timeout: float | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """One RPC call; returns (the reply frame or None, evidence)."""
        rid = next(self._ids)
        frame = {"id": rid, "src": self.src, "method": method, "params": params}

        def match(topic: str, payload: bytes) -> dict[str, Any] | None:
            data = _json(payload)  # a reply must come from the device we asked (not any client on the broker)
            ok = isinstance(data, dict) and data.get("id") == rid and data.get("src") == self.device_id
            return data if ok else None

        reply, _ = self.bus.request(f"{self.device_id}/rpc", json.dumps(frame), f"{self.src}/rpc", match,
                                    self.timeout_s if timeout is None else timeout)
        return reply, {"topic": f"{self.device_id}/rpc", "request": frame, "reply": reply}

    def _set(self, on: bool, toggle_after: int | None, state: dict[str, Any]) -> Ack:
        params: dict[str, Any] = {"id": self.switch_id, "on": on}
        if toggle_after is not None:
            params["toggle_after"] = toggle_after
        try:
            reply, evidence = self.rpc("Switch.Set", params)
        except DeviceError as exc:
            return Ack(False, {"params": params}, str(exc))
        if reply is None:
            return Ack(False, evidence, f"Shelly {self.device_id} did not answer Switch.Set within {self.timeout_s:g} s")
        if "error" in reply or "result" not in reply:
            err = reply.get("error") or {}
            return Ack(False, evidence, f"Shelly {self.device_id} refused Switch.Set: {err.get('message', err)}")
        self.output = on
        self.bus.publish_state(self.name, state)
        return Ack(True, evidence)

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Switch off with ``toggle_after``: the Shelly switches itself back on after ``revert_after_s``."""
        ack = self._set(False, max(1, int(revert_after_s)), {"shed": True, "revert_after_s": revert_after_s,
                                                              "at": time.time()})
        self._shed = ack.ok or self._shed
        return ack

    def restore(self) -> Ack:
        """Switch on (this also cancels the pending ``toggle_after``)."""
        ack = self._set(True, None, {"shed": False, "at": time.time()})
        if ack.ok:
            self._shed = False
        return ack

    def read_power(self) -> float | None:
        """``apower`` from ``Switch.GetStatus``."""
        try:
            reply, _ = self.rpc("Switch.GetStatus", {"id": self.switch_id}, min(self.timeout_s, 2.0))
        except DeviceError:
            return None
        result = (reply or {}).get("result")
        if isinstance(result, dict):
            if isinstance(result.get("output"), bool):
                self.output = result["output"]
            power = result.get("apower")
            if isinstance(power, (int, float)) and not isinstance(power, bool):
                return float(power)
        return None

    def is_shed(self) -> bool | None:
        """False once the switch reports its output on while we hold it off."""
        if not self._shed or self.output is None:
            return None
        return not self.output
