"""The consumer bidding daemon.

One ``ConsumerAgent`` is one household account. A ``ConsumerService`` runs one event
listener for the contract and hands every event to its agents: one agent for
``dr consumer run``, N for ``dr consumer fleet -n N``; the logic is the same.

For each request an agent hears while bidding is open, it loads its offers (``bids.json``
or gridsim), snaps them up to the request's price grid, skips those above the cap, and
submits the rest (at most 64 per transaction). Before bidding it asks the contract whether
it already bid there, so a restarted daemon never bids twice. When the request is settled
it claims its winning bids, withdraws (unless disabled) and appends one record to
``results.json``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .bids import BidsError, Offer, chunks, from_pairs, load_bids, prepare
from .chain import FEES_TTL, RpcBatcher, Signer, TransactionFailed
from .contract import MAX_UINT, DemandReduction, RequestInfo, Stage, Status, TermsInfo, bid_gas_limit
from .sealed import COMMITTED, COMMITTING, REVEALED, MeterReadings, SaltStore, SealedEntry
from .market import PricingRule
from .listener import Event, LogPoller, StateFile, is_connection_error
from .results import ResultsFile

log = logging.getLogger("demand_response.consumer")

EVENTS = ("ReductionRequested", "WinnersSelected", "RequestCancelled", "DeliverySettled")
#: Seconds between checks of sealed and metered requests (reveal, report, settle).
TERMS_CHECK_INTERVAL = 1.0
BidsProvider = Callable[[RequestInfo], Sequence[Offer]]


def eth(wei: int) -> str:
    """Wei as a short ETH string."""
    return f"{wei / 10**18:.6f}"


def _revert_name(exc: Exception) -> str:
    """The contract error name of a failed call, if it decodes ('' otherwise)."""
    from .contract import decode_revert

    decoded = decode_revert(exc)
    return decoded.error or "" if decoded is not None else ""


def _short(tx_hash: Any) -> str:
    text = tx_hash.hex() if isinstance(tx_hash, (bytes, bytearray)) else str(tx_hash)
    text = text if text.startswith("0x") else "0x" + text
    return text


def file_bids(path: str | Path, agent_index: int = 0) -> BidsProvider:
    """Offers from a bids file, re-read for every request (edits apply to the next request)."""

    def provide(_info: RequestInfo) -> Sequence[Offer]:
        return load_bids(path).for_agent(agent_index)

    return provide


def gridsim_bids(household_index: int = 0, seed: int = 0, n_households: int | None = None) -> BidsProvider:
    """Offers from the household simulation, fitted to each request (imported lazily)."""
    try:
        from .gridsim import bids_for_request
    except Exception as exc:  # ImportError, or numpy missing inside gridsim
        raise BidsError(
            f"--bids-source gridsim needs demand_response.gridsim ({type(exc).__name__}: {exc}); "
            "install the 'sim' extra (pip install '.[sim]') or use --bids-source file"
        ) from None

    def provide(info: RequestInfo) -> Sequence[Offer]:
        request = {"event_start": info.event_start, "event_end": info.event_end,
                   "max_price_wei_per_kwh": info.max_price}
        pairs = bids_for_request(request, household_index=household_index, seed=seed, n_households=n_households)
        return from_pairs(pairs, "gridsim")

    return provide


class ConsumerAgent:
    """One consumer account: bids on open requests and collects its outcomes."""

    def __init__(
        self,
        dr: DemandReduction,
        signer: Signer,
        bids: BidsProvider,
        results: ResultsFile,
        notes: dict[str, Any],
        *,
        chain_id: int,
        auto_withdraw: bool = True,
        label: str | None = None,
        salts: SaltStore | None = None,
        meter: MeterReadings | None = None,
    ) -> None:
        self.dr = dr
        self.salts = salts
        self.meter = meter
        self._terms: dict[tuple[int, Status], TermsInfo] = {}
        self._said: set[tuple[int, str]] = set()
        self.signer = signer
        self.bids = bids
        self.results = results
        self.notes = notes.setdefault("requests", {})
        self.chain_id = chain_id
        self.auto_withdraw = auto_withdraw
        self.label = label or signer.label
        self.address = signer.address
        #: Called with the receipt of each of our bids (the service has the listener check
        #: that its block stays in the chain).
        self.watch_receipt: Callable[[Any], None] = lambda receipt: None

    def _say(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        log.log(level, f"{self.label}: {message}", *args)

    # -- events ---------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Handle one contract event."""
        rid = int(event.args["requestId"])
        if event.name == "ReductionRequested":
            self.notes.setdefault(str(rid), {})["requested_block"] = event.block_number
            self.handle_request(rid, event.args)
        elif event.name == "WinnersSelected":
            self.handle_settled(rid, event)
        elif event.name == "RequestCancelled" and str(rid) in self.notes:
            if self.notes[str(rid)].get("terms"):
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
        for rid in sorted((int(r) for r in self.notes), reverse=True)[:16]:
            if self.results.find(self.chain_id, self.dr.address, rid, self.address) is None:
                self.handle_request(rid)

    # -- bidding ----------------------------------------------------------------------------

    def handle_request(self, rid: int, args: dict[str, Any] | None = None) -> None:
        """Bid on request ``rid`` if it is open, bidding has not closed and we have not bid.

        A fresh event (deadline still ahead) carries everything needed, so the fast path
        makes no extra calls; an old one is checked against the contract first.
        """
        now = int(time.time())
        if args is not None and int(args["biddingDeadline"]) > now:
            info = RequestInfo(
                rid, Status.OPEN, PricingRule(int(args["pricingRule"])), int(args["targetWatts"]),
                int(args["eventStart"]), int(args["eventEnd"]), int(args["biddingDeadline"]),
                int(args["maxPriceWeiPerKWh"]), int(args["maxPriceWeiPerKWh"]) // 128, int(args["budget"]),
                0, 0, 0, 0, 0, 0, 0,
            )
        else:
            try:
                info = self.dr.get_request(rid)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                self._say("request %d no longer exists on chain (reorganised away?)", rid, level=logging.WARNING)
                return
            if info.status == Status.SETTLED:
                self.handle_settled(rid)
                return
            if info.status != Status.OPEN:
                return
            now = max(now, int(self.dr.w3.eth.get_block("latest")["timestamp"]))
        self._say(
            "request %d heard: %.3f kW wanted, cap %s ETH/kWh, bidding closes in %d s",
            rid, info.target_watts / 1000, eth(info.max_price), info.bidding_deadline - now,
        )
        terms = self.terms_of(rid)
        if terms.sealed or terms.metered:
            self.notes.setdefault(str(rid), {})["terms"] = "sealed" if terms.sealed else "metered"
            participant = self.dr.participant_of(rid, self.address)
            entry = self.salts.get(self.address, rid) if self.salts is not None else None
            if participant.stage != Stage.NONE and not (entry is not None and entry.stage == COMMITTING
                                                        and participant.stage == Stage.COMMITTED):
                self._say("already %s on request %d; not bidding again", participant.stage.name.lower(), rid)
                return
            if entry is not None and entry.stage == COMMITTING and participant.stage == Stage.COMMITTED:
                if participant.commitment == entry.commitment:
                    entry.stage = COMMITTED
                    self.salts.put(entry)  # type: ignore[union-attr]
                    self._say("commitment for request %d is on chain; will reveal after the deadline", rid)
                    return
        requested_block = self.notes.get(str(rid), {}).get("requested_block", 0)
        mine = self.bids_logged(rid, requested_block)
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
        ready = prepare(offers, info.max_price)
        for offer, reason in ready.skipped:
            self._say("skipping bid %.3f kW at %s ETH/kWh: %s", offer.kw, eth(offer.price), reason,
                      level=logging.WARNING)
        if not ready.submit:
            self._say("no bids at or below the cap for request %d; not bidding", rid)
            return
        if terms.sealed or terms.metered:
            self._bid_with_terms(rid, terms, ready.submit)
            return
        txs = []
        for group in chunks(ready.submit):
            try:
                receipt = self.dr.submit_bids(self.signer, rid, [o.watts for o in group], [o.price for o in group],
                                              gas=bid_gas_limit(len(group)))
            except TransactionFailed as exc:
                self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)
                if exc.error == "NotEnrolled":
                    self._say("this contract needs enrolment: run `dr register` first", level=logging.ERROR)
                break
            txs.append(_short(receipt["transactionHash"]))
            self.watch_receipt(receipt)
        if not txs:
            return
        note = self.notes.setdefault(str(rid), {})
        note.update(bid_txs=txs, bid_at=int(time.time()),
                    offers=[[o.watts, o.price] for o in ready.submit], skipped=len(ready.skipped))
        self._say(
            "bid %d offer(s), %.3f kW, prices %s ETH/kWh, on request %d (tx %s)",
            len(ready.submit), sum(o.watts for o in ready.submit) / 1000,
            "/".join(eth(o.price) for o in ready.submit), rid, ", ".join(t[:12] + "…" for t in txs),
        )

    # -- sealed and metered requests --------------------------------------------------------

    def bids_logged(self, rid: int, from_block: int) -> list[int]:
        """Ids of our live bids on request ``rid`` (a fleet replaces this with one shared read)."""
        return self.dr.bid_ids_logged(rid, self.address, from_block=from_block)

    def terms_of(self, rid: int, status: Status = Status.OPEN) -> TermsInfo:
        """The request's terms, cached per status: a metered request's report and dispute
        deadlines move at selection if it came after the event."""
        if (rid, status) not in self._terms:
            self._terms[(rid, status)] = self.dr.terms_of(rid)
        return self._terms[(rid, status)]

    def _say_once(self, rid: int, key: str, message: str, *args: Any, level: int = logging.INFO) -> None:
        if (rid, key) not in self._said:
            self._said.add((rid, key))
            self._say(message, *args, level=level)

    def _bid_with_terms(self, rid: int, terms: TermsInfo, offers: Sequence[Offer]) -> None:
        """One submission per consumer: commit it (sealed) or place it (metered), bond included."""
        if len(offers) > 64:
            self._say("request %d takes one batch of at most 64 bids; dropping the %d dearest",
                      rid, len(offers) - 64, level=logging.WARNING)
            offers = sorted(offers, key=lambda o: o.price)[:64]
        watts, prices = [o.watts for o in offers], [o.price for o in offers]
        note = self.notes.setdefault(str(rid), {})
        try:
            if terms.sealed:
                if self.salts is None:
                    self._say("request %d takes sealed bids, and this daemon has no salt store; not bidding",
                              rid, level=logging.ERROR)
                    return
                from .market import commitment

                entry = self.salts.get(self.address, rid)
                if entry is None or entry.stage != COMMITTING:
                    salt = SaltStore.new_salt()
                    entry = SealedEntry(rid, self.address, watts, prices, salt,
                                        commitment(self.chain_id, self.dr.address, rid, self.address, watts, prices,
                                                   salt))
                self.salts.put(entry)  # the salt is on disk before the commitment leaves
                receipt = self.dr.commit_bids(self.signer, rid, entry.commitment, bond=terms.bond_wei)
                entry.stage, entry.commit_tx = COMMITTED, _short(receipt["transactionHash"])
                self.salts.put(entry)
                self.watch_receipt(receipt)
                note.update(bid_txs=[entry.commit_tx], bid_at=int(time.time()),
                            offers=[[w, p] for w, p in zip(entry.watts, entry.prices)])
                self._say("committed %d sealed bid(s), %.3f kW, on request %d%s (tx %s…); reveal after the deadline",
                          len(entry.watts), sum(entry.watts) / 1000, rid,
                          f", bond {eth(terms.bond_wei)} ETH" if terms.bond_wei else "", entry.commit_tx[:12])
                return
            if terms.bond_wei:
                self.watch_receipt(self.dr.post_bond(self.signer, rid, terms.bond_wei))
                self._say("posted bond %s ETH on request %d", eth(terms.bond_wei), rid)
            receipt = self.dr.submit_bids(self.signer, rid, watts, prices)
        except TransactionFailed as exc:
            self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)
            return
        self.watch_receipt(receipt)
        note.update(bid_txs=[_short(receipt["transactionHash"])], bid_at=int(time.time()),
                    offers=[[w, p] for w, p in zip(watts, prices)])
        self._say("bid %d offer(s), %.3f kW, on metered request %d (tx %s…); paid on measured delivery",
                  len(watts), sum(watts) / 1000, rid, note["bid_txs"][0][:12])

    def has_pending_terms(self) -> bool:
        """True while a sealed reveal or a metered settlement of ours is outstanding."""
        if self.salts is not None and any(e.stage in (COMMITTING, COMMITTED) for e in self.salts.pending(self.address)):
            return True
        return any(n.get("terms") and not n.get("done") for n in self.notes.values())

    def _chain_now(self, act_after: int | None = None) -> int:
        """Chain time; on an idle dev chain, mine a block when wall time has passed ``act_after``."""
        latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        if act_after is not None and latest <= act_after < time.time():
            from .config import DEV_CHAIN_IDS

            if self.chain_id in DEV_CHAIN_IDS:
                self.dr.w3.provider.make_request("evm_mine", [])
                latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        return latest

    def tick(self) -> None:
        """Reveal sealed bids in their window; report, settle and record metered requests."""
        if self.salts is not None:
            for entry in self.salts.pending(self.address):
                if entry.stage == COMMITTED:
                    self._maybe_reveal(entry)
        for key, note in list(self.notes.items()):
            if note.get("terms") and not note.get("done") and note.get("bid_txs"):
                self.check_terms(int(key))

    def _gone(self, rid: int, exc: Exception) -> bool:
        """True (after one warning) when ``rid`` no longer exists, e.g. a dev chain was reset."""
        if is_connection_error(exc) or "UnknownRequest" not in f"{type(exc).__name__} {exc} {_revert_name(exc)}":
            return False
        self._say_once(rid, "gone", "request %d no longer exists on chain (reset or reorganised away); "
                       "forgetting it", rid, level=logging.WARNING)
        return True

    def _maybe_reveal(self, entry: SealedEntry) -> None:
        rid = entry.request_id
        try:
            info = self.dr.get_request(rid)
        except Exception as exc:
            if not self._gone(rid, exc):
                raise
            entry.stage = "gone"
            self.salts.put(entry)  # type: ignore[union-attr]
            return
        terms = self.terms_of(rid)
        if info.status == Status.CANCELLED:
            entry.stage = REVEALED  # nothing to reveal into; check_terms returns the bond
            self.salts.put(entry)  # type: ignore[union-attr]
            return
        now = self._chain_now(act_after=info.bidding_deadline)
        if now <= info.bidding_deadline:
            return
        stage = self.dr.participant_of(rid, self.address).stage
        if stage != Stage.COMMITTED:
            entry.stage = REVEALED  # revealed before a restart
            self.salts.put(entry)  # type: ignore[union-attr]
            return
        if now > terms.reveal_deadline:
            self._say_once(rid, "missed", "missed the reveal window of request %d: the sealed bids do not count%s",
                           rid, " and the bond is forfeited" if terms.bond_wei else "", level=logging.ERROR)
            return
        try:
            receipt = self.dr.reveal_bids(self.signer, rid, entry.watts, entry.prices, entry.salt)
        except TransactionFailed as exc:
            self._say_once(rid, "reveal", "reveal on request %d refused: %s", rid, exc, level=logging.ERROR)
            return
        entry.stage, entry.reveal_tx = REVEALED, _short(receipt["transactionHash"])
        self.salts.put(entry)  # type: ignore[union-attr]
        self.watch_receipt(receipt)
        self._say("revealed %d bid(s) on request %d (tx %s…)", len(entry.watts), rid, entry.reveal_tx[:12])

    def check_terms(self, rid: int) -> None:
        """Drive a metered (or cancelled bonded) request of ours to its end and record it."""
        note = self.notes.setdefault(str(rid), {})
        if note.get("done") or self.results.find(self.chain_id, self.dr.address, rid, self.address):
            note["done"] = True
            return
        try:
            info = self.dr.get_request(rid)
        except Exception as exc:
            if not self._gone(rid, exc):
                raise
            note["done"] = True
            return
        terms = self.terms_of(rid, info.status)
        me = self.dr.participant_of(rid, self.address)
        if info.status == Status.CANCELLED:
            if me.bond and me.stage != Stage.SETTLED:
                self.dr.settle_delivery(self.signer, rid, self.address)
                self._say("request %d was cancelled; bond returned", rid)
            self._record_cancelled(rid)
            self._withdraw_owed()
            note["done"] = True
            return
        if info.status != Status.SETTLED:
            return
        if not terms.metered:
            note["done"] = True  # sealed only: outcomes are claimed as for open bids
            self.handle_settled(rid)
            return
        if me.stage == Stage.SETTLED:
            self._record_delivery(rid, info, terms, me)
            note["done"] = True
            return
        if me.stage not in (Stage.BID, Stage.REPORTED, Stage.BONDED):
            self._say_once(rid, "out", "request %d settled without our bids (%s)", rid, me.stage.name.lower())
            self._record_delivery(rid, info, terms, me)
            note["done"] = True
            return
        if me.accepted_watts == 0:
            if me.bond:
                self.dr.settle_delivery(self.signer, rid, self.address)  # bond back at once
            else:
                self._record_delivery(rid, info, terms, me)
                note["done"] = True
            return
        self._say_once(rid, "won", "request %d: %.3f kW accepted, %s ETH promised; paid on measured delivery after %s",
                       rid, me.accepted_watts / 1000, eth(me.promised_payout),
                       time.strftime("%H:%M:%S", time.localtime(info.event_end)))
        if me.stage == Stage.BID:
            now = self._chain_now(act_after=info.event_end - 1)
            if now < info.event_end:
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
                self.watch_receipt(self.dr.report_delivery(self.signer, rid, reading))
                self._say("reported %.3f kW delivered on request %d (%.3f kW accepted)", reading / 1000, rid,
                          me.accepted_watts / 1000)
                return
            self._say_once(rid, "late", "no meter report for request %d before its deadline: nothing is paid", rid,
                           level=logging.ERROR)
            self.dr.settle_delivery(self.signer, rid, self.address)
            return
        # Reported: the utility confirms or disputes; after the dispute deadline anyone settles.
        now = self._chain_now(act_after=terms.dispute_deadline)
        if now > terms.dispute_deadline:
            self.dr.settle_delivery(self.signer, rid, self.address)

    def _withdraw_owed(self) -> tuple[str | None, int]:
        if not self.auto_withdraw:
            return None, 0
        owed = self.dr.owed(self.address)
        if not owed:
            return None, 0
        receipt = self.dr.withdraw(self.signer)
        tx = _short(receipt["transactionHash"])
        self._say("withdrew %s ETH (tx %s…)", eth(owed), tx[:12])
        return tx, owed

    def _record_delivery(self, rid: int, info: RequestInfo, terms: TermsInfo, me: Any) -> None:
        """Record a metered request: promised against delivered against paid."""
        from .market import had_notice, settle_delivery

        from .market import DeliverySettlement

        delivered = me.delivered_watts
        if me.stage == Stage.SETTLED:
            s = settle_delivery(me.accepted_watts, me.promised_payout, delivered, terms.bond_wei,
                                selected_late=not had_notice(terms.selected_at, info.event_start, terms.notice_period))
        else:  # never revealed (any bond forfeited at selection), or nothing to settle
            s = DeliverySettlement(me.accepted_watts, delivered, 0, terms.bond_wei if me.stage == Stage.COMMITTED else 0,
                                   0, me.promised_payout)
        withdraw_tx, withdrawn = self._withdraw_owed()
        mine = self.dr.bids_of(rid, self.address) if me.has_bids else []
        note = self.notes.get(str(rid), {})
        record = {
            "chain_id": self.chain_id, "contract": self.dr.address, "request_id": rid, "account": self.address,
            "label": self.label, "status": "won" if me.accepted_watts else "lost",
            "rule": info.rule.name.lower(), "terms": "sealed+metered" if terms.sealed else "metered",
            "target_kw": info.target_watts / 1000,
            "bids": [{"bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": b.price,
                      "cancelled": b.cancelled, "accepted_watts": b.accepted_watts} for b in mine],
            "offered_kw": sum(b.watts for b in mine if not b.cancelled) / 1000,
            "accepted_watts": me.accepted_watts, "accepted_kw": me.accepted_watts / 1000,
            "clearing_price_wei_per_kwh": info.clearing_price,
            "event_start": info.event_start, "event_end": info.event_end,
            "promised_payout_wei": me.promised_payout, "delivered_watts": delivered,
            "penalty_wei": s.penalty, "bond_returned_wei": s.bond_returned, "paid_wei": s.payout,
            "payout_wei": s.payout, "payout_eth": s.payout / 10**18,
            "bid_txs": note.get("bid_txs", []), "claim_tx": None,
            "withdraw_tx": withdraw_tx, "withdrawn_wei": withdrawn,
            "bid_at": note.get("bid_at"), "recorded_at": int(time.time()),
        }
        if self.results.append(record):
            self._say("request %d: delivered %.3f of %.3f kW, paid %s of %s ETH promised%s; recorded", rid,
                      delivered / 1000, me.accepted_watts / 1000, eth(s.payout), eth(me.promised_payout),
                      f", penalty {eth(s.penalty)} ETH" if s.penalty else "")

    # -- outcomes ---------------------------------------------------------------------------

    def handle_settled(self, rid: int, event: Event | None = None) -> None:
        """Claim, withdraw and record the outcome of a settled request we bid in."""
        if self.results.find(self.chain_id, self.dr.address, rid, self.address):
            return
        info = self.dr.get_request(rid)
        if info.status != Status.SETTLED:
            return
        if self.terms_of(rid).metered:
            self.check_terms(rid)  # paid on delivery, not by claim
            return
        mine = self.dr.bids_of(rid, self.address)
        if not mine:
            return
        accepted = sum(b.accepted_watts for b in mine)
        payout = sum(b.payout for b in mine)
        self._say(
            "request %d settled at %s ETH/kWh: won %.3f kW of %.3f kW offered, payout %s ETH",
            rid, eth(info.clearing_price), accepted / 1000, sum(b.watts for b in mine if not b.cancelled) / 1000,
            eth(payout),
        )
        claim_tx = None
        to_claim = [b.bid_id for b in mine if b.accepted_watts and not b.claimed]
        if to_claim:
            receipt = self.dr.claim(self.signer, rid, to_claim)
            claim_tx = _short(receipt["transactionHash"])
            self._say("claimed %d winning bid(s) on request %d (tx %s…)", len(to_claim), rid, claim_tx[:12])
        withdraw_tx, withdrawn = None, 0
        if self.auto_withdraw:
            owed = self.dr.owed(self.address)
            if owed:
                receipt = self.dr.withdraw(self.signer)
                withdraw_tx, withdrawn = _short(receipt["transactionHash"]), owed
                self._say("withdrew %s ETH (tx %s…)", eth(owed), withdraw_tx[:12])
        note = self.notes.get(str(rid), {})
        settled_at = None
        if event is not None:
            settled_at = int(self.dr.w3.eth.get_block(event.block_number)["timestamp"])
        record = {
            "chain_id": self.chain_id,
            "contract": self.dr.address,
            "request_id": rid,
            "account": self.address,
            "label": self.label,
            "status": "won" if accepted else "lost",
            "rule": info.rule.name.lower(),
            "target_kw": info.target_watts / 1000,
            "bids": [{"bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": b.price,
                      "cancelled": b.cancelled, "accepted_watts": b.accepted_watts} for b in mine],
            "offered_kw": sum(b.watts for b in mine if not b.cancelled) / 1000,
            "accepted_watts": accepted,
            "accepted_kw": accepted / 1000,
            "clearing_price_wei_per_kwh": info.clearing_price,
            "event_start": info.event_start,
            "event_end": info.event_end,
            "payout_wei": payout,
            "payout_eth": payout / 10**18,
            "bid_txs": note.get("bid_txs", []),
            "claim_tx": claim_tx,
            "withdraw_tx": withdraw_tx,
            "withdrawn_wei": withdrawn,
            "bid_at": note.get("bid_at"),
            "settled_at": settled_at,
            "recorded_at": int(time.time()),
        }
        if self.results.append(record):
            self._say("recorded request %d in %s", rid, self.results.path)

    def _record_cancelled(self, rid: int) -> None:
        if self.results.find(self.chain_id, self.dr.address, rid, self.address):
            return
        self.results.append({
            "chain_id": self.chain_id, "contract": self.dr.address, "request_id": rid,
            "account": self.address, "label": self.label, "status": "cancelled",
            "accepted_watts": 0, "accepted_kw": 0.0, "payout_wei": 0, "payout_eth": 0.0,
            "bid_txs": self.notes.get(str(rid), {}).get("bid_txs", []), "recorded_at": int(time.time()),
        })
        self._say("request %d was cancelled by the utility; recorded", rid)


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
    ) -> None:
        self.dr = dr
        self.state = StateFile(state_path)
        #: Salts of sealed bids, next to the cursor file (mode 600).
        self.salts = SaltStore(Path(state_path).with_name(Path(state_path).name.replace(".cursor-", ".salts-", 1)))
        self.meter = MeterReadings(meter_file or Path(results.path).with_name("meter.json"))
        self._next_terms_check = 0.0
        self.poll_interval = poll_interval
        self.rpc_name = rpc_name
        notes = self.state.data.setdefault("agents", {})
        self.agents = [
            ConsumerAgent(dr, s.signer, s.bids, results, notes.setdefault(s.signer.address, {}),
                          chain_id=chain_id, auto_withdraw=auto_withdraw, label=s.label,
                          salts=self.salts, meter=self.meter)
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
        """Between polls: at most once a second, move sealed and metered requests on."""
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

    def run(self, stop: threading.Event) -> None:
        """Listen and act until ``stop`` is set."""
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
    """The cursor/notes file of a consumer (or fleet) on one contract."""
    return Path(state_dir) / f".cursor-{kind}-{chain_id}-{contract[2:10].lower()}-{account[2:10].lower()}.json"
