"""Plain data for pages and the JSON API (one place, so both always agree)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from demand_response.bids import BidsError, load_bids
from demand_response.contract import RequestInfo, Stage, Status, TermsInfo
from demand_response.market import had_notice, payout, phase, required_budget, round_cap, settle_delivery, tick_wei
from demand_response.results import ResultsFile

from .services import Gateway, USER_ERRORS, one_line
from .units import fmt_eth, fmt_kw


def request_state(info: RequestInfo, now: int) -> str:
    """open, closed (awaiting settlement), settled or cancelled."""
    if info.status == Status.OPEN:
        return "open" if now <= info.bidding_deadline else "closed"
    return info.status.name.lower()


#: What each phase means, for people (titles and the docs).
PHASES = {
    "bidding": "bidding is open",
    "revealing": "sealed bids are being revealed",
    "selecting": "bidding closed, winners not selected yet",
    "scheduled": "winners selected, the event has not started",
    "event": "the event is running",
    "reporting": "consumers report their metered delivery",
    "disputing": "the utility may confirm or dispute reports",
    "settling": "windows over: participants to settle",
    "settled": "settled",
    "cancelled": "cancelled",
}


def request_phase(info: RequestInfo, terms: TermsInfo, chain_now: int) -> str:
    """``market.phase`` of a request at chain time ``chain_now``."""
    return phase(int(info.status), chain_now, info.bidding_deadline, info.event_start, info.event_end,
                 terms.reveal_deadline, terms.report_deadline, terms.dispute_deadline,
                 info.claimed_watts >= info.accepted_watts)


def terms_dict(terms: TermsInfo) -> dict[str, Any]:
    """A request's terms in JSON form (deadlines ``null`` where a feature is off)."""
    modes = []
    if terms.sealed:
        modes.append("sealed bids")
    if terms.metered:
        modes.append("paid on metered delivery")
    return {
        "sealed": bool(terms.sealed),
        "metered": bool(terms.metered),
        "reveal_deadline": terms.reveal_deadline or None,
        "report_deadline": terms.report_deadline or None,
        "dispute_deadline": terms.dispute_deadline or None,
        "bond_wei": str(terms.bond_wei),
        "display": {
            "mode": ", ".join(modes) if modes else "open bids, paid on acceptance",
            "reveal_deadline": _hm(terms.reveal_deadline, seconds=True) if terms.reveal_deadline else "—",
            "report_deadline": _hm(terms.report_deadline, seconds=True) if terms.report_deadline else "—",
            "dispute_deadline": _hm(terms.dispute_deadline, seconds=True) if terms.dispute_deadline else "—",
            "bond": fmt_eth(terms.bond_wei) if terms.bond_wei else "none",
        },
    }


def request_dict(gw: Gateway, info: RequestInfo, now: int | None = None, chain_now: int | None = None,
                 terms: TermsInfo | None = None) -> dict[str, Any]:
    """A request in JSON form (raw integers plus display strings), with its terms and its
    phase at chain time (``chain_now``: ``Gateway.chain_time()`` when not given)."""
    now = int(time.time()) if now is None else now
    chain_now = gw.chain_time() if chain_now is None else chain_now
    terms = gw.terms(info) if terms is None else terms
    unit = gw.unit
    settled = info.status == Status.SETTLED
    request_phase_name = request_phase(info, terms, chain_now)
    return {
        "id": info.request_id,
        "state": request_state(info, now),
        "phase": request_phase_name,
        "terms": terms_dict(terms),
        "rule": info.rule.name.lower(),
        "target_watts": info.target_watts,
        "event_start": info.event_start,
        "event_end": info.event_end,
        "duration_s": info.duration,
        "bidding_deadline": info.bidding_deadline,
        "seconds_left": max(0, info.bidding_deadline - now) if info.status == Status.OPEN else 0,
        "cap_wei_per_kwh": str(info.max_price),
        "tick_wei_per_kwh": str(info.tick_wei),
        "budget_wei": str(info.budget),
        "bid_count": info.bid_count,
        "submissions": info.submissions,
        "clearing_price_wei_per_kwh": str(info.clearing_price) if settled else None,
        "accepted_watts": info.accepted_watts if settled else None,
        "reserved_wei": str(info.reserved) if settled else None,
        "paid_out_wei": str(info.paid_out),
        "refund_wei": str(info.budget - info.reserved) if settled else (str(info.budget) if info.status == Status.CANCELLED else None),
        "display": {
            "target": fmt_kw(info.target_watts),
            "cap": unit.format(info.max_price),
            "tick": unit.format(info.tick_wei),
            "budget": fmt_eth(info.budget),
            "clearing_price": unit.format(info.clearing_price) if settled else "—",
            "accepted": fmt_kw(info.accepted_watts) if settled else "—",
            "paid": fmt_eth(info.reserved) if settled else "—",
            "refund": fmt_eth(info.budget - info.reserved) if settled else "—",
            "window": f"{_hm(info.event_start)}–{_hm(info.event_end)}",
            "deadline": _hm(info.bidding_deadline, seconds=True),
            "phase": PHASES.get(request_phase_name, request_phase_name),
        },
    }


