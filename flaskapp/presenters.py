"""Plain data for pages and the JSON API (one place, so both always agree).

Every function here is pure: it formats what ``reads.ChainReads`` read (and results.json
records) and never touches the chain. A request's state and phase come from
``demand_response.lifecycle``, payout formulas from ``demand_response.market``.
Quantities have one name each (docs/web.md, "Glossary"): *promised* (the payout of the
accepted watts, fixed at selection), *paid* (credited to the winner), *refund*, *owed*.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Iterable

from demand_response.contract import BidInfo, ParticipantInfo, RequestInfo, Stage, Status, Terms, TermsInfo
from demand_response.lifecycle import delivery_actions, lifecycle
from demand_response.market import had_notice, payout, required_budget, settle_delivery, tick_wei
from demand_response.planner import RequestPlan

from .units import DEFAULT_MONEY, Money, fmt_kw, fmt_kwh


def terms_dict(terms: TermsInfo, unit: Money = DEFAULT_MONEY) -> dict[str, Any]:
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
            "bond": unit.amount(terms.bond_wei) if terms.bond_wei else "none",
        },
    }


def request_dict(info: RequestInfo, terms: TermsInfo, unit: Money, now: int, chain_now: int) -> dict[str, Any]:
    """A request in JSON form (raw integers plus display strings), with its terms and its
    state and phase (``demand_response.lifecycle``) at chain time ``chain_now``."""
    life = lifecycle(info, terms, chain_now)
    selected = life.selected
    refund = info.budget - info.reserved if selected else (info.budget if life.state == "cancelled" else None)
    return {
        "id": info.request_id,
        "currency": unit.symbol,
        "token": info.token if info.in_token else None,
        "state": life.state,
        "phase": life.phase,
        "terms": terms_dict(terms, unit),
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
        "clearing_price_wei_per_kwh": str(info.clearing_price) if selected else None,
        "accepted_watts": info.accepted_watts if selected else None,
        "promised_wei": str(info.reserved) if selected else None,
        "paid_wei": str(info.paid_out),
        "refund_wei": None if refund is None else str(refund),
        "display": {
            "target": fmt_kw(info.target_watts),
            "currency": unit.symbol,
            "cap": unit.format(info.max_price),
            "tick": unit.format(info.tick_wei),
            "budget": unit.amount(info.budget),
            "clearing_price": unit.format(info.clearing_price) if selected else "—",
            "accepted": fmt_kw(info.accepted_watts) if selected else "—",
            "promised": unit.amount(info.reserved) if selected else "—",
            "paid": unit.amount(info.paid_out) if selected else "—",
            "refund": unit.amount(refund) if refund is not None else "—",
            "window": f"{_hm(info.event_start)}–{_hm(info.event_end)}",
            "deadline": _hm(info.bidding_deadline, seconds=True),
            "phase": life.meaning,
        },
    }


def _hm(ts: int, seconds: bool = False) -> str:
    return time.strftime("%H:%M:%S" if seconds else "%d %b %H:%M", time.localtime(ts))


def stack(info: RequestInfo, book: Iterable[int], unit: Money) -> dict[str, Any]:
    """The merit-order bid stack of a request, from the contract's price-level book."""
    levels, cumulative = [], 0
    for i, watts in enumerate(book):
        if watts:
            cumulative += int(watts)
            price = (i + 1) * info.tick_wei
            levels.append({"price_wei_per_kwh": str(price), "watts": int(watts),
                           "cumulative_watts": cumulative, "price": unit.format(price)})
    return {
        "request_id": info.request_id,
        "target_watts": info.target_watts,
        "cap_wei_per_kwh": str(info.max_price),
        "clearing_price_wei_per_kwh": str(info.clearing_price) if info.status == Status.SETTLED else None,
        "offered_watts": cumulative,
        "levels": levels,
    }


def stack_svg(info: RequestInfo, data: dict[str, Any], unit: Money) -> str:
    """The bid stack (``stack``) as an SVG step chart."""
    from .charts import merit_order_svg

    clearing = info.clearing_price if info.status == Status.SETTLED and info.clearing_price else None
    return merit_order_svg(
        [(int(level["price_wei_per_kwh"]), level["watts"]) for level in data["levels"]], unit,
        title=f"Bid stack of request {info.request_id}", target_watts=info.target_watts,
        clearing_price=clearing, cap=info.max_price, chart_id=f"stack-{info.request_id}",
    )


