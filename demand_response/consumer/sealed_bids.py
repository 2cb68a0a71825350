"""The sealed protocol: a commitment while bidding is open (its salt on disk first), the
reveal once bidding has closed and before the reveal deadline."""

from __future__ import annotations

import logging
import time
from typing import Sequence

from ..contract import ParticipantInfo, Stage, Status, TermsInfo
from ..errors import TransactionFailed
from ..market import commitment
from ..payments import tx_hex
from ..sealed import COMMITTED, COMMITTING, REVEALED, SaltStore, SealedEntry
from ..units import eth
from .core import AgentCore


class SealedBidding(AgentCore):
    """Commit and reveal sealed bids."""

    def _commit_in_flight(self, rid: int, participant: ParticipantInfo) -> bool:
        """True when a commitment of ours was being sent before a restart (salt on disk as
        ``committing``) and the contract shows one committed."""
        entry = self.salts.get(self.address, rid) if self.salts is not None else None
        return entry is not None and entry.stage == COMMITTING and participant.stage == Stage.COMMITTED

    def _resume_commitment(self, rid: int, participant: ParticipantInfo) -> bool:
        """A commitment in flight (``_commit_in_flight``) that is ours on chain: mark it
        committed (it is revealed later); True when that was the case."""
        entry = self.salts.get(self.address, rid)  # type: ignore[union-attr]
        if entry is None or participant.commitment != entry.commitment:
            return False
        entry.stage = COMMITTED
        self.salts.put(entry)  # type: ignore[union-attr]
        self._say("commitment for request %d is on chain; will reveal after the deadline", rid)
        return True

    def _commit_sealed(self, rid: int, terms: TermsInfo, watts: Sequence[int], prices: Sequence[int]) -> None:
        if self.salts is None:
            self._say("request %d takes sealed bids, and this daemon has no salt store; not bidding",
                      rid, level=logging.ERROR)
            return
        entry = self.salts.get(self.address, rid)
        if entry is None or entry.stage != COMMITTING:
            salt = SaltStore.new_salt()
            entry = SealedEntry(rid, self.address, list(watts), list(prices), salt,
                                commitment(self.chain_id, self.dr.address, rid, self.address, list(watts),
                                           list(prices), salt))
        self.salts.put(entry)  # the salt is on disk before the commitment leaves
        receipt = self._sent(rid, self.dr.commit_bids, self.signer, rid, entry.commitment, bond=terms.bond_wei)
        entry.stage, entry.commit_tx = COMMITTED, tx_hex(receipt["transactionHash"])
        self.salts.put(entry)
        self.watch_receipt(receipt)
        note = self.notes.note(rid)
        note.bid_txs, note.bid_at = [entry.commit_tx], int(time.time())
        note.offers = [[w, p] for w, p in zip(entry.watts, entry.prices)]
        self._say("committed %d sealed bid(s), %.3f kW, on request %d%s (tx %s…); reveal after the deadline",
                  len(entry.watts), sum(entry.watts) / 1000, rid,
                  f", bond {eth(terms.bond_wei)} ETH" if terms.bond_wei else "", entry.commit_tx[:12])

    def _has_pending_salts(self) -> bool:
        return self.salts is not None and any(e.stage in (COMMITTING, COMMITTED)
                                              for e in self.salts.pending(self.address))

    def _reveal_due(self) -> None:
        """Reveal every committed entry of ours whose bidding has closed."""
        if self.salts is not None:
            for entry in self.salts.pending(self.address):
                if entry.stage == COMMITTED:
                    self._maybe_reveal(entry)

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
            receipt = self._sent(rid, self.dr.reveal_bids, self.signer, rid, entry.watts, entry.prices, entry.salt)
        except TransactionFailed as exc:
            self._say_once(rid, "reveal", "reveal on request %d refused: %s", rid, exc, level=logging.ERROR)
            return
        entry.stage, entry.reveal_tx = REVEALED, tx_hex(receipt["transactionHash"])
        self.salts.put(entry)  # type: ignore[union-attr]
        self.watch_receipt(receipt)
        self._say("revealed %d bid(s) on request %d (tx %s…)", len(entry.watts), rid, entry.reveal_tx[:12])