def _hm(ts: int, seconds: bool = False) -> str:
    return time.strftime("%H:%M:%S" if seconds else "%d %b %H:%M", time.localtime(ts))


def stack(gw: Gateway, info: RequestInfo) -> dict[str, Any]:
    """The merit-order bid stack of a request, from the contract's 128-level book."""
    dr = gw.session().dr
    book = dr.book(info.request_id)
    levels, cumulative = [], 0
    for i, watts in enumerate(book):
        if watts:
            cumulative += int(watts)
            levels.append({"price_wei_per_kwh": str((i + 1) * info.tick_wei), "watts": int(watts),
                           "cumulative_watts": cumulative,
                           "price": gw.unit.format((i + 1) * info.tick_wei)})
    return {
        "request_id": info.request_id,
        "target_watts": info.target_watts,
        "cap_wei_per_kwh": str(info.max_price),
        "clearing_price_wei_per_kwh": str(info.clearing_price) if info.status == Status.SETTLED else None,
        "offered_watts": cumulative,
        "levels": levels,
    }


def stack_svg(gw: Gateway, info: RequestInfo, data: dict[str, Any] | None = None) -> str:
    """The bid stack as an SVG step chart."""
    from .charts import merit_order_svg

    data = data or stack(gw, info)
    clearing = info.clearing_price if info.status == Status.SETTLED and info.clearing_price else None
    return merit_order_svg(
        [(int(level["price_wei_per_kwh"]), level["watts"]) for level in data["levels"]], gw.unit,
        title=f"Bid stack of request {info.request_id}", target_watts=info.target_watts,
        clearing_price=clearing, cap=info.max_price, chart_id=f"stack-{info.request_id}",
    )


def my_bids(gw: Gateway, info: RequestInfo, account: str) -> list[dict[str, Any]]:
    """``account``'s bids in a request, with their transaction hashes."""
    dr = gw.session().dr
    bids = dr.bids_of(info.request_id, account)
    txs = gw.bid_txs(info.request_id, account) if bids else {}
    return [{
        "bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": str(b.price), "cancelled": b.cancelled,
        "accepted_watts": b.accepted_watts, "payout_wei": str(b.payout), "claimed": b.claimed,
        "tx": txs.get(b.bid_id), "display": {"kw": fmt_kw(b.watts), "price": gw.unit.format(b.price),
                                             "accepted": fmt_kw(b.accepted_watts), "payout": fmt_eth(b.payout)},
    } for b in bids]


def consumer_requests(gw: Gateway, account: str | None, open_only: bool = True) -> list[dict[str, Any]]:
    """Recent requests (open ones by default) with this consumer's bids."""
    now = int(time.time())
    chain_now = gw.chain_time()
    out = []
    for info in gw.recent_requests():
        if open_only and info.status != Status.OPEN:
            continue
        row = request_dict(gw, info, now, chain_now)
        row["my_bids"] = my_bids(gw, info, account) if account else []
        out.append(row)
    return out


