"""``ConsumerAgent``: one household account. It hears the contract's events and hands
each request to its protocol: open bids (``open_bids``), sealed bids (``sealed_bids``) or
metered delivery (``metered``), which share ``core``."""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from .. import metrics
from ..bids import Offer, prepare
from ..contract import RequestInfo, Stage, Status, TermsInfo
from ..errors import BidsError, TransactionFailed, is_connection_error
from ..listener import Event
from ..market import PricingRule, tick_wei
from ..token import ZERO_ADDRESS
from ..units import format_price
from .metered import MeteredDelivery
from .notes import METERED, SEALED
from .open_bids import OpenBidding
from .sealed_bids import SealedBidding


class ConsumerAgent(OpenBidding, SealedBidding, MeteredDelivery):
    """One consumer account: bids on open requests and collects its outcomes."""

    # -- events ---------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Handle one contract event; a request the chain no longer has (a node that came back
        without its last blocks, a reset dev chain) is forgotten with one warning."""
        rid = int(event.args["requestId"])
        try:
            self._on_event(rid, event)
        except Exception as exc:
            if not self._gone(rid, exc):
                raise

    def _on_event(self, rid: int, event: Event) -> None:
        if event.name == "ReductionRequested":
            self.notes.note(rid).requested_block = event.block_number
            self.handle_request(rid, event.args)
        elif event.name == "WinnersSelected":
            self.handle_settled(rid, event)
        elif event.name == "RequestCancelled" and rid in self.notes:
            if self.notes.note(rid).terms:
                self.check_terms(rid)  # returns a bond, then records
            else:
                self._record_cancelled(rid)
        elif event.name == "DeliverySettled" and str(event.args["consumer"]).lower() == self.address.lower():
            self.check_terms(rid)

    def on_removed(self, key: str, info: list) -> None:
        """A processed event vanished in a reorg; the contract is re-read when it comes back."""
        self.signer.resync()  # our own transactions may have been dropped with it
        self._say("event %s (%s) was removed by a chain reorganisation", key[:18] + "…", info[2] if len(info) > 2 else "?",
                  level=logging.WARNING)

    def on_reorg(self) -> None:
        """The chain was reorganised (or the node came back without its last blocks), maybe
        dropping our own transactions: re-check the latest requests not yet recorded (bid
        again where our bids vanished while bidding is open; record what got settled)."""
        self.signer.resync()
        for rid in sorted(self.notes, reverse=True)[:16]:
            if not self._recorded(rid):
                try:
                    self.handle_request(rid)
                except Exception as exc:
                    if not self._gone(rid, exc):
                        raise

    # -- bidding ----------------------------------------------------------------------------

    def handle_request(self, rid: int, args: dict[str, Any] | None = None) -> None:
        """Bid on request ``rid`` if it is open, bidding has not closed and we have not bid.

        A fresh event (deadline still ahead) carries everything needed, so the fast path
        makes no extra calls; an old one is checked against the contract first (read once,
        and handed on).
        """
        now = int(time.time())
        if args is not None and int(args["biddingDeadline"]) > now:
            info = _info_from_event(rid, args)
        else:
            try:
                info = self.dr.get_request(rid)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                self._say("request %d no longer exists on chain (reorganised away?)", rid, level=logging.WARNING)
                return
            if info.status == Status.SETTLED:
                self.handle_settled(rid, info=info)
                return
            if info.status != Status.OPEN:
                return
            now = max(now, int(self.dr.w3.eth.get_block("latest")["timestamp"]))
        cur = self.currency_for(info)
        self._say(
            "request %d heard: %.3f kW wanted, cap %s, bidding closes in %d s",
            rid, info.target_watts / 1000, format_price(info.max_price, cur), info.bidding_deadline - now,
        )
        metrics.request_heard(rid, self.address)
        terms = self.terms_of(rid)
        if terms.sealed or terms.metered:
            self.notes.note(rid).terms = SEALED if terms.sealed else METERED
            participant = self.dr.participant_of(rid, self.address)
            if participant.stage != Stage.NONE:
                # We take part even if a kill came before our notes were saved: ``tick`` drives it.
                self.notes.note(rid).joined = True
            in_flight = self._commit_in_flight(rid, participant)
            if participant.stage != Stage.NONE and not in_flight:
                self._say("already %s on request %d; not bidding again", participant.stage.name.lower(), rid)
                return
            if in_flight and self._resume_commitment(rid, participant):
                return
        note = self.notes.get(rid)
        if note is not None and note.relay:
            self._say("request %d: our signed bids are with the relay; not bidding again", rid)
            return
        mine = self.bids_logged(rid, (note.requested_block if note else None) or 0)
        if mine:
            self._say("already bid on request %d (%d bids on chain); not bidding again", rid, len(mine))
            return
        if now >= info.bidding_deadline:
            self._say("bidding on request %d has closed; not bidding", rid)
            return
        try:
            offers = list(self.bids(info))
        except BidsError as exc:
            self._say("not bidding on request %d: %s", rid, exc, level=logging.ERROR)
            return
        other = sorted({o.currency.symbol for o in offers if o.currency is not None and o.currency != cur})
        if other:
            # Never place a price in one currency on a request settled in another.
            self._say("not bidding on request %d: it pays in %s, but our bids are priced in %s (give the bids "
                      "file \"currency\": \"%s\" and prices in %s/kWh)", rid, cur.symbol, "/".join(other),
                      cur.symbol, cur.symbol, level=logging.WARNING)
            return
        ready = prepare(offers, info.max_price, cur)
        for offer, reason in ready.skipped:
            self._say("skipping bid %.3f kW at %s: %s", offer.kw, format_price(offer.price, cur), reason,
                      level=logging.WARNING)
        if not ready.submit:
            self._say("no bids at or below the cap for request %d; not bidding", rid)
            return
        submit, unpaid = self._worth_bidding(rid, info.duration, terms, ready.submit, cur)
        if not submit:
            self._say("no offer pays for taking part in request %d; not bidding", rid, level=logging.WARNING)
            return
        if terms.metered and self._relayable(terms):
            self._bid_relayed(rid, submit, len(ready.skipped) + unpaid, cur, info.bidding_deadline, metered=True)
        elif terms.sealed or terms.metered:
            self._bid_with_terms(rid, terms, submit)
        else:
            self._bid_open(rid, submit, len(ready.skipped) + unpaid, cur, deadline=info.bidding_deadline)

    def _bid_with_terms(self, rid: int, terms: TermsInfo, offers: Sequence[Offer]) -> None:
        """One submission per consumer: commit it (sealed) or place it (metered), bond included."""
        offers = self._one_submission(rid, offers)
        watts, prices = [o.watts for o in offers], [o.price for o in offers]
        try:
            if terms.sealed:
                self._commit_sealed(rid, terms, watts, prices)
            else:
                self._bid_metered(rid, terms, watts, prices)
        except TransactionFailed as exc:
            self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)

    # -- between events -----------------------------------------------------------------------

    def has_pending_terms(self) -> bool:
        """True while a sealed reveal or a metered settlement of ours is outstanding."""
        return (self._has_pending_salts() or self._relay_pending()
                or any(n.terms and not n.done for _, n in self.notes.items()))

    def tick(self) -> None:
        """Reveal sealed bids in their window; report, settle and record metered requests; see
        our relayed bids onto the chain (or submit them ourselves)."""
        self._relay_due()
        self._reveal_due()
        for rid, note in self.notes.items():
            if note.terms and not note.done and (note.bid_txs or note.joined):
                self.check_terms(rid)

    # -- outcomes ---------------------------------------------------------------------------

    def handle_settled(self, rid: int, event: Event | None = None, info: RequestInfo | None = None) -> None:
        """Claim, withdraw and record the outcome of a settled request we bid in (a metered
        one is paid on delivery instead: ``check_terms``). ``info``: the request as just read."""
        if self._recorded(rid):
            return
        if info is None:
            info = self.dr.get_request(rid)
        if info.status != Status.SETTLED:
            return
        if self.terms_of(rid).metered:
            self.check_terms(rid, info=info)  # paid on delivery, not by claim
            return
        self._claim_and_record(rid, info, event.block_number if event is not None else None)


def _info_from_event(rid: int, args: dict[str, Any]) -> RequestInfo:
    """A fresh ``ReductionRequested`` event's request, without reading the contract."""
    cap = int(args["maxPriceWeiPerKWh"])
    return RequestInfo(
        rid, Status.OPEN, PricingRule(int(args["pricingRule"])), int(args["targetWatts"]),
        int(args["eventStart"]), int(args["eventEnd"]), int(args["biddingDeadline"]),
        cap, tick_wei(cap), int(args["budget"]), 0, 0, 0, 0, 0, 0, 0,
        token=args.get("token", ZERO_ADDRESS),
    )