def my_bids(bids: Iterable[BidInfo], txs: dict[int, str], unit: Money) -> list[dict[str, Any]]:
    """A consumer's bids in a request, with their transaction hashes."""
    return [{
        "bid_id": b.bid_id, "watts": b.watts, "price_wei_per_kwh": str(b.price), "cancelled": b.cancelled,
        "accepted_watts": b.accepted_watts, "promised_wei": str(b.payout), "claimed": b.claimed,
        "tx": txs.get(b.bid_id), "display": {"kw": fmt_kw(b.watts), "price": unit.format(b.price),
                                             "accepted": fmt_kw(b.accepted_watts), "promised": unit.amount(b.payout)},
    } for b in bids]


def history_row(request: dict[str, Any], terms: TermsInfo, bids: list[BidInfo], record: dict[str, Any],
                bid_txs: list[str], unit: Money = DEFAULT_MONEY, gas_unit: Money | None = None) -> dict[str, Any]:
    """One request a consumer bid in: offered and accepted kW, promised, paid (gross), gas spent
    and net, and unclaimed. Gas and net come from the results.json record (``gas_wei``,
    ``net_wei``, written by the consumer daemon); a record without them shows ``—``: unknown,
    never 0."""
    accepted = sum(b.accepted_watts for b in bids)
    promised = sum(b.payout for b in bids)
    offered = sum(b.watts for b in bids if not b.cancelled)
    if terms.metered:  # paid on delivery (settleDelivery), never by claim
        delivery = delivery_record(record, promised, unit)
        unclaimed = 0
        paid = int(delivery["paid_wei"]) if delivery["paid_wei"] is not None else 0
    else:
        delivery = None
        unclaimed = sum(b.payout for b in bids if b.accepted_watts and not b.claimed)
        paid = sum(b.payout for b in bids if b.accepted_watts and b.claimed)
    gas_unit = gas_unit or DEFAULT_MONEY
    if unit.currency == gas_unit.currency:
        gas, net = _int_or_none(record.get("gas_wei")), _int_or_none(record.get("net_wei"))
        gas_text, net_text = unit.amount(gas), unit.amount(net)
    else:  # paid in a token, gas in ETH: the net only as the record has it (through a reference rate)
        gas = None if record.get("gas_units") is None else _int_or_none(record.get("gas_units"))
        net = _int_or_none(record.get("net_units"))
        gas_wei = _int_or_none(record.get("gas_wei"))
        gas_text = gas_unit.amount(gas_wei) + (f" ({unit.amount(gas)})" if gas is not None else "")
        net_text = unit.amount(net)
        gas = gas_wei  # ``gas_wei`` stays wei; ``net_wei`` is in the request's currency (``currency``)
    from demand_response.results import relayed_mark

    gas_text += relayed_mark(record)
    return {
        "currency": unit.symbol,
        "request": request,
        "delivery": delivery,
        "offered_watts": offered,
        "accepted_watts": accepted,
        "promised_wei": str(promised),
        "paid_wei": str(paid),
        "gas_wei": None if gas is None else str(gas),
        "net_wei": None if net is None else str(net),
        "unclaimed_wei": str(unclaimed),
        "recorded": bool(record),
        "relayed": bool(record.get("relayed")),
        "bid_txs": record.get("bid_txs") or bid_txs,
        "claim_tx": record.get("claim_tx"),
        "withdraw_tx": record.get("withdraw_tx"),
        "display": {"offered": fmt_kw(offered), "accepted": fmt_kw(accepted), "promised": unit.amount(promised),
                    "paid": unit.amount(paid), "gas": gas_text, "net": net_text,
                    "unclaimed": unit.amount(unclaimed)},
    }


