"""Support for the thin ``scripts/*.py`` wrappers: ``brownie run scripts/X.py [main remote]``
or ``python scripts/X.py [remote]`` both end up in the ``dr`` command line.

Inside ``brownie run`` the endpoint of brownie's connected network is used (its network id
names the deployment record); outside it, ``.env`` decides as for ``dr``. ``remote`` (the
seed's flag for a live network) requires the keystore accounts from ``.env`` instead of a
dev chain's unlocked accounts. brownie is imported only when it is already loaded.

A chain brownie started itself (``development``, ``ganache-cli``: gone when the script ends)
is throwaway: ``.env`` is neither read nor written there, so its ``CONTRACT_ADDRESS`` and
keystore accounts stay those of the live networks; the node's unlocked accounts sign, and
``remote`` is refused.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence


def brownie_network() -> tuple[str, str, bool] | None:
    """(network id, RPC URL, throwaway) of the network ``brownie run`` connected to, if any;
    ``throwaway``: brownie started that chain itself and stops it when the script ends."""
    if "brownie" not in sys.modules:
        return None
    try:
        from brownie import network

        if not network.is_connected():
            return None
        return network.show_active(), network.web3.provider.endpoint_uri, bool(network.rpc.is_child())
    except Exception:
        return None


def run_cli(args: Sequence[str], mode: str = "local") -> int:
    """Run ``dr ARGS`` with brownie's network (when inside brownie); raise SystemExit on failure."""
    from .cli import main

    argv = list(args)
    connected = brownie_network()
    if mode not in ("local", "remote"):
        raise SystemExit(f"unknown mode {mode!r}: use `main` or `main remote`")
    if connected is not None and "--rpc-url" not in argv:
        network_id, url, throwaway = connected
        argv += ["--network", network_id, "--rpc-url", url]
        if throwaway:
            return _run_throwaway(argv, network_id, mode)
    if mode == "remote":
        role = "CONSUMER" if argv and argv[0] in ("consumer", "register") else "UTILITY"
        from .config import load_settings

        if not (load_settings().get(f"{role}_ACCOUNT") or os.environ.get(f"{role}_PRIVATE_KEY")):
            raise SystemExit(f"`remote` needs {role}_ACCOUNT and {role}_ACCOUNT_PASS in .env (see .env.template)")
    code = main(argv)
    if code:
        raise SystemExit(code)
    return code


#: Settings that belong to live networks and mean nothing on a chain brownie just started.
_LIVE_KEYS = ("CONTRACT_ADDRESS", "CHAIN_ID", "DR_ENV_FILE", *(f"{role}_{what}" for role in ("UTILITY", "CONSUMER")
                                                              for what in ("ACCOUNT", "ACCOUNT_PASS", "PRIVATE_KEY")))


def _run_throwaway(argv: list[str], network_id: str, mode: str) -> int:
    """``dr ARGV`` on a chain brownie started: an empty settings file instead of ``.env``."""
    if mode == "remote":
        raise SystemExit(f"`remote` is for a live network, and brownie started a throwaway {network_id} chain "
                         "for this run: drop `main remote`, or choose a live network with --network")
    print(f"{network_id} is a throwaway chain brownie started for this run: .env is neither read nor written "
          "(its CONTRACT_ADDRESS and accounts stay for your live networks); the node's unlocked accounts sign",
          flush=True)
    from .cli import main

    saved = {k: os.environ.pop(k) for k in _LIVE_KEYS if k in os.environ}  # the same from the environment
    try:
        with tempfile.TemporaryDirectory(prefix="dr-throwaway-") as folder:
            empty = Path(folder) / "throwaway.env"
            empty.touch()
            code = main([*argv, "--env-file", str(empty)])
    finally:
        os.environ.update(saved)
    if code:
        raise SystemExit(code)
    return code

