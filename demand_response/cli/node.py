"""``dr node``: a local dev chain in the foreground."""

from __future__ import annotations

import argparse

from ._common import stop_on_signals

CHAIN_IDS = {"ganache": 1337, "anvil": 31337}


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr node``."""
    p = commands.add_parser("node", help="run a local dev chain (the 'dev' network) in the foreground",
                            description="Run ganache or anvil with unlocked, funded accounts until Ctrl-C. "
                                        "Other commands reach it with --network dev (the default).")
    p.add_argument("--kind", choices=tuple(CHAIN_IDS), default="ganache",
                   help="which node: ganache (chain id 1337, the default) or anvil (chain id 31337)")
    p.add_argument("--port", type=int, default=8545, help="TCP port on 127.0.0.1 (default 8545)")
    p.add_argument("--accounts", type=int, default=10, metavar="N",
                   help="unlocked accounts, each funded with test ETH (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the node, wait for Ctrl-C or its exit, stop it."""
    from .. import devchain

    node = devchain.start(args.kind, port=args.port, accounts=args.accounts, chain_id=CHAIN_IDS[args.kind])
    print(f"{args.kind} running at {node.url} (chain {node.chain_id}, {args.accounts} unlocked accounts); "
          "Ctrl-C stops it", flush=True)
    stop = stop_on_signals()
    try:
        while not stop.is_set() and node.process.poll() is None:
            stop.wait(0.5)
    finally:
        node.stop()
    return 0
