"""The actuator: plans an award over the configured devices, sheds, restores, logs, persists.

One object per daemon. The consumer daemon calls :meth:`Actuator.plan` when it learns it
won, and a :class:`Scheduler` (or the daemon's own loop) calls :meth:`Actuator.tick` so that
devices shed at the event start and are restored at its end. The plans live in a state
file, so a restarted daemon restores what an event left shed (:meth:`restore_if_over`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..artifacts import atomic_write_text
from .clock import Clock, SystemClock
from .config import DevicesConfig
from .core import Ack, Award, DeviceError, Driver, OptOut, Plan, Step, plan_award
from .log import CommandLog

log = logging.getLogger(__name__)

#: Step states after which nothing more is sent for that step.
_FINAL = frozenset({"restored", "reverted", "overridden", "missed"})

OptOutCallback = Callable[[OptOut], None]

#: Seconds between polls of a shed device's state (is it still off?) during an event.
OVERRIDE_POLL_S = 10.0
#: Seconds between two attempts at a command a device did not acknowledge.
RETRY_S = 15.0


class Actuator:
    """Plans, sheds, restores and reads the configured devices; one entry point for the daemon.

    ``drivers`` may be given (tests, the demo); otherwise each device's driver is built from
    ``config`` on first use, importing its protocol library only then. ``on_opt_out`` is called
    (from the caller's thread) with every user override, to be reported as an opt-out.
    """

    def __init__(self, config: DevicesConfig, *, clock: Clock | None = None,
                 on_opt_out: OptOutCallback | None = None, drivers: dict[str, Driver] | None = None,
                 restore_on_start: bool = True) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.on_opt_out = on_opt_out
        self.commands = CommandLog(config.command_log)
        self.state_path = Path(config.state_file)
        self._lock = threading.RLock()
        self._drivers: dict[str, Driver] = dict(drivers or {})
        self._resources: dict[str, Any] = {}  # shared connections (MQTT buses, the OCPP server)
        self._saved: str | None = None
        self.overrides: dict[str, float] = {}  # device -> until when the user wants it left alone
        self._checked: dict[str, float] = {}  # device -> when its override state was last polled
        self._failed_at: dict[tuple[int, str], float] = {}  # (request, device) -> last unacknowledged command
        self.plans: dict[int, Plan] = self._load_state()
        if restore_on_start:
            self.restore_if_over(self.clock.now())

    # -- the daemon's calls ------------------------------------------------------------------

    def plan(self, award: Award) -> Plan:
        """Choose the devices that cover ``award`` and remember the plan (idempotent per request).

        Devices busy in another event whose window overlaps are left out of this plan.
        """
        with self._lock:
            existing = self.plans.get(award.request_id)
            if existing is not None:
                return existing
            busy = {s.device for p in self.plans.values() if p.award.start < award.end and award.start < p.end
                    for s in p.steps if s.status not in _FINAL}
            busy |= {d for d, until in self.overrides.items() if award.start < until}  # the user said no
            plan = plan_award(award, self.config.devices, exclude=frozenset(busy))
            plan.opted_out = []
            self.plans[award.request_id] = plan
            self._save_state()
            self._log(award.request_id, None, "plan", {"accepted_w": award.accepted_w, "start": award.start,
                                                         "end": award.end, "steps": [s.__dict__ for s in plan.steps],
                                                         "shortfall_w": plan.shortfall_w}, Ack(True))
            log.info("request %d: %.3f kW to shed from %s to %s on %s%s", award.request_id, award.accepted_w / 1000,
                     _hms(award.start), _hms(award.end), ", ".join(f"{s.device} ({s.shed_w / 1000:.3f} kW)"
                                                                    for s in plan.steps) or "no device",
                     f"; {plan.shortfall_w / 1000:.3f} kW not covered" if plan.shortfall_w else "")
            return plan

    def shed(self, request_id: int | None = None, now: float | None = None) -> list[Step]:
        """Shed every planned step of the events running now (or of ``request_id``, now)."""
        now = self.clock.now() if now is None else now
        with self._lock:
            done = []
            for plan in self._plans(request_id):
                if request_id is None and not (plan.award.start <= now < plan.end):
                    continue
                for step in plan.steps:
                    if step.status in ("planned", "failed"):
                        self._shed_step(plan, step, now)
                        done.append(step)
            self._save_state()
            return done

    def restore(self, request_id: int | None = None, now: float | None = None) -> list[Step]:
        """Restore every shed step now (of all events, or of ``request_id``)."""
        now = self.clock.now() if now is None else now
        with self._lock:
            done = []
            for plan in self._plans(request_id):
                for step in plan.steps:
                    if step.status == "shed":
                        self._restore_step(plan, step, now)
                        done.append(step)
                    elif step.status in ("planned", "failed"):
                        step.status = "missed"  # never shed: nothing to undo
            self._prune(now, force_ids={request_id} if request_id is not None else set(self.plans))
            self._save_state()
            return done

    def cancel(self, request_id: int, now: float | None = None) -> list[Step]:
        """The event will not happen (request cancelled): end it now and restore what it shed.

        A restore that fails is retried by :meth:`tick` like one at the normal end.
        """
        now = self.clock.now() if now is None else now
        with self._lock:
            plan = self.plans.get(request_id)
            if plan is None:
                return []
            plan.ended_at = now
            self._log(request_id, None, "cancel", {"ended_at": now}, Ack(True), now)
            return self.restore_if_over(now)

    def restore_if_over(self, now: float | None = None) -> list[Step]:
        """Restore what events that have ended left shed (call on daemon start)."""
        now = self.clock.now() if now is None else now
        with self._lock:
            done = []
            for plan in list(self.plans.values()):
                if now >= plan.end:
                    for step in plan.steps:
                        if step.status == "shed" and self._may_retry(plan, step, now):
                            self._restore_step(plan, step, now)
                            done.append(step)
                        elif step.status in ("planned", "failed"):
                            step.status = "missed"
            self._prune(now)
            self._save_state()
            return done

    def tick(self, now: float | None = None) -> None:
        """One scheduler step: shed at starts, restore at ends, retry failures, notice overrides."""
        now = self.clock.now() if now is None else now
        with self._lock:
            for plan in list(self.plans.values()):
                running = plan.award.start <= now < plan.end
                for step in plan.steps:
                    if running and step.status in ("planned", "failed") and self._may_retry(plan, step, now):
                        self._shed_step(plan, step, now)
                    elif running and step.status == "shed":
                        self._check_override(plan, step, now)
            self.restore_if_over(now)

    def next_wakeup(self, now: float) -> float | None:
        """The next event start or end after ``now`` (for the scheduler), or None."""
        times = [t for p in self.plans.values() for t in (p.award.start, p.end) if t > now]
        return min(times) if times else None

    def read_power(self) -> dict[str, float | None]:
        """Each device's power draw in watts (None where it cannot say or cannot be reached)."""
        out: dict[str, float | None] = {}
        for spec in self.config.devices:
            try:
                out[spec.name] = self.driver(spec.name).read_power()
            except DeviceError as exc:
                log.warning("%s: cannot read power: %s", spec.name, exc)
                out[spec.name] = None
        return out

    def user_override(self, device: str, now: float | None = None, until: float | None = None) -> list[OptOut]:
        """The user wants ``device`` left alone: drop it from the events planned so far (or, with
        ``until``, from every event that starts before then, including ones planned later), put it
        back if shed, and report an opt-out for each event (before the event where possible)."""
        now = self.clock.now() if now is None else now
        self.config.spec(device)  # KeyError for an unknown device
        with self._lock:
            if until is not None and until > now:
                self.overrides[device] = float(until)
            outs = []
            for plan in self.plans.values():
                step = plan.step(device)
                if step is None or step.status in _FINAL or now >= plan.end:
                    continue
                if until is not None and plan.award.start >= until:
                    continue
                if step.status == "shed":
                    self._restore_step(plan, step, now, reason="user override")
                outs.append(self._opt_out(plan, step, now, source="user"))
            self._save_state()
        for out in outs:
            self._report(out)
        return outs

    def close(self) -> None:
        """Disconnect every driver and shared connection (shed devices revert on their timers)."""
        for driver in self._drivers.values():
            try:
                driver.close()
            except Exception as exc:  # closing must not hide the caller's own error
                log.debug("%s: close failed: %s", driver.name, exc)
        for resource in self._resources.values():
            try:
                resource.close()
            except Exception as exc:
                log.debug("close failed: %s", exc)
        self._drivers.clear()
        self._resources.clear()

    def __enter__(self) -> "Actuator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drivers -----------------------------------------------------------------------------

    def driver(self, name: str) -> Driver:
        """The driver of device ``name``, built and started on first use."""
        with self._lock:
            driver = self._drivers.get(name)
            if driver is None:
                from .drivers import make_driver

                driver = make_driver(self.config.spec(name), self.config, self._resources, self.clock)
                driver.start()
                self._drivers[name] = driver
            return driver

    def start_all(self) -> None:
        """Connect every device now (the daemon's start-up; tests)."""
        for spec in self.config.devices:
            self.driver(spec.name)

    # -- steps -------------------------------------------------------------------------------

    def _may_retry(self, plan: Plan, step: Step, now: float) -> bool:
        """False within RETRY_S of an unacknowledged command to this step's device (no log flood,
        no tick blocked on a dead device every second); a device whose timer expired is settled."""
        last = self._failed_at.get((plan.award.request_id, step.device))
        if last is None or now - last >= RETRY_S:
            return True
        return step.status == "shed" and step.revert_at is not None and now >= step.revert_at

    def _failed(self, plan: Plan, step: Step, now: float, ok: bool) -> None:
        key = (plan.award.request_id, step.device)
        if ok:
            self._failed_at.pop(key, None)
        else:
            self._failed_at[key] = now

    def _shed_step(self, plan: Plan, step: Step, now: float) -> None:
        revert_after = int(math.ceil(plan.end - now)) + self.config.revert_margin_s
        params = {"limit_w": step.limit_w, "shed_w": step.shed_w, "revert_after_s": revert_after}
        ack = self._call(step.device, lambda d: d.shed(step.limit_w, revert_after))
        self._log(plan.award.request_id, step, "shed", params, ack, now)
        self._failed(plan, step, now, ack.ok)
        if ack.ok:
            step.status, step.revert_at, step.note = "shed", now + revert_after, ""
            log.info("request %d: %s shed (%s) until %s, device reverts by itself at %s", plan.award.request_id,
                     step.device, "off" if step.limit_w is None else f"capped at {step.limit_w / 1000:.3f} kW",
                     _hms(plan.end), _hms(now + revert_after))
        else:
            if step.status != "failed":
                log.warning("request %d: %s could not be shed: %s (retrying)", plan.award.request_id, step.device,
                            ack.error)
            step.status, step.note = "failed", ack.error or "no acknowledgement"

    def _restore_step(self, plan: Plan, step: Step, now: float, reason: str = "event over") -> None:
        ack = self._call(step.device, lambda d: d.restore())
        self._log(plan.award.request_id, step, "restore", {"reason": reason}, ack, now)
        self._failed(plan, step, now, ack.ok)
        if ack.ok:
            step.status, step.note = "restored", ""
            log.info("request %d: %s restored (%s)", plan.award.request_id, step.device, reason)
        elif step.revert_at is not None and now >= step.revert_at:
            step.status, step.note = "reverted", f"unreachable ({ack.error}); its own timer reverted it"
            self._log(plan.award.request_id, step, "reverted_by_device", {"revert_at": step.revert_at}, Ack(True), now)
            log.warning("request %d: %s unreachable; its revert timer has expired, so it is back on", plan.award.request_id,
                        step.device)
        else:
            step.note = ack.error or "no acknowledgement"
            log.warning("request %d: %s could not be restored: %s (retrying; its own timer reverts it at %s)",
                        plan.award.request_id, step.device, ack.error, _hms(step.revert_at or now))

    def _check_override(self, plan: Plan, step: Step, now: float) -> None:
        if now - self._checked.get(step.device, float("-inf")) < OVERRIDE_POLL_S:
            return
        self._checked[step.device] = now
        try:
            state = self.driver(step.device).is_shed()
        except DeviceError:
            return
        if state is False:
            out = self._opt_out(plan, step, now, source="device")
            self._save_state()
            self._report(out)

    def _opt_out(self, plan: Plan, step: Step, now: float, source: str) -> OptOut:
        step.status, step.note = "overridden", f"{source} override"
        if step.device not in plan.opted_out:
            plan.opted_out.append(step.device)
        out = OptOut(plan.award.request_id, step.device, step.shed_w, before_event=now < plan.award.start, at=now,
                     source=source)
        self._log(plan.award.request_id, step, "opt_out", {"before_event": out.before_event, "source": source,
                                                           "shed_w": step.shed_w}, Ack(True), now)
        log.warning("request %d: %s overridden by the %s%s: %.3f kW less delivered (opt-out)", plan.award.request_id,
                    step.device, "user" if source == "user" else "user at the device",
                    " before the event" if out.before_event else "", step.shed_w / 1000)
        return out

    def _report(self, out: OptOut) -> None:
        if self.on_opt_out is not None:
            self.on_opt_out(out)

    def _call(self, device: str, action: Callable[[Driver], Ack]) -> Ack:
        try:
            return action(self.driver(device))
        except DeviceError as exc:
            return Ack(False, error=str(exc))

    def _plans(self, request_id: int | None) -> list[Plan]:
        if request_id is None:
            return list(self.plans.values())
        plan = self.plans.get(request_id)
        return [plan] if plan is not None else []

    def _prune(self, now: float, force_ids: set[int] | None = None) -> None:
        for rid, plan in list(self.plans.items()):
            over = now >= plan.end or rid in (force_ids or set())
            if over and all(s.status in _FINAL for s in plan.steps):
                self._log(rid, None, "event_done", {"steps": {s.device: s.status for s in plan.steps},
                                                    "opted_out": plan.opted_out}, Ack(True), now)
                del self.plans[rid]

    # -- persistence -------------------------------------------------------------------------

    def _log(self, request_id: int, step: Step | None, command: str, params: dict[str, Any], ack: Ack,
             now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        self.commands.append({
            "at": round(now, 3), "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "request_id": request_id, "device": step.device if step else None, "kind": step.kind if step else None,
            "command": command, "params": params, "ok": ack.ok, "ack": ack.evidence, "error": ack.error,
        })

    def _load_state(self) -> dict[int, Plan]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            self.overrides = {str(d): float(t) for d, t in (data.get("overrides") or {}).items()}
            return {int(p["award"]["request_id"]): Plan.from_dict(p) for p in data.get("plans", [])}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as exc:
            raise DeviceError(f"{self.state_path}: unreadable actuator state ({exc}); move it aside and restart "
                              "(devices revert on their own timers)") from None

    def _save_state(self) -> None:
        now = self.clock.now()
        self.overrides = {d: t for d, t in self.overrides.items() if t > now}
        state = {"plans": [p.to_dict() for p in self.plans.values()]}
        if self.overrides:
            state["overrides"] = self.overrides
        text = json.dumps(state, indent=1, sort_keys=True) + "\n"
        if text == self._saved:
            return  # unchanged: no write (the scheduler ticks every second)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.state_path, text)
        self._saved = text


class Scheduler:
    """Runs the actuator against a clock: ticks every ``poll_s`` and wakes at starts and ends."""

    def __init__(self, actuator: Actuator, clock: Clock | None = None, poll_s: float = 1.0) -> None:
        self.actuator = actuator
        self.clock = clock or actuator.clock
        self.poll_s = poll_s

    def step(self) -> float:
        """Tick once; returns how long to sleep before the next tick."""
        now = self.clock.now()
        self.actuator.tick(now)
        wake = self.actuator.next_wakeup(now)
        return self.poll_s if wake is None else max(0.0, min(self.poll_s, wake - now))

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set."""
        while not stop.is_set():
            self.clock.sleep(self.step(), stop)

    def run_until(self, when: float, stop: threading.Event | None = None) -> None:
        """Tick until the clock reaches ``when`` (with a fake clock this takes no real time)."""
        while self.clock.now() < when and not (stop is not None and stop.is_set()):
            self.clock.sleep(min(self.step(), max(0.0, when - self.clock.now())) or 0.01, stop)
        self.actuator.tick(self.clock.now())


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))