def _known_sum(values: Iterable[str | None]) -> int | None:
    """The sum of amounts when every one is known; None (shown ``—``) when any is not."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += int(value)
    return total


def consumer_history(account: str, rows: list[dict[str, Any]], owed: int,
                     unit: Money = DEFAULT_MONEY) -> dict[str, Any]:
    """A consumer's ``history_row`` s with totals (gross paid, gas spent, net) and what it is owed.

    The gas and net totals are sums over every row; when a row's figure is unknown (a record
    written before gas was recorded, or no record) the total is unknown too (``null``, ``—``)
    and ``gas_unknown`` counts such rows. Amounts are summed only over the requests in
    ``unit``'s currency; each other currency's requests get their own totals
    (``other_currencies``), never added to these."""
    others: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["request"].get("currency", unit.symbol) != unit.symbol:
            others.setdefault(r["request"]["currency"], []).append(r)
    all_rows, rows = rows, [r for r in rows if r["request"].get("currency", unit.symbol) == unit.symbol]
    accepted = sum(r["accepted_watts"] for r in rows)
    promised = sum(int(r["promised_wei"]) for r in rows if r["request"]["accepted_watts"] is not None)
    paid = sum(int(r["paid_wei"]) for r in rows)
    unclaimed = sum(int(r["unclaimed_wei"]) for r in rows)
    gas = _known_sum(r["gas_wei"] for r in rows)
    net = _known_sum(r["net_wei"] for r in rows)
    return {
        "account": account,
        "owed_wei": str(owed),
        "unclaimed_wei": str(unclaimed),
        "can_withdraw": owed > 0 or unclaimed > 0,
        "totals": {"accepted_watts": accepted, "promised_wei": str(promised), "paid_wei": str(paid),
                   "gas_wei": None if gas is None else str(gas), "net_wei": None if net is None else str(net),
                   "gas_unknown": sum(1 for r in rows if r["gas_wei"] is None),
                   "display": {"accepted": fmt_kw(accepted), "promised": unit.amount(promised), "paid": unit.amount(paid),
                               "gas": unit.amount(gas), "net": unit.amount(net),
                               "owed": unit.amount(owed), "unclaimed": unit.amount(unclaimed)}},
        "other_currencies": {symbol: {"requests": len(group),
                                      "paid": str(sum(int(r["paid_wei"]) for r in group)),
                                      "net": _known_sum(r["net_wei"] for r in group),
                                      "unclaimed": str(sum(int(r["unclaimed_wei"]) for r in group)),
                                      "display": {"paid": _sum_text(group, "paid"), "net": _sum_text(group, "net"),
                                                  "unclaimed": _sum_text(group, "unclaimed")}}
                             for symbol, group in sorted(others.items())},
        "requests": all_rows,
    }


def _sum_text(rows: list[dict[str, Any]], key: str) -> str:
    """The total of ``key`` over rows of one token currency, from their display strings' unit."""
    from demand_response.units import currency as _currency, format_amount

    symbol = rows[0]["request"]["currency"]
    values = [r[f"{key}_wei"] for r in rows]
    if any(v is None for v in values):
        return "—"
    try:
        cur = _currency(symbol)
    except ValueError:
        return "—"
    return format_amount(sum(int(v) for v in values), cur)


#: Optional keys the consumer daemon adds to results.json records of metered requests.
DELIVERY_KEYS = ("promised_payout_wei", "delivered_watts", "penalty_wei", "bond_returned_wei", "paid_wei")
#: Where a token record (``results`` module) keeps the money ``DELIVERY_KEYS`` name in wei.
TOKEN_KEYS = {"promised_payout_wei": "promised_payout_units", "paid_wei": "paid_units"}


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def delivery_record(record: dict[str, Any], promised: int | None = None,
                    unit: Money = DEFAULT_MONEY) -> dict[str, Any]:
    """Promised vs delivered vs paid of a metered request, from a results.json record (every
    key optional; ``promised`` from the chain when the record has none)."""
    # A record of a request in a token keeps its money in the token's base units (``*_units``).
    values = {key: _int_or_none(record.get(TOKEN_KEYS.get(key, key) if record.get("currency", "ETH") != "ETH"
                                           else key)) for key in DELIVERY_KEYS}
    if values["promised_payout_wei"] is None:
        values["promised_payout_wei"] = promised
    out: dict[str, Any] = {key: (str(v) if v is not None and key != "delivered_watts" else v)
                           for key, v in values.items()}
    out["display"] = {
        "promised": unit.amount(values["promised_payout_wei"]),
        "delivered": fmt_kw(values["delivered_watts"]),
        "penalty": unit.amount(values["penalty_wei"]),
        "bond_returned": unit.amount(values["bond_returned_wei"]),
        "paid": unit.amount(values["paid_wei"]),
    }
    out["check"] = delivery_check(record)
    out["display"]["check"] = out["check"]["display"]
    return out


