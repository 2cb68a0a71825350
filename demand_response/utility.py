"""The utility: deploying, requesting reductions, settling them and reporting status."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from eth_utils import to_checksum_address

from . import metrics
from .chain import Signer
from .errors import ChainError, DRError, TransactionFailed
from .config import Settings, cursor_file, record_deployment
from .contract import DemandReduction, RequestInfo, Stage, Status, TermsInfo
from .listener import Event, LogPoller, StateFile, is_connection_error
from .locks import AccountLocks
from .payments import pay_winners, settle_participant, withdraw_owed
from .token import currency_of
from .units import ETH, Currency, format_amount, format_price
from .sealed import MeterReadings
from .mv.baselines import sum_results
from .mv.commands import DEFAULT_METHOD
from .mv.records import build_record, fingerprint_of, read_records, series_of, write_record
from .planner import MIN_CAP_WEI_PER_KWH, RequestPlan, plan_request, preview, send_request

log = logging.getLogger("demand_response.utility")

EVENTS = ("ReductionRequested", "WinnersSelected", "RequestCancelled")


def deploy(settings: Settings, signer: Signer, chain_id: int, registration_required: bool = False) -> DemandReduction:
    """Deploy a DemandReduction from ``signer`` and record it for (network, chain id) and in .env."""
    from .artifacts import load_artifact
    from .contract import decode_revert

    artifact = load_artifact()
    factory = signer.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(registration_required).build_transaction({"from": signer.address})
    receipt = signer.send(tx, decode_error=decode_revert)
    dr = DemandReduction.at(signer.w3, receipt["contractAddress"])
    record_deployment(settings, chain_id, dr.address, int(receipt["blockNumber"]),
                      "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x"),
                      utility=signer.address, registration_required=registration_required)
    return dr


def outcome_line(info: RequestInfo, cur: Currency = ETH) -> str:
    """One line summarising a request whose winners are selected (words: docs/web.md's glossary),
    amounts in ``cur``, the request's currency."""
    refund = info.budget - info.reserved
    return (
        f"request {info.request_id}: winners selected at clearing price {format_price(info.clearing_price, cur)}, "
        f"accepted {info.accepted_watts / 1000:.3f} kW of {info.target_watts / 1000:.3f} kW target, "
        f"promised {format_amount(info.reserved, cur)}, refund {format_amount(refund, cur)}"
    )


class UtilityDaemon:
    """Watches the utility's open requests, settles each after its deadline, withdraws refunds."""

    def __init__(
        self,
        dr: DemandReduction,
        signer: Signer,
        *,
        state_path: Path,
        start_block: int,
        poll_interval: float = 0.5,
        confirmations: int = 0,
        reorg_depth: int = 12,
        auto_withdraw: bool = True,
        only: set[int] | None = None,
        exit_when_idle: bool = False,
        on_settled: Callable[[RequestInfo], None] | None = None,
        rpc_name: str = "RPC endpoint",
        meter_file: Path | None = None,
        lock_dir: Path | None = None,
        chain_id: int | None = None,
        meter_db: "str | Path | None" = None,
        baseline: str | None = None,
        portfolio: bool = False,
        records_dir: Path | None = None,
        tolerance_watts: int = 0,
        vtn: Any = None,
        calendar: Any = None,
        relay: Any = None,
        sponsor_book: bool = False,
    ) -> None:
        self.dr = dr
        self.signer = signer
        #: The utility account's lock (``locks``): one daemon per account.
        self.locks = AccountLocks(lock_dir if lock_dir is not None else Path(state_path).parent,
                                  chain_id if chain_id is not None else int(dr.w3.eth.chain_id),
                                  [signer.address], "utility run")
        self.state = StateFile(state_path)
        self.open: set[int] = {int(r) for r in self.state.data.get("open", [])}
        #: Settled metered requests whose participants are not all settled yet.
        self.metered: set[int] = {int(r) for r in self.state.data.get("metered", [])}
        #: The utility's own meter data (as meter operator); without it, reports are final
        #: at the dispute deadline.
        self.meter = MeterReadings(meter_file) if meter_file is not None else None
        self._judged: set[tuple[Any, ...]] = set()
        #: Interval meter data (``mv.store``, SQLite path or PostgreSQL URL): delivery is
        #: computed with ``baseline`` and judged like the meter file's figures (``_judge``).
        self.meter_db = meter_db
        self.baseline = baseline or DEFAULT_METHOD
        self.portfolio = portfolio
        #: The baselines' local calendar (``mv.calendar.Calendar``: time zone, holidays); UTC without one.
        self.calendar = calendar
        self.records_dir = Path(records_dir) if records_dir is not None else Path(state_path).parent / "delivery-records"
        #: A report up to this many watts above the computed figure is still confirmed.
        self.tolerance_watts = max(0, int(tolerance_watts))
        #: The published delivery records of this run (``mv.records``), in the order measured.
        self.judged: list[dict[str, Any]] = []
        self._measured: dict[int, dict[str, dict[str, Any]]] = {}
        self._unmeasured: dict[tuple[int, str], str] = {}
        #: An OpenADR VTN (``openadr.vtn.UtilityVtn``, started by the caller) told of every
        #: request's phases; the daemon stops it when it stops (``start_vtn`` builds one).
        self.vtn = vtn
        self._told: set[tuple[str, int]] = set()
        #: Requests whose ``ReductionRequested`` was handled in this run: announced, sponsored and
        #: logged once, however often the event is read again.
        self._heard: set[int] = set()
        #: The bid relay (``relayer.BidRelay``, ``RELAY_LISTEN``): its queued signed entries are
        #: sent each round, the gas paid by this account.
        self.relay = relay
        self.poll_interval = poll_interval
        self.auto_withdraw = auto_withdraw
        #: ``SPONSOR_BOOK``: sponsor each new request's book as soon as it is heard, so that no
        #: bidder pays for a book slot's first write (``DemandReduction.sponsor_book``).
        self.sponsor_book = sponsor_book
        self.only = only
        self.exit_when_idle = exit_when_idle
        self.on_settled = on_settled
        self.rpc_name = rpc_name
        self.poller = LogPoller(dr.w3, dr.address, EVENTS, self.state, start_block=start_block,
                                confirmations=confirmations, reorg_depth=reorg_depth, label="utility")
        self._stop: threading.Event | None = None
        self._seen_any = bool(self.open)
        self._deadlines: dict[int, int] = {}
        self._terms: dict[tuple[int, bool], TermsInfo] = {}
        self._is_dev: bool | None = None
        self.settled: list[RequestInfo] = []
        #: The tokens of the requests settled in this run: their refunds are withdrawn as well.
        self.tokens: set[str] = {str(t) for t in self.state.data.get("tokens", [])}

    def _dev_chain(self) -> bool:
        if self._is_dev is None:
            from .config import DEV_CHAIN_IDS

            self._is_dev = int(self.dr.w3.eth.chain_id) in DEV_CHAIN_IDS
        return self._is_dev

    def _save_open(self) -> None:
        self.state.data["open"] = sorted(self.open)
        self.state.data["metered"] = sorted(self.metered)
        self.state.data["tokens"] = sorted(self.tokens)
        self.state.save()

    def _on_event(self, event: Event) -> None:
        rid = int(event.args["requestId"])
        if self.only is not None and rid not in self.only:
            return
        if event.name == "ReductionRequested":
            if rid in self._heard:  # heard again (a re-read after a reorg check, or push and poll)
                return
            self._heard.add(rid)
            metrics.request_heard()
            info = self.dr.get_request(rid)
            if info.status == Status.OPEN:
                self.open.add(rid)
                self._seen_any = True
                log.info("utility: watching request %d (%.3f kW, bidding closes %s)", rid,
                         info.target_watts / 1000, time.strftime("%H:%M:%S", time.localtime(info.bidding_deadline)))
                self._tell_vtn("announce", rid)
                if self.sponsor_book:
                    self._sponsor(rid, info)
        elif event.name == "RequestCancelled":
            self.open.discard(rid)
            self._tell_vtn("cancel", rid)
        elif event.name == "WinnersSelected" and rid in self.open:
            self.open.discard(rid)  # settled by someone else
            self._report(self.dr.get_request(rid))
        self._save_open()

    def _sponsor(self, rid: int, info: RequestInfo) -> None:
        """Sponsor request ``rid``'s book (``SPONSOR_BOOK``) while bidding is open; a failure is
        logged, never fatal: the request works the same without it."""
        if int(self.dr.w3.eth.get_block("latest")["timestamp"]) >= info.bidding_deadline:
            return
        try:
            receipt = self.dr.sponsor_book(self.signer, rid)
        except DRError as exc:
            log.warning("utility: could not sponsor the book of request %d: %s", rid, exc)
            return
        log.info("utility: sponsored the book of request %d (%d gas): no bidder writes a book slot from zero",
                 rid, int(receipt["gasUsed"]))

    def _tick(self) -> None:
        if self.relay is not None:
            self.relay.flush(self.signer)
        if self.metered:
            self._tick_metered()
        if not self.open:
            if self.exit_when_idle and self._stop is not None and self._seen_any and not self.metered:
                self._stop.set()
            return
        latest = self.dr.w3.eth.get_block("latest")
        chain_now = int(latest["timestamp"])
        now = max(chain_now, int(time.time()))
        due = [rid for rid in self.open if rid in self._deadlines and self._deadlines[rid] < now]
        if due and chain_now <= max(self._deadlines[r] for r in due) and self._dev_chain():
            # An idle instamine dev chain makes no blocks, and gas estimation runs at the
            # latest block's time: mine one so the chain's clock passes the deadline.
            self.dr.w3.provider.make_request("evm_mine", [])
        for rid in sorted(self.open):
            info = self.dr.get_request(rid)
            if info.status != Status.OPEN:
                self.open.discard(rid)
                if info.status == Status.SETTLED:
                    self._report(info)
                continue
            terms = self._terms_of(rid)
            closes = terms.reveal_deadline if terms.sealed else info.bidding_deadline
            self._deadlines[rid] = closes
            if now <= closes:
                continue
            try:
                self.poller.watch(self.dr.select_winners(self.signer, rid))
            except TransactionFailed as exc:
                if exc.error == "BiddingStillOpen":
                    continue  # the chain's clock is behind ours; try again next tick
                log.error("utility: settling request %d failed: %s", rid, exc)
                self.open.discard(rid)
                continue
            self.open.discard(rid)
            self._report(self.dr.get_request(rid))
        self._save_open()
        if self.auto_withdraw and not self.open:
            self._withdraw()

    def _terms_of(self, rid: int, settled: bool = False) -> TermsInfo:
        """Terms, cached per phase: a late selection moves a metered request's deadlines."""
        if (rid, settled) not in self._terms:
            self._terms[(rid, settled)] = self.dr.terms_of(rid)
        return self._terms[(rid, settled)]

    def _tick_metered(self) -> None:
        """Confirm or dispute meter reports with the utility's meter data, then settle every
        participant once the windows are over, so the unearned budget comes back."""
        for rid in sorted(self.metered):
            info = self.dr.get_request(rid)
            terms = self._terms_of(rid, settled=True)
            if info.claimed_watts == info.accepted_watts:
                self.metered.discard(rid)
                log.info("utility: request %d: every accepted watt is settled on delivery", rid)
                self._save_open()
                if self.auto_withdraw:
                    self._withdraw()
                continue
            latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
            if latest + 1 < time.time() and self._dev_chain():
                self.dr.w3.provider.make_request("evm_mine", [])  # an idle dev chain's clock stands still
                latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
            bids = self.dr.all_bids(rid)
            bidders = sorted({b.bidder for b in bids})
            self._return_losers_bonds(rid, bids)
            if latest < info.event_end:
                continue
            if latest <= terms.dispute_deadline:
                if self.meter_db is not None:
                    self._measure(rid, info, terms, bidders, latest)
                elif self.meter is None:
                    continue
                for who in bidders:
                    if (rid, who) in self._judged:
                        continue
                    p = self.dr.participant_of(rid, who)
                    if self.meter_db is not None:
                        # Interval data: meter every winner once measured, report or not
                        # (issue 17: the household's report is optional).
                        record = self._measured.get(rid, {}).get(who)
                        if record is not None and p.accepted_watts and p.stage in (Stage.BID, Stage.REPORTED):
                            self._judge(rid, who, p.delivered_watts if p.stage == Stage.REPORTED else None,
                                        int(record["share_watts"]), record)
                        continue
                    if p.stage != Stage.REPORTED:
                        continue
                    measured = self.meter.delivered(who, rid, info.duration, chain_id=int(self.dr.w3.eth.chain_id),
                                                    contract=self.dr.address)
                    if measured is None:
                        continue
                    self._judge(rid, who, p.delivered_watts, measured, None)
                continue
            for who in bidders:
                p = self.dr.participant_of(rid, who)
                if p.stage in (Stage.BID, Stage.REPORTED) and p.accepted_watts:
                    receipt = settle_participant(self.dr, self.signer, rid, who)
                    if receipt is None:  # the consumer settled itself first: a race lost, not an error
                        log.info("utility: request %d: %s was settled meanwhile by someone else", rid, who[:10])
                        continue
                    self.poller.watch(receipt)
                    log.info("utility: request %d: settled %s (%s)", rid, who[:10],
                             "reported" if p.stage == Stage.REPORTED else "no report: nothing delivered")

    def _return_losers_bonds(self, rid: int, bids: list[Any]) -> None:
        """Settle, once, every bidder with nothing accepted whose bond is held: the bond is
        pushed back at once, so a losing household sends nothing after its bids."""
        accepted: dict[str, int] = {}
        for b in bids:
            accepted[b.bidder] = accepted.get(b.bidder, 0) + b.accepted_watts
        for who in sorted(w for w, watts in accepted.items() if watts == 0):
            if (rid, who, "bond") in self._judged:
                continue
            self._judged.add((rid, who, "bond"))
            p = self.dr.participant_of(rid, who)
            if not p.bond or p.stage not in (Stage.BONDED, Stage.BID):
                continue
            if settle_participant(self.dr, self.signer, rid, who) is not None:
                log.info("utility: request %d: returned %s's bond (nothing accepted)", rid, who[:10])

    def _judge(self, rid: int, who: str, reported: int | None, measured: int, record: dict[str, Any] | None) -> None:
        """The one judge of a winner's delivery, whatever the utility's source (meter file or
        interval data), sent as one ``meterDelivery`` that publishes the measurement record
        (``Fingerprint.evidence``) when there is one: a report up to ``measured`` +
        tolerance is confirmed, a higher one disputed with ``measured``; with no report
        (``reported`` None) the winner is settled on ``measured``."""
        self._judged.add((rid, who))
        evidence = fingerprint_of(record).evidence() if record is not None else b""
        if reported is None:
            figure, verdict = measured, "metered"
            log.info("utility: request %d: metered %s at %.3f kW (no report needed)", rid, who[:10], measured / 1000)
        elif reported <= measured + self.tolerance_watts:
            figure, verdict = max(reported, measured), "confirmed"  # at or above the report: the report stands
            log.info("utility: request %d: confirmed %s's report of %.3f kW", rid, who[:10], reported / 1000)
        else:
            figure, verdict = measured, "disputed"
            log.warning("utility: request %d: disputed %s's report of %.3f kW; the meter says %.3f kW",
                        rid, who[:10], reported / 1000, measured / 1000)
        try:
            self.poller.watch(self.dr.meter_delivery(self.signer, rid, who, figure, evidence))
        except TransactionFailed as exc:
            if exc.error != "WrongStage":
                raise
            log.info("utility: request %d: %s was settled meanwhile by someone else", rid, who[:10])
            return
        if record is not None:
            record.update(reported_watts=reported, verdict=verdict, metered_watts=figure)
            self._write_record(record)

    def _write_record(self, record: dict[str, Any]) -> None:
        """Store ``record`` (``mv.records``), atomically."""
        write_record(self.records_dir, record["chain_id"], record["contract"], record["request_id"],
                     record["address"], record)

    def _measure(self, rid: int, info: RequestInfo, terms: TermsInfo, bidders: list[str], latest: int) -> None:
        """Compute every winner's delivery from the meter store once its event data is in,
        write each record and log one line per winner. Waits (quietly) for missing data
        until the report deadline; after it, a winner without data gets one clear line."""
        if rid not in self._measured:  # after a restart: the records already published stand
            stored = read_records(self.records_dir, int(self.dr.w3.eth.chain_id), self.dr.address, rid)
            self._measured[rid] = {to_checksum_address(r["address"]): r for r in stored}
            self.judged.extend(stored)
        done = self._measured[rid]
        if self.portfolio and done:
            return  # a portfolio is measured once
        winners = [w for w in bidders if w not in done and (rid, w) not in self._unmeasured
                   and self.dr.participant_of(rid, w).accepted_watts]
        if not winners:
            return
        final = latest > terms.report_deadline
        results: dict[str, tuple[Any, Any]] = {}
        missing: dict[str, str] = {}
        for who in winners:
            try:
                results[who] = _measure_meter(self.meter_db, to_checksum_address(who), info.event_start, info.event_end,
                                              self.baseline, self.calendar)
            except DRError as exc:
                missing[who] = str(exc)
        if missing and not final and (self.portfolio or not results):
            return  # the data may still come (telemetry, a late import): try again next tick
        chain_id = int(self.dr.w3.eth.chain_id)
        shares: dict[str, int] = {}
        if self.portfolio and results:
            _, _, total = sum_results([r for r, _ in results.values()])
            accepted = {w: self.dr.participant_of(rid, w).accepted_watts for w in results}
            whole = sum(accepted.values())
            shares = {w: total * a // whole for w, a in accepted.items()}
        for who in sorted(results):
            result, fp = results[who]
            share = shares.get(who, fp.delivered_watts)
            record = build_record(fp, series_of(result), chain_id=chain_id, contract=self.dr.address,
                                  request_id=rid, address=who, portfolio=self.portfolio, share_watts=share,
                                  reported_watts=None, verdict=None)
            done[who] = record
            self.judged.append(record)
            self._write_record(record)
            log.info("utility: request %d: %s: baseline %.3f kWh, metered %.3f kWh, delivered %.3f kW%s "
                     "(%s, data hash %s, record digest %s)", rid, who[:10], fp.baseline_wh / 1000,
                     fp.metered_wh / 1000, fp.delivered_watts / 1000,
                     f", portfolio share {share / 1000:.3f} kW" if self.portfolio else "",
                     fp.method, fp.data_hash, fp.record_digest)
        for who, why in sorted(missing.items()):
            if final:
                self._unmeasured[(rid, who)] = why
                log.warning("utility: request %d: %s: no delivery computed from the meter data (%s); not "
                            "confirmed: the contract's rules apply (a report stands, no report pays nothing)",
                            rid, who[:10], why)

    def _tell_vtn(self, what: str, rid: int) -> None:
        """``vtn.announce|dispatch|cancel(rid)``, once each; a VTN problem never stops settlement."""
        if self.vtn is None or (what, rid) in self._told:
            return
        self._told.add((what, rid))
        try:
            sent = getattr(self.vtn, what)(rid)
        except Exception as exc:  # the VTN is an extra channel: log it and go on settling
            log.warning("utility: request %d: OpenADR %s failed: %s: %s", rid, what, type(exc).__name__, exc)
            return
        count = sent if isinstance(sent, int) else len(sent)
        log.info("utility: request %d: OpenADR %s sent to %d VEN(s)", rid,
                 {"announce": "notice", "dispatch": "dispatch", "cancel": "cancellation"}[what], count)

    def _report(self, info: RequestInfo) -> None:
        self._tell_vtn("dispatch", info.request_id)
        self.settled.append(info)
        if info.in_token:
            self.tokens.add(info.token)
        log.info("utility: %s", outcome_line(info, currency_of(self.dr.w3, info.token)))
        if self._terms_of(info.request_id).metered and info.accepted_watts:
            self.metered.add(info.request_id)
            self._save_open()
        elif info.accepted_watts:
            self._pay_winners(info.request_id)
        if self.on_settled is not None:
            self.on_settled(info)

    def _pay_winners(self, rid: int) -> None:
        """Send every winner of open request ``rid`` its payout (``claimAndPay``), so households
        send nothing after their bids; on failure they still claim for themselves."""
        try:
            paid = pay_winners(self.dr, self.signer, rid)
        except (TransactionFailed, ChainError) as exc:
            log.error("utility: request %d: paying the winners failed (they can still claim): %s", rid, exc)
            return
        if paid.txs:
            cur = self.dr.currency_of(rid)
            log.info("utility: request %d: paid %d winning bid(s) %s directly%s (tx %s)", rid, paid.sent,
                     format_amount(paid.sent_wei, cur),
                     f"; {paid.deferred} refused payment(s), {format_amount(paid.deferred_wei, cur)}, left to withdraw"
                     if paid.deferred else "", ", ".join(t[:12] + "…" for t in paid.txs))

    def _reorged(self) -> None:
        """A reorganisation (or a node back without its last blocks) may have undone a
        settlement: watch again every recent request that is open."""
        self.signer.resync()
        count = self.dr.request_count()
        for rid in range(max(1, count - 63), count + 1):
            if (self.only is None or rid in self.only) and rid not in self.open \
                    and self.dr.get_request(rid).status == Status.OPEN:
                self.open.add(rid)
                log.warning("utility: request %d is open again after the reorganisation; watching it", rid)
        self._save_open()

    def _withdraw(self) -> None:
        """Withdraw the refunds owed to the utility: ether, and each token it requested in."""
        for token in [None, *sorted(self.tokens)]:
            done = withdraw_owed(self.dr, self.signer, token=token)
            if done is not None:
                log.info("utility: withdrew refund %s (tx %s…)", format_amount(done.wei, currency_of(self.dr.w3, token)),
                         done.tx[:12])

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (or, with ``exit_when_idle``, until nothing is open)."""
        try:
            self.locks.acquire()
            try:
                self._run(stop)
            finally:
                self.locks.release()
        finally:
            if self.vtn is not None:
                self._stop_vtn()

    def _run(self, stop: threading.Event) -> None:
        self._stop = stop
        self.signer.cancel = stop  # a receipt wait ends at once when the daemon is stopped
        for rid in sorted(self.only or ()):
            self._seen_any = True
            if rid <= self.dr.request_count() and self.dr.get_request(rid).status == Status.OPEN:
                self.open.add(rid)
        log.info("utility: watching %s from block %d", self.dr.address, self.poller.next_block)

        def idle() -> None:
            try:
                self._tick()
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.error("utility: %s: %s", type(exc).__name__, exc)

        try:
            self.poller.run(self._on_event, stop, self.poll_interval, on_idle=idle, on_reorg=self._reorged,
                            rpc_name=self.rpc_name)
        finally:
            self._save_open()
            log.info("utility: stopped")

    def _stop_vtn(self) -> None:
        try:
            self.vtn.stop()
        except Exception as exc:
            log.warning("utility: stopping the OpenADR VTN: %s: %s", type(exc).__name__, exc)
        feed = getattr(self.vtn, "on_telemetry", None)
        if hasattr(feed, "flush"):
            feed.flush()  # the telemetry of the last, open interval into the meter store


class MeterStoreSink:
    """``add_readings`` into the meter store at ``db``, opened per write: the VTN's telemetry
    arrives on its own thread, and a SQLite connection stays on the thread that opened it."""

    def __init__(self, db: "str | Path") -> None:
        self.db = db

    def add_readings(self, meter_id: str, readings: Any) -> int:
        from .mv import MeterStore

        with MeterStore.open(self.db) as store:
            return store.add_readings(meter_id, readings)


def start_vtn(dr: DemandReduction, store_path: Path, *, port: int, vtn_id: str | None = None,
              meter_db: "str | Path | None" = None, host: str = "127.0.0.1", **options: Any) -> Any:
    """Start the utility's OpenADR VTN (``openadr.vtn.UtilityVtn``, the ``openadr`` extra) on
    ``port``; with ``meter_db``, VEN telemetry goes to that meter store (``IntervalFeed``)."""
    import importlib

    importlib.import_module("openleadr.client")  # it sets its logger to INFO when first imported

    from .openadr.telemetry import IntervalFeed
    from .openadr.vtn import DEFAULT_VTN_ID, UtilityVtn

    # openleadr logs every message it answers in full at INFO; the daemon's own lines say what matters
    logging.getLogger("openleadr").setLevel(max(logging.WARNING, logging.getLogger().level))

    feed = IntervalFeed(MeterStoreSink(meter_db)) if meter_db is not None else None
    Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    return UtilityVtn(dr, store_path, vtn_id=vtn_id or DEFAULT_VTN_ID, host=host, port=port, on_telemetry=feed,
                      **options).start()


def _measure_meter(db: "str | Path", meter_id: str, start: int, end: int, method: str,
                   calendar: Any = None) -> tuple[Any, Any]:
    """``(BaselineResult, Fingerprint)`` of one meter over one event, from the store at ``db``.

    The same rule as ``mv.commands.baseline_command``: the meter's stored event and outage
    marks other than this event are excluded days.
    """
    from .mv import MeterStore, compute, fingerprint
    from .mv.readings import MeterDataError

    with MeterStore.open(db) as store:
        if store.span(meter_id) is None:
            raise MeterDataError(f"meter {meter_id} is not in the meter store; import its data (dr meter import)")
        readings = store.readings(meter_id)
        excluded = [(m.start, m.stop) for m in store.marks(meter_id) if not (m.kind == "event" and m.start == start)]
    from .mv.calendar import UTC

    params: dict[str, Any] = {"excluded": excluded, **(calendar or UTC).params(method, int(start))}
    result = compute(method, readings, int(start), int(end), **params)
    return result, fingerprint(meter_id, result, readings)


def utility_state_path(state_dir: Path, chain_id: int, contract: str, account: str) -> Path:
    """The cursor file of the utility daemon (``config.cursor_file``)."""
    return cursor_file(state_dir, "utility", chain_id, contract, account)


__all__ = [
    "ChainError", "MIN_CAP_WEI_PER_KWH", "MeterStoreSink", "RequestPlan", "UtilityDaemon", "deploy", "outcome_line",
    "plan_request", "preview", "send_request", "start_vtn", "utility_state_path",
]
