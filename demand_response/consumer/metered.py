"""The metered protocol: bids (with a bond if asked) paid on measured delivery. After the
event the agent reports its meter reading, settles after the windows (or the utility
does), and records promised against delivered against paid."""

from __future__ import annotations

import logging
import time
from typing import Sequence

from ..contract import ParticipantInfo, RequestInfo, Stage, Status, TermsInfo
from ..market import DeliverySettlement, had_notice, settle_delivery
from ..payments import tx_hex
from ..units import eth, format_amount
from .core import AgentCore
from .delivery_check import check_delivery


class MeteredDelivery(AgentCore):
    """Metered bids, meter reports, settlement on delivery; cancelled bonded requests too."""

    def _bid_metered(self, rid: int, terms: TermsInfo, watts: Sequence[int], prices: Sequence[int]) -> None:
        if terms.bond_wei:
            self.watch_receipt(self._sent(rid, self.dr.post_bond, self.signer, rid, terms.bond_wei))
            self._say("posted bond %s ETH on request %d", eth(terms.bond_wei), rid)
        receipt = self._sent(rid, self.dr.submit_bids, self.signer, rid, list(watts), list(prices))
        self.watch_receipt(receipt)
        note = self.notes.note(rid)
        note.bid_txs, note.bid_at = [tx_hex(receipt["transactionHash"])], int(time.time())
        note.offers = [[w, p] for w, p in zip(watts, prices)]
        self._say("bid %d offer(s), %.3f kW, on metered request %d (tx %s…); paid on measured delivery",
                  len(watts), sum(watts) / 1000, rid, note.bid_txs[0][:12])

    def check_terms(self, rid: int, info: RequestInfo | None = None) -> None:
        """Drive a metered (or cancelled bonded) request of ours to its end and record it.
        ``info``: the request as just read, if the caller has it (no second read)."""
        note = self.notes.note(rid)
        if note.done or self._recorded(rid):
            note.done = True
            return
        if info is None:
            try:
                info = self.dr.get_request(rid)
            except Exception as exc:
                if not self._gone(rid, exc):
                    raise
                note.done = True
                return
        terms = self.terms_of(rid, info.status)
        me = self.dr.participant_of(rid, self.address)
        if info.status == Status.CANCELLED:
            if me.bond and me.stage != Stage.SETTLED:
                self._settle(rid)
                self._say("request %d was cancelled; bond returned", rid)
            self._withdraw_owed(rid)  # before the record: its cost is part of it
            self._record_cancelled(rid)
            note.done = True
            return
        if info.status != Status.SETTLED:
            return
        if not terms.metered:
            note.done = True  # sealed only: outcomes are claimed as for open bids
            self.handle_settled(rid, info=info)
            return
        if me.stage == Stage.SETTLED:
            self._record_delivery(rid, info, terms, me)
            note.done = True
            return
        if me.stage not in (Stage.BID, Stage.REPORTED, Stage.BONDED):
            self._say_once(rid, "out", "request %d settled without our bids (%s)", rid, me.stage.name.lower())
            self._record_delivery(rid, info, terms, me)
            note.done = True
            return
        if me.accepted_watts == 0:
            if me.bond:
                # The utility returns a loser's bond at once; settle it ourselves only if it
                # has not by the event's end (or at once when we report ourselves anyway).
                if self.delivery.report != "always" and self._chain_now(act_after=info.event_end) < info.event_end:
                    return
                self._settle(rid)
            else:
                self._record_delivery(rid, info, terms, me)
                note.done = True
            return
        self._award(rid, me.accepted_watts, info.event_start, info.event_end)
        self._say_once(rid, "won", "request %d: %.3f kW accepted, %s promised; paid on measured delivery after %s",
                       rid, me.accepted_watts / 1000, format_amount(me.promised_payout, self.currency_for(info)),
                       time.strftime("%H:%M:%S", time.localtime(info.event_end)))
        if me.stage == Stage.BID:
            self._report_or_settle(rid, info, terms, me)
            return
        # Reported: the utility confirms or disputes; after the dispute deadline anyone settles.
        now = self._chain_now(act_after=terms.dispute_deadline)
        if now > terms.dispute_deadline:
            self._settle(rid)

    def _report_or_settle(self, rid: int, info: RequestInfo, terms: TermsInfo, me: ParticipantInfo) -> None:
        """After the event: report the meter's reading before the report deadline; after it,
        with no report sent, settle (nothing delivered, nothing paid)."""
        now = self._chain_now(act_after=info.event_end - 1)
        if now < info.event_end:
            return
        report_from = self.delivery.report_from(max(info.event_end, terms.selected_at), terms.report_deadline)
        if report_from is not None and now < report_from:
            now = self._chain_now(act_after=report_from - 1)
        if now <= terms.report_deadline and (report_from is None or now < report_from):
            self._say_once(rid, "await-meter", "request %d: waiting for the utility to meter our delivery%s", rid,
                           "" if report_from is None else
                           f" (we report ourselves from {time.strftime('%H:%M:%S', time.localtime(report_from))} "
                           "if it has not)")
            return
        if now <= terms.report_deadline:
            reading = None
            if self.meter is not None:
                reading = self.meter.delivered(self.address, rid, info.duration, chain_id=self.chain_id,
                                               contract=self.dr.address)
            if reading is None:
                self._say_once(rid, "meter", "waiting for a meter reading of request %d in %s", rid,
                               self.meter.path if self.meter is not None else "(no meter file)")
                return
            self.watch_receipt(self._sent(rid, self.dr.report_delivery, self.signer, rid, reading))
            self._say("reported %.3f kW delivered on request %d (%.3f kW accepted)", reading / 1000, rid,
                      me.accepted_watts / 1000)
            return
        self._say_once(rid, "late", "no meter report for request %d before its deadline: nothing is paid", rid,
                       level=logging.ERROR)
        self._settle(rid)

    def _record_delivery(self, rid: int, info: RequestInfo, terms: TermsInfo, me: ParticipantInfo) -> None:
        """Record a metered request: promised against delivered against paid."""
        delivered = me.delivered_watts
        if me.stage == Stage.SETTLED:
            s = settle_delivery(me.accepted_watts, me.promised_payout, delivered, terms.bond_wei,
                                selected_late=not had_notice(terms.selected_at, info.event_start, terms.notice_period))
        else:  # never revealed (any bond forfeited at selection), or nothing to settle
            s = DeliverySettlement(me.accepted_watts, delivered, 0,
                                   terms.bond_wei if me.stage == Stage.COMMITTED else 0, 0, me.promised_payout)
        check: dict = {}
        if me.stage == Stage.SETTLED and me.accepted_watts:
            check = self._check_metered(rid)
        cur = self.currency_for(info)
        withdraw_tx, withdrawn = self._withdraw_owed(rid, info.token if info.in_token else None)
        mine = self.dr.bids_of(rid, self.address) if me.has_bids else []
        if self._record(rid, "won" if me.accepted_watts else "lost", info=info, bids=mine,
                        accepted_watts=me.accepted_watts, payout_wei=s.payout, claim_tx=None,
                        withdraw_tx=withdraw_tx, withdrawn_wei=withdrawn,
                        terms="sealed+metered" if terms.sealed else "metered",
                        promised_payout_wei=me.promised_payout, delivered_watts=delivered, penalty_wei=s.penalty,
                        bond_returned_wei=s.bond_returned, paid_wei=s.payout, **check):
            if not me.accepted_watts and me.has_bids:  # outbid: nothing was asked of us
                self._say("request %d: outbid, none of our bids accepted; nothing to deliver%s; recorded", rid,
                          f", bond {format_amount(s.bond_returned, cur)} returned" if s.bond_returned else "")
                return
            self._say("request %d: delivered %.3f of %.3f kW, paid %s of %s promised%s; recorded", rid,
                      delivered / 1000, me.accepted_watts / 1000, format_amount(s.payout, cur),
                      format_amount(me.promised_payout, cur),
                      f", penalty {eth(s.penalty)} ETH" if s.penalty else "")

    def _check_metered(self, rid: int) -> dict:
        """If the utility metered us, recompute our delivery from our own meter data with its
        published method and parameters (``delivery_check.check_delivery``); a disagreement
        beyond the tolerance is logged with both figures."""
        note = self.notes.note(rid)
        found = self.dr.deliveries_metered(rid, self.address, from_block=note.requested_block or 0)
        check = check_delivery(self.delivery, self.address, found[-1] if found else None)
        if "delivery_agrees" in check:
            level = logging.INFO if check["delivery_agrees"] else logging.WARNING
            self._say("request %d: the utility metered %.3f kW; our own meter data gives %.3f kW: %s", rid,
                      check["metered_watts"] / 1000, check["recomputed_watts"] / 1000, check["delivery_check"],
                      level=level)
        elif check:
            self._say("request %d: the utility metered %.3f kW; %s", rid, check["metered_watts"] / 1000,
                      check["delivery_check"])
        if check.get("calendar_differs"):
            self._say("request %d: the utility's calendar %s is not ours %s: with ours the delivery is %.3f kW", rid,
                      check["published_calendar"], check["own_calendar"], check["own_calendar_watts"] / 1000,
                      level=logging.WARNING)
        return check
