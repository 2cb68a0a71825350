"""Consumer console: bids, daemon control, open requests, results and withdrawals."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from demand_response.accounts import AccountError
from demand_response.bids import BidsError, Offer, load_bids, save_bids
from demand_response.chain import redact_url
from demand_response.contract import Status
from demand_response.market import snap_price_up
from demand_response.units import format_duration

from . import presenters, queries
from .errors import USER_ERRORS, RoleDisabled, attempt, one_line, sentence
from .services import web as gw
from .charts import merit_order_svg
from .daemon import DaemonManager
from .forms import BidsForm, DaemonStartForm, FillForm, PlainForm, UnlockForm, bids_money

bp = Blueprint("consumer", __name__, url_prefix="/consumer")



def daemon() -> DaemonManager:
    """This app's daemon manager."""
    return current_app.extensions["dr_daemon"]


@bp.before_request
def _role() -> None:
    if not gw().config.consumer_enabled:
        raise RoleDisabled("The consumer console is switched off on this server (DR_ROLE=utility).")


def consumer_status() -> dict[str, Any]:
    """Account, balance, owed, chain and daemon: what the status panel and /api/status show."""
    g = gw()
    chain = g.chain.status()
    account = g.signers.address("consumer")
    balance = owed = external = None
    if chain.connected and account:
        external, _ = attempt(lambda: daemon().holder(g.settings, chain.chain_id, account))
        (balance, owed), _ = attempt(lambda: (g.reads.balance(account), g.reads.owed(account)),
                                     (None, None))
    return {"chain": chain.as_dict(), "account": account, "balance_wei": None if balance is None else str(balance),
            "owed_wei": None if owed is None else str(owed), "locked": g.signers.needs_password("consumer"),
            "daemon": daemon().status(external), "server_time": int(time.time())}


# -- console ---------------------------------------------------------------------------


def _render_console(start_form: DaemonStartForm | None = None, unlock_form: UnlockForm | None = None,
                    code: int = 200) -> Any:
    g = gw()
    status = consumer_status()
    requests, req_error = [], None
    if status["chain"]["connected"]:
        requests, req_error = attempt(lambda: queries.consumer_requests(g, status["account"]), [])
    start_form = start_form or DaemonStartForm(source=g.settings.bids_source if g.settings.bids_source in ("file", "gridsim") else "file")
    # Bids from the file go only to requests in its currency; the simulation's fit any request.
    source = status["daemon"].get("bids_source") if status["daemon"].get("running") else start_form.source.data
    bids_currency = g.bids_unit.symbol if source == "file" else None
    return render_template(
        "consumer/console.html", status=status, requests=requests, req_error=req_error, bids_currency=bids_currency,
        start_form=start_form, stop_form=PlainForm(), unlock_form=unlock_form or UnlockForm(),
        auto_withdraw=g.settings.auto_withdraw,
    ), code


@bp.get("/")
def console() -> Any:
    return _render_console()


@bp.post("/daemon/start")
def daemon_start() -> Any:
    g = gw()
    form = DaemonStartForm()
    if not form.validate_on_submit():
        return _render_console(start_form=form, code=400)
    if g.signers.needs_password("consumer"):
        if not form.password.data:
            form.password.errors.append("Enter the keystore password to start the daemon.")
            return _render_console(start_form=form, code=400)
        try:
            g.signers.unlock("consumer", form.password.data)
        except AccountError as exc:
            form.password.errors.append(sentence(one_line(exc)))
            return _render_console(start_form=form, code=400)
    source = form.source.data
    try:
        if source == "file":
            try:
                load_bids(g.settings.bids_file)
            except BidsError as exc:
                form.source.errors.append(f"Save valid bids first: {one_line(exc)}")
                return _render_console(start_form=form, code=400)
            from demand_response.consumer import file_bids

            provider = file_bids(g.settings.bids_file)
        else:
            from demand_response.consumer import gridsim_bids

            provider = gridsim_bids(household_index=g.config.household, seed=g.config.gridsim_seed)
        session = g.chain.session()
        signer = g.signers.signer("consumer")
        daemon().start(session, signer, provider, source, g.settings, redact_url(g.settings.rpc_url))
    except USER_ERRORS as exc:
        flash(f"Could not start the daemon: {one_line(exc)}", "error")
        return _render_console(start_form=form, code=409)
    flash(f"Daemon started for {signer.address}; it bids on every new request.", "ok")
    return redirect(url_for("consumer.console"))


