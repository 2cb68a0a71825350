"""Support for the thin ``scripts/*.py`` wrappers: ``brownie run scripts/X.py [main remote]``
or ``python scripts/X.py [remote]`` both end up in the ``dr`` command line.

Inside ``brownie run`` the endpoint of brownie's connected network is used (its network id
names the deployment record); outside it, ``.env`` decides as for ``dr``. ``remote`` (the
seed's flag for a live network) requires the keystore accounts from ``.env`` instead of a
dev chain's unlocked accounts. brownie is imported only when it is already loaded.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def brownie_network() -> tuple[str, str] | None:
    """(network id, RPC URL) of the network ``brownie run`` connected to, if any."""
    if "brownie" not in sys.modules:
        return None
    try:
        from brownie import network

        if not network.is_connected():
            return None
        return network.show_active(), network.web3.provider.endpoint_uri
    except Exception:
        return None


def run_cli(args: Sequence[str], mode: str = "local") -> int:
    """Run ``dr ARGS`` with brownie's network (when inside brownie); raise SystemExit on failure."""
    from .cli import main

    argv = list(args)
    connected = brownie_network()
    if connected is not None and "--rpc-url" not in argv:
        network_id, url = connected
        argv += ["--network", network_id, "--rpc-url", url]
    if mode not in ("local", "remote"):
        raise SystemExit(f"unknown mode {mode!r}: use `main` or `main remote`")
    if mode == "remote":
        role = "CONSUMER" if argv and argv[0] in ("consumer", "register") else "UTILITY"
        from .config import load_settings

        if not (load_settings().get(f"{role}_ACCOUNT") or os.environ.get(f"{role}_PRIVATE_KEY")):
            raise SystemExit(f"`remote` needs {role}_ACCOUNT and {role}_ACCOUNT_PASS in .env (see .env.template)")
    code = main(argv)
    if code:
        raise SystemExit(code)
    return code