def results_records(gw: Gateway, account: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """results.json records of this account (all contracts), newest first; and a read error."""
    try:
        records = ResultsFile(gw.settings.results_file).records()
    except USER_ERRORS as exc:
        return [], one_line(exc)
    if account:
        records = [r for r in records if str(r.get("account", "")).lower() == account.lower()]
    return list(reversed(records)), None


def consumer_history(gw: Gateway, account: str) -> dict[str, Any]:
    """Per request this consumer bid in: accepted kW, clearing price, payout; plus what it is owed."""
    session = gw.session()
    dr = session.dr
    records, _ = results_records(gw, account)
    by_request = {int(r.get("request_id", 0)): r for r in records
                  if int(r.get("chain_id", 0)) == session.chain_id and str(r.get("contract", "")).lower() == dr.address.lower()}
    now = int(time.time())
    chain_now = gw.chain_time()
    rows, unclaimed = [], 0
    totals = {"accepted_watts": 0, "payout_wei": 0}
    for info in gw.recent_requests():
        bids = dr.bids_of(info.request_id, account)
        if not bids:
            continue
        terms = gw.terms(info)
        record = by_request.get(info.request_id, {})
        accepted = sum(b.accepted_watts for b in bids)
        pay = sum(b.payout for b in bids)
        # A metered request pays on delivery (settleDelivery), never by claim.
        pending = 0 if terms.metered else sum(b.payout for b in bids if b.accepted_watts and not b.claimed)
        delivery = delivery_record(record, pay) if terms.metered else None
        unclaimed += pending
        totals["accepted_watts"] += accepted
        totals["payout_wei"] += int(delivery["paid_wei"]) if delivery and delivery["paid_wei"] is not None else pay
        rows.append({
            "request": request_dict(gw, info, now, chain_now, terms),
            "delivery": delivery,
            "offered_watts": sum(b.watts for b in bids if not b.cancelled),
            "accepted_watts": accepted,
            "payout_wei": str(pay),
            "unclaimed_wei": str(pending),
            "recorded": bool(record),
            "bid_txs": record.get("bid_txs") or sorted(set(gw.bid_txs(info.request_id, account).values())),
            "claim_tx": record.get("claim_tx"),
            "withdraw_tx": record.get("withdraw_tx"),
            "display": {"offered": fmt_kw(sum(b.watts for b in bids if not b.cancelled)), "accepted": fmt_kw(accepted),
                        "payout": fmt_eth(pay)},
        })
    owed = dr.owed(account)
    return {
        "account": account,
        "owed_wei": str(owed),
        "unclaimed_wei": str(unclaimed),
        "can_withdraw": owed > 0 or unclaimed > 0,
        "totals": {"accepted_watts": totals["accepted_watts"], "payout_wei": str(totals["payout_wei"]),
                   "display": {"accepted": fmt_kw(totals["accepted_watts"]), "payout": fmt_eth(totals["payout_wei"]),
                               "owed": fmt_eth(owed), "unclaimed": fmt_eth(unclaimed)}},
        "requests": rows,
    }


#: Optional keys the consumer daemon adds to results.json records of metered requests.
DELIVERY_KEYS = ("promised_payout_wei", "delivered_watts", "penalty_wei", "bond_returned_wei", "paid_wei")


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def delivery_record(record: dict[str, Any], promised: int | None = None) -> dict[str, Any]:
    """Promised vs delivered vs paid of a metered request, from a results.json record (every
    key optional; ``promised`` from the chain when the record has none)."""
    values = {key: _int_or_none(record.get(key)) for key in DELIVERY_KEYS}
    if values["promised_payout_wei"] is None:
        values["promised_payout_wei"] = promised
    out: dict[str, Any] = {key: (str(v) if v is not None and key != "delivered_watts" else v)
                           for key, v in values.items()}
    out["display"] = {
        "promised": fmt_eth(values["promised_payout_wei"]),
        "delivered": fmt_kw(values["delivered_watts"]),
        "penalty": fmt_eth(values["penalty_wei"]),
        "bond_returned": fmt_eth(values["bond_returned_wei"]),
        "paid": fmt_eth(values["paid_wei"]),
    }
    return out


def record_rows(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """results.json records for the page, each with ``delivery`` when it has any delivery
    key; and whether any has (so the table shows those columns)."""
    rows, any_delivery = [], False
    for record in records:
        row = dict(record)
        if any(record.get(key) is not None for key in DELIVERY_KEYS):
            row["delivery"] = delivery_record(record)
            any_delivery = True
        else:
            row["delivery"] = None
        rows.append(row)
    return rows, any_delivery


def saved_offers(gw: Gateway) -> tuple[list[tuple[int, int]], str | None, bool]:
    """(offers as (watts, price) pairs, an error if bids.json is unusable, fleet file?)."""
    path = gw.settings.bids_file
    if not path.exists():
        return [], None, False
    try:
        doc = load_bids(path)
    except BidsError as exc:
        return [], one_line(exc), False
    return [(o.watts, o.price) for o in doc.for_agent(0)], None, bool(doc.fleet)


MAX_WINDOW_S = 30 * 86400
MAX_BOND_WEI = 2**96 - 1


def check_terms(delay_min: int, reveal_s: int, report_s: int, dispute_s: int, bond_wei: int) -> None:
    """The contract's rules for request terms (``requestReductionWithTerms``); ``ValueError``
    naming the field and the fix."""
    for name, value in (("reveal_s", reveal_s), ("report_s", report_s), ("dispute_s", dispute_s)):
        if not 0 <= value <= MAX_WINDOW_S:
            raise ValueError(f"{name} must be between 0 (off) and {MAX_WINDOW_S} s (30 days)")
    if not 0 <= bond_wei <= MAX_BOND_WEI:
        raise ValueError("bond_eth must be between 0 and 2^96 - 1 wei")
    if reveal_s > delay_min * 60:
        raise ValueError(f"the reveal window ({reveal_s} s) would end after the event starts "
                         f"({delay_min} min after bidding closes); shorten it or raise the delay")
    if dispute_s and not report_s:
        raise ValueError("a dispute window needs metered settlement: set a report window too")
    if bond_wei and not reveal_s and not report_s:
        raise ValueError("a bond needs sealed bids or metered settlement: set a reveal or report window")


def plan_preview(gw: Gateway, *, target_kw: Decimal, bidding_s: int, delay_min: int, duration_min: int,
                 cap_wei: int, budget_wei: int | None, rule: str, reveal_s: int = 0, report_s: int = 0,
                 dispute_s: int = 0, bond_wei: int = 0, now: int | None = None) -> dict[str, Any]:
    """What a request would escrow and pay (``market.py`` formulas) and, with terms, its
    deadlines; ``ValueError`` if impossible."""
    check_terms(delay_min, reveal_s, report_s, dispute_s, bond_wei)
    target_watts = int(target_kw * 1000)
    duration = duration_min * 60
    cap = round_cap(cap_wei)
    if cap <= 0:
        raise ValueError(f"the price cap must be at least {gw.unit.format(128)}")
    minimum = required_budget(target_watts, duration, cap)
    budget = minimum if budget_wei is None else budget_wei
    if budget < minimum:
        raise ValueError(f"a budget of {fmt_eth(budget)} is below the {fmt_eth(minimum)} this cap needs "
                         "for the full target; raise it or leave it empty")
    now = int(time.time()) if now is None else now
    deadline = now + bidding_s
    start = deadline + delay_min * 60
    end = start + duration
    terms = TermsInfo(reveal_s > 0, report_s > 0, deadline + reveal_s if reveal_s else 0,
                      end + report_s if report_s else 0, end + report_s + dispute_s if report_s else 0,
                      bond_wei, 0, 0)
    scenarios = []
    for fraction in (Decimal("0.25"), Decimal("0.5"), Decimal("0.75"), Decimal(1)):
        step = tick_wei(cap)
        price = max(step, int(cap * fraction) // step * step)
        cost = payout(target_watts, duration, price)
        scenarios.append({"price_wei_per_kwh": str(price), "payout_wei": str(cost), "refund_wei": str(budget - cost),
                          "display": {"price": gw.unit.format(price), "payout": fmt_eth(cost),
                                      "refund": fmt_eth(budget - cost)}})
    return {
        "target_watts": target_watts, "duration_s": duration, "bidding_deadline": deadline,
        "event_start": start, "event_end": start + duration, "rule": rule,
        "cap_wei_per_kwh": str(cap), "cap_rounded": cap != cap_wei, "tick_wei_per_kwh": str(tick_wei(cap)),
        "min_budget_wei": str(minimum), "budget_wei": str(budget),
        "per_kw_at_cap_wei": str(required_budget(1000, duration, cap)),
        "scenarios": scenarios,
        "terms": terms_dict(terms),
        "with_terms": bool(reveal_s or report_s or dispute_s or bond_wei),
        "display": {"cap": gw.unit.format(cap), "tick": gw.unit.format(tick_wei(cap)), "min_budget": fmt_eth(minimum),
                    "budget": fmt_eth(budget), "per_kw_at_cap": fmt_eth(required_budget(1000, duration, cap)),
                    "target": fmt_kw(target_watts), "deadline": _hm(deadline, seconds=True),
                    "window": f"{_hm(start)}–{_hm(start + duration)}"},
    }


def utility_history(gw: Gateway) -> dict[str, Any]:
    """Every recent request with totals, for the utility."""
    now = int(time.time())
    chain_now = gw.chain_time()
    rows = [request_dict(gw, info, now, chain_now) for info in gw.recent_requests()]
    settled = [r for r in rows if r["state"] == "settled"]
    totals = {
        "requests": len(rows),
        "settled": len(settled),
        "target_watts": sum(r["target_watts"] for r in rows),
        "accepted_watts": sum(r["accepted_watts"] or 0 for r in settled),
        "paid_wei": sum(int(r["reserved_wei"] or 0) for r in settled),
        "refund_wei": sum(int(r["refund_wei"] or 0) for r in rows if r["refund_wei"]),
        "escrow_wei": sum(int(r["budget_wei"]) for r in rows if r["state"] in ("open", "closed")),
    }
    totals["display"] = {
        "target": fmt_kw(totals["target_watts"]), "accepted": fmt_kw(totals["accepted_watts"]),
        "paid": fmt_eth(totals["paid_wei"]), "refund": fmt_eth(totals["refund_wei"]),
        "escrow": fmt_eth(totals["escrow_wei"]),
    }
    for key in ("paid_wei", "refund_wei", "escrow_wei"):
        totals[key] = str(totals[key])
    return {"requests": rows, "totals": totals}


def _delivery_logs(gw: Gateway, request_id: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``{consumer (lower case): event args}`` of DeliveryReported, DeliveryDisputed and
    DeliverySettled for one request (the last of each per consumer)."""
    session = gw.session()
    events = session.dr.contract.events
    start = session.start_block()
    out = []
    for event in (events.DeliveryReported, events.DeliveryDisputed, events.DeliverySettled):
        logs = event().get_logs(argument_filters={"requestId": request_id}, from_block=start)
        out.append({str(e["args"]["consumer"]).lower(): dict(e["args"]) for e in logs})
    return out[0], out[1], out[2]


def delivery_table(gw: Gateway, info: RequestInfo, terms: TermsInfo, chain_now: int) -> dict[str, Any]:
    """Per participant of a metered request (the bidders, from ``all_bids``): accepted kW,
    promised payout, reported and delivered kW, stage, what was finally paid, and which of
    confirm / dispute / settle the utility can do now."""
    dr = gw.session().dr
    bidders = list(dict.fromkeys(b.bidder for b in dr.all_bids(info.request_id)))
    reported, disputed, settled = _delivery_logs(gw, info.request_id)
    selected = info.status == Status.SETTLED
    rows = []
    totals = {"accepted_watts": 0, "promised_wei": 0, "delivered_watts": 0, "paid_wei": 0}
    for who in bidders:
        p = dr.participant_of(info.request_id, who)
        key = who.lower()
        event = settled.get(key)
        report = reported.get(key)
        dispute = disputed.get(key)
        stage = p.stage
        delivered: int | None = None
        if event is not None:
            delivered = int(event["deliveredWatts"])
        elif stage in (Stage.REPORTED, Stage.SETTLED):
            delivered = p.delivered_watts
        reported_watts = None
        if dispute is not None:
            reported_watts = int(dispute["reportedWatts"])
        elif report is not None:
            reported_watts = int(report["deliveredWatts"])
        elif stage == Stage.REPORTED:
            reported_watts = p.delivered_watts
        paid = penalty = bond_returned = None
        if event is not None:
            paid, penalty, bond_returned = int(event["payout"]), int(event["penalty"]), int(event["bondReturned"])
        elif stage == Stage.SETTLED and selected:
            paid = settle_delivery(p.accepted_watts, p.promised_payout, delivered or 0).payout
        in_dispute_window = selected and chain_now <= terms.dispute_deadline
        due = terms.dispute_deadline if stage == Stage.REPORTED else terms.report_deadline
        if info.status == Status.CANCELLED:
            can_settle = p.bond > 0 and stage != Stage.SETTLED
        else:
            can_settle = selected and stage in (Stage.BONDED, Stage.BID, Stage.REPORTED) and (
                p.accepted_watts == 0 or chain_now > due)
        if_confirmed = settle_delivery(p.accepted_watts, p.promised_payout, p.delivered_watts, p.bond,
                                       selected_late=not had_notice(terms.selected_at, info.event_start,
                                                                    terms.notice_period)) \
            if stage == Stage.REPORTED else None
        totals["accepted_watts"] += p.accepted_watts
        totals["promised_wei"] += p.promised_payout
        totals["delivered_watts"] += delivered or 0
        totals["paid_wei"] += paid or 0
        rows.append({
            "consumer": who,
            "stage": stage.name.lower(),
            "accepted_watts": p.accepted_watts,
            "promised_payout_wei": str(p.promised_payout),
            "bond_wei": str(p.bond),
            "reported_watts": reported_watts,
            "delivered_watts": delivered,
            "disputed": dispute is not None,
            "paid_wei": None if paid is None else str(paid),
            "penalty_wei": None if penalty is None else str(penalty),
            "bond_returned_wei": None if bond_returned is None else str(bond_returned),
            "if_confirmed_wei": None if if_confirmed is None else str(if_confirmed.payout),
            "can_confirm": stage == Stage.REPORTED and in_dispute_window,
            "can_dispute": stage == Stage.REPORTED and in_dispute_window and (p.delivered_watts or 0) > 0,
            "can_settle": can_settle,
            "settle_from": None if can_settle or stage == Stage.SETTLED or not selected else due + 1,
            "display": {
                "accepted": fmt_kw(p.accepted_watts), "promised": fmt_eth(p.promised_payout),
                "reported": fmt_kw(reported_watts), "delivered": fmt_kw(delivered),
                "paid": fmt_eth(paid), "penalty": fmt_eth(penalty), "bond_returned": fmt_eth(bond_returned),
                "bond": fmt_eth(p.bond), "if_confirmed": fmt_eth(if_confirmed.payout) if if_confirmed else "—",
                "settle_from": _hm(due + 1, seconds=True) if selected and not can_settle else "—",
            },
        })
    return {
        "participants": rows,
        "totals": {**{k: (str(v) if k.endswith("_wei") else v) for k, v in totals.items()},
                   "display": {"accepted": fmt_kw(totals["accepted_watts"]), "promised": fmt_eth(totals["promised_wei"]),
                               "delivered": fmt_kw(totals["delivered_watts"]), "paid": fmt_eth(totals["paid_wei"])}},
    }
