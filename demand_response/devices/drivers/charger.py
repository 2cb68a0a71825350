"""EV chargers over OCPP 2.0.1: the daemon is a local charging-station manager (CSMS).

Chargers connect to ``ws://<host>:<port>/<station_id>`` with the ``ocpp2.0.1`` subprotocol.
Only the station ids named in the devices file are accepted. For an event the manager sends
``SetChargingProfile`` (``TxDefaultProfile`` or ``ChargingStationMaxProfile``, an absolute
schedule that starts now with a ``duration``): the charger drops the cap by itself when the
duration runs out, even if it never hears from us again. At the end it sends
``ClearChargingProfile`` for the same profile id. Power readings come from ``MeterValues``
(``Power.Active.Import``), asked for with ``TriggerMessage``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from ..clock import Clock
from ..core import Ack, DeviceError, DeviceSpec, Driver
from ._extras import require

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
#: The profile starts this many seconds before now (and lasts as much longer), so a charger
#: whose clock is a little behind ours applies the cap at once.
CLOCK_SKEW_S = 60


def iso(t: float) -> str:
    """Unix seconds as the RFC 3339 UTC time OCPP uses."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def power_of_meter_values(meter_value: Any) -> float | None:
    """The last ``Power.Active.Import`` sample (W or kW) in a list of OCPP MeterValue objects."""
    found = None
    for entry in meter_value or []:
        for sample in (entry or {}).get("sampled_value", []) or []:
            if sample.get("measurand", "Energy.Active.Import.Register") != "Power.Active.Import":
                continue
            try:
                value = float(sample["value"])
            except (KeyError, TypeError, ValueError):
                continue
            unit = ((sample.get("unit_of_measure") or {}).get("unit") or "W")
            found = value * 1000.0 if unit == "kW" else value
    return found


