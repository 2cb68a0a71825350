"""The small JSON API the pages poll (documented in docs/api.md and static/openapi.json).

Every view but ``/api/health`` needs a signed-in user, a session or a bearer token
(``flaskapp/auth.py``). The one write (``PUT /api/bids``) needs, with a session, the page's
CSRF token in an ``X-CSRFToken`` header. Amounts in wei are strings (they overflow
JavaScript numbers); watts and unix times are integers. Errors are
``{"error": "<one line>", "status": <code>}`` with 4xx/503, never a 500 for a user error.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from demand_response.bids import MAX_WATTS, BidsError, parse_bids, save_bids
from demand_response.planner import PlanError, plan_request

from . import presenters, queries
from .errors import RoleDisabled, attempt, one_line
from .services import web as gw
from .charts import merit_order_svg

bp = Blueprint("api", __name__, url_prefix="/api")



def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _need(role: str) -> None:
    g = gw()
    if role == "utility" and not g.config.utility_enabled:
        from .utility import DISABLED

        raise RoleDisabled(DISABLED)
    if role == "consumer" and not g.config.consumer_enabled:
        raise RoleDisabled("The consumer API is switched off on this server (DR_ROLE=utility).")


def _chain_or_503(fn: Any) -> Any:
    value, error = attempt(fn)
    if error is not None:
        return None, _error(error, 503)
    return value, None


@bp.get("/health")
def health() -> Any:
    """Liveness: the web server answers (the chain may still be down)."""
    return jsonify({"ok": True})


@bp.get("/status")
def status() -> Any:
    """Chain, consumer account, balance, owed and daemon status."""
    g = gw()
    if g.config.consumer_enabled:
        from .consumer import consumer_status

        data = consumer_status()
    else:
        import time

        data = {"chain": g.chain.status().as_dict(), "account": None, "daemon": None, "server_time": int(time.time())}
    data["roles"] = {"consumer": g.config.consumer_enabled, "utility": g.config.utility_enabled}
    data["price_unit"] = g.unit.label
    return jsonify(data)


@bp.get("/live")
def live() -> Any:
    """Server-sent events that tell the pages' live regions to refresh (``flaskapp/live.py``)."""
    from .auth import still_valid
    from .live import StreamsFull

    g = gw()
    if not g.config.live:
        return _error("live updates are switched off on this server (WEB_LIVE=off): poll the JSON API", 404)
    feed = current_app.extensions["dr_live"]
    try:
        # at least a second between heartbeats and ten seconds a stream: 0 would spin or reconnect forever
        body = feed.stream(still_valid(), heartbeat=max(1, g.config.number("WEB_LIVE_HEARTBEAT_S")),
                           max_seconds=max(10, g.config.number("WEB_LIVE_MAX_S")))
    except StreamsFull as exc:
        response, status = _error(f"{exc}; the page polls instead", 503)
        response.headers["Retry-After"] = "60"
        return response, status
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@bp.get("/daemon")
def daemon_status() -> Any:
    """The consumer daemon's status and recent log lines."""
    _need("consumer")
    return jsonify(current_app.extensions["dr_daemon"].status())


@bp.get("/requests")
def requests_list() -> Any:
    """Recent requests (``?state=open`` for open ones), with this consumer's bids."""
    g = gw()
    state = request.args.get("state", "all")
    if state not in ("all", "open"):
        return _error(f"state must be all or open, not {state[:40]!r}", 400)
    open_only = state == "open"
    account = g.signers.address("consumer") if g.config.consumer_enabled else None
    rows, failure = _chain_or_503(lambda: queries.consumer_requests(g, account, open_only=open_only))
    if failure:
        return failure

    return jsonify({"server_time": int(time.time()), "account": account, "requests": rows})


def _request_or_error(request_id: int) -> Any:
    g = gw()

    info, failure = _chain_or_503(lambda: g.reads.request(request_id))
    if failure:
        return None, failure
    if info is None:
        return None, _error(f"there is no request {request_id} on this contract", 404)
    return info, None


@bp.get("/requests/<int:request_id>")
def request_one(request_id: int) -> Any:
    """One request, with this consumer's bids (and tx hashes)."""
    g = gw()
    info, failure = _request_or_error(request_id)
    if failure:
        return failure
    row = queries.request_row(g, info)
    account = g.signers.address("consumer") if g.config.consumer_enabled else None
    row["my_bids"], error = attempt(lambda: queries.my_bids(g, info, account) if account else [], [])
    # Per winner its OpenADR dispatch, opt-in/out and expected under-delivery (null: no VTN).
    row["openadr"], error = attempt(lambda: queries.openadr_dispatch(g, request_id))
    return jsonify(row)


@bp.get("/requests/<int:request_id>/stack")
def request_stack(request_id: int) -> Any:
    """The merit-order bid stack (the contract's book) of a request."""
    g = gw()
    info, failure = _request_or_error(request_id)
    if failure:
        return failure
    data, failure = _chain_or_503(lambda: queries.stack(g, info))
    if failure:
        return failure
    data["request"] = queries.request_row(g, info)
    return jsonify(data)


@bp.get("/requests/<int:request_id>/delivery")
def request_delivery(request_id: int) -> Any:
    """The published delivery records of a metered request (``demand_response.mv.records``): per
    winner the baseline, metered and delivered figures, the method, its parameters, the data hash
    and the per-interval series ``[start, seconds, baseline_wh, metered_wh]``."""
    g = gw()
    _, failure = _request_or_error(request_id)
    if failure:
        return failure
    records, failure = _chain_or_503(lambda: queries.delivery_records(g, request_id))
    if failure:
        return failure
    for record in records:
        record.pop("chart", None)  # the pages' SVG; the API gives the series
    return jsonify({"request_id": request_id, "records": records})


