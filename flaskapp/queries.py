"""What each page and API reply shows: chain reads (``reads``) passed through the pure
``presenters``. Shared by the HTML blueprints and the JSON API, so both always agree."""

from __future__ import annotations

import time
from typing import Any

from demand_response.bids import BidsError, load_bids
from demand_response.contract import RequestInfo, Status, TermsInfo
from demand_response.results import ResultsFile

from . import presenters
from .errors import USER_ERRORS, one_line
from .services import Services
from .units import Money


def unit_for(s: Services, info: RequestInfo) -> Money:
    """The money of one request: the market's (``s.unit``) for ether, else its token's
    currency (read once per token), so its prices and amounts are shown in what it pays."""
    if not info.in_token:
        return s.unit
    from demand_response.token import currency_of

    cur = currency_of(s.chain.session().w3, info.token)
    return s.unit if cur == s.unit.currency else Money(cur, None)


def owed_by_currency(s: Services, account: str, tokens: Any = ()) -> list[dict[str, Any]]:
    """What ``account`` may withdraw, one entry per currency it is owed anything in: ether, the
    settlement token (``SETTLEMENT_TOKEN``) and ``tokens`` (the tokens of the requests shown), as
    ``{"token": address or None, "amount": base units, "display": "25 TUSD"}``."""
    from demand_response.token import currency_of, is_ether

    out = []
    seen: set[str] = set()
    for token in (None, s.settlement_token, *tokens):
        key = "" if is_ether(token) else str(token).lower()
        if key in seen:
            continue
        seen.add(key)
        amount = s.reads.owed(account, None if key == "" else token)
        if amount:
            money = s.unit if key == "" else Money(currency_of(s.chain.session().w3, token), None)
            out.append({"token": None if key == "" else token, "amount": amount, "display": money.amount(amount)})
    return out


def request_row(s: Services, info: RequestInfo, chain_now: int | None = None,
                terms: TermsInfo | None = None) -> dict[str, Any]:
    """``presenters.request_dict`` of one request, at chain time (read when not given)."""
    chain_now = s.chain.now() if chain_now is None else chain_now
    terms = s.reads.terms(info) if terms is None else terms
    return presenters.request_dict(info, terms, unit_for(s, info), int(time.time()), chain_now)


def stack(s: Services, info: RequestInfo) -> dict[str, Any]:
    """The bid stack of a request."""
    return presenters.stack(info, s.reads.book(info.request_id), unit_for(s, info))


def stack_svg(s: Services, info: RequestInfo, data: dict[str, Any] | None = None) -> str:
    """The bid stack chart of a request."""
    return presenters.stack_svg(info, data or stack(s, info), unit_for(s, info))


def my_bids(s: Services, info: RequestInfo, account: str) -> list[dict[str, Any]]:
    """``account``'s bids in a request, with their transactions."""
    bids = s.reads.bids_of(info.request_id, account)
    return presenters.my_bids(bids, s.reads.bid_txs(info.request_id, account) if bids else {}, unit_for(s, info))


def consumer_requests(s: Services, account: str | None, open_only: bool = True) -> list[dict[str, Any]]:
    """Recent requests (open ones by default) with this consumer's bids."""
    chain_now = s.chain.now()
    out = []
    for info in s.reads.recent_requests():
        if open_only and info.status != Status.OPEN:
            continue
        row = request_row(s, info, chain_now)
        row["my_bids"] = my_bids(s, info, account) if account else []
        out.append(row)
    return out