def delivery_check(record: dict[str, Any]) -> dict[str, Any]:
    """The household's own check of the utility's metered figure (``consumer.delivery_check``):
    both figures, the difference and whether it is within the tolerance; ``agrees`` None and
    ``display`` "—" when the utility did not meter it, ``display`` the reason when not checked."""
    metered, mine = _int_or_none(record.get("metered_watts")), _int_or_none(record.get("recomputed_watts"))
    agrees = record.get("delivery_agrees") if isinstance(record.get("delivery_agrees"), bool) else None
    if metered is None:
        text = "—"
    elif agrees is None:
        text = f"utility {fmt_kw(metered)}; {record.get('delivery_check') or 'not checked'}"
    else:
        text = (f"{'agrees' if agrees else 'DISAGREES'}: utility {fmt_kw(metered)}, our meter {fmt_kw(mine)}")
    return {"metered_watts": metered, "recomputed_watts": mine,
            "difference_watts": _int_or_none(record.get("difference_watts")), "agrees": agrees,
            "method": record.get("method"), "data_hash": record.get("data_hash"),
            "message": record.get("delivery_check"), "display": text}


def record_rows(records: list[dict[str, Any]], unit: Money = DEFAULT_MONEY) -> tuple[list[dict[str, Any]], bool]:
    """results.json records for the page, each with what was ``paid`` and, when it has any
    delivery key, ``delivery``; and whether any has (so the table shows those columns)."""
    rows, any_delivery = [], False
    for record in records:
        row = dict(record)
        # What was paid: metered records say it as paid_wei, the others as payout_wei.
        paid = _int_or_none(record.get("paid_wei"))
        row["paid"] = paid if paid is not None else (_int_or_none(record.get("payout_wei")) or 0)
        row["gas"], row["net"] = _int_or_none(record.get("gas_wei")), _int_or_none(record.get("net_wei"))
        row["money"] = _record_money(record, unit)
        if any(record.get(key) is not None for key in DELIVERY_KEYS):
            row["delivery"] = delivery_record(record, None, unit)
            any_delivery = True
        else:
            row["delivery"] = None
        rows.append(row)
    return rows, any_delivery


def _record_money(record: dict[str, Any], unit: Money) -> dict[str, str]:
    """A record's paid, gas and net for people, each in its own currency (``results.money``):
    a record in a token shows paid and net in it and gas in ETH (with its value in the token
    when the record has one); a net that would mix currencies is ``—``."""
    from demand_response.results import money, relayed_mark

    m = money(record)
    mark = relayed_mark(record)
    if m.currency == unit.currency:
        return {"paid": unit.amount(m.paid), "gas": unit.amount(m.gas) + mark, "net": unit.amount(m.net)}
    own = Money(m.currency, None)
    gas = unit.amount(m.gas_wei) + (f" ({own.amount(m.gas)})" if m.gas is not None else "") + mark
    return {"paid": own.amount(m.paid), "gas": gas, "net": own.amount(m.net)}


