"""``dr demo``: the whole market on an embedded local chain."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr demo``."""
    p = commands.add_parser(
        "demo", help="the whole market on an embedded local chain, in under a minute",
        description="Start a local chain, deploy, run consumer daemons with sample bids, post a request, "
                    "settle it and show who earned what: per household its gross pay, gas, net and transactions. The default market settles in a test stablecoin (TUSD) on interval meter data "
                    "with the caiso-10in10 baseline, dispatches consumer-1's award over OpenADR and sheds its "
                    "water heater through a Mosquitto broker (skipped, with one line, without mosquitto). "
                    "The chain, bids, cursors, meter store and logs stay in --workdir.")
    p.add_argument("--consumers", type=int, default=4, metavar="N", help="consumer daemons to run (default 4)")
    p.add_argument("--bidding-window", type=int, default=6, metavar="S",
                   help="seconds the request stays open for bids (default 6)")
    p.add_argument("--results-file", help="the demo's records (default WORKDIR/results.json: never mixed with "
                                          "a real consumer's database/results.json)")
    p.add_argument("--workdir", default=".demo",
                   help="folder for the demo's chain state, bids, cursors and logs (default .demo)")
    p.add_argument("--chain", choices=("ganache", "anvil"), default="ganache",
                   help="which local node to embed (default ganache)")
    p.add_argument("--market", choices=("usd", "sealed", "sealed-metered", "open"), default="usd",
                   help="usd (default): open bids in the test stablecoin TUSD, no bond, paid on delivery the "
                        "utility measures from gridsim's interval data, bids signed by the households and placed by the utility's relay (no household transaction); sealed "
                        "(or sealed-metered): sealed bids in ETH with an ETH bond, paid on measured delivery; "
                        "open: open bids in ETH, paid on acceptance")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus /metrics of the demo and its daemons on 127.0.0.1:PORT during the run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo (serving its metrics with ``--metrics-port``); its exit status."""
    served = _serve_metrics(args.metrics_port, Path(args.workdir)) if args.metrics_port else None
    # SIGTERM (kill, a cancelled CI job, timeout) stops everything the demo started, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if served is not None:
            served.close()  # type: ignore[attr-defined]


def _serve_metrics(port: int, workdir: Path) -> object | None:
    """/metrics of this process and the consumer daemons it starts (multiprocess mode); a
    busy port is one line, and the demo runs without metrics."""
    from .. import metrics
    from ..errors import ConfigError

    metrics.share_with_children(workdir / "metrics")
    try:
        served = metrics.serve(port)
    except ConfigError:
        print(f"demo: no metrics: port {port} is in use; pass another --metrics-port (make demo: "
              "DEMO_METRICS_PORT=...)", flush=True)
        return None
    print(f"demo: metrics of the demo and its daemons on {served.url}/metrics", flush=True)
    return served


def _run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(consumers=args.consumers, results_file=Path(args.results_file) if args.results_file else None,
                    workdir=Path(args.workdir),
                    bidding_window=args.bidding_window, chain_kind=args.chain, market=args.market)
