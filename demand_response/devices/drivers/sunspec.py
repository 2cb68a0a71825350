"""Inverters and batteries over SunSpec Modbus TCP (pysunspec2): model 704 power limit.

Shedding writes, in one Modbus write, ``WMaxLimPctEna`` = 1 with ``WMaxLimPct`` (the cap as
a percentage of ``rated_w``) and the reversion set: ``WMaxLimPctRvrtTms`` (seconds),
``WMaxLimPctRvrt`` = 100 % and ``WMaxLimPctEnaRvrt`` = 0, so the device lifts the cap by
itself when the timer runs out. The registers are read back as the acknowledgement.
Power comes from model 701 (``DERMeasureAC``) ``W``.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

from ..core import Ack, DeviceError, DeviceSpec, Driver
from ._extras import require

log = logging.getLogger(__name__)

_CTL_POINTS = ("WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrt", "WMaxLimPctEnaRvrt", "WMaxLimPctRvrtTms",
               "WMaxLimPctRvrtRem")


class SunSpecInverter(Driver):
    """A SunSpec device with model 704 (DERCtlAC); connects for each command, rescans after errors."""

    def __init__(self, spec: DeviceSpec, timeout_s: float = 5.0) -> None:
        super().__init__(spec)
        self.timeout_s = timeout_s
        self.host, self.port = spec.options["host"], int(spec.options.get("port", 502))
        self.unit_id = int(spec.options.get("unit_id", 1))
        self._client: Any = None
        self._lock = threading.Lock()

    def _device(self) -> Any:
        if self._client is not None:
            return self._client
        client_mod = require("sunspec2.modbus.client")
        dev = client_mod.SunSpecModbusClientDeviceTCP(slave_id=self.unit_id, ipaddr=self.host, ipport=self.port,
                                                      timeout=self.timeout_s)
        try:
            dev.scan()
        except Exception as exc:
            try:
                dev.close()
            except Exception:
                pass
            raise DeviceError(f"SunSpec device {self.host}:{self.port} unit {self.unit_id} not reachable "
                              f"({exc.__class__.__name__}: {exc})") from None
        if "DERCtlAC" not in dev.models:
            dev.close()
            raise DeviceError(f"SunSpec device {self.host}:{self.port} has no model 704 (DERCtlAC): it cannot take "
                              "a power limit")
        self._client = dev
        return dev

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None

    def _write_ctl(self, values: dict[str, float], describe: str) -> Ack:
        with self._lock:
            try:
                model = self._device().DERCtlAC[0]
                for point, value in values.items():
                    getattr(model, point).cvalue = value
                model.write()
                model.read()
                readback = {p: getattr(model, p).cvalue for p in _CTL_POINTS}
            except DeviceError as exc:
                return Ack(False, {"write": values}, str(exc))
            except Exception as exc:  # pysunspec2 raises its own and socket errors
                self._drop()
                return Ack(False, {"write": values}, f"SunSpec {self.host}:{self.port}: {describe} failed "
                                                      f"({exc.__class__.__name__}: {exc})")
        evidence = {"device": f"{self.host}:{self.port}/{self.unit_id}", "model": 704, "write": values,
                    "readback": readback}
        wrong = [p for p in ("WMaxLimPctEna", "WMaxLimPct")  # a whole-percent scale factor rounds the limit
                 if p in values and (readback.get(p) is None or abs(float(readback[p]) - values[p]) >= 1.0)]
        if wrong:
            return Ack(False, evidence, f"SunSpec {self.host}:{self.port} did not keep {', '.join(wrong)}")
        return Ack(True, evidence)

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Cap output at ``limit_w`` (0 when None) with a reversion timer of ``revert_after_s``."""
        rated = float(self.spec.max_w or 1.0)
        limit = float(self.spec.min_w if limit_w is None else max(limit_w, self.spec.min_w))
        pct = math.floor(max(0.0, min(100.0, 100.0 * limit / rated)))  # round down: never draw more
        return self._write_ctl({"WMaxLimPctEna": 1, "WMaxLimPct": pct, "WMaxLimPctRvrt": 100.0,
                                "WMaxLimPctEnaRvrt": 0, "WMaxLimPctRvrtTms": int(revert_after_s)}, "limit")

    def restore(self) -> Ack:
        """Lift the limit and stop the reversion timer."""
        return self._write_ctl({"WMaxLimPctEna": 0, "WMaxLimPctRvrtTms": 0}, "restore")

    def read_power(self) -> float | None:
        """``W`` of model 701 (DERMeasureAC), or None when the device has none or is unreachable."""
        with self._lock:
            try:
                dev = self._device()
                if "DERMeasureAC" not in dev.models:
                    return None
                model = dev.DERMeasureAC[0]
                model.read()
                value = model.W.cvalue
            except DeviceError:
                return None
            except Exception as exc:
                log.debug("SunSpec read failed: %s", exc)
                self._drop()
                return None
        return float(value) if value is not None else None

    def is_shed(self) -> bool | None:
        """False once the limit is no longer enabled (changed at the device or by its installer)."""
        with self._lock:
            try:
                model = self._device().DERCtlAC[0]
                model.read()
                return model.WMaxLimPctEna.value == 1
            except Exception:
                self._drop()
                return None

    def close(self) -> None:
        """Close the Modbus connection."""
        with self._lock:
            self._drop()
