"""The open protocol: bids placed in the clear (in batches of at most 64), and winnings
claimed, withdrawn and recorded once the request is settled."""

from __future__ import annotations

import logging
import time
from typing import Sequence

from ..bids import Offer, chunks
from ..contract import RequestInfo, bid_gas_limit
from ..errors import TransactionFailed
from ..payments import tx_hex
from ..units import eth
from .core import AgentCore


class OpenBidding(AgentCore):
    """Open bids and their claims."""

    def _bid_open(self, rid: int, offers: Sequence[Offer], skipped: int) -> None:
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
            "bid %d offer(s), %.3f kW, prices %s ETH/kWh, on request %d (tx %s)",
            len(offers), sum(o.watts for o in offers) / 1000,
            "/".join(eth(o.price) for o in offers), rid, ", ".join(t[:12] + "…" for t in txs),
        )

    def _claim_and_record(self, rid: int, info: RequestInfo, block_number: int | None) -> None:
        """Claim our winning bids of settled request ``rid``, withdraw and record the outcome."""
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
        self._award(rid, accepted, info.event_start, info.event_end)
        claim_tx = None
        to_claim = [b.bid_id for b in mine if b.accepted_watts and not b.claimed]
        if to_claim:
            receipt = self._sent(rid, self.dr.claim, self.signer, rid, to_claim)
            claim_tx = tx_hex(receipt["transactionHash"])
            self._say("claimed %d winning bid(s) on request %d (tx %s…)", len(to_claim), rid, claim_tx[:12])
        withdraw_tx, withdrawn = self._withdraw_owed(rid)
        settled_at = None
        if block_number is not None:
            settled_at = int(self.dr.w3.eth.get_block(block_number)["timestamp"])
        if self._record(rid, "won" if accepted else "lost", info=info, bids=mine, accepted_watts=accepted,
                        payout_wei=payout, claim_tx=claim_tx, withdraw_tx=withdraw_tx, withdrawn_wei=withdrawn,
                        settled_at=settled_at):
            self._say("recorded request %d in %s", rid, self.results.path)
