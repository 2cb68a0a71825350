"""``dr consumer run|fleet``: the bidding daemon, one account or a fleet in one process;
``dr consumer results``: what each event paid, cost in gas and earned net."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (UserError, connection_options, env_options, rpc_name, serving_metrics, settings_from,
                      stop_on_signals)


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr consumer run``, ``dr consumer fleet`` and ``dr consumer results``."""
    p = commands.add_parser("consumer", help="the consumer bidding daemon")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("run", help="run one consumer until Ctrl-C")
    connection_options(q)
    _daemon_options(q)
    q.add_argument("--account-index", type=int, help="dev chains: use the node's unlocked account #N")
    q.add_argument("--household", type=int, default=0, help="fleet-file entry / gridsim household to use")
    q.add_argument("--label", help="name used in log lines and results")
    q.set_defaults(func=run)
    q = actions.add_parser("fleet", help="run N consumer agents with N accounts in one process")
    connection_options(q)
    _daemon_options(q)
    q.add_argument("-n", type=int, required=True, help="number of agents")
    q.add_argument("--first-account", type=int, default=1, help="dev chains: first unlocked account to use")
    q.add_argument("--account-prefix", help="keystores PREFIX-0 … PREFIX-(N-1), password CONSUMER_ACCOUNT_PASS")
    q.set_defaults(func=run)
    q = actions.add_parser("check", help="validate the bids file and warn about bids too small to pay their fees")
    connection_options(q, contract=False)
    q.add_argument("--bids-file", help="bids file (default BIDS_FILE or database/bids.json)")
    q.add_argument("--household", type=int, default=0, help="fleet-file entry to check")
    q.add_argument("--event-minutes", type=int, default=60, help="event length to price the bids for (default 60)")
    q.add_argument("--market", choices=("open", "sealed", "metered", "sealed-metered"), default="open",
                   help="which transactions taking part needs (default open: bid, claim, withdraw)")
    q.set_defaults(func=check)
    q = actions.add_parser("results", help="per event: paid, gas spent and net earnings, with totals")
    env_options(q)
    q.add_argument("--results-file", help="results history (default RESULTS_FILE or database/results.json)")
    q.add_argument("--account", help="only this account's events (0x address)")
    q.set_defaults(func=results)


def _daemon_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("daemon")
    g.add_argument("--bids-file", help="bids file (default BIDS_FILE or database/bids.json)")
    g.add_argument("--bids-source", choices=("file", "gridsim"), help="where offers come from (default file)")
    g.add_argument("--seed", type=int, default=0, help="gridsim population seed")
    g.add_argument("--results-file", help="results history (default RESULTS_FILE or database/results.json)")
    g.add_argument("--state-dir", help="where the listener cursor is kept (default database/)")
    g.add_argument("--poll-interval", type=float, help="seconds between polls (default 0.2)")
    g.add_argument("--confirmations", type=int, help="blocks to stay behind the head (default 0)")
    g.add_argument("--reorg-depth", type=int, help="recent blocks re-scanned every poll (default 12)")
    g.add_argument("--from-block", type=int, dest="start_block", help="first block when there is no cursor")
    g.add_argument("--no-withdraw", action="store_true", help="claim but do not withdraw")


def _settings(args: argparse.Namespace) -> Any:
    settings = settings_from(
        args, bids_file=args.bids_file, bids_source=args.bids_source, results_file=args.results_file,
        state_dir=args.state_dir, poll_interval=args.poll_interval, confirmations=args.confirmations,
        reorg_depth=args.reorg_depth, start_block=args.start_block,
    )
    if args.no_withdraw:
        settings = settings.with_(auto_withdraw=False)
    return settings


def _provider(settings: Any, index: int, seed: int) -> Any:
    from ..consumer import file_bids, gridsim_bids

    if settings.bids_source == "gridsim":
        return gridsim_bids(household_index=index, seed=seed)
    if settings.bids_source != "file":
        raise UserError(f"BIDS_SOURCE={settings.bids_source!r}: use 'file' or 'gridsim'")
    return file_bids(settings.bids_file, index)


def _check_bids(settings: Any) -> None:
    if settings.bids_source == "file":
        from ..bids import load_bids

        load_bids(settings.bids_file)  # refuse to start on a bad file; it is re-read per request


