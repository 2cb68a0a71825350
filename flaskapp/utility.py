"""Utility dashboard: post requests with a payout preview, watch bid stacks, settle, history.

Only served when the app is configured with the utility account (``DR_ROLE``; see
docs/web.md). Every other visitor gets a 403 page that says how to enable it.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, url_for

from demand_response.accounts import AccountError
from demand_response.chain import TransactionFailed
from demand_response.config import DEV_CHAIN_IDS
from demand_response.contract import Status
from demand_response.market import PricingRule

from . import presenters
from .forms import PlainForm, RequestForm, UnlockForm
from .services import USER_ERRORS, Gateway, RoleDisabled, attempt, one_line
from .units import fmt_eth

bp = Blueprint("utility", __name__, url_prefix="/utility")

DISABLED = ("The utility dashboard is only available when this server is configured with the utility "
            "account: set UTILITY_ACCOUNT (and UTILITY_ACCOUNT_PASS) or UTILITY_PRIVATE_KEY, or DR_ROLE=utility "
            "on a local dev chain. See docs/web.md.")


def gw() -> Gateway:
    """This app's gateway."""
    return current_app.extensions["dr"]


@bp.before_request
def _role() -> None:
    if not gw().utility_enabled:
        raise RoleDisabled(DISABLED)


def _form_values(form: RequestForm) -> dict[str, Any]:
    g = gw()
    return {
        "target_kw": form.target_kw.data, "bidding_s": form.bidding_s.data, "delay_min": form.delay_min.data,
        "duration_min": form.duration_min.data, "cap_wei": g.unit.to_wei(form.cap.data),
        "budget_wei": int(form.budget_eth.data * 10**18) if form.budget_eth.data is not None else None,
        "rule": form.rule.data,
    }


def _render_dashboard(form: RequestForm | None = None, preview: dict[str, Any] | None = None, code: int = 200) -> Any:
    g = gw()
    chain = g.chain_status()
    account, utility_error = None, None
    if chain.connected:
        signer, utility_error = attempt(g, g.check_utility)
        account = signer.address if signer else g.account("utility")
    history, history_error = ({"requests": [], "totals": None}, None)
    stacks: dict[int, str] = {}
    owed = None
    if chain.connected:
        history, history_error = attempt(g, lambda: presenters.utility_history(g), {"requests": [], "totals": None})
        for index, row in enumerate(history["requests"]):
            if row["state"] in ("open", "closed") or index == 0:
                info, _ = attempt(g, lambda rid=row["id"]: g.session().dr.get_request(rid))
                if info is not None:
                    stacks[row["id"]], _ = attempt(g, lambda i=info: presenters.stack_svg(g, i), "")
        if account:
            owed, _ = attempt(g, lambda: g.session().dr.owed(account))
    if form is None:
        form = RequestForm(formdata=None)
        if not form.cap.data:
            form.cap.data = g.unit.from_wei(128 * 10**12)
    return render_template(
        "utility/dashboard.html", chain=chain, account=account, utility_error=utility_error, form=form,
        preview=preview, history=history, history_error=history_error, stacks=stacks, owed=owed,
        action_form=PlainForm(), unlock_form=UnlockForm(), locked=g.needs_password("utility"),
    ), code


@bp.get("/")
def dashboard() -> Any:
    return _render_dashboard()


@bp.post("/requests")
def create_request() -> Any:
    g = gw()
    form = RequestForm()
    if not form.validate_on_submit():
        return _render_dashboard(form, code=400)
    values = _form_values(form)
    try:
        preview = presenters.plan_preview(g, **values)
    except ValueError as exc:
        form.budget_eth.errors.append(_sentence(str(exc))) if "budget" in str(exc) else form.cap.errors.append(_sentence(str(exc)))
        return _render_dashboard(form, code=400)
    if form.preview.data or not form.post.data:
        return _render_dashboard(form, preview=preview)
    try:
        signer = g.check_utility()
        dr = g.session().dr
        rule = PricingRule.PAY_AS_BID if values["rule"] == "pay_as_bid" else PricingRule.UNIFORM
        now = int(time.time())
        chain_now = int(g.session().w3.eth.get_block("latest")["timestamp"])
        now = max(now, chain_now)
        deadline = now + values["bidding_s"]
        start = deadline + values["delay_min"] * 60
        request_id, receipt = dr.request_reduction(
            signer, preview["target_watts"], start, start + preview["duration_s"], deadline,
            int(preview["cap_wei_per_kwh"]), rule, budget=int(preview["budget_wei"]),
        )
    except USER_ERRORS as exc:
        flash(f"The request was not posted: {one_line(exc)}", "error")
        return _render_dashboard(form, preview=preview, code=409)
    tx = "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x")
    flash(f"Posted request {request_id}: {preview['display']['target']}, bidding closes at "
          f"{time.strftime('%H:%M:%S', time.localtime(deadline))} (tx {tx}).", "ok")
    return redirect(url_for("utility.request_detail", request_id=request_id))


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int, code: int = 200) -> Any:
    g = gw()
    info, error = attempt(g, lambda: _get(request_id))
    if info is None and error is None:
        return render_template("error.html", title="Not found", status=404,
                               message=f"There is no request {request_id} on this contract."), 404
    data = svg = None
    if info is not None:
        data, error = attempt(g, lambda: presenters.stack(g, info))
        svg = presenters.stack_svg(g, info, data) if data else None
    return render_template("utility/request.html", info=info, row=presenters.request_dict(g, info) if info else None,
                           stack=data, svg=svg, error=error, action_form=PlainForm(), request_id=request_id,
                           dev_chain=attempt(g, g.is_dev_chain, False)[0]), code