@bp.post("/daemon/stop")
def daemon_stop() -> Any:
    if not PlainForm().validate_on_submit():
        return _render_console(code=400)
    if daemon().stop():
        flash("Daemon stopped.", "ok")
    else:
        flash("The daemon was not running.", "info")
    return redirect(url_for("consumer.console"))


@bp.post("/unlock")
def unlock() -> Any:
    form = UnlockForm()
    if not form.validate_on_submit():
        return _render_console(unlock_form=form, code=400)
    try:
        address = gw().signers.unlock("consumer", form.password.data)
    except AccountError as exc:
        form.password.errors.append(sentence(one_line(exc)))
        flash(sentence(one_line(exc)), "error")
        if request.form.get("next", "").endswith("/results"):
            return _render_results(code=400)
        return _render_console(unlock_form=form, code=400)
    flash(f"Account {address} unlocked until the server stops.", "ok")
    target = request.form.get("next", "")
    if not (target.startswith("/") and not target.startswith("//")):
        target = url_for("consumer.console")  # only local paths: no open redirect
    return redirect(target)



# -- bids ------------------------------------------------------------------------------


def _rows_from_offers(offers: list[tuple[int, int]]) -> list[dict[str, Any]]:
    unit = gw().bids_unit
    return [{"kw": Decimal(w) / 1000, "price": Decimal(unit.plain(p))} for w, p in offers]


def _form_offers(form: BidsForm) -> list[Offer]:
    unit = bids_money()  # the form's chosen currency (the file's by default)
    return [Offer(int(row.kw.data * 1000), unit.parse_price(row.price.data), unit.currency) for row in form.rows]


def _curve_svg(offers: list[tuple[int, int]], cap: int | None, unit: Any) -> str:
    return merit_order_svg([(p, w) for w, p in offers], unit, title="Your bid curve", cap=cap, chart_id="curve")


def _current_request() -> Any:
    """The open request bids would go to next (None when there is none or no chain)."""
    g = gw()
    requests, _ = attempt(lambda: g.reads.recent_requests(10), [])
    now = int(time.time())
    live = [r for r in requests if r.status == Status.OPEN and r.bidding_deadline >= now]
    return live[-1] if live else None


def _render_bids(form: BidsForm, code: int = 200, offers: list[tuple[int, int]] | None = None,
                 load_error: str | None = None, fleet: bool = False) -> Any:
    g = gw()
    unit = bids_money()
    current = _current_request()
    row = attempt(lambda: queries.request_row(g, current))[0] if current else None
    # A request in another currency than the bids gets none of them (the daemon's rule): its
    # cap is never compared with prices in another currency.
    other_currency = row is not None and row["currency"] != unit.symbol
    cap = current.max_price if current and not other_currency else None
    if offers is None:
        offers = []
        for form_row in form.rows:
            try:
                offers.append((int(Decimal(form_row.kw.data) * 1000), unit.parse_price(form_row.price.data)))
            except Exception:
                continue
    over_cap = [i for i, (_, p) in enumerate(offers) if cap and p > cap]
    cost, cost_error = _participation_cost(row, unit)  # one fee quote per page view
    duration = (current.event_end - current.event_start) if current else 3600
    # With RELAY_URL the utility's relay places open bids and pays their gas: the daemon bids
    # without the fee check, so the page flags nothing either (sealed bids are not relayed).
    relayed = bool(g.settings.get("RELAY_URL")) and not (row and row["terms"]["sealed"])
    warnings = presenters.bid_warnings(offers, duration, cost.cost, g.settings.get("BID_MARGIN") or "0",
                                       unit) if cost and not relayed else {}
    return render_template(
        "consumer/bids.html", form=form, fill_form=FillForm(), chart=_curve_svg(offers, cap, unit),
        current=row, other_currency=other_currency, bids_unit=unit, cap=cap,
        over_cap=over_cap, warnings=warnings, cost=cost, cost_error=cost_error, relayed=relayed,
        duration=format_duration(duration),
        load_error=load_error, fleet=fleet, bids_file=str(g.settings.bids_file), max_rows=64,
    ), code