def plan_preview(plan: RequestPlan, unit: Money) -> dict[str, Any]:
    """What a planned request (``demand_response.planner``) would escrow and promise at a
    few clearing prices (``market.py`` formulas), with its deadlines."""
    duration, cap, budget = plan.duration, plan.max_price, plan.budget
    terms = TermsInfo(plan.terms.sealed, plan.terms.metered, plan.reveal_deadline,
                      plan.event_end + plan.terms.report_window if plan.terms.metered else 0,
                      plan.event_end + plan.terms.report_window + plan.terms.dispute_window if plan.terms.metered else 0,
                      plan.terms.bond_wei, 0, 0)
    step = tick_wei(cap)
    scenarios = []
    for fraction in (Decimal("0.25"), Decimal("0.5"), Decimal("0.75"), Decimal(1)):
        price = max(step, int(cap * fraction) // step * step)
        cost = payout(plan.target_watts, duration, price)
        scenarios.append({"price_wei_per_kwh": str(price), "promised_wei": str(cost), "refund_wei": str(budget - cost),
                          "display": {"price": unit.format(price), "promised": unit.amount(cost),
                                      "refund": unit.amount(budget - cost)}})
    minimum, per_kw = plan.minimum_budget, required_budget(1000, duration, cap)
    return {
        "target_watts": plan.target_watts, "duration_s": duration, "bidding_deadline": plan.bidding_deadline,
        "event_start": plan.event_start, "event_end": plan.event_end, "rule": plan.rule.name.lower(),
        "cap_wei_per_kwh": str(cap), "cap_rounded": plan.cap_rounded, "tick_wei_per_kwh": str(step),
        "min_budget_wei": str(minimum), "budget_wei": str(budget), "per_kw_at_cap_wei": str(per_kw),
        "scenarios": scenarios,
        "terms": terms_dict(terms, unit),
        "with_terms": plan.terms != Terms(),
        "display": {"cap": unit.format(cap), "tick": unit.format(step), "min_budget": unit.amount(minimum),
                    "budget": unit.amount(budget), "per_kw_at_cap": unit.amount(per_kw),
                    "target": fmt_kw(plan.target_watts), "deadline": _hm(plan.bidding_deadline, seconds=True),
                    "window": f"{_hm(plan.event_start)}–{_hm(plan.event_end)}"},
    }


def utility_history(rows: list[dict[str, Any]], unit: Money = DEFAULT_MONEY) -> dict[str, Any]:
    """Recent requests (``request_dict`` s) with totals, for the utility: amounts summed over
    the requests in ``unit``'s currency only (``totals["currency"]``; ``other_currency_requests``
    counts the rest, each shown in its own currency in its row)."""
    all_rows = rows
    rows = [r for r in rows if r.get("currency", unit.symbol) == unit.symbol]
    selected = [r for r in rows if r["accepted_watts"] is not None]
    totals: dict[str, Any] = {
        "requests": len(rows),
        "selected": len(selected),
        "settled": sum(1 for r in rows if r["state"] == "settled"),
        "target_watts": sum(r["target_watts"] for r in rows),
        "accepted_watts": sum(r["accepted_watts"] for r in selected),
        "promised_wei": sum(int(r["promised_wei"]) for r in selected),
        "paid_wei": sum(int(r["paid_wei"]) for r in rows),
        "refund_wei": sum(int(r["refund_wei"]) for r in rows if r["refund_wei"]),
        "escrow_wei": sum(int(r["budget_wei"]) for r in rows if r["state"] in ("open", "closed")),
    }
    totals["display"] = {
        "target": fmt_kw(totals["target_watts"]), "accepted": fmt_kw(totals["accepted_watts"]),
        "promised": unit.amount(totals["promised_wei"]), "paid": unit.amount(totals["paid_wei"]),
        "refund": unit.amount(totals["refund_wei"]), "escrow": unit.amount(totals["escrow_wei"]),
    }
    for key in ("promised_wei", "paid_wei", "refund_wei", "escrow_wei"):
        totals[key] = str(totals[key])
    totals["currency"] = unit.symbol
    totals["other_currency_requests"] = len(all_rows) - len(rows)
    return {"requests": all_rows, "totals": totals}


def delivery_table(info: RequestInfo, terms: TermsInfo, participants: list[tuple[str, ParticipantInfo]],
                   logs: Any, chain_now: int, unit: Money = DEFAULT_MONEY) -> dict[str, Any]:
    """Per participant of a metered request: accepted kW, promised payout, reported and
    delivered kW, stage, what was paid, and which of confirm / dispute / settle the utility
    can do now (``lifecycle.delivery_actions``). ``logs`` is a ``reads.DeliveryLogs``."""
    selected = info.status == Status.SETTLED
    rows = []
    totals = {"accepted_watts": 0, "promised_wei": 0, "delivered_watts": 0, "paid_wei": 0}
    for who, p in participants:
        key = who.lower()
        event, report, metered = logs.settled.get(key), logs.reported.get(key), logs.metered.get(key)
        stage = p.stage
        delivered: int | None = None
        if event is not None:
            delivered = int(event["deliveredWatts"])
        elif stage in (Stage.REPORTED, Stage.SETTLED):
            delivered = p.delivered_watts
        reported_watts = None
        if report is not None:
            reported_watts = int(report["deliveredWatts"])
        elif stage == Stage.REPORTED:
            reported_watts = p.delivered_watts
        paid = penalty = bond_returned = None
        if event is not None:
            paid, penalty, bond_returned = int(event["payout"]), int(event["penalty"]), int(event["bondReturned"])
        elif stage == Stage.SETTLED and selected:
            paid = settle_delivery(p.accepted_watts, p.promised_payout, delivered or 0).payout
        actions = delivery_actions(info, terms, stage.name.lower(), p.accepted_watts, p.delivered_watts, p.bond,
                                   chain_now)
        if_confirmed = settle_delivery(p.accepted_watts, p.promised_payout, p.delivered_watts, p.bond,
                                       selected_late=not had_notice(terms.selected_at, info.event_start, terms.notice_period)) \
            if stage == Stage.REPORTED else None
        totals["accepted_watts"] += p.accepted_watts
        totals["promised_wei"] += p.promised_payout
        totals["delivered_watts"] += delivered or 0
        totals["paid_wei"] += paid or 0
        rows.append({
            "consumer": who,
            "stage": stage.name.lower(),
            "accepted_watts": p.accepted_watts,
            "promised_wei": str(p.promised_payout),
            "bond_wei": str(p.bond),
            "reported_watts": reported_watts,
            "delivered_watts": delivered,
            "disputed": metered is not None and reported_watts is not None
            and int(metered["meteredWatts"]) < reported_watts,
            "metered_watts": None if metered is None else int(metered["meteredWatts"]),
            "paid_wei": None if paid is None else str(paid),
            "penalty_wei": None if penalty is None else str(penalty),
            "bond_returned_wei": None if bond_returned is None else str(bond_returned),
            "if_confirmed_wei": None if if_confirmed is None else str(if_confirmed.payout),
            "can_confirm": actions.can_confirm,
            "can_dispute": actions.can_dispute,
            "can_settle": actions.can_settle,
            "settle_from": actions.settle_from,
            "display": {
                "accepted": fmt_kw(p.accepted_watts), "promised": unit.amount(p.promised_payout),
                "reported": fmt_kw(reported_watts), "delivered": fmt_kw(delivered),
                "paid": unit.amount(paid), "penalty": unit.amount(penalty), "bond_returned": unit.amount(bond_returned),
                "bond": unit.amount(p.bond), "if_confirmed": unit.amount(if_confirmed.payout) if if_confirmed else "—",
                "settle_from": _hm(actions.settle_from, seconds=True) if actions.settle_from else "—",
            },
        })
    return {
        "participants": rows,
        "totals": {**{k: (str(v) if k.endswith("_wei") else v) for k, v in totals.items()},
                   "display": {"accepted": fmt_kw(totals["accepted_watts"]), "promised": unit.amount(totals["promised_wei"]),
                               "delivered": fmt_kw(totals["delivered_watts"]), "paid": unit.amount(totals["paid_wei"])}},
    }


def bid_warnings(offers: list[tuple[int, int]], duration_s: int, cost: int, margin: Decimal | str = "0",
                 unit: Money = DEFAULT_MONEY) -> dict[int, str]:
    """Per row index, why an offer of ``(watts, price per kWh)`` does not pay for taking part:
    its payout at its own ask over ``duration_s`` (``market.payout``, the least a winning bid
    earns) is below ``cost`` × (1 + margin); the reason is ``fees.worth_bidding``'s line."""
    from demand_response.fees import worth_bidding

    out = {}
    for i, (watts, price) in enumerate(offers):
        decision = worth_bidding(payout(watts, duration_s, price), cost, margin, unit.currency)
        if not decision.bid:
            out[i] = decision.reason.removeprefix("skip: ")
    return out


def _series(value: Any) -> list[list[int]] | None:
    """A record's ``intervals`` as ``[[start, seconds, baseline_wh, metered_wh], ...]``, or None
    when it is not that shape (a hostile or broken file draws no chart)."""
    if not isinstance(value, list) or len(value) > 10_000:
        return None
    rows = []
    for row in value:
        if not (isinstance(row, list) and len(row) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in row)):
            return None
        start, seconds, baseline, metered = row
        if start < 0 or not 0 < seconds <= 86_400 or abs(baseline) > 10**12 or abs(metered) > 10**12:
            return None
        rows.append([start, seconds, baseline, metered])
    return rows


