"""``dr``: the command line. Thin shells over the package functions.

Every error a user can cause ends with one line on stderr (``error: ...``) and exit
status 1; a wrong command line exits 2 (argparse); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import faulthandler
import getpass
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import DRError, UserError
from .market import PricingRule

log = logging.getLogger("demand_response.cli")


# -- shared plumbing ------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection")
    g.add_argument("--network", help="dev (default), ganache, anvil, sepolia, mainnet; RPC_URL overrides")
    g.add_argument("--rpc-url", help="JSON-RPC endpoint (overrides RPC_URL and --network's URL)")
    g.add_argument("--contract", dest="contract_address", help="contract address (overrides CONTRACT_ADDRESS)")
    g.add_argument("--env-file", help="the .env file to read (default ./.env)")
    g.add_argument("--deployments-file", help="where deployments are recorded (default ./deployments.json)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    g.add_argument("--log-file", help="also append log lines to this file")


def _settings(args: argparse.Namespace, **extra: Any):
    from .config import load_settings

    flags = {k: getattr(args, k, None) for k in ("network", "rpc_url", "contract_address", "deployments_file")}
    flags.update(extra)
    return load_settings(getattr(args, "env_file", None), **flags)


def _setup_logging(args: argparse.Namespace, default: str = "INFO") -> None:
    level = logging.DEBUG if getattr(args, "verbose", False) else (
        logging.WARNING if getattr(args, "quiet", False) else getattr(logging, default, logging.INFO))
    fmt = logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if getattr(args, "log_file", None):
        file_handler = logging.FileHandler(args.log_file)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(file_handler)
    root.setLevel(level)
    for noisy in ("web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so daemons stop cleanly mid-wait."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger("demand_response").info("stopping (%s)…", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _rpc_name(settings: Any) -> str:
    from .chain import redact_url

    return f"RPC endpoint {redact_url(settings.rpc_url)}"


# -- commands -------------------------------------------------------------------------------


def cmd_compile(args: argparse.Namespace) -> int:
    from . import compiler

    try:
        if args.install_shim:
            print(f"linked {compiler.install_solcx_shim()} -> {compiler.NPM_ADAPTER}")
        solc = compiler.resolve_solc()
        print(f"compiling with solc {solc.version} ({solc.origin}: {solc.path})…", flush=True)
        written = compiler.compile_project()
    except ImportError as exc:
        raise UserError(f"compiling needs the dev extra ({exc}); run `make bootstrap` or "
                        "pip install '.[dev]'") from None
    except compiler.CompilerError as exc:
        raise UserError(str(exc)) from None
    for name, path in written.items():
        print(f"{name}: {path} and the package's ABI copy")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    """Run a local dev chain in the foreground (the ``dev`` network)."""
    from . import devchain

    node = devchain.start(args.kind, port=args.port, accounts=args.accounts,
                          chain_id=1337 if args.kind == "ganache" else 31337)
    print(f"{args.kind} running at {node.url} (chain {node.chain_id}, {args.accounts} unlocked accounts); Ctrl-C stops it",
          flush=True)
    stop = _stop_on_signals()
    try:
        while not stop.is_set() and node.process.poll() is None:
            stop.wait(0.5)
    finally:
        node.stop()
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from .accounts import resolve_signer
    from .session import connect_checked
    from .utility import deploy

    settings = _settings(args)
    w3, chain_id = connect_checked(settings)
    signer = resolve_signer(w3, "utility", settings)
    dr = deploy(settings, signer, chain_id, registration_required=args.registration)
    print(f"deployed DemandReduction at {dr.address} on {settings.network} (chain {chain_id}) from {signer.address}")
    print(f"recorded in {settings.deployments_file} and CONTRACT_ADDRESS in {settings.env_file}")
    return 0


def _read_secret(path: str | None, prompt: str, confirm: bool = False) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8").rstrip("\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the secret; pass --password-file / --key-file")
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat: ") != value:
        raise UserError("the two entries differ")
    return value


def cmd_accounts(args: argparse.Namespace) -> int:
    from . import accounts

    settings = _settings(args)
    if args.action == "list":
        rows = accounts.list_keystores(settings)
        print(f"keystores in {accounts.keystore_dir(settings)}:")
        for name, address in rows:
            print(f"  {name:<24} {address}")
        if not rows:
            print("  (none; create one with `dr accounts new NAME`)")
        return 0
    password = _read_secret(args.password_file, f"Password for {args.name}: ", confirm=True)
    if args.action == "new":
        path, address = accounts.new_keystore(args.name, password, settings=settings)
    else:
        key = _read_secret(args.key_file, "Private key (hex): ")
        path, address = accounts.save_keystore(args.name, key, password, settings=settings)
    print(f"saved {address} to {path} (mode 600)")
    return 0


def _consumer_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bids-file", help="bids file (default BIDS_FILE or database/bids.json)")
    p.add_argument("--bids-source", choices=("file", "gridsim"), help="where offers come from (default file)")
    p.add_argument("--seed", type=int, default=0, help="gridsim population seed")
    p.add_argument("--results-file", help="results history (default RESULTS_FILE or database/results.json)")
    p.add_argument("--state-dir", help="where the listener cursor is kept (default database/)")
    p.add_argument("--poll-interval", type=float, help="seconds between polls (default 0.2)")
    p.add_argument("--confirmations", type=int, help="blocks to stay behind the head (default 0)")
    p.add_argument("--reorg-depth", type=int, help="recent blocks re-scanned every poll (default 12)")
    p.add_argument("--from-block", type=int, dest="start_block", help="first block when there is no cursor")
    p.add_argument("--no-withdraw", action="store_true", help="claim but do not withdraw")


def _consumer_settings(args: argparse.Namespace):
    settings = _settings(
        args, bids_file=args.bids_file, bids_source=args.bids_source, results_file=args.results_file,
        state_dir=args.state_dir, poll_interval=args.poll_interval, confirmations=args.confirmations,
        reorg_depth=args.reorg_depth, start_block=args.start_block,
    )
    if args.no_withdraw:
        settings = settings.with_(auto_withdraw=False)
    return settings


def _provider(settings: Any, index: int, seed: int):
    from .consumer import file_bids, gridsim_bids

    if settings.bids_source == "gridsim":
        return gridsim_bids(household_index=index, seed=seed)
    if settings.bids_source != "file":
        raise UserError(f"BIDS_SOURCE={settings.bids_source!r}: use 'file' or 'gridsim'")
    return file_bids(settings.bids_file, index)


def _check_bids(settings: Any) -> None:
    if settings.bids_source == "file":
        from .bids import load_bids

        load_bids(settings.bids_file)  # refuse to start on a bad file; it is re-read per request


def cmd_consumer(args: argparse.Namespace) -> int:
    from .accounts import resolve_signer
    from .consumer import AgentSpec, ConsumerService
    from .session import open_session

    settings = _consumer_settings(args)
    _check_bids(settings)
    session = open_session(settings)
    if args.action == "run":
        signer = resolve_signer(session.w3, "consumer", settings, account_index=args.account_index)
        label = args.label or f"consumer {signer.address[:10]}"
        specs = [AgentSpec(signer, _provider(settings, args.household, args.seed), label)]
    else:
        specs = _fleet_specs(session, settings, args)
    service = ConsumerService.from_settings(session, settings, specs, rpc_name=_rpc_name(settings))
    stop = _stop_on_signals()
    service.run(stop)
    return 0


def _fleet_specs(session: Any, settings: Any, args: argparse.Namespace) -> list:
    from .accounts import AccountError, load_keystore
    from .chain import Signer
    from .config import DEV_CHAIN_IDS
    from .consumer import AgentSpec

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
            raise AccountError("on a live chain, give the fleet keystores with --account-prefix NAME (NAME-0 … NAME-{n-1})")
        accounts = session.w3.eth.accounts
        first = args.first_account
        if first + n > len(accounts):
            raise UserError(f"the dev chain has {len(accounts)} accounts; -n {n} from #{first} does not fit")
        signers = [Signer(session.w3, accounts[first + i], label=f"agent {i} ({accounts[first + i][:10]})",
                          receipt_timeout=settings.receipt_timeout, stuck_after=2.0) for i in range(n)]
    return [AgentSpec(s, _provider(settings, i, args.seed), s.label) for i, s in enumerate(signers)]


def _ask(prompt: str, default: str | None = None) -> str:
    suffix = f" [{default}]" if default is not None else ""
    try:
        answer = input(f"{prompt}{suffix}: ").strip()
    except EOFError:
        answer = ""
    if not answer and default is None:
        raise UserError(f"no answer for {prompt!r}")
    return answer or str(default)


def _number(text: str, what: str, kind: Callable[[str], Any] = float) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number") from None


def _apply_feeder_suggestion(args: argparse.Namespace, chain_now: int) -> int:
    """Fill target and window of ``dr utility request --from-sim`` from the feeder simulation.

    Returns the time the plan is anchored to (taken after the simulation, which takes seconds).
    """
    print("Simulating the feeder to find its overload window…", flush=True)
    s = _feeder_suggestion(args.sim_seed, args.sim_outdoor_max_c)
    now = max(chain_now, int(time.time()))
    if not s["overloaded"]:
        raise UserError(f"the simulated feeder peaks at {s['peak_loading_pct']:.1f} % of its transformer, "
                        f"under the {s['threshold_pct']:.0f} % threshold: nothing to request")
    duration = s["event_end"] - s["event_start"]
    start = s["event_start"]
    while start < now + args.bidding_window:  # the same time of day, next day if it has passed
        start += 86400
    args.target_kw = s["target_watts"] / 1000  # exact watts: target_kw is rounded for display
    args.event_duration = duration
    args.event_delay = start - (now + args.bidding_window)
    print(f"Feeder {s['network']} ({s['n_houses']} houses) peaks at {s['peak_loading_pct']:.1f} %: "
          f"asking for {s['target_watts'] / 1000:.3f} kW over {duration // 60} min "
          f"from {time.strftime('%Y-%m-%d %H:%M', time.gmtime(start))} UTC")
    if args.max_price_wei is None and args.max_price_eth is None and args.budget_eth is None:
        raise UserError("--from-sim sets the target and window; also give --max-price-eth or --budget-eth")
    return now


def cmd_utility(args: argparse.Namespace) -> int:
    from .accounts import resolve_signer
    from .session import open_session
    from .utility import (
        UtilityDaemon, format_status, outcome_line, plan_request, preview, send_request, status_rows,
    )

    settings = _settings(args, state_dir=getattr(args, "state_dir", None),
                         poll_interval=getattr(args, "poll_interval", None))
    session = open_session(settings)
    w3, dr = session.w3, session.dr
    now = int(w3.eth.get_block("latest")["timestamp"])
    if args.action == "status":
        print(format_status(status_rows(dr, max(now, int(time.time())))))
        return 0
    signer = resolve_signer(w3, "utility", settings)
    if args.action == "request":
        if args.from_sim:
            now = _apply_feeder_suggestion(args, now)
        interactive = args.target_kw is None
        if interactive:
            print("New demand reduction request (Enter accepts the default)")
            args.target_kw = _number(_ask("Target reduction, kW"), "target")
            args.bidding_window = _number(_ask("Bidding window, seconds", "60"), "bidding window", int)
            args.event_delay = _number(_ask("Event starts this many seconds after bidding closes", "0"), "delay", int)
            args.event_duration = _number(_ask("Event duration, seconds", "3600"), "duration", int)
            cap = _ask("Maximum price, ETH per kWh (empty: give a budget instead)", "")
            if cap:
                args.max_price_eth = _number(cap, "maximum price")
            else:
                args.budget_eth = _number(_ask("Budget, ETH"), "budget")
            args.rule = _ask("Pricing rule (uniform / pay-as-bid)", "uniform")
        cap_wei = args.max_price_wei
        if cap_wei is None and args.max_price_eth is not None:
            cap_wei = int(round(args.max_price_eth * 10**18))
        budget_wei = int(round(args.budget_eth * 10**18)) if args.budget_eth is not None else None
        rule = {"uniform": PricingRule.UNIFORM, "pay-as-bid": PricingRule.PAY_AS_BID}.get(args.rule)
        if rule is None:
            raise UserError(f"pricing rule {args.rule!r}: use uniform or pay-as-bid")
        try:
            plan = plan_request(
                target_kw=args.target_kw, now=now if args.from_sim else max(now, int(time.time())), bidding_window_s=args.bidding_window,
                event_delay_s=args.event_delay, event_duration_s=args.event_duration,
                max_price_wei_per_kwh=cap_wei, budget_wei=budget_wei, rule=rule,
                reveal_window_s=args.reveal_window, report_window_s=args.report_window,
                dispute_window_s=args.dispute_window, bond_wei=int(round(args.bond_eth * 10**18)),
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(preview(plan))
        if interactive and _ask("Send it? (y/n)", "y").lower() not in ("y", "yes"):
            print("not sent")
            return 0
        rid, receipt = send_request(dr, signer, plan)
        print(f"request {rid} posted in block {receipt['blockNumber']} (tx 0x{bytes(receipt['transactionHash']).hex()}); "
              f"settle it with `dr utility run`")
        return 0
    # run
    daemon = UtilityDaemon(
        dr, signer, chain_id=session.chain_id, lock_dir=settings.lock_dir,
        state_path=settings.cursor_file("utility", session.chain_id, dr.address, signer.address),
        start_block=session.start_block(), poll_interval=settings.poll_interval if args.poll_interval else 0.5,
        confirmations=settings.confirmations, reorg_depth=settings.reorg_depth,
        auto_withdraw=not args.no_withdraw, only=set(args.request_id) if args.request_id else None,
        exit_when_idle=args.exit_when_idle, rpc_name=_rpc_name(settings),
        meter_file=Path(args.meter) if args.meter else None,
    )
    daemon.run(_stop_on_signals())
    for info in daemon.settled:
        print(outcome_line(info))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from .accounts import resolve_signer
    from .contract import DemandReduction
    from .session import open_session

    settings = _settings(args)
    session = open_session(settings)
    dr: DemandReduction = session.dr
    if not dr.registration_required():
        print(f"the contract at {dr.address} is open: no enrolment is needed")
        return 0
    if args.enrol:
        signer = resolve_signer(session.w3, "utility", settings)
        for address in args.enrol:
            dr.enrol(signer, address)
            print(f"enrolled {address}")
        return 0
    signer = resolve_signer(session.w3, "consumer", settings, account_index=args.account_index)
    dr.request_enrolment(signer)
    print(f"enrolment requested for {signer.address}; the utility enrols it with `dr register --enrol {signer.address}`")
    return 0


def _gridsim() -> Any:
    try:
        from . import gridsim
    except Exception as exc:
        raise UserError(f"this needs demand_response.gridsim ({type(exc).__name__}: {exc}); "
                        "install the 'sim' extra: pip install '.[sim]'") from None
    return gridsim


def _feeder_suggestion(seed: int, outdoor_max_c: float) -> dict:
    try:
        return _gridsim().suggest_request(seed=seed, outdoor_max_c=outdoor_max_c, include_profile=False)
    except ImportError as exc:
        raise UserError(f"the feeder simulation needs pandapower ({exc}); install the 'grid' extra: "
                        "pip install '.[grid]'") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    gridsim = _gridsim()
    if args.feeder:
        print("Simulating the feeder day (power flow every 15 min)…", flush=True)
        try:
            summary = gridsim.feeder_command(seed=args.seed, plot=args.plot,
                                             outdoor_max_c=38.0 if args.outdoor_max_c is None else args.outdoor_max_c)
        except ImportError as exc:
            raise UserError(f"the feeder simulation needs pandapower ({exc}); install the 'grid' extra: "
                            "pip install '.[grid]'") from None
        print(json.dumps(summary, indent=2))
        return 0
    simulate_command = gridsim.simulate_command
    start = args.event_start or int(time.time()) + 3600
    summary = simulate_command(
        households=args.households, seed=args.seed, event_start=start,
        event_end=args.event_end or start + 3600, out=args.out, fleet=args.fleet, plot=args.plot,
        household=args.household, outdoor_max_c=33.0 if args.outdoor_max_c is None else args.outdoor_max_c,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(consumers=args.consumers, results_file=Path(args.results_file) if args.results_file else None,
                    workdir=Path(args.workdir),
                    bidding_window=args.bidding_window, chain_kind=args.chain, market=args.market)


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``dr`` argument parser."""
    parser = argparse.ArgumentParser(prog="dr", description="Blockchain demand response: market, daemons, simulation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile the contract into the committed artifacts")
    p.add_argument("--install-shim", action="store_true",
                   help="first link the npm solcjs adapter into py-solc-x's folder as solc-v0.8.24 (for brownie)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("node", help="run a local dev chain (the 'dev' network) in the foreground")
    p.add_argument("--kind", choices=("ganache", "anvil"), default="ganache")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--accounts", type=int, default=10)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("deploy", help="deploy the contract (as the utility) and record its address")
    _common(p)
    p.add_argument("--registration", action="store_true", help="only enrolled consumers may bid")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("accounts", help="keystore accounts (brownie-compatible)")
    acc = p.add_subparsers(dest="action", required=True)
    for action, text in (("new", "create a random account"), ("import", "import a private key"), ("list", "list keystores")):
        q = acc.add_parser(action, help=text)
        _common(q)
        if action != "list":
            q.add_argument("name", help="account name (~/.brownie/accounts/NAME.json) or a keystore path")
            q.add_argument("--password-file", help="read the password from this file instead of prompting")
        if action == "import":
            q.add_argument("--key-file", help="read the private key from this file instead of prompting")
        q.set_defaults(func=cmd_accounts)

    p = sub.add_parser("consumer", help="the consumer bidding daemon")
    con = p.add_subparsers(dest="action", required=True)
    q = con.add_parser("run", help="run one consumer until Ctrl-C")
    _common(q)
    _consumer_common(q)
    q.add_argument("--account-index", type=int, help="dev chains: use the node's unlocked account #N")
    q.add_argument("--household", type=int, default=0, help="fleet-file entry / gridsim household to use")
    q.add_argument("--label", help="name used in log lines and results")
    q.set_defaults(func=cmd_consumer)
    q = con.add_parser("fleet", help="run N consumer agents with N accounts in one process")
    _common(q)
    _consumer_common(q)
    q.add_argument("-n", type=int, required=True, help="number of agents")
    q.add_argument("--first-account", type=int, default=1, help="dev chains: first unlocked account to use")
    q.add_argument("--account-prefix", help="keystores PREFIX-0 … PREFIX-(N-1), password CONSUMER_ACCOUNT_PASS")
    q.set_defaults(func=cmd_consumer)

    p = sub.add_parser("utility", help="request reductions, settle them, show status")
    ut = p.add_subparsers(dest="action", required=True)
    q = ut.add_parser("request", help="post a reduction request (prompts when no flags are given)")
    _common(q)
    q.add_argument("--target-kw", type=float, help="reduction wanted, kW")
    q.add_argument("--bidding-window", type=int, default=60, help="seconds until bidding closes (default 60)")
    q.add_argument("--event-delay", type=int, default=0, help="seconds from bidding close to event start (default 0)")
    q.add_argument("--event-duration", type=int, default=3600, help="event length, seconds (default 3600)")
    cap = q.add_mutually_exclusive_group()
    cap.add_argument("--max-price-wei", type=int, help="price cap, wei per kWh")
    cap.add_argument("--max-price-eth", type=float, help="price cap, ETH per kWh")
    q.add_argument("--budget-eth", type=float, help="budget to escrow, ETH (sets the cap when no cap is given)")
    q.add_argument("--rule", default="uniform", help="uniform (default) or pay-as-bid")
    q.add_argument("--reveal-window", type=int, default=0, metavar="S",
                   help="sealed bids: seconds after bidding closes for reveals (default 0: open bids)")
    q.add_argument("--report-window", type=int, default=0, metavar="S",
                   help="pay on measured delivery: seconds after the event for meter reports (default 0: off)")
    q.add_argument("--dispute-window", type=int, default=0, metavar="S",
                   help="metered: seconds after the report deadline to confirm or dispute (default 0)")
    q.add_argument("--bond-eth", type=float, default=0.0,
                   help="bond per consumer, ETH: forfeited if sealed bids are not revealed, and the "
                        "shortfall penalty of metered requests (default 0)")
    q.add_argument("--from-sim", action="store_true",
                   help="target and window from the gridsim feeder simulation (needs the 'grid' extra)")
    q.add_argument("--sim-seed", type=int, default=0, help="--from-sim: population seed")
    q.add_argument("--sim-outdoor-max-c", type=float, default=38.0, help="--from-sim: the day's peak temperature")
    q.set_defaults(func=cmd_utility)
    q = ut.add_parser("run", help="settle open requests at their deadlines and withdraw refunds")
    _common(q)
    q.add_argument("--request-id", type=int, action="append", help="only these requests (repeatable)")
    q.add_argument("--exit-when-idle", action="store_true", help="exit once no watched request is open")
    q.add_argument("--no-withdraw", action="store_true", help="leave refunds in the contract")
    q.add_argument("--meter", metavar="FILE",
                   help="the utility's meter data (meter.json format): confirm reports it supports, "
                        "dispute the rest; without it reports become final at the dispute deadline")
    q.add_argument("--state-dir", help="where the listener cursor is kept (default database/)")
    q.add_argument("--poll-interval", type=float, help="seconds between polls (default 0.5)")
    q.set_defaults(func=cmd_utility)
    q = ut.add_parser("status", help="list requests and their states")
    _common(q)
    q.set_defaults(func=cmd_utility)

    p = sub.add_parser("register", help="enrolment in registered mode")
    _common(p)
    p.add_argument("--enrol", action="append", metavar="ADDRESS", help="(utility) enrol this consumer")
    p.add_argument("--account-index", type=int, help="dev chains: the consumer's unlocked account #N")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("simulate", help="generate bids with the household simulation (gridsim)")
    p.add_argument("--households", type=int, default=1)
    p.add_argument("--household", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--event-start", type=int)
    p.add_argument("--event-end", type=int)
    p.add_argument("--out", default="database/bids.json")
    p.add_argument("--fleet", action="store_true", help="write every household (fleet format)")
    p.add_argument("--plot", help="PNG: the household before/after and its bid curve (with --feeder: feeder loading)")
    p.add_argument("--outdoor-max-c", type=float,
                   help="the day's highest outdoor temperature, deg C (default 33; 38 with --feeder)")
    p.add_argument("--feeder", action="store_true",
                   help="utility view: overload window, suggested request, bids, delivered feeder loading")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the whole market on an embedded local chain, in under a minute")
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--bidding-window", type=int, default=6)
    p.add_argument("--results-file", help="the demo's records (default WORKDIR/results.json: never mixed with "
                                          "a real consumer's database/results.json)")
    p.add_argument("--workdir", default=".demo")
    p.add_argument("--chain", choices=("ganache", "anvil"), default="ganache")
    p.add_argument("--market", choices=("sealed-metered", "open"), default="sealed-metered",
                   help="sealed bids with a bond, paid on delivery decided by gridsim (default), "
                        "or open bids paid on acceptance")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dr``."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack: where is it stuck?
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (ValueError, OSError, AttributeError):  # stderr is not a real file (embedded, tests)
            pass
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from .errors import describe_disk_error, disk_error, is_connection_error

        disk = disk_error(exc)
        if disk is not None:
            print(f"error: {describe_disk_error(disk)}", file=sys.stderr)
            return 1
        if is_connection_error(exc):
            print(f"error: lost the RPC endpoint ({type(exc).__name__}); check that the node is running", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
