"""The utility's OpenADR 2.0b VTN (through OpenLEADR), tied to a DemandReduction contract.

Offers stay on chain; OpenADR carries enrolment, notices, awards, opt-in/out and telemetry:

* a VEN registers under a name proving its Ethereum address (``context.verify_ven_name``);
  the address must be enrolled on the contract (any address in open mode). Registrations
  live in our ``VtnStore`` (SQLite), so a restarted VTN still knows every VEN;
* ``announce(request)`` sends every registered VEN an advance notice (signal ``x-DR-REQUEST``,
  level = target W, over the event window, no response required);
* ``dispatch(request, winners)`` sends each winner's VEN a ``LOAD_DISPATCH`` event (delta,
  -accepted W, real power) over the event window; its opt-in/opt-out is recorded and passed
  to ``on_opt``; a VEN may change its answer later with oadrCreateOpt (a user override), which
  is recorded the same way; ``expected_under_delivery(request)`` sums the opt-outs;
* ``cancel(request)`` cancels the request's events;
* every VEN's real-power telemetry reaches ``on_telemetry`` (one ``Telemetry`` per reading;
  ``telemetry.IntervalFeed`` turns them into the meter data store's interval readings, meter
  ``<address>@<resource>``). A report the VTN did not request from that VEN (another VEN's, or
  one sent before the VEN registered its reports), a reading outside ±``MAX_TELEMETRY_W`` (200 kW) or
  far from the VTN's clock is one log line and is not passed on.

With ``oadr3`` (an ``oadr3.Oadr3Store``, the one the web app's OpenADR 3.0 blueprint serves),
the same three calls also publish the program, the notice and the dispatch events there, and
a cancellation deletes them: one call from the utility daemon serves both protocols.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from ..contract import DemandReduction, RequestInfo
from ..mv.readings import MAX_AVERAGE_W
from . import oadr3 as _oadr3
from ._loop import LoopThread
from .context import MarketContext, OpenAdrError, verify_ven_name
from .logs import fix_openleadr_logs as _fix_openleadr_logs
from .store import DISPATCH, NOTICE, EventRecord, Ven, VtnStore

log = logging.getLogger(__name__)

DEFAULT_VTN_ID = "DemandReductionVTN"  # OpenADR wants a VTN id that is not all lower case
NOTICE_SIGNAL = "x-DR-REQUEST"
_SCALES = {"none": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
#: The contract's enrolment state for an enrolled consumer (``enrolmentOf``).
_ENROLLED = 2
#: A telemetry reading beyond ± the meter data store's own bound (200 kW) is refused: no home or
#: small business draws that, a typo or a hostile VEN does (one absurd sample would swamp an
#: interval's mean, and the store would refuse the interval anyway).
MAX_TELEMETRY_W = MAX_AVERAGE_W
#: A reading stamped this far ahead of the VTN's clock is refused (it would open a future interval
#: and shut out every honest reading until then).
MAX_TELEMETRY_AHEAD_S = 300
#: Resource ids a VEN may report under: part of the meter id ``<address>@<resource>``.
_RESOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,19}$")


@dataclass(frozen=True)
class Telemetry:
    """One real-power reading a VEN reported."""

    address: str
    ven_id: str
    resource_id: str
    time: datetime
    watts: float

    @property
    def meter_id(self) -> str:
        """The meter data store's id for this series: ``<address>@<resource>``. Never the bare
        address: that meter holds the utility's own interval data, which settles metered requests,
        and a VEN's self-reported power must not write into it."""
        return f"{self.address}@{self.resource_id}"


