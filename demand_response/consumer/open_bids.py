"""The open protocol: bids placed in the clear (in batches of at most 64), and the outcome
recorded once the request is settled. The utility pays winners directly (``claimAndPay``),
so the bid is a household's only transaction; a winner the utility has not paid within
``PAY_GRACE_S`` of selection claims and withdraws for itself."""

from __future__ import annotations

import logging
import time
from typing import Sequence

from ..bids import Offer, chunks
from ..contract import BidInfo, RequestInfo, Status, bid_gas_limit
from ..errors import TransactionFailed
from ..payments import tx_hex
from ..units import ETH, Currency, format_amount, format_price, plain
from .relayed import RelayedBidding

#: Seconds after selection a winner waits for the utility's ``claimAndPay`` before it claims.
PAY_GRACE_S = 10
#: Seconds between looks at whether the utility has paid us.
_PAY_POLL_S = 1.0


class OpenBidding(RelayedBidding):
    """Open bids and their claims."""

    def _bid_open(self, rid: int, offers: Sequence[Offer], skipped: int, cur: Currency = ETH,
                  deadline: int | None = None) -> None:
        """Place ``offers`` on open request ``rid``: through the utility's relay with
        ``RELAY_URL`` (``relayed``; ``deadline``: when bidding closes), else in our own
        ``submitBids`` transactions."""
        if self.relay_url and deadline is not None and self._bid_relayed(rid, offers, skipped, cur, deadline):
            return
        self._bid_own(rid, offers, skipped, cur)

    def _bid_own(self, rid: int, offers: Sequence[Offer], skipped: int, cur: Currency = ETH) -> None:
        """``offers`` in our own ``submitBids`` transactions (batches of at most 64)."""
        txs = []
        for group in chunks(offers):
            try:
                receipt = self._sent(rid, self.dr.submit_bids, self.signer, rid, [o.watts for o in group],
                                     [o.price for o in group], gas=bid_gas_limit(len(group)))
            except TransactionFailed as exc:
                self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)
                if exc.error == "NotEnrolled":
                    self._say("this contract needs enrolment: run `dr register` first", level=logging.ERROR)
                break
            txs.append(tx_hex(receipt["transactionHash"]))
            self.watch_receipt(receipt)
        if not txs:
            return
        note = self.notes.note(rid)
        note.bid_txs, note.bid_at = txs, int(time.time())
        note.offers, note.skipped = [[o.watts, o.price] for o in offers], skipped
        self._say(
            "bid %d offer(s), %.3f kW, prices %s %s/kWh, on request %d (tx %s)",
            len(offers), sum(o.watts for o in offers) / 1000,
            "/".join(plain(o.price, cur) for o in offers), cur.symbol, rid, ", ".join(t[:12] + "…" for t in txs),
        )

    def _await_payment(self, rid: int, mine: list[BidInfo], settled_at: int | None) -> list[BidInfo]:
        """Our bids once the utility has paid every winning one, or as they stand when
        ``PAY_GRACE_S`` after selection (``settled_at``, chain time) has passed."""
        now = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        wait_until = time.monotonic() + max(0, (settled_at if settled_at is not None else now) + PAY_GRACE_S - now)
        stop = self.signer.cancel
        while time.monotonic() < wait_until:
            if stop is None:
                time.sleep(_PAY_POLL_S)
            elif stop.wait(_PAY_POLL_S):
                break  # the daemon is stopping: claim now rather than leave the payout behind
            mine = self.dr.bids_of(rid, self.address)
            if not any(b.accepted_watts and not b.claimed for b in mine):
                break
        return mine

    def _still_settled(self, rid: int) -> bool:
        """False (with a line) when a reorganisation took ``rid``'s selection away after we heard
        it: our bids then read as not accepted, and recording them would say we lost. The
        selection made again brings its own WinnersSelected."""
        if self.dr.get_request(rid).status == Status.SETTLED:
            return True
        self._say("request %d: its selection was reorganised away; waiting for it to be made again", rid)
        return False

    def _claim_and_record(self, rid: int, info: RequestInfo, block_number: int | None) -> None:
        """Record the outcome of settled request ``rid``: paid by the utility, or (after
        ``PAY_GRACE_S``) claimed by us; anything owed to us is withdrawn."""
        mine = self.dr.bids_of(rid, self.address)
        if not mine or not self._still_settled(rid):
            return
        accepted = sum(b.accepted_watts for b in mine)
        payout = sum(b.payout for b in mine)
        cur = self.currency_for(info)
        self._say(
            "request %d settled at %s: won %.3f kW of %.3f kW offered, payout %s",
            rid, format_price(info.clearing_price, cur), accepted / 1000,
            sum(b.watts for b in mine if not b.cancelled) / 1000, format_amount(payout, cur),
        )
        self._award(rid, accepted, info.event_start, info.event_end)
        settled_at = None
        if block_number is not None:
            settled_at = int(self.dr.w3.eth.get_block(block_number)["timestamp"])
        if any(b.accepted_watts and not b.claimed for b in mine):
            mine = self._await_payment(rid, mine, settled_at)
            if not self._still_settled(rid):
                return
        claim_tx = None
        to_claim = [b.bid_id for b in mine if b.accepted_watts and not b.claimed]
        if to_claim:
            receipt = self._sent(rid, self.dr.claim, self.signer, rid, to_claim)
            claim_tx = tx_hex(receipt["transactionHash"])
            self._say("not paid by the utility within %d s: claimed %d winning bid(s) on request %d (tx %s…)",
                      PAY_GRACE_S, len(to_claim), rid, claim_tx[:12])
        pushed = self.dr.payments_sent_to(rid, self.address, block_number or 0) if accepted else []
        paid_wei = sum(wei for _, wei in pushed)
        if pushed:
            self._say("request %d: paid %s directly by claimAndPay (tx %s…)", rid, format_amount(paid_wei, cur),
                      pushed[0][0][:12])
        withdraw_tx, withdrawn = self._withdraw_owed(rid, info.token if info.in_token else None)
        if self._record(rid, "won" if accepted else "lost", info=info, bids=mine, accepted_watts=accepted,
                        payout_wei=payout, claim_tx=claim_tx, withdraw_tx=withdraw_tx, withdrawn_wei=withdrawn,
                        paid_txs=sorted({tx for tx, _ in pushed}), settled_at=settled_at):
            self._say("recorded request %d in %s", rid, self.results.path)
