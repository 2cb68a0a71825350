"""What every protocol of a consumer agent shares: its identity, chain, notes and files,
log lines, cached terms, withdrawing, settling and recording."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Sequence

from ..chain import Signer
from ..config import DEV_CHAIN_IDS
from ..contract import DemandReduction, Status, TermsInfo
from ..errors import TransactionFailed, is_connection_error
from .. import fees
from ..bids import DEFAULT_BID_MARGIN, Offer
from ..fees import FeeError, FeeQuote, receipt_cost
from ..market import payout
from ..networks import FeeModel, by_chain_id
from ..payments import Withdrawal, settle_participant, tx_hex, withdraw_owed
from ..results import ResultsFile
from ..sealed import MeterReadings, SaltStore
from ..token import currency_of
from ..units import ETH, Currency, ReferenceRate, format_amount, format_kw, format_price
from .notes import AgentNotes
from .records import result_record
from .sources import BidsProvider

log = logging.getLogger("demand_response.consumer")

#: Seconds one fee quote serves every agent of a service (a fleet quotes once per request).
FEE_QUOTE_TTL = 2.0


class FeeQuotes:
    """Today's fees for a chain, read at most once per ``ttl`` seconds and shared by a
    service's agents. The fee model is the network profile's for a known chain id, else l1."""

    def __init__(self, w3: Any, chain_id: int, ttl: float = FEE_QUOTE_TTL) -> None:
        profile = by_chain_id(chain_id)
        self.w3 = w3
        self.model: FeeModel = profile.fee_model if profile is not None else FeeModel.L1
        #: The currency gas is paid in, which is also the one the contract pays in.
        self.native: Currency = profile.native if profile is not None else ETH
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, FeeQuote] | None = None

    def quote(self) -> FeeQuote:
        """The current quote (``fees.quote_fees``), cached for ``ttl`` seconds."""
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                self._cached = (time.monotonic(), fees.quote_fees(self.w3, self.model))
            return self._cached[1]


def participation_plan(sealed: bool = False, metered: bool = False, bond: bool = False,
                       report: bool = False) -> tuple[fees.Step, ...]:
    """The transactions one event needs from a household (``fees.PLANS``): open bids, sealed
    bids (commit, reveal, claim, withdraw), metered delivery (a bond if asked, bid; the
    utility meters and pays), or both (commit with bond, reveal). ``report``: the household
    reports its delivery itself as well (``REPORT_DELIVERY=always``)."""
    if sealed and not metered:
        return (fees.COMMIT, fees.REVEAL, fees.CLAIM, fees.WITHDRAW)
    if metered:
        steps = fees.PLANS[("sealed-metered" if sealed else "metered") + ("-self-report" if report else "")]
        return steps if bond or sealed else tuple(s for s in steps if s is not fees.POST_BOND)
    return fees.PLANS["open"]


class AgentCore:
    """One consumer account's state and the helpers its protocols (open, sealed, metered) use."""

    def __init__(
        self,
        dr: DemandReduction,
        signer: Signer,
        bids: BidsProvider,
        results: ResultsFile,
        notes: AgentNotes | dict[str, Any],
        *,
        chain_id: int,
        auto_withdraw: bool = True,
        label: str | None = None,
        salts: SaltStore | None = None,
        meter: MeterReadings | None = None,
        bid_margin: Decimal | float = DEFAULT_BID_MARGIN,
        fee_quotes: FeeQuotes | None = None,
        delivery: Any = None,
        reference: ReferenceRate | None = None,
        relay_url: str | None = None,
        relay_fallback_s: float = 20.0,
    ) -> None:
        from .delivery_check import DeliveryOptions

        #: ``RELAY_URL``: open bids are signed and sent to the utility's relay (``relayed``);
        #: ours go out ``relay_fallback_s`` before bidding closes if they are not on chain by then.
        self.relay_url = relay_url or None
        self.relay_fallback_s = float(relay_fallback_s)

        #: ``USD_PER_ETH`` (or ``EUR_PER_ETH``): the only bridge between gas in ETH and a payout in
        #: a stablecoin of that fiat money (for the fee check and a token record's net).
        self.reference = reference
        self.dr = dr
        #: Metered settlement: when to report, and the check of the utility's figure.
        self.delivery: DeliveryOptions = delivery if delivery is not None else DeliveryOptions()
        #: An offer must pay at least this many times what taking part costs (0: no check).
        self.bid_margin = Decimal(str(bid_margin))
        self.fee_quotes = fee_quotes if fee_quotes is not None else FeeQuotes(dr.w3, chain_id)
        self.salts = salts
        self.meter = meter
        self._terms: dict[tuple[int, Status], TermsInfo] = {}
        self._said: set[tuple[int, str]] = set()
        self.signer = signer
        self.bids = bids
        self.results = results
        #: This agent's own record in the state file (a plain dict: a detached one).
        self.notes = notes if isinstance(notes, AgentNotes) else AgentNotes.from_json(notes)
        self.chain_id = chain_id
        self.auto_withdraw = auto_withdraw
        self.label = label or signer.label
        self.address = signer.address
        #: The home's devices (``devices.Actuator``), set by the service when ``DEVICES_FILE``
        #: is: told of every award and every cancelled request.
        self.actuator: Any = None
        #: Called with the receipt of each of our bids (the service has the listener check
        #: that its block stays in the chain).
        self.watch_receipt: Callable[[Any], None] = lambda receipt: None

    # -- log lines -----------------------------------------------------------------------

    def _say(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        log.log(level, f"{self.label}: {message}", *args)

    def _say_once(self, rid: int, key: str, message: str, *args: Any, level: int = logging.INFO) -> None:
        if (rid, key) not in self._said:
            self._said.add((rid, key))
            self._say(message, *args, level=level)

    # -- chain reads -----------------------------------------------------------------------

    def bids_logged(self, rid: int, from_block: int) -> list[int]:
        """Ids of our live bids on request ``rid`` (a fleet replaces this with one shared read)."""
        return self.dr.bid_ids_logged(rid, self.address, from_block=from_block)

    def terms_of(self, rid: int, status: Status = Status.OPEN) -> TermsInfo:
        """The request's terms, cached per status: a metered request's report and dispute
        deadlines move at selection if it came after the event."""
        if (rid, status) not in self._terms:
            self._terms[(rid, status)] = self.dr.terms_of(rid)
        return self._terms[(rid, status)]

    def _chain_now(self, act_after: int | None = None) -> int:
        """Chain time; on an idle dev chain, mine a block when wall time has passed ``act_after``."""
        latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        if act_after is not None and latest <= act_after < time.time() and self.chain_id in DEV_CHAIN_IDS:
            self.dr.w3.provider.make_request("evm_mine", [])
            latest = int(self.dr.w3.eth.get_block("latest")["timestamp"])
        return latest

    def _gone(self, rid: int, exc: Exception) -> bool:
        """True (after one warning) when ``rid`` no longer exists, e.g. a dev chain was reset."""
        if is_connection_error(exc):
            return False
        name = exc.error if isinstance(exc, TransactionFailed) else _revert_name(exc)
        if "UnknownRequest" not in f"{type(exc).__name__} {exc} {name}":
            return False
        self._say_once(rid, "gone", "request %d no longer exists on chain (reset or reorganised away); "
                       "forgetting it", rid, level=logging.WARNING)
        return True

    # -- currency --------------------------------------------------------------------------------

    def currency_for(self, info: Any) -> Currency:
        """The currency request ``info`` settles in: ETH, or its token's (read once per token)."""
        return currency_of(self.dr.w3, info.token)

    def per_native(self, cur: Currency) -> Decimal | None:
        """Units of ``cur`` per unit of the chain's native currency, through the reference rate:
        ``USD_PER_ETH`` for a USD stablecoin (taken as worth one USD). None when ``cur`` is the
        native currency itself or no rate bridges the two."""
        native = self.fee_quotes.native
        rate = self.reference
        if cur == native or rate is None or rate.currency_symbol != native.symbol or cur.fiat != rate.fiat:
            return None
        return rate.per_unit

    # -- fees --------------------------------------------------------------------------------

    def _worth_bidding(self, rid: int, duration_s: int, terms: TermsInfo,
                       offers: Sequence[Offer], cur: Currency | None = None) -> tuple[list[Offer], int]:
        """The offers whose payout at their own ask (in ``cur``, the request's currency) covers
        ``bid_margin`` × the cost of taking part at today's fees, and how many were left out
        (each with one log line). Fees are paid in the native currency: for a payout in another
        one the reference rate converts them; without one the check is skipped, with one line."""
        if self.bid_margin == 0 or not offers:
            return list(offers), 0
        if self._relayable(terms) and self._signing_key() is not None \
                and not (terms.metered and self.delivery.report == "always"):
            # Relayed: the utility pays the gas, the household sends nothing (its own
            # submission is only the fallback), so there is no cost to cover.
            self._say_once(rid, "relay-fees", "request %d: bids go through the utility's relay, which pays the "
                           "gas: no fee check", rid)
            return list(offers), 0
        native = self.fee_quotes.native
        cur = cur or native
        per_native = self.per_native(cur)
        if cur != native and per_native is None:
            self._say_once(rid, "no-rate", "request %d pays in %s but gas is paid in %s: without %s_PER_%s the fee "
                           "check cannot compare them; bidding without it", rid, cur.symbol, native.symbol,
                           cur.fiat or cur.symbol, native.symbol, level=logging.WARNING)
            return list(offers), 0
        try:
            quote = self.fee_quotes.quote()
        except FeeError as exc:
            self._say("request %d: cannot read the fees (%s); bidding without the fee check", rid, exc,
                      level=logging.WARNING)
            return list(offers), 0
        plan = participation_plan(terms.sealed, terms.metered, bool(terms.bond_wei))
        cost = fees.participation_cost(plan, quote, native=native, settlement=cur, settlement_per_native=per_native)
        margin = max(self.bid_margin - 1, Decimal(0))
        keep: list[Offer] = []
        for offer in offers:
            decision = fees.worth_bidding(payout(offer.watts, duration_s, offer.price), cost.cost, margin, cur)
            if decision.bid:
                keep.append(offer)
            else:
                self._say("request %d: skipping %s at %s: %s", rid, format_kw(offer.watts),
                          format_price(offer.price, cur), decision.reason, level=logging.WARNING)
        if len(keep) < len(offers):
            self._say("request %d: taking part costs %s at %s (BID_MARGIN %s)", rid, cost.describe(native),
                      fees.format_gas_price(quote.gas_price), self.bid_margin)
        return keep, len(offers) - len(keep)

    def _signing_key(self) -> Any:
        """Our account's key, to sign bids for the relay; None for an account the node unlocks
        (``--account-index``, ``dr consumer fleet``): it bids, and pays, with its own transaction."""
        return getattr(self.signer, "_local", None)

    def _relayable(self, terms: TermsInfo) -> bool:
        """True when ``RELAY_URL`` is set and a request with ``terms`` takes relayed bids: open
        bids, paid on acceptance or on metered delivery, without a bond (a bond is the bidder's
        own money, and a sealed commitment its own transaction)."""
        return bool(self.relay_url) and not terms.sealed and not terms.bond_wei

    def _one_submission(self, rid: int, offers: Sequence[Offer]) -> list[Offer]:
        """``offers`` as one submission (sealed, metered or signed: one per bidder and request):
        the ``MAX_BIDS_PER_CALL`` cheapest, with a line when some are dropped."""
        from ..market import MAX_BIDS_PER_CALL

        if len(offers) <= MAX_BIDS_PER_CALL:
            return list(offers)
        self._say("request %d takes one batch of at most %d bids; dropping the %d dearest",
                  rid, MAX_BIDS_PER_CALL, len(offers) - MAX_BIDS_PER_CALL, level=logging.WARNING)
        return sorted(offers, key=lambda o: o.price)[:MAX_BIDS_PER_CALL]

    # -- money and records -----------------------------------------------------------------

    def _sent(self, rid: int, send: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``send(*args, **kwargs)`` (a transaction of ours for request ``rid``), noting what
        its receipt cost in the request's notes; a reverted one that was mined costs too."""
        try:
            receipt = send(*args, **kwargs)
        except TransactionFailed as exc:
            self._note_cost(rid, getattr(exc, "receipt", None))
            raise
        self._note_cost(rid, receipt)
        return receipt

    def _note_cost(self, rid: int, receipt: Any) -> None:
        """Add a mined receipt's cost (``fees.receipt_cost``) to ``rid``'s notes, once per hash."""
        if not receipt or receipt.get("gasUsed") is None:
            return
        try:
            cost = receipt_cost(receipt).total
        except FeeError as exc:
            self._say_once(rid, "cost", "cannot tell what our transactions cost: %s", exc, level=logging.WARNING)
            return
        self.notes.note(rid).spent[tx_hex(receipt["transactionHash"])] = cost

    def _settle(self, rid: int) -> None:
        """Settle our participation in ``rid``; the utility may have done it first (no error)."""
        if self._sent(rid, settle_participant, self.dr, self.signer, rid, self.address) is None:
            self._say("request %d: already settled by someone else meanwhile", rid)

    def _withdraw_owed(self, rid: int, token: str | None = None) -> tuple[str | None, int]:
        """Withdraw what we are owed in ether, or in ``token`` (when auto-withdraw is on and it
        is worth the gas): (tx, base units), or (None, 0) when nothing was sent. Its cost counts
        for ``rid``, the request whose outcome made us withdraw."""
        if not self.auto_withdraw:
            return None, 0
        cur = currency_of(self.dr.w3, token)
        done: Withdrawal | None = withdraw_owed(self.dr, self.signer, token=token, per_eth=self.per_native(cur))
        if done is None:
            return None, 0
        self._say("withdrew %s (tx %s…)", format_amount(done.wei, cur), done.tx[:12])
        try:
            self._note_cost(rid, self.dr.w3.eth.get_transaction_receipt(done.tx))
        except Exception as exc:
            if is_connection_error(exc):
                raise
        return done.tx, done.wei

    def _record(self, rid: int, status: str, **fields: Any) -> bool:
        """Append our record of ``rid`` to the results file (``records.result_record``);
        False when one is there already."""
        note = self.notes.get(rid)
        fields.setdefault("bid_txs", note.bid_txs if note else [])
        fields.setdefault("gas_wei", note.gas_wei if note else 0)
        if note is not None and note.relayed:
            fields.setdefault("relayed", True)  # placed by the utility's relay: we sent nothing
        if status != "cancelled":
            fields.setdefault("bid_at", note.bid_at if note else None)
        info = fields.get("info")
        if info is None:
            try:
                info = self.dr.get_request(rid)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
        cur = self.currency_for(info) if info is not None else ETH
        if cur != ETH:
            fields.update(currency=cur, token=info.token, per_eth=self.per_native(cur))
        record = result_record(chain_id=self.chain_id, contract=self.dr.address, request_id=rid,
                               account=self.address, label=self.label, status=status, **fields)
        if not self.results.append(record):
            return False
        from ..results import money

        m = money(record)
        native = self.fee_quotes.native
        gas = format_amount(m.gas_wei, native) + (f" ({format_amount(m.gas, cur)})" if cur != ETH and m.gas is not None
                                                 else "")
        net = format_amount(m.net, cur) if m.net is not None else f"unknown without {cur.fiat or cur.symbol}_PER_ETH"
        self._say("request %d: paid %s, gas %s, net %s", rid, format_amount(m.paid, cur), gas, net)
        return True

    def _recorded(self, rid: int) -> bool:
        """True when the results file has our record of ``rid``."""
        return self.results.find(self.chain_id, self.dr.address, rid, self.address) is not None

    def handle_settled(self, rid: int, event: Any = None, info: Any = None) -> None:
        """Act on a settled request (``ConsumerAgent`` does: claims, or delivery)."""
        raise NotImplementedError

    # -- devices --------------------------------------------------------------------------------

    def _award(self, rid: int, accepted_watts: int, start: int, end: int) -> None:
        """We won ``accepted_watts`` between ``start`` and ``end``: have the devices plan to
        shed it (once per request; the actuator keeps its plans across restarts)."""
        if self.actuator is None or accepted_watts <= 0 or (rid, "award") in self._said:
            return
        self._said.add((rid, "award"))
        from ..devices import Award  # the devices package only when a devices file is set

        try:
            plan = self.actuator.plan(Award(rid, accepted_watts, start, end))
        except Exception as exc:  # a device problem must not stop the bidding
            self._say("request %d: the devices could not plan the event: %s", rid, exc, level=logging.ERROR)
            return
        steps = ", ".join(f"{s.device} {format_kw(int(s.shed_w))}" for s in plan.steps) or "none"
        self._say("request %d: devices will shed %s from %s to %s (%s accepted)", rid, steps,
                  time.strftime("%H:%M:%S", time.localtime(start)), time.strftime("%H:%M:%S", time.localtime(end)),
                  format_kw(accepted_watts))

    def _cancel_devices(self, rid: int) -> None:
        if self.actuator is None:
            return
        try:
            if self.actuator.cancel(rid):
                self._say("request %d was cancelled: devices restored", rid)
        except Exception as exc:
            self._say("request %d: the devices could not be restored: %s", rid, exc, level=logging.ERROR)

    def _record_cancelled(self, rid: int) -> None:
        self._cancel_devices(rid)
        if self._recorded(rid):
            return
        self._record(rid, "cancelled")
        self._say("request %d was cancelled by the utility; recorded", rid)


def _revert_name(exc: Exception) -> str:
    """The contract error name of a failed call, if it decodes ('' otherwise)."""
    from ..contract import decode_revert

    decoded = decode_revert(exc)
    return decoded.error or "" if decoded is not None else ""