@bp.get("/requests/<int:request_id>/stack.svg")
def request_stack_svg(request_id: int) -> Any:
    """The bid stack as an SVG chart."""
    g = gw()
    info, failure = _request_or_error(request_id)
    if failure:
        return failure
    svg, failure = _chain_or_503(lambda: queries.stack_svg(g, info))
    if failure:
        return failure
    return Response(svg, mimetype="image/svg+xml")


@bp.get("/bids")
def bids_get() -> Any:
    """The saved bids (bids.json), in base units and in the file's currency (``currency``)."""
    _need("consumer")
    g = gw()
    offers, error, fleet = queries.saved_offers(g)
    if error:
        return _error(error, 409)
    unit = g.bids_unit
    return jsonify({"file": str(g.settings.bids_file), "fleet": fleet, "price_unit": unit.label,
                    "currency": unit.symbol,
                    "bids": [{"watts": w, "price_wei_per_kwh": str(p), "kw": w / 1000,
                              "price": unit.plain(p)} for w, p in offers]})


@bp.put("/bids")
def bids_put() -> Any:
    """Replace bids.json (atomically). Body: the bids.json v1 document. Needs X-CSRFToken."""
    _need("consumer")
    g = gw()
    body = request.get_data(as_text=True)
    try:
        doc = parse_bids(body)
        if doc.fleet or doc.legacy:
            raise BidsError("send a single-household document: {\"version\": 1, \"bids\": [...]}")
        save_bids(g.settings.bids_file, list(doc.bids), source=doc.source or "api")
    except BidsError as exc:
        return _error(one_line(exc), 400)
    except OSError as exc:
        return _error(f"cannot write {g.settings.bids_file}: {exc.strerror}", 409)
    return jsonify({"saved": len(doc.bids), "file": str(g.settings.bids_file)})


@bp.get("/bids/curve.svg")
def bids_curve() -> Any:
    """The bid curve of ``kw``/``price`` pairs in the query (prices in the bids' currency).

    Rows that do not parse are left out (the form shows their errors), so the preview can
    follow the user's typing.
    """
    g = gw()
    unit = g.bids_money(request.args.get("currency"))
    offers = []
    for kw, price in zip(request.args.getlist("kw"), request.args.getlist("price")):
        try:
            watts = int(Decimal(kw) * 1000)
            wei = unit.parse_price(price)
        except (InvalidOperation, ValueError, OverflowError):  # OverflowError: int(Decimal('inf'))
            continue
        # Bounded like real bids: 1e999 is finite for Decimal but not for the chart's floats.
        if 0 < watts <= MAX_WATTS and 0 < wei < 2**128:
            offers.append((wei, watts))
    cap = None
    if request.args.get("cap", "").isdigit():
        cap = int(request.args["cap"])
    return Response(merit_order_svg(offers[:64], unit, title="Your bid curve", cap=cap, chart_id="curve"),
                    mimetype="image/svg+xml")


@bp.get("/results")
def results() -> Any:
    """This consumer's history: per request accepted kW, clearing price and payout; owed wei."""
    _need("consumer")
    g = gw()
    account = g.signers.address("consumer")
    records, records_error = queries.results_records(g, account)
    if not account:
        return jsonify({"account": None, "history": None, "records": records, "records_error": records_error,
                        "error": "no consumer account is available (chain down or none configured)"})
    history, error = attempt(lambda: queries.consumer_history(g, account))
    return jsonify({"account": account, "history": history, "error": error, "records": records,
                    "records_error": records_error})


@bp.get("/utility/preview")
def utility_preview() -> Any:
    """Payout preview of a request (the package's planner); query as the request form's fields."""
    _need("utility")
    g = gw()
    args = request.args

    def whole(name: str, default: str) -> int:
        text = args.get(name) or default
        if not text.strip().lstrip("-").isdigit():
            raise ValueError(f"{name} must be a whole number")
        return int(text)

    try:
        now, _ = attempt(g.chain.now, None)
        plan = plan_request(
            target_kw=args.get("target_kw") or None, now=now or int(time.time()),
            bidding_window_s=whole("bidding_s", "60"), event_delay_s=whole("delay_s", "0"),
            event_duration_s=whole("duration_s", "3600"), max_price_wei_per_kwh=g.unit.parse_price(args.get("cap", "")),
            budget_wei=g.unit.parse_amount(args["budget_eth"], "budget") if args.get("budget_eth") else None,
            rule=args.get("rule", "uniform"),
            reveal_window_s=whole("reveal_s", "0"), report_window_s=whole("report_s", "0"),
            dispute_window_s=whole("dispute_s", "0"),
            bond_wei=g.unit.parse_amount(args["bond_eth"], "bond") if args.get("bond_eth") else None,
        )
    except PlanError as exc:
        return _error(f"cannot preview: {exc}", 400)
    except (InvalidOperation, ArithmeticError, ValueError) as exc:
        message = str(exc) if isinstance(exc, ValueError) and "invalid literal" not in str(exc) \
            else "a field is missing or not a number"
        return _error(f"cannot preview: {message}", 400)
    return jsonify(presenters.plan_preview(plan, g.unit))


@bp.get("/utility/requests")
def utility_requests() -> Any:
    """Every recent request with totals (utility view)."""
    _need("utility")
    g = gw()
    data, failure = _chain_or_503(lambda: queries.utility_history(g))
    if failure:
        return failure
    return jsonify(data)
