"""Plain data for pages and the JSON API (one place, so both always agree)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from demand_response.bids import BidsError, load_bids
from demand_response.contract import RequestInfo, Status
from demand_response.market import payout, required_budget, round_cap, tick_wei
from demand_response.results import ResultsFile

from .services import Gateway, USER_ERRORS, one_line
from .units import fmt_eth, fmt_kw


def request_state(info: RequestInfo, now: int) -> str:
    """open, closed (awaiting settlement), settled or cancelled."""
    if info.status == Status.OPEN:
        return "open" if now <= info.bidding_deadline else "closed"
    return info.status.name.lower()


def request_dict(gw: Gateway, info: RequestInfo, now: int | None = None) -> dict[str, Any]:
    """A request in JSON form (raw integers plus display strings)."""
    now = int(time.time()) if now is None else now
    unit = gw.unit
    settled = info.status == Status.SETTLED
    return {
        "id": info.request_id,
        "state": request_state(info, now),
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
    out = []
    for info in gw.recent_requests():
        if open_only and info.status != Status.OPEN:
            continue
        row = request_dict(gw, info, now)
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
    rows, unclaimed = [], 0
    totals = {"accepted_watts": 0, "payout_wei": 0}
    for info in gw.recent_requests():
        bids = dr.bids_of(info.request_id, account)
        if not bids:
            continue
        accepted = sum(b.accepted_watts for b in bids)
        pay = sum(b.payout for b in bids)
        pending = sum(b.payout for b in bids if b.accepted_watts and not b.claimed)
        unclaimed += pending
        totals["accepted_watts"] += accepted
        totals["payout_wei"] += pay
        record = by_request.get(info.request_id, {})
        rows.append({
            "request": request_dict(gw, info, now),
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


def plan_preview(gw: Gateway, *, target_kw: Decimal, bidding_s: int, delay_min: int, duration_min: int,
                 cap_wei: int, budget_wei: int | None, rule: str) -> dict[str, Any]:
    """What a request would escrow and pay (``market.py`` formulas); ``ValueError`` if impossible."""
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
    now = int(time.time())
    deadline = now + bidding_s
    start = deadline + delay_min * 60
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
        "display": {"cap": gw.unit.format(cap), "tick": gw.unit.format(tick_wei(cap)), "min_budget": fmt_eth(minimum),
                    "budget": fmt_eth(budget), "per_kw_at_cap": fmt_eth(required_budget(1000, duration, cap)),
                    "target": fmt_kw(target_watts), "deadline": _hm(deadline, seconds=True),
                    "window": f"{_hm(start)}–{_hm(start + duration)}"},
    }


def utility_history(gw: Gateway) -> dict[str, Any]:
    """Every recent request with totals, for the utility."""
    now = int(time.time())
    rows = [request_dict(gw, info, now) for info in gw.recent_requests()]
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