def run(args: argparse.Namespace) -> int:
    """Run one consumer, or a fleet, until Ctrl-C / SIGTERM."""
    from ..accounts import resolve_signer
    from ..consumer import AgentSpec, ConsumerService
    from ..session import open_session

    settings = _settings(args)
    _check_bids(settings)
    session = open_session(settings)
    if args.action == "run":
        signer = resolve_signer(session.w3, "consumer", settings, account_index=args.account_index)
        label = args.label or f"consumer {signer.address[:10]}"
        specs = [AgentSpec(signer, _provider(settings, args.household, args.seed), label)]
    else:
        specs = _fleet_specs(session, settings, args)
    service = ConsumerService.from_settings(session, settings, specs, rpc_name=rpc_name(settings))
    with serving_metrics(settings, [service.poller.label], session.dr.address):
        service.run(stop_on_signals())
    return 0


def _fleet_specs(session: Any, settings: Any, args: argparse.Namespace) -> list:
    from ..accounts import AccountError, load_keystore
    from ..chain import Signer
    from ..config import DEV_CHAIN_IDS
    from ..consumer import AgentSpec

    n = args.n
    if n < 1:
        raise UserError("-n must be at least 1")
    signers: list[Signer] = []
    if args.account_prefix:
        password = settings.get("CONSUMER_ACCOUNT_PASS")
        if password is None:
            raise AccountError("CONSUMER_ACCOUNT_PASS is needed to unlock the fleet's keystores")
        for i in range(n):
            account = load_keystore(f"{args.account_prefix}-{i}", password, settings)
            signers.append(Signer(session.w3, account, label=f"{args.account_prefix}-{i}",
                                  receipt_timeout=settings.receipt_timeout))
    else:
        if session.chain_id not in DEV_CHAIN_IDS:
            raise AccountError(f"on a live chain, give the fleet keystores with --account-prefix NAME "
                               f"(NAME-0 … NAME-{n - 1})")
        accounts = session.w3.eth.accounts
        first = args.first_account
        if first + n > len(accounts):
            raise UserError(f"the dev chain has {len(accounts)} accounts; -n {n} from #{first} does not fit")
        signers = [Signer(session.w3, accounts[first + i], label=f"agent {i} ({accounts[first + i][:10]})",
                          receipt_timeout=settings.receipt_timeout, stuck_after=2.0) for i in range(n)]
    return [AgentSpec(s, _provider(settings, i, args.seed), s.label) for i, s in enumerate(signers)]


def check(args: argparse.Namespace) -> int:
    """Validate the bids file, then price taking part at the chain's current fees and list the
    bids whose payout at their ask is below ``BID_MARGIN`` × that cost (the daemon skips them);
    with ``RELAY_URL`` on an open or metered market the household pays nothing, and says so."""
    from ..bids import bid_margin, cost_warnings, load_bids
    from ..consumer.core import FeeQuotes, participation_plan
    from ..fees import format_gas_price, participation_cost
    from ..session import connect_checked
    from ..units import reference_rate

    if args.event_minutes < 1:
        raise UserError("--event-minutes must be at least 1")
    settings = settings_from(args, bids_file=args.bids_file)
    offers = load_bids(settings.bids_file).for_agent(args.household)
    margin = bid_margin(settings.get("BID_MARGIN"))
    print(f"{settings.bids_file}: {len(offers)} bid(s), valid")
    w3, chain_id = connect_checked(settings)
    quotes = FeeQuotes(w3, chain_id)
    quote = quotes.quote()
    rate = reference_rate(settings.values, quotes.native)
    cur = next((o.currency for o in offers if o.currency is not None), quotes.native)
    per_native = None
    if cur != quotes.native:  # bids in a stablecoin: gas (native) converts only through the reference rate
        if rate is None or cur.fiat != rate.fiat:
            print(f"the bids are in {cur.symbol} and gas is paid in {quotes.native.symbol}: set "
                  f"{cur.fiat or cur.symbol}_PER_{quotes.native.symbol} to compare them (without it the daemon "
                  "bids without the fee check)")
            return 0
        per_native = rate.per_unit
    cost = participation_cost(participation_plan("sealed" in args.market, "metered" in args.market), quote,
                              native=quotes.native, settlement=cur, settlement_per_native=per_native)
    relayed = bool(settings.get("RELAY_URL")) and "sealed" not in args.market
    if relayed:
        print(f"RELAY_URL is set: the utility's relay places your {args.market} bids and pays their gas, so "
              "taking part costs you 0 gas and the daemon bids without the fee check; only if the relay "
              "fails does it submit the signed bids itself, at about this cost:")
    print(f"taking part in one {args.market} event costs {cost.describe(quotes.native, rate)} "
          f"at {format_gas_price(quote.gas_price)}")
    if relayed:
        return 0
    if margin == 0:
        print("BID_MARGIN=0: every bid is sent whatever the fees")
        return 0
    lines = cost_warnings(offers, cost.cost, args.event_minutes * 60, margin, cur)
    for line in lines:
        print(f"warning: {line}")
    if not lines:
        print(f"every bid pays at least {margin} × that over a {args.event_minutes}-minute event")
    return 0


