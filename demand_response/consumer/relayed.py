"""Open bids through the utility's relay (``RELAY_URL``): the household signs its bids
(EIP-712, ``relay.sign_bids``) and POSTs them to the utility daemon's relay, which places
them in a batch and pays the gas, so the household sends no transaction. If they are not on
chain ``RELAY_FALLBACK_SECONDS`` before bidding closes, or the relay refuses them or cannot be
reached, the household submits the same signed entry itself (``submitSignedBids``): the
contract takes one signed submission per bidder and request, so whichever lands first counts
and the other is skipped, never a double bid."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

from .. import metrics
from ..bids import Offer
from ..errors import ConfigError, TransactionFailed
from ..payments import tx_hex
from ..units import Currency, plain
from .core import AgentCore

#: Seconds before bidding closes at which a household whose relayed bids are not on chain
#: submits them itself (``RELAY_FALLBACK_SECONDS``).
DEFAULT_RELAY_FALLBACK_S = 20.0
#: Seconds to wait for the relay's answer.
RELAY_TIMEOUT_S = 5.0
#: The relay's path (``relayer.RELAY_PATH``; repeated here so the consumer's light install
#: does not import the utility's server).
RELAY_PATH = "/relay/bids"


def relay_fallback_seconds(value: str | None) -> float:
    """``RELAY_FALLBACK_SECONDS`` as a number of seconds (default 20); ``ConfigError`` otherwise."""
    if value in (None, ""):
        return DEFAULT_RELAY_FALLBACK_S
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"RELAY_FALLBACK_SECONDS={value!r} is not a number of seconds (e.g. 20); fix it "
                          "in .env or the environment")
    return seconds


def post_entry(relay_url: str, entry: dict[str, Any], timeout: float = RELAY_TIMEOUT_S) -> tuple[bool, str]:
    """POST one signed entry to the relay: (True, "") when it is queued (202), else (False,
    why) with the relay's own one-line error or what kept us from reaching it."""
    url = relay_url.rstrip("/") + (RELAY_PATH if not relay_url.rstrip("/").endswith(RELAY_PATH) else "")
    data = json.dumps(entry).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status == 202, "" if answer.status == 202 else f"answered HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        try:
            why = str(json.loads(exc.read().decode("utf-8")).get("error"))
        except Exception:
            why = exc.reason
        return False, f"refused them (HTTP {exc.code}): {why}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"cannot be reached at {url} ({reason})"


class RelayedBidding(AgentCore):
    """Open bids signed and sent to the utility's relay, with our own submission as fallback."""

    def _bid_relayed(self, rid: int, offers: Sequence[Offer], skipped: int, cur: Currency, deadline: int,
                     metered: bool = False) -> bool:
        """Sign ``offers`` and hand them to the relay (or, if it will not take them, submit
        them ourselves); False when we cannot sign (no local key): then we bid the usual way
        (for a ``metered`` request, done here)."""
        local = self._signing_key()
        if local is None:
            self._say_once(rid, "relay-key", "RELAY_URL is set, but signing bids needs the account's key "
                           "(CONSUMER_PRIVATE_KEY or a keystore account); bidding with our own transaction",
                           level=logging.WARNING)
            if metered:
                self._bid_with_terms(rid, self.terms_of(rid), offers)
                return True
            return False
        from ..relay import sign_bids

        offers = self._one_submission(rid, offers)
        watts, prices = [o.watts for o in offers], [o.price for o in offers]
        signed = sign_bids(local, self.dr.address, self.chain_id, rid, self.address, watts, prices)
        note = self.notes.note(rid)
        note.offers, note.skipped = [[o.watts, o.price] for o in offers], skipped
        note.relay = {"deadline": int(deadline), "signature": signed["signature"]}
        note.bid_at = int(time.time())
        queued, why = post_entry(self.relay_url, self._entry_json(rid, note))
        described = (f"{len(offers)} offer(s), {sum(watts) / 1000:.3f} kW, prices "
                     f"{'/'.join(plain(p, cur) for p in prices)} {cur.symbol}/kWh")
        if queued:
            self._say("signed %s for request %d and sent them to the relay (it pays the gas; our own "
                      "submission if they are not on chain %g s before bidding closes)", described, rid,
                      self.relay_fallback_s)
            return True
        self._submit_own(rid, note, f"the relay {why}")
        return True

    def _entry_json(self, rid: int, note: Any) -> dict[str, Any]:
        return {"requestId": rid, "bidder": self.address, "watts": [o[0] for o in note.offers],
                "pricesPerKWh": [o[1] for o in note.offers], "signature": note.relay["signature"]}

    def _relay_pending(self) -> bool:
        return any(n.relay for _, n in self.notes.items())

    def _relay_due(self) -> None:
        """Every relayed entry not yet seen on chain: found (the relay placed it), our own
        submission due (``relay_fallback_s`` before the deadline), or bidding closed."""
        for rid, note in self.notes.items():
            if not note.relay:
                continue
            placed = self._placed_by(rid, note)
            if placed is not None:
                self._landed(rid, note, placed)
                continue
            deadline = int(note.relay["deadline"])
            now = max(self._chain_now(), int(time.time()))
            if now > deadline:
                note.relay = None
                self._say("request %d: bidding closed and our relayed bids never reached the chain; not bid",
                          rid, level=logging.WARNING)
            elif now >= deadline - self.relay_fallback_s:
                self._submit_own(rid, note, f"they are not on chain {max(0, deadline - now)} s before bidding "
                                            "closes")

    def _placed_by(self, rid: int, note: Any) -> str | None:
        """The transaction that placed our bids on ``rid`` (a ``BidsSubmitted`` of ours), or None."""
        logs = self.dr.contract.events.BidsSubmitted().get_logs(
            argument_filters={"requestId": rid, "bidder": self.address}, from_block=note.requested_block or 0)
        return tx_hex(logs[0]["transactionHash"]) if logs else None

    def _landed(self, rid: int, note: Any, tx: str) -> None:
        """Our signed bids are on chain in ``tx``: relayed unless it is our own transaction."""
        note.relay = None
        note.bid_txs = [tx]
        note.relayed = tx not in note.spent
        offers = note.offers
        metrics.reacted(rid, self.address)  # heard → our bids on chain, whoever sent them
        if note.relayed:
            self._say("bid %d offer(s), %.3f kW, on request %d, placed by the utility's relay (tx %s…): we sent "
                      "no transaction", len(offers), sum(o[0] for o in offers) / 1000, rid, tx[:12])
        else:
            self._say("bid %d offer(s), %.3f kW, on request %d with our own signed submission (tx %s…)",
                      len(offers), sum(o[0] for o in offers) / 1000, rid, tx[:12])

    def _submit_own(self, rid: int, note: Any, why: str) -> None:
        """Submit our signed entry ourselves (``submitSignedBids``), saying ``why``; if the
        relay's batch landed first the contract skips ours, and the relay's counts."""
        self._say("request %d: %s; submitting our signed bids ourselves", rid, why, level=logging.WARNING)
        entry = self._entry_json(rid, note)
        try:
            receipt = self._sent(rid, self.dr.submit_signed_bids, self.signer, rid, [entry])
        except TransactionFailed as exc:
            note.relay = None
            self._say("bid on request %d refused: %s", rid, exc, level=logging.ERROR)
            return
        self.watch_receipt(receipt)
        placed = self._placed_by(rid, note)
        if placed is None:
            note.relay = None
            self._say("request %d: our signed bids were not placed (the contract skipped them)", rid,
                      level=logging.ERROR)
            return
        self._landed(rid, note, placed)