def winners_of(dr: DemandReduction, request_id: int) -> dict[str, int]:
    """Accepted watts per winning address of a settled request, read from the chain."""
    winners: dict[str, int] = {}
    for bid in dr.all_bids(request_id):
        if bid.accepted_watts:
            winners[bid.bidder] = winners.get(bid.bidder, 0) + bid.accepted_watts
    return winners


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class UtilityVtn:
    """An OpenLEADR VTN for one contract, with registrations and events in a SQLite store."""

    def __init__(
        self,
        dr: DemandReduction,
        store_path: Path | str,
        *,
        vtn_id: str = DEFAULT_VTN_ID,
        host: str = "127.0.0.1",
        port: int = 8080,
        poll_interval: float = 10.0,
        report_interval: float = 60.0,
        on_opt: Callable[[EventRecord, str], None] | None = None,
        on_telemetry: Callable[[Telemetry], None] | None = None,
        oadr3: _oadr3.Oadr3Store | None = None,
    ) -> None:
        self.dr = dr
        self.vtn_id = vtn_id
        self.host, self.port = host, port
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.on_opt = on_opt
        self.on_telemetry = on_telemetry
        self.store = VtnStore(store_path)
        self.oadr3 = oadr3
        self._chain_id = dr.w3.eth.chain_id
        self._loop: LoopThread | None = None
        self._server: Any = None
        self._reregister: set[str] = set()  # VEN ids to ask to register again at their next poll
        self._stale: set[str] = set()  # unknown report request ids already answered that way (once each)

    # -- life cycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL VENs connect to."""
        return f"http://{self.host}:{self.port}/OpenADR2/Simple/2.0b"

    def programme(self) -> MarketContext:
        """The market context of the whole programme (this contract on this chain)."""
        return MarketContext(self._chain_id, self.dr.address)

    def start(self) -> "UtilityVtn":
        """Serve on ``host:port`` and re-queue the active events the store remembers."""
        from aiohttp import web
        from openleadr import OpenADRServer

        self._loop = LoopThread(f"vtn-{self.port}")
        _fix_openleadr_logs()

        async def _start() -> None:
            server = OpenADRServer(
                vtn_id=self.vtn_id, http_host=self.host, http_port=self.port,
                requested_poll_freq=timedelta(seconds=self.poll_interval),
                ven_lookup=self._ven_lookup, show_fingerprint=False,
            )
            server.add_handler("on_create_party_registration", self._on_registration)
            server.add_handler("on_register_report", self._on_register_report)
            server.add_handler("on_cancel_party_registration", self._on_cancel_registration)
            # OpenLEADR's server has no EiOpt service (its OptService is a stub): ours records a
            # VEN's oadrCreateOpt for one of its events (a user override after it answered).
            server.app.add_routes([web.post(f"{server.http_path_prefix}/EiOpt", _opt_service(self).handler)])
            # OpenLEADR hands an oadrUpdateReport to whichever VEN's callback its report request id
            # names, without checking the sender: ours checks the report is the sender's own.
            reports = server.services["report_service"]
            reports.handlers["oadrUpdateReport"] = partial(self._on_update_report, reports,
                                                           reports.handlers["oadrUpdateReport"])
            # A VEN reporting under a request this VTN does not know (it restarted: OpenLEADR keeps
            # report requests in memory) is asked at its next poll to register again, reports too.
            polls = server.services["poll_service"]
            polls.handlers["oadrPoll"] = partial(self._on_poll, polls.handlers["oadrPoll"])
            self._server = server
            for event in self.store.events(status="active"):
                self._queue(event)
            # OpenADRServer.run() without its banner on stdout (the daemons own their output)
            runner = web.AppRunner(server.app)
            await runner.setup()
            server.app_runner = runner
            await web.TCPSite(runner, host=self.host, port=self.port).start()
            log.info("OpenADR 2.0b VTN %s listening at %s", self.vtn_id, self.url)

        try:
            self._loop.call(_start)
        except OSError as exc:
            self._loop.close()
            self._loop = None
            raise OpenAdrError(f"the VTN cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                               "choose another port") from exc
        return self

    def stop(self) -> None:
        """Stop serving and close the store's connection."""
        if self._loop is not None:
            if self._server is not None:
                self._loop.call(self._server.stop)
            self._loop.close()
            self._loop = None
        self.store.close()

    def __enter__(self) -> "UtilityVtn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the utility daemon calls -----------------------------------------------------

    def announce(self, request: RequestInfo | int) -> dict[str, str]:
        """Send every registered VEN an advance notice of ``request``; returns address → event id."""
        info = self._info(request)
        sent = {}
        for ven in self.store.vens():
            sent[ven.address] = self._send(ven, info, NOTICE, info.target_watts)
        if self.oadr3 is not None:
            _oadr3.publish_notice(self.oadr3, self._context(info.request_id), info.target_watts,
                                 info.event_start, info.event_end)
        return sent

    def dispatch(self, request: RequestInfo | int, winners: Mapping[str, int] | None = None) -> dict[str, str]:
        """Send each winner's VEN a load-dispatch event for its accepted watts.

        ``winners`` maps address → accepted W (read from the chain when omitted). A winner
        with no registered VEN is logged and left out. Returns address → event id.
        """
        info = self._info(request)
        winners = winners_of(self.dr, info.request_id) if winners is None else winners
        sent = {}
        for address, watts in winners.items():
            if watts <= 0:
                continue
            if self.oadr3 is not None:
                _oadr3.publish_dispatch(self.oadr3, self._context(info.request_id), address, int(watts),
                                       info.event_start, info.event_end)
            ven = self.store.ven_by_address(address)
            if ven is None:
                log.warning("winner %s of request %d has no registered VEN; no dispatch event", address, info.request_id)
                continue
            sent[ven.address] = self._send(ven, info, DISPATCH, int(watts))
        return sent

    def cancel(self, request: RequestInfo | int) -> int:
        """Cancel every active event of ``request`` (notices and dispatches); returns how many."""
        request_id = request.request_id if isinstance(request, RequestInfo) else int(request)
        cancelled = self.store.cancel_request(request_id)

        async def _cancel() -> None:
            for event in cancelled:
                self._server.cancel_event(event.ven_id, event.event_id)

        self._require_loop().call(_cancel)
        if self.oadr3 is not None:
            _oadr3.cancel_request(self.oadr3, self._context(request_id))
        return len(cancelled)

    def expected_under_delivery(self, request_id: int) -> dict[str, int]:
        """Watts winners opted out of (address → W), for the dashboard."""
        return self.store.expected_under_delivery(request_id)

    def registered(self) -> list[Ven]:
        """The registered VENs."""
        return self.store.vens()

    # -- internals -----------------------------------------------------------------------

    def _require_loop(self) -> LoopThread:
        if self._loop is None or self._server is None:
            raise RuntimeError("the VTN is not running; call start() first")
        return self._loop

    def _info(self, request: RequestInfo | int) -> RequestInfo:
        return request if isinstance(request, RequestInfo) else self.dr.get_request(int(request))

    def _context(self, request_id: int) -> MarketContext:
        return MarketContext(self._chain_id, self.dr.address, request_id)

    def _send(self, ven: Ven, info: RequestInfo, kind: str, watts: int) -> str:
        context = str(self._context(info.request_id))
        record = EventRecord(uuid.uuid4().hex, ven.ven_id, ven.address, info.request_id, context, kind,
                             watts, info.event_start, info.event_end)
        self.store.add_event(record)

        async def _add() -> None:
            self._queue(record)

        self._require_loop().call(_add)
        return record.event_id

    def _queue(self, record: EventRecord) -> None:
        """Put a stored event on the VEN's OpenLEADR queue (on the loop thread)."""
        from openleadr import enums, objects

        start = _utc(record.start)
        duration = timedelta(seconds=max(0, record.end - record.start))
        if record.kind == DISPATCH:
            signal = objects.EventSignal(
                intervals=[objects.Interval(dtstart=start, duration=duration, signal_payload=-record.watts, uid=0)],
                signal_name="LOAD_DISPATCH", signal_type="delta", signal_id=f"{record.event_id}-0",
                measurement=enums.MEASUREMENTS.REAL_POWER,
            )
            required = "always"
        else:
            signal = objects.EventSignal(
                intervals=[objects.Interval(dtstart=start, duration=duration, signal_payload=record.watts, uid=0)],
                signal_name=NOTICE_SIGNAL, signal_type="level", signal_id=f"{record.event_id}-0",
            )
            required = "never"
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=record.event_id, modification_number=record.modification,
                market_context=record.context, event_status="far",
            ),
            event_signals=[signal],
            targets=[objects.Target(ven_id=record.ven_id)],
            response_required=required,
        )
        callback = partial(self._opted) if required == "always" else None
        self._server.add_raw_event(record.ven_id, event, callback=callback)

    def _opted(self, ven_id: str, event_id: str, opt_type: str) -> None:
        if not self.store.record_opt(ven_id, event_id, opt_type):
            log.warning("ignored %r from VEN %s for event %s (not its event)", opt_type, ven_id, event_id)
            return
        event = self.store.event(event_id)
        if self.on_opt is not None and event is not None:
            self.on_opt(event, opt_type)

    def _on_create_opt(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A VEN's oadrCreateOpt: an opt-in or opt-out of one of its own events (qualified by
        event id), recorded like its answer to the event. An opt without an event (an
        availability schedule) is acknowledged and logged: awards are per event here."""
        from openleadr import errors

        ven_id, opt_id = str(payload.get("ven_id")), str(payload.get("opt_id"))
        opt, event_id = payload.get("opt_type"), payload.get("event_id")
        resources = [str(r) for r in (payload.get("targets_by_type") or {}).get("resource_id", [])]
        if not event_id:
            log.warning("VEN %s sent an opt schedule (%s, %s) without an event; noted, not applied", ven_id, opt,
                        payload.get("opt_reason"))
            return "oadrCreatedOpt", {"opt_id": opt_id}
        if not self.store.record_opt(ven_id, str(event_id), str(opt), reason=payload.get("opt_reason"),
                                     resources=resources):
            log.warning("ignored an opt %r from VEN %s for event %s (not its event)", opt, ven_id, event_id)
            raise errors.InvalidIdError(f"event {event_id} is not one of this VEN's events")
        event = self.store.event(str(event_id))
        if event is not None:
            log.info("request %d: %s %s its dispatch (%s%s)", event.request_id, event.address,
                     "opted out of" if opt == "optOut" else "opted back in to", payload.get("opt_reason"),
                     f": {', '.join(resources)}" if resources else "")
            if self.on_opt is not None:
                self.on_opt(event, str(opt))
        return "oadrCreatedOpt", {"opt_id": opt_id}

    # -- OpenLEADR handlers (loop thread) --------------------------------------------------

    def _ven_lookup(self, ven_id: str) -> dict[str, Any]:
        ven = self.store.ven(ven_id)
        if ven is None:
            log.warning("a message from VEN id %r refused: no VEN is registered under it (asked to register "
                        "again; nothing stored)", str(ven_id)[:40])
            return {}
        return {"ven_id": ven.ven_id, "ven_name": ven.address, "registration_id": ven.registration_id,
                "fingerprint": None}

    def _on_registration(self, payload: dict[str, Any]) -> tuple[str, str] | bool:
        try:
            address = verify_ven_name(self.vtn_id, payload.get("ven_name", ""))
        except OpenAdrError as exc:
            log.warning("VEN registration refused: %s", exc)
            return False
        if self.dr.registration_required() and self.dr.functions.enrolmentOf(address).call() != _ENROLLED:
            log.warning("VEN registration refused: %s is not enrolled on %s; enrol it first", address, self.dr.address)
            return False
        ven = self.store.register(address)
        log.info("VEN %s registered for %s", ven.ven_id, address)
        return ven.ven_id, ven.registration_id

    def _on_cancel_registration(self, payload: dict[str, Any]) -> None:
        ven_id = payload.get("ven_id")
        if ven_id:
            self.store.unregister(ven_id)

    def _on_register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str | None,
                            scale: str | None, min_sampling_interval: timedelta,
                            max_sampling_interval: timedelta) -> tuple | None:
        ven = self.store.ven(ven_id)
        if ven is None or unit != "W":
            return None  # only real power (W) telemetry of a registered VEN
        if not _RESOURCE.match(str(resource_id or "")):
            log.warning("VEN %s (%s) offered telemetry for resource %r: not a plain name of up to 20 letters, "
                        "digits or _ . -; not requested, nothing will be stored", ven_id, ven.address,
                        str(resource_id)[:64])
            return None
        # our interval, within what the VEN offers (OpenLEADR's VEN refuses one outside its range)
        interval = timedelta(seconds=self.report_interval)
        if min_sampling_interval and interval < min_sampling_interval:
            interval = min_sampling_interval
        if max_sampling_interval and interval > max_sampling_interval:
            interval = max_sampling_interval
        factor = _SCALES.get(scale or "none", 1.0)
        return partial(self._telemetry, ven.address, ven_id, str(resource_id), factor), interval, interval

    async def _on_update_report(self, reports: Any, inner: Callable[[dict[str, Any]], Any],
                                payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """oadrUpdateReport: passed on only when every report in it answers a request the VTN made
        of the sender (our callbacks are bound to the VEN they were made for); otherwise one line,
        nothing stored, and an error response (452, invalid id) to the VEN."""
        ven_id = str(payload.get("ven_id"))
        for report in payload.get("reports") or []:
            request_id = report.get("report_request_id")
            owners = {cb.args[1] for (rid, _), cb in list(reports.report_callbacks.items())
                      if rid == request_id and isinstance(cb, partial) and len(cb.args) > 1}
            if owners == {ven_id}:
                continue
            ven = self.store.ven(ven_id)
            who = f"VEN {ven_id} ({ven.address})" if ven else f"VEN {ven_id}"
            if owners:
                log.warning("%s sent telemetry under report request %s, which belongs to another VEN; refused, "
                            "nothing stored", who, str(request_id)[:40])
            elif ven is not None and request_id not in self._stale:
                self._stale.add(str(request_id))
                self._reregister.add(ven_id)
                log.warning("%s sent telemetry for report request %s, which this VTN never asked of it (a report "
                            "before it registered its reports, or the VTN restarted); refused, nothing stored; "
                            "asking it to register again", who, str(request_id)[:40])
            elif ven is not None:
                log.debug("%s: telemetry for report request %s refused until it registers again", who, request_id)
            else:
                log.warning("%s sent telemetry for report request %s, which the VTN never asked of it; refused, "
                            "nothing stored", who, str(request_id)[:40])
            from openleadr import errors

            raise errors.InvalidIdError(f"report request {request_id} is not one of this VEN's")
        # A report without readings (a VEN with nothing to say this time) would make OpenLEADR's
        # handler fail with a KeyError: acknowledge it here.
        payload = dict(payload, reports=[r for r in payload.get("reports") or [] if r.get("intervals")])
        if not payload["reports"]:
            return "oadrUpdatedReport", {}
        result = inner(payload)
        return await result if hasattr(result, "__await__") else result

    async def _on_poll(self, inner: Callable[[dict[str, Any]], Any], payload: dict[str, Any]) -> Any:
        """oadrPoll: OpenLEADR's answer, unless the VEN is due to register again (see above)."""
        ven_id = str(payload.get("ven_id"))
        if ven_id in self._reregister:
            self._reregister.discard(ven_id)
            return "oadrRequestReregistration", {"ven_id": ven_id}
        result = inner(payload)
        return await result if hasattr(result, "__await__") else result

    def _telemetry(self, address: str, ven_id: str, resource_id: str, factor: float,
                   values: list[tuple[datetime, Any]]) -> None:
        now = time.time()
        oldest = now - 2 * self.report_interval - MAX_TELEMETRY_AHEAD_S
        for when, value in values:
            try:
                watts = float(value) * factor
            except (TypeError, ValueError):
                log.warning("VEN %s sent a non-numeric reading %r; ignored", ven_id, value)
                continue
            if not math.isfinite(watts):
                log.warning("VEN %s sent a non-finite reading %r; ignored", ven_id, value)
                continue
            if abs(watts) > MAX_TELEMETRY_W:
                log.warning("VEN %s (%s) sent %.0f W for %s, beyond ±%d W; ignored, nothing stored", ven_id, address,
                            watts, resource_id, MAX_TELEMETRY_W)
                continue
            stamp = when.timestamp() if isinstance(when, datetime) else float("nan")
            if not oldest <= stamp <= now + MAX_TELEMETRY_AHEAD_S:
                log.warning("VEN %s (%s) sent a reading stamped %s, too far from the VTN's clock (%s); ignored, "
                            "nothing stored (check the VEN's clock)", ven_id, address, when,
                            _utc(int(now)).isoformat())
                continue
            if self.on_telemetry is not None:
                self.on_telemetry(Telemetry(address, ven_id, resource_id, when, watts))


def _opt_service(vtn: UtilityVtn) -> Any:
    """An OpenLEADR service for ``/EiOpt`` that hands oadrCreateOpt to ``vtn`` (VEN lookup and
    message checks are OpenLEADR's, inherited from ``VTNService``)."""
    from openleadr.service import VTNService, handler, service

    @service("EiOpt")
    class _OptService(VTNService):
        @handler("oadrCreateOpt")
        async def create_opt(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return vtn._on_create_opt(payload)

    return _OptService(vtn.vtn_id)