def results_records(s: Services, account: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """results.json records of this account (all contracts), newest first; and a read error."""
    try:
        records = ResultsFile(s.settings.results_file).records()
    except USER_ERRORS as exc:
        return [], one_line(exc)
    if account:
        records = [r for r in records if str(r.get("account", "")).lower() == account.lower()]
    return list(reversed(records)), None


def consumer_history(s: Services, account: str) -> dict[str, Any]:
    """Per request this consumer bid in: accepted kW, clearing price, promised and paid; plus what it is owed."""
    session = s.chain.session()
    records, _ = results_records(s, account)
    by_request = {int(r.get("request_id", 0)): r for r in records
                  if int(r.get("chain_id", 0)) == session.chain_id
                  and str(r.get("contract", "")).lower() == session.dr.address.lower()}
    chain_now = s.chain.now()
    rows = []
    for info in s.reads.recent_requests():
        bids = s.reads.bids_of(info.request_id, account)
        if not bids:
            continue
        terms = s.reads.terms(info)
        record = by_request.get(info.request_id, {})
        txs = [] if record.get("bid_txs") else sorted(set(s.reads.bid_txs(info.request_id, account).values()))
        rows.append(presenters.history_row(request_row(s, info, chain_now, terms), terms, bids, record, txs,
                                           unit_for(s, info), gas_unit=s.unit))
    history = presenters.consumer_history(account, rows, s.reads.owed(account), s.unit)
    # Money owed in a token (a household's own claim, or a payout its address refused) is
    # withdrawn in that token: list it beside the ether figure, and offer the button for it.
    tokens = [row["request"]["token"] for row in rows if row["request"].get("token")]
    history["owed_other"] = [entry for entry in owed_by_currency(s, account, tokens) if entry["token"]]
    history["can_withdraw"] = (history["can_withdraw"] or bool(history["owed_other"])
                               or any(int(row["unclaimed_wei"]) for row in rows))
    return history


def utility_history(s: Services) -> dict[str, Any]:
    """Every recent request with totals, for the utility: totals in the currency its requests
    are posted in (the settlement token's with ``SETTLEMENT_TOKEN``, else the market's)."""
    chain_now = s.chain.now()
    return presenters.utility_history([request_row(s, info, chain_now) for info in s.reads.recent_requests()],
                                      s.request_unit)


def delivery_table(s: Services, info: RequestInfo, terms: TermsInfo, chain_now: int) -> dict[str, Any]:
    """The metered-delivery table of a request."""
    participants = [(who, s.reads.participant(info.request_id, who)) for who in s.reads.bidders(info.request_id)]
    return presenters.delivery_table(info, terms, participants, s.reads.delivery_logs(info.request_id), chain_now,
                                     unit_for(s, info))


def saved_offers(s: Services) -> tuple[list[tuple[int, int]], str | None, bool]:
    """(offers as (watts, price) pairs, an error if bids.json is unusable, fleet file?)."""
    path = s.settings.bids_file
    if not path.exists():
        return [], None, False
    try:
        doc = load_bids(path)
    except BidsError as exc:
        return [], one_line(exc), False
    return [(o.watts, o.price) for o in doc.for_agent(0)], None, bool(doc.fleet)


def delivery_records(s: Services, request_id: int, address: str | None = None,
                     chart_prefix: str = "delivery") -> list[dict[str, Any]]:
    """The published delivery records of a request (``RECORDS_DIR``, ``demand_response.mv.records``),
    of one ``address`` when given, through ``presenters.delivery_records``."""
    from demand_response.mv.records import read_records

    session = s.chain.session()
    records = read_records(s.settings.records_dir, session.chain_id, session.dr.address, request_id)
    if address:
        records = [r for r in records if str(r.get("address", "")).lower() == address.lower()]
    return presenters.delivery_records(records, chart_prefix)


def openadr_dispatch(s: Services, request_id: int) -> dict[str, Any] | None:
    """Per winner the request's OpenADR 2.0b dispatch, opt-in/out and expected under-delivery
    (``presenters.openadr_dispatch``), from the utility's VTN store; None when it runs no VTN."""
    from demand_response.openadr.store import DISPATCH, VtnStore, vtn_store_path

    session = s.chain.session()
    path = vtn_store_path(s.settings.state_dir, session.chain_id, session.dr.address)
    if not path.exists():
        return None
    store = VtnStore(path)
    try:
        events = store.events(request_id, kind=DISPATCH)
        history = {e.event_id: store.opt_history(e.event_id) for e in events}
    finally:
        store.close()
    return presenters.openadr_dispatch(events, history)
