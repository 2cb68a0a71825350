"""``dr utility request|run|status``: post reduction requests, settle them, list them."""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._common import UserError, ask, calendar_from, calendar_options, connection_options, decimal_arg, number, rpc_name, serving_metrics, \
    settings_from, stop_on_signals
from ..units import ETH, UnitError, parse_amount, parse_price


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr utility request``, ``run`` and ``status``."""
    p = commands.add_parser("utility", help="request reductions, settle them, show status")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    _add_request(actions)
    q = actions.add_parser("run", help="settle open requests at their deadlines and withdraw refunds")
    connection_options(q)
    q.add_argument("--request-id", type=int, action="append", help="only these requests (repeatable)")
    q.add_argument("--exit-when-idle", action="store_true", help="exit once no watched request is open")
    q.add_argument("--no-withdraw", action="store_true", help="leave refunds in the contract")
    q.add_argument("--sponsor-book", action="store_true",
                   help="sponsor each new request's book as soon as it is heard, so no bidder pays a book "
                        "slot's first write (default SPONSOR_BOOK, else off; docs/gas.md)")
    source = q.add_mutually_exclusive_group()
    source.add_argument("--meter", metavar="FILE",
                        help="the utility's meter data (meter.json format): confirm reports it supports, "
                             "dispute the rest; without it reports become final at the dispute deadline")
    source.add_argument("--meter-db", metavar="DB",
                        help="interval meter data (SQLite file or postgresql:// URL; METER_DB; see `dr meter "
                             "import`): each winner's delivery is computed with --baseline (meter id = its "
                             "checksummed address), reports up to it confirmed, the rest disputed, and the "
                             "record written to RECORDS_DIR")
    q.add_argument("--baseline", metavar="METHOD",
                   help="with --meter-db: caiso-10in10 (default; BASELINE_METHOD), pjm-high4of5 or "
                        "meter-before-after (docs/mv.md compares them)")
    q.add_argument("--portfolio", action="store_true",
                   help="with --meter-db: settle on the winners' summed delivery, each paid a share "
                        "pro rata to its accepted kW (far more precise than one home's baseline)")
    calendar_options(q)
    q.add_argument("--tolerance-kw", type=decimal_arg, default=Decimal(0),
                   help="with --meter-db: a report up to this much above the computed figure is still "
                        "confirmed (default 0)")
    q.add_argument("--vtn-port", type=int, metavar="PORT",
                   help="serve OpenADR 2.0b (a VTN, the 'openadr' extra) on this port (VTN_PORT): notices of new "
                        "requests, dispatches to the winners, cancellations; with --meter-db the VENs' "
                        "telemetry goes into the meter store")
    q.add_argument("--vtn-id", help="the VTN's id (VTN_ID; default DemandReductionVTN)")
    q.add_argument("--vtn-host", default="127.0.0.1",
                   help="address the VTN listens on (default 127.0.0.1: put a TLS proxy in front of it)")
    q.add_argument("--state-dir", help="where the listener cursor is kept (default database/)")
    q.add_argument("--poll-interval", type=float, help="seconds between polls (default 0.5)")
    q.set_defaults(func=settle)
    q = actions.add_parser("status", help="list requests and their states")
    connection_options(q)
    q.set_defaults(func=status)


def _add_request(actions: argparse._SubParsersAction) -> None:
    q = actions.add_parser(
        "request", help="post a reduction request (prompts when no flags are given)",
        description="Plan a request (demand_response.planner: whole watts, exact ETH, the cap lowered onto "
                    "the contract's price grid, reveals closing by the event start), preview what it may "
                    "pay, and post it. Without --target-kw it asks for each value.")
    connection_options(q)
    q.add_argument("--target-kw", type=decimal_arg, help="reduction wanted, kW (whole watts: 3 decimals at most)")
    q.add_argument("--bidding-window", type=int, default=60, help="seconds until bidding closes (default 60)")
    q.add_argument("--event-delay", type=int, default=0, help="seconds from bidding close to event start (default 0)")
    q.add_argument("--event-duration", type=int, default=3600, help="event length, seconds (default 3600)")
    cap = q.add_mutually_exclusive_group()
    cap.add_argument("--max-price-wei", type=int, help="price cap, wei per kWh")
    cap.add_argument("--max-price-eth", type=decimal_arg, help="price cap, ETH per kWh")
    q.add_argument("--budget-eth", type=decimal_arg, help="budget to escrow, ETH (sets the cap when no cap is given)")
    q.add_argument("--token", metavar="ADDRESS",
                   help="settle in this ERC-20 token (a stablecoin; default SETTLEMENT_TOKEN, else ether): the "
                        "budget is approved and escrowed in it, --max-price and --budget are in its units")
    cap.add_argument("--max-price", metavar="PRICE",
                     help="price cap per kWh in the request's currency (\"0.35\" or \"0.35 USDC/kWh\")")
    q.add_argument("--budget", metavar="AMOUNT", help="budget in the request's currency (\"250\" or \"250 USDC\")")
    q.add_argument("--rule", default="uniform", help="uniform (default) or pay-as-bid")
    q.add_argument("--reveal-window", type=int, default=0, metavar="S",
                   help="sealed bids: seconds after bidding closes for reveals (default 0: open bids); "
                        "the reveals must close by the event start: --event-delay at least S")
    q.add_argument("--report-window", type=int, default=0, metavar="S",
                   help="pay on measured delivery: seconds after the event for meter reports (default 0: off)")
    q.add_argument("--dispute-window", type=int, default=0, metavar="S",
                   help="metered: seconds after the report deadline to confirm or dispute (default 0)")
    q.add_argument("--bond-eth", type=decimal_arg,
                   help="bond per consumer, ETH: forfeited if sealed bids are not revealed, and the "
                        "shortfall penalty of metered requests (default 0)")
    q.add_argument("--sponsor-book", action="store_true",
                   help="after posting, pay ahead for every book slot's first write (about 608,000 gas) so "
                        "no bidder pays it (default SPONSOR_BOOK, else off; docs/gas.md)")
    q.add_argument("--from-sim", action="store_true",
                   help="target and window from the gridsim feeder simulation (needs the 'grid' extra)")
    q.add_argument("--sim-seed", type=int, default=0, help="--from-sim: population seed")
    q.add_argument("--sim-outdoor-max-c", type=float, default=38.0, help="--from-sim: the day's peak temperature")
    q.set_defaults(func=request)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """(settings, session): the chain and the contract, checked."""
    from ..session import open_session

    settings = settings_from(args, state_dir=getattr(args, "state_dir", None),
                             poll_interval=getattr(args, "poll_interval", None))
    return settings, open_session(settings)


def _chain_time(session: Any) -> int:
    return int(session.w3.eth.get_block("latest")["timestamp"])


# -- request ----------------------------------------------------------------------------------


def _apply_feeder_suggestion(args: argparse.Namespace, chain_now: int) -> int:
    """Fill target and window of ``--from-sim`` from the feeder simulation.

    Returns the time the plan is anchored to (taken after the simulation, which takes seconds).
    """
    from .simulate import feeder_suggestion

    print("Simulating the feeder to find its overload window…", flush=True)
    s = feeder_suggestion(args.sim_seed, args.sim_outdoor_max_c)
    now = max(chain_now, int(time.time()))
    if not s["overloaded"]:
        raise UserError(f"the simulated feeder peaks at {s['peak_loading_pct']:.1f} % of its transformer, "
                        f"under the {s['threshold_pct']:.0f} % threshold: nothing to request")
    duration = s["event_end"] - s["event_start"]
    start = s["event_start"]
    while start < now + args.bidding_window + args.reveal_window:  # same time of day, next day if passed
        start += 86400
    args.target_kw = Decimal(int(s["target_watts"])) / 1000  # exact watts
    args.event_duration = duration
    args.event_start = start
    print(f"Feeder {s['network']} ({s['n_houses']} houses) peaks at {s['peak_loading_pct']:.1f} %: "
          f"asking for {s['target_watts'] / 1000:.3f} kW over {duration // 60} min "
          f"from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(start))} UTC")
    if args.max_price_wei is None and args.max_price_eth is None and args.budget_eth is None:
        raise UserError("--from-sim sets the target and window; also give --max-price-eth or --budget-eth")
    return now


def _ask_request(args: argparse.Namespace) -> None:
    """Fill the request's flags from prompts."""
    print("New demand reduction request (Enter accepts the default)")
    args.target_kw = ask("Target reduction, kW")
    args.bidding_window = number(ask("Bidding window, seconds", "60"), "bidding window", int)
    args.event_delay = number(ask("Event starts this many seconds after bidding closes", "0"), "delay", int)
    args.event_duration = number(ask("Event duration, seconds", "3600"), "duration", int)
    cap = ask("Maximum price, ETH per kWh (empty: give a budget instead)", "")
    if cap:
        args.max_price_eth = cap
    else:
        args.budget_eth = ask("Budget, ETH")
    args.rule = ask("Pricing rule (uniform / pay-as-bid)", "uniform")


