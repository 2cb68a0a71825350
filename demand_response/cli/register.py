"""``dr register``: enrolment when the contract is in registered mode."""

from __future__ import annotations

import argparse

from ._common import UserError, connection_options, settings_from


def add_to(commands: argparse._SubParsersAction) -> None:
    """Add ``dr register``."""
    p = commands.add_parser("register", help="enrolment in registered mode",
                            description="As a consumer: ask the utility for enrolment. As the utility: "
                                        "--enrol ADDRESS enrols a consumer.")
    connection_options(p)
    p.add_argument("--enrol", action="append", metavar="ADDRESS", help="(utility) enrol this consumer")
    p.add_argument("--account-index", type=int, help="dev chains: the consumer's unlocked account #N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Request enrolment (consumer) or enrol addresses (utility)."""
    from web3 import Web3

    from ..accounts import resolve_signer
    from ..session import open_session

    for address in args.enrol or []:
        if not Web3.is_address(address):
            raise UserError(f"--enrol {address!r} is not an address: give 0x followed by 40 hex digits")
    settings = settings_from(args)
    session = open_session(settings)
    dr = session.dr
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
