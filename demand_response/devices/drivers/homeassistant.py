"""Home Assistant through its REST API, with a long-lived access token.

Shedding starts the configured ``timer`` entity for the revert time and then turns the
entity off (``POST /api/services/<domain>/turn_off``). An automation in Home Assistant
(docs/devices.md gives it) turns the entity back on when that timer finishes: that is the
device-side revert, and it runs even if the daemon is gone. Restoring cancels the timer and
turns the entity on. Power is the state of ``power_entity_id`` (W or kW).
"""

from __future__ import annotations

import os
from typing import Any

import requests

from ..core import Ack, DeviceError, DeviceSpec, Driver

_SWITCHY = ("switch", "light", "fan", "input_boolean", "climate", "water_heater", "humidifier")


class HomeAssistantEntity(Driver):
    """One entity switched through Home Assistant's REST API."""

    def __init__(self, spec: DeviceSpec, timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.url = spec.options["url"]
        self.entity_id = spec.options["entity_id"]
        self.timer = spec.options["revert_timer"]
        self.power_entity = spec.options.get("power_entity_id")
        self.token_env = spec.options.get("token_env", "HA_TOKEN")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._shed = False

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.token_env, "")
        if not token:
            raise DeviceError(f"{self.name}: no Home Assistant token; set {self.token_env} to a long-lived access token "
                              "(your HA profile page, Security tab)")
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._session.request(method, f"{self.url}{path}", json=body, headers=self._headers(),
                                             timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise DeviceError(f"Home Assistant at {self.url} not reachable ({exc.__class__.__name__})") from None
        if response.status_code == 401:
            raise DeviceError(f"Home Assistant at {self.url} rejected the token in {self.token_env}; "
                              "create a new long-lived access token")
        if response.status_code == 404:
            raise DeviceError(f"Home Assistant at {self.url}: {path} not found (check the entity id)")
        if response.status_code >= 400:
            raise DeviceError(f"Home Assistant at {self.url}: {method} {path} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise DeviceError(f"Home Assistant at {self.url}: {path} did not answer JSON") from None

    def _service(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        return self._request("POST", f"/api/services/{domain}/{service}", data)

    def _switch(self, on: bool) -> tuple[str, Any]:
        domain = self.entity_id.split(".", 1)[0]
        domain = domain if domain in _SWITCHY else "homeassistant"
        changed = self._service(domain, "turn_on" if on else "turn_off", {"entity_id": self.entity_id})
        state = self._request("GET", f"/api/states/{self.entity_id}")
        return str((state or {}).get("state")), {"service": f"{domain}.turn_{'on' if on else 'off'}",
                                                 "changed": changed, "state": state}

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Start the revert timer, then turn the entity off; the state read back is the evidence."""
        seconds = max(1, int(revert_after_s))
        duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        try:
            timer = self._service("timer", "start", {"entity_id": self.timer, "duration": duration})
            state, evidence = self._switch(False)
        except DeviceError as exc:
            return Ack(False, {"entity_id": self.entity_id}, str(exc))
        evidence["timer"] = {"entity_id": self.timer, "duration": duration, "changed": timer}
        if state != "off":
            return Ack(False, evidence, f"{self.entity_id} is {state!r} after turn_off")
        self._shed = True
        return Ack(True, evidence)

    def restore(self) -> Ack:
        """Cancel the revert timer and turn the entity on."""
        try:
            timer = self._service("timer", "cancel", {"entity_id": self.timer})
            state, evidence = self._switch(True)
        except DeviceError as exc:
            return Ack(False, {"entity_id": self.entity_id}, str(exc))
        evidence["timer"] = {"entity_id": self.timer, "cancelled": timer}
        if state == "off":
            return Ack(False, evidence, f"{self.entity_id} is still off after turn_on")
        self._shed = False
        return Ack(True, evidence)

    def read_power(self) -> float | None:
        """The power sensor's state in watts (None without a sensor or when it is unavailable)."""
        if not self.power_entity:
            return None
        state = self._request("GET", f"/api/states/{self.power_entity}")
        try:
            value = float(state["state"])
        except (KeyError, TypeError, ValueError):
            return None
        unit = ((state.get("attributes") or {}).get("unit_of_measurement") or "W")
        return value * 1000.0 if unit == "kW" else value

    def is_shed(self) -> bool | None:
        """False once the entity is on again while we hold it off."""
        if not self._shed:
            return None
        try:
            state = self._request("GET", f"/api/states/{self.entity_id}")
        except DeviceError:
            return None
        return str((state or {}).get("state")) == "off"

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()
