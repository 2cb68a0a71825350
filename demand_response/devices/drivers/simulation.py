"""A simulated device backed by gridsim's household models (the demo and the tests).

The device draws what gridsim's baseline says for its household and kind at the actuator's
clock time (HVAC, water heater, EV charger; a battery is idle and "sheds" by discharging).
Shedding switches it off or caps it; like a real device it keeps a revert timer of its own
and comes back by itself when the timer runs out.
"""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..core import Ack, DeviceSpec, Driver
from ._extras import require


class SimulatedDevice(Driver):
    """One gridsim device of one household, driven by the actuator's clock."""

    def __init__(self, spec: DeviceSpec, clock: Clock) -> None:
        super().__init__(spec)
        self.clock = clock
        self.device = spec.options["device"]
        self._pop: Any = None
        self.limit_w: float | None = None
        self.off = False
        self.revert_at: float | None = None
        self.commands: list[dict[str, Any]] = []

    def _population(self) -> Any:
        if self._pop is None:
            require("numpy")
            from ...gridsim.population import make_population

            opts = self.spec.options
            self._pop = make_population(int(opts.get("households", 20)), seed=int(opts.get("seed", 0))).subset(
                [int(opts.get("household", 0))])
        return self._pop

    def baseline_w(self, t: float) -> float:
        """What the device would draw at ``t`` without an event (gridsim's baseline)."""
        import numpy as np

        from ...gridsim import devices as gd
        from ...gridsim.weather import Request

        pop = self._population()
        request = Request(event_start=int(t), event_end=int(t) + 3600,
                          outdoor_max_c=float(self.spec.options.get("outdoor_max_c", 33.0)))
        ts = np.array([float(t)])
        if self.device == "hvac":
            value = gd.hvac_baseline_w(pop, request, ts)[0][0, 0]
        elif self.device == "water_heater":
            value = gd.wh_baseline_w(pop, request, ts)[0, 0]
        elif self.device == "ev":
            value = gd.ev_baseline_w(pop, request, ts)[0, 0]
        else:  # battery: idle; its "draw" is the grid import it can offset
            value = 0.0
        return float(value)

    def _expire(self) -> None:
        if self.revert_at is not None and self.clock.now() >= self.revert_at:
            self.off, self.limit_w, self.revert_at = False, None, None

    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Switch off or cap, with a revert timer on the simulated device."""
        now = self.clock.now()
        self.off, self.limit_w = limit_w is None, limit_w
        self.revert_at = now + revert_after_s
        self.commands.append({"at": now, "shed": True, "limit_w": limit_w})
        return Ack(True, {"simulated": self.device, "off": self.off, "limit_w": limit_w, "revert_at": self.revert_at,
                          "baseline_w": round(self.baseline_w(now), 1)})

    def restore(self) -> Ack:
        """Back to the baseline."""
        now = self.clock.now()
        self.off, self.limit_w, self.revert_at = False, None, None
        self.commands.append({"at": now, "shed": False})
        return Ack(True, {"simulated": self.device, "off": False, "baseline_w": round(self.baseline_w(now), 1)})

    def read_power(self) -> float | None:
        """Baseline, or what the shed leaves of it."""
        self._expire()
        base = self.baseline_w(self.clock.now())
        if self.off:
            return 0.0
        if self.limit_w is not None:
            return min(base, self.limit_w)
        return base

    def is_shed(self) -> bool | None:
        """True while the simulated shed holds."""
        self._expire()
        return self.off or self.limit_w is not None