class ChargingStationManager:
    """A websocket server that chargers connect to; runs its own asyncio loop in a thread."""

    def __init__(self, host: str, port: int, allowed: set[str], call_timeout_s: float = 5.0) -> None:
        self._ocpp = require("ocpp.v201")
        self._routing = require("ocpp.routing")
        self._ws = require("websockets.asyncio.server")
        self.host, self.allowed, self.call_timeout_s = host, set(allowed), call_timeout_s
        self.stations: dict[str, Any] = {}
        self.power_w: dict[str, float] = {}
        self.power_event: dict[str, threading.Event] = {}
        self.loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="ocpp-csms", daemon=True)
        self._thread.start()
        try:
            self._server = self.run(self._serve(port), timeout=10)
        except OSError as exc:
            self.close()
            raise DeviceError(f"cannot listen for chargers on {host}:{port} ({exc.strerror or exc}); "
                              "pick another \"ocpp\" port in the devices file") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, port: int) -> Any:
        return await self._ws.serve(self._connection, self.host, port, subprotocols=[SUBPROTOCOL],
                                    process_request=self._check_path)

    def _check_path(self, connection: Any, request: Any) -> Any:
        station = request.path.strip("/")
        if station not in self.allowed:
            log.warning("OCPP: refused a charger that calls itself %r (not in the devices file)", station[:64])
            return connection.respond(404, "unknown charging station\n")
        return None

    async def _connection(self, websocket: Any) -> None:
        station = websocket.request.path.strip("/")
        if websocket.subprotocol != SUBPROTOCOL:
            await websocket.close(1002, "ocpp2.0.1 subprotocol required")
            return
        handler = self._handler_class()(station, websocket, response_timeout=self.call_timeout_s)
        handler.manager = self
        self.stations[station] = handler
        log.info("OCPP: charger %s connected", station)
        try:
            await handler.start()
        except Exception as exc:  # websockets raises ConnectionClosed subclasses here
            log.info("OCPP: charger %s disconnected (%s)", station, exc.__class__.__name__)
        finally:
            if self.stations.get(station) is handler:
                del self.stations[station]

    def _handler_class(self) -> type:
        ocpp, on = self._ocpp, self._routing.on
        call_result = ocpp.call_result

        class _Station(ocpp.ChargePoint):
            manager: "ChargingStationManager"

            @on("BootNotification")
            async def on_boot(self, charging_station: dict, reason: str, **_: Any) -> Any:
                return call_result.BootNotification(current_time=iso(time.time()), interval=60, status="Accepted")

            @on("Heartbeat")
            async def on_heartbeat(self, **_: Any) -> Any:
                return call_result.Heartbeat(current_time=iso(time.time()))

            @on("StatusNotification")
            async def on_status(self, **_: Any) -> Any:
                return call_result.StatusNotification()

            @on("MeterValues")
            async def on_meter_values(self, evse_id: int, meter_value: list, **_: Any) -> Any:
                self.manager._power(self.id, power_of_meter_values(meter_value))
                return call_result.MeterValues()

            @on("TransactionEvent")
            async def on_transaction(self, meter_value: list | None = None, **_: Any) -> Any:
                self.manager._power(self.id, power_of_meter_values(meter_value))
                return call_result.TransactionEvent()

            @on("NotifyChargingLimit")
            async def on_limit(self, **_: Any) -> Any:
                return call_result.NotifyChargingLimit()

        return _Station

    def _power(self, station: str, watts: float | None) -> None:
        if watts is not None:
            self.power_w[station] = watts
            self.power_event.setdefault(station, threading.Event()).set()

    def run(self, coro: Any, timeout: float) -> Any:
        """Run ``coro`` on the server's loop from another thread and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call(self, station: str, payload: Any) -> Any:
        """Send one CSMS-initiated call to ``station``; raises DeviceError when it is not connected."""
        handler = self.stations.get(station)
        if handler is None:
            raise DeviceError(f"charger {station} is not connected to ws://{self.host}:{self.port}/{station}")
        try:
            return self.run(handler.call(payload, suppress=False), timeout=self.call_timeout_s + 1)
        except (TimeoutError, asyncio.TimeoutError):
            raise DeviceError(f"charger {station} did not answer {type(payload).__name__} in time") from None
        except DeviceError:
            raise
        except Exception as exc:  # CallError from the charger, or the link dropped mid-call
            if exc.__class__.__name__.startswith("ConnectionClosed"):
                raise DeviceError(f"charger {station} is not connected (its link closed)") from None
            raise DeviceError(f"charger {station}: {type(payload).__name__} failed ({exc.__class__.__name__}: "
                              f"{exc})") from None

    def close(self) -> None:
        """Stop the server and its loop."""
        if self._server is not None:
            self._server.close()
            try:
                self.run(self._server.wait_closed(), timeout=5)
            except Exception as exc:
                log.debug("OCPP server close: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class OcppCharger(Driver):
    """One charging station: a charging profile caps it for the event, and clears at the end."""

    def __init__(self, spec: DeviceSpec, server: ChargingStationManager, clock: Clock, timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.server, self.clock, self.timeout_s = server, clock, timeout_s
        self.station = spec.options["station_id"]
        self.profile_id = int(spec.options.get("profile_id", 4711))

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Cap the charger at ``limit_w`` W (0 when None) with a profile that lasts ``revert_after_s``."""
        call = self.server._ocpp.call
        now = self.clock.now() - CLOCK_SKEW_S  # a charger whose clock runs a little behind still applies it
        revert_after_s = int(revert_after_s) + CLOCK_SKEW_S
        limit = float(self.spec.min_w if limit_w is None else max(limit_w, self.spec.min_w))
        profile = {
            "id": self.profile_id, "stack_level": int(self.spec.options.get("stack_level", 9)),
            "charging_profile_purpose": self.spec.options.get("purpose", "TxDefaultProfile"),
            "charging_profile_kind": "Absolute",
            "valid_from": iso(now), "valid_to": iso(now + revert_after_s),
            "charging_schedule": [{
                "id": 1, "start_schedule": iso(now), "duration": int(revert_after_s), "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": round(limit, 1)}],
            }],
        }
        evse_id = int(self.spec.options.get("evse_id", 0))
        try:
            reply = self.server.call(self.station, call.SetChargingProfile(evse_id=evse_id, charging_profile=profile))
        except DeviceError as exc:
            return Ack(False, {"profile": profile}, str(exc))
        status = str(getattr(reply, "status", ""))
        evidence = {"station": self.station, "evse_id": evse_id, "profile": profile, "status": status,
                    "status_info": getattr(reply, "status_info", None)}
        if status != "Accepted":
            return Ack(False, evidence, f"charger {self.station} answered SetChargingProfile with {status or 'nothing'}")
        return Ack(True, evidence)

    def restore(self) -> Ack:
        """Clear our profile (``Unknown`` also counts: the charger no longer holds it)."""
        call = self.server._ocpp.call
        try:
            reply = self.server.call(self.station, call.ClearChargingProfile(charging_profile_id=self.profile_id))
        except DeviceError as exc:
            return Ack(False, {"profile_id": self.profile_id}, str(exc))
        status = str(getattr(reply, "status", ""))
        evidence = {"station": self.station, "profile_id": self.profile_id, "status": status}
        if status not in ("Accepted", "Unknown"):
            return Ack(False, evidence, f"charger {self.station} answered ClearChargingProfile with {status}")
        return Ack(True, evidence)

    def read_power(self) -> float | None:
        """Ask for MeterValues (TriggerMessage) and return its Power.Active.Import, else the last one."""
        event = self.server.power_event.setdefault(self.station, threading.Event())
        event.clear()
        try:
            reply = self.server.call(self.station, self.server._ocpp.call.TriggerMessage(requested_message="MeterValues"))
            if str(getattr(reply, "status", "")) == "Accepted":
                event.wait(min(self.timeout_s, 2.0))
        except DeviceError:
            pass
        return self.server.power_w.get(self.station)