def _get(request_id: int) -> Any:
    dr = gw().session().dr
    if not 1 <= request_id <= dr.request_count():
        return None
    return dr.get_request(request_id)


@bp.post("/requests/<int:request_id>/settle")
def settle(request_id: int) -> Any:
    g = gw()
    if not PlainForm().validate_on_submit():
        return request_detail(request_id, code=400)
    try:
        info = _get(request_id)
        if info is None:
            flash(f"There is no request {request_id}.", "error")
            return redirect(url_for("utility.dashboard"))
        if info.status != Status.OPEN:
            flash(f"Request {request_id} is already {info.status.name.lower()}.", "info")
            return redirect(url_for("utility.request_detail", request_id=request_id))
        now = int(time.time())
        if now <= info.bidding_deadline:
            flash(f"Bidding on request {request_id} is open until "
                  f"{time.strftime('%H:%M:%S', time.localtime(info.bidding_deadline))}; settle after that.", "error")
            return request_detail(request_id, code=409)
        session = g.session()
        signer = g.check_utility()
        latest = int(session.w3.eth.get_block("latest")["timestamp"])
        if latest <= info.bidding_deadline and session.chain_id in DEV_CHAIN_IDS:
            # An idle instamine dev chain makes no blocks: mine one so its clock passes the deadline.
            session.w3.provider.make_request("evm_mine", [])
        session.dr.select_winners(signer, request_id)
        settled = session.dr.get_request(request_id)
    except TransactionFailed as exc:
        if exc.error == "BiddingStillOpen":
            flash("The chain's clock has not passed the bidding deadline yet; try again in a few seconds.", "error")
        else:
            flash(f"Settlement failed: {one_line(exc)}", "error")
        return request_detail(request_id, code=409)
    except USER_ERRORS as exc:
        flash(f"Settlement failed: {one_line(exc)}", "error")
        return request_detail(request_id, code=409)
    flash(f"Request {request_id} settled at {g.unit.format(settled.clearing_price)}: "
          f"{settled.accepted_watts / 1000:.3f} kW accepted, refund {fmt_eth(settled.budget - settled.reserved)}.", "ok")
    return redirect(url_for("utility.request_detail", request_id=request_id))


@bp.post("/withdraw")
def withdraw() -> Any:
    g = gw()
    if not PlainForm().validate_on_submit():
        return _render_dashboard(code=400)
    try:
        signer = g.check_utility()
        dr = g.session().dr
        owed = dr.owed(signer.address)
        if not owed:
            flash("Nothing to withdraw.", "info")
            return redirect(url_for("utility.dashboard"))
        dr.withdraw(signer)
    except USER_ERRORS as exc:
        flash(f"Withdrawal failed: {one_line(exc)}", "error")
        return _render_dashboard(code=409)
    flash(f"Withdrew {fmt_eth(owed)} of refunds.", "ok")
    return redirect(url_for("utility.dashboard"))


@bp.post("/unlock")
def unlock() -> Any:
    form = UnlockForm()
    if not form.validate_on_submit():
        return _render_dashboard(code=400)
    try:
        address = gw().unlock("utility", form.password.data)
    except AccountError as exc:
        flash(_sentence(one_line(exc)), "error")
        return _render_dashboard(code=400)
    flash(f"Utility account {address} unlocked until the server stops.", "ok")
    return redirect(url_for("utility.dashboard"))
