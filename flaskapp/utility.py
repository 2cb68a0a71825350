"""Utility dashboard: post requests with a payout preview, watch bid stacks, settle, history.

Only served when the app is configured with the utility account (``DR_ROLE``; see
docs/web.md). Every other visitor gets a 403 page that says how to enable it.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from demand_response.accounts import AccountError
from demand_response.chain import TransactionFailed
from demand_response.contract import Status
from demand_response.planner import PlanError, RequestPlan, plan_request, send_request

from . import presenters, queries
from .errors import USER_ERRORS, RoleDisabled, attempt, one_line, sentence
from .services import web as gw
from .forms import DeliveryForm, PlainForm, RequestForm, UnlockForm

bp = Blueprint("utility", __name__, url_prefix="/utility")

DISABLED = ("The utility dashboard is only available when this server is configured with the utility "
            "account: set UTILITY_ACCOUNT (and UTILITY_ACCOUNT_PASS) or UTILITY_PRIVATE_KEY, or DR_ROLE=utility "
            "on a local dev chain. See docs/web.md.")



@bp.before_request
def _role() -> None:
    if not gw().config.utility_enabled:
        raise RoleDisabled(DISABLED)


#: The request form's field of each planner input.
PLAN_FIELDS = {"target_kw": "target_kw", "bidding_window_s": "bidding_s", "event_delay_s": "delay_s",
               "event_start": "delay_s", "event_duration_s": "duration_s", "max_price": "cap",
               "budget": "budget_eth", "rule": "rule", "reveal_window_s": "reveal_s", "report_window_s": "report_s",
               "dispute_window_s": "dispute_s", "bond": "bond_eth"}


def _plan(form: RequestForm, now: int) -> RequestPlan:
    """The package's planner (``demand_response.planner``) on the form's values."""
    g = gw()
    return plan_request(
        target_kw=form.target_kw.data, now=now, bidding_window_s=form.bidding_s.data,
        event_delay_s=form.delay_s.data, event_duration_s=form.duration_s.data,
        max_price_wei_per_kwh=g.request_unit.parse_price(form.cap.data),
        budget_wei=(g.request_unit.parse_amount(form.budget_eth.data, "budget")
                    if form.budget_eth.data is not None else None),
        rule=form.rule.data,
        reveal_window_s=form.reveal_s.data or 0, report_window_s=form.report_s.data or 0,
        dispute_window_s=form.dispute_s.data or 0, bond_wei=form.bond_wei, currency=g.request_unit.currency,
    )


def _show_problems(form: RequestForm, exc: PlanError) -> None:
    for problem in exc.problems:
        field = getattr(form, PLAN_FIELDS.get(problem.field, "cap"))
        field.errors = [*field.errors, sentence(problem.message)]


def _render_dashboard(form: RequestForm | None = None, preview: dict[str, Any] | None = None, code: int = 200) -> Any:
    g = gw()
    chain = g.chain.status()
    account, utility_error = None, None
    if chain.connected:
        signer, utility_error = attempt(g.signers.utility)
        account = signer.address if signer else g.signers.address("utility")
    history, history_error = ({"requests": [], "totals": None}, None)
    stacks: dict[int, str] = {}
    owed = None
    if chain.connected:
        history, history_error = attempt(lambda: queries.utility_history(g), {"requests": [], "totals": None})
        for index, row in enumerate(history["requests"]):
            if row["state"] in ("open", "closed") or index == 0:
                info, _ = attempt(lambda rid=row["id"]: g.reads.request(rid))
                if info is not None:
                    stacks[row["id"]], _ = attempt(lambda i=info: queries.stack_svg(g, i), "")
        if account:  # refunds per currency: ether, the settlement token, the tokens of the requests shown
            owed, _ = attempt(lambda: queries.owed_by_currency(g, account, _tokens(history)), None)
    if form is None:
        form = RequestForm(formdata=None)
        if not form.cap.data:
            form.cap.data = (Decimal(g.unit.plain(128 * 10**12)) if g.settlement_token is None
                             else Decimal(g.request_unit.plain(3000 * 128 * 10 ** max(0, g.request_unit.decimals - 6))))
    return render_template(
        "utility/dashboard.html", chain=chain, account=account, utility_error=utility_error, form=form,
        preview=preview, history=history, history_error=history_error, stacks=stacks, owed=owed,
        action_form=PlainForm(), unlock_form=UnlockForm(), locked=g.signers.needs_password("utility"),
    ), code


def _tokens(history: dict[str, Any]) -> list[str]:
    """The tokens the requests of ``history`` settle in."""
    return [row["token"] for row in history["requests"] if row.get("token")]


@bp.get("/")
def dashboard() -> Any:
    return _render_dashboard()


@bp.get("/requests")
def requests_page() -> Any:
    """The dashboard, for a page the form's post rendered (a preview or an error) that refreshes
    its live regions from its own address, or a reload of it."""
    return redirect(url_for("utility.dashboard"))


@bp.post("/requests")
def create_request() -> Any:
    g = gw()
    form = RequestForm()
    if not form.validate_on_submit():
        return _render_dashboard(form, code=400)
    now, _ = attempt(g.chain.now, None)
    try:
        plan = _plan(form, now or int(time.time()))
    except PlanError as exc:
        _show_problems(form, exc)
        return _render_dashboard(form, code=400)
    preview = presenters.plan_preview(plan, g.request_unit)
    if form.preview.data or not form.post.data:
        return _render_dashboard(form, preview=preview)
    try:
        signer = g.signers.utility()
        plan = _plan(form, g.chain.now())  # bidding runs its full window from now
        # In a token (SETTLEMENT_TOKEN) the wrapper approves the budget, then requests.
        request_id, receipt = send_request(g.chain.session().dr, signer, plan, token=g.settlement_token)
    except PlanError as exc:
        _show_problems(form, exc)
        return _render_dashboard(form, preview=preview, code=400)
    except USER_ERRORS as exc:
        flash(f"The request was not posted: {one_line(exc)}", "error")
        return _render_dashboard(form, preview=preview, code=409)
    deadline, terms = plan.bidding_deadline, plan.terms
    tx = "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
    extra = ""
    if preview["with_terms"]:
        extra = f", {preview['terms']['display']['mode']}"
        if terms.sealed:
            extra += f", reveals until {_hms(plan.reveal_deadline)}"
        if terms.metered:
            extra += f", reports until {_hms(plan.event_end + terms.report_window)}"
        if terms.bond_wei:
            extra += f", bond {g.unit.amount(terms.bond_wei)}"
    flash(f"Posted request {request_id}: {preview['display']['target']}, bidding closes at "
          f"{time.strftime('%H:%M:%S', time.localtime(deadline))}{extra} (tx {tx}).", "ok")
    return redirect(url_for("utility.request_detail", request_id=request_id))



@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int, code: int = 200) -> Any:
    g = gw()
    info, error = attempt(lambda: gw().reads.request(request_id))
    if info is None and error is None:
        return render_template("error.html", title="Not found", status=404,
                               message=f"There is no request {request_id} on this contract."), 404
    data = svg = row = terms = delivery = None
    measured: list[dict[str, Any]] = []
    if info is not None:
        data, error = attempt(lambda: queries.stack(g, info))
        svg = queries.stack_svg(g, info, data) if data else None
        chain_now, error2 = attempt(g.chain.now, int(time.time()))
        terms, error3 = attempt(lambda: g.reads.terms(info, fresh=True))
        error = error or error2 or error3
        if terms is not None:
            row = queries.request_row(g, info, chain_now=chain_now, terms=terms)
            if terms.metered:
                delivery, error4 = attempt(lambda: queries.delivery_table(g, info, terms, chain_now))
                error = error or error4
                measured, error5 = attempt(lambda: queries.delivery_records(g, request_id), [])
                error = error or error5
    openadr, error6 = attempt(lambda: queries.openadr_dispatch(g, request_id))
    error = error or error6
    return render_template("utility/request.html", info=info, row=row, terms=terms, delivery=delivery,
                           measured=measured, openadr=openadr,
                           stack=data, svg=svg, error=error, action_form=PlainForm(), delivery_form=DeliveryForm(),
                           request_id=request_id, dev_chain=attempt(g.chain.is_dev, False)[0]), code


@bp.post("/requests/<int:request_id>/settle")
def settle(request_id: int) -> Any:
    g = gw()
    if not PlainForm().validate_on_submit():
        return request_detail(request_id, code=400)
    try:
        info = gw().reads.request(request_id)
        if info is None:
            flash(f"There is no request {request_id}.", "error")
            return redirect(url_for("utility.dashboard"))
        if info.status != Status.OPEN:
            state = "cancelled" if info.status == Status.CANCELLED else "past selection: its winners are selected"
            flash(f"Request {request_id} is already {state}.", "info")
            return redirect(url_for("utility.request_detail", request_id=request_id))
        now = g.chain.now()
        reveal_deadline = g.reads.terms(info).reveal_deadline
        if now <= info.bidding_deadline:
            flash(f"Bidding on request {request_id} is open until "
                  f"{time.strftime('%H:%M:%S', time.localtime(info.bidding_deadline))}; select winners after that.", "error")
            return request_detail(request_id, code=409)
        if reveal_deadline and now <= reveal_deadline:
            flash(f"Sealed bids of request {request_id} are revealed until "
                  f"{time.strftime('%H:%M:%S', time.localtime(reveal_deadline))}; select winners after that.", "error")
            return request_detail(request_id, code=409)
        session = g.chain.session()
        signer = g.signers.utility()
        g.chain.nudge(max(info.bidding_deadline, reveal_deadline))
        session.dr.select_winners(signer, request_id)
        selected = g.reads.request(request_id)
    except TransactionFailed as exc:
        if exc.error == "BiddingStillOpen":
            flash("The chain's clock has not passed the bidding deadline yet; try again in a few seconds.", "error")
        else:
            flash(f"Selecting winners failed: {one_line(exc)}", "error")
        return request_detail(request_id, code=409)
    except USER_ERRORS as exc:
        flash(f"Selecting winners failed: {one_line(exc)}", "error")
        return request_detail(request_id, code=409)
    flash(f"Winners of request {request_id} selected at {g.unit.format(selected.clearing_price)}: "
          f"{selected.accepted_watts / 1000:.3f} kW accepted, {g.unit.amount(selected.reserved)} promised, "
          f"refund {g.unit.amount(selected.budget - selected.reserved)}.", "ok")
    return redirect(url_for("utility.request_detail", request_id=request_id))


def _hms(ts: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(int(ts)))


def _refusal(exc: TransactionFailed, who: str) -> str:
    """A contract refusal of confirm / dispute / settle as one line a person can act on."""
    args = exc.error_args
    if exc.error == "DisputeWindowClosed" and args:
        return f"the dispute window closed at {_hms(args[0])}; settle {who} instead"
    if exc.error == "NotAWinner":
        return f"{who} won nothing in this request: there is no delivery to meter; settle it instead"
    if exc.error == "TooEarly" and args:
        return f"too early: {who} can be settled from {_hms(args[0])}"
    if exc.error == "WrongStage" and len(args) == 2:
        from demand_response.contract import Stage

        try:
            stage = Stage(int(args[1])).name.lower()
        except ValueError:
            stage = str(args[1])
        return f"{who} is at stage {stage!r}, which does not allow that"
    if exc.error == "NotSettled":
        return "winners are not selected yet"
    if exc.error == "NotMetered":
        return "this request is not paid on metered delivery"
    if exc.error == "NotUtility":
        return "only the contract's utility may do that"
    return one_line(exc)


DELIVERY_ACTIONS = {"confirm": "Confirm", "dispute": "Dispute", "settle": "Settlement"}


@bp.post("/requests/<int:request_id>/delivery/<action>")
def delivery(request_id: int, action: str) -> Any:
    """Confirm or dispute a participant's meter report, or settle it after the windows."""
    g = gw()
    if action not in DELIVERY_ACTIONS:
        abort(404)
    form = DeliveryForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            return request_detail(request_id, code=400)
        problems = "; ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items())
        flash(f"{DELIVERY_ACTIONS[action]} not sent: {problems}", "error")
        return request_detail(request_id, code=400)
    if action == "dispute" and form.metered_kw.data is None:
        flash("Dispute not sent: enter the metered reduction in kW (below the consumer's report).", "error")
        return request_detail(request_id, code=400)
    consumer = form.consumer.data
    who = f"{consumer[:10]}…"
    try:
        info = gw().reads.request(request_id)
        if info is None:
            flash(f"There is no request {request_id}.", "error")
            return redirect(url_for("utility.dashboard"))
        session = g.chain.session()
        signer = g.signers.utility() if action != "settle" else g.signers.signer("utility")
        if action == "confirm":
            session.dr.confirm_delivery(signer, request_id, consumer)
        elif action == "dispute":
            session.dr.dispute_delivery(signer, request_id, consumer, int(form.metered_kw.data * 1000))
        else:
            terms = g.reads.terms(info)
            g.chain.nudge(max(terms.report_deadline, terms.dispute_deadline))
            session.dr.settle_delivery(signer, request_id, consumer)
        participant = g.reads.participant(request_id, consumer)
    except TransactionFailed as exc:
        flash(f"{DELIVERY_ACTIONS[action]} failed: {_refusal(exc, who)}", "error")
        return request_detail(request_id, code=409)
    except USER_ERRORS as exc:
        flash(f"{DELIVERY_ACTIONS[action]} failed: {one_line(exc)}", "error")
        return request_detail(request_id, code=409)
    done = {"confirm": "confirmed", "dispute": "disputed", "settle": "settled"}[action]
    flash(f"Delivery of {consumer} {done}: {participant.delivered_watts / 1000:.3f} kW of "
          f"{participant.accepted_watts / 1000:.3f} kW accepted.", "ok")
    return redirect(url_for("utility.request_detail", request_id=request_id))


