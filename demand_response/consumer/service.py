"""``ConsumerService``: one event listener feeding one or more agents (``dr consumer run``
is one agent, ``dr consumer fleet -n N`` is N; the logic is the same), with every path
from the settings and one lock per account."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from ..bids import DEFAULT_BID_MARGIN, bid_margin
from ..units import ETH, reference_rate
from ..chain import FEES_TTL, RpcBatcher, Signer
from ..config import Settings, cursor_file, default_meter_file
from ..config import salts_file as config_salts_file
from ..contract import DemandReduction, TermsInfo
from ..errors import ConfigError, is_connection_error
from ..listener import Event, LogPoller, StateFile
from ..locks import AccountLocks
from ..results import ResultsFile
from ..sealed import MeterReadings, SaltStore
from ..units import format_kw
from .agent import ConsumerAgent
from .core import FeeQuotes
from .delivery_check import DeliveryOptions
from .notes import AgentNotes
from .relayed import relay_fallback_seconds
from .sources import BidsProvider

log = logging.getLogger("demand_response.consumer")

EVENTS = ("ReductionRequested", "WinnersSelected", "RequestCancelled", "DeliverySettled")
#: Seconds between checks of sealed and metered requests (reveal, report, settle).
TERMS_CHECK_INTERVAL = 1.0
#: The shortest telemetry interval (s) the daemon's VEN offers; the VTN picks the interval it
#: wants at or above it (its ``report_interval``, 60 s by default).
VEN_MIN_SAMPLING_S = 2.0
#: The resource the daemon's VEN reports: the summed real power of the ``DEVICES_FILE`` devices
#: (the VTN stores it as meter ``<address>@devices``).
VEN_RESOURCE = "devices"


@dataclass
class AgentSpec:
    """What one agent needs: its signer, bids source and label."""

    signer: Signer
    bids: BidsProvider
    label: str


class ConsumerService:
    """One listener feeding one or more agents (``dr consumer run`` / ``fleet``)."""

    def __init__(
        self,
        dr: DemandReduction,
        chain_id: int,
        specs: Sequence[AgentSpec],
        *,
        state_path: Path,
        results: ResultsFile,
        start_block: int,
        poll_interval: float = 0.2,
        confirmations: int = 0,
        reorg_depth: int = 12,
        auto_withdraw: bool = True,
        rpc_name: str = "RPC endpoint",
        meter_file: Path | None = None,
        lock_dir: Path | None = None,
        daemon: str | None = None,
        salts_file: Path | None = None,
        bid_margin: Decimal | float = DEFAULT_BID_MARGIN,
        devices_file: Path | None = None,
        vtn_url: str | None = None,
        vtn_id: str | None = None,
        delivery: Any = None,
        reference: Any = None,
        relay_url: str | None = None,
        relay_fallback_s: float = 20.0,
    ) -> None:
        """Paths (``state_path``, ``salts_file``, ``meter_file``, ``lock_dir``) come from the
        settings (``from_settings``); a caller that passes only ``state_path`` gets the
        settings' default names in its folder and the meter file beside ``results``."""
        self.dr = dr
        #: One lock per account (``locks``), taken by ``acquire_locks`` or at the start of ``run``.
        self.locks = AccountLocks(lock_dir if lock_dir is not None else Path(state_path).parent, chain_id,
                                  [s.signer.address for s in specs],
                                  daemon or ("consumer run" if len(specs) == 1 else f"consumer fleet of {len(specs)}"))
        self.state = StateFile(state_path)
        if salts_file is None:
            kind = "consumer" if len(specs) == 1 else f"fleet{len(specs)}"
            salts_file = config_salts_file(Path(state_path).parent, kind, chain_id, dr.address,
                                           specs[0].signer.address)
        if meter_file is None:
            meter_file = default_meter_file(results.path)
        #: Salts of sealed bids (mode 600).
        self.salts = SaltStore(salts_file)
        self.meter = MeterReadings(meter_file)
        self._next_terms_check = 0.0
        #: ``DEVICES_FILE``: the home's devices shed what the agents win (``run`` builds them).
        self.devices_file = Path(devices_file) if devices_file else None
        self.actuator: Any = None
        #: ``VTN_URL`` (and ``VTN_ID``): this consumer is a VEN of the utility's OpenADR 2.0b VTN;
        #: a device override is reported there as an opt-out (``start_ven``).
        self.vtn_url, self.vtn_id = vtn_url or None, vtn_id or None
        self.ven: Any = None
        self.poll_interval = poll_interval
        self.rpc_name = rpc_name
        # One fee quote at a time for every agent (a fleet reads the fees once per request).
        quotes = FeeQuotes(dr.w3, chain_id)
        # One typed record per writer: the listener's cursor, and each agent's own notes.
        self.agents = [
            ConsumerAgent(dr, s.signer, s.bids, results,
                          self.state.section(("agents", s.signer.address), AgentNotes.from_json),
                          chain_id=chain_id, auto_withdraw=auto_withdraw, label=s.label,
                          salts=self.salts, meter=self.meter, bid_margin=bid_margin, fee_quotes=quotes,
                          delivery=delivery, reference=reference, relay_url=relay_url,
                          relay_fallback_s=relay_fallback_s)
            for s in specs
        ]
        self.poller = LogPoller(
            dr.w3, dr.address, EVENTS, self.state, start_block=start_block,
            confirmations=confirmations, reorg_depth=reorg_depth,
            label=self.agents[0].label if len(specs) == 1 else "fleet",
        )
        # A thread per agent (up to 256): an agent's thread mostly waits for its receipt, and
        # with fewer threads the later agents could only send after the earlier ones' blocks.
        self._pool = ThreadPoolExecutor(max_workers=min(256, len(self.agents))) if len(self.agents) > 1 else None
        # A fleet's sends and receipt polls go out together, as JSON-RPC batches (RpcBatcher).
        self.batcher = RpcBatcher(dr.w3) if len(self.agents) > 1 else None
        for agent in self.agents:
            agent.watch_receipt = self.poller.watch
            agent.signer.fee_ttl = FEES_TTL  # the daemon's signers share one fee lookup a second
            agent.signer.batcher = self.batcher
        # A fleet reads what is the same for all its agents once per request (see _prefetch):
        # the terms, and who has bid already.
        self._logged: tuple[int, int, dict[str, list[int]]] | None = None
        if self._pool is not None:
            shared_terms: dict[int, TermsInfo] = {}
            for agent in self.agents:
                agent._terms = shared_terms
                agent.bids_logged = lambda rid, from_block, a=agent: self._bids_logged(a, rid, from_block)

    @classmethod
    def from_settings(cls, session: Any, settings: Settings, specs: Sequence[AgentSpec], *,
                      daemon: str | None = None, rpc_name: str = "RPC endpoint") -> "ConsumerService":
        """A service whose every path and option comes from ``settings`` (the CLI and the web
        console build theirs this way); ``session`` is an open ``session.Session``."""
        owner = specs[0].signer.address
        kind = "consumer" if len(specs) == 1 else f"fleet{len(specs)}"
        return cls(
            session.dr, session.chain_id, specs,
            state_path=settings.cursor_file(kind, session.chain_id, session.dr.address, owner),
            salts_file=settings.salts_file(kind, session.chain_id, session.dr.address, owner),
            meter_file=settings.meter_file, lock_dir=settings.lock_dir, daemon=daemon,
            results=ResultsFile(settings.results_file), start_block=session.start_block(),
            poll_interval=settings.poll_interval, confirmations=settings.confirmations,
            reorg_depth=settings.reorg_depth, auto_withdraw=settings.auto_withdraw, rpc_name=rpc_name,
            bid_margin=bid_margin(settings.get("BID_MARGIN")), devices_file=settings.get("DEVICES_FILE") or None,
            vtn_url=settings.get("VTN_URL") or None, vtn_id=settings.get("VTN_ID") or None,
            delivery=DeliveryOptions.from_settings(settings),
            reference=reference_rate(settings, ETH),
            relay_url=settings.get("RELAY_URL") or None,
            relay_fallback_s=relay_fallback_seconds(settings.get("RELAY_FALLBACK_SECONDS")),
        )

    def _prefetch(self, event: Event) -> None:
        rid = int(event.args["requestId"])
        try:
            self.agents[0].terms_of(rid)
            self._logged = (rid, event.block_number, self.dr.bid_ids_logged_by_bidder(rid, event.block_number))
        except Exception as exc:
            if is_connection_error(exc):
                raise
            self._logged = None  # each agent reads (and reports) for itself

    def _bids_logged(self, agent: ConsumerAgent, rid: int, from_block: int) -> list[int]:
        snapshot = self._logged
        if snapshot is not None and snapshot[0] == rid and snapshot[1] == from_block:
            return list(snapshot[2].get(agent.address, []))
        return self.dr.bid_ids_logged(rid, agent.address, from_block=from_block)

    def _dispatch(self, event: Event) -> None:
        if self._pool is None:
            self.agents[0].on_event(event)
            return
        if event.name == "ReductionRequested":
            self._prefetch(event)
        errors = []
        try:
            for future in [self._pool.submit(agent.on_event, event) for agent in self.agents]:
                try:
                    future.result()
                except Exception as exc:
                    errors.append(exc)
        finally:
            self._logged = None
        retry = [e for e in errors if is_connection_error(e)]
        if retry:
            raise retry[0]
        for exc in errors:
            log.error("fleet: %s: %s", type(exc).__name__, exc)

    def _removed(self, key: str, info: list) -> None:
        for agent in self.agents:
            agent.on_removed(key, info)

    def _idle(self) -> None:
        """Between polls: at most once a second, move sealed and metered requests on (the
        devices run on their own thread, on the chain's clock: ``start_devices``)."""
        if time.monotonic() < self._next_terms_check:
            return
        self._next_terms_check = time.monotonic() + TERMS_CHECK_INTERVAL
        busy = [agent for agent in self.agents if agent.has_pending_terms()]
        for agent in busy:
            try:
                agent.tick()
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.error("%s: %s: %s", agent.label, type(exc).__name__, exc)
        if busy:
            self.state.save()

    def _reorged(self) -> None:
        if self._pool is None:
            self.agents[0].on_reorg()
            return
        for future in [self._pool.submit(agent.on_reorg) for agent in self.agents]:
            future.result()

    def acquire_locks(self) -> None:
        """Take the lock of every agent's account now; ``AccountBusy`` if another daemon has one.
        (``run`` does it anyway; a caller that starts ``run`` in a thread calls this first to
        hear of a busy account at once.)"""
        self.locks.acquire()

    def run(self, stop: threading.Event) -> None:
        """Listen and act until ``stop`` is set (holding every agent's account lock)."""
        self.locks.acquire()
        try:
            self.start_devices()
            self.start_ven()
            self._run(stop)
        finally:
            self.stop_ven()
            self.stop_devices()
            self.locks.release()

    def start_ven(self) -> None:
        """With ``VTN_URL``, register this consumer as a VEN of the utility's VTN (OpenADR 2.0b):
        it hears its dispatches there, reports a device override as an opt-out and, with
        ``DEVICES_FILE``, registers a real-power telemetry report (resource ``devices``: the sum
        of what its devices read, in W, at the interval the VTN asks for). One agent only, with
        a local key (the VEN name is signed by it). A VTN that cannot be reached now is a
        warning: awards still come by chain, overrides are then only logged."""
        if self.vtn_url is None or self.ven is not None:
            return
        if len(self.agents) != 1:
            raise ConfigError("VTN_URL: only `dr consumer run` (one account) runs a VEN; unset it for a fleet")
        local = getattr(self.agents[0].signer, "_local", None)
        if local is None:
            raise ConfigError("VTN_URL: the VEN signs its registration with the account's key; use "
                              "CONSUMER_PRIVATE_KEY or a keystore account, not an account the node unlocks")
        try:
            from ..openadr.context import MarketContext, OpenAdrError
            from ..openadr.ven import ConsumerVen
            from ..openadr.vtn import DEFAULT_VTN_ID

            importlib.import_module("openleadr.client")  # it sets its logger to INFO when first imported
        except ImportError as exc:
            raise ConfigError(f"VTN_URL is set, and OpenADR cannot be imported ({exc}); install the 'openadr' "
                              "extra (pip install '.[openadr]') or unset VTN_URL") from None
        # OpenLEADR logs every poll and message at INFO, its scheduler every job: the daemon's
        # own lines say what matters (as the utility daemon's VTN does)
        for name in ("openleadr", "apscheduler"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
        ven = ConsumerVen(self.vtn_url, self.vtn_id or DEFAULT_VTN_ID, local.key.hex(),
                          programme=MarketContext(int(self.dr.w3.eth.chain_id), self.dr.address),
                          on_award=self._heard_award,
                          read_power=self._devices_power if self.actuator is not None else None,
                          resource_id=VEN_RESOURCE, sampling_interval=VEN_MIN_SAMPLING_S)
        try:
            self.ven = ven.start()
        except OpenAdrError as exc:
            log.warning("openadr: %s; awards come by chain, device overrides are only logged", exc)
            return
        log.info("openadr: registered at the VTN %s as VEN %s%s", self.vtn_url, self.ven.ven_id,
                 f"; reporting the devices' real power (W) as resource {VEN_RESOURCE}"
                 if self.actuator is not None else "")

    def _devices_power(self) -> float | None:
        """The devices' summed power draw (W) for the VEN's telemetry; None (no sample) when no
        device can say. Called on the VEN's worker thread."""
        actuator = self.actuator
        if actuator is None:
            return None
        readings = [w for w in actuator.read_power().values() if w is not None]
        return float(sum(readings)) if readings else None

    def _heard_award(self, award: Any) -> None:
        """The VTN's notice or dispatch (the chain's award is the one acted on: this is the same fact)."""
        log.info("openadr: request %s: %s %s from the VTN%s", award.request_id, award.kind,
                 format_kw(int(award.watts)), " (cancelled)" if award.cancelled else "")

    def stop_ven(self) -> None:
        """Stop the VEN (its registration stays in the VTN's store)."""
        if self.ven is not None:
            self.ven.stop()
            self.ven = None

    def start_devices(self) -> None:
        """Build the home's ``devices.Actuator`` from ``DEVICES_FILE`` (restoring what an event
        that ended while we were down left shed) and connect its devices. A missing ``devices``
        extra or a bad file is one ``ConfigError`` line; a device that cannot be reached now is
        a warning (it is tried again when it is needed)."""
        if self.devices_file is None or self.actuator is not None:
            return
        try:
            from ..devices import Actuator, ChainClock, DeviceError, load_config
        except ImportError as exc:
            raise ConfigError(f"DEVICES_FILE is set, and the devices package cannot be imported ({exc}); "
                              "install the 'devices' extra (pip install '.[devices]') or unset DEVICES_FILE") from None
        # The event window is chain time: on a real chain it is the wall clock to within a
        # block; on a dev chain whose clock was moved forward only the chain's clock is right.
        actuator = Actuator(load_config(self.devices_file), clock=ChainClock(self.dr.w3),
                            on_opt_out=self._opted_out)
        try:
            actuator.start_all()
        except DeviceError as exc:
            if "extra" in str(exc):
                actuator.close()
                raise ConfigError(f"DEVICES_FILE={self.devices_file}: {exc}") from None
            log.warning("devices: %s (tried again when an event needs it)", exc)
        self.actuator = actuator
        for agent in self.agents:
            agent.actuator = actuator
        # Sheds and restores on a thread of their own: an event starts on time even while a
        # handler waits (for a receipt, or for the utility's payment).
        self._devices_stop = threading.Event()
        self._devices_thread = threading.Thread(target=self._run_devices, args=(actuator,), name="devices", daemon=True)
        self._devices_thread.start()
        log.info("devices: %d from %s (%s)", len(actuator.config.devices), self.devices_file,
                 ", ".join(spec.name for spec in actuator.config.devices))

    def _run_devices(self, actuator: Any) -> None:
        """Tick the actuator about once a second until ``stop_devices``."""
        while not self._devices_stop.wait(TERMS_CHECK_INTERVAL):
            try:
                actuator.tick()
            except Exception as exc:  # a device problem must not stop the bidding
                log.error("devices: %s", exc)

    def stop_devices(self) -> None:
        """Disconnect the devices (shed ones come back on their own timers)."""
        if self.actuator is not None:
            self._devices_stop.set()
            self._devices_thread.join(timeout=10)
            self.actuator.close()
            self.actuator = None
            for agent in self.agents:
                agent.actuator = None

    def _opted_out(self, opt_out: Any) -> None:
        """The user overrode a device: what the event will be short of, logged and, with a VEN,
        reported to the utility's VTN as an opt-out (expected under-delivery on its dashboard)."""
        log.warning("request %d: opt-out: %s was turned back on by the %s %s the event (%s less shed)",
                    opt_out.request_id, opt_out.device, opt_out.source,
                    "before" if opt_out.before_event else "during", format_kw(int(opt_out.shed_w)))
        if self.ven is None:
            return
        from ..openadr.context import OpenAdrError

        try:
            sent = self.ven.opt_out(opt_out.request_id, [opt_out.device])
        except OpenAdrError as exc:
            log.warning("request %d: openadr: %s", opt_out.request_id, exc)
            return
        log.info("request %d: openadr: opt-out %s", opt_out.request_id,
                 "acknowledged by the VTN" if sent else "noted; the dispatch will be answered optOut")

    def _run(self, stop: threading.Event) -> None:
        who = self.agents[0].label if len(self.agents) == 1 else f"{len(self.agents)} agents"
        for agent in self.agents:
            agent.signer.cancel = stop  # a receipt wait ends at once when the daemon is stopped

        def ready(agent: ConsumerAgent) -> None:
            # A bid sent just before a crash or a stop may still be pending: the daemon only
            # looks at mined bids before bidding, so it waits for those first.
            agent.signer.wait_for_own_pending(2 * agent.signer.stuck_after, stop)
            agent.signer.prime()  # the nonce read now, not on the first request's hot path

        try:
            if self._pool is not None:
                list(self._pool.map(ready, self.agents))
            else:
                ready(self.agents[0])
        except Exception as exc:  # read on the first send instead
            log.debug("could not read the nonces up front: %s", exc)
        log.info("%s: listening for requests on %s from block %d (poll every %.2f s)",
                 who, self.dr.address, self.poller.next_block, self.poll_interval)
        try:
            self.poller.run(self._dispatch, stop, self.poll_interval, on_removed=self._removed,
                            on_reorg=self._reorged, on_idle=self._idle, rpc_name=self.rpc_name)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self.state.save()
            log.info("%s: stopped", who)


def state_path_for(state_dir: Path, chain_id: int, contract: str, account: str, kind: str = "consumer") -> Path:
    """The cursor/notes file of a consumer (or fleet) on one contract (``config.cursor_file``)."""
    return cursor_file(state_dir, kind, chain_id, contract, account)
