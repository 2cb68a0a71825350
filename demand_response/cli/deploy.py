"""``dr deploy``: the contract, as the utility, recorded per network and chain id."""

from __future__ import annotations

import argparse

from ._common import connection_options, settings_from


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr deploy``."""
    p = commands.add_parser("deploy", help="deploy the contract (as the utility) and record its address")
    connection_options(p)
    p.add_argument("--registration", action="store_true", help="only enrolled consumers may bid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Deploy from the utility's account; record it in deployments.json and .env."""
    from ..accounts import resolve_signer
    from ..session import connect_checked
    from ..utility import deploy

    settings = settings_from(args)
    w3, chain_id = connect_checked(settings)
    signer = resolve_signer(w3, "utility", settings)
    dr = deploy(settings, signer, chain_id, registration_required=args.registration)
    print(f"deployed DemandReduction at {dr.address} on {settings.network} (chain {chain_id}) from {signer.address}")
    print(f"recorded in {settings.deployments_file} and CONTRACT_ADDRESS in {settings.env_file}")
    return 0