def _settlement_token(args: argparse.Namespace, settings: Any, session: Any) -> tuple[str | None, Any]:
    """(token address or None for ether, its currency) from ``--token`` or ``SETTLEMENT_TOKEN``."""
    from ..token import currency_of, is_ether

    raw = args.token or settings.get("SETTLEMENT_TOKEN") or None
    if raw is None:
        return None, ETH
    from web3 import Web3

    if not Web3.is_address(raw):
        raise UserError(f"--token/SETTLEMENT_TOKEN {raw!r} is not an address; give the ERC-20 token's 0x address")
    if is_ether(raw):
        return None, ETH
    token = Web3.to_checksum_address(raw)
    if not session.w3.eth.get_code(token):
        raise UserError(f"no contract at {token} on this chain: check --token/SETTLEMENT_TOKEN (on a dev chain "
                        "`dr fund ADDRESS --usd AMOUNT` deploys a test stablecoin)")
    return token, currency_of(session.w3, token)


def _amounts_in(cur: Any, args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``--max-price`` and ``--budget`` in ``cur``'s base units (None where not given); the
    ETH-only flags are refused for a request in a token."""
    if cur != ETH and (args.max_price_wei is not None or args.max_price_eth is not None or args.budget_eth is not None
                       or args.bond_eth):
        raise UserError(f"this request settles in {cur.symbol}: give --max-price and --budget in {cur.symbol} "
                        "(--max-price-eth, --max-price-wei, --budget-eth and --bond-eth are for ether)")
    try:
        cap = parse_price(args.max_price, cur, what="--max-price") if args.max_price is not None else None
        budget = (parse_amount(args.budget, cur, what="--budget", allow_zero=False)
                  if args.budget is not None else None)
    except UnitError as exc:
        raise UserError(str(exc)) from None
    return cap, budget


def request(args: argparse.Namespace) -> int:
    """Plan (demand_response.planner), preview, confirm when prompted, send."""
    from ..accounts import resolve_signer
    from ..planner import plan_request, preview, send_request

    settings, session = _open(args)
    signer = resolve_signer(session.w3, "utility", settings)
    chain_now = _chain_time(session)
    now = max(chain_now, int(time.time()))
    args.event_start = None
    if args.from_sim:
        now = _apply_feeder_suggestion(args, chain_now)
    interactive = args.target_kw is None
    if interactive:
        _ask_request(args)
    token, cur = _settlement_token(args, settings, session)
    cap_units, budget_units = _amounts_in(cur, args)
    plan = plan_request(
        target_kw=args.target_kw, now=now, bidding_window_s=args.bidding_window,
        event_delay_s=None if args.event_start is not None else args.event_delay, event_start=args.event_start,
        event_duration_s=args.event_duration,
        max_price_wei_per_kwh=args.max_price_wei if cap_units is None else cap_units,
        max_price_eth_per_kwh=args.max_price_eth, budget_wei=budget_units, budget_eth=args.budget_eth, rule=args.rule,
        reveal_window_s=args.reveal_window, report_window_s=args.report_window,
        dispute_window_s=args.dispute_window, bond_eth=args.bond_eth, currency=cur,
    )
    print(preview(plan, cur))
    if interactive and ask("Send it? (y/n)", "y").lower() not in ("y", "yes"):
        print("not sent")
        return 0
    rid, receipt = send_request(session.dr, signer, plan, token=token)
    print(f"request {rid} posted in block {receipt['blockNumber']} (tx 0x{bytes(receipt['transactionHash']).hex()}); "
          f"settle it with `dr utility run`")
    if _sponsor_book(args, settings):
        sponsored = session.dr.sponsor_book(signer, rid)
        print(f"request {rid}: book sponsored for {int(sponsored['gasUsed']):,} gas: no bidder writes a book "
              f"slot from zero")
    return 0


# -- run and status ---------------------------------------------------------------------------


def settle(args: argparse.Namespace) -> int:
    """``dr utility run``: the settling daemon until Ctrl-C (or idle with --exit-when-idle)."""
    from ..accounts import resolve_signer
    from ..utility import outcome_line

    from ..session import open_session

    settings = settings_from(args, state_dir=args.state_dir, poll_interval=args.poll_interval)
    meter_db = args.meter_db or settings.get("METER_DB")
    method = args.baseline or settings.get("BASELINE_METHOD")
    if meter_db is not None:  # before the chain: a wrong store or method is told at once
        _check_meter_db(meter_db, method)
    session = open_session(settings)
    signer = resolve_signer(session.w3, "utility", settings)
    vtn = _start_vtn(args, settings, session, meter_db)
    relay = None
    try:
        relay = _start_relay(settings, session, signer)
        daemon = _daemon(args, settings, session, signer, meter_db, method, vtn, relay)
    except BaseException:
        if vtn is not None:
            vtn.stop()
        if relay is not None:
            relay.close()
        raise
    try:
        with serving_metrics(settings, [daemon.poller.label], session.dr.address):
            daemon.run(stop_on_signals())
    finally:
        if relay is not None:
            relay.close()
    for info in daemon.settled:
        print(outcome_line(info, session.dr.currency_of(info.request_id)))
    return 0


def _start_relay(settings: Any, session: Any, signer: Any) -> Any:
    """The bid relay of ``RELAY_LISTEN`` (host:port), listening; None when it is empty."""
    listen = settings.get("RELAY_LISTEN")
    if not listen:
        return None
    from ..relayer import relay_allow, start_relay

    allow = relay_allow(settings.get("RELAY_ALLOW"), session.dr.registration_required())
    return start_relay(session.dr, signer.address, listen, session.chain_id, allow=allow)


def _daemon(args: argparse.Namespace, settings: Any, session: Any, signer: Any, meter_db: str | None,
            method: str | None, vtn: Any, relay: Any = None) -> Any:
    from ..utility import UtilityDaemon

    dr = session.dr
    return UtilityDaemon(
        dr, signer, chain_id=session.chain_id, lock_dir=settings.lock_dir,
        state_path=settings.cursor_file("utility", session.chain_id, dr.address, signer.address),
        start_block=session.start_block(), poll_interval=settings.poll_interval if args.poll_interval else 0.5,
        confirmations=settings.confirmations, reorg_depth=settings.reorg_depth,
        auto_withdraw=not args.no_withdraw, only=set(args.request_id) if args.request_id else None,
        exit_when_idle=args.exit_when_idle, rpc_name=rpc_name(settings),
        meter_file=Path(args.meter) if args.meter and meter_db is None else None,
        meter_db=meter_db, baseline=method, portfolio=args.portfolio, records_dir=settings.records_dir,
        tolerance_watts=int(args.tolerance_kw * 1000), vtn=vtn, calendar=calendar_from(args, settings),
        relay=relay.relay if relay is not None else None,
        sponsor_book=_sponsor_book(args, settings),
    )


def _sponsor_book(args: argparse.Namespace, settings: Any) -> bool:
    """``--sponsor-book``, else ``SPONSOR_BOOK`` (default off): sponsor new requests' books."""
    return bool(getattr(args, "sponsor_book", False)) or settings.sponsor_book


def _start_vtn(args: argparse.Namespace, settings: Any, session: Any, meter_db: str | None) -> Any:
    """The OpenADR VTN of ``--vtn-port`` / VTN_PORT, started; None without a port."""
    port = args.vtn_port if args.vtn_port is not None else settings.get("VTN_PORT")
    if port is None:
        return None
    port = number(str(port), "VTN_PORT", int)
    if not 0 < port < 65536:
        raise UserError(f"VTN port {port} is not a TCP port (1-65535)")
    import importlib.util

    if importlib.util.find_spec("openleadr") is None:
        raise UserError("--vtn-port needs the openadr extra: pip install 'demand-response[openadr]'")
    from ..openadr.store import vtn_store_path
    from ..utility import start_vtn

    store = vtn_store_path(settings.state_dir, session.chain_id, session.dr.address)
    return start_vtn(session.dr, store, port=port, vtn_id=args.vtn_id or settings.get("VTN_ID"),
                     meter_db=meter_db, host=args.vtn_host)


def _check_meter_db(meter_db: str, method: str | None) -> None:
    """Refuse an unknown method or an unopenable store at start, in one line (not per winner later)."""
    from ..mv import METHODS, MeterStore

    if method is not None and method not in METHODS:
        raise UserError(f"unknown baseline method {method!r}; choose one of {', '.join(METHODS)}")
    with MeterStore.open(meter_db):
        pass


def status(args: argparse.Namespace) -> int:
    """``dr utility status``: every request with its state and phase (demand_response.lifecycle)."""
    _, session = _open(args)
    print(format_status(status_rows(session.dr, max(_chain_time(session), int(time.time())))))
    return 0


def status_rows(dr: Any, now: int) -> list[dict[str, Any]]:
    """Every request with its state and phase at chain time ``now`` and its quantities, named
    as in the glossary of docs/web.md (budget, promised, paid, refund)."""
    from ..lifecycle import lifecycle

    rows = []
    for rid in range(1, dr.request_count() + 1):
        info = dr.get_request(rid)
        terms = dr.terms_of(rid)
        life = lifecycle(info, terms, now)
        kind = "+".join(k for k, on in (("sealed", terms.sealed), ("metered", terms.metered)) if on) or "open"
        rows.append({
            "id": rid, "state": life.state, "phase": life.phase, "terms": kind, "rule": info.rule.name.lower(),
            "currency": dr.currency_of(rid) if info.in_token else ETH,
            "target_watts": info.target_watts, "bids": info.bid_count, "cap_wei_per_kwh": info.max_price,
            "deadline": info.bidding_deadline, "selected": life.selected,
            "clearing_wei_per_kwh": info.clearing_price, "accepted_watts": info.accepted_watts,
            "budget_wei": info.budget, "promised_wei": info.reserved, "paid_wei": info.paid_out,
        })
    return rows


_COLUMNS = (("id", 4, ">"), ("state", 9, "<"), ("phase", 10, "<"), ("terms", 14, "<"), ("rule", 10, "<"),
            ("currency", 8, "<"), ("target kW", 9, ">"), ("bids", 5, ">"), ("cap /kWh", 12, ">"),
            ("deadline", 8, ">"), ("clear /kWh", 12, ">"), ("acc. kW", 8, ">"), ("promised", 12, ">"),
            ("paid", 10, ">"))


def format_status(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``status_rows``; figures fixed at selection show '-' before it.
    Prices and amounts are in each request's own currency (its ``currency`` column)."""
    from ..units import eth

    def money(base_units: int, cur: Any) -> str:
        return eth(base_units) if cur == ETH else f"{base_units / 10 ** cur.decimals:.{min(cur.decimals, 6)}f}"

    header = " ".join(f"{name:{align}{width}}" for name, width, align in _COLUMNS)
    lines = [header, "-" * len(header)]
    for r in rows:
        picked, cur = r["selected"], r.get("currency", ETH)
        cells = (r["id"], r["state"], r["phase"], r["terms"], r["rule"], cur.symbol, f"{r['target_watts'] / 1000:.3f}",
                 r["bids"], money(r["cap_wei_per_kwh"], cur), time.strftime("%H:%M:%S", time.localtime(r["deadline"])),
                 money(r["clearing_wei_per_kwh"], cur) if picked else "-",
                 f"{r['accepted_watts'] / 1000:.3f}" if picked else "-",
                 money(r["promised_wei"], cur) if picked else "-", money(r["paid_wei"], cur))
        lines.append(" ".join(f"{str(c):{align}{width}}" for c, (_, width, align) in zip(cells, _COLUMNS)))
    if len(lines) == 2:
        lines.append("(no requests yet)")
    lines.append("states: open (bidding, revealing) -> closed (winners not selected) -> selected "
                 "(winners not all paid) -> settled (every winner paid); or cancelled")
    return "\n".join(lines)
