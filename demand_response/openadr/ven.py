"""The consumer side as an OpenADR 2.0b VEN of a utility's VTN (through OpenLEADR).

It registers under a name that proves its Ethereum address, hears advance notices and
awards (load-dispatch events), opts in or out of each award, hears cancellations, reports
real-power telemetry, and reports a user override as an opt-out (``opt_out``: the dispatch's
answer when it comes later, an oadrCreateOpt for the event when it was already answered). The consumer daemon runs it beside its chain listener:
an award heard here and the award read from the chain are the same fact, twice.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from ._loop import LoopThread
from .context import MarketContext, OpenAdrError, ven_name_for
from .logs import fix_openleadr_logs as _fix_openleadr_logs

log = logging.getLogger(__name__)

OPT_IN, OPT_OUT = "optIn", "optOut"
#: The longest telemetry interval a VEN offers (the shortest is its ``sampling_interval``).
MAX_SAMPLING = timedelta(hours=1)


@dataclass(frozen=True)
class Award:
    """What the VTN sent: an advance notice (``kind='notice'``) or a dispatch (``'dispatch'``)."""

    event_id: str
    kind: str
    context: MarketContext
    watts: int
    start: datetime
    end: datetime
    cancelled: bool = False
    modification: int = 0

    @property
    def request_id(self) -> int | None:
        """The request this event belongs to."""
        return self.context.request_id


def _award(event: dict[str, Any]) -> Award | None:
    """Read an OpenLEADR event dict; None when it is not one of ours."""
    descriptor = event["event_descriptor"]
    try:
        context = MarketContext.parse(descriptor.get("market_context", ""))
    except OpenAdrError as exc:
        log.warning("event %s ignored: %s", descriptor.get("event_id"), exc)
        return None
    signals = event.get("event_signals") or []
    if len(signals) != 1 or not signals[0].get("intervals"):
        return None
    signal = signals[0]
    interval = signal["intervals"][0]
    if signal["signal_name"] == "LOAD_DISPATCH":
        kind, watts = "dispatch", int(round(-float(interval["signal_payload"])))
    elif signal["signal_name"] == "x-DR-REQUEST":
        kind, watts = "notice", int(round(float(interval["signal_payload"])))
    else:
        return None
    start = interval["dtstart"]
    return Award(descriptor["event_id"], kind, context, watts, start, start + interval["duration"],
                 descriptor.get("event_status") == "cancelled", int(descriptor.get("modification_number") or 0))


class ConsumerVen:
    """A VEN for one consumer key: awards go to ``awards`` (a queue) and ``on_award``.

    ``decide(award)`` returns True to opt in to a dispatch (default: opt in); ``read_power()``
    returns the current real power in W for telemetry (no telemetry when ``read_power`` is None;
    no sample this time when it returns None). It runs off the VEN's event loop, so a slow
    device does not hold up polling; ``samples`` counts the readings handed to OpenLEADR.
    ``programme`` (chain id and contract) makes the VEN opt out of any event outside it.
    """

    def __init__(
        self,
        vtn_url: str,
        vtn_id: str,
        private_key: str,
        *,
        programme: MarketContext | None = None,
        decide: Callable[[Award], bool] | None = None,
        read_power: Callable[[], float | None] | None = None,
        on_award: Callable[[Award], None] | None = None,
        resource_id: str = "meter",
        sampling_interval: float = 10.0,
    ) -> None:
        self.vtn_url, self.vtn_id = vtn_url, vtn_id
        self._key = private_key
        self.programme = programme.programme if programme else None
        self.decide = decide
        self.read_power = read_power
        self.on_award = on_award
        self.resource_id = resource_id
        self.sampling_interval = sampling_interval
        self.awards: "queue.Queue[Award]" = queue.Queue()
        self._dispatches: dict[int, Award] = {}  # request id -> the dispatch heard for it
        self._opted_out: dict[int, list[str]] = {}  # request id -> resources overridden before its dispatch
        self._opt_lock = threading.Lock()
        self.ven_id: str | None = None
        self.samples = 0
        self._loop: LoopThread | None = None
        self._client: Any = None

    def start(self) -> "ConsumerVen":
        """Register at the VTN, register telemetry and start polling.

        Raises ``OpenAdrError`` with one line when the VTN refuses the registration.
        """
        from openleadr import OpenADRClient, objects

        _fix_openleadr_logs()
        self._loop = LoopThread("ven")

        async def _start() -> None:
            client = OpenADRClient(ven_name=ven_name_for(self.vtn_id, self._key), vtn_url=self.vtn_url,
                                   show_fingerprint=False, allow_jitter=False)
            register = client.create_party_registration

            async def _register_with_fresh_proof(*args: Any, **kwargs: Any) -> Any:
                # the name is a proof valid for PROOF_MAX_AGE: a VTN that asks this VEN to
                # register again later (after its restart) gets a fresh one
                client.ven_name = ven_name_for(self.vtn_id, self._key)
                for request in client.report_requests:  # the VTN will ask for its reports anew
                    with contextlib.suppress(Exception):  # a job that already ran is gone
                        if request.get("job") is not None:
                            request["job"].remove()
                client.report_requests, client.incomplete_reports = [], {}
                return await register(*args, **kwargs)

            client.create_party_registration = _register_with_fresh_proof
            client.add_handler("on_event", self._on_event)
            client.add_handler("on_update_event", self._on_event)
            if self.read_power is not None:
                client.add_report(
                    callback=self._power, resource_id=self.resource_id, measurement="power_real",
                    unit="W", scale="none", report_duration=timedelta(hours=1),
                    # any interval from ours up to an hour: the VTN picks (OpenLEADR refuses one outside)
                    sampling_rate=objects.SamplingRate(
                        min_period=timedelta(seconds=self.sampling_interval),
                        max_period=max(timedelta(seconds=self.sampling_interval), MAX_SAMPLING), on_change=False),
                )
            self._client = client
            await client.run()

        self._loop.call(_start)
        if not self._client.registration_id:
            self.stop()
            raise OpenAdrError(f"the VTN at {self.vtn_url} did not register this VEN: it is unreachable or it "
                               "refused (check the URL, that the consumer is enrolled and that the clocks agree)")
        self.ven_id = self._client.ven_id
        return self

    def stop(self) -> None:
        """Stop polling and reporting."""
        if self._loop is not None:
            if self._client is not None:
                try:
                    self._loop.call(self._client.stop)
                except Exception as exc:  # already stopped after a refused registration
                    log.debug("VEN stop: %s", exc)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> "ConsumerVen":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_award(self, timeout: float = 10.0, kind: str | None = None) -> Award:
        """The next award (of ``kind`` if given) heard from the VTN; raises ``queue.Empty``."""
        deadline = time.monotonic() + timeout
        while True:
            award = self.awards.get(timeout=max(0.0, deadline - time.monotonic()))
            if kind is None or award.kind == kind:
                return award

    def iter_awards(self, stop: threading.Event | None = None, poll: float = 0.5) -> Iterator[Award]:
        """Yield awards as they arrive until ``stop`` is set (the consumer daemon's loop)."""
        while stop is None or not stop.is_set():
            try:
                yield self.awards.get(timeout=poll)
            except queue.Empty:
                continue

    def opt_out(self, request_id: int, resources: list[str] | None = None, *, reason: str = "overrideStatus",
                timeout: float = 10.0) -> bool:
        """Tell the VTN this VEN will not deliver its award for ``request_id`` (a user override of
        ``resources``, the overridden devices). Once the dispatch was heard this sends an
        oadrCreateOpt (optOut, qualified by the event) and returns True when the VTN acknowledged
        it; before the dispatch arrives it is remembered and the dispatch is answered optOut (and
        False is returned: nothing was sent yet)."""
        with self._opt_lock:
            award = self._dispatches.get(request_id)
            if award is None:
                self._opted_out.setdefault(request_id, []).extend(resources or [])
                log.info("request %d: opt-out noted; the dispatch will be answered optOut", request_id)
                return False
        if self._loop is None or self._client is None:
            raise OpenAdrError("the VEN is not running; start() it first")
        from openleadr import objects

        targets = [objects.Target(resource_id=r) for r in resources or []] or [objects.Target(ven_id=self.ven_id)]

        async def _send() -> Any:
            return await self._client.create_opt(OPT_OUT, reason, targets, event_id=award.event_id,
                                                 modification_number=award.modification,
                                                 market_context=str(award.context))

        try:
            acknowledged = self._loop.call(_send, timeout=timeout)
        except Exception as exc:  # unreachable VTN, timeout: the caller logs it
            raise OpenAdrError(f"the VTN at {self.vtn_url} did not take the opt-out of request {request_id}: "
                               f"{exc or type(exc).__name__}") from None
        if not acknowledged:
            raise OpenAdrError(f"the VTN at {self.vtn_url} refused the opt-out of request {request_id}")
        log.info("request %d: the VTN acknowledged the opt-out (%s)", request_id, ", ".join(resources or []) or "all")
        return True

    # -- OpenLEADR handlers (loop thread) --------------------------------------------------

    async def _power(self) -> list[tuple[datetime, float]]:
        """One telemetry sample (now, W), or none when the power cannot be read."""
        import asyncio

        if self.read_power is None:
            return []
        try:
            watts = await asyncio.get_running_loop().run_in_executor(None, self.read_power)
        except Exception as exc:  # a device problem must not stop the VEN
            log.warning("telemetry: cannot read power: %s: %s", type(exc).__name__, exc)
            return []
        if watts is None:
            return []
        self.samples += 1
        return [(datetime.now(timezone.utc), float(watts))]

    def _on_event(self, event: dict[str, Any]) -> str:
        award = _award(event)
        if award is None:
            return OPT_OUT
        if self.programme is not None and award.context.programme != self.programme:
            log.warning("event %s is for %s, not our programme %s; opting out", award.event_id,
                        award.context, self.programme)
            return OPT_OUT
        pending = False
        if award.kind == "dispatch" and award.request_id is not None and not award.cancelled:
            with self._opt_lock:
                self._dispatches[award.request_id] = award
                pending = award.request_id in self._opted_out
        self.awards.put(award)
        if self.on_award is not None:
            self.on_award(award)
        if award.cancelled or award.kind != "dispatch":
            return OPT_IN
        if pending:
            log.info("request %d: answering the dispatch optOut (overridden before it arrived)", award.request_id)
            return OPT_OUT
        return OPT_IN if self.decide is None or self.decide(award) else OPT_OUT
