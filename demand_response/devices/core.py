"""The actuation interface: an award, a plan, a driver's acknowledgement, an opt-out.

A *driver* talks to one device over its own protocol. It can ``shed`` (switch off, or cap at
``limit_w``) with a device-side revert timer, ``restore``, ``read_power`` and report local
changes (a button pressed, an app used) through ``watch``. Every call returns an
:class:`Ack` whose ``evidence`` is what the device answered: that is what the command log
keeps as delivery evidence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any
from ..errors import DRError

SWITCH_KINDS = ("tasmota", "shelly", "homeassistant")
CAP_KINDS = ("ocpp", "sunspec")
KINDS = SWITCH_KINDS + CAP_KINDS + ("simulation",)


class DeviceError(DRError):
    """A device could not be reached or refused a command (one line, names the device)."""


@dataclass(frozen=True)
class Award:
    """What the consumer won: ``accepted_w`` watts off between ``start`` and ``end`` (unix s)."""

    request_id: int
    accepted_w: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"award for request {self.request_id}: event end must be after its start")
        if self.accepted_w < 0:
            raise ValueError(f"award for request {self.request_id}: accepted watts cannot be negative")


@dataclass
class Step:
    """One device's part of a plan: take ``shed_w`` off, by switching off or capping at ``limit_w``."""

    device: str
    kind: str
    shed_w: float
    limit_w: float | None = None  # None: switch off; a number: cap the device at that many watts
    status: str = "planned"  # planned, shed, failed, restored, reverted, overridden
    revert_at: float | None = None  # when the device's own timer undoes the shed
    note: str = ""


@dataclass
class Plan:
    """Which devices shed, and how much, for one award."""

    award: Award
    steps: list[Step]
    opted_out: list[str] = field(default_factory=list)
    ended_at: float | None = None  # set when the event ends early (request cancelled)

    @property
    def end(self) -> float:
        """When shedding stops: the award's end, or earlier if the event was cancelled."""
        return self.award.end if self.ended_at is None else min(self.award.end, self.ended_at)

    @property
    def planned_w(self) -> float:
        """Watts the plan expects to take off (overridden devices excluded)."""
        return sum(s.shed_w for s in self.steps if s.status != "overridden")

    @property
    def shortfall_w(self) -> float:
        """Accepted watts the plan cannot cover (0 when covered)."""
        return max(0.0, self.award.accepted_w - self.planned_w)

    def step(self, device: str) -> Step | None:
        """The step for ``device``, if it is in the plan."""
        return next((s for s in self.steps if s.device == device), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the actuator's state file)."""
        return {"award": asdict(self.award), "steps": [asdict(s) for s in self.steps], "opted_out": list(self.opted_out),
                "ended_at": self.ended_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Inverse of :meth:`to_dict`."""
        return cls(Award(**data["award"]), [Step(**s) for s in data["steps"]], list(data.get("opted_out", [])),
                   data.get("ended_at"))


@dataclass(frozen=True)
class Ack:
    """A device's answer to a command: ``ok`` and what it said (``evidence``)."""

    ok: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class OptOut:
    """A user override, reported to the utility as an opt-out (expected under-delivery)."""

    request_id: int
    device: str
    shed_w: float
    before_event: bool
    at: float
    source: str  # "user" (asked through the actuator) or "device" (changed at the device)


@dataclass(frozen=True)
class DeviceSpec:
    """One configured device (see :mod:`demand_response.devices.config`)."""

    name: str
    kind: str
    shed_w: float  # watts taken off when shed (switches) or the most a cap can take off
    priority: int = 100
    max_w: float | None = None  # capped devices: normal draw
    min_w: float = 0.0  # capped devices: the lowest cap
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def cappable(self) -> bool:
        """True when the device takes a power cap rather than an on/off switch."""
        return self.max_w is not None


class Driver(ABC):
    """One device behind its protocol. Subclasses implement shed, restore and read_power."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.spec.name

    def start(self) -> None:
        """Connect (called once before the first command; an unreachable device must not raise)."""

    def is_shed(self) -> bool | None:
        """Whether the device is still shed as commanded (False: someone undid it at the device),
        or None when the driver cannot tell. Polled by the actuator while an event runs."""
        return None

    @abstractmethod
    def shed(self, limit_w: float | None, revert_after_s: int) -> Ack:
        """Switch off (``limit_w`` None) or cap at ``limit_w`` W; the device undoes it by itself
        after ``revert_after_s`` seconds if nobody restores it first."""

    @abstractmethod
    def restore(self) -> Ack:
        """Undo the shed now."""

    @abstractmethod
    def read_power(self) -> float | None:
        """The device's power draw in watts, or None when it cannot say."""

    def close(self) -> None:
        """Disconnect."""


def plan_award(award: Award, specs: list[DeviceSpec], exclude: set[str] | frozenset[str] = frozenset()) -> Plan:
    """Choose the devices that take ``award.accepted_w`` off, in priority order.

    Lower ``priority`` sheds first (ties: the bigger device first). Switches shed whole;
    a capped device (EV charger, battery) takes only what is still missing, down to its
    ``min_w``. Devices in ``exclude`` (opted out) are left alone. A plan that cannot cover
    the award says so in :attr:`Plan.shortfall_w`.
    """
    remaining = float(award.accepted_w)
    steps: list[Step] = []
    for spec in sorted(specs, key=lambda s: (s.priority, -s.shed_w, s.name)):
        if remaining <= 0 or spec.name in exclude:
            continue
        if spec.cappable:
            room = min(spec.shed_w, float(spec.max_w) - spec.min_w)
            take = min(room, remaining)
            if take <= 0:
                continue
            steps.append(Step(spec.name, spec.kind, take, limit_w=float(spec.max_w) - take))
        else:
            take = spec.shed_w
            steps.append(Step(spec.name, spec.kind, take))
        remaining -= take
    return Plan(award, steps, sorted(exclude))