def results(args: argparse.Namespace) -> int:
    """Print one line per recorded event (paid, gas, net) and the totals; no chain needed."""
    from ..results import ResultsFile

    settings = settings_from(args, results_file=args.results_file)
    records = ResultsFile(settings.results_file).records()
    if args.account:
        records = [r for r in records if str(r.get("account", "")).lower() == args.account.lower()]
    for line in results_table(records, settings.values):
        print(line)
    return 0


def results_table(records: list, values: Any) -> list[str]:
    """The lines of ``dr consumer results``: a row per record, then the totals per currency;
    amounts in each request's currency, gas in ETH (with its value in the request's currency
    when the record knows it), and the ``USD_PER_ETH`` (or ``EUR_PER_ETH``) reference rate's
    fiat figure beside ETH amounts when one is set."""
    from ..results import money, record_currency, relayed_mark, totals_by_currency
    from ..units import ETH, Currency, format_amount, format_kw, format_price, reference_rate

    if not records:
        return ["no results yet: the consumer daemon records each request it bid in once it is settled"]
    rate = reference_rate(values, ETH)

    def amount(units: int | None, cur: Currency) -> str:
        return format_amount(units, cur, rate=rate if cur == ETH else None)

    def gas(m: Any) -> str:
        if m.currency == ETH:
            return amount(m.gas_wei, ETH)
        # gas in ETH, valued in the request's token (not again in fiat: the token is the figure)
        text = format_amount(m.gas_wei, ETH)
        return text + (f" ({format_amount(m.gas, m.currency)})" if m.gas is not None else "")

    rows = [("request", "who", "status", "accepted", "clearing price", "paid", "gas", "net")]
    for r in records:
        m = money(r)
        cur = record_currency(r)
        accepted = r.get("accepted_watts")
        clearing = r.get("clearing_price_wei_per_kwh") if cur == ETH else r.get("clearing_price_units_per_kwh")
        rows.append((
            str(r.get("request_id", "?")), str(r.get("label") or str(r.get("account", ""))[:10]),
            str(r.get("status", "?")), format_kw(int(accepted)) if accepted is not None else "—",
            format_price(clearing or None, cur), amount(m.paid, cur), gas(m) + relayed_mark(r), amount(m.net, cur),
        ))
    by_currency = totals_by_currency(records)
    for symbol, t in by_currency.items():
        count = sum(1 for r in records if record_currency(r).symbol == symbol)
        rows.append((f"total {symbol}" if len(by_currency) > 1 or symbol != "ETH" else "total",
                     f"{count} event{'s' if count != 1 else ''}", "", "", "",
                     amount(t.paid, t.currency), gas(t), amount(t.net, t.currency)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i >= 5 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - len(by_currency), "-" * len(lines[0]))
    if any(relayed_mark(r) for r in records):
        lines.append("relayed: the bids were placed by the utility's relay, which paid their gas; the household "
                     "sent no transaction for them")
    if any(money(r).gas_wei is None for r in records):
        lines.append("— : gas unknown (recorded before gas was kept)")
    unconverted = sorted({record_currency(r).symbol for r in records
                          if record_currency(r) != ETH and money(r).gas_wei is not None and money(r).net is None})
    for symbol in unconverted:
        lines.append(f"— : no net for {symbol} events: their gas was paid in ETH and no reference rate "
                     "(USD_PER_ETH) was set when they were recorded")
    for r in records:  # the household's check of each figure the utility metered (docs/mv.md)
        if r.get("metered_watts") is None:
            continue
        mine = r.get("recomputed_watts")
        verdict = ("agrees" if r.get("delivery_agrees") else "DISAGREES") if mine is not None else "not checked"
        lines.append(f"request {r.get('request_id', '?')}: the utility metered {format_kw(int(r['metered_watts']))}"
                     + (f", our meter data gives {format_kw(int(mine))}" if mine is not None else "")
                     + f": {verdict}" + (f" ({r['delivery_check']})" if r.get("delivery_check") and mine is None else ""))
    return lines