def _participation_cost(row: dict[str, Any] | None, unit: Any) -> tuple[Any, str | None]:
    """The cost of taking part in the open request (or an open-market event) at today's fees,
    in ``unit`` (the bids' money), and why it is unknown (chain down, no fee oracle, no rate
    for bids in a token)."""
    g = gw()
    metered = bool(row and row["terms"]["metered"])
    cost, error = attempt(lambda: g.reads.participation_cost(metered, unit))
    if cost is None and error is None:
        error = "the fee quote is not available"
    return cost, error


@bp.route("/bids", methods=["GET", "POST"])
def bids() -> Any:
    g = gw()
    if request.method == "GET":
        offers, error, fleet = queries.saved_offers(g)
        form = BidsForm(formdata=None, data={"rows": _rows_from_offers(offers) or [{}]})
        return _render_bids(form, offers=offers, load_error=error, fleet=fleet)
    form = BidsForm()
    remove = request.form.get("remove")
    if form.add.data or remove is not None:
        # Add or remove a row (the page's script does this without a round trip).
        if not form.validate_on_submit() and "csrf_token" in form.errors:
            return _render_bids(form, code=400)
        rows = [{"kw": r.kw.data, "price": r.price.data} for r in form.rows]
        if remove is not None and remove.isdigit() and int(remove) < len(rows):
            rows.pop(int(remove))
        if form.add.data and len(rows) < 64:
            rows.append({})
        fresh = BidsForm(formdata=None, data={"rows": rows or [{}]})
        return _render_bids(fresh)
    if not form.validate_on_submit():
        return _render_bids(form, code=400)
    try:
        offers = _form_offers(form)
        save_bids(g.settings.bids_file, offers, source="web form")
    except (BidsError, OSError) as exc:
        form.form_errors.append(f"Not saved: {one_line(exc)}")
        return _render_bids(form, code=400)
    flash(f"Saved {len(offers)} bid(s) to {g.settings.bids_file}. The daemon uses them for the next request.", "ok")
    return redirect(url_for("consumer.bids"))