def delivery_records(records: Iterable[dict[str, Any]], chart_prefix: str = "delivery") -> list[dict[str, Any]]:
    """Published delivery records (``demand_response.mv.records``) for a page and the API: per
    winner its baseline, metered and delivered figures, the method with its parameters and the
    data hash (so a household can recompute it, docs/mv.md), and the baseline-against-metered
    chart. A missing figure is ``None`` (``—``), never 0."""
    from .charts import delivery_svg

    out = []
    for i, record in enumerate(records):
        series = _series(record.get("intervals"))
        baseline, metered = _int_or_none(record.get("baseline_wh")), _int_or_none(record.get("metered_wh"))
        delivered = _int_or_none(record.get("delivered_watts"))
        address = str(record.get("address") or "")
        params = record.get("params") if isinstance(record.get("params"), dict) else {}
        method = str(record.get("method") or "—")
        start, end = _int_or_none(record.get("event_start")), _int_or_none(record.get("event_end"))
        out.append({
            "request_id": _int_or_none(record.get("request_id")),
            "address": address,
            "meter_id": record.get("meter_id"),
            "method": method,
            "params": params,
            "data_hash": record.get("data_hash"),
            "method_id": record.get("method_id"),
            "record_digest": record.get("record_digest"),
            "event_start": start,
            "event_end": end,
            "baseline_wh": baseline,
            "metered_wh": metered,
            "delivered_watts": delivered,
            "intervals": series or [],
            "display": {
                "baseline": fmt_kwh(None if baseline is None else baseline * 3600),
                "metered": fmt_kwh(None if metered is None else metered * 3600),
                "reduction": fmt_kwh(None if baseline is None or metered is None else (baseline - metered) * 3600),
                "delivered": fmt_kw(delivered),
                "params": ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "—",
                "window": f"{_hm(start)}–{_hm(end)}" if start and end else "—",
            },
            "chart": delivery_svg(series, title=f"Baseline against metered load, {address or 'unknown'} ({method})",
                                  chart_id=f"{chart_prefix}-{i}", event_start=start, event_end=end)
            if series is not None else None,
        })
    return out


def openadr_dispatch(events: Iterable[Any], history: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per winner dispatched over OpenADR (``openadr.store.EventRecord``s of kind dispatch): its
    accepted kW, whether its VEN opted in or out (its answer, or a later override), the devices
    it named, and the expected under-delivery (an opt-out's whole dispatch: OpenADR opts carry no
    quantity). A cancelled dispatch expects nothing."""
    rows, under_total = [], 0
    for e in events:
        opt = e.opt if e.status == "active" else None
        under = e.watts if opt == "optOut" else 0
        under_total += under
        last = (history.get(e.event_id) or [{}])[-1]
        rows.append({
            "consumer": e.address, "event_id": e.event_id, "status": e.status, "accepted_watts": e.watts,
            "opt": e.opt, "expected_under_watts": under, "reason": last.get("reason"),
            "resources": last.get("resources") or [], "opt_at": e.opt_at,
            "display": {"accepted": fmt_kw(e.watts), "under": fmt_kw(under),
                        "opt": "cancelled" if e.status != "active" else
                        {"optIn": "opted in", "optOut": "opted out"}.get(e.opt or "", "no answer yet")},
        })
    return {"winners": rows, "expected_under_watts": under_total, "display": {"under": fmt_kw(under_total)}}
