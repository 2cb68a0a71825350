"""Every chain read the pages and the API make, in one place; presenters format what they return.

Request terms never change once a request is posted except at selection (a late selection
moves a metered request's report and dispute deadlines), so they are cached per status for
the whole process; a bidder's bid transactions are cached once no more bids can come.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from demand_response.contract import BidInfo, ParticipantInfo, RequestInfo, Status, TermsInfo, submitted_bid_ids

from .chain import ChainLink
from .config import AppConfig

#: Terms by (chain id, contract, request id, bidding deadline, event start, status).
_TERMS_CACHE: dict[tuple[int, str, int, int, int, int], TermsInfo] = {}
_TERMS_LOCK = threading.Lock()
_NO_TERMS = TermsInfo(False, False, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class DeliveryLogs:
    """The last DeliveryReported, DeliveryMetered and DeliverySettled args per consumer (lower case)."""

    reported: dict[str, dict[str, Any]]
    metered: dict[str, dict[str, Any]]
    settled: dict[str, dict[str, Any]]


class ChainReads:
    """The reads of one app's contract."""

    def __init__(self, config: AppConfig, chain: ChainLink) -> None:
        self.config = config
        self.chain = chain
        self._bid_txs: dict[tuple[int, str], dict[int, str]] = {}

    @property
    def _dr(self) -> Any:
        return self.chain.session().dr

    def request(self, request_id: int) -> RequestInfo | None:
        """Request ``request_id``, or None when there is no such request."""
        dr = self._dr
        if not 1 <= request_id <= dr.request_count():
            return None
        return dr.get_request(request_id)

    def recent_requests(self, limit: int | None = None) -> list[RequestInfo]:
        """The most recent requests, newest first."""
        dr = self._dr
        count = dr.request_count()
        low = max(1, count - (limit or self.config.history) + 1)
        return [dr.get_request(rid) for rid in range(count, low - 1, -1)]

    def terms(self, info: RequestInfo, fresh: bool = False) -> TermsInfo:
        """The request's terms (``termsOf``), cached per status; ``fresh`` reads the bonds held
        now. A contract without ``termsOf`` (deployed before terms existed) has plain requests only."""
        session = self.chain.session()
        key = (session.chain_id, session.dr.address, info.request_id, info.bidding_deadline, info.event_start,
               int(info.status))
        cached = _TERMS_CACHE.get(key)
        if cached is not None and not fresh:
            return cached
        from web3.exceptions import BadFunctionCallOutput, ContractLogicError

        try:
            terms = session.dr.terms_of(info.request_id)
        except (BadFunctionCallOutput, ContractLogicError):
            terms = _NO_TERMS
        with _TERMS_LOCK:
            if len(_TERMS_CACHE) > 4096:
                _TERMS_CACHE.clear()
            _TERMS_CACHE[key] = terms
        return terms

    def book(self, request_id: int) -> list[int]:
        """The contract's price-level book: watts offered at level i (price (i + 1) × tick)."""
        return [int(w) for w in self._dr.book(request_id)]

    def bids_of(self, request_id: int, account: str) -> list[BidInfo]:
        """``account``'s bids in a request."""
        return list(self._dr.bids_of(request_id, account))

    def bidders(self, request_id: int) -> list[str]:
        """Everyone who bid in a request, in order of first bid."""
        return list(dict.fromkeys(b.bidder for b in self._dr.all_bids(request_id)))

    def participant(self, request_id: int, account: str) -> ParticipantInfo:
        """``account``'s standing in a sealed or metered request."""
        return self._dr.participant_of(request_id, account)

    def owed(self, account: str, token: str | None = None) -> int:
        """Wei (or base units of ``token``, an ERC-20) credited to ``account`` and not withdrawn yet."""
        return int(self._dr.owed(account, token))

    def balance(self, account: str) -> int:
        """``account``'s balance in wei."""
        return int(self.chain.session().w3.eth.get_balance(account))

    def bid_txs(self, request_id: int, bidder: str) -> dict[int, str]:
        """``{bid id: transaction hash}`` of ``bidder``'s bids in ``request_id`` (from BidsSubmitted logs)."""
        key = (request_id, bidder.lower())
        cached = self._bid_txs.get(key)
        if cached:
            return cached
        session = self.chain.session()
        logs = session.dr.contract.events.BidsSubmitted().get_logs(
            argument_filters={"requestId": request_id, "bidder": Web3.to_checksum_address(bidder)},
            from_block=session.start_block(),
        )
        found = {bid_id: "0x" + bytes(e["transactionHash"]).hex().removeprefix("0x")
                 for e in logs for bid_id in submitted_bid_ids(e)}
        info = session.dr.get_request(request_id)
        if info.status != Status.OPEN or int(time.time()) > info.bidding_deadline:
            self._bid_txs[key] = found  # no more bids can come
        return found

    def selection(self, request_id: int) -> Any:
        """The ``WinnersSelected`` event of ``request_id`` (a ``listener.Event``), or None: the
        consumer agent's claim waits for the utility's payment from its block's time, not from now."""
        from demand_response.listener import Event

        session = self.chain.session()
        logs = session.dr.contract.events.WinnersSelected().get_logs(
            argument_filters={"requestId": request_id}, from_block=session.start_block())
        if not logs:
            return None
        log = logs[-1]
        return Event("WinnersSelected", dict(log["args"]), int(log["blockNumber"]),
                     "0x" + bytes(log["blockHash"]).hex().removeprefix("0x"),
                     "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"), int(log["logIndex"]))

    def delivery_logs(self, request_id: int) -> DeliveryLogs:
        """The delivery events of one request, the last of each kind per consumer."""
        session = self.chain.session()
        events = session.dr.contract.events
        start = session.start_block()
        out = []
        for event in (events.DeliveryReported, events.DeliveryMetered, events.DeliverySettled):
            logs = event().get_logs(argument_filters={"requestId": request_id}, from_block=start)
            out.append({str(e["args"]["consumer"]).lower(): dict(e["args"]) for e in logs})
        return DeliveryLogs(*out)

    def participation_cost(self, metered: bool = False, money: Any = None) -> Any:
        """What taking part in one event costs this household at the node's fees now
        (``demand_response.fees.participation_cost`` on a fresh ``quote_fees``), in the market's
        currency (or ``money``'s, a ``Money``: the bids'): a ``ParticipationCost``. One node
        round trip: call it once per page view."""
        from demand_response import fees
        from demand_response.networks import NETWORKS

        profile = NETWORKS.get(self.config.settings.network) or NETWORKS["dev"]
        quote = fees.quote_fees(self.chain.session().w3, profile.fee_model)
        money = money or self.config.unit
        per_native = None
        if money.currency != profile.native:  # a token market: the rate of the native currency
            rate = self.config.settings.get(f"{money.currency.fiat}_PER_{profile.native.symbol}")
            per_native = rate if money.currency.fiat and rate else None
            if per_native is None:
                raise fees.FeeError(f"set {money.currency.fiat or 'USD'}_PER_{profile.native.symbol} to compare "
                                    f"{profile.native.symbol} fees with {money.symbol} payouts")
        return fees.participation_cost("metered" if metered else "open", quote, native=profile.native,
                                       settlement=money.currency, settlement_per_native=per_native)