@bp.post("/withdraw")
def withdraw() -> Any:
    g = gw()
    if not PlainForm().validate_on_submit():
        return _render_dashboard(code=400)
    try:
        signer = g.signers.utility()
        history = queries.utility_history(g)
        owed = queries.owed_by_currency(g, signer.address, _tokens(history))
        if not owed:
            flash("Nothing to withdraw.", "info")
            return redirect(url_for("utility.dashboard"))
        for entry in owed:  # one withdrawal per currency
            g.chain.session().dr.withdraw(signer, entry["token"])
    except USER_ERRORS as exc:
        flash(f"Withdrawal failed: {one_line(exc)}", "error")
        return _render_dashboard(code=409)
    flash(f"Withdrew {' + '.join(entry['display'] for entry in owed)} of refunds.", "ok")
    return redirect(url_for("utility.dashboard"))


@bp.post("/unlock")
def unlock() -> Any:
    form = UnlockForm()
    if not form.validate_on_submit():
        return _render_dashboard(code=400)
    try:
        address = gw().signers.unlock("utility", form.password.data)
    except AccountError as exc:
        flash(sentence(one_line(exc)), "error")
        return _render_dashboard(code=400)
    flash(f"Utility account {address} unlocked until the server stops.", "ok")
    return redirect(url_for("utility.dashboard"))