@bp.post("/bids/fill")
def fill() -> Any:
    """Fill the form (not the file) from gridsim, for the current or the next request."""
    g = gw()
    if not FillForm().validate_on_submit():
        offers, error, fleet = queries.saved_offers(g)
        return _render_bids(BidsForm(formdata=None, data={"rows": _rows_from_offers(offers) or [{}]}), code=400)
    if g.bids_unit.currency != g.unit.currency:
        flash(f"The household simulation prices in {g.unit.symbol}, but your bids are in {g.bids_unit.symbol}; "
              "enter them by hand.", "info")
        return redirect(url_for("consumer.bids"))
    current = _current_request()
    if current is not None and current.in_token:
        current = None  # a request in a token: the simulation's prices are in ETH
    if current is not None:
        window = {"event_start": current.event_start, "event_end": current.event_end,
                  "max_price_wei_per_kwh": current.max_price}
        cap, what = current.max_price, f"request {current.request_id}"
    else:
        start = (int(time.time()) // 3600 + 1) * 3600
        window = {"event_start": start, "event_end": start + 3600}
        cap, what = None, f"a one-hour event at {time.strftime('%H:%M', time.localtime(start))}"
    try:
        from demand_response.gridsim import bids_for_request

        pairs = bids_for_request(window, household_index=g.config.household, seed=g.config.gridsim_seed)
    except Exception as exc:  # ImportError (numpy missing) or a simulation error
        flash(f"The household simulation is not available: {type(exc).__name__}: {one_line(exc)}", "error")
        return redirect(url_for("consumer.bids"))
    offers = []
    for watts, price in pairs:
        price = int(price)
        step = 10 ** max(0, g.unit.decimals - 6)  # a price people read: whole millionths of the currency
        price = snap_price_up(price, cap) if cap else -(-price // step) * step
        offers.append((int(watts), price))
    offers = offers[:64]
    if not offers:
        flash(f"The simulated household has no flexibility for {what}; enter bids by hand.", "info")
        return redirect(url_for("consumer.bids"))
    form = BidsForm(formdata=None, data={"rows": _rows_from_offers(offers)})
    flash(f"Filled {len(offers)} bid(s) from household {g.config.household} for {what}. Review them, then save.", "ok")
    return _render_bids(form, offers=offers)


# -- results ---------------------------------------------------------------------------


@bp.get("/results")
def results() -> Any:
    return _render_results()


def _render_results(code: int = 200) -> Any:
    g = gw()
    account = g.signers.address("consumer")
    history, error = None, None
    if account:
        history, error = attempt(lambda: queries.consumer_history(g, account))
    else:
        _, error = attempt(lambda: g.chain.session())
        error = error or "no consumer account is configured; set CONSUMER_ACCOUNT (see docs/web.md)"
    records, records_error = queries.results_records(g, account)
    records, records_delivery = presenters.record_rows(records, g.unit)
    measured: dict[int, list[dict[str, Any]]] = {}
    for row in (history or {}).get("requests", []):
        if account and row["request"]["terms"]["metered"]:
            rid = row["request"]["id"]
            found, _ = attempt(lambda rid=rid: queries.delivery_records(g, rid, account, f"measured-{rid}"), [])
            if found:
                measured[rid] = found
    return render_template("consumer/results.html", history=history, error=error, records=records,
                           records_delivery=records_delivery, measured=measured,
                           records_error=records_error, withdraw_form=PlainForm(),
                           results_file=str(g.settings.results_file), account=account,
                           locked=g.signers.needs_password("consumer"), unlock_form=UnlockForm()), code


@bp.post("/withdraw")
def withdraw() -> Any:
    """Claim unclaimed winnings (recording them in results.json), then withdraw everything owed."""
    from demand_response.consumer import ConsumerAgent
    from demand_response.results import ResultsFile

    g = gw()
    if not PlainForm().validate_on_submit():
        return _render_results(code=400)
    try:
        session = g.chain.session()
        signer = g.signers.signer("consumer")
        dr = session.dr
        agent = ConsumerAgent(dr, signer, lambda info: (), ResultsFile(g.settings.results_file), {},
                              chain_id=session.chain_id, auto_withdraw=False, label=f"web {signer.address[:10]}")
        claimed = 0
        for info in g.reads.recent_requests():
            if info.status != Status.SETTLED or g.reads.terms(info).metered:
                continue  # a metered request pays on delivery (settleDelivery), not by claim
            mine = g.reads.bids_of(info.request_id, signer.address)
            pending = [b.bid_id for b in mine if b.accepted_watts and not b.claimed]
            if not pending:
                continue
            # Claims and records, like the daemon does; from the selection's block, so the wait for
            # the utility's payment (PAY_GRACE_S) is over for a selection made a while ago.
            agent.handle_settled(info.request_id, g.reads.selection(info.request_id), info)
            still = [b.bid_id for b in g.reads.bids_of(info.request_id, signer.address)
                     if b.accepted_watts and not b.claimed]
            if still:
                dr.claim(signer, info.request_id, still)
            claimed += 1
        tokens = [info.token for info in g.reads.recent_requests() if info.in_token]
        owed = queries.owed_by_currency(g, signer.address, tokens)  # ether and every token, each its own
        if not owed:
            flash(f"Nothing to withdraw: you are owed 0 {g.unit.symbol}.", "info")
            return redirect(url_for("consumer.results"))
        receipts = [dr.withdraw(signer, entry["token"]) for entry in owed]
    except AccountError as exc:
        flash(f"Withdrawal failed: {one_line(exc)}", "error")
        return _render_results(code=409)
    except USER_ERRORS as exc:
        flash(f"Withdrawal failed: {one_line(exc)}", "error")
        return _render_results(code=409)
    txs = ", ".join("0x" + bytes(r["transactionHash"]).hex().removeprefix("0x") for r in receipts)
    flash(f"Withdrew {' + '.join(entry['display'] for entry in owed)} to {signer.address} (tx {txs}).", "ok")
    return redirect(url_for("consumer.results"))
